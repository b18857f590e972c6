/// The distinct strings of one batch being built, in first-use order: the string table of a
/// format-2 payload (see ``BatchHeader``).
///
/// A batch of the import (4 MiB of NDJSON, about 17,000 generated events) refers to its table
/// about 156,000 times, with event names, bot ids, property keys and values, but holds only
/// about 770 distinct strings. Written once each and referenced by index, they leave the
/// compactor an array lookup per string where it hashed and probed its per-block tables, and
/// the payload shrinks by a third before compression. The cost is a lookup here per string,
/// in a table small enough to stay in the core's cache. Ids are written inline
/// (`BatchBuilder.appendInlineString`).
///
/// The index is open addressing over a power-of-two slot array, each slot the hash's high 32
/// bits and the string's index plus one (0 is empty), at most three quarters full. Storage is raw
/// memory and exclusivity is unchecked (one thread builds a batch): every string of every
/// ingested event passes through here, and arrays and checked properties cost uniqueness,
/// bounds and access checks per lookup.
public final class BatchStringWriter {
    /// What the payload's table holds after its leading count: per string a varint length
    /// and the bytes.
    let table = OutputBuffer(capacity: 16 * 1024)
    /// Per string: its bytes' offset in `table` (high half) and length (low half).
    @exclusivity(unchecked) private var spans: UnsafeMutablePointer<UInt64>
    /// Per string: the slot it sits in, so `reset` clears only the slots in use.
    @exclusivity(unchecked) private var slotOf: UnsafeMutablePointer<UInt32>
    /// Room in `spans` and `slotOf`.
    @exclusivity(unchecked) private var capacity = 1024
    @exclusivity(unchecked) private var slots: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private var slotCount = 2048
    @exclusivity(unchecked) public private(set) var count = 0
    /// Bytes of all references so far, as if every string were written inline: what a
    /// size limit on events measures.
    @exclusivity(unchecked) public private(set) var referencedBytes = 0

    public init() {
        spans = .allocate(capacity: capacity)
        slotOf = .allocate(capacity: capacity)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: 0, count: slotCount)
    }

    deinit {
        spans.deallocate()
        slotOf.deallocate()
        slots.deallocate()
    }

    /// The index of `bytes` in the table, adding it if new. `recent` is a guess (the index
    /// this field of the previous event had), checked before hashing: consecutive events
    /// share users, sessions, bots, keys and many values, and a compare with a string just
    /// used is cheaper than a hash and a probe.
    @inline(__always)
    public func reference(_ bytes: UnsafeRawBufferPointer, recent: inout UInt32) -> UInt32 {
        if Int(recent) < count && equals(Int(recent), bytes) {
            referencedBytes &+= bytes.count
            return recent
        }
        recent = reference(bytes)
        return recent
    }

    /// The index of `bytes` in the table, adding it if new.
    @inline(__always)
    public func reference(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        referencedBytes &+= bytes.count
        let hash = ByteHashing.hash(bytes)
        let tag = hash >> 32
        let mask = slotCount - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let word = slots[slot]
            if word == 0 { return insert(bytes, hash: hash, slot: slot) }
            if word >> 32 == tag {
                let index = Int(UInt32(truncatingIfNeeded: word)) - 1
                if equals(index, bytes) { return UInt32(index) }
            }
            slot = (slot + 1) & mask
        }
    }

    @inline(__always)
    private func equals(_ index: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let span = spans[index]
        let length = Int(UInt32(truncatingIfNeeded: span))
        guard length == bytes.count else { return false }
        guard length > 0 else { return true }
        return ByteHashing.bytesEqual(table.base + Int(span >> 32), bytes.baseAddress!, count: length)
    }

    @inline(never)
    private func insert(_ bytes: UnsafeRawBufferPointer, hash: UInt64, slot: Int) -> UInt32 {
        if count == capacity {
            capacity *= 2
            spans = Self.grown(spans, count: count, to: capacity)
            slotOf = Self.grown(slotOf, count: count, to: capacity)
        }
        let index = count
        table.append(varint: UInt64(bytes.count))
        spans[index] = UInt64(table.count) << 32 | UInt64(bytes.count)
        if bytes.count > 0 { table.append(bytes) }
        slots[slot] = hash & 0xFFFF_FFFF_0000_0000 | UInt64(index + 1)
        slotOf[index] = UInt32(slot)
        count += 1
        if count * 4 > slotCount * 3 { rehash(slotCount * 2) }
        return UInt32(index)
    }

    private static func grown<T>(_ old: UnsafeMutablePointer<T>, count: Int, to capacity: Int) -> UnsafeMutablePointer<T> {
        let new = UnsafeMutablePointer<T>.allocate(capacity: capacity)
        new.moveInitialize(from: old, count: count)
        old.deallocate()
        return new
    }

    private func rehash(_ newCount: Int) {
        slots.deallocate()
        slotCount = newCount
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: 0, count: slotCount)
        let mask = slotCount - 1
        for index in 0..<count {
            let span = spans[index]
            let bytes = UnsafeRawBufferPointer(start: table.base + Int(span >> 32), count: Int(UInt32(truncatingIfNeeded: span)))
            let hash = ByteHashing.hash(bytes)
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = hash & 0xFFFF_FFFF_0000_0000 | UInt64(index + 1)
            slotOf[index] = UInt32(slot)
        }
    }

    /// Appends the table as a payload starts: its byte length (`u32`), the string count and
    /// the strings.
    func write(into out: OutputBuffer) {
        let lengthAt = out.count
        out.append(littleEndian: UInt32(0))
        out.append(varint: UInt64(count))
        out.append(table.bytes)
        (out.base + lengthAt).storeBytes(of: UInt32(out.count - lengthAt - 4).littleEndian, as: UInt32.self)
    }

    /// Empties the table for the next batch, clearing only the slots in use: a builder that
    /// once held a large batch keeps its slot array, and small batches do not pay to zero it.
    public func reset() {
        if count * 8 < slotCount {
            for index in 0..<count { slots[Int(slotOf[index])] = 0 }
        } else {
            slots.update(repeating: 0, count: slotCount)
        }
        count = 0
        table.removeAll()
        referencedBytes = 0
    }
}

/// The string table at the start of a format-2 payload, parsed: where each string's bytes
/// lie in the payload. Records refer to strings by index into it.
public struct BatchStringTable {
    /// Per string: the offset of its bytes in the payload (high half) and its length.
    public private(set) var spans: [UInt64] = []
    /// Where the records start in the payload.
    public private(set) var recordsOffset = 0

    public init() {}

    public var count: Int { spans.count }

    /// Parses the table at the start of `payload`, reusing this value's storage.
    public mutating func load(_ payload: UnsafeRawBufferPointer) throws(RecordDecodingError) {
        spans.removeAll(keepingCapacity: true)
        var r = ByteReader(payload)
        guard let length = r.read(UInt32.self), Int(length) <= r.remaining else {
            throw RecordDecodingError(offset: 0, reason: "string table length runs past the payload")
        }
        recordsOffset = 4 + Int(length)
        var table = ByteReader(UnsafeRawBufferPointer(rebasing: payload[4..<recordsOffset]))
        // Each string takes at least its one-byte length, which bounds a count that lies.
        guard let count = table.readVarint(), count <= UInt64(table.remaining) else {
            throw RecordDecodingError(offset: 4, reason: "bad string table count")
        }
        spans.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            guard let n = table.readVarint(), n <= UInt64(table.remaining) else {
                throw RecordDecodingError(offset: 4 + table.offset, reason: "string \(i) of the string table runs past it")
            }
            spans.append(UInt64(4 + table.offset) << 32 | n)
            _ = table.readBytes(Int(n))
        }
        guard table.isAtEnd else {
            throw RecordDecodingError(offset: 4 + table.offset, reason: "\(table.remaining) trailing bytes in the string table")
        }
    }

    /// String `index` of the table within `payload` (the one it was loaded from), or nil
    /// past the end.
    @inline(__always)
    public func string(_ index: UInt64, in payload: UnsafeRawPointer) -> UnsafeRawBufferPointer? {
        guard index < UInt64(spans.count) else { return nil }
        let span = spans.withUnsafeBufferPointer { $0[Int(index)] }
        return UnsafeRawBufferPointer(start: payload + Int(span >> 32), count: Int(UInt32(truncatingIfNeeded: span)))
    }
}
