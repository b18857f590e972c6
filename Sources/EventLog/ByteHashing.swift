#if canImport(Glibc)
import Glibc
#endif

/// Hashing and comparing short byte strings: ids, event names, property keys and values.
/// Shared by the batch string tables of ingest and the dictionaries of compaction, which
/// both look up every string of every event.
public enum ByteHashing {
    @inlinable @inline(__always)
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        // Folded 64×64→128-bit multiplies (as in wyhash and rapidhash): a string of up to 16
        // bytes is two words (overlapping, or a few bytes for the shortest) and takes two
        // dependent multiplies; longer ones fold 16 bytes per multiply first. The FNV-like
        // word loop this replaced took five multiplies and three shifts in series for a
        // 21-byte session id, and the lookups of compaction wait on the hash.
        let n = bytes.count
        var seed = Self.hashSeeds.0
        var a: UInt64 = 0
        var b: UInt64 = 0
        if let p = bytes.baseAddress {
            @inline(__always) func word(_ at: Int) -> UInt64 { p.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
            if n >= 16 {
                var i = 0
                while i + 16 < n {
                    seed = fold(word(i) ^ Self.hashSeeds.1, word(i + 8) ^ seed)
                    i += 16
                }
                a = word(n - 16)
                b = word(n - 8)
            } else if n >= 8 {
                a = word(0)
                b = word(n - 8)
            } else if n >= 4 {
                a = UInt64(p.loadUnaligned(as: UInt32.self))
                b = UInt64(p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))
            } else if n > 0 {
                a = UInt64(p.load(as: UInt8.self)) << 16 | UInt64(p.load(fromByteOffset: n / 2, as: UInt8.self)) << 8
                    | UInt64(p.load(fromByteOffset: n - 1, as: UInt8.self))
            }
        }
        let product = (a ^ Self.hashSeeds.1).multipliedFullWidth(by: b ^ seed)
        return fold(product.low ^ Self.hashSeeds.0 ^ UInt64(n), product.high ^ Self.hashSeeds.1)
    }

    @usableFromInline static let hashSeeds: (UInt64, UInt64) = (0x2d35_8dcc_aa6c_78a5, 0x8bb8_4b93_962e_acc9)

    /// The two halves of `a × b`, exclusive-ored: every bit of each input reaches the
    /// middle bits of the result.
    @inlinable @inline(__always)
    public static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// Whether `count` bytes at `p` and `q` are equal. Ids, names and property values are
    /// mostly short: up to 32 bytes take at most four overlapping word compares, not a call.
    @inlinable @inline(__always)
    public static func bytesEqual(_ p: UnsafeRawPointer, _ q: UnsafeRawPointer, count n: Int) -> Bool {
        func word(_ x: UnsafeRawPointer, _ at: Int) -> UInt64 { x.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        if n >= 8 {
            if n <= 16 { return word(p, 0) == word(q, 0) && word(p, n - 8) == word(q, n - 8) }
            if n <= 32 {
                return word(p, 0) == word(q, 0) && word(p, 8) == word(q, 8) && word(p, n - 16) == word(q, n - 16)
                    && word(p, n - 8) == word(q, n - 8)
            }
            return longBytesEqual(p, q, count: n)
        }
        if n >= 4 {
            return p.loadUnaligned(as: UInt32.self) == q.loadUnaligned(as: UInt32.self)
                && p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == q.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
        }
        for i in 0..<n where p.load(fromByteOffset: i, as: UInt8.self) != q.load(fromByteOffset: i, as: UInt8.self) { return false }
        return true
    }

    @usableFromInline
    static func longBytesEqual(_ p: UnsafeRawPointer, _ q: UnsafeRawPointer, count n: Int) -> Bool {
        memcmp(p, q, n) == 0
    }
}
