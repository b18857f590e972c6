import Synchronization

/// The 128-bit fingerprint of a client `event_id`.
public struct IdempotencyKey: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(_ id: UnsafeRawBufferPointer) {
        (high, low) = Murmur3.hash128(id, seed: 0x7461_6c6c_79)
    }

    public init(_ id: String) {
        var id = id
        self = id.withUTF8 { IdempotencyKey(UnsafeRawBufferPointer($0)) }
    }

    package init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }
}

/// A client id in a prepared batch: its fingerprint, the record's index and its timestamp.
public struct BatchClientKey: Sendable {
    public var key: IdempotencyKey
    public var index: UInt32
    public var timestamp: Int64

    public init(key: IdempotencyKey, index: UInt32, timestamp: Int64) {
        self.key = key
        self.index = index
        self.timestamp = timestamp
    }
}

/// Makes client `event_id`s idempotency keys: each is stored once per project.
///
/// A request reserves its ids before appending. A second request with an id that is durable
/// gets the stored event back; one with an id still being written waits for that write and then
/// gets the same answer (or a failure if that write failed). The log's writer thread commits
/// the keys right after the fsync, under this index's lock, so the index never runs ahead of or
/// behind what is durable. Entries older than the window are forgotten: a repeat after that is
/// stored again (documented in docs/INGEST.md).
public final class IdempotencyIndex: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The stored event's timestamp, which a duplicate is answered with.
        public var timestamp: Int64
        /// Receive time in seconds since the epoch, for expiry.
        public var receivedSecond: UInt32

        package init(timestamp: Int64, receivedSecond: UInt32) {
            self.timestamp = timestamp
            self.receivedSecond = receivedSecond
        }
    }

    /// A write in flight that other requests with the same id wait for.
    public final class InFlight: Sendable {
        enum Outcome { case stored(Entry), failed }
        private let state = Mutex<(outcome: Outcome?, waiters: [CheckedContinuation<Entry?, Never>])>((nil, []))

        func finish(_ outcome: Outcome) {
            let waiters = state.withLock { s -> [CheckedContinuation<Entry?, Never>] in
                s.outcome = outcome
                defer { s.waiters = [] }
                return s.waiters
            }
            let entry: Entry? = if case .stored(let e) = outcome { e } else { nil }
            for w in waiters { w.resume(returning: entry) }
        }

        /// The stored entry once the other write is durable; nil if it failed.
        public func wait() async -> Entry? {
            await withCheckedContinuation { c in
                let ready: Outcome? = state.withLock { s in
                    if let o = s.outcome { return o }
                    s.waiters.append(c)
                    return nil
                }
                if let ready {
                    if case .stored(let e) = ready { c.resume(returning: e) } else { c.resume(returning: nil) }
                }
            }
        }
    }

    public enum Reservation {
        /// The index is still loading after a start: wait with `waitUntilReady` and retry.
        case notReady
        /// New id: it is now reserved for the caller, who must append or `release` it.
        case reserved
        /// Already stored.
        case stored(Entry)
        /// Being written by another request.
        case inFlight(InFlight)
    }

    struct State {
        var committed = IdempotencyTable()
        var pending: [IdempotencyKey: InFlight] = [:]
        /// Entries committed since the last snapshot, in commit order.
        var unpersisted: [(IdempotencyKey, Entry)] = []
        /// Every durable event before this sequence number is reflected in `committed`.
        var indexedThrough: UInt64 = 0
        var oldestSecond: UInt32 = .max
    }

    let state = Mutex(State())
    public let windowSeconds: Int
    private let readiness = Mutex<(ready: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    /// False while the index is still being loaded after a start; ids cannot be checked yet.
    public var isReady: Bool { readiness.withLock { $0.ready } }

    /// Returns once the index is loaded.
    public func waitUntilReady() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = readiness.withLock { r -> Bool in
                if !r.ready { r.waiters.append(c) }
                return r.ready
            }
            if ready { c.resume() }
        }
    }

    package func markReady() {
        let waiters = readiness.withLock { r in
            r.ready = true
            defer { r.waiters = [] }
            return r.waiters
        }
        for w in waiters { w.resume() }
    }

    func reserveCapacity(_ n: Int) {
        state.withLock { $0.committed.reserve(n) }
    }

    /// Inserts the packed entries of a snapshot file (see `IdempotencySnapshots`): key high,
    /// key low, then `timestampOffset` bytes in the timestamp and the receive second.
    package func restoreSnapshot(_ packed: UnsafeRawBufferPointer, count: Int, entrySize: Int, timestampOffset: Int, cutoff: UInt32) {
        state.withLock { s in
            for i in 0..<count {
                let at = i * entrySize
                let second = UInt32(littleEndian: packed.loadUnaligned(fromByteOffset: at + timestampOffset + 8, as: UInt32.self))
                guard second >= cutoff else { continue }
                let key = IdempotencyKey(
                    high: UInt64(littleEndian: packed.loadUnaligned(fromByteOffset: at, as: UInt64.self)),
                    low: UInt64(littleEndian: packed.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
                s.committed.insert(
                    key,
                    Entry(timestamp: Int64(littleEndian: packed.loadUnaligned(fromByteOffset: at + timestampOffset, as: Int64.self)), receivedSecond: second))
                if second < s.oldestSecond { s.oldestSecond = second }
            }
        }
    }

    public init(windowSeconds: Int = 7 * 86_400) {
        self.windowSeconds = windowSeconds
    }

    public var count: Int { state.withLock { $0.committed.count } }

    public func reserve(_ key: IdempotencyKey) -> Reservation {
        guard isReady else { return .notReady }
        return state.withLock { s in
            if let entry = s.committed.find(key) { return .stored(entry) }
            if let inFlight = s.pending[key] { return .inFlight(inFlight) }
            s.pending[key] = InFlight()
            return .reserved
        }
    }

    /// Gives up reservations that will not be appended (the request failed before the log).
    public func release(_ keys: [BatchClientKey]) {
        guard !keys.isEmpty else { return }
        let released = state.withLock { s in keys.compactMap { s.pending.removeValue(forKey: $0.key) } }
        for r in released { r.finish(.failed) }
    }

    /// Called by the writer thread after the fsync that made a group of batches durable, with
    /// each batch's client keys and the sequence after the group: the ids and how far they
    /// reach change together, under one lock, so a snapshot never sees one without the other.
    func commit(_ batches: [[BatchClientKey]], receivedSecond: UInt32, through: UInt64) {
        var finished: [(InFlight, Entry)] = []
        state.withLock { s in
            for k in batches.joined() {
                let entry = Entry(timestamp: k.timestamp, receivedSecond: receivedSecond)
                s.committed.insert(k.key, entry)
                s.unpersisted.append((k.key, entry))
                if let inFlight = s.pending.removeValue(forKey: k.key) { finished.append((inFlight, entry)) }
            }
            if receivedSecond < s.oldestSecond { s.oldestSecond = receivedSecond }
            if through > s.indexedThrough { s.indexedThrough = through }
        }
        for (inFlight, entry) in finished { inFlight.finish(.stored(entry)) }
    }

    func markIndexed(through: UInt64) {
        state.withLock { if through > $0.indexedThrough { $0.indexedThrough = through } }
    }

    /// Inserts an entry found while replaying the log or loading a snapshot.
    func restore(_ key: IdempotencyKey, _ entry: Entry, persisted: Bool) {
        state.withLock { s in
            s.committed.insert(key, entry)
            if !persisted { s.unpersisted.append((key, entry)) }
            if entry.receivedSecond < s.oldestSecond { s.oldestSecond = entry.receivedSecond }
        }
    }

    /// Takes the entries not yet written to a snapshot, with the sequence they cover.
    func takeUnpersisted() -> (entries: [(IdempotencyKey, Entry)], through: UInt64) {
        state.withLock { s in
            defer { s.unpersisted = [] }
            return (s.unpersisted, s.indexedThrough)
        }
    }

    func putBackUnpersisted(_ entries: [(IdempotencyKey, Entry)]) {
        state.withLock { $0.unpersisted.insert(contentsOf: entries, at: 0) }
    }

    var indexedThrough: UInt64 { state.withLock { $0.indexedThrough } }

    /// Forgets entries received before `nowSecond - windowSeconds`.
    func expire(nowSecond: UInt32) {
        let cutoff = nowSecond > UInt32(windowSeconds) ? nowSecond - UInt32(windowSeconds) : 0
        state.withLock { s in
            guard s.oldestSecond < cutoff else { return }
            s.oldestSecond = s.committed.removeAll(receivedBefore: cutoff)
        }
    }
}
