/// Least-significant-digit radix sort of 64-bit keys, 11 bits per pass.
///
/// The compactor orders every block by packed (person, time) and (time, row) keys. A radix
/// sort does that in a few linear passes, and digits that are the same in every key (the high
/// bits of a one-day time offset, say) are skipped without a pass.
package enum RadixSort {
    static let digitBits: UInt64 = 11

    package static func sort(_ keys: inout [UInt64]) {
        let n = keys.count
        guard n > 256 else {
            keys.sort()
            return
        }
        var all: UInt64 = 0
        var common: UInt64 = .max
        for k in keys {
            all |= k
            common &= k
        }
        let varying = all ^ common
        let radix = 1 << Int(digitBits)
        let mask = UInt64(radix - 1)
        var scratch = [UInt64](repeating: 0, count: n)
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: radix)
        defer { counts.deallocate() }
        keys.withUnsafeMutableBufferPointer { keysBuffer in
            scratch.withUnsafeMutableBufferPointer { scratchBuffer in
                var source = keysBuffer.baseAddress!
                var target = scratchBuffer.baseAddress!
                var shift: UInt64 = 0
                while shift < 64 {
                    defer { shift += digitBits }
                    guard (varying >> shift) & mask != 0 else { continue }
                    counts.update(repeating: 0, count: radix)
                    for i in 0..<n { counts[Int((source[i] >> shift) & mask)] += 1 }
                    var total = 0
                    for d in 0..<radix {
                        let c = counts[d]
                        counts[d] = total
                        total += c
                    }
                    for i in 0..<n {
                        let k = source[i]
                        let d = Int((k >> shift) & mask)
                        target[counts[d]] = k
                        counts[d] += 1
                    }
                    swap(&source, &target)
                }
                if source != keysBuffer.baseAddress! { keysBuffer.baseAddress!.update(from: source, count: n) }
            }
        }
    }
}
