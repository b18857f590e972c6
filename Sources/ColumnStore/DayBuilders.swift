public import EventLog

/// One `BlockBuilder` per UTC day, fed straight from log batches: the one path from the log's
/// binary records into blocks, shared by the compactor and by queries reading the log tail.
public struct DayBuilders {
    public var builders: [BlockBuilder] = []
    public private(set) var events = 0
    private var indexOfDay: [Int32: Int] = [:]
    private var lastDay: Int32 = .min
    private var lastIndex = -1
    private let acceptsDay: (Int32) -> Bool
    /// The current batch's string table and code cache, reused from batch to batch.
    private var table = BatchStringTable()
    private var cells: [BatchStringCodes.Cell] = []

    /// `acceptsDay` picks the days this set builds (a compaction worker's share).
    public init(acceptsDay: @escaping (Int32) -> Bool = { _ in true }) {
        self.acceptsDay = acceptsDay
    }

    /// Whether a batch whose events lie between these timestamps (its header's) can hold a
    /// day this set builds; when not, its payload need not even be decompressed.
    public func acceptsSomeDay(from minMicros: Int64, through maxMicros: Int64) -> Bool {
        let first = BlockBuilder.day(ofMicros: minMicros)
        let last = BlockBuilder.day(ofMicros: maxMicros)
        guard first <= last, last - first < 64 else { return true }
        return (first...last).contains(where: acceptsDay)
    }

    /// Adds the records of one batch whose sequence numbers lie in `range`.
    ///
    /// Every record's timestamp must lie in the header's range: readers skip batches by
    /// that range (`acceptsSomeDay`), so a header that misstated it would lose events.
    public mutating func add(_ header: BatchHeader, payload: [UInt8], range: Range<UInt64>) throws {
        if header.hasStringTable {
            try payload.withUnsafeBytes { bytes in
                do throws(RecordDecodingError) { try table.load(bytes) } catch { throw CompactionError.malformedBatch(first: header.firstSequence, reason: error.reason) }
            }
            cells.removeAll(keepingCapacity: true)
            cells.append(contentsOf: repeatElement(BatchStringCodes.Cell(), count: table.count))
        }
        // Moved out for the duration, so that the builders can be fed while they are borrowed.
        var cache = cells
        cells = []
        defer { cells = cache }
        let spans = table.spans, recordsOffset = table.recordsOffset
        try payload.withUnsafeBytes { bytes in
            try cache.withUnsafeMutableBufferPointer { cache in
                try spans.withUnsafeBufferPointer { spans in
                    var strings: BatchStringCodes? = nil
                    var records = bytes
                    if header.hasStringTable {
                        strings = BatchStringCodes(payload: bytes.baseAddress!, spans: spans, cache: cache.baseAddress!)
                        records = UnsafeRawBufferPointer(rebasing: bytes[recordsOffset...])
                    }
                    try add(header, records: records, range: range, strings: &strings)
                }
            }
        }
    }

    private mutating func add(
        _ header: BatchHeader, records bytes: UnsafeRawBufferPointer, range: Range<UInt64>, strings: inout BatchStringCodes?
    ) throws {
            var r = ByteReader(bytes)
            var sequence = header.firstSequence
            while !r.isAtEnd {
                guard let length = r.read(UInt32.self), let body = r.readBytes(Int(length)),
                    let ts = BlockBuilder.timestamp(ofRecordBody: body)
                else { throw CompactionError.malformedBatch(first: header.firstSequence, reason: "record length runs past the payload") }
                defer { sequence += 1 }
                guard ts >= header.minTimestamp && ts <= header.maxTimestamp else {
                    throw CompactionError.malformedBatch(
                        first: header.firstSequence, reason: "an event's timestamp \(ts) lies outside the header's range")
                }
                guard range.contains(sequence) else { continue }
                let day = BlockBuilder.day(ofMicros: ts)
                if day != lastDay {
                    lastDay = day
                    if !acceptsDay(day) {
                        lastIndex = -1
                    } else if let index = indexOfDay[day] {
                        lastIndex = index
                    } else {
                        lastIndex = builders.count
                        indexOfDay[day] = lastIndex
                        builders.append(builders.last.map { BlockBuilder(day: day, sizedLike: $0) } ?? BlockBuilder(day: day))
                    }
                }
                guard lastIndex >= 0 else { continue }
                strings?.builder = UInt64(lastIndex) << 32
                try builders[lastIndex].append(recordBody: body, sequence: sequence, strings: strings)
                events += 1
            }
            guard sequence == header.endSequence else {
                throw CompactionError.malformedBatch(
                    first: header.firstSequence, reason: "\(sequence - header.firstSequence) records, header says \(header.eventCount)")
            }
    }
}

/// A version-2 batch's string table as the builders fed from it see it: each string's bytes
/// and, per string, the code it got last and in which builder and field (`Cell`). In a
/// batch of 17,000 imported events about 770 strings recur 200 times each; after the first,
/// each costs one load and a compare instead of a hash, a probe and a compare of the bytes.
public struct BatchStringCodes {
    let payload: UnsafeRawPointer
    let spans: UnsafeBufferPointer<UInt64>
    let cache: UnsafeMutablePointer<Cell>
    /// The builder the current record goes to, in the high half of an owner word.
    var builder: UInt64 = 0

    var count: Int { spans.count }

    /// The column a string is interned into. Field ids fill the low half of an owner word.
    enum Field {
        case name, users, sessions, bots, eventIds, keys
        case property(Int)

        var id: UInt64 {
            switch self {
            case .name: 0
            case .users: 1
            case .sessions: 2
            case .bots: 3
            case .eventIds: 4
            case .keys: 5
            case .property(let slot): 8 + UInt64(UInt32(truncatingIfNeeded: slot))
            }
        }
    }

    struct Cell {
        /// Builder (high half) and field (low half) the code belongs to; all ones for none.
        var owner: UInt64 = .max
        var code: UInt32 = 0
    }

    @inline(__always)
    func bytes(_ index: Int) -> UnsafeRawBufferPointer {
        let span = spans[index]
        return UnsafeRawBufferPointer(start: payload + Int(span >> 32), count: Int(UInt32(truncatingIfNeeded: span)))
    }
}
