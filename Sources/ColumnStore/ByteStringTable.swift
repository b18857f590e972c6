#if canImport(Glibc)
import Glibc
#endif
public import EventLog

/// Interns byte strings to dense ids (0, 1, 2, … in first-seen order) without creating a Swift
/// `String` per lookup.
///
/// The strings live back to back in one blob with an offsets array, which is also exactly the
/// layout a dictionary chunk is written in. Lookups go through an open-addressing index of
/// 5-byte slots (a one-byte hash tag, 0 for empty, then the `u32` id), linearly probed, filled to
/// at most 80% and sized to any slot count rather than a power of two. A project's session
/// dictionary holds tens of millions of strings, and this index is what the server keeps for it
/// between compactions: 5 bytes at 75–80% load is about 6.5 bytes per string, against 16–32
/// for a power-of-two table of 8-byte `(tag, id)` words. The tag still settles 255 of 256
/// mismatched probes without touching the strings.
public struct ByteStringTable: Sendable {
    /// `offsets[i] ..< offsets[i + 1]` is string `i` in `blob`.
    public private(set) var offsets: [UInt32] = [0]
    public private(set) var blob: [UInt8] = []
    /// `slotCount` slots of `slotSize` bytes, plus `slotPadding` so an 8-byte load at any
    /// slot stays inside.
    private var slots: [UInt8]
    private var slotCount: Int
    static let slotSize = 5
    static let slotPadding = 3
    /// Set for a table that stores ids packed (see `IdPacking`): `blob` and `offsets` then
    /// hold the stored forms, and strings are read back through `string` or `withString`.
    private var packing: IdPacking?
    /// Where `internAll` leaves the slots it loaded ahead, so the loads are not optimized away.
    private var prefetchSink: UInt8 = 0

    /// `packsIds`: store hex ids and UUIDs packed (the project dictionaries).
    public init(capacity: Int = 64, packsIds: Bool = false) {
        slotCount = Self.slotCount(for: capacity)
        slots = [UInt8](repeating: 0, count: slotCount * Self.slotSize + Self.slotPadding)
        if packsIds { packing = IdPacking() }
    }

    /// Slots for `count` strings at 75% load.
    static func slotCount(for count: Int) -> Int { max(16, count + count / 3 + 1) }

    public var count: Int { offsets.count - 1 }

    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 { ByteHashing.hash(bytes) }

    /// Whether lookups go through the hash index. A table loaded only to map ids to strings
    /// (`appendWithoutIndex`) has none until something interns into it: loading millions of
    /// strings then costs no hashing.
    public var isIndexed: Bool { !slots.isEmpty }

    /// Appends a whole dictionary frame (`count` little-endian `u32` end offsets into
    /// `blob`) without an index. False, appending nothing, if the ends are not ascending
    /// within the blob.
    public mutating func appendWithoutIndex(count n: Int, ends: UnsafeRawBufferPointer, blob frame: UnsafeRawBufferPointer) -> Bool {
        var previous = 0
        for i in 0..<n {
            let end = Int(UInt32(littleEndian: ends.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            guard end >= previous, end <= frame.count else { return false }
            previous = end
        }
        guard previous == frame.count else { return false }
        if !slots.isEmpty {
            slots = []
            slotCount = 0
        }
        if packing != nil {
            offsets.reserveCapacity(offsets.count + n)
            var start = 0
            for i in 0..<n {
                let end = Int(UInt32(littleEndian: ends.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                appendStored(UnsafeRawBufferPointer(rebasing: frame[start..<end]))
                start = end
            }
            return true
        }
        let base = UInt32(blob.count)
        offsets.reserveCapacity(offsets.count + n)
        for i in 0..<n { offsets.append(base + UInt32(littleEndian: ends.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
        blob.append(contentsOf: frame)
        return true
    }

    /// Builds the hash index of a table loaded without one.
    public mutating func buildIndex() {
        guard slots.isEmpty else { return }
        rehash(Self.slotCount(for: count))
    }

    @inline(__always)
    static func tag(_ hash: UInt64) -> UInt8 {
        let tag = UInt8(truncatingIfNeeded: hash)
        return tag == 0 ? 1 : tag
    }

    /// The first slot to probe: the hash's high bits scaled to the slot count (the tag uses
    /// its low byte).
    @inline(__always)
    static func home(_ hash: UInt64, slotCount: Int) -> Int {
        Int(truncatingIfNeeded: hash.multipliedFullWidth(by: UInt64(slotCount)).high)
    }

    /// Where `bytes` is: its id if present, else nil and the empty slot that ends its probe.
    @inline(__always)
    func probe(_ bytes: UnsafeRawBufferPointer, hash: UInt64) -> (id: UInt32?, slot: Int) {
        let tag = Self.tag(hash)
        var slot = Self.home(hash, slotCount: slotCount)
        return slots.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            while true {
                let word = base.loadUnaligned(fromByteOffset: slot &* Self.slotSize, as: UInt64.self)
                let found = UInt8(truncatingIfNeeded: word)
                if found == 0 { return (nil, slot) }
                if found == tag {
                    let id = UInt32(truncatingIfNeeded: word >> 8)
                    if equals(id: Int(id), bytes) { return (id, slot) }
                }
                slot += 1
                if slot == slotCount { slot = 0 }
            }
        }
    }

    /// Appends the stored form of `bytes` without looking it up or indexing it.
    private mutating func appendStored(_ bytes: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(byteCount: IdPacking.capacity(for: bytes.count), alignment: 1) { scratch in
            switch packing!.encode(bytes, into: scratch.baseAddress!, adding: true) {
            case .stored(let n): blob.append(contentsOf: UnsafeRawBufferPointer(start: scratch.baseAddress, count: n))
            case .same, .absent: blob.append(contentsOf: bytes)
            }
        }
        offsets.append(UInt32(blob.count))
    }

    /// The id of `bytes`, adding it if new.
    @inline(__always)
    public mutating func intern(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        if packing != nil { return internPacked(bytes) }
        return internStored(bytes)
    }

    @inline(never)
    private mutating func internPacked(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        withUnsafeTemporaryAllocation(byteCount: IdPacking.capacity(for: bytes.count), alignment: 1) { scratch in
            switch packing!.encode(bytes, into: scratch.baseAddress!, adding: true) {
            case .stored(let n): internStored(UnsafeRawBufferPointer(start: scratch.baseAddress, count: n))
            case .same, .absent: internStored(bytes)
            }
        }
    }

    /// The ids of every string of `other`, adding those that are new, in `other`'s order.
    ///
    /// A large table (a project dictionary of millions) misses the cache on nearly every
    /// probe, and one lookup at a time leaves those misses in series. Strings are taken in
    /// groups: the stored forms and hashes of a group are computed and their home slots
    /// loaded first, so the misses overlap, and the probes that follow find the slots in
    /// cache.
    public mutating func internAll(of other: ByteStringTable) -> [UInt32] {
        let group = 16
        var ids = [UInt32]()
        ids.reserveCapacity(other.count)
        if slots.isEmpty { buildIndex() }
        let scratchStride = IdPacking.capacity(for: 256)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: group * scratchStride, alignment: 8)
        defer { scratch.deallocate() }
        var stored = [UnsafeRawBufferPointer](repeating: UnsafeRawBufferPointer(start: nil, count: 0), count: group)
        var hashes = [UInt64](repeating: 0, count: group)
        var sink: UInt64 = 0
        other.blob.withUnsafeBytes { source in
            var start = 0
            while start < other.count {
                let end = Swift.min(start + group, other.count)
                for i in start..<end {
                    let k = i - start
                    let bytes = UnsafeRawBufferPointer(rebasing: source[Int(other.offsets[i])..<Int(other.offsets[i + 1])])
                    stored[k] = bytes
                    // Longer strings are packed by `internPacked` below, unprefetched.
                    if packing != nil && bytes.count <= 256 {
                        let out = scratch + k * scratchStride
                        if case .stored(let n) = packing!.encode(bytes, into: out, adding: true) {
                            stored[k] = UnsafeRawBufferPointer(start: out, count: n)
                        }
                    }
                    hashes[k] = Self.hash(stored[k])
                }
                // A loop of loads alone, so that all of them are in flight at once.
                slots.withUnsafeBytes { raw in
                    for k in 0..<(end - start) {
                        let home = Self.home(hashes[k], slotCount: slotCount)
                        sink ^= raw.loadUnaligned(fromByteOffset: home &* Self.slotSize, as: UInt64.self)
                    }
                }
                for i in start..<end {
                    let k = i - start
                    if packing != nil && other.offsets[i + 1] - other.offsets[i] > 256 {
                        ids.append(internPacked(stored[k]))
                    } else {
                        ids.append(internStored(stored[k], hash: hashes[k]))
                    }
                }
                start = end
            }
        }
        prefetchSink = UInt8(truncatingIfNeeded: sink)
        return ids
    }

    /// The id of a stored form, adding it if new.
    @inline(__always)
    private mutating func internStored(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        internStored(bytes, hash: Self.hash(bytes))
    }

    @inline(__always)
    private mutating func internStored(_ bytes: UnsafeRawBufferPointer, hash h: UInt64) -> UInt32 {
        if slots.isEmpty { buildIndex() }
        let (found, slot) = probe(bytes, hash: h)
        if let found { return found }
        let id = UInt32(count)
        Self.store(tag: Self.tag(h), id: id, at: slot, in: &slots)
        blob.append(contentsOf: bytes)
        offsets.append(UInt32(blob.count))
        if count * 5 > slotCount * 4 { grow() }
        return id
    }

    /// The id of `bytes` if present (a linear scan on a table without its index).
    public func find(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        guard var packing else { return findStored(bytes) }
        return withUnsafeTemporaryAllocation(byteCount: IdPacking.capacity(for: bytes.count), alignment: 1) { scratch in
            switch packing.encode(bytes, into: scratch.baseAddress!, adding: false) {
            case .stored(let n): findStored(UnsafeRawBufferPointer(start: scratch.baseAddress, count: n))
            case .same: findStored(bytes)
            case .absent: nil
            }
        }
    }

    private func findStored(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        if slots.isEmpty {
            for id in 0..<count where equals(id: id, bytes) { return UInt32(id) }
            return nil
        }
        return probe(bytes, hash: Self.hash(bytes)).id
    }

    public func find(_ string: String) -> UInt32? {
        var s = string
        return s.withUTF8 { find(UnsafeRawBufferPointer($0)) }
    }

    @discardableResult
    public mutating func intern(_ string: String) -> UInt32 {
        var s = string
        return s.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    func equals(id: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let start = Int(offsets[id])
        let n = bytes.count
        guard Int(offsets[id + 1]) - start == n else { return false }
        if n == 0 { return true }
        return blob.withUnsafeBytes { b in Self.bytesEqual(b.baseAddress! + start, bytes.baseAddress!, count: n) }
    }

    @inline(__always)
    static func bytesEqual(_ p: UnsafeRawPointer, _ q: UnsafeRawPointer, count n: Int) -> Bool {
        ByteHashing.bytesEqual(p, q, count: n)
    }

    public func string(_ id: Int) -> String {
        withString(id) { String(decoding: $0, as: UTF8.self) }
    }

    /// Calls `body` with the bytes of string `id`.
    public func withString<T>(_ id: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let start = Int(offsets[id])
        let end = Int(offsets[id + 1])
        return try blob.withUnsafeBytes { raw in
            let stored = UnsafeRawBufferPointer(rebasing: raw[start..<end])
            guard let packing, let first = stored.first, first >= 0xF8 else { return try body(stored) }
            var decoded: [UInt8] = []
            packing.decode(stored, into: &decoded)
            return try decoded.withUnsafeBytes(body)
        }
    }

    /// Appends strings `ids` back to back to `strings`, and each one's end offset there to
    /// `ends`.
    public func appendStrings(_ ids: Range<Int>, to strings: OutputBuffer, ends: inout [UInt32]) {
        blob.withUnsafeBytes { raw in
            for id in ids {
                let stored = UnsafeRawBufferPointer(rebasing: raw[Int(offsets[id])..<Int(offsets[id + 1])])
                if let packing { packing.decode(stored, appendingTo: strings) } else { strings.append(stored) }
                ends.append(UInt32(strings.count))
            }
        }
    }

    /// String `id`'s bytes, in a table that does not pack ids.
    public func bytes(_ id: Int) -> ArraySlice<UInt8> {
        precondition(packing == nil, "the stored bytes of a packed table are not its strings")
        return blob[Int(offsets[id])..<Int(offsets[id + 1])]
    }

    /// Makes room for `count` strings in all (and `bytes` more blob bytes) with at most one
    /// rehash, so that loading a known number of strings does not rehash log₂(n) times.
    public mutating func reserve(count total: Int, bytes: Int) {
        offsets.reserveCapacity(total + 1)
        blob.reserveCapacity(blob.count + bytes)
        // At least the growth `grow` would make: a table reserved a little more each
        // compaction round must not rehash all its strings every round.
        let wanted = Self.slotCount(for: total)
        if isIndexed && wanted > slotCount { rehash(Swift.max(wanted, Self.grown(slotCount))) }
    }

    @inline(__always)
    static func store(tag: UInt8, id: UInt32, at slot: Int, in slots: inout [UInt8]) {
        slots.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: tag, toByteOffset: slot &* slotSize, as: UInt8.self)
            raw.storeBytes(of: id.littleEndian, toByteOffset: slot &* slotSize + 1, as: UInt32.self)
        }
    }

    /// Doubles small tables; large ones grow by half, so a dictionary of millions never
    /// holds twice the slots it needs.
    @inline(never)
    private mutating func grow() {
        rehash(Self.grown(slotCount))
    }

    static func grown(_ slotCount: Int) -> Int { slotCount < 1 << 20 ? slotCount * 2 : slotCount + slotCount / 2 }

    private mutating func rehash(_ newCount: Int) {
        var newSlots = [UInt8](repeating: 0, count: newCount * Self.slotSize + Self.slotPadding)
        blob.withUnsafeBytes { raw in
            newSlots.withUnsafeMutableBytes { out in
                for id in 0..<count {
                    let start = Int(offsets[id])
                    let h = Self.hash(UnsafeRawBufferPointer(rebasing: raw[start..<Int(offsets[id + 1])]))
                    var slot = Self.home(h, slotCount: newCount)
                    while out.load(fromByteOffset: slot &* Self.slotSize, as: UInt8.self) != 0 {
                        slot += 1
                        if slot == newCount { slot = 0 }
                    }
                    out.storeBytes(of: Self.tag(h), toByteOffset: slot &* Self.slotSize, as: UInt8.self)
                    out.storeBytes(of: UInt32(id).littleEndian, toByteOffset: slot &* Self.slotSize + 1, as: UInt32.self)
                }
            }
        }
        slots = newSlots
        slotCount = newCount
    }

    public mutating func removeAll() {
        if packing != nil { packing = IdPacking() }
        offsets = [0]
        blob.removeAll(keepingCapacity: true)
        slots.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
