public import ColumnStore

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
    /// Mean of a numeric property over the rows that carry it.
    case average(String)
    /// Exact percentiles (0...1) of a numeric property, interpolated like `quantile_cont`.
    case percentiles(String, [Double])
}

public struct AggregateQuery: Sendable {
    public var start: Int64
    public var end: Int64
    public var eventName: String?
    public var filters: [PropertyFilter] = []
    /// At most two keys.
    public var groupBy: [GroupKey]
    public var aggregate: Aggregate

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

/// Filter, group and aggregate in one pass over each block. Group keys are mapped per block
/// from dictionary codes (or time buckets) to global group numbers through small tables, so
/// the per-row work is a table lookup and an add.
public enum AggregationEngine {
    public static func run(_ query: AggregateQuery, on snapshot: QuerySnapshot) throws -> AggregateResult {
        precondition(query.groupBy.count <= 2, "at most two grouping keys")
        var groupIndex: [UInt64: Int] = [:]
        var groupKeys: [[String]] = []
        var counts: [Int] = []
        var sums: [Double] = []
        var distinct: [[UInt64]] = []
        var samples: [[Double]] = []
        var keyTables: [[String: Int]] = Array(repeating: [:], count: query.groupBy.count)
        var keyNames: [[String]] = Array(repeating: [], count: query.groupBy.count)
        var scanned = 0
        for block in snapshot.blocks where block.footer.maxTimestamp >= query.start && block.footer.minTimestamp < query.end {
            let columns = BlockColumns(block)
            let n = columns.rows
            scanned += n
            let ts = try columns.timestamps()
            var keep = [Bool](repeating: true, count: n)
            for r in 0..<n where ts[r] < query.start || ts[r] >= query.end { keep[r] = false }
            if let name = query.eventName {
                let m = try columns.rows(named: name)
                for r in 0..<n where !m[r] { keep[r] = false }
            }
            if let m = try rows(matchingAll: query.filters, in: columns, people: snapshot.people, sessions: snapshot.sessions) {
                for r in 0..<n where !m[r] { keep[r] = false }
            }
            // Per key: each row's block-local key number (-1: no value), and what the local
            // numbers mean globally. Local numbers are small (codes, buckets of one block), so
            // a (key, key) pair finds its group through a dense table, not a hash per row.
            var localIds: [[Int32]] = []
            var localToGlobal: [[Int]] = []
            for (k, key) in query.groupBy.enumerated() {
                var perRow = [Int32](repeating: -1, count: n)
                var globals: [Int] = []
                func intern(_ s: String) -> Int {
                    if let i = keyTables[k][s] { return i }
                    keyTables[k][s] = keyNames[k].count
                    keyNames[k].append(s)
                    return keyNames[k].count - 1
                }
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
                        globals = (0..<dictionary.count).map { intern(dictionary.string($0)) }
                        let count = dictionary.count
                        for r in 0..<n where keep[r] {
                            let code = codes[r]
                            if code < count { perRow[r] = Int32(code) }
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
                                lastLocal = Int32(globals.count)
                                localOfBucket[bucket] = lastLocal
                                let start: Int64
                                if case .period(let unit) = key { start = unit.start(ofIndex: bucket) } else { start = Int64(bucket) * 3_600_000_000 }
                                globals.append(intern(String(start)))
                            }
                        }
                        perRow[r] = lastLocal
                    }
                }
                localIds.append(perRow)
                localToGlobal.append(globals)
            }
            let persons = query.aggregate == .distinctPeople ? try columns.persons() : []
            var numeric: [DecodedColumn] = []
            switch query.aggregate {
            case .average(let p), .percentiles(let p, _): numeric = try columns.property(p)
            default: break
            }
            let width0 = localToGlobal.first?.count ?? 1
            let width1 = localToGlobal.count > 1 ? localToGlobal[1].count : 1
            var groupOfLocal = [Int32](repeating: -1, count: max(1, width0 * width1))
            for r in 0..<n where keep[r] {
                var local = 0
                if localIds.count > 0 {
                    let l0 = localIds[0][r]
                    guard l0 >= 0 else { continue }
                    local = Int(l0)
                    if localIds.count > 1 {
                        let l1 = localIds[1][r]
                        guard l1 >= 0 else { continue }
                        local = local * width1 + Int(l1)
                    }
                }
                var value: Double = 0
                if !numeric.isEmpty {
                    var found = false
                    for c in numeric where c.isPresent(r) {
                        if case .ints(let v) = c.values { value = Double(v[r]); found = true }
                        if case .doubles(let v) = c.values { value = v[r]; found = true }
                    }
                    guard found else { continue }
                }
                var g = Int(groupOfLocal[local])
                if g < 0 {
                    var globalKeys: [Int] = []
                    if localIds.count > 0 { globalKeys.append(localToGlobal[0][local / width1]) }
                    if localIds.count > 1 { globalKeys.append(localToGlobal[1][local % width1]) }
                    let packed = globalKeys.reduce(UInt64(0)) { $0 << 32 | UInt64($1) }
                    if let existing = groupIndex[packed] {
                        g = existing
                    } else {
                        g = counts.count
                        groupIndex[packed] = g
                        groupKeys.append((0..<globalKeys.count).map { keyNames[$0][globalKeys[$0]] })
                        counts.append(0)
                        sums.append(0)
                        distinct.append([])
                        samples.append([])
                    }
                    groupOfLocal[local] = Int32(g)
                }
                counts[g] += 1
                switch query.aggregate {
                case .count: break
                case .distinctPeople:
                    let p = persons[r]
                    if p != noPerson {
                        let word = Int(p >> 6)
                        if distinct[g].count <= word { distinct[g] += [UInt64](repeating: 0, count: word + 1 - distinct[g].count) }
                        distinct[g][word] |= 1 << UInt64(p & 63)
                    }
                case .average: sums[g] += value
                case .percentiles: samples[g].append(value)
                }
            }
        }
        var rows: [AggregateResult.Row] = []
        for g in counts.indices {
            let values: [Double]
            switch query.aggregate {
            case .count: values = [Double(counts[g])]
            case .distinctPeople: values = [Double(distinct[g].reduce(0) { $0 + $1.nonzeroBitCount })]
            case .average: values = [sums[g] / Double(counts[g])]
            case .percentiles(_, let ps):
                let sorted = samples[g].sorted()
                values = ps.map { p in
                    let position = p * Double(sorted.count - 1)
                    let low = Int(position.rounded(.down))
                    let high = min(low + 1, sorted.count - 1)
                    return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
                }
            }
            rows.append(AggregateResult.Row(keys: groupKeys[g], values: values))
        }
        rows.sort { $0.keys.lexicographicallyPrecedes($1.keys) }
        return AggregateResult(rows: rows, rowsScanned: scanned)
    }
}
