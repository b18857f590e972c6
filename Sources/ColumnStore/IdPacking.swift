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
struct IdPacking: Sendable {
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
    static func hexValue(_ c: UInt8) -> UInt8? {
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
        while start > 0 && Self.hexValue(s[start - 1]) != nil { start -= 1 }
        if (n - start) % 2 == 1 { start += 1 }
        if n - start >= Self.minimumHexDigits && start <= Self.maximumPrefixLength {
            if let prefix = prefixNumber(UnsafeRawBufferPointer(rebasing: s[0..<start]), adding: adding) {
                out.storeBytes(of: Self.packedMarker, as: UInt8.self)
                out.storeBytes(of: UInt8(prefix), toByteOffset: 1, as: UInt8.self)
                var k = 2
                var i = start
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

    /// Appends the string a stored form stands for to `out`.
    func decode(_ stored: UnsafeRawBufferPointer, appendingTo out: OutputBuffer) {
        guard let first = stored.first, first >= 0xF8 else {
            out.append(stored)
            return
        }
        switch first {
        case Self.uuidMarker, Self.packedMarker:
            if first == Self.packedMarker { prefixes[Int(stored[1])].withUnsafeBytes { out.append($0) } }
            let digits = Self.hexDigits
            for k in (first == Self.packedMarker ? 2 : 1)..<stored.count {
                if first == Self.uuidMarker && (k == 5 || k == 7 || k == 9 || k == 11) { out.append(byte: 0x2D) }
                out.append(byte: digits[Int(stored[k] >> 4)])
                out.append(byte: digits[Int(stored[k] & 15)])
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
