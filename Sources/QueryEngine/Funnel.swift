public import ColumnStore
import Foundation
import Synchronization

public struct FunnelStep: Sendable {
    public var name: String
    public var event: String
    public var filters: [PropertyFilter]

    public init(name: String, event: String, filters: [PropertyFilter] = []) {
        self.name = name
        self.event = event
        self.filters = filters
    }
}

/// Breaks the attempts in progress between two steps: an attempt that has reached step
/// `fromStep` but not yet `toStep` (0-based) ends when the person does `event`.
public struct FunnelExclusion: Sendable {
    public var event: String
    public var filters: [PropertyFilter]
    public var fromStep: Int
    public var toStep: Int

    public init(event: String, filters: [PropertyFilter] = [], fromStep: Int, toStep: Int) {
        self.event = event
        self.filters = filters
        self.fromStep = fromStep
        self.toStep = toStep
    }
}

public struct FunnelQuery: Sendable {
    public var steps: [FunnelStep]
    /// Events with `start <= timestamp < end` (µs) count.
    public var start: Int64
    public var end: Int64
    /// Each step must come within this long (µs, inclusive) of the chain's first step.
    public var window: Int64 = 14 * 86_400_000_000
    /// `strict`: any other event of the person between two steps ends the chain.
    public var strict = false
    /// A property whose value on the first step's event splits the people into groups.
    public var breakdown: String?
    public var exclusions: [FunnelExclusion] = []

    public static let maxSteps = 64
    public static let maxExclusions = 16
    /// Breakdown groups answered, the largest first.
    public static let maxBreakdownValues = 50

    public init(steps: [FunnelStep], start: Int64, end: Int64) {
        self.steps = steps
        self.start = start
        self.end = end
    }
}

public struct FunnelResult: Sendable, Equatable {
    /// People who reached at least step `i`.
    public var users: [Int]
    /// Per step, the median time (seconds) from the first step to reaching it, over the people
    /// who reached it; nil for the first step and for steps nobody reached.
    public var medianSecondsToConvert: [Double?]
    /// With a breakdown: the same per value (nil: the first step's event lacked the property),
    /// most people first, then by value.
    public var breakdown: [Group] = []

    public struct Group: Sendable, Equatable {
        public var value: String?
        public var users: [Int]
        public var medianSecondsToConvert: [Double?]
    }

    public init(users: [Int], medianSecondsToConvert: [Double?], breakdown: [Group] = []) {
        self.users = users
        self.medianSecondsToConvert = medianSecondsToConvert
        self.breakdown = breakdown
    }
}

/// Funnels with ClickHouse `windowFunnel` semantics (see `conventions.md`), in one pass per
/// person over that person's time-ordered step events.
public enum FunnelEngine {
    /// One (person, time, step) occurrence. `step` is 0-based; `unrelated` marks another event
    /// of the person, which matters only in strict order.
    /// 16 bytes: the sort moves millions of these, so the breakdown number is packed into
    /// the padding after `step` (24 bits, hence `maxBreakdownIds`).
    struct Entry {
        var person: UInt32
        var step: UInt8
        private var breakdownHigh: UInt8 = 0
        private var breakdownLow: UInt16 = 0
        var timestamp: Int64

        init(person: UInt32, step: UInt8, timestamp: Int64) {
            self.person = person
            self.step = step
            self.timestamp = timestamp
        }

        /// For first-step entries of a breakdown: 1 + the value's index (0: no value).
        var breakdown: UInt32 {
            get { UInt32(breakdownHigh) << 16 | UInt32(breakdownLow) }
            set {
                breakdownHigh = UInt8(truncatingIfNeeded: newValue >> 16)
                breakdownLow = UInt16(truncatingIfNeeded: newValue)
            }
        }
    }
    static let maxBreakdownIds = (1 << 24) - 1
    /// Step and exclusion events one funnel may hold (512 MiB of held entries).
    static let maxEntries = 64 << 20
    static let unrelated: UInt8 = 255
    /// Entries of exclusion events have step `exclusionBase + index`: after every step at
    /// equal times, so a step and an exclusion at the same instant count the step first.
    static let exclusionBase: UInt8 = 128

    /// A block's entries, with the breakdown values their `breakdown` numbers refer to.
    struct BlockEntries {
        var entries: [Entry]
        var values: [String]
    }

    /// A group's entries as the funnel holds them until the walk: 8 bytes an entry instead of
    /// 16 (plus 4 for its breakdown number when the query has a breakdown). Each run of one
    /// person has its person and end index once; each entry is one word, its time after the
    /// group's first entry (µs) above its step. A group is one day's blocks, so the time
    /// fits in the word's 56 bits.
    struct HeldEntries {
        var persons: [UInt32] = []
        var runEnds: [UInt32] = []
        var words: [UInt64] = []
        var breakdowns: [UInt32] = []
        var base: Int64 = 0
        var values: [String]

        var count: Int { words.count }
        var bytes: Int { words.count * 8 + persons.count * 8 + breakdowns.count * 4 }

        /// `entries` are by person.
        init(_ entries: [Entry], values: [String], breakdown: Bool) throws {
            self.values = values
            guard !entries.isEmpty else { return }
            var low = Int64.max
            var high = Int64.min
            var runs = 0
            for (i, e) in entries.enumerated() {
                low = min(low, e.timestamp)
                high = max(high, e.timestamp)
                if i == 0 || entries[i - 1].person != e.person { runs += 1 }
            }
            let (span, overflow) = high.subtractingReportingOverflow(low)
            guard !overflow, span < 1 << 56 else {
                throw QueryError.memoryBudget("the funnel's events of one day span more than 2^56 µs")
            }
            base = low
            persons.reserveCapacity(runs)
            runEnds.reserveCapacity(runs)
            words.reserveCapacity(entries.count)
            if breakdown { breakdowns.reserveCapacity(entries.count) }
            for (i, e) in entries.enumerated() {
                if i > 0 && entries[i - 1].person != e.person { runEnds.append(UInt32(i)) }
                if i == 0 || entries[i - 1].person != e.person { persons.append(e.person) }
                words.append(UInt64(e.timestamp - base) << 8 | UInt64(e.step))
                if breakdown { breakdowns.append(e.breakdown) }
            }
            runEnds.append(UInt32(entries.count))
        }

        /// The first run whose person is `person` or above.
        func firstRun(atOrAbove person: UInt32) -> Int {
            var low = 0
            var high = persons.count
            while low < high {
                let mid = (low + high) / 2
                if persons[mid] < person { low = mid + 1 } else { high = mid }
            }
            return low
        }

        /// The entries of runs `runs`, as a range of `words`.
        func entryRange(_ runs: Range<Int>) -> Range<Int> {
            guard !runs.isEmpty else { return 0..<0 }
            return (runs.lowerBound == 0 ? 0 : Int(runEnds[runs.lowerBound - 1]))..<Int(runEnds[runs.upperBound - 1])
        }

        /// Appends the entries of runs `runs` to `out`, unpacked.
        func append(_ runs: Range<Int>, to out: inout [Entry]) {
            var start = entryRange(runs).lowerBound
            for r in runs {
                let end = Int(runEnds[r])
                for k in start..<end {
                    var e = Entry(person: persons[r], step: UInt8(truncatingIfNeeded: words[k]), timestamp: base + Int64(words[k] >> 8))
                    if !breakdowns.isEmpty { e.breakdown = breakdowns[k] }
                    out.append(e)
                }
                start = end
            }
        }
    }

    /// One block's (person, time, step) entries, in row order (so by person, then time).
    static func blockEntries(of block: BlockFile, _ query: FunnelQuery, _ snapshot: QuerySnapshot) throws -> BlockEntries {
        try snapshot.checkDeadline()
        let columns = BlockColumns(block)
        let ts = try columns.timestamps()
        let persons = try columns.persons()
        func matching(_ event: String, _ filters: [PropertyFilter]) throws -> [Bool] {
            var matches = try columns.rows(named: event)
            if let filtered = try rows(matchingAll: filters, in: columns, people: snapshot.people, sessions: snapshot.sessions) {
                for r in 0..<columns.rows where !filtered[r] { matches[r] = false }
            }
            return matches
        }
        let stepRows = try query.steps.map { try matching($0.event, $0.filters) }
        let exclusionRows = try query.exclusions.map { try matching($0.event, $0.filters) }
        let breakdownColumns = try query.breakdown.map { try columns.property($0) } ?? []
        var values: [String] = []
        var valueIds: [String: UInt32] = [:]
        func breakdownValue(_ r: Int) -> UInt32 {
            for c in breakdownColumns where c.isPresent(r) {
                let text: String
                switch c.values {
                case .codes(let codes, let dictionary): text = dictionary.string(codes[r])
                case .ints(let v): text = String(v[r])
                case .doubles(let v): text = "\(v[r])"
                case .bools(let v): text = v[r] != 0 ? "true" : "false"
                case .presenceOnly: continue
                }
                if let id = valueIds[text] { return id }
                guard values.count < maxBreakdownIds else { return 0 }
                values.append(text)
                valueIds[text] = UInt32(values.count)
                return UInt32(values.count)
            }
            return 0
        }
        var entries: [Entry] = []
        for r in 0..<columns.rows where persons[r] != noPerson && ts[r] >= query.start && ts[r] < query.end {
            var any = false
            for (s, matches) in stepRows.enumerated() where matches[r] {
                var entry = Entry(person: persons[r], step: UInt8(s), timestamp: ts[r])
                if s == 0, !breakdownColumns.isEmpty { entry.breakdown = breakdownValue(r) }
                entries.append(entry)
                any = true
            }
            for (x, matches) in exclusionRows.enumerated() where matches[r] {
                entries.append(Entry(person: persons[r], step: exclusionBase + UInt8(x), timestamp: ts[r]))
                any = true
            }
            if !any && query.strict { entries.append(Entry(person: persons[r], step: unrelated, timestamp: ts[r])) }
        }
        return BlockEntries(entries: entries, values: values)
    }

    /// The entries of a group of blocks whose time ranges overlap one another and no other
    /// block of the query (usually one day's blocks), by person, then time, then step.
    ///
    /// A person's entries from the group are then one contiguous stretch of that person's
    /// whole sequence, so in a non-strict funnel runs of one step can be thinned here (see
    /// `thinRuns`), before every group's entries are held at once.
    static func groupEntries(of blocks: [BlockFile], _ query: FunnelQuery, _ snapshot: QuerySnapshot) throws -> HeldEntries {
        var parts = try blocks.map { try blockEntries(of: $0, query, snapshot) }
        var values: [String] = []
        if parts.count > 1 && parts.contains(where: { !$0.values.isEmpty }) {
            var valueIds: [String: UInt32] = [:]
            for b in parts.indices where !parts[b].values.isEmpty {
                let group: [UInt32] = [0] + parts[b].values.map { text in
                    if let id = valueIds[text] { return id }
                    values.append(text)
                    valueIds[text] = UInt32(values.count)
                    return UInt32(values.count)
                }
                for k in parts[b].entries.indices where parts[b].entries[k].breakdown != 0 {
                    parts[b].entries[k].breakdown = group[Int(parts[b].entries[k].breakdown)]
                }
            }
        } else {
            values = parts.first?.values ?? []
        }
        let merged = parts.count > 1
        var entries = merged ? parts.flatMap(\.entries) : parts.first?.entries ?? []
        parts = []
        // Rows are by person, so a single block's entries are; `run` splits people by binary
        // search and relies on it.
        if merged || zip(entries, entries.dropFirst()).contains(where: { $0.person > $1.person }) {
            entries = sortedByPersonTimeStep(entries, people: snapshot.people.count)
        } else {
            sortEachPersonByTimeStep(&entries)
        }
        if !query.strict { thinRuns(&entries) }
        return try HeldEntries(entries, values: values, breakdown: query.breakdown != nil)
    }

    /// Orders each person's run of `entries` (already by person, rows by time) by time, then
    /// step, as the final walk sees them.
    static func sortEachPersonByTimeStep(_ entries: inout [Entry]) {
        entries.withUnsafeMutableBufferPointer { out in
            var start = 0
            for i in out.indices {
                if out[i].person != out[start].person {
                    start = i
                    continue
                }
                let e = out[i]
                var j = i - 1
                while j >= start && (out[j].timestamp > e.timestamp || (out[j].timestamp == e.timestamp && out[j].step > e.step)) {
                    out[j + 1] = out[j]
                    j -= 1
                }
                out[j + 1] = e
            }
        }
    }

    /// Drops the entries a non-strict walk cannot be changed by: in a run of one person's
    /// consecutive entries of one step, every entry of a later step (or exclusion) but the
    /// first, and every first-step entry but the first and the last.
    ///
    /// Between two such entries nothing changes the walk's state, so a later entry of step
    /// s > 0 meets the same chain as the first one did, at a later time (it reaches the step if
    /// and only if the first did, with the same chain start), and an exclusion resets the same
    /// steps again. Of a run of first steps, the first may open the person's best chain (its
    /// breakdown value counts) and the last sets the chain start that later steps measure
    /// from. A 3-step conversation funnel keeps one `message_received` per conversation
    /// instead of every message.
    static func thinRuns(_ entries: inout [Entry]) {
        var kept = 0
        entries.withUnsafeMutableBufferPointer { e in
            let n = e.count
            var i = 0
            while i < n {
                var j = i + 1
                while j < n && e[j].person == e[i].person && e[j].step == e[i].step { j += 1 }
                e[kept] = e[i]
                kept += 1
                if e[i].step == 0 && j - i > 1 {
                    e[kept] = e[j - 1]
                    kept += 1
                }
                i = j
            }
        }
        entries.removeLast(entries.count - kept)
    }

    /// Orders entries by (person, time, step); equal timestamps are taken in step order
    /// (unrelated events after steps).
    ///
    /// A counting sort by person keeps the input order within a person, and entries come in
    /// day order (groups, or a group's blocks) with rows by person then time, so each
    /// person's run is already (nearly) in time order: an insertion sort finishes it in about
    /// linear time.
    /// `entries` all have persons in `base ..< base + people`.
    static func sortedByPersonTimeStep(_ entries: [Entry], base: UInt32 = 0, people: Int) -> [Entry] {
        guard !entries.isEmpty else { return entries }
        var starts = [Int](repeating: 0, count: people + 1)
        for e in entries { starts[Int(e.person - base) + 1] += 1 }
        for p in 0..<people { starts[p + 1] += starts[p] }
        var sorted = entries
        var next = starts
        for e in entries {
            let p = Int(e.person - base)
            sorted[next[p]] = e
            next[p] += 1
        }
        sorted.withUnsafeMutableBufferPointer { out in
            for p in 0..<people where starts[p + 1] - starts[p] > 1 {
                for i in (starts[p] + 1)..<starts[p + 1] {
                    let e = out[i]
                    var j = i - 1
                    while j >= starts[p] && (out[j].timestamp > e.timestamp || (out[j].timestamp == e.timestamp && out[j].step > e.step)) {
                        out[j + 1] = out[j]
                        j -= 1
                    }
                    out[j + 1] = e
                }
            }
        }
        return sorted
    }

    /// What the people of one range of person ids contributed.
    struct Partial {
        /// People who reached at least step `i`, and their times to convert (µs) for i > 0.
        var users: [Int]
        var times: [[Int64]]
        /// The same per breakdown value (0: none).
        var groupUsers: [UInt32: [Int]] = [:]
        var groupTimes: [UInt32: [[Int64]]] = [:]

        init(steps: Int) {
            users = [Int](repeating: 0, count: steps)
            times = [[Int64]](repeating: [], count: steps)
        }

        mutating func merge(_ other: Partial) {
            for s in users.indices {
                users[s] += other.users[s]
                times[s] += other.times[s]
            }
            for (value, u) in other.groupUsers {
                var mine = groupUsers[value] ?? [Int](repeating: 0, count: users.count)
                var t = groupTimes[value] ?? [[Int64]](repeating: [], count: users.count)
                for s in users.indices {
                    mine[s] += u[s]
                    t[s] += other.groupTimes[value]![s]
                }
                groupUsers[value] = mine
                groupTimes[value] = t
            }
        }
    }

    public static func run(_ query: FunnelQuery, on snapshot: QuerySnapshot) throws -> FunnelResult {
        precondition((2...FunnelQuery.maxSteps).contains(query.steps.count))
        // Each group of overlapping blocks (a day) is gathered on its own, on every core, by
        // person, which lets the people be split into ranges below.
        let blocks = snapshot.blocks.filter { $0.footer.maxTimestamp >= query.start && $0.footer.minTimestamp < query.end }
        let blockGroups = overlappingGroups(of: blocks)
        let threads = ProcessInfo.processInfo.activeProcessorCount
        // The entries are held until the end; the column cache gives way to them.
        let held = Mutex(0)
        defer { ColumnCache.shared.release(held.withLock { $0 }) }
        var parts = try parallelMap(blockGroups.count, threads: threads) { g -> HeldEntries in
            let part = try groupEntries(of: blockGroups[g].map { blocks[$0] }, query, snapshot)
            let bytes = part.bytes
            held.withLock { $0 += bytes }
            ColumnCache.shared.hold(bytes)
            ColumnCache.shared.relieve()
            return part
        }
            .map { try $0.get() }
        let entryCount = parts.reduce(0) { $0 + $1.count }
        if entryCount > maxEntries {
            throw QueryError.memoryBudget(
                "the funnel matches \(entryCount) events, more than the \(maxEntries) (\(maxEntries * 8 >> 20) MiB) one query may hold; narrow the date range or the steps")
        }
        // Breakdown values get query-wide numbers, in block order.
        var values: [String] = []
        var valueIds: [String: UInt32] = [:]
        for b in parts.indices where !parts[b].values.isEmpty {
            let global: [UInt32] = try [0] + parts[b].values.map { text in
                if let id = valueIds[text] { return id }
                guard values.count < maxBreakdownIds else {
                    throw QueryError.memoryBudget("the breakdown property has more than \(maxBreakdownIds) distinct values")
                }
                values.append(text)
                valueIds[text] = UInt32(values.count)
                return UInt32(values.count)
            }
            for k in parts[b].breakdowns.indices where parts[b].breakdowns[k] != 0 {
                parts[b].breakdowns[k] = global[Int(parts[b].breakdowns[k])]
            }
        }
        // People are split into ranges of ids, each gathered from every block, sorted and
        // walked on its own: the sort's tables stay small and every core takes ranges.
        let people = snapshot.people.count
        let ranges = max(1, min(threads * 32, people))
        let heldParts = parts
        parts = []
        var total = Partial(steps: query.steps.count)
        for partial in parallelMap(ranges, threads: threads, { k -> Partial in
            try snapshot.checkDeadline()
            let low = UInt32(people * k / ranges)
            let high = UInt32(people * (k + 1) / ranges)
            let runs = heldParts.map { $0.firstRun(atOrAbove: low)..<$0.firstRun(atOrAbove: high) }
            var entries: [Entry] = []
            entries.reserveCapacity(zip(heldParts, runs).reduce(0) { $0 + $1.0.entryRange($1.1).count })
            for (part, r) in zip(heldParts, runs) { part.append(r, to: &entries) }
            entries = sortedByPersonTimeStep(entries, base: low, people: Int(high - low))
            return walk(entries, query)
        }) {
            total.merge(try partial.get())
        }
        func medians(_ times: [[Int64]]) -> [Double?] {
            times.enumerated().map { s, t in
                guard s > 0, !t.isEmpty else { return nil }
                return AggregationEngine.percentiles(t.map { Double($0) }, [0.5])[0] / 1_000_000
            }
        }
        var groups = total.groupUsers.map { id, u in
            FunnelResult.Group(value: id == 0 ? nil : values[Int(id) - 1], users: u, medianSecondsToConvert: medians(total.groupTimes[id]!))
        }
        groups.sort { a, b in
            if a.users[0] != b.users[0] { return a.users[0] > b.users[0] }
            switch (a.value, b.value) {
            case (let x?, let y?): return x < y
            case (_?, nil): return true
            default: return false
            }
        }
        return FunnelResult(
            users: total.users, medianSecondsToConvert: medians(total.times), breakdown: Array(groups.prefix(FunnelQuery.maxBreakdownValues)))
    }

    /// The blocks (as indices) in groups whose time ranges chain into one another and are
    /// apart from every other group's, in time order. Touching at one microsecond counts as
    /// overlapping: equal times from two blocks interleave by step.
    static func overlappingGroups(of blocks: [BlockFile]) -> [[Int]] {
        let order = blocks.indices.sorted { blocks[$0].footer.minTimestamp < blocks[$1].footer.minTimestamp }
        var groups: [[Int]] = []
        var reach = Int64.min
        for b in order {
            if groups.isEmpty || blocks[b].footer.minTimestamp > reach {
                groups.append([b])
            } else {
                groups[groups.count - 1].append(b)
            }
            reach = max(reach, blocks[b].footer.maxTimestamp)
        }
        return groups
    }

    /// One pass per person over entries sorted by (person, time, step).
    static func walk(_ entries: [Entry], _ query: FunnelQuery) -> Partial {
        let stepCount = query.steps.count
        var result = Partial(steps: stepCount)
        var chainStart = [Int64](repeating: 0, count: stepCount)
        var reached = [Bool](repeating: false, count: stepCount)
        var firstReached = [Int64](repeating: 0, count: stepCount)
        var chainValue = [UInt32](repeating: 0, count: stepCount)
        var i = 0
        while i < entries.count {
            let person = entries[i].person
            var j = i
            while j < entries.count && entries[j].person == person { j += 1 }
            var best = 0
            var bestValue: UInt32 = 0
            for s in 0..<stepCount { reached[s] = false }
            if query.strict {
                // Exclusion events are other events here, which end the chain anyway.
                var level = 0
                var start: Int64 = 0
                var value: UInt32 = 0
                for e in entries[i..<j] {
                    let s = Int(e.step)
                    if level > 0 && s == level && e.timestamp - start <= query.window {
                        level += 1
                    } else if s == 0 {
                        level = 1
                        start = e.timestamp
                        value = e.breakdown
                    } else {
                        level = 0
                        continue
                    }
                    if level > best {
                        best = level
                        bestValue = value
                        firstReached[level - 1] = e.timestamp - start
                    }
                }
            } else {
                for e in entries[i..<j] {
                    let s = Int(e.step)
                    if e.step >= exclusionBase {
                        let x = query.exclusions[Int(e.step - exclusionBase)]
                        for level in x.fromStep..<x.toStep { reached[level] = false }
                        continue
                    }
                    if s == 0 {
                        chainStart[0] = e.timestamp
                        chainValue[0] = e.breakdown
                        reached[0] = true
                    } else if reached[s - 1] && e.timestamp - chainStart[s - 1] <= query.window {
                        chainStart[s] = chainStart[s - 1]
                        chainValue[s] = chainValue[s - 1]
                        reached[s] = true
                    } else {
                        continue
                    }
                    if s + 1 > best {
                        best = s + 1
                        bestValue = chainValue[s]
                        firstReached[s] = e.timestamp - chainStart[s]
                    }
                    if best == stepCount { break }
                }
            }
            for s in 0..<best {
                result.users[s] += 1
                if s > 0 { result.times[s].append(firstReached[s]) }
            }
            if query.breakdown != nil, best > 0 {
                var u = result.groupUsers[bestValue] ?? [Int](repeating: 0, count: stepCount)
                var t = result.groupTimes[bestValue] ?? [[Int64]](repeating: [], count: stepCount)
                for s in 0..<best {
                    u[s] += 1
                    if s > 0 { t[s].append(firstReached[s]) }
                }
                result.groupUsers[bestValue] = u
                result.groupTimes[bestValue] = t
            }
            i = j
        }
        return result
    }
}
