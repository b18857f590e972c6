import Foundation
public import Logging
import Synchronization

/// What one group commit wrote, reported to the server's metrics.
public struct CommitStatistics: Sendable {
    public var batches: Int
    public var events: Int
    public var bytes: Int
    public var fsyncNanoseconds: UInt64
}

/// The segments a reader may look at, fixed at one moment.
public struct LogSnapshot: Sendable {
    public var directory: String
    /// Segment file names and first sequence numbers, in log order.
    public var segments: [(name: String, firstSequence: UInt64)]
    /// Bytes of the last segment that are durable; readers stop there.
    public var activeDurableSize: Int
    /// Sequence number after the last durable event.
    public var durableSequence: UInt64
}

public enum EventLogError: Error, CustomStringConvertible {
    case closed
    case poisoned(String)
    case notALogDirectory(String)
    case corruptSegment(path: String, offset: Int, problem: String)
    case locked(directory: String, owner: String)

    public var description: String {
        switch self {
        case .closed: "the event log is closed"
        case .poisoned(let why): "the event log stopped accepting writes after an I/O error: \(why)"
        case .notALogDirectory(let p): "\(p) is not an event log directory"
        case .corruptSegment(let path, let offset, let problem): "\(path) at offset \(offset): \(problem)"
        case .locked(let directory, let owner):
            "\(directory) is in use by another process\(owner.isEmpty ? "" : " (pid \(owner))"); stop it first (a server and `tally import` cannot share a log)"
        }
    }
}

/// One project's append-only, segmented, durable event log.
///
/// Appends from any task are queued to one writer thread, which writes every queued batch with
/// a single `write` and a single `fdatasync` (group commit) and only then resumes the callers:
/// an append that returned is on disk. File I/O stays on that dedicated thread and never
/// blocks the cooperative pool.
///
/// Small groups are written into space the writer filled with zeros ahead of them. An
/// `fdatasync` that also has to make a new file size durable costs about three times the CPU
/// and wall time of one that only flushes data on this kind of disk (ext4, measured 255 vs
/// 89 µs of CPU, 0.63 vs 0.23 ms), and a single-event request waits for one or two of them.
/// Recovery and readers take a zero tail as the clean end of the segment; a sealed segment
/// is cut back to its last batch before the next one is created.
public final class EventLog: @unchecked Sendable {
    // @unchecked Sendable: mutable writer state is touched only by the writer thread (after
    // `open` hands it over); the queue is guarded by `queueLock`; published state by `state`.

    public struct Configuration: Sendable {
        /// Roll to a new segment once the active one reaches this size.
        public var segmentMaxBytes: Int = 64 << 20
        /// Roll to a new segment once the active one is this old (and not empty), in seconds.
        public var segmentMaxAgeSeconds: Int = 3600
        /// Rewrite the recovery checkpoint after this many bytes.
        public var checkpointEveryBytes: Int = 4 << 20
        /// fsync before acknowledging. Off only for throwaway benchmarks.
        public var fsync: Bool = true
        /// Under concurrent load, wait this long (µs) after the first queued batch before
        /// writing, so that more requests share the write and the fsync. Applied only when the
        /// previous round already had company (several batches), so a lone request never waits.
        public var groupCommitDelayMicros: Int = 200
        /// How long a client `event_id` is remembered, in seconds.
        public var idempotencyWindowSeconds: Int = 7 * 86_400

        public init() {}
    }

    struct PendingAppend {
        var batch: PreparedBatch
        var completion: @Sendable (Result<UInt64, any Error>) -> Void
    }

    struct PublishedState {
        var segments: [(name: String, firstSequence: UInt64)]
        var activeDurableSize: Int
        var durableSequence: UInt64
    }

    public let directory: String
    public let configuration: Configuration
    /// Client `event_id`s already stored, kept in step with what is durable.
    public let idempotency: IdempotencyIndex
    let lastPersistedThrough = Mutex<UInt64>(0)
    let persistLock = Mutex<Void>(())
    let logger: Logger
    let onCommit: (@Sendable (CommitStatistics) -> Void)?

    private let queueLock = NSCondition()
    private var queue: [PendingAppend] = []
    private var stopping = false
    private var stopped = false
    private var poison: String?

    private let state: Mutex<PublishedState>
    private let segmentRemover: SegmentRemover

    // Writer-thread state.
    private var fd: Int32
    private var activePath: String
    private var activeFirstSequence: UInt64
    private var activeSize: Int
    /// The active segment's file size: the bytes from `activeSize` to here are zeros.
    private var fileSize: Int
    private var activeCreatedAt: Int64
    private var nextSequence: UInt64
    private var bytesSinceCheckpoint = 0
    private var lastGroupSize = 0
    private let writeBuffer = OutputBuffer(capacity: 1 << 20)
    private var thread: Thread?
    /// Held from open to close so that no second process appends to the same segments.
    fileprivate var directoryLock: DirectoryLock?

    /// Opens (creating if needed) the log in `directory`, recovering from a crash first:
    /// the tail after the last intact batch is truncated and logged.
    ///
    /// With `loadIdempotencyInBackground`, the log takes appends at once and the idempotency
    /// index loads on a thread of its own; until it is ready, `IdempotencyIndex.reserve`
    /// answers `.notReady` (the server then waits for it). A server restarted after a crash
    /// thus accepts traffic within the time recovery itself takes.
    public static func open(
        directory: String, configuration: Configuration = .init(), logger: Logger = Logger(label: "tally.log"),
        loadIdempotencyInBackground: Bool = false, onCommit: (@Sendable (CommitStatistics) -> Void)? = nil
    ) throws -> EventLog {
        try FileIO.makeDirectories(directory)
        let lock = try DirectoryLock(directory: directory)
        let recovered: LogRecovery.Result
        do {
            recovered = try LogRecovery.recover(directory: directory, logger: logger)
        } catch {
            lock.release()
            throw error
        }
        let log = EventLog(directory: directory, configuration: configuration, logger: logger, onCommit: onCommit, recovered: recovered)
        log.directoryLock = lock
        let through = recovered.nextSequence
        let snapshot = log.snapshot()
        if loadIdempotencyInBackground {
            log.start()
            let loader = Thread {
                do {
                    try log.loadIdempotency(through: through, snapshot: snapshot)
                } catch {
                    log.logger.critical(
                        "could not load the idempotency index; client event_ids from before this start may be stored twice",
                        metadata: ["error": "\(error)"])
                    log.idempotency.markReady()
                }
            }
            loader.name = "tally-idempotency-load"
            loader.start()
        } else {
            do {
                try log.loadIdempotency(through: through, snapshot: snapshot)
            } catch {
                FileIO.close(log.fd)
                lock.release()
                throw error
            }
            log.start()
        }
        return log
    }

    private init(
        directory: String, configuration: Configuration, logger: Logger,
        onCommit: (@Sendable (CommitStatistics) -> Void)?, recovered: LogRecovery.Result
    ) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.onCommit = onCommit
        self.segmentRemover = SegmentRemover(directory: directory, logger: logger)
        self.idempotency = IdempotencyIndex(windowSeconds: configuration.idempotencyWindowSeconds)
        self.fd = recovered.fd
        self.activePath = recovered.activePath
        self.activeFirstSequence = recovered.activeFirstSequence
        self.activeSize = recovered.activeSize
        self.fileSize = recovered.fileSize
        self.activeCreatedAt = recovered.activeCreatedAt
        self.nextSequence = recovered.nextSequence
        self.state = Mutex(
            PublishedState(
                segments: recovered.segments, activeDurableSize: recovered.activeSize,
                durableSequence: recovered.nextSequence))
    }

    private func start() {
        let thread = Thread { [self] in self.writerLoop() }
        thread.name = "tally-log-writer"
        thread.qualityOfService = .userInitiated
        self.thread = thread
        thread.start()
    }

    /// Sequence number after the last durable event.
    public var durableSequence: UInt64 { state.withLock { $0.durableSequence } }

    public func snapshot() -> LogSnapshot {
        state.withLock {
            LogSnapshot(
                directory: directory, segments: $0.segments, activeDurableSize: $0.activeDurableSize,
                durableSequence: $0.durableSequence)
        }
    }

    /// Deletes sealed segments all of whose events lie before `sequence` (the compactor's
    /// "compacted through"), and returns their names.
    ///
    /// They leave the log's segment list at once; their files are deleted on a thread of its
    /// own (`SegmentRemover`), because unlinking a 64 MiB segment takes 17–19 ms here, which
    /// the compactor would otherwise spend between rounds with every core idle. A crash
    /// before the files are gone leaves segments the manifest already covers, which recovery
    /// and the next compaction treat as any compacted segment not yet removed.
    ///
    /// Two segments always stay: the active one, whose file recovery resumes in, and any
    /// segment holding events the idempotency snapshots do not yet cover, because the
    /// index is rebuilt from the log past the newest snapshot.
    @discardableResult
    public func removeSegments(before sequence: UInt64) throws -> [String] {
        try segmentRemover.wait()
        let limit = min(sequence, lastPersistedThrough.withLock { $0 })
        let removed: [String] = state.withLock { s in
            var count = 0
            while count + 1 < s.segments.count && s.segments[count + 1].firstSequence <= limit { count += 1 }
            let names = s.segments.prefix(count).map(\.name)
            s.segments.removeFirst(count)
            return names
        }
        guard !removed.isEmpty else { return [] }
        segmentRemover.remove(removed, limit: limit)
        return removed
    }

    /// Waits until the files of every segment `removeSegments` detached are deleted, and
    /// throws the first deletion that failed since the last call.
    public func waitForSegmentRemovals() throws {
        try segmentRemover.wait()
    }

    /// Appends one batch and returns its first sequence number once it is durable.
    public func append(_ batch: PreparedBatch) async throws -> UInt64 {
        try await withCheckedThrowingContinuation { continuation in
            append(batch) { continuation.resume(with: $0) }
        }
    }

    /// Appends one batch and calls `completion` on the writer thread once it is durable (or
    /// failed). For callers on threads of their own, such as the importer's workers.
    public func append(_ batch: PreparedBatch, completion: @escaping @Sendable (Result<UInt64, any Error>) -> Void) {
        queueLock.lock()
        if let poison {
            queueLock.unlock()
            idempotency.release(batch.clientKeys)
            completion(.failure(EventLogError.poisoned(poison)))
            return
        }
        if stopping {
            queueLock.unlock()
            idempotency.release(batch.clientKeys)
            completion(.failure(EventLogError.closed))
            return
        }
        queue.append(PendingAppend(batch: batch, completion: completion))
        queueLock.signal()
        queueLock.unlock()
    }

    /// Writes what is queued, stops the writer thread, records a checkpoint and the
    /// idempotency snapshot, and closes the file. Appends after this throw `closed`.
    public func close() {
        queueLock.lock()
        if stopped {
            queueLock.unlock()
            return
        }
        stopping = true
        queueLock.signal()
        while !stopped { queueLock.wait() }
        queueLock.unlock()
        do {
            try persistIdempotency()
        } catch {
            logger.warning("could not write the idempotency snapshot at close", metadata: ["error": "\(error)"])
        }
        do {
            try segmentRemover.wait()
        } catch {
            logger.warning("could not delete a compacted log segment", metadata: ["error": "\(error)"])
        }
    }

    private func writerLoop() {
        while true {
            queueLock.lock()
            while queue.isEmpty && !stopping { queueLock.wait() }
            if queue.isEmpty && stopping {
                queueLock.unlock()
                break
            }
            if configuration.groupCommitDelayMicros > 0 && lastGroupSize >= 4 && !stopping {
                queueLock.unlock()
                usleep(UInt32(configuration.groupCommitDelayMicros))
                queueLock.lock()
            }
            let group = queue
            lastGroupSize = group.count
            queue.removeAll(keepingCapacity: true)
            queueLock.unlock()
            commit(group)
        }
        do {
            try writeCheckpoint()
        } catch {
            logger.warning("could not write the log checkpoint at close", metadata: ["error": "\(error)"])
        }
        try? cutFilledSpace()
        if configuration.fsync { _ = try? FileIO.fdatasync(fd, path: activePath) }
        FileIO.close(fd)
        directoryLock?.release()
        queueLock.lock()
        stopped = true
        queueLock.broadcast()
        queueLock.unlock()
    }

    private func commit(_ group: [PendingAppend]) {
        if let poison {
            for item in group {
                idempotency.release(item.batch.clientKeys)
                item.completion(.failure(EventLogError.poisoned(poison)))
            }
            return
        }
        let startSequence = nextSequence
        let startSize = activeSize
        do {
            try rollIfNeeded()
            writeBuffer.removeAll()
            var firstSequences: [UInt64] = []
            firstSequences.reserveCapacity(group.count)
            var sequence = nextSequence
            var events = 0
            for item in group {
                var header = item.batch.header
                header.firstSequence = sequence
                if !item.batch.clientKeys.isEmpty { header.flags |= BatchHeader.hasClientEventIds }
                let at = writeBuffer.count
                item.batch.frame.withUnsafeBytes { writeBuffer.append($0) }
                header.write(to: writeBuffer.base + at)
                firstSequences.append(sequence)
                sequence += UInt64(header.eventCount)
                events += Int(header.eventCount)
            }
            try fillAhead(for: writeBuffer.count)
            try FileIO.pwriteAll(fd, writeBuffer.bytes, at: activeSize, path: activePath)
            fileSize = max(fileSize, activeSize + writeBuffer.count)
            let fsyncStart = monotonicNanos()
            if configuration.fsync { try FileIO.fdatasync(fd, path: activePath) }
            let fsyncNanos = monotonicNanos() - fsyncStart
            activeSize += writeBuffer.count
            nextSequence = sequence
            bytesSinceCheckpoint += writeBuffer.count
            let size = activeSize
            state.withLock {
                $0.activeDurableSize = size
                $0.durableSequence = sequence
            }
            let receivedSecond = UInt32(clamping: currentMicros() / 1_000_000)
            // One commit for the whole group: a snapshot taken between two batches' commits
            // would otherwise claim the group's end while missing the later batches' ids, and
            // a crash before the next snapshot would lose them (the replay starts at its end).
            idempotency.commit(group.map(\.batch.clientKeys), receivedSecond: receivedSecond, through: sequence)
            for (item, first) in zip(group, firstSequences) { item.completion(.success(first)) }
            onCommit?(CommitStatistics(batches: group.count, events: events, bytes: writeBuffer.count, fsyncNanoseconds: fsyncNanos))
            if bytesSinceCheckpoint >= configuration.checkpointEveryBytes { try? writeCheckpoint() }
        } catch {
            // Undo a partial write so the file ends at the last acknowledged batch.
            nextSequence = startSequence
            do {
                try FileIO.truncate(fd, to: startSize, path: activePath)
                activeSize = startSize
                fileSize = startSize
                logger.error("log append failed; batch rejected", metadata: ["error": "\(error)"])
            } catch let truncateError {
                queueLock.lock()
                poison = "\(error); then \(truncateError)"
                queueLock.unlock()
                logger.critical("log append failed and could not be undone; rejecting writes", metadata: ["error": "\(truncateError)"])
            }
            for item in group {
                idempotency.release(item.batch.clientKeys)
                item.completion(.failure(error))
            }
        }
    }

    /// Groups up to this size are written into zero-filled space.
    static let fillAheadLargestWrite = 256 << 10
    /// How far ahead of the write position the writer fills.
    static let fillAheadBytes = 1 << 20
    private static let zeros = [UInt8](repeating: 0, count: fillAheadBytes)

    /// Before a small write that would grow the file, fills the next MiB with zeros. The fill
    /// becomes durable with the write's own `fdatasync`; the writes after it land inside the
    /// file and their `fdatasync`s flush data only. Large writes just grow the file: their
    /// `fdatasync` is amortized over many events, and filling would double their I/O.
    private func fillAhead(for count: Int) throws {
        guard configuration.fsync, activeSize + count > fileSize, count <= Self.fillAheadLargestWrite else { return }
        let target = activeSize + count + Self.fillAheadBytes
        var at = max(fileSize, activeSize)
        while at < target {
            let n = min(target - at, Self.zeros.count)
            try Self.zeros.withUnsafeBytes { try FileIO.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: at, path: activePath) }
            at += n
        }
        fileSize = target
    }

    /// Cuts the zeros past the last batch, so that a segment at rest ends at its last batch.
    private func cutFilledSpace() throws {
        guard fileSize > activeSize else { return }
        try FileIO.truncate(fd, to: activeSize, path: activePath)
        fileSize = activeSize
    }

    private func rollIfNeeded() throws {
        guard activeSize > SegmentHeader.size else { return }
        let tooBig = activeSize >= configuration.segmentMaxBytes
        let tooOld = currentMicros() - activeCreatedAt >= Int64(configuration.segmentMaxAgeSeconds) * 1_000_000
        guard tooBig || tooOld else { return }
        // The sealed segment ends at its last batch, durably, before the next one exists.
        try cutFilledSpace()
        if configuration.fsync { try FileIO.fdatasync(fd, path: activePath) }
        let (newFD, path, createdAt) = try LogRecovery.createSegment(directory: directory, firstSequence: nextSequence)
        FileIO.close(fd)
        fd = newFD
        activePath = path
        activeFirstSequence = nextSequence
        activeSize = SegmentHeader.size
        fileSize = SegmentHeader.size
        activeCreatedAt = createdAt
        let name = SegmentName.fileName(firstSequence: nextSequence)
        let first = nextSequence
        state.withLock {
            $0.segments.append((name, first))
            $0.activeDurableSize = SegmentHeader.size
        }
        try writeCheckpoint()
        logger.info("rolled to a new log segment", metadata: ["segment": "\(name)"])
    }

    private func writeCheckpoint() throws {
        let checkpoint = LogCheckpoint(
            segmentFirstSequence: activeFirstSequence, offset: UInt64(activeSize), nextSequence: nextSequence)
        try FileIO.writeAtomically(checkpoint.encoded(), to: directory + "/" + LogCheckpoint.fileName, durable: false)
        bytesSinceCheckpoint = 0
    }
}

/// Where recovery may start scanning: a durable offset in the active segment.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `TCKP` |
/// | 4 | 4 | version (1) |
/// | 8 | 8 | first sequence of the segment it refers to |
/// | 16 | 8 | byte offset in that segment up to which every batch was fsynced |
/// | 24 | 8 | sequence number after the last event before that offset |
/// | 32 | 4 | CRC32C of bytes 0..<32 |
public struct LogCheckpoint: Equatable, Sendable {
    public static let fileName = "checkpoint"
    public static let size = 36
    static let magic: UInt32 = 0x504B_4354  // "TCKP"

    public var segmentFirstSequence: UInt64
    public var offset: UInt64
    public var nextSequence: UInt64

    public init(segmentFirstSequence: UInt64, offset: UInt64, nextSequence: UInt64) {
        self.segmentFirstSequence = segmentFirstSequence
        self.offset = offset
        self.nextSequence = nextSequence
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: LogCheckpoint.size)
        bytes.withUnsafeMutableBytes { p in
            p.storeBytes(of: LogCheckpoint.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            p.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: segmentFirstSequence.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: offset.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: nextSequence.littleEndian, toByteOffset: 24, as: UInt64.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<32]))
            p.storeBytes(of: crc.littleEndian, toByteOffset: 32, as: UInt32.self)
        }
        return bytes
    }

    public static func parse(_ bytes: [UInt8]) -> LogCheckpoint? {
        guard bytes.count == size else { return nil }
        return bytes.withUnsafeBytes { p -> LogCheckpoint? in
            guard UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == 1,
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
                    == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<32]))
            else { return nil }
            return LogCheckpoint(
                segmentFirstSequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                offset: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                nextSequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }
    }
}

/// An exclusive `flock` on `<log>/LOCK`, released by close or by the process ending (so a
/// kill -9 never leaves a stale lock behind).
final class DirectoryLock {
    private var fd: Int32

    init(directory: String) throws {
        let path = directory + "/LOCK"
        fd = try FileIO.open(path, flags: O_RDWR | O_CREAT)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let owner = (try? FileIO.readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            // release() marks the descriptor closed: a class whose init throws after its
            // properties are set still runs deinit, and closing the number twice would close
            // whatever file another thread opened in between.
            release()
            throw EventLogError.locked(directory: directory, owner: owner.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    func release() {
        guard fd >= 0 else { return }
        FileIO.close(fd)
        fd = -1
    }

    deinit { release() }
}
