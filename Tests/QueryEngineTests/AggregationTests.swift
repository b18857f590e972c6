import EventLog
import Foundation
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
            case .hour: keys.append(calendarBucket(e.timestamp, .hour, q.timeZone.identifier))
            case .period(.day): keys.append(calendarBucket(e.timestamp, .day, q.timeZone.identifier))
            case .period(.week): keys.append(calendarBucket(e.timestamp, .weekOfYear, q.timeZone.identifier))
            case .period(.month): keys.append(calendarBucket(e.timestamp, .month, q.timeZone.identifier))
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

/// The UTC instant (µs, as a key string) where Foundation's calendar says the local hour,
/// day, ISO week or month holding `micros` starts in zone `zone`: a reference independent of
/// the engine's offset tables.
func calendarBucket(_ micros: Int64, _ component: Calendar.Component, _ zone: String) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: zone)!
    calendar.firstWeekday = 2
    calendar.minimumDaysInFirstWeek = 4
    let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
    let start = calendar.dateInterval(of: component, for: date)!.start
    return String(Int64((start.timeIntervalSince1970 * 1_000_000).rounded()))
}

let testZones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "America/Santiago"]

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
            q.timeZone = ZoneOffsets.named(testZones.randomElement(using: &rng)!)!
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

@Suite struct TimeZoneTests {
    /// Events every 20 minutes across both 2024 DST changes of four zones, grouped by local
    /// hour, day, week and month: the engine agrees with Foundation's calendar, including the
    /// hour a fall-back change repeats (two buckets) and the one a spring-forward skips.
    @Test(arguments: ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago"])
    func bucketsFollowLocalTimeAcrossDSTChanges(zone: String) async throws {
        var project = try TestProject()
        let table = ZoneOffsets.named(zone)!
        var events: [Event] = []
        // Around each transition of 2024, two days either side.
        let year2024: Int64 = 1_704_067_200_000_000
        let transitions = table.changes.filter { $0 >= year2024 && $0 < year2024 + 366 * 86_400_000_000 }
        #expect(transitions.count == 2)
        for transition in transitions {
            var t = transition - 2 * 86_400_000_000
            while t < transition + 2 * 86_400_000_000 {
                events.append(Event(name: "tick", timestamp: t, receivedAt: t, userId: "u\(t % 7)"))
                t += 20 * 60_000_000
            }
        }
        try await project.add(events)
        try project.compact(limit: events.count / 2)
        let snapshot = try project.snapshot()
        for key in [GroupKey.hour, .period(.day), .period(.week), .period(.month)] {
            var q = AggregateQuery(groupBy: [key], aggregate: .count)
            q.timeZone = table
            let engine = try AggregationEngine.run(q, on: snapshot).rows
            let reference = referenceAggregate(q, project.events)
            let extra = engine.filter { !reference.contains($0) }.map { "\($0.keys[0])=\($0.values[0])" }
            let missing = reference.filter { !engine.contains($0) }.map { "\($0.keys[0])=\($0.values[0])" }
            #expect(extra.isEmpty && missing.isEmpty, "\(zone) \(key): engine has \(extra), reference has \(missing)")
        }
        project.log.close()
    }

    /// Local times map back to instants: a repeated local time to its first occurrence, a
    /// skipped one to the instant of the change.
    @Test func localTimesMapToInstants() {
        let berlin = ZoneOffsets.named("Europe/Berlin")!
        let hour: Int64 = 3_600_000_000
        let springForward: Int64 = 1_711_846_800_000_000  // 2024-03-31T01:00Z: 02:00 → 03:00
        let fallBack: Int64 = 1_729_990_800_000_000  // 2024-10-27T01:00Z: 03:00 → 02:00
        #expect(berlin.offset(springForward - 1) == hour && berlin.offset(springForward) == 2 * hour)
        #expect(berlin.offset(fallBack - 1) == 2 * hour && berlin.offset(fallBack) == hour)
        // 02:30 local on 2024-03-31 does not exist.
        #expect(berlin.utc(ofLocal: berlin.local(springForward) - hour / 2) == springForward)
        // 02:30 local on 2024-10-27 happens at 00:30Z and again at 01:30Z.
        #expect(berlin.utc(ofLocal: berlin.local(fallBack) + hour / 2) == fallBack - hour / 2)
        #expect(ZoneOffsets.named("Not/AZone") == nil)
        #expect(ZoneOffsets.utc.offset(0) == 0)
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
