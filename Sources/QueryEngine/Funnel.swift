public import ColumnStore
import Foundation

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

public struct FunnelQuery: Sendable {
    public var steps: [FunnelStep]
    /// Events with `start <= timestamp < end` (µs) count.
    public var start: Int64
    public var end: Int64
    /// Each step must come within this long (µs, inclusive) of the chain's first step.
    public var window: Int64 = 14 * 86_400_000_000
    /// `strict`: any other event of the person between two steps ends the chain.
    public var strict = false

    public static let maxSteps = 64

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
}

/// Funnels with ClickHouse `windowFunnel` semantics (see `conventions.md`), in one pass per
/// person over that person's time-ordered step events.
public enum FunnelEngine {
    /// One (person, time, step) occurrence. `step` is 0-based; `unrelated` marks another event
    /// of the person, which matters only in strict order.
    struct Entry {
        var person: UInt32
        var step: UInt8
        var timestamp: Int64
    }
    static let unrelated: UInt8 = 255

    /// One block's (person, time, step) entries, in row order.
    static func blockEntries(of block: BlockFile, _ query: FunnelQuery, _ snapshot: QuerySnapshot) throws -> [Entry] {
        let columns = BlockColumns(block)
        let ts = try columns.timestamps()
        let persons = try columns.persons()
        var stepRows: [[Bool]] = []
        for step in query.steps {
            var matches = try columns.rows(named: step.event)
            if let filtered = try rows(matchingAll: step.filters, in: columns, people: snapshot.people, sessions: snapshot.sessions) {
                for r in 0..<columns.rows where !filtered[r] { matches[r] = false }
            }
            stepRows.append(matches)
        }
        var entries: [Entry] = []
        for r in 0..<columns.rows where persons[r] != noPerson && ts[r] >= query.start && ts[r] < query.end {
            var any = false
            for (s, matches) in stepRows.enumerated() where matches[r] {
                entries.append(Entry(person: persons[r], step: UInt8(s), timestamp: ts[r]))
                any = true
            }
            if !any && query.strict { entries.append(Entry(person: persons[r], step: unrelated, timestamp: ts[r])) }
        }
        return entries
    }

    /// Orders entries by (person, time, step); equal timestamps are taken in step order
    /// (unrelated events after steps).
    ///
    /// A counting sort by person keeps block order within a person, and blocks come in day
    /// order with rows by person then time, so each person's run is already (nearly) in time
    /// order: an insertion sort finishes it in about linear time.
    static func sortedByPersonTimeStep(_ entries: [Entry], people: Int) -> [Entry] {
        guard !entries.isEmpty else { return entries }
        var starts = [Int](repeating: 0, count: people + 1)
        for e in entries { starts[Int(e.person) + 1] += 1 }
        for p in 0..<people { starts[p + 1] += starts[p] }
        var sorted = entries
        var next = starts
        for e in entries {
            sorted[next[Int(e.person)]] = e
            next[Int(e.person)] += 1
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

    public static func run(_ query: FunnelQuery, on snapshot: QuerySnapshot) throws -> FunnelResult {
        precondition((2...FunnelQuery.maxSteps).contains(query.steps.count))
        // Each block's entries are gathered on its own (on every core), then concatenated in
        // block order, which the person sort below relies on to stay nearly linear.
        let blocks = snapshot.blocks.filter { $0.footer.maxTimestamp >= query.start && $0.footer.minTimestamp < query.end }
        var entries: [Entry] = []
        let threads = ProcessInfo.processInfo.activeProcessorCount
        for part in parallelMap(blocks.count, threads: threads, { try blockEntries(of: blocks[$0], query, snapshot) }) { entries += try part.get() }
        entries = sortedByPersonTimeStep(entries, people: snapshot.people.count)
        let stepCount = query.steps.count
        var users = [Int](repeating: 0, count: stepCount)
        var times = [[Int64]](repeating: [], count: stepCount)
        var chainStart = [Int64](repeating: 0, count: stepCount)
        var reached = [Bool](repeating: false, count: stepCount)
        var firstReached = [Int64](repeating: 0, count: stepCount)
        var i = 0
        while i < entries.count {
            let person = entries[i].person
            var j = i
            while j < entries.count && entries[j].person == person { j += 1 }
            var best = 0
            for s in 0..<stepCount { reached[s] = false }
            if query.strict {
                var level = 0
                var start: Int64 = 0
                for e in entries[i..<j] {
                    let s = Int(e.step)
                    if level > 0 && s == level && e.timestamp - start <= query.window {
                        level += 1
                    } else if s == 0 {
                        level = 1
                        start = e.timestamp
                    } else {
                        level = 0
                        continue
                    }
                    if level > best {
                        best = level
                        firstReached[level - 1] = e.timestamp - start
                    }
                }
            } else {
                for e in entries[i..<j] {
                    let s = Int(e.step)
                    if s == 0 {
                        chainStart[0] = e.timestamp
                        reached[0] = true
                    } else if reached[s - 1] && e.timestamp - chainStart[s - 1] <= query.window {
                        chainStart[s] = chainStart[s - 1]
                        reached[s] = true
                    } else {
                        continue
                    }
                    if s + 1 > best {
                        best = s + 1
                        firstReached[s] = e.timestamp - chainStart[s]
                    }
                    if best == stepCount { break }
                }
            }
            for s in 0..<best {
                users[s] += 1
                if s > 0 { times[s].append(firstReached[s]) }
            }
            i = j
        }
        let medians: [Double?] = times.enumerated().map { s, t in
            guard s > 0, !t.isEmpty else { return nil }
            let sorted = t.sorted()
            let mid = sorted.count / 2
            let micros = sorted.count % 2 == 1 ? Double(sorted[mid]) : Double(sorted[mid - 1] + sorted[mid]) / 2
            return micros / 1_000_000
        }
        return FunnelResult(users: users, medianSecondsToConvert: medians)
    }
}
