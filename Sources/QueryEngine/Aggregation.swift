public import ColumnStore
import Foundation

/// What rows are grouped by.
public enum GroupKey: Sendable, Equatable {
    case eventName
    case botId
    /// A string property (other types are not grouping keys).
    case property(String)
    /// Time buckets of local time in the query's `timeZone` (UTC by default).
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
    /// The zone whose local hours, days, weeks and months the time keys are. A bucket's key
    /// is the UTC instant (µs) its local start falls on.
    public var timeZone: ZoneOffsets = .utc

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
    /// Values exact percentiles may hold in memory at once (512 MiB).
    static let sampleBudget = 64 << 20

    /// `threads`: blocks scanned at once (default: one per core).
    public static func run(_ query: AggregateQuery, on snapshot: QuerySnapshot, threads: Int? = nil) throws -> AggregateResult {
        let threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        precondition(query.groupBy.count <= 2, "at most two grouping keys")
        let blocks = snapshot.blocks.filter { $0.footer.maxTimestamp >= query.start && $0.footer.minTimestamp < query.end }
        var total = Partial()
        var samples = 0
        for result in parallelMap(blocks.count, threads: threads, { try scan(blocks[$0], query, snapshot) }) {
            let partial = try result.get()
            samples += partial.samples.reduce(0) { $0 + $1.count }
            if samples > Self.sampleBudget {
                throw QueryError.memoryBudget(
                    "exact percentiles over more than \(Self.sampleBudget) values would take over \(Self.sampleBudget * 8 >> 20) MiB; narrow the time range or add filters")
            }
            total.merge(partial)
        }
        // Percentiles select within each group, the groups on every core.
        var selected: [[Double]] = []
        if case .percentiles(_, let ps) = query.aggregate {
            let groupSamples = total.samples
            total.samples = []
            selected = try parallelMap(groupSamples.count, threads: threads) { g in
                try snapshot.checkDeadline()
                return percentiles(groupSamples[g], ps)
            }.map { try $0.get() }
        }
        var rows: [AggregateResult.Row] = []
        for g in total.counts.indices {
            let values: [Double]
            switch query.aggregate {
            case .count: values = [Double(total.counts[g])]
            case .distinctPeople, .distinctUsers: values = [Double(total.distinct[g].reduce(0) { $0 + $1.nonzeroBitCount })]
            case .average: values = [total.sums[g] / Double(total.counts[g])]
            case .percentiles: values = selected[g]
            }
            rows.append(AggregateResult.Row(keys: total.keys[g], values: values))
        }
        rows.sort { $0.keys.lexicographicallyPrecedes($1.keys) }
        return AggregateResult(rows: rows, rowsScanned: total.rowsScanned)
    }

    /// The percentiles `ps` (0...1) of `samples`, interpolated like `quantile_cont`.
    static func percentiles(_ samples: [Double], _ ps: [Double]) -> [Double] {
        var samples = samples
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
        return answers
    }

    /// Where a block's rows find one grouping key: a block-local number per row, from 0 to
    /// `width`, or none.
    enum KeySource {
        /// Dictionary codes; the null code (`count`) has no key.
        case codes(CodeVector, StringDictionary)
        /// Time buckets of local time from `first` on (hours since the local epoch, or
        /// period indices).
        case hours(first: Int, ZoneOffsets, BucketStarts)
        case periods(PeriodUnit, first: Int, ZoneOffsets, boundaries: [Int64]?)
        /// The block has no such column: no row has a key.
        case absent

        var width: Int {
            switch self {
            case .codes(_, let dictionary): dictionary.count
            case .hours, .periods, .absent: 0
            }
        }

        func name(_ local: Int) -> String {
            switch self {
            case .codes(_, let dictionary):
                return dictionary.string(local)
            case .hours(_, _, let starts):
                return String(starts.starts[local])
            case .periods(let unit, let first, let zone, _):
                return String(zone.utc(ofLocal: unit.start(ofIndex: first + local)))
            case .absent:
                return ""
            }
        }
    }

    /// Where each hour bucket of a block starts (UTC µs), recorded as rows find them.
    final class BucketStarts {
        var starts: [Int64]
        init(count: Int) { starts = [Int64](repeating: 0, count: count) }
    }

    static func hour(ofMicros t: Int64) -> Int {
        Int(t >= 0 ? t / 3_600_000_000 : (t + 1) / 3_600_000_000 - 1)
    }

    /// The key source of `key` in one block, and how many local numbers it uses.
    static func keySource(_ key: GroupKey, _ columns: BlockColumns, _ zone: ZoneOffsets) throws -> (KeySource, Int) {
        let footer = columns.block.footer
        // The block's local times lie between its ends shifted by the smaller and the larger
        // of the offsets there (a day holds at most one offset change).
        let (a, b) = (zone.offset(footer.minTimestamp), zone.offset(footer.maxTimestamp))
        let (low, high) = (footer.minTimestamp &+ min(a, b), footer.maxTimestamp &+ max(a, b))
        switch key {
        case .hour:
            // Buckets are numbered by the UTC hour their start falls in (up to an hour before
            // the block's first row) and the parity of their offset interval: two buckets can
            // start in one UTC hour only across an offset change.
            let first = hour(ofMicros: footer.minTimestamp) - 1
            let width = (hour(ofMicros: footer.maxTimestamp) - first + 1) * 2
            return (.hours(first: first, zone, BucketStarts(count: width)), width)
        case .period(let unit):
            let first = unit.index(ofMicros: low)
            let width = unit.index(ofMicros: high) - first + 1
            // Within one offset interval local time only moves forward, so a row's period is
            // the number of period starts at or before it: a block of one day has one or two
            // periods, and no row needs a division. (Across a change, local time can step back,
            // and each row is converted on its own.)
            var boundaries: [Int64]?
            if zone.interval(footer.minTimestamp).to > footer.maxTimestamp {
                boundaries = (1..<max(width, 1)).map { zone.utc(ofLocal: unit.start(ofIndex: first + $0)) }
            }
            return (.periods(unit, first: first, zone, boundaries: boundaries), width)
        case .eventName, .botId, .property:
            let column: DecodedColumn?
            switch key {
            case .eventName: column = try columns.builtin("event_name")
            case .botId: column = try columns.builtin("bot_id")
            case .property(let p): column = try columns.property(p).first { $0.descriptor.kind == .string }
            default: column = nil
            }
            guard let column, case .codes(let codes, let dictionary) = column.values else { return (.absent, 0) }
            return (.codes(codes, dictionary), dictionary.count)
        }
    }

    /// One block's groups, scanned a vector at a time (see ``VectorScan``): select the rows
    /// in the time range, refine by the event name and each filter, number each survivor's
    /// group densely by its block-local keys, and accumulate into per-block arrays that are
    /// folded into the partial's named groups at the end.
    static func scan(_ block: BlockFile, _ query: AggregateQuery, _ snapshot: QuerySnapshot) throws -> Partial {
        var partial = Partial()
        if let deadline = query.deadline, ContinuousClock.now >= deadline { throw QueryError.timeout }
        try snapshot.checkDeadline()
        let columns = BlockColumns(block)
        let n = columns.rows
        partial.rowsScanned = n
        let ts = try columns.timestamps()
        let checkTime = block.footer.minTimestamp < query.start || block.footer.maxTimestamp >= query.end

        var predicates: [RowPredicate] = []
        if let name = query.eventName { predicates.append(try .eventName(name, in: columns)) }
        for filter in query.filters {
            predicates.append(try filter.predicate(in: columns, people: snapshot.people, sessions: snapshot.sessions))
        }
        if predicates.contains(where: { if case .constant(false) = $0 { true } else { false } }) { return partial }

        var sources: [KeySource] = []
        var widths: [Int] = []
        for key in query.groupBy {
            let (source, width) = try keySource(key, columns, query.timeZone)
            if case .absent = source { return partial }
            sources.append(source)
            widths.append(width)
        }
        let width1 = widths.count > 1 ? widths[1] : 1
        let slots = max(1, widths.reduce(1, *))

        // The measured property: each numeric column it was sent with.
        var measured: [DecodedColumn] = []
        switch query.aggregate {
        case .average(let p), .percentiles(let p, _):
            measured = try columns.property(p).filter {
                if case .ints = $0.values { return true }
                if case .doubles = $0.values { return true }
                return false
            }
            if measured.isEmpty { return partial }
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
        let words = (snapshot.people.count + 63) / 64
        if countsDistinct && slots * words > Self.distinctBudgetWords {
            throw QueryError.memoryBudget(
                "distinct people over \(slots) groups of one block would take \(slots * words / 131_072) MiB of bitmaps; group by fewer values")
        }
        var counts = [Int](repeating: 0, count: slots)
        var sums = [Double](repeating: 0, count: slots)
        var bits = [UInt64](repeating: 0, count: countsDistinct ? slots * words : 0)
        // Percentile samples: each kept row's group and value (at most one per row).
        let sampleCapacity = query.aggregate.needsSamples ? n : 0
        let sampleGroups = UnsafeMutablePointer<Int32>.allocate(capacity: sampleCapacity)
        let sampleValues = UnsafeMutablePointer<Double>.allocate(capacity: sampleCapacity)
        defer {
            sampleGroups.deallocate()
            sampleValues.deallocate()
        }
        var sampleCount = 0
        let aggregate = query.aggregate

        // A count whose keys are all the same for the whole block needs no per-row work past
        // the predicates.
        let constantGroup = query.aggregate == .count && sources.allSatisfy {
            if case .periods(_, _, _, let boundaries?) = $0 { return boundaries.isEmpty }
            return false
        }
        let size = VectorScan.vectorSize
        let selection = UnsafeMutablePointer<UInt32>.allocate(capacity: size)
        let groups = UnsafeMutablePointer<Int32>.allocate(capacity: size)
        let values = UnsafeMutablePointer<Double>.allocate(capacity: size)
        let found = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
        defer {
            selection.deallocate()
            groups.deallocate()
            values.deallocate()
            found.deallocate()
        }
        try ts.withUnsafeBufferPointer { ts in
            var start = 0
            while start < n {
                let end = min(start + size, n)
                defer { start = end }
                var count: Int
                var remaining = predicates[...]
                if !checkTime, let first = predicates.first {
                    // The first predicate picks straight from the row range.
                    count = first.select(selection, start, end)
                    remaining = predicates.dropFirst()
                } else {
                    count = selectRows(selection, start, end, timestamps: ts, from: query.start, to: query.end, check: checkTime)
                }
                for predicate in remaining where count > 0 { count = predicate.refine(selection, count) }
                if count == 0 { continue }
                if constantGroup {
                    // Every row of the block has the same group (none, or one period).
                    counts[0] &+= count
                    continue
                }

                // Each selected row's group, or -1 when a key is missing.
                for i in 0..<count { groups[i] = 0 }
                for (k, source) in sources.enumerated() {
                    let scale = Int32(k == 1 ? width1 : 1)
                    assignKeys(source, selection, count, groups, ts, scale: scale)
                }
                // The measured value; rows without one leave the group.
                if !measured.isEmpty {
                    for i in 0..<count { found[i] = 0 }
                    for column in measured { gatherValues(column, selection, count, values, found) }
                    for i in 0..<count where found[i] == 0 { groups[i] = -1 }
                }
                counts.withUnsafeMutableBufferPointer { counts in
                    sums.withUnsafeMutableBufferPointer { sums in
                        bits.withUnsafeMutableBufferPointer { bits in
                            persons.withUnsafeBufferPointer { persons in
                                switch aggregate {
                                case .count:
                                    for i in 0..<count where groups[i] >= 0 { counts[Int(groups[i])] &+= 1 }
                                case .distinctPeople, .distinctUsers:
                                    for i in 0..<count where groups[i] >= 0 {
                                        let g = Int(groups[i])
                                        counts[g] &+= 1
                                        let p = persons[Int(selection[i])]
                                        if p != noPerson { bits[g * words + Int(p >> 6)] |= 1 << UInt64(p & 63) }
                                    }
                                case .average:
                                    for i in 0..<count where groups[i] >= 0 {
                                        let g = Int(groups[i])
                                        counts[g] &+= 1
                                        sums[g] += values[i]
                                    }
                                case .percentiles:
                                    for i in 0..<count where groups[i] >= 0 {
                                        counts[Int(groups[i])] &+= 1
                                        sampleGroups[sampleCount] = groups[i]
                                        sampleValues[sampleCount] = values[i]
                                        sampleCount += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Percentiles: the samples laid out group by group.
        var sampleStarts = [Int](repeating: 0, count: slots + 1)
        var samples: [Double] = []
        if query.aggregate.needsSamples {
            for local in 0..<slots { sampleStarts[local + 1] = sampleStarts[local] + counts[local] }
            samples = [Double](repeating: 0, count: sampleStarts[slots])
            var next = sampleStarts
            for i in 0..<sampleCount {
                let g = Int(sampleGroups[i])
                samples[next[g]] = sampleValues[i]
                next[g] += 1
            }
        }
        for local in 0..<slots where counts[local] > 0 {
            var key: [String] = []
            if sources.count > 0 { key.append(sources[0].name(local / width1)) }
            if sources.count > 1 { key.append(sources[1].name(local % width1)) }
            let g = partial.group(key)
            partial.counts[g] += counts[local]
            partial.sums[g] += sums[local]
            if countsDistinct { partial.distinct[g] = Array(bits[(local * words)..<((local + 1) * words)]) }
            if query.aggregate.needsSamples { partial.samples[g] += samples[sampleStarts[local]..<sampleStarts[local + 1]] }
        }
        return partial
    }

    /// Combines each selected row's key from `source` into `groups` (`group * scale + key`),
    /// or marks the row -1 when it has none.
    static func assignKeys(
        _ source: KeySource, _ selection: UnsafeMutablePointer<UInt32>, _ count: Int, _ groups: UnsafeMutablePointer<Int32>,
        _ ts: UnsafeBufferPointer<Int64>, scale: Int32
    ) {
        switch source {
        case .codes(let codes, let dictionary):
            let absent = dictionary.count
            func assign<C: FixedWidthInteger>(_ c: UnsafeBufferPointer<C>) {
                for i in 0..<count {
                    let code = Int(c[Int(selection[i])])
                    let g = groups[i]
                    groups[i] = (code >= absent || g < 0) ? -1 : g &* scale &+ Int32(truncatingIfNeeded: code)
                }
            }
            switch codes {
            case .u8(let c): c.withUnsafeBufferPointer(assign)
            case .u16(let c): c.withUnsafeBufferPointer(assign)
            case .u32(let c): c.withUnsafeBufferPointer(assign)
            }
        case .hours(let first, let zone, let starts):
            var cursor = ZoneOffsets.Cursor(zone)
            starts.starts.withUnsafeMutableBufferPointer { starts in
                for i in 0..<count where groups[i] >= 0 {
                    let start = cursor.startOfLocalUnit(ts[Int(selection[i])], length: 3_600_000_000)
                    let slot = (hour(ofMicros: start) - first) * 2 + (cursor.index & 1)
                    starts[slot] = start
                    groups[i] = groups[i] &* scale &+ Int32(truncatingIfNeeded: slot)
                }
            }
        case .periods(_, _, _, let boundaries?):
            if boundaries.isEmpty {
                for i in 0..<count where groups[i] >= 0 { groups[i] = groups[i] &* scale }
            } else {
                boundaries.withUnsafeBufferPointer { b in
                    for i in 0..<count where groups[i] >= 0 {
                        let t = ts[Int(selection[i])]
                        var period: Int32 = 0
                        for boundary in b { period &+= t >= boundary ? 1 : 0 }
                        groups[i] = groups[i] &* scale &+ period
                    }
                }
            }
        case .periods(let unit, let first, let zone, nil):
            var cursor = ZoneOffsets.Cursor(zone)
            for i in 0..<count where groups[i] >= 0 {
                let local = cursor.local(ts[Int(selection[i])])
                groups[i] = groups[i] &* scale &+ Int32(truncatingIfNeeded: unit.index(ofMicros: local) - first)
            }
        case .absent:
            for i in 0..<count { groups[i] = -1 }
        }
    }

    /// Writes the value of `column` for each selected row that has one in it, and marks it
    /// found.
    static func gatherValues(
        _ column: DecodedColumn, _ selection: UnsafeMutablePointer<UInt32>, _ count: Int, _ values: UnsafeMutablePointer<Double>,
        _ found: UnsafeMutablePointer<UInt8>
    ) {
        func gather(_ read: (Int) -> Double) {
            if let presence = column.presence {
                presence.withUnsafeBufferPointer { p in
                    for i in 0..<count {
                        let r = Int(selection[i])
                        if p[r >> 6] & (1 << UInt64(r & 63)) != 0 {
                            values[i] = read(r)
                            found[i] = 1
                        }
                    }
                }
            } else {
                for i in 0..<count {
                    values[i] = read(Int(selection[i]))
                    found[i] = 1
                }
            }
        }
        switch column.values {
        case .ints(let v): v.withUnsafeBufferPointer { v in gather { Double(v[$0]) } }
        case .doubles(let v): v.withUnsafeBufferPointer { v in gather { v[$0] } }
        default: break
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
