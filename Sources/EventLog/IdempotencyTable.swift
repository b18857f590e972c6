/// The committed client ids of one project: an open-addressing hash table of 32-byte slots
/// (the 128-bit fingerprint, the event's timestamp, its receive second), linearly probed.
///
/// A project that imports or receives millions of client ids within the window keeps every
/// one of them here, so the slot is as small as the answer needs: a duplicate is answered with
/// the stored timestamp, and the receive second decides expiry. The table is sized to any slot
/// count (not a power of two) and filled to at most 80%, so 5 M ids take about 200 MB rather
/// than the 330 MB a `Dictionary` of the same entries holds. Expiry removes entries in place,
/// without a second table.
package struct IdempotencyTable {
    struct Slot {
        var high: UInt64
        var low: UInt64
        var timestamp: Int64
        /// 0: empty. Stored seconds are at least 1.
        var second: UInt32
    }

    private var slots: [Slot]
    package private(set) var count = 0

    package init(capacity: Int = 0) {
        slots = [Slot](repeating: Slot(high: 0, low: 0, timestamp: 0, second: 0), count: Self.slotCount(for: capacity))
    }

    /// Slots for `count` entries at 75% load.
    static func slotCount(for count: Int) -> Int { max(16, count + count / 3 + 1) }

    @inline(__always)
    private func home(_ key: IdempotencyKey) -> Int {
        Int(truncatingIfNeeded: key.high.multipliedFullWidth(by: UInt64(slots.count)).high)
    }

    /// The slot holding `key`, or the empty slot its probe ends at.
    @inline(__always)
    private func probe(_ key: IdempotencyKey) -> (found: Bool, slot: Int) {
        var slot = home(key)
        let n = slots.count
        return slots.withUnsafeBufferPointer { s in
            while true {
                if s[slot].second == 0 { return (false, slot) }
                if s[slot].high == key.high && s[slot].low == key.low { return (true, slot) }
                slot += 1
                if slot == n { slot = 0 }
            }
        }
    }

    package func find(_ key: IdempotencyKey) -> IdempotencyIndex.Entry? {
        let (found, slot) = probe(key)
        guard found else { return nil }
        return IdempotencyIndex.Entry(timestamp: slots[slot].timestamp, receivedSecond: slots[slot].second)
    }

    /// Adds `key`, or replaces its entry.
    package mutating func insert(_ key: IdempotencyKey, _ entry: IdempotencyIndex.Entry) {
        let (found, slot) = probe(key)
        slots[slot] = Slot(high: key.high, low: key.low, timestamp: entry.timestamp, second: max(1, entry.receivedSecond))
        guard !found else { return }
        count += 1
        if count * 5 > slots.count * 4 { resize(slots.count < 1 << 20 ? slots.count * 2 : slots.count + slots.count / 2) }
    }

    /// Makes room for `total` entries with at most one resize.
    mutating func reserve(_ total: Int) {
        let wanted = Self.slotCount(for: total)
        if wanted > slots.count { resize(wanted) }
    }

    private mutating func resize(_ newCount: Int) {
        let old = slots
        slots = [Slot](repeating: Slot(high: 0, low: 0, timestamp: 0, second: 0), count: newCount)
        old.withUnsafeBufferPointer { o in
            slots.withUnsafeMutableBufferPointer { s in
                for entry in o where entry.second != 0 {
                    var slot = Int(truncatingIfNeeded: entry.high.multipliedFullWidth(by: UInt64(newCount)).high)
                    while s[slot].second != 0 {
                        slot += 1
                        if slot == newCount { slot = 0 }
                    }
                    s[slot] = entry
                }
            }
        }
    }

    /// Removes every entry received before `cutoff`, in place; returns the oldest receive
    /// second left (`UInt32.max` when empty).
    ///
    /// Linear probing needs every entry reachable from its home slot without crossing an
    /// empty one. After the expired slots are emptied, the slots are walked once in probe
    /// order, starting after a slot that was already empty (so no probe run wraps past the
    /// start), and each entry moves to the first empty slot between its home and where it
    /// is.
    package mutating func removeAll(receivedBefore cutoff: UInt32) -> UInt32 {
        let n = slots.count
        var oldest = UInt32.max
        var removed = 0
        slots.withUnsafeMutableBufferPointer { s in
            var start = 0
            while s[start].second != 0 { start += 1 }
            for i in 0..<n where s[i].second != 0 {
                if s[i].second < cutoff {
                    s[i].second = 0
                    removed += 1
                } else if s[i].second < oldest {
                    oldest = s[i].second
                }
            }
            var i = start + 1
            if i == n { i = 0 }
            for _ in 0..<n {
                if s[i].second != 0 {
                    var slot = Int(truncatingIfNeeded: s[i].high.multipliedFullWidth(by: UInt64(n)).high)
                    while slot != i && s[slot].second != 0 {
                        slot += 1
                        if slot == n { slot = 0 }
                    }
                    if slot != i {
                        s[slot] = s[i]
                        s[i].second = 0
                    }
                }
                i += 1
                if i == n { i = 0 }
            }
        }
        count -= removed
        return oldest
    }

    /// Calls `body` with every entry, in slot order.
    package func forEach(_ body: (IdempotencyKey, IdempotencyIndex.Entry) -> Void) {
        for slot in slots where slot.second != 0 {
            body(IdempotencyKey(high: slot.high, low: slot.low), IdempotencyIndex.Entry(timestamp: slot.timestamp, receivedSecond: slot.second))
        }
    }

    /// The smallest receive second held (`UInt32.max` when empty).
    var oldestSecond: UInt32 {
        var oldest = UInt32.max
        for slot in slots where slot.second != 0 && slot.second < oldest { oldest = slot.second }
        return oldest
    }
}
