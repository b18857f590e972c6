import ColumnStore
import Foundation

/// Decoded columns of block files kept between queries, least recently used out first, within a
/// byte budget: what makes a warm query skip the read, checksum, decompression and decoding.
///
/// Only file-backed blocks are cached, keyed by their path (block names carry the manifest
/// generation that published them, so a path never names two different blocks). The log
/// tail's in-memory blocks change with every snapshot and are never cached.
public final class ColumnCache: @unchecked Sendable {
    // Unchecked: every access to the mutable state holds `lock`.
    public static let shared = ColumnCache(budgetBytes: 512 << 20)

    enum Value {
        case column(DecodedColumn?)
        case persons([UInt32])
    }

    private let lock = NSLock()
    private var entries: [String: (value: Value, bytes: Int, used: UInt64)] = [:]
    private var clock: UInt64 = 0
    public private(set) var bytes = 0
    private var budget: Int

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

    func get(_ key: String) -> Value? {
        lock.lock()
        defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        clock += 1
        entry.used = clock
        entries[key] = entry
        return entry.value
    }

    func put(_ key: String, _ value: Value, bytes size: Int) {
        guard size <= budgetBytes / 4 else { return }
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        if let old = entries[key] { bytes -= old.bytes }
        entries[key] = (value, size, clock)
        bytes += size
        evict()
    }

    /// Past the budget, evicts the least recently used until a tenth of it is free. The caller
    /// holds `lock`.
    private func evict() {
        guard bytes > budget else { return }
        for (k, e) in entries.sorted(by: { $0.value.used < $1.value.used }) {
            guard bytes > budget - budget / 10 else { break }
            entries[k] = nil
            bytes -= e.bytes
        }
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
