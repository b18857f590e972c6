import ColumnStore
import EventLog
import Foundation
import Logging
import QueryEngine
import TallyTestSupport
import Testing

let day: Int64 = 86_400_000_000
let epochDay: Int64 = 19_723 * day  // 2024-01-01, a Monday

/// Few people, few names, timestamps on a coarse grid so that equal times are common.
func randomFunnelEvents(_ rng: inout SeededRandom, count: Int, days: Int) -> [Event] {
    let names = ["a", "b", "c", "d", "e"]
    return (0..<count).map { _ in
        let person = Int.random(in: 0..<25, using: &rng)
        let ts = epochDay + Int64.random(in: 0..<(Int64(days) * 96), using: &rng) * (day / 96)
        var e = Event(name: names.randomElement(using: &rng)!, timestamp: ts, receivedAt: ts)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: e.anonymousId = "anon\(person)"
        case 1: break  // nobody
        default: e.userId = "u\(person)"
        }
        if Bool.random(using: &rng) { e.properties.append(Property("plan", .string(["free", "pro", "team"].randomElement(using: &rng)!))) }
        if Bool.random(using: &rng) { e.properties.append(Property("n", .int(Int64.random(in: 0..<10, using: &rng)))) }
        if Int.random(in: 0..<5, using: &rng) == 0 { e.properties.append(Property("n", .string("many"))) }
        if Bool.random(using: &rng) { e.botId = ["bot_1", "bot_2"].randomElement(using: &rng)! }
        return e
    }
}

func randomFilter(_ rng: inout SeededRandom) -> PropertyFilter {
    switch Int.random(in: 0..<7, using: &rng) {
    case 0: return PropertyFilter(property: "plan", op: .equals, value: .string(["free", "pro"].randomElement(using: &rng)!))
    case 1: return PropertyFilter(property: "plan", op: .notEquals, value: .string("free"))
    case 2: return PropertyFilter(property: "n", op: [.greater, .lessOrEqual, .greaterOrEqual, .less].randomElement(using: &rng)!, value: .number(Double(Int.random(in: 0..<10, using: &rng))))
    case 3: return PropertyFilter(property: "plan", op: [.isIn, .notIn].randomElement(using: &rng)!, value: .list([.string("team"), .string("pro")]))
    case 4: return PropertyFilter(property: "plan", op: [.contains, .notContains, .containsIgnoringCase].randomElement(using: &rng)!, value: .string(["r", "E", "ea"].randomElement(using: &rng)!))
    case 5: return PropertyFilter(property: ["n", "plan", "bot_id"].randomElement(using: &rng)!, op: [.isSet, .isNotSet].randomElement(using: &rng)!, value: nil)
    default: return PropertyFilter(property: "bot_id", op: .equals, value: .string("bot_1"))
    }
}

@Suite struct FunnelTests {
    @Test func agreesWithTheReferenceOnRandomEventsAndQueries() async throws {
        var rng = SeededRandom(seed: 2024)
        for round in 0..<6 {
            var project = try TestProject()
            try await project.add(randomFunnelEvents(&rng, count: 600, days: 12))
            if round % 2 == 0 {
                try project.compact(limit: 350)  // part blocks, part log tail
                try await project.add(randomFunnelEvents(&rng, count: 200, days: 12))
            } else {
                // One block per day and no tail: every block stands alone, so the engine
                // thins runs of one step, and must still agree.
                try await project.add(randomFunnelEvents(&rng, count: 200, days: 12))
                try project.compact()
            }
            let snapshot = try project.snapshot()
            for _ in 0..<40 {
                let names = ["a", "b", "c", "d", "e"]
                let steps = (0..<Int.random(in: 2...5, using: &rng)).map { i in
                    FunnelStep(
                        name: "s\(i)", event: names.randomElement(using: &rng)!,
                        filters: Int.random(in: 0..<3, using: &rng) == 0 ? [randomFilter(&rng)] : [])
                }
                let start = epochDay + Int64.random(in: 0..<4, using: &rng) * day
                var query = FunnelQuery(steps: steps, start: start, end: start + Int64.random(in: 1...12, using: &rng) * day)
                query.window = [day / 24, day, 3 * day, 14 * day].randomElement(using: &rng)!
                query.strict = Bool.random(using: &rng)
                if Bool.random(using: &rng) { query.breakdown = ["plan", "n", "bot_id"].randomElement(using: &rng)! }
                if !query.strict, Int.random(in: 0..<3, using: &rng) == 0 {
                    let from = Int.random(in: 0..<(steps.count - 1), using: &rng)
                    query.exclusions = [FunnelExclusion(event: names.randomElement(using: &rng)!, fromStep: from, toStep: Int.random(in: (from + 1)..<steps.count, using: &rng))]
                }
                let result = try FunnelEngine.run(query, on: snapshot)
                let engine = result.users
                let expected = Reference.funnelWithBreakdown(query, project.events)
                let reference = expected.users
                if query.breakdown != nil {
                    var groups: [String?: [Int]] = [:]
                    for g in result.breakdown { groups[g.value] = g.users }
                    #expect(groups == expected.groups, "round \(round) breakdown \(query.breakdown!) exclusions \(query.exclusions.map { ($0.event, $0.fromStep, $0.toStep) })")
                }
                #expect(engine == reference, "round \(round): \(query)")
                if engine != reference { return }
            }
            project.log.close()
        }
    }

    @Test func equalTimestampsAreTakenInStepOrderAndBoundariesHold() async throws {
        var project = try TestProject()
        let t = epochDay + 3_600_000_000
        try await project.add([
            Event(name: "signup", timestamp: t, receivedAt: t, userId: "same-time"),
            Event(name: "purchase", timestamp: t, receivedAt: t, userId: "same-time"),
            Event(name: "signup", timestamp: t, receivedAt: t, userId: "one-event"),
            Event(name: "purchase", timestamp: t + 1, receivedAt: t, userId: "late"),
            Event(name: "signup", timestamp: t + 2, receivedAt: t, userId: "late"),
        ])
        let snapshot = try project.snapshot()
        let steps = [FunnelStep(name: "1", event: "signup"), FunnelStep(name: "2", event: "purchase")]
        let result = try FunnelEngine.run(FunnelQuery(steps: steps, start: epochDay, end: epochDay + day), on: snapshot)
        #expect(result.users == [3, 1])
        #expect(result.medianSecondsToConvert == [nil, 0])
        // Boundaries: the window is inclusive, the date range's end exclusive.
        var q = FunnelQuery(steps: steps, start: epochDay, end: t)
        #expect(try FunnelEngine.run(q, on: snapshot).users == [0, 0])
        q.end = t + 1
        #expect(try FunnelEngine.run(q, on: snapshot).users == [2, 1])
        project.log.close()
    }
}

@Suite struct CohortTests {
    @Test func agreesWithTheReferenceOnRandomEvents() async throws {
        var rng = SeededRandom(seed: 77)
        for _ in 0..<4 {
            var project = try TestProject()
            try await project.add(randomFunnelEvents(&rng, count: 700, days: 70))
            try project.compact(limit: 400)
            try await project.add(randomFunnelEvents(&rng, count: 100, days: 70))
            let snapshot = try project.snapshot()
            for unit in PeriodUnit.allCases {
                for _ in 0..<5 {
                    let start = epochDay + Int64.random(in: 0..<20, using: &rng) * day
                    var q = CohortQuery(unit: unit, start: start, end: start + Int64.random(in: 1...50, using: &rng) * day)
                    if Bool.random(using: &rng) { q.periods = Int.random(in: 0...6, using: &rng) }
                    if Bool.random(using: &rng) { q.startEvent = "a" }
                    if Bool.random(using: &rng) { q.returnEvent = "b" }
                    let engine = try RetentionEngine.run(q, on: snapshot)
                    let reference = Reference.cohorts(q, project.events)
                    #expect(engine == reference, "\(q)")
                }
            }
            project.log.close()
        }
    }

    @Test func isoWeeksStartOnMondayAndMonthsOnTheFirst() {
        // 2024-01-07 is a Sunday: its ISO week started Monday 2024-01-01.
        let sunday = epochDay + 6 * day + 5
        #expect(PeriodUnit.week.start(ofIndex: PeriodUnit.week.index(ofMicros: sunday)) == epochDay)
        #expect(PeriodUnit.week.start(ofIndex: PeriodUnit.week.index(ofMicros: epochDay + 7 * day)) == epochDay + 7 * day)
        let march = Timestamp.parse("2024-03-31T23:59:59Z")!
        #expect(PeriodUnit.month.start(ofIndex: PeriodUnit.month.index(ofMicros: march)) == Timestamp.parse("2024-03-01T00:00:00Z")!)
        let before1970 = Timestamp.parse("1969-12-31T12:00:00Z")!
        #expect(PeriodUnit.week.start(ofIndex: PeriodUnit.week.index(ofMicros: before1970)) == Timestamp.parse("1969-12-29T00:00:00Z")!)
    }
}
