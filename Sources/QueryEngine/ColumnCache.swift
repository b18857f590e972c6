package import ColumnStore
import Foundation
import Synchronization

/// Decoded columns of block files kept between queries, least recently used out first, within a
/// byte budget: what makes a warm query skip the read, checksum, decompression and decoding.
///
/// Only file-backed blocks are cached, keyed by their path (block names carry the manifest
/// generation that published them, so a path never names two different blocks). The log
/// tail's in-memory blocks change with every snapshot and are never cached.
public final class ColumnCache: @unchecked Sendable {
    // Unchecked: every access to the mutable state holds `lock`.
    public static let shared = ColumnCache(budgetBytes: 512 << 20)

    package enum Value {
        case column(DecodedColumn?)
        case persons([UInt32])
    }

    private let lock = NSLock()
    private var entries: [String: (value: Value, bytes: Int, used: UInt64)] = [:]
    private var clock: UInt64 = 0
    public private(set) var bytes = 0
    private var budget: Int
    /// Bytes running queries hold in state of their own (see `hold`).
    private var held = 0
    private var residentTarget: Int?
    /// When `relieve` last trimmed the allocator's arenas.
    private let lastTrim = Mutex<ContinuousClock.Instant?>(nil)

    public init(budgetBytes: Int) {
        budget = budgetBytes
    }

    /// The most the cache holds; lowering it evicts down to the new limit at once.
    public var budgetBytes: Int {
        get { lock.withLock { budget } }
        set {
            lock.withLock {
                budget = newValue
                evict()
            }
        }
    }

    package func get(_ key: String) -> Value? {
        lock.lock()
        defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        clock += 1
        entry.used = clock
        entries[key] = entry
        return entry.value
    }

    package func put(_ key: String, _ value: Value, bytes size: Int) {
        guard size <= budgetBytes / 4 else { return }
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        if let old = entries[key] { bytes -= old.bytes }
        entries[key] = (value, size, clock)
        bytes += size
        evict()
    }

    /// The process's resident memory this cache keeps out of: when set, the cache holds at
    /// most what the rest of the process leaves below it. The rest is the id dictionaries,
    /// the idempotency index and whatever running queries hold, which grow with the data and
    /// the load; the cache is the part that can give way. Nil: only the byte budget applies.
    public var residentTargetBytes: Int? {
        get { lock.withLock { residentTarget } }
        set {
            lock.withLock {
                residentTarget = newValue
                evict()
            }
        }
    }

    /// What the cache may hold now. The caller holds `lock`.
    private func limit() -> Int {
        var limit = budget - held
        if let residentTarget, let resident = ProcessMemory.residentBytes() {
            limit = min(limit, residentTarget - (resident - bytes))
        }
        return max(0, limit)
    }

    /// Past the limit, evicts the least recently used until a tenth of it is free. The caller
    /// holds `lock`.
    private func evict() {
        let limit = limit()
        guard bytes > limit else { return }
        for (k, e) in entries.sorted(by: { $0.value.used < $1.value.used }) {
            guard bytes > limit - limit / 10 else { break }
            entries[k] = nil
            bytes -= e.bytes
        }
    }

    /// A query holds `count` more bytes of state of its own (a funnel's step events): the
    /// cache keeps that much less until `release`. A large query then gives its memory to
    /// what it needs rather than to columns kept for later, so the process stays within
    /// about the cache's budget plus its resident data.
    public func hold(_ count: Int) {
        lock.withLock {
            held += count
            evict()
        }
    }

    public func release(_ count: Int) {
        lock.withLock { held -= count }
    }

    /// Called by long queries between units of work: over the resident target, evicts what
    /// the target leaves no room for and hands freed memory back to the kernel. A query's
    /// blocks are decoded, used and freed one after another, and glibc keeps what they freed
    /// in its arenas, so without this the process grows by a few blocks' worth of columns at
    /// a time until the query ends.
    public func relieve() {
        guard let target = residentTargetBytes, let resident = ProcessMemory.residentBytes(), resident > target else { return }
        lock.withLock { evict() }
        // A trim walks every arena (tens of ms on a large heap): at most one a second.
        let now = ContinuousClock.now
        guard lastTrim.withLock({ last in
            guard last.map({ now - $0 > .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }) else { return }
        FreedMemory.giveBack()
    }

    public func removeAll() {
        lock.lock()
        entries = [:]
        bytes = 0
        lock.unlock()
    }

    static func size(of column: DecodedColumn?) -> Int {
        guard let column else { return 16 }
        var total = (column.presence?.count ?? 0) * 8
        switch column.values {
        case .ints(let v): total += v.count * 8
        case .doubles(let v): total += v.count * 8
        case .bools(let v): total += v.count
        case .codes(let codes, let dictionary):
            switch codes {
            case .u8(let c): total += c.count
            case .u16(let c): total += c.count * 2
            case .u32(let c): total += c.count * 4
            }
            total += dictionary.blob.count + dictionary.ends.count * 4
        case .presenceOnly: break
        }
        return total
    }
}

/// The process's own memory use, as the kernel counts it.
public enum ProcessMemory {
    /// Resident bytes (`/proc/self/statm`'s second field times the page size); nil where
    /// that file cannot be read.
    public static func residentBytes() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 128) }
        guard n > 0 else { return nil }
        let fields = buffer[0..<n].split(separator: 0x20)
        guard fields.count >= 2, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * sysconf(Int32(_SC_PAGESIZE))
    }
}
