/// SplitMix64: a tiny deterministic generator, so every benchmark run works on the same data.
public struct SplitMix64 {
    public var state: UInt64

    public init(state: UInt64) {
        self.state = state
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    public mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    public mutating func hex(_ digits: Int) -> String {
        let alphabet = Array("0123456789abcdef")
        return String((0..<digits).map { _ in alphabet[below(16)] })
    }

    /// An index drawn with probability proportional to its weight; `cumulative` holds the
    /// running sums of the weights.
    public mutating func weighted(_ cumulative: [Int]) -> Int {
        let x = below(cumulative.last!)
        return cumulative.firstIndex { x < $0 }!
    }
}
