import EventLog
import QueryEngine
import TallyTestSupport
import Testing

/// Group keys and aggregates recomputed row by row.
func referenceAggregate(_ q: AggregateQuery, _ events: [Event]) -> [AggregateResult.Row] {
    var groups: [[String]: [Event]] = [:]
    for e in events where e.timestamp >= q.start && e.timestamp < q.end && (q.eventName == nil || e.name == q.eventName) {
        guard q.filters.allSatisfy({ Reference.holds($0, e) }) else { continue }
        var keys: [String] = []
        var complete = true
        for key in q.groupBy {
            switch key {
            case .eventName: keys.append(e.name)
            case .botId: if let b = e.botId { keys.append(b) } else { complete = false }
            case .property(let p):
                if case .string(let s) = Reference.value(e, p) { keys.append(s) } else { complete = false }
            case .hour: keys.append(String(e.timestamp / 3_600_000_000 * 3_600_000_000))
            case .period(let unit): keys.append(String(unit.start(ofIndex: unit.index(ofMicros: e.timestamp))))
            }
        }
        if complete { groups[keys, default: []].append(e) }
    }
    var rows: [AggregateResult.Row] = []
    for (keys, members) in groups {
        func number(_ e: Event, _ p: String) -> Double? {
            switch Reference.value(e, p) {
            case .int(let i): return Double(i)
            case .double(let d): return d
            default: return nil
            }
        }
        switch q.aggregate {
        case .count: rows.append(.init(keys: keys, values: [Double(members.count)]))
        case .distinctPeople: rows.append(.init(keys: keys, values: [Double(Set(members.compactMap(Reference.person)).count)]))
        case .distinctUsers: rows.append(.init(keys: keys, values: [Double(Set(members.compactMap(\.userId)).count)]))
        case .average(let p):
            let values = members.compactMap { number($0, p) }
            if !values.isEmpty { rows.append(.init(keys: keys, values: [values.reduce(0, +) / Double(values.count)])) }
        case .percentiles(let p, let ps):
            let values = members.compactMap { number($0, p) }.sorted()
            if !values.isEmpty {
                rows.append(.init(keys: keys, values: ps.map { q in
                    let position = q * Double(values.count - 1)
                    let low = Int(position.rounded(.down))
                    let high = min(low + 1, values.count - 1)
                    return values[low] + (values[high] - values[low]) * (position - Double(low))
                }))
            }
        }
    }
    return rows.sorted { $0.keys.lexicographicallyPrecedes($1.keys) }
}

@Suite struct AggregationTests {
    @Test func agreesWithTheReferenceOnRandomQueries() async throws {
        var rng = SeededRandom(seed: 5150)
        var project = try TestProject()
        try await project.add(randomFunnelEvents(&rng, count: 900, days: 20))
        try project.compact(limit: 500)
        try await project.add(randomFunnelEvents(&rng, count: 200, days: 20))
        let snapshot = try project.snapshot()
        let keys: [GroupKey] = [.eventName, .botId, .property("plan"), .hour, .period(.day), .period(.week), .period(.month)]
        let aggregates: [Aggregate] = [.count, .distinctPeople, .distinctUsers, .average("n"), .percentiles("n", [0.5, 0.95, 0.99])]
        for _ in 0..<60 {
            let start = epochDay + Int64.random(in: 0..<5, using: &rng) * day
            var q = AggregateQuery(
                start: start, end: start + Int64.random(in: 1...20, using: &rng) * day,
                eventName: Bool.random(using: &rng) ? "a" : nil,
                groupBy: (0..<Int.random(in: 0...2, using: &rng)).map { _ in keys.randomElement(using: &rng)! },
                aggregate: aggregates.randomElement(using: &rng)!)
            if Bool.random(using: &rng) { q.filters = [randomFilter(&rng)] }
            let engine = try AggregationEngine.run(q, on: snapshot).rows
            let reference = referenceAggregate(q, project.events)
            #expect(engine.map(\.keys) == reference.map(\.keys), "\(q)")
            for (a, b) in zip(engine, reference) {
                #expect(zip(a.values, b.values).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, abs($1)) }, "\(q): \(a) vs \(b)")
            }
        }
        project.log.close()
    }
}

@Suite struct PercentileTests {
    /// Percentiles by selection equal percentiles by sorting, with duplicates and skew.
    @Test func selectionAgreesWithSorting() async throws {
        var rng = SeededRandom(seed: 31)
        var project = try TestProject()
        let events = (0..<3000).map { i in
            Event(
                name: "m", timestamp: epochDay + Int64(i), receivedAt: epochDay, userId: "u",
                properties: [Property("v", i % 3 == 0 ? .int(Int64.random(in: 0..<5, using: &rng)) : .double(Double.random(in: -1e6...1e6, using: &rng)))])
        }
        try await project.add(events)
        let ps = [0, 0.01, 0.5, 0.95, 0.99, 1]
        let result = try AggregationEngine.run(AggregateQuery(groupBy: [], aggregate: .percentiles("v", ps)), on: try project.snapshot())
        let reference = referenceAggregate(AggregateQuery(groupBy: [], aggregate: .percentiles("v", ps)), project.events)
        #expect(result.rows.first?.values == reference.first?.values)
        project.log.close()
    }
}
