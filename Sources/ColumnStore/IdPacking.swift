import EventLog

/// The stored form of strings in a table that packs ids: most user, anonymous and session ids
/// are a short prefix and a run of lowercase hex digits (`sess_2e7b46cfb548e643`) or a UUID,
/// and the project dictionaries keep millions of them in memory. Two hex digits go in one
/// byte and a prefix becomes a one-byte reference, so `sess_` and 16 digits take 10 bytes
/// instead of 21, and a UUID 17 instead of 36.
///
/// Stored forms, told apart by the first byte (valid UTF-8 never holds 0xF8–0xFF):
///
/// | first byte | rest |
/// |---|---|
/// | below 0xF8 | the string itself |
/// | 0xFD | a lowercase 8-4-4-4-12 UUID's 16 bytes |
/// | 0xFE | prefix number, then the hex digits two to a byte (an even count, at least 8) |
/// | 0xFF | the string itself (one that starts with a byte of 0xF8 or above) |
///
/// Every string has exactly one stored form, so equal strings have equal stored bytes and the
/// table hashes and compares stored bytes. Prefixes are numbered in the order strings bring
/// them, up to 255 of at most 32 bytes; once all are taken, strings with other prefixes are
/// stored as they are. That keeps the form of a string fixed for the table's life, and a table
/// loaded from its strings in id order numbers its prefixes the same way.
package struct IdPacking: Sendable {
    static let uuidMarker: UInt8 = 0xFD
    static let packedMarker: UInt8 = 0xFE
    static let escapeMarker: UInt8 = 0xFF
    static let minimumHexDigits = 8
    static let maximumPrefixLength = 32
    static let maximumPrefixes = 255

    private(set) var prefixes: [[UInt8]] = []
    /// The prefix matched last: almost every string of a table has the same one.
    private var lastPrefix = 0

    /// The most bytes a stored form of an `n`-byte string takes.
    static func capacity(for n: Int) -> Int { n + 2 }

    enum Encoded {
        /// The string is stored as it is.
        case same
        /// The stored form is the first `n` bytes of the buffer.
        case stored(Int)
        /// The string is in no table that knows these prefixes (only when not adding).
        case absent
    }

    @inline(__always)
    package static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    static func isUUID(_ s: UnsafeRawBufferPointer) -> Bool {
        guard s.count == 36 else { return false }
        for i in 0..<36 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if s[i] != 0x2D { return false }
            } else if hexValue(s[i]) == nil {
                return false
            }
        }
        return true
    }

    /// The number of prefix `p`, adding it when `adding` and there is room.
    mutating func prefixNumber(_ p: UnsafeRawBufferPointer, adding: Bool) -> Int? {
        func matches(_ k: Int) -> Bool { prefixes[k].withUnsafeBytes { $0.elementsEqual(p) } }
        if lastPrefix < prefixes.count && matches(lastPrefix) { return lastPrefix }
        for k in prefixes.indices where matches(k) {
            lastPrefix = k
            return k
        }
        guard adding, prefixes.count < Self.maximumPrefixes else { return nil }
        prefixes.append(Array(p))
        lastPrefix = prefixes.count - 1
        return lastPrefix
    }

    /// Writes the stored form of `s` into `out` (at least `capacity(for: s.count)` bytes).
    mutating func encode(_ s: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer, adding: Bool) -> Encoded {
        let n = s.count
        if Self.isUUID(s) {
            out.storeBytes(of: Self.uuidMarker, as: UInt8.self)
            var k = 1
            var i = 0
            while i < 36 {
                if s[i] == 0x2D { i += 1; continue }
                out.storeBytes(of: Self.hexValue(s[i])! << 4 | Self.hexValue(s[i + 1])!, toByteOffset: k, as: UInt8.self)
                k += 1
                i += 2
            }
            return .stored(17)
        }
        var start = n
        // Eight digits at a time, then byte by byte.
        while start >= 8, let p = s.baseAddress, Self.hexWord(p.loadUnaligned(fromByteOffset: start - 8, as: UInt64.self)) != nil {
            start -= 8
        }
        while start > 0 && Self.hexValue(s[start - 1]) != nil { start -= 1 }
        if (n - start) % 2 == 1 { start += 1 }
        if n - start >= Self.minimumHexDigits && start <= Self.maximumPrefixLength {
            if let prefix = prefixNumber(UnsafeRawBufferPointer(rebasing: s[0..<start]), adding: adding) {
                out.storeBytes(of: Self.packedMarker, as: UInt8.self)
                out.storeBytes(of: UInt8(prefix), toByteOffset: 1, as: UInt8.self)
                var k = 2
                var i = start
                while i + 8 <= n, let p = s.baseAddress {
                    let values = Self.hexWord(p.loadUnaligned(fromByteOffset: i, as: UInt64.self))!
                    out.storeBytes(of: Self.packNibbles(values).littleEndian, toByteOffset: k, as: UInt32.self)
                    k += 4
                    i += 8
                }
                while i < n {
                    out.storeBytes(of: Self.hexValue(s[i])! << 4 | Self.hexValue(s[i + 1])!, toByteOffset: k, as: UInt8.self)
                    k += 1
                    i += 2
                }
                return .stored(k)
            }
            // A table that still has room would have numbered this prefix had it held the
            // string.
            if !adding && prefixes.count < Self.maximumPrefixes { return .absent }
        }
        if n > 0 && s[0] >= 0xF8 {
            out.storeBytes(of: Self.escapeMarker, as: UInt8.self)
            (out + 1).copyMemory(from: s.baseAddress!, byteCount: n)
            return .stored(n + 1)
        }
        return .same
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    // MARK: Eight digits per word
    //
    // A session or anonymous id carries 16 hex digits, and the compactor packs every new one;
    // byte by byte that was 2% of a compaction. These read and write eight digits in one
    // 64-bit word (first character in the low byte), with per-byte range tests that carry
    // no bit across bytes: for bytes below 0x80, adding 0x80 - k sets a byte's top bit
    // exactly when it is at least k.

    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highBits: UInt64 = 0x8080_8080_8080_8080

    /// The values (0–15, one per byte) of eight lowercase hex digits, or nil if any byte is not one.
    @inline(__always)
    package static func hexWord(_ w: UInt64) -> UInt64? {
        guard w & highBits == 0 else { return nil }
        func atLeast(_ k: UInt64) -> UInt64 { (w &+ (0x80 &- k) &* ones) & highBits }
        let digit = atLeast(0x30) & ~atLeast(0x3A)
        let letter = atLeast(0x61) & ~atLeast(0x67)
        guard digit | letter == highBits else { return nil }
        return (w & 0x0F0F_0F0F_0F0F_0F0F) &+ (letter >> 7) &* 9
    }

    /// Eight nibble values (one per byte) as four bytes, two digits to a byte, the first the
    /// high nibble.
    @inline(__always)
    package static func packNibbles(_ v: UInt64) -> UInt32 {
        var x = ((v << 4) | (v >> 8)) & 0x00FF_00FF_00FF_00FF
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF
        return UInt32(truncatingIfNeeded: x | (x >> 16))
    }

    /// Four packed bytes as their eight lowercase hex digits.
    @inline(__always)
    package static func unpackNibbles(_ b: UInt32) -> UInt64 {
        var x = UInt64(b)
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
        let values = ((x >> 4) & 0x000F_000F_000F_000F) | ((x & 0x000F_000F_000F_000F) << 8)
        let letters = ((values &+ 0x76 &* ones) & highBits) >> 7
        return values &+ 0x30 &* ones &+ letters &* 39
    }

    /// Appends the string a stored form stands for to `out`.
    func decode(_ stored: UnsafeRawBufferPointer, appendingTo out: OutputBuffer) {
        guard let first = stored.first, first >= 0xF8 else {
            out.append(stored)
            return
        }
        switch first {
        case Self.uuidMarker, Self.packedMarker:
            var k = first == Self.packedMarker ? 2 : 1
            if first == Self.packedMarker {
                prefixes[Int(stored[1])].withUnsafeBytes { out.append($0) }
                out.reserve(2 * (stored.count - k))
                while k + 4 <= stored.count {
                    let word = Self.unpackNibbles(UInt32(littleEndian: stored.loadUnaligned(fromByteOffset: k, as: UInt32.self)))
                    out.append(littleEndian: word)
                    k += 4
                }
            }
            let digits = Self.hexDigits
            for i in k..<stored.count {
                if first == Self.uuidMarker && (i == 5 || i == 7 || i == 9 || i == 11) { out.append(byte: 0x2D) }
                out.append(byte: digits[Int(stored[i] >> 4)])
                out.append(byte: digits[Int(stored[i] & 15)])
            }
        default:
            out.append(UnsafeRawBufferPointer(rebasing: stored[1...]))
        }
    }

    /// The string a stored form stands for.
    func decode(_ stored: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        guard let first = stored.first, first >= 0xF8 else {
            out.append(contentsOf: stored)
            return
        }
        func hex(_ b: UInt8) {
            out.append(Self.hexDigits[Int(b >> 4)])
            out.append(Self.hexDigits[Int(b & 15)])
        }
        switch first {
        case Self.uuidMarker:
            for k in 1..<stored.count {
                if k == 5 || k == 7 || k == 9 || k == 11 { out.append(0x2D) }
                hex(stored[k])
            }
        case Self.packedMarker:
            out.append(contentsOf: prefixes[Int(stored[1])])
            for k in 2..<stored.count { hex(stored[k]) }
        default:
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: stored[1...]))
        }
    }
}
