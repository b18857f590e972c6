#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The splitmix64 finalizer. A bijection on `UInt64`, so `mix64(counter ^ salt)` gives ids
/// that look random but never collide within one run.
@inline(__always)
func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// xoshiro256** seeded through splitmix64. Never the system generator: the output must be
/// a pure function of the options.
struct Rng {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64
    private var spare = 0.0
    private var hasSpare = false

    /// Independent streams for one seed: planning and generation draw from different ones,
    /// so a change in how events are generated leaves the user population as it was.
    init(seed: UInt64, stream: UInt64) {
        var x = seed ^ (stream &* 0xD1B5_4A32_D192_ED03)
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            return mix64(x)
        }
        s0 = next()
        s1 = next()
        s2 = next()
        s3 = next()
    }

    @inline(__always)
    mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in 0..<n (n > 0), by the high half of a 64x64 product.
    @inline(__always)
    mutating func below(_ n: Int) -> Int {
        Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(n)).high)
    }

    @inline(__always)
    mutating func chance(_ p: Double) -> Bool {
        unit() < p
    }

    /// Standard normal (Box-Muller, caching the second value).
    mutating func normal() -> Double {
        if hasSpare {
            hasSpare = false
            return spare
        }
        var u = unit()
        if u < 1e-300 { u = 1e-300 }
        let v = unit()
        let r = (-2.0 * log(u)).squareRoot()
        let a = 2.0 * Double.pi * v
        spare = r * sin(a)
        hasSpare = true
        return r * cos(a)
    }

    /// Log-normal with the given median; `sigma` is the spread of its logarithm.
    @inline(__always)
    mutating func logNormal(median: Double, sigma: Double) -> Double {
        median * exp(sigma * normal())
    }

    /// Geometric on 0, 1, 2, ... with the given mean.
    mutating func geometric(mean: Double) -> Int {
        let p = 1.0 / (1.0 + mean)
        var u = unit()
        if u < 1e-300 { u = 1e-300 }
        return Int(log(u) / log(1.0 - p))
    }

    mutating func shuffle(_ a: inout [Int32]) {
        var i = a.count
        while i > 1 {
            let j = below(i)
            i -= 1
            a.swapAt(i, j)
        }
    }
}

/// Walker/Vose alias table: O(1) sampling from a fixed discrete distribution with one draw.
struct Alias {
    private let threshold: [UInt32]
    private let alias: [Int32]
    let count: Int

    init(_ weights: [Double]) {
        precondition(!weights.isEmpty && weights.allSatisfy { $0 >= 0 })
        let n = weights.count
        let total = weights.reduce(0, +)
        var scaled = weights.map { $0 * Double(n) / total }
        var threshold = [UInt32](repeating: .max, count: n)
        var alias = (0..<n).map { Int32($0) }
        var small = [Int]()
        var large = [Int]()
        for i in 0..<n { if scaled[i] < 1 { small.append(i) } else { large.append(i) } }
        while let s = small.popLast() {
            guard let l = large.popLast() else { break }
            threshold[s] = UInt32(min(scaled[s] * 4_294_967_296.0, 4_294_967_295.0))
            alias[s] = Int32(l)
            scaled[l] -= 1 - scaled[s]
            if scaled[l] < 1 { small.append(l) } else { large.append(l) }
        }
        self.threshold = threshold
        self.alias = alias
        self.count = n
    }

    @inline(__always)
    func sample(_ rng: inout Rng) -> Int {
        let x = rng.next()
        let i = Int(truncatingIfNeeded: ((x >> 32) &* UInt64(count)) >> 32)
        return UInt32(truncatingIfNeeded: x) < threshold[i] ? i : Int(alias[i])
    }
}

/// Weights 1/(i+1)^s: the usual skew for "a few values are most of the traffic".
func zipfWeights(_ n: Int, _ s: Double) -> [Double] {
    (0..<n).map { 1.0 / pow(Double($0 + 1), s) }
}
