import EventLog
import TallyTestSupport
import Foundation
import Logging
import Testing

@Suite struct EventLogTests {
    @Test func appendsAreReadBackInOrder() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        var rng = SeededRandom(seed: 1)
        var written: [Event] = []
        for _ in 0..<20 {
            let events = (0..<Int.random(in: 1...50, using: &rng)).map { _ in randomEvent(&rng) }
            let first = try await log.append(try makeBatch(events, codec: Bool.random(using: &rng) ? .lz4 : .zstd))
            #expect(first == UInt64(written.count))
            written += events
        }
        #expect(log.durableSequence == UInt64(written.count))
        let read = try readAll(log)
        #expect(read.count == written.count)
        for (i, (w, r)) in zip(written, read).enumerated() {
            var expected = w
            expected.sequence = UInt64(i)
            #expect(expected == r)
        }
        // From the middle of a batch.
        let tail = try readAll(log, from: 37)
        #expect(tail.first?.sequence == 37)
        #expect(tail.count == written.count - 37)
        log.close()
        #expect(try readAllOffline(dir.path).count == written.count)
    }

    @Test func concurrentAppendsShareCommitsAndGetDistinctSequences() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        let firsts = try await withThrowingTaskGroup(of: (UInt64, Int).self) { group in
            for task in 0..<64 {
                group.addTask {
                    var rng = SeededRandom(seed: UInt64(task))
                    let events = (0..<(1 + task % 7)).map { _ in randomEvent(&rng) }
                    return (try await log.append(try makeBatch(events)), events.count)
                }
            }
            var all: [(UInt64, Int)] = []
            for try await r in group { all.append(r) }
            return all.sorted { $0.0 < $1.0 }
        }
        var expected: UInt64 = 0
        for (first, count) in firsts {
            #expect(first == expected)
            expected += UInt64(count)
        }
        #expect(log.durableSequence == expected)
        do {
            #expect(try readAll(log).count == Int(expected))
        } catch {
            // Seen once under heavy CPU load and not reproduced since: record what the file
            // holds so the next occurrence can be explained.
            let bytes = try FileIO.readFile(dir.path + "/" + SegmentName.fileName(firstSequence: 0))
            var frames: [String] = []
            bytes.withUnsafeBytes { raw in
                var at = SegmentHeader.size
                while at < raw.count, case .success(let header) = BatchHeader.parse(UnsafeRawBufferPointer(rebasing: raw[at...])) {
                    frames.append("\(at):\(header.firstSequence)+\(header.eventCount)")
                    at += header.frameLength
                }
            }
            Issue.record("\(error); appends returned \(firsts.map { "\($0.0)+\($0.1)" }); file frames \(frames); size \(bytes.count)")
        }
        log.close()
    }

    /// Segments of 4 KiB: a few dozen batches fill several.
    static var smallSegments: EventLog.Configuration {
        var config = EventLog.Configuration()
        config.segmentMaxBytes = 4096
        return config
    }

    /// Appends `count` batches of ten random events to `log`, and returns it.
    static func appendBatches(_ count: Int, to log: EventLog, rng: inout SeededRandom) async throws -> EventLog {
        for _ in 0..<count { _ = try await log.append(try makeBatch((0..<10).map { _ in randomEvent(&rng) }, codec: .none)) }
        return log
    }

    @Test func segmentsRollBySizeAndReopenContinuesTheSequence() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let config = Self.smallSegments
        var rng = SeededRandom(seed: 9)
        try await Self.appendBatches(40, to: EventLog.open(directory: dir.path, configuration: config), rng: &rng).close()
        let segments = try SegmentName.list(in: dir.path)
        #expect(segments.count > 3)
        let log = try EventLog.open(directory: dir.path, configuration: config)
        #expect(log.durableSequence == 400)
        let first = try await log.append(try makeBatch([randomEvent(&rng)]))
        #expect(first == 400)
        let events = try readAll(log, from: 123)
        #expect(events.map(\.sequence) == Array(123...400))
        log.close()
        let verification = try LogVerifier.verify(directory: dir.path)
        #expect(verification.problems.isEmpty)
        #expect(verification.events == 401)
    }

    /// Removed segments leave the log's list at once and their files soon after; a deletion
    /// that fails on the remover's thread is thrown by the next wait, once, not lost.
    @Test func removedSegmentsAreDeletedAndAFailedDeletionIsReported() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        var rng = SeededRandom(seed: 11)
        let log = try await Self.appendBatches(40, to: EventLog.open(directory: dir.path, configuration: Self.smallSegments), rng: &rng)
        try log.persistIdempotency()
        let before = log.snapshot().segments
        #expect(before.count > 4)

        let removed = try log.removeSegments(before: before[2].firstSequence)
        #expect(removed == before.prefix(2).map(\.name))
        #expect(log.snapshot().segments.map(\.name) == before.dropFirst(2).map(\.name))
        try log.waitForSegmentRemovals()
        #expect(try SegmentName.list(in: dir.path).map(\.name) == before.dropFirst(2).map(\.name))

        // A non-empty directory where the next segment's file was: its unlink fails.
        let blocked = dir.path + "/" + before[2].name
        try FileIO.unlink(blocked)
        try FileIO.makeDirectories(blocked)
        try FileIO.writeAtomically([1, 2, 3], to: blocked + "/inside")
        #expect(try log.removeSegments(before: before[3].firstSequence) == [before[2].name])
        #expect(throws: FileError.self) { try log.waitForSegmentRemovals() }
        try log.waitForSegmentRemovals()
        log.close()
    }

    @Test func appendAfterCloseFailsCleanly() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        log.close()
        await #expect(throws: EventLogError.self) { _ = try await log.append(try makeBatch([Event(name: "x", timestamp: 1, receivedAt: 1)])) }
    }

    /// Builds a closed log of `batches` batches and returns the byte offset where each batch
    /// starts in the only segment, plus the offset of its end.
    func buildLog(_ path: String, batches: Int, seed: UInt64) async throws -> (offsets: [Int], counts: [Int], end: Int) {
        var rng = SeededRandom(seed: seed)
        let log = try EventLog.open(directory: path)
        var counts: [Int] = []
        for _ in 0..<batches {
            let events = (0..<Int.random(in: 1...4, using: &rng)).map { _ in randomEvent(&rng) }
            counts.append(events.count)
            _ = try await log.append(try makeBatch(events))
        }
        log.close()
        let bytes = try FileIO.readFile(path + "/" + SegmentName.fileName(firstSequence: 0))
        var offsets: [Int] = []
        let scan = bytes.withUnsafeBytes { raw in
            SegmentScanner.scan(raw, from: SegmentHeader.size, expectedSequence: 0) { offset, _, _ in offsets.append(offset) }
        }
        #expect(scan.problem == nil)
        return (offsets, counts, bytes.count)
    }

    @Test func recoveryKeepsExactlyTheIntactPrefixForEveryCutOfTheLastBatch() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let original = dir.path + "/original"
        let (offsets, counts, end) = try await buildLog(original, batches: 3, seed: 4)
        let lastStart = offsets.last!
        let intact = counts.dropLast().reduce(0, +)
        let segment = SegmentName.fileName(firstSequence: 0)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        for cut in lastStart..<end {
            let copy = dir.path + "/cut"
            copyDirectory(original, copy)
            try FileIO.unlink(copy + "/" + LogCheckpoint.fileName)
            let fd = try FileIO.open(copy + "/" + segment, flags: O_RDWR)
            try FileIO.truncate(fd, to: cut, path: segment)
            FileIO.close(fd)
            let log = try EventLog.open(directory: copy, logger: logger)
            #expect(log.durableSequence == UInt64(intact), "cut at \(cut)")
            #expect(try readAll(log).count == intact)
            // The log stays appendable right after the intact prefix.
            let first = try await log.append(try makeBatch([Event(name: "after", timestamp: 5, receivedAt: 5)]))
            #expect(first == UInt64(intact))
            log.close()
            #expect(try LogVerifier.verify(directory: copy).problems.isEmpty)
        }
    }

    /// Small appends land in space filled with zeros ahead of them. A crash leaves that zero
    /// tail: recovery takes it as the clean end (every acknowledged event kept), appends go on
    /// inside it, and a closed segment ends at its last batch again. A stray non-zero byte in
    /// the tail is cut off like any torn write.
    @Test func aZeroFilledTailIsACleanEnd() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let live = dir.path + "/live"
        let segment = SegmentName.fileName(firstSequence: 0)
        let log = try EventLog.open(directory: live)
        var rng = SeededRandom(seed: 12)
        var appended = 0
        for _ in 0..<5 {
            let events = (0..<3).map { _ in randomEvent(&rng) }
            _ = try await log.append(try makeBatch(events))
            appended += events.count
        }
        let written = log.snapshot().activeDurableSize
        let filled = FileIO.fileSize(path: live + "/" + segment)!
        #expect(filled > written && filled >= 1 << 20, "the writer filled ahead")

        // kill -9 now: the files as they are.
        for strayByte in [false, true] {
            let crashed = dir.path + "/crashed-\(strayByte)"
            copyDirectory(live, crashed)
            if strayByte {
                let fd = try FileIO.open(crashed + "/" + segment, flags: O_RDWR)
                try [UInt8(0x5a)].withUnsafeBytes { try FileIO.pwriteAll(fd, $0, at: written + 4000, path: segment) }
                FileIO.close(fd)
            }
            #expect(try LogVerifier.verify(directory: crashed).problems.isEmpty == !strayByte)
            let recovered = try EventLog.open(directory: crashed)
            #expect(recovered.durableSequence == UInt64(appended))
            let first = try await recovered.append(try makeBatch([Event(name: "after", timestamp: 5, receivedAt: 5)]))
            #expect(first == UInt64(appended))
            #expect(try readAll(recovered).count == appended + 1)
            let end = recovered.snapshot().activeDurableSize
            recovered.close()
            #expect(FileIO.fileSize(path: crashed + "/" + segment) == end, "closed, the segment ends at its last batch")
            #expect(try LogVerifier.verify(directory: crashed).problems.isEmpty)
            #expect(try readAllOffline(crashed).count == appended + 1)
        }
        log.close()
        #expect(FileIO.fileSize(path: live + "/" + segment) == written)
    }

    @Test func recoveryTruncatesAtAFlippedBitAndNeverCrashes() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let original = dir.path + "/original"
        let (offsets, counts, end) = try await buildLog(original, batches: 6, seed: 8)
        let segment = SegmentName.fileName(firstSequence: 0)
        let bytes = try FileIO.readFile(original + "/" + segment)
        var rng = SeededRandom(seed: 99)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        for _ in 0..<150 {
            let position = Int.random(in: SegmentHeader.size..<end, using: &rng)
            var damaged = bytes
            damaged[position] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            let copy = dir.path + "/flip"
            copyDirectory(original, copy)
            try FileIO.unlink(copy + "/" + LogCheckpoint.fileName)
            try FileIO.writeAtomically(damaged, to: copy + "/" + segment)
            // The damaged batch and everything after it are dropped; all before it is kept.
            let damagedBatch = offsets.lastIndex { $0 <= position }!
            let intact = counts[..<damagedBatch].reduce(0, +)
            let log = try EventLog.open(directory: copy, logger: logger)
            #expect(log.durableSequence == UInt64(intact), "flip at \(position)")
            #expect(try readAll(log).count == intact)
            log.close()
        }
    }

    /// Builds a log of four batches and flips one bit in the payload of the third.
    func buildLogWithADamagedPayload(_ path: String, seed: UInt64) async throws -> (segment: String, offsets: [Int], counts: [Int]) {
        let (offsets, counts, _) = try await buildLog(path, batches: 4, seed: seed)
        let segment = path + "/" + SegmentName.fileName(firstSequence: 0)
        var bytes = try FileIO.readFile(segment)
        bytes[offsets[2] + BatchHeader.size + 3] ^= 0x10
        try FileIO.writeAtomically(bytes, to: segment)
        return (segment, offsets, counts)
    }

    @Test func verifyReportsCorruptionWithFileAndOffset() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let (segment, offsets, _) = try await buildLogWithADamagedPayload(dir.path, seed: 3)
        let result = try LogVerifier.verify(directory: dir.path)
        #expect(result.problems.count == 1)
        #expect(result.problems.first?.file == segment)
        #expect(result.problems.first?.offset == offsets[2])
        #expect(result.problems.first?.message.contains("payload CRC32C mismatch") == true)
    }

    /// A reader checks the payload checksum of exactly the batches it decompresses: one
    /// that skips a damaged batch by its header (whose own checksum holds) reads past it,
    /// one that reads the batch stops there (in an offline log, as at a torn tail).
    @Test func readersChecksumTheBatchesTheyDecompress() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let (_, _, counts) = try await buildLogWithADamagedPayload(dir.path, seed: 5)
        let damaged = UInt64(counts[0] + counts[1])
        func read(skippingDamaged: Bool) throws -> [(first: UInt64, decompressed: Bool)] {
            var reader = try LogReader.offline(directory: dir.path)
            var seen: [(UInt64, Bool)] = []
            while let (header, payload) = try reader.nextBatch(decompressing: { !skippingDamaged || $0.firstSequence != damaged }) {
                seen.append((header.firstSequence, payload != nil))
            }
            return seen
        }
        let skipping = try read(skippingDamaged: true)
        #expect(skipping.map(\.first) == [0, UInt64(counts[0]), damaged, damaged + UInt64(counts[2])])
        #expect(skipping.map(\.decompressed) == [true, true, false, true])
        #expect(try read(skippingDamaged: false).map(\.first) == [0, UInt64(counts[0])])
    }

    @Test func aSegmentTornWhileBeingCreatedIsRemoved() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        var rng = SeededRandom(seed: 1)
        let log = try EventLog.open(directory: dir.path)
        _ = try await log.append(try makeBatch((0..<5).map { _ in randomEvent(&rng) }))
        log.close()
        // A crash right after creating the next segment file, before its header was written.
        try FileIO.writeAtomically([0x54, 0x41], to: dir.path + "/" + SegmentName.fileName(firstSequence: 5))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let reopened = try EventLog.open(directory: dir.path, logger: logger)
        #expect(reopened.durableSequence == 5)
        #expect(try await reopened.append(try makeBatch([randomEvent(&rng)])) == 5)
        reopened.close()
        #expect(try SegmentName.list(in: dir.path).count == 1)
    }

    @Test func idempotencyIndexSurvivesRestartWithAndWithoutSnapshots() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let ids = (0..<100).map { "client-\($0)" }
        do {
            let log = try EventLog.open(directory: dir.path)
            let builder = BatchBuilder()
            var keys: [BatchClientKey] = []
            for (i, id) in ids.enumerated() {
                let key = IdempotencyKey(id)
                guard case .reserved = log.idempotency.reserve(key) else {
                    Issue.record("fresh id not reserved")
                    return
                }
                builder.append(Event(name: "e", timestamp: Int64(i), receivedAt: currentMicros(), clientEventId: id))
                keys.append(BatchClientKey(key: key, index: UInt32(i), timestamp: Int64(i)))
            }
            var batch = try builder.seal(codec: .lz4)
            batch.clientKeys = keys
            _ = try await log.append(batch)
            if case .stored(let entry) = log.idempotency.reserve(IdempotencyKey("client-7")) {
                #expect(entry.timestamp == 7)
            } else {
                Issue.record("stored id not found")
            }
            log.close()  // writes a snapshot
        }
        for withSnapshots in [true, false] {
            if !withSnapshots {
                try FileManager.default.removeItem(atPath: dir.path + "/idempotency")
            }
            let log = try EventLog.open(directory: dir.path)
            #expect(log.idempotency.count == 100)
            guard case .stored(let entry) = log.idempotency.reserve(IdempotencyKey("client-42")) else {
                Issue.record("id forgotten after restart (snapshots: \(withSnapshots))")
                log.close()
                return
            }
            #expect(entry.timestamp == 42)
            guard case .reserved = log.idempotency.reserve(IdempotencyKey("client-new")) else {
                Issue.record("new id not reserved")
                log.close()
                return
            }
            log.idempotency.release([BatchClientKey(key: IdempotencyKey("client-new"), index: 0, timestamp: 0)])
            log.close()
        }
    }

    @Test func backgroundLoadingGatesReservationsUntilReady() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        do {
            let log = try EventLog.open(directory: dir.path)
            let builder = BatchBuilder()
            builder.append(Event(name: "plain", timestamp: 1, receivedAt: currentMicros()))
            _ = try await log.append(try builder.seal(codec: .lz4))
            let key = IdempotencyKey("only-id")
            guard case .reserved = log.idempotency.reserve(key) else { Issue.record("not reserved"); return }
            builder.append(Event(name: "with id", timestamp: 2, receivedAt: currentMicros(), clientEventId: "only-id"))
            var batch = try builder.seal(codec: .lz4)
            batch.clientKeys = [BatchClientKey(key: key, index: 0, timestamp: 2)]
            _ = try await log.append(batch)
            log.close()
        }
        // Only the batch holding a client id is flagged, so replay can skip the other.
        var reader = try LogReader.offline(directory: dir.path)
        var flags: [UInt16] = []
        while let (header, _) = try reader.nextBatch() { flags.append(header.flags) }
        #expect(flags == [0, BatchHeader.hasClientEventIds])

        try FileManager.default.removeItem(atPath: dir.path + "/idempotency")
        let log = try EventLog.open(directory: dir.path, loadIdempotencyInBackground: true)
        await log.idempotency.waitUntilReady()
        guard case .stored(let entry) = log.idempotency.reserve(IdempotencyKey("only-id")) else {
            Issue.record("replayed id missing")
            log.close()
            return
        }
        #expect(entry.timestamp == 2)
        log.close()
        // The replay was written down at once: the next start loads it from a snapshot.
        #expect(try FileIO.listDirectory(dir.path + "/idempotency").contains { $0.hasSuffix(".idx") })
    }

    @Test func restartsWithoutClientIdsDoNotReplayTheWholeLogAgain() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        var rng = SeededRandom(seed: 21)
        for _ in 0..<3 {
            let log = try EventLog.open(directory: dir.path)
            _ = try await log.append(try makeBatch((0..<50).map { _ in randomEvent(&rng) }))
            log.close()
        }
        // Each close recorded how far the log is indexed; opening again keeps that record
        // (it holds no ids, so it looks expired), or the next start would replay everything.
        let log = try EventLog.open(directory: dir.path)
        let names = try FileIO.listDirectory(dir.path + "/idempotency").filter { $0.hasSuffix(".idx") }
        #expect(names.contains { $0.hasSuffix("-00000000000000000150.idx") })
        log.close()
    }

    @Test func aLogDirectoryIsOpenedByOneWriterAtATime() throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        #expect {
            _ = try EventLog.open(directory: dir.path)
        } throws: { error in
            guard case EventLogError.locked(let directory, let owner) = error else { return false }
            return directory == dir.path && owner == String(getpid())
        }
        log.close()
        let again = try EventLog.open(directory: dir.path)
        again.close()
    }
}
