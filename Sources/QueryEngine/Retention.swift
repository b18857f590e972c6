public import ColumnStore
public import EventLog
import Foundation

/// Calendar periods in UTC: days, ISO weeks (starting Monday) and months.
public enum PeriodUnit: String, Sendable, CaseIterable {
    case day, week, month

    static let microsPerDay: Int64 = 86_400_000_000

    /// The index of the period holding `micros` (periods since the Unix epoch's).
    public func index(ofMicros micros: Int64) -> Int {
        let day = Int(BlockBuilder.day(ofMicros: micros))
        switch self {
        case .day: return day
        case .week: return Int((Double(day + 3) / 7).rounded(.down))  // 1970-01-01 was a Thursday
        case .month:
            let (y, m, _) = Timestamp.civilFromDays(day)
            return y * 12 + (m - 1)
        }
    }

    /// When period `index` starts (µs).
    public func start(ofIndex index: Int) -> Int64 {
        switch self {
        case .day: return Int64(index) * Self.microsPerDay
        case .week: return Int64(index * 7 - 3) * Self.microsPerDay
        case .month:
            let y = Int((Double(index) / 12).rounded(.down))
            let m = index - y * 12 + 1
            return Int64(Timestamp.daysFromCivil(year: y, month: m, day: 1)) * Self.microsPerDay
        }
    }
}

public struct CohortQuery: Sendable {
    public var unit: PeriodUnit
    /// Cohorts whose period starts in `start..<end` (µs) are shown.
    public var start: Int64
    public var end: Int64
    /// Offsets after the cohort's period; nil: while the period starts before `end`.
    public var periods: Int?
    /// What makes a person join (their first such event ever) and what counts as returning;
    /// nil means any event.
    public var startEvent: String?
    public var returnEvent: String?

    public init(unit: PeriodUnit, start: Int64, end: Int64) {
        self.unit = unit
        self.start = start
        self.end = end
    }
}

public struct Cohort: Sendable, Equatable {
    /// The cohort's period start (µs).
    public var start: Int64
    public var users: Int
    /// `retention[k]`: the share of the cohort with a returning event in the k-th period
    /// after its own; `retention[0]` is 1.
    public var retention: [Double]

    public init(start: Int64, users: Int, retention: [Double]) {
        self.start = start
        self.users = users
        self.retention = retention
    }
}

/// Acquisition cohorts: a person belongs to the period of their first event ever in the
/// project (every block is read for it, not only the date range).
public enum RetentionEngine {
    public static func run(_ query: CohortQuery, on snapshot: QuerySnapshot) throws -> [Cohort] {
        let unit = query.unit
        let blocks = snapshot.blocks
        let threads = ProcessInfo.processInfo.activeProcessorCount
        // First event of each person, over all time: blocks order rows by person and then
        // time, so each block offers one candidate per person (its first qualifying row),
        // found on every core; the candidates are folded on one.
        let candidates = try parallelMap(blocks.count, threads: threads) { b -> [(UInt32, Int64)] in
            try snapshot.checkDeadline()
            let columns = BlockColumns(blocks[b])
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            let starts = try query.startEvent.map { try columns.rows(named: $0) }
            var firsts: [(UInt32, Int64)] = []
            var previous = noPerson
            for r in 0..<columns.rows where persons[r] != noPerson && (starts?[r] ?? true) {
                let p = persons[r]
                if p != previous || ts[r] < firsts[firsts.count - 1].1 {
                    if p == previous { firsts[firsts.count - 1].1 = ts[r] } else { firsts.append((p, ts[r])) }
                    previous = p
                }
            }
            return firsts
        }
        var first = [Int64](repeating: .max, count: snapshot.people.count)
        for part in candidates {
            for (p, t) in try part.get() where t < first[Int(p)] { first[Int(p)] = t }
        }
        let firstCohort = unit.index(ofMicros: query.start)
        var cohortIndex = firstCohort
        if unit.start(ofIndex: cohortIndex) < query.start { cohortIndex += 1 }
        let lastCohort = unit.index(ofMicros: query.end - 1)
        guard cohortIndex <= lastCohort else { return [] }
        let cohortCount = lastCohort - cohortIndex + 1
        // Offsets shown per cohort: n + 1 with `periods`, else while the period starts before
        // the end of the range.
        let offsetCounts: [Int] = (0..<cohortCount).map { c in
            if let periods = query.periods { return periods + 1 }
            var k = 0
            while unit.start(ofIndex: cohortIndex + c + k) < query.end { k += 1 }
            return max(k, 1)
        }
        let maxOffsets = offsetCounts.max() ?? 1
        // Members per cohort.
        var cohortOf = [Int32](repeating: -1, count: first.count)
        var sizes = [Int](repeating: 0, count: cohortCount)
        for p in first.indices where first[p] != .max {
            let c = unit.index(ofMicros: first[p]) - cohortIndex
            if c >= 0 && c < cohortCount && unit.start(ofIndex: c + cohortIndex) >= query.start {
                cohortOf[p] = Int32(c)
                sizes[c] += 1
            }
        }
        // Returns: each block lists its (person, offset) pairs on every core (a person's rows
        // are contiguous and in time order, so duplicates within a block are neighbours);
        // a bit per (offset, person) then counts each once.
        let cohorts = cohortOf
        let firstIndex = cohortIndex
        let returns = try parallelMap(blocks.count, threads: threads) { b -> [(UInt32, Int32)] in
            try snapshot.checkDeadline()
            let columns = BlockColumns(blocks[b])
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            let returning = try query.returnEvent.map { try columns.rows(named: $0) }
            var pairs: [(UInt32, Int32)] = []
            var last: (UInt32, Int32) = (noPerson, -1)
            for r in 0..<columns.rows where persons[r] != noPerson && (returning?[r] ?? true) {
                let p = persons[r]
                let c = Int(cohorts[Int(p)])
                guard c >= 0 else { continue }
                let k = unit.index(ofMicros: ts[r]) - (firstIndex + c)
                guard k >= 1 && k < offsetCounts[c] else { continue }
                if last.0 == p && last.1 == Int32(k) { continue }
                last = (p, Int32(k))
                pairs.append(last)
            }
            return pairs
        }
        let words = (first.count + 63) / 64
        var marked = [UInt64](repeating: 0, count: maxOffsets * words)
        var returned = [[Int]](repeating: [Int](repeating: 0, count: maxOffsets), count: cohortCount)
        for part in returns {
            for (p, k) in try part.get() {
                let word = Int(k) * words + Int(p >> 6)
                let bit: UInt64 = 1 << UInt64(p & 63)
                if marked[word] & bit == 0 {
                    marked[word] |= bit
                    returned[Int(cohortOf[Int(p)])][Int(k)] += 1
                }
            }
        }
        return (0..<cohortCount).map { c in
            let n = offsetCounts[c]
            let size = sizes[c]
            var retention = [Double](repeating: 0, count: n)
            for k in 0..<n {
                retention[k] = k == 0 ? (size > 0 ? 1 : 0) : size > 0 ? Double(returned[c][k]) / Double(size) : 0
            }
            return Cohort(start: unit.start(ofIndex: cohortIndex + c), users: size, retention: retention)
        }
    }
}
