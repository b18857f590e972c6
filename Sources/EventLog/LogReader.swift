/// Reads events in sequence order from a log snapshot, starting at any sequence number.
///
/// Whole batches are skipped by their header when they end before the start sequence, so
/// seeking costs one header read per batch, not a decompression.
public struct LogReader {
    let snapshot: LogSnapshot
    var segmentIndex: Int
    /// The current segment, mapped read-only: a scan copies nothing out of the page cache.
    var segmentFile: MappedFile? = nil
    /// The last batch's decompressed payload. Its storage is reused for the next batch when
    /// the caller has let go of it, so a scan touches no fresh pages per batch.
    var payloadBuffer: [UInt8] = []
    var offset = 0
    var expectedSequence: UInt64 = 0
    var pending: [Event] = []
    var pendingIndex = 0
    public let startSequence: UInt64

    /// A reader over what `snapshot` shows, from `sequence` on.
    public init(snapshot: LogSnapshot, from sequence: UInt64 = 0) {
        self.snapshot = snapshot
        self.startSequence = sequence
        var index = 0
        for (i, segment) in snapshot.segments.enumerated() where segment.firstSequence <= sequence { index = i }
        self.segmentIndex = index
        self.offset = -1
    }

    /// A reader for a log that no process is writing (tools): every segment is read to its
    /// last intact batch.
    public static func offline(directory: String, from sequence: UInt64 = 0) throws -> LogReader {
        guard FileIO.isDirectory(directory) else { throw EventLogError.notALogDirectory(directory) }
        let segments = try SegmentName.list(in: directory)
        let snapshot = LogSnapshot(directory: directory, segments: segments, activeDurableSize: Int.max, durableSequence: .max)
        return LogReader(snapshot: snapshot, from: sequence)
    }

    /// The next batch (header and uncompressed payload) that holds events at or after the
    /// start sequence, or nil at the end of the durable log.
    public mutating func nextBatch() throws -> (BatchHeader, [UInt8])? {
        while let (header, payload) = try nextBatch(decompressing: { _ in true }) {
            if let payload { return (header, payload) }
        }
        return nil
    }

    /// The next batch at or after the start sequence; its payload is checksummed and
    /// decompressed only when `decompressing` says so (nil otherwise), so a scan can skip
    /// batches by header. The header has a checksum of its own, so a batch is skipped only
    /// for what it really holds: the compactor's workers, which split the days between them,
    /// each check exactly the batches they read, and every batch is read by one of them.
    public mutating func nextBatch(decompressing: (BatchHeader) -> Bool) throws -> (BatchHeader, [UInt8]?)? {
        while segmentIndex < snapshot.segments.count {
            let segment = snapshot.segments[segmentIndex]
            let path = snapshot.directory + "/" + segment.name
            if offset < 0 {
                let isLast = segmentIndex == snapshot.segments.count - 1
                segmentFile = try MappedFile(path: path, limit: isLast ? snapshot.activeDurableSize : nil)
                guard SegmentHeader.parse(segmentFile!.bytes)?.firstSequence == segment.firstSequence else {
                    throw EventLogError.corruptSegment(path: path, offset: 0, problem: "bad segment header")
                }
                offset = SegmentHeader.size
                expectedSequence = segment.firstSequence
            }
            let bytes = segmentFile!.bytes
            while offset < bytes.count {
                var buffer = payloadBuffer
                payloadBuffer = []
                let result: Result<(BatchHeader, [UInt8]?), BatchHeader.Problem> = try {
                    switch BatchHeader.parseFrame(UnsafeRawBufferPointer(rebasing: bytes[offset...]), checksPayload: false) {
                    case .failure(let p): return .failure(p)
                    case .success(let (header, payload)):
                        guard header.firstSequence == expectedSequence else {
                            return .failure(.sequenceGap(expected: expectedSequence, found: header.firstSequence))
                        }
                        if header.endSequence <= startSequence { return .success((header, nil)) }
                        guard decompressing(header) else { return .success((header, [])) }
                        if case .failure(let problem) = header.checkPayload(payload) { return .failure(problem) }
                        try header.decompress(payload, into: &buffer)
                        return .success((header, buffer))
                    }
                }()
                payloadBuffer = buffer
                switch result {
                case .failure(let problem):
                    // A torn tail in the last segment of an offline log is the normal end of it.
                    if segmentIndex == snapshot.segments.count - 1 && snapshot.activeDurableSize == Int.max {
                        offset = bytes.count
                        break
                    }
                    throw EventLogError.corruptSegment(path: path, offset: offset, problem: "\(problem)")
                case .success(let (header, payload)):
                    offset += header.frameLength
                    expectedSequence = header.endSequence
                    if let payload { return (header, decompressing(header) ? payload : nil) }
                }
            }
            segmentIndex += 1
            offset = -1
            segmentFile = nil
        }
        return nil
    }

    /// The next event at or after the start sequence.
    public mutating func next() throws -> Event? {
        while pendingIndex >= pending.count {
            guard let (header, payload) = try nextBatch() else { return nil }
            pending.removeAll(keepingCapacity: true)
            pendingIndex = 0
            try payload.withUnsafeBytes { bytes in
                var decoder = try EventRecordDecoder(header: header, payload: bytes)
                while let event = try decoder.next() {
                    if event.sequence >= startSequence { pending.append(event) }
                }
                guard decoder.index == UInt64(header.eventCount) else {
                    throw RecordDecodingError(offset: 0, reason: "batch holds \(decoder.index) records, header says \(header.eventCount)")
                }
            }
        }
        defer { pendingIndex += 1 }
        return pending[pendingIndex]
    }
}

/// One problem `tally log verify` found.
public struct LogProblem: CustomStringConvertible, Sendable {
    public var file: String
    public var offset: Int
    public var message: String
    public var description: String { "\(file): offset \(offset): \(message)" }
}

public struct LogVerification: Sendable {
    public var segments = 0
    public var batches = 0
    public var events: UInt64 = 0
    public var bytes = 0
    public var problems: [LogProblem] = []
}

/// Checks every segment completely: headers, framing, both checksums, sequence continuity
/// within and across segments, decompression and record decoding.
public enum LogVerifier {
    public static func verify(directory: String) throws -> LogVerification {
        guard FileIO.isDirectory(directory) else { throw EventLogError.notALogDirectory(directory) }
        var result = LogVerification()
        var expected: UInt64? = nil
        for segment in try SegmentName.list(in: directory) {
            let path = directory + "/" + segment.name
            result.segments += 1
            let bytes = try FileIO.readFile(path)
            result.bytes += bytes.count
            guard let header = bytes.withUnsafeBytes({ SegmentHeader.parse($0) }) else {
                result.problems.append(LogProblem(file: path, offset: 0, message: "missing or corrupt segment header"))
                expected = nil
                continue
            }
            if header.firstSequence != segment.firstSequence {
                result.problems.append(LogProblem(file: path, offset: 16, message: "header says first sequence \(header.firstSequence), file name says \(segment.firstSequence)"))
            }
            if let expected, expected != header.firstSequence {
                result.problems.append(LogProblem(file: path, offset: 16, message: "sequence gap between segments: expected \(expected), found \(header.firstSequence)"))
            }
            var decodeProblems: [LogProblem] = []
            let scan = bytes.withUnsafeBytes { raw in
                SegmentScanner.scan(raw, from: SegmentHeader.size, expectedSequence: header.firstSequence) { offset, batch, payload in
                    do {
                        let plain = try batch.decompress(payload)
                        try plain.withUnsafeBytes { p in
                            var decoder = try EventRecordDecoder(header: batch, payload: p)
                            while try decoder.next() != nil {}
                            if decoder.index != UInt64(batch.eventCount) {
                                throw RecordDecodingError(offset: 0, reason: "\(decoder.index) records, header says \(batch.eventCount)")
                            }
                        }
                    } catch {
                        decodeProblems.append(LogProblem(file: path, offset: offset, message: "\(error)"))
                    }
                }
            }
            result.problems += decodeProblems
            result.batches += scan.batches
            result.events += scan.events
            if let (offset, problem) = scan.problem {
                result.problems.append(LogProblem(file: path, offset: offset, message: "\(problem); \(bytes.count - offset) bytes after it unreadable"))
            }
            expected = scan.nextSequence
        }
        return result
    }
}
