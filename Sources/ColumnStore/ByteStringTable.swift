#if canImport(Glibc)
import Glibc
#endif
public import EventLog

/// Interns byte strings to dense ids (0, 1, 2, … in first-seen order) without creating a Swift
/// `String` per lookup.
///
/// The strings live back to back in one blob with an offsets array, which is also exactly the
/// layout a dictionary chunk is written in. Lookups go through an open-addressing table of
/// `(hash, id)` pairs, so the compactor's per-value cost is one hash and usually one compare.
public struct ByteStringTable: Sendable {
    /// `offsets[i] ..< offsets[i + 1]` is string `i` in `blob`.
    public private(set) var offsets: [UInt32] = [0]
    public private(set) var blob: [UInt8] = []
    private var slots: [UInt64]
    private var mask: Int

    public init(capacity: Int = 64) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [UInt64](repeating: .max, count: size)
        mask = size - 1
    }

    public var count: Int { offsets.count - 1 }

    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        // FNV-1a-like over 8-byte words, the tail read as one overlapping word (the length is
        // in the seed), then a finalizer: no byte loop for the short strings this holds.
        let n = bytes.count
        let prime: UInt64 = 0x0000_0100_0000_01B3
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(n)
        if let p = bytes.baseAddress {
            if n >= 8 {
                var i = 0
                while i + 8 <= n {
                    h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* prime
                    h ^= h >> 29
                    i += 8
                }
                if i < n { h = (h ^ p.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)) &* prime }
            } else if n >= 4 {
                let word = UInt64(p.loadUnaligned(as: UInt32.self)) << 32 | UInt64(p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))
                h = (h ^ word) &* prime
            } else if n > 0 {
                let word = UInt64(p.load(as: UInt8.self)) << 16 | UInt64(p.load(fromByteOffset: n / 2, as: UInt8.self)) << 8
                    | UInt64(p.load(fromByteOffset: n - 1, as: UInt8.self))
                h = (h ^ word) &* prime
            }
        }
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h = h &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 33)
    }

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
        if !slots.isEmpty { slots = [] }
        let base = UInt32(blob.count)
        offsets.reserveCapacity(offsets.count + n)
        for i in 0..<n { offsets.append(base + UInt32(littleEndian: ends.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
        blob.append(contentsOf: frame)
        return true
    }

    /// Builds the hash index of a table loaded without one.
    public mutating func buildIndex() {
        guard slots.isEmpty else { return }
        var size = 16
        while size < count * 2 + 2 { size <<= 1 }
        rehash(size)
    }

    /// The id of `bytes`, adding it if new.
    @inline(__always)
    public mutating func intern(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        if slots.isEmpty { buildIndex() }
        let h = Self.hash(bytes)
        let tag = h >> 32
        var slot = Int(truncatingIfNeeded: h) & mask
        while true {
            let entry = slots[slot]
            if entry == .max { break }
            if entry >> 32 == tag && equals(id: Int(entry & 0xFFFF_FFFF), bytes) {
                return UInt32(truncatingIfNeeded: entry)
            }
            slot = (slot + 1) & mask
        }
        let id = UInt32(count)
        slots[slot] = (tag << 32) | UInt64(id)
        blob.append(contentsOf: bytes)
        offsets.append(UInt32(blob.count))
        if count * 2 > mask { grow() }
        return id
    }

    /// The id of `bytes` if present (a linear scan on a table without its index).
    public func find(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        if slots.isEmpty {
            for id in 0..<count where equals(id: id, bytes) { return UInt32(id) }
            return nil
        }
        let h = Self.hash(bytes)
        let tag = h >> 32
        var slot = Int(truncatingIfNeeded: h) & mask
        while true {
            let entry = slots[slot]
            if entry == .max { return nil }
            if entry >> 32 == tag && equals(id: Int(entry & 0xFFFF_FFFF), bytes) {
                return UInt32(truncatingIfNeeded: entry)
            }
            slot = (slot + 1) & mask
        }
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
        return blob.withUnsafeBytes { b in
            let p = b.baseAddress! + start
            let q = bytes.baseAddress!
            // Ids, names and property values are mostly short: two overlapping word compares.
            if n >= 8 && n <= 16 {
                return p.loadUnaligned(as: UInt64.self) == q.loadUnaligned(as: UInt64.self)
                    && (p + n - 8).loadUnaligned(as: UInt64.self) == (q + n - 8).loadUnaligned(as: UInt64.self)
            }
            if n >= 4 && n < 8 {
                return p.loadUnaligned(as: UInt32.self) == q.loadUnaligned(as: UInt32.self)
                    && (p + n - 4).loadUnaligned(as: UInt32.self) == (q + n - 4).loadUnaligned(as: UInt32.self)
            }
            if n < 4 {
                for i in 0..<n where p.load(fromByteOffset: i, as: UInt8.self) != q.load(fromByteOffset: i, as: UInt8.self) { return false }
                return true
            }
            return memcmp(p, q, n) == 0
        }
    }

    public func string(_ id: Int) -> String {
        let start = Int(offsets[id])
        let end = Int(offsets[id + 1])
        return blob.withUnsafeBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[start..<end]), as: UTF8.self) }
    }

    public func bytes(_ id: Int) -> ArraySlice<UInt8> {
        blob[Int(offsets[id])..<Int(offsets[id + 1])]
    }

    /// Makes room for `count` strings in all (and `bytes` more blob bytes) with at most one
    /// rehash, so that loading a known number of strings does not rehash log₂(n) times.
    public mutating func reserve(count total: Int, bytes: Int) {
        offsets.reserveCapacity(total + 1)
        blob.reserveCapacity(blob.count + bytes)
        var size = mask + 1
        while size < total * 2 { size <<= 1 }
        if size > mask + 1 { rehash(size) }
    }

    @inline(never)
    private mutating func grow() {
        rehash((mask + 1) * 2)
    }

    private mutating func rehash(_ size: Int) {
        var newSlots = [UInt64](repeating: .max, count: size)
        let newMask = size - 1
        blob.withUnsafeBytes { raw in
            for id in 0..<count {
                let start = Int(offsets[id])
                let h = Self.hash(UnsafeRawBufferPointer(rebasing: raw[start..<Int(offsets[id + 1])]))
                var slot = Int(truncatingIfNeeded: h) & newMask
                while newSlots[slot] != .max { slot = (slot + 1) & newMask }
                newSlots[slot] = ((h >> 32) << 32) | UInt64(id)
            }
        }
        slots = newSlots
        mask = newMask
    }

    public mutating func removeAll() {
        offsets = [0]
        blob.removeAll(keepingCapacity: true)
        for i in slots.indices { slots[i] = .max }
    }
}
