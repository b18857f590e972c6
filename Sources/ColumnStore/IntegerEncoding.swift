public import EventLog

/// Lossless encodings of a vector of 64-bit integers, and the measurement that picks one.
///
/// Every encoding is built on one primitive, the *mini-block*: 128 values stored as their
/// minimum and a bit width, with the few values that do not fit stored apart as exceptions
/// (patched frame of reference, as in PForDelta). Exceptions keep one outlier, such as the
/// jump between two users' timestamps in a user-ordered block, from widening 127 neighbours.
///
/// | encoding | what goes through the mini-blocks |
/// |---|---|
/// | `frame` | `(v - v₀) / d`, `d` the gcd of all differences (timestamps in whole ms get `d = 1000`) |
/// | `delta` | zigzag of `(vᵢ - vᵢ₋₁) / d`: small for sorted or run-ordered data |
/// | `dictionary` | codes into a sorted table of the distinct values (few distinct values, e.g. receive times of an import) |
/// | `runs` | ascending runs: where a value drops below its predecessor a new run starts and the value is stored whole; inside a run only the (non-negative) step is stored. Timestamps in a block ordered by person are such runs. |
///
/// The encoder writes all three and keeps the smallest: "the encoding that measures best".
public enum IntegerEncoding: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case frame = 1
    case delta = 2
    case dictionary = 3
    case runs = 4

    public var description: String {
        switch self {
        case .frame: "frame"
        case .delta: "delta"
        case .dictionary: "dictionary"
        case .runs: "runs"
        }
    }

    /// What the parts of a `runs` encoding may use.
    static let simple: [IntegerEncoding] = [.frame, .delta, .dictionary]

    static let miniBlock = 128
    static let dictionaryLimit = 4096

    /// Encodes `values` with the smallest of the encodings into `out`; returns the choice.
    ///
    /// Long columns are measured on a sample (four windows of 512 values spread over the
    /// column) and only the winner is encoded in full, so choosing costs little more than
    /// encoding once.
    @discardableResult
    public static func encodeBest(
        _ values: UnsafeBufferPointer<Int64>, into out: OutputBuffer, candidates: [IntegerEncoding] = allCases
    ) -> IntegerEncoding {
        encodeBest([values], into: out, candidates: candidates).encoding
    }

    /// Encodes the one of `columns` (equally long representations of one column, such as
    /// values and their residuals from a prediction) that measures smallest with its best
    /// encoding; returns which column and which encoding. Only the winner is encoded in full.
    public static func encodeBest(
        _ columns: [UnsafeBufferPointer<Int64>], into out: OutputBuffer, candidates: [IntegerEncoding] = allCases
    ) -> (column: Int, encoding: IntegerEncoding) {
        let windows = 4
        let window = 512
        let scratch = OutputBuffer(capacity: 2 * windows * window + 64)
        var ranked: [(size: Int, column: Int, encoding: IntegerEncoding)] = []
        for (index, values) in columns.enumerated() {
            var sample: [Int64] = []
            if values.count > windows * window {
                sample.reserveCapacity(windows * window)
                for w in 0..<windows {
                    let start = (values.count - window) * w / (windows - 1)
                    sample.append(contentsOf: values[start..<start + window])
                }
            } else {
                sample = Array(values)
            }
            sample.withUnsafeBufferPointer { sample in
                for encoding in candidates {
                    scratch.removeAll()
                    if encode(sample, as: encoding, into: scratch) { ranked.append((scratch.count, index, encoding)) }
                }
            }
        }
        ranked.sort { ($0.size, $0.column) < ($1.size, $1.column) }
        for choice in ranked {
            let start = out.count
            if encode(columns[choice.column], as: choice.encoding, into: out) { return (choice.column, choice.encoding) }
            out.count = start
        }
        _ = encode(columns[0], as: .frame, into: out)
        return (0, .frame)
    }

    /// Encodes with one encoding; false when it does not apply (too many distinct values for
    /// a dictionary).
    public static func encode(_ values: UnsafeBufferPointer<Int64>, as encoding: IntegerEncoding, into out: OutputBuffer) -> Bool {
        let n = values.count
        switch encoding {
        case .frame:
            let base = n > 0 ? values[0] : 0
            var common = CommonDivisor()
            for v in values {
                common.add(UInt64(bitPattern: v &- base).magnitudeOfSigned)
                if common.isOne { break }
            }
            let divisor = common.divisor
            out.append(littleEndian: base)
            out.append(varint: divisor.value)
            let shifted = [Int64](unsafeUninitializedCapacity: n) { buffer, count in
                if divisor.value == 1 {
                    for i in 0..<n { buffer[i] = values[i] &- base }
                } else {
                    for i in 0..<n { buffer[i] = divisor.quotient(values[i] &- base) }
                }
                count = n
            }
            shifted.withUnsafeBufferPointer { writeMiniBlocks($0, into: out) }
        case .delta:
            var common = CommonDivisor()
            for i in 1..<max(n, 1) {
                common.add(UInt64(bitPattern: values[i] &- values[i - 1]).magnitudeOfSigned)
                if common.isOne { break }
            }
            let divisor = common.divisor
            let first = n > 0 ? values[0] : 0
            out.append(littleEndian: first)
            out.append(varint: divisor.value)
            let zigzags = [Int64](unsafeUninitializedCapacity: max(n - 1, 0)) { buffer, count in
                if divisor.value == 1 {
                    for i in 1..<max(n, 1) { buffer[i - 1] = Int64(bitPattern: zigzagEncode(values[i] &- values[i - 1])) }
                } else {
                    for i in 1..<max(n, 1) { buffer[i - 1] = Int64(bitPattern: zigzagEncode(divisor.quotient(values[i] &- values[i - 1]))) }
                }
                count = max(n - 1, 0)
            }
            zigzags.withUnsafeBufferPointer { writeMiniBlocks($0, into: out) }
        case .dictionary:
            var codes = [Int64](repeating: 0, count: n)
            guard let table = codes.withUnsafeMutableBufferPointer({ dictionaryCodes(values, limit: dictionaryLimit, codes: $0) })
            else { return false }
            out.append(varint: UInt64(table.count))
            for v in table { out.append(littleEndian: v) }
            codes.withUnsafeBufferPointer { writeMiniBlocks($0, into: out) }
        case .runs:
            var starts: [Int64] = []
            var heads: [Int64] = []
            var steps: [Int64] = []
            steps.reserveCapacity(n)
            for i in 0..<n {
                if i == 0 || values[i] < values[i - 1] {
                    starts.append(Int64(i))
                    heads.append(values[i])
                } else {
                    steps.append(values[i] &- values[i - 1])
                }
            }
            for part in [starts, heads, steps] {
                let encoded = OutputBuffer(capacity: part.count * 2 + 16)
                let encoding = part.withUnsafeBufferPointer { encodeBest($0, into: encoded, candidates: simple) }
                out.append(varint: UInt64(part.count))
                out.append(byte: encoding.rawValue)
                out.append(varint: UInt64(encoded.count))
                out.append(encoded.bytes)
            }
        }
        return true
    }

    /// Decodes `output.count` values. Throws on any malformation: the bytes come from disk.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, as encoding: IntegerEncoding, into output: UnsafeMutableBufferPointer<Int64>
    ) throws(ColumnDecodingError) {
        var r = ByteReader(bytes)
        let n = output.count
        switch encoding {
        case .frame:
            guard let base = r.read(Int64.self), let d = r.readVarint() else { throw .truncated }
            try readMiniBlocks(&r, into: output)
            let m = Int64(bitPattern: d)
            for i in 0..<n { output[i] = base &+ output[i] &* m }
        case .delta:
            guard let first = r.read(Int64.self), let d = r.readVarint() else { throw .truncated }
            guard n > 0 else { break }
            try readMiniBlocks(&r, into: UnsafeMutableBufferPointer(rebasing: output[1...]))
            let m = Int64(bitPattern: d)
            var previous = first
            output[0] = first
            for i in 1..<n {
                previous = previous &+ zigzagDecode(UInt64(bitPattern: output[i])) &* m
                output[i] = previous
            }
        case .dictionary:
            guard let count = r.readVarint(), count <= UInt64(dictionaryLimit), let raw = r.readBytes(Int(count) * 8) else {
                throw .truncated
            }
            try readMiniBlocks(&r, into: output)
            for i in 0..<n {
                let code = output[i]
                guard code >= 0 && code < Int64(count) else { throw .badValue("dictionary code \(code) of \(count)") }
                output[i] = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: Int(code) * 8, as: Int64.self))
            }
        case .runs:
            var parts: [[Int64]] = []
            for _ in 0..<3 {
                guard let count = r.readVarint(), count <= UInt64(n), let tag = r.readByte(),
                    let encoding = IntegerEncoding(rawValue: tag), encoding != .runs, let length = r.readVarint(),
                    let bytes = r.readBytes(Int(clamping: length))
                else { throw .truncated }
                var part = [Int64](repeating: 0, count: Int(count))
                try part.withUnsafeMutableBufferPointer { (p) throws(ColumnDecodingError) in try decode(bytes, as: encoding, into: p) }
                parts.append(part)
            }
            let (starts, heads, steps) = (parts[0], parts[1], parts[2])
            guard starts.count == heads.count, starts.count + steps.count == n, n == 0 || starts.first == 0 else {
                throw .badValue("runs do not cover the column")
            }
            var nextStart = 0
            var step = 0
            for i in 0..<n {
                if nextStart < starts.count && starts[nextStart] == Int64(i) {
                    output[i] = heads[nextStart]
                    nextStart += 1
                } else {
                    guard i > 0, step < steps.count else { throw .badValue("run steps out of order") }
                    output[i] = output[i - 1] &+ steps[step]
                    step += 1
                }
            }
            guard nextStart == starts.count else { throw .badValue("run starts out of order") }
        }
        guard r.isAtEnd else { throw .badValue("\(r.remaining) trailing bytes in integer chunk") }
    }

    /// The sorted distinct values, with each value's index among them in `codes`; nil past
    /// `limit` of them. One pass through an open-addressing table of raw integers (this runs
    /// on every integer column the compactor writes), then the first-seen ordinals are
    /// renumbered in sorted order.
    static func dictionaryCodes(_ values: UnsafeBufferPointer<Int64>, limit: Int, codes: UnsafeMutableBufferPointer<Int64>) -> [Int64]? {
        // At most a quarter full. Sized for the values at hand, not for `limit`: most calls
        // measure a sample of 2,048 values, and clearing a table for 4,096 distinct ones
        // cost more than filling it.
        var size = 64
        while size < 4 * Swift.min(limit, values.count) { size <<= 1 }
        let mask = size - 1
        var found: [Int64] = []
        var sorted: [Int64] = []
        var rank: [Int64] = []
        let complete = withUnsafeTemporaryAllocation(of: Int64.self, capacity: size) { slots in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: size) { ordinals in
                ordinals.initialize(repeating: -1)
                func slot(of v: Int64) -> Int {
                    var slot = Int(truncatingIfNeeded: (UInt64(bitPattern: v) &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
                    while ordinals[slot] >= 0 && slots[slot] != v { slot = (slot + 1) & mask }
                    return slot
                }
                for i in values.indices {
                    let v = values[i]
                    let slot = slot(of: v)
                    if ordinals[slot] < 0 {
                        if found.count == limit { return false }
                        ordinals[slot] = Int32(found.count)
                        slots[slot] = v
                        found.append(v)
                    }
                    codes[i] = Int64(ordinals[slot])
                }
                // Each distinct value's rank among them sorted, found back through the table:
                // a radix sort of integers (sign bit flipped, so unsigned order is signed
                // order) rather than a sort of ordinals under a comparator.
                var keys = found.map { UInt64(bitPattern: $0) ^ 1 << 63 }
                RadixSort.sort(&keys)
                sorted = keys.map { Int64(bitPattern: $0 ^ 1 << 63) }
                rank = [Int64](repeating: 0, count: found.count)
                for (r, v) in sorted.enumerated() { rank[Int(ordinals[slot(of: v)])] = Int64(r) }
                return true
            }
        }
        guard complete else { return nil }
        rank.withUnsafeBufferPointer { rank in
            for i in codes.indices { codes[i] = rank[Int(codes[i])] }
        }
        return sorted
    }

    // MARK: Mini-blocks

    /// Per mini-block: zigzag-varint minimum, u8 width, u8 exception count, `16 × width`
    /// bytes of packed low bits, then per exception a u8 index and a varint of the high bits.
    ///
    /// The width is the one with the fewest total bits, exceptions included. Only 0 and the
    /// bit lengths that occur can be best, and a mini-block rarely has more than a handful.
    static func writeMiniBlocks(_ values: UnsafeBufferPointer<Int64>, into out: OutputBuffer) {
        guard let v = values.baseAddress else { return }
        let n = values.count
        let offsets = UnsafeMutablePointer<UInt64>.allocate(capacity: miniBlock)
        let packed = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * 64)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 4 * 65)
        let present = UnsafeMutablePointer<Int>.allocate(capacity: 65)
        let exceptionIndex = UnsafeMutablePointer<Int>.allocate(capacity: miniBlock)
        defer {
            exceptionIndex.deallocate()
            offsets.deallocate()
            packed.deallocate()
            lengths.deallocate()
            present.deallocate()
        }
        var start = 0
        while start < n {
            let m = Swift.min(miniBlock, n - start)
            let block = v + start
            var minimum = block[0]
            for i in 1..<Swift.max(m, 1) { minimum = Swift.min(minimum, block[i]) }
            var all: UInt64 = 0
            for i in 0..<m {
                let o = UInt64(bitPattern: block[i] &- minimum)
                offsets[i] = o
                all |= o
            }
            let longest = 64 - all.leadingZeroBitCount
            var bestWidth = longest
            if longest > 0 {
                // Four interleaved histograms: runs of one length would otherwise chain every
                // increment on the store of the one before.
                lengths.update(repeating: 0, count: 4 * 65)
                var i = 0
                while i + 4 <= m {
                    lengths[64 - offsets[i].leadingZeroBitCount] += 1
                    lengths[65 + 64 - offsets[i + 1].leadingZeroBitCount] += 1
                    lengths[130 + 64 - offsets[i + 2].leadingZeroBitCount] += 1
                    lengths[195 + 64 - offsets[i + 3].leadingZeroBitCount] += 1
                    i += 4
                }
                while i < m {
                    lengths[64 - offsets[i].leadingZeroBitCount] += 1
                    i += 1
                }
                for l in 0...longest { lengths[l] += lengths[65 + l] + lengths[130 + l] + lengths[195 + l] }
                var presentCount = 0
                for l in 1...longest where lengths[l] > 0 {
                    present[presentCount] = l
                    presentCount += 1
                }
                // Width 0, then each length that occurs; ties keep the narrower width.
                var bestCost = Int.max
                var candidate = 0
                var width = 0
                while true {
                    var cost = 128 * width
                    for j in 0..<presentCount where present[j] > width {
                        let l = present[j]
                        cost += lengths[l] * (8 + 8 * ((l - width + 6) / 7))
                    }
                    if cost < bestCost {
                        bestCost = cost
                        bestWidth = width
                    }
                    guard candidate < presentCount else { break }
                    width = present[candidate]
                    candidate += 1
                }
            }
            out.append(varint: zigzagEncode(minimum))
            out.append(byte: UInt8(bestWidth))
            var exceptions = 0
            if bestWidth < longest {
                for l in (bestWidth + 1)...longest { exceptions += lengths[l] }
            }
            out.append(byte: UInt8(exceptions))
            // Pack 128 slots (a short last block is padded with zeros) into 2 × width words,
            // through a register: a read-modify-write of two words per value stalls on the
            // store of the value before.
            if bestWidth > 0 {
                for i in m..<miniBlock { offsets[i] = 0 }
                let lowMask: UInt64 = bestWidth == 64 ? .max : (1 << UInt64(bestWidth)) &- 1
                var word: UInt64 = 0
                var filled = 0
                var w = 0
                for i in 0..<miniBlock {
                    let value = offsets[i] & lowMask
                    word |= value &<< UInt64(filled)
                    filled += bestWidth
                    if filled >= 64 {
                        packed[w] = word
                        w += 1
                        filled -= 64
                        word = filled == 0 ? 0 : value &>> UInt64(bestWidth - filled)
                    }
                }
                out.reserve(w * 8)
                for i in 0..<w { out.append(littleEndian: packed[i]) }
            }
            if exceptions > 0 {
                // Collected without a branch per slot (whether a slot is an exception is
                // unpredictable), then written.
                var found = 0
                let shift = UInt64(bestWidth)
                for i in 0..<m {
                    let high = offsets[i] &>> shift
                    exceptionIndex[found] = i
                    found += high != 0 ? 1 : 0
                }
                for k in 0..<found {
                    let i = exceptionIndex[k]
                    out.append(byte: UInt8(i))
                    out.append(varint: offsets[i] &>> shift)
                }
            }
            start += m
        }
    }

    static func readMiniBlocks(_ r: inout ByteReader, into output: UnsafeMutableBufferPointer<Int64>) throws(ColumnDecodingError) {
        var start = 0
        while start < output.count {
            let end = min(start + miniBlock, output.count)
            guard let zz = r.readVarint(), let width = r.readByte(), let exceptions = r.readByte() else { throw .truncated }
            guard width <= 64 else { throw .badValue("bit width \(width)") }
            let minimum = zigzagDecode(zz)
            let w = Int(width)
            guard let words = r.readBytes(16 * w) else { throw .truncated }
            let lowMask: UInt64 = w == 64 ? .max : (1 << UInt64(w)) &- 1
            if w == 0 {
                for i in start..<end { output[i] = minimum }
            } else {
                var bit = 0
                for i in start..<end {
                    let word = bit >> 6
                    let shift = UInt64(bit & 63)
                    var v = words.loadUnaligned(fromByteOffset: word * 8, as: UInt64.self) >> shift
                    if shift + UInt64(w) > 64 {
                        v |= words.loadUnaligned(fromByteOffset: (word + 1) * 8, as: UInt64.self) << (64 - shift)
                    }
                    output[i] = minimum &+ Int64(bitPattern: v & lowMask)
                    bit += w
                }
            }
            for _ in 0..<exceptions {
                guard let index = r.readByte(), let high = r.readVarint() else { throw .truncated }
                let i = start + Int(index)
                guard i < end, w < 64 else { throw .badValue("exception index \(index)") }
                output[i] = output[i] &+ Int64(bitPattern: high << UInt64(w))
            }
            start = end
        }
    }
}

@inline(__always)
func zigzagEncode(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

@inline(__always)
func zigzagDecode(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }

package func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    var a = a
    var b = b
    while b != 0 { (a, b) = (b, a % b) }
    return a
}

/// Division by a divisor known to divide the dividend, by multiplication.
///
/// Timestamps in microseconds from millisecond clocks share a divisor of 1000, and a
/// 64-bit `div` per value, to find it and then to divide by it, was a third of the time of
/// `IntegerEncoding.encode`. An odd number has an inverse modulo 2⁶⁴, and for an exact
/// multiple `x = q·d` of `d = odd·2ᵏ`, `(x >> k) · odd⁻¹ = q` (mod 2⁶⁴); the same product
/// tells whether `d` divides `x` at all (Granlund and Montgomery, 1994; Hacker's Delight 10-17).
package struct ExactDivisor {
    package let value: UInt64
    private let shift: UInt64
    private let inverse: UInt64
    /// The largest quotient `(x >> shift) / odd` can have: products above it are not multiples.
    private let limit: UInt64

    /// `value` must not be 0.
    package init(_ value: UInt64) {
        self.value = value
        shift = UInt64(value.trailingZeroBitCount)
        let odd = value >> shift
        // Newton's iteration doubles the correct low bits each step: odd·odd ≡ 1 (mod 8)
        // gives 3, then 6, 12, 24, 48, 96.
        var inverse = odd
        for _ in 0..<5 { inverse = inverse &* (2 &- odd &* inverse) }
        self.inverse = inverse
        limit = UInt64.max / odd
    }

    /// Whether `value` divides `x`.
    @inline(__always)
    package func divides(_ x: UInt64) -> Bool {
        x & ((1 << shift) &- 1) == 0 && (x >> shift) &* inverse <= limit
    }

    /// `x / value`, for an `x` that `value` divides (as a signed number).
    @inline(__always)
    package func quotient(_ x: Int64) -> Int64 {
        Int64(bitPattern: UInt64(bitPattern: x >> Int64(shift)) &* inverse)
    }
}

/// The greatest common divisor of the numbers added so far (1 if all were 0). Most values
/// are multiples of the divisor found so far, which `ExactDivisor` confirms with one multiply;
/// only the others take Euclid's loop of divisions.
package struct CommonDivisor {
    private var found: UInt64 = 0
    package private(set) var divisor = ExactDivisor(1)

    package init() {}

    /// Whether no divisor but 1 is left: adding more cannot change it.
    package var isOne: Bool { found == 1 }

    @inline(__always)
    package mutating func add(_ x: UInt64) {
        if found != 0 && divisor.divides(x) { return }
        if x == 0 { return }
        found = gcd(found, x)
        divisor = ExactDivisor(found)
    }
}

extension UInt64 {
    /// The magnitude of this bit pattern read as a signed two's-complement value.
    var magnitudeOfSigned: UInt64 { Int64(bitPattern: self).magnitude }
}

/// Why a column chunk could not be decoded. Readers throw it instead of returning wrong rows.
public enum ColumnDecodingError: Error, Equatable, CustomStringConvertible {
    case truncated
    case badValue(String)

    public var description: String {
        switch self {
        case .truncated: "chunk ends early"
        case .badValue(let what): "bad value: \(what)"
        }
    }
}
