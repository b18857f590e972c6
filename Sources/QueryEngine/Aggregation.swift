public import ColumnStore
import Foundation

/// What rows are grouped by.
public enum GroupKey: Sendable, Equatable {
    case eventName
    case botId
    /// A string property (other types are not grouping keys).
    case property(String)
    /// Time buckets in UTC.
    case hour
    case period(PeriodUnit)
}

public enum Aggregate: Sendable, Equatable {
    case count
    /// Distinct people (user id, else anonymous id).
    case distinctPeople
    /// Distinct `user_id`s (rows without one do not count).
    case distinctUsers
    /// Mean of a numeric property over the rows that carry it.
    case average(String)
    /// Exact percentiles (0...1) of a numeric property, interpolated like `quantile_cont`.
    case percentiles(String, [Double])
}

extension Aggregate {
    var needsSamples: Bool {
        if case .percentiles = self { return true }
        return false
    }
}

public struct AggregateQuery: Sendable {
    public var start: Int64
    public var end: Int64
    public var eventName: String?
    public var filters: [PropertyFilter] = []
    /// At most two keys.
    public var groupBy: [GroupKey]
    public var aggregate: Aggregate
    /// When set, the scan stops with `QueryError.timeout` once it has passed.
    public var deadline: ContinuousClock.Instant?

    public init(start: Int64 = .min, end: Int64 = .max, eventName: String? = nil, groupBy: [GroupKey], aggregate: Aggregate) {
        self.start = start
        self.end = end
        self.eventName = eventName
        self.groupBy = groupBy
        self.aggregate = aggregate
    }
}

public struct AggregateResult: Sendable {
    public struct Row: Sendable, Equatable {
        /// Group key values: strings, or for time keys the bucket start (µs) as a string.
        public var keys: [String]
        public var values: [Double]

        public init(keys: [String], values: [Double]) {
            self.keys = keys
            self.values = values
        }
    }
    public var rows: [Row]
    public var rowsScanned: Int
}

/// Filter, group and aggregate: each block is scanned on its own into partial groups (on every
/// core), and the partials are merged by key. Inside a block, group keys are block-local
/// numbers (dictionary codes, time buckets), so a row finds its group through a dense table.
public enum AggregationEngine {
    /// Groups of one block (or of several, once merged), by their key strings.
    struct Partial {
        var index: [[String]: Int] = [:]
        var keys: [[String]] = []
        var counts: [Int] = []
        var sums: [Double] = []
        var distinct: [[UInt64]] = []
        var samples: [[Double]] = []
        var rowsScanned = 0

        mutating func group(_ key: [String]) -> Int {
            if let g = index[key] { return g }
            index[key] = keys.count
            keys.append(key)
            counts.append(0)
            sums.append(0)
            distinct.append([])
            samples.append([])
            return keys.count - 1
        }

        mutating func merge(_ other: Partial) {
            rowsScanned += other.rowsScanned
            for (o, key) in other.keys.enumerated() {
                let g = group(key)
                counts[g] += other.counts[o]
                sums[g] += other.sums[o]
                if distinct[g].count < other.distinct[o].count {
                    distinct[g] += [UInt64](repeating: 0, count: other.distinct[o].count - distinct[g].count)
                }
                for (w, word) in other.distinct[o].enumerated() { distinct[g][w] |= word }
                samples[g] += other.samples[o]
            }
        }
    }

    /// Bitmap words a block may use for distinct counts (32 MiB).
    static let distinctBudgetWords = 4 << 20

    /// `threads`: blocks scanned at once (default: one per core).
    public static func run(_ query: AggregateQuery, on snapshot: QuerySnapshot, threads: Int? = nil) throws -> AggregateResult {
        let threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        precondition(query.groupBy.count <= 2, "at most two grouping keys")
        let blocks = snapshot.blocks.filter { $0.footer.maxTimestamp >= query.start && $0.footer.minTimestamp < query.end }
        var total = Partial()
        for result in parallelMap(blocks.count, threads: threads, { try scan(blocks[$0], query, snapshot) }) { total.merge(try result.get()) }
        var rows: [AggregateResult.Row] = []
        for g in total.counts.indices {
            let values: [Double]
            switch query.aggregate {
            case .count: values = [Double(total.counts[g])]
            case .distinctPeople, .distinctUsers: values = [Double(total.distinct[g].reduce(0) { $0 + $1.nonzeroBitCount })]
            case .average: values = [total.sums[g] / Double(total.counts[g])]
            case .percentiles(_, let ps):
                var samples = total.samples[g]
                // Ascending fractions, so each selection works only above the previous one
                // (quickselect leaves everything past position k at least v[k]); the value
                // after position k is then the minimum of the rest, a linear scan.
                var answers = [Double](repeating: 0, count: ps.count)
                var floor = 0
                for i in ps.indices.sorted(by: { ps[$0] < ps[$1] }) {
                    let position = ps[i] * Double(samples.count - 1)
                    let low = Int(position.rounded(.down))
                    let high = min(low + 1, samples.count - 1)
                    let a = Selection.nth(&samples, low, from: min(floor, low))
                    let b = high == low ? a : Selection.minimum(samples, from: high)
                    floor = low
                    answers[i] = a + (b - a) * (position - Double(low))
                }
                values = answers
            }
            rows.append(AggregateResult.Row(keys: total.keys[g], values: values))
        }
        rows.sort { $0.keys.lexicographicallyPrecedes($1.keys) }
        return AggregateResult(rows: rows, rowsScanned: total.rowsScanned)
    }

    /// One block's groups.
    static func scan(_ block: BlockFile, _ query: AggregateQuery, _ snapshot: QuerySnapshot) throws -> Partial {
        var partial = Partial()
        if let deadline = query.deadline, ContinuousClock.now >= deadline { throw QueryError.timeout }
        try snapshot.checkDeadline()
        let columns = BlockColumns(block)
        let n = columns.rows
        partial.rowsScanned = n
        let ts = try columns.timestamps()
        var keep = [Bool](repeating: true, count: n)
        if block.footer.minTimestamp < query.start || block.footer.maxTimestamp >= query.end {
            let (start, end) = (query.start, query.end)
            keep.withUnsafeMutableBufferPointer { k in
                ts.withUnsafeBufferPointer { t in for r in 0..<n where t[r] < start || t[r] >= end { k[r] = false } }
            }
        }
        if let name = query.eventName {
            let m = try columns.rows(named: name)
            clear(&keep, where: m)
        }
        if let m = try rows(matchingAll: query.filters, in: columns, people: snapshot.people, sessions: snapshot.sessions) {
            clear(&keep, where: m)
        }
        // Per key: each row's block-local key number (-1: no value) and its string.
        var localIds: [[Int32]] = []
        var localNames: [[String]] = []
        for key in query.groupBy {
            var perRow = [Int32](repeating: -1, count: n)
            var names: [String] = []
            switch key {
            case .eventName, .botId, .property:
                let column: DecodedColumn?
                switch key {
                case .eventName: column = try columns.builtin("event_name")
                case .botId: column = try columns.builtin("bot_id")
                case .property(let p): column = try columns.property(p).first { $0.descriptor.kind == .string }
                default: column = nil
                }
                if let column, case .codes(let codes, let dictionary) = column.values {
                    names = (0..<dictionary.count).map { dictionary.string($0) }
                    let count = dictionary.count
                    perRow.withUnsafeMutableBufferPointer { out in
                        switch codes {
                        case .u8(let c): for r in 0..<n where keep[r] && Int(c[r]) < count { out[r] = Int32(c[r]) }
                        case .u16(let c): for r in 0..<n where keep[r] && Int(c[r]) < count { out[r] = Int32(c[r]) }
                        case .u32(let c): for r in 0..<n where keep[r] && Int(c[r]) < count { out[r] = Int32(c[r]) }
                        }
                    }
                }
            case .hour, .period:
                var lastBucket = Int.min
                var lastLocal: Int32 = -1
                var localOfBucket: [Int: Int32] = [:]
                for r in 0..<n where keep[r] {
                    let bucket: Int
                    if case .period(let unit) = key {
                        bucket = unit.index(ofMicros: ts[r])
                    } else {
                        bucket = Int(ts[r] >= 0 ? ts[r] / 3_600_000_000 : (ts[r] + 1) / 3_600_000_000 - 1)
                    }
                    if bucket != lastBucket {
                        lastBucket = bucket
                        if let l = localOfBucket[bucket] {
                            lastLocal = l
                        } else {
                            lastLocal = Int32(names.count)
                            localOfBucket[bucket] = lastLocal
                            let start: Int64
                            if case .period(let unit) = key { start = unit.start(ofIndex: bucket) } else { start = Int64(bucket) * 3_600_000_000 }
                            names.append(String(start))
                        }
                    }
                    perRow[r] = lastLocal
                }
            }
            localIds.append(perRow)
            localNames.append(names)
        }
        // One numeric vector for the measured property (the row's int or double value).
        var values: [Double] = []
        var hasValue: [Bool] = []
        switch query.aggregate {
        case .average(let p), .percentiles(let p, _):
            values = [Double](repeating: 0, count: n)
            hasValue = [Bool](repeating: false, count: n)
            for c in try columns.property(p) {
                switch c.values {
                case .ints(let v):
                    values.withUnsafeMutableBufferPointer { out in
                        hasValue.withUnsafeMutableBufferPointer { has in
                            v.withUnsafeBufferPointer { v in
                                c.forEachPresentRow(n) { r in
                                    out[r] = Double(v[r])
                                    has[r] = true
                                }
                            }
                        }
                    }
                case .doubles(let v):
                    values.withUnsafeMutableBufferPointer { out in
                        hasValue.withUnsafeMutableBufferPointer { has in
                            v.withUnsafeBufferPointer { v in
                                c.forEachPresentRow(n) { r in
                                    out[r] = v[r]
                                    has[r] = true
                                }
                            }
                        }
                    }
                default: break
                }
            }
            clear(&keep, where: hasValue)
        default: break
        }
        // Project ids counted by the distinct aggregates (`noPerson`: none).
        var persons: [UInt32] = []
        if query.aggregate == .distinctPeople {
            persons = try columns.persons()
        } else if query.aggregate == .distinctUsers {
            persons = [UInt32](repeating: noPerson, count: n)
            if let users = try columns.builtin("user_id"), case .ints(let ids) = users.values {
                users.forEachPresentRow(n) { r in persons[r] = UInt32(truncatingIfNeeded: ids[r]) }
            }
        }
        let countsDistinct = query.aggregate == .distinctPeople || query.aggregate == .distinctUsers
        let width1 = localNames.count > 1 ? localNames[1].count : 1
        let width0 = localNames.first?.count ?? 1
        let words = (snapshot.people.count + 63) / 64
        // Accumulate into dense per-block arrays indexed by the local key pair, then fold
        // the used slots into the partial's groups.
        let slots = max(1, width0 * width1)
        if countsDistinct && slots * words > Self.distinctBudgetWords {
            throw QueryError.memoryBudget(
                "distinct people over \(slots) groups of one block would take \(slots * words / 131_072) MiB of bitmaps; group by fewer values")
        }
        var counts = [Int](repeating: 0, count: slots)
        var sums = [Double](repeating: 0, count: slots)
        // Percentiles: each kept row's group, then the values laid out group by group.
        var rowGroup = [Int32](repeating: -1, count: query.aggregate.needsSamples ? n : 0)
        var bits = [UInt64](repeating: 0, count: countsDistinct ? slots * words : 0)
        let keys0 = localIds.first ?? []
        let keys1 = localIds.count > 1 ? localIds[1] : []
        let aggregate = query.aggregate
        // Every buffer the row loop touches as a raw pointer: no uniqueness or bounds checks.
        keep.withUnsafeBufferPointer { keep in
            keys0.withUnsafeBufferPointer { k0 in
                keys1.withUnsafeBufferPointer { k1 in
                    values.withUnsafeBufferPointer { values in
                        persons.withUnsafeBufferPointer { persons in
                            counts.withUnsafeMutableBufferPointer { counts in
                                sums.withUnsafeMutableBufferPointer { sums in
                                    bits.withUnsafeMutableBufferPointer { bits in
                                        rowGroup.withUnsafeMutableBufferPointer { rowGroup in
                                            for r in 0..<n where keep[r] {
                                                var local = 0
                                                if k0.count > 0 {
                                                    let a = k0[r]
                                                    if a < 0 { continue }
                                                    local = Int(a)
                                                    if k1.count > 0 {
                                                        let b = k1[r]
                                                        if b < 0 { continue }
                                                        local = local * width1 + Int(b)
                                                    }
                                                }
                                                counts[local] &+= 1
                                                switch aggregate {
                                                case .count: break
                                                case .distinctPeople, .distinctUsers:
                                                    let p = persons[r]
                                                    if p != noPerson { bits[local * words + Int(p >> 6)] |= 1 << UInt64(p & 63) }
                                                case .average: sums[local] += values[r]
                                                case .percentiles: rowGroup[r] = Int32(local)
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var samples: [Double] = []
        var sampleStarts = [Int](repeating: 0, count: slots + 1)
        if query.aggregate.needsSamples {
            for local in 0..<slots { sampleStarts[local + 1] = sampleStarts[local] + counts[local] }
            samples = [Double](repeating: 0, count: sampleStarts[slots])
            var next = sampleStarts
            samples.withUnsafeMutableBufferPointer { out in
                values.withUnsafeBufferPointer { values in
                    for r in 0..<n where rowGroup[r] >= 0 {
                        let g = Int(rowGroup[r])
                        out[next[g]] = values[r]
                        next[g] += 1
                    }
                }
            }
        }
        for local in 0..<slots where counts[local] > 0 {
            var key: [String] = []
            if !keys0.isEmpty { key.append(localNames[0][local / width1]) }
            if !keys1.isEmpty { key.append(localNames[1][local % width1]) }
            let g = partial.group(key)
            partial.counts[g] += counts[local]
            partial.sums[g] += sums[local]
            if countsDistinct { partial.distinct[g] = Array(bits[(local * words)..<((local + 1) * words)]) }
            if query.aggregate.needsSamples { partial.samples[g] += samples[sampleStarts[local]..<sampleStarts[local + 1]] }
        }
        return partial
    }
}

/// Clears `keep[r]` wherever `mask[r]` is false.
@inline(__always)
func clear(_ keep: inout [Bool], where mask: [Bool]) {
    let n = min(keep.count, mask.count)
    keep.withUnsafeMutableBufferPointer { k in
        mask.withUnsafeBufferPointer { m in
            for r in 0..<n { k[r] = k[r] && m[r] }
        }
    }
}

/// The k-th smallest value without sorting everything (quickselect, median-of-three pivots):
/// linear on average, where a percentile by sorting is n log n.
enum Selection {
    /// `from`: positions below it already hold values no greater than any above it.
    static func nth(_ values: inout [Double], _ k: Int, from: Int = 0) -> Double {
        values.withUnsafeMutableBufferPointer { v in
            var low = from
            var high = v.count - 1
            while high > low {
                let mid = low + (high - low) / 2
                // Median of three to the middle, then Hoare partition around it.
                if v[mid] < v[low] { v.swapAt(mid, low) }
                if v[high] < v[low] { v.swapAt(high, low) }
                if v[high] < v[mid] { v.swapAt(high, mid) }
                let pivot = v[mid]
                var i = low
                var j = high
                while i <= j {
                    while v[i] < pivot { i += 1 }
                    while v[j] > pivot { j -= 1 }
                    if i <= j {
                        v.swapAt(i, j)
                        i += 1
                        j -= 1
                    }
                }
                if k <= j { high = j } else if k >= i { low = i } else { return v[k] }
            }
            return v[k]
        }
    }
}

extension Selection {
    static func minimum(_ values: [Double], from: Int) -> Double {
        values.withUnsafeBufferPointer { v in
            var m = v[from]
            for i in (from + 1)..<max(from + 1, v.count) where v[i] < m { m = v[i] }
            return m
        }
    }
}

/// A query the engine refuses to run, with the reason in words a caller can act on.
public enum QueryError: Error, CustomStringConvertible, Equatable {
    case memoryBudget(String)
    /// The query's deadline passed; it stopped at the next block.
    case timeout

    public var description: String {
        switch self {
        case .memoryBudget(let why): "over the memory budget: \(why)"
        case .timeout: "the query ran past its deadline and was cancelled"
        }
    }
}
