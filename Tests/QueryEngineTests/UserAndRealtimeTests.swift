import ColumnStore
import EventLog
import Foundation
import QueryEngine
import TallyTestSupport
import Testing

/// Bot and product events of a few people over `days` days before `now`, with times drawn
/// partly from the boundaries the endpoints cut at (exactly now, a window or a day back).
func randomActivity(_ rng: inout SeededRandom, count: Int, now: Int64, days: Int, boundaries: [Int64] = []) -> [Event] {
    let names = ["conversation_started", "message_received", "message_sent", "conversation_ended", "page_view", "search"]
    return (0..<count).map { _ in
        var ts = now - Int64.random(in: 0..<(Int64(days) * day), using: &rng)
        if !boundaries.isEmpty, Int.random(in: 0..<4, using: &rng) == 0 {
            ts = boundaries.randomElement(using: &rng)! + Int64.random(in: -1...1, using: &rng)
        }
        var e = Event(name: names.randomElement(using: &rng)!, timestamp: ts, receivedAt: ts)
        let person = Int.random(in: 0..<12, using: &rng)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: e.anonymousId = "anon\(person)"
        case 1: break
        case 2:
            e.userId = "u\(person)"
            e.anonymousId = "anon\(person)"
        default: e.userId = "u\(person)"
        }
        if Int.random(in: 0..<5, using: &rng) != 0 { e.sessionId = "s\(person)-\(Int.random(in: 0..<4, using: &rng))" }
        if Int.random(in: 0..<3, using: &rng) == 0 {
            e.properties.append(Property("topic", Int.random(in: 0..<8, using: &rng) == 0 ? .int(3) : .string(["billing", "returns", "login"].randomElement(using: &rng)!)))
        }
        if e.name == "message_sent", Int.random(in: 0..<3, using: &rng) != 0 {
            e.properties.append(Property("response_time_ms", Bool.random(using: &rng) ? .int(Int64.random(in: 50...3000, using: &rng)) : .double(Double(Int.random(in: 1...400, using: &rng)) * 2.5)))
        }
        if Int.random(in: 0..<6, using: &rng) == 0 {
            e.properties.append(Property("satisfaction", Bool.random(using: &rng) ? .int(Int64.random(in: 1...5, using: &rng)) : .double(Double(Int.random(in: 2...10, using: &rng)) / 2)))
        }
        return e
    }
}

/// `GET /users/{id}/analytics` and `GET /realtime` written out from docs/ANALYTICS.md.
enum ActivityReference {
    static func number(_ e: Event, _ key: String) -> Double? {
        switch Reference.value(e, key) {
        case .int(let n)?: return Double(n)
        case .double(let d)?: return d
        default: return nil
        }
    }

    static func user(_ id: String, start: Int64, end: Int64, reference: Int64, _ events: [Event]) -> UserReport? {
        guard events.contains(where: { $0.userId == id || $0.anonymousId == id }) else { return nil }
        let mine = events.filter { $0.userId == id }
        let inRange = mine.filter { $0.timestamp >= start && $0.timestamp < end }
        var report = UserReport()
        report.events = inRange.count
        report.messages = inRange.filter { $0.name == "message_received" || $0.name == "message_sent" }.count
        report.lastActive = inRange.map(\.timestamp).max()
        var sessions: [String: (Int64, Int64)] = [:]
        for e in inRange {
            guard let s = e.sessionId else { continue }
            let span = sessions[s] ?? (e.timestamp, e.timestamp)
            sessions[s] = (min(span.0, e.timestamp), max(span.1, e.timestamp))
        }
        report.sessions = sessions.count
        if !sessions.isEmpty {
            report.averageSessionSeconds = sessions.values.map { Double($0.1 - $0.0) / 1_000_000 }.reduce(0, +) / Double(sessions.count)
        }
        let scores = inRange.compactMap { number($0, "satisfaction") }
        if !scores.isEmpty { report.satisfaction = scores.reduce(0, +) / Double(scores.count) }
        var topics: [String: Int] = [:]
        for e in inRange { if case .string(let t)? = Reference.value(e, "topic") { topics[t, default: 0] += 1 } }
        report.topics = topics.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        let last30 = mine.filter { $0.timestamp >= reference - 30 * day && $0.timestamp <= reference }
        report.activeDaysLast30 = Set(last30.map { $0.timestamp / day }).count
        report.dailyActive = mine.contains { $0.timestamp >= reference - day && $0.timestamp <= reference }
        return report
    }

    static func window(_ events: [Event], after: Int64, through: Int64, distinct: Bool) -> RealtimeReport.Window {
        var w = RealtimeReport.Window()
        let inside = events.filter { $0.timestamp > after && $0.timestamp <= through }
        w.events = inside.count
        w.messages = inside.filter { $0.name == "message_received" || $0.name == "message_sent" }.count
        for e in inside where e.name == "message_sent" {
            if let v = number(e, "response_time_ms") {
                w.responseTimeSum += v
                w.responseTimes += 1
            }
        }
        for e in inside {
            if let v = number(e, "satisfaction") {
                w.satisfactionSum += v
                w.satisfactions += 1
            }
        }
        if distinct {
            w.activeUsers = Set(inside.compactMap { Reference.person($0) }).count
            w.activeConversations = Set(inside.filter { ConversationEngine.eventNames.contains($0.name) }.compactMap(\.sessionId)).count
        }
        return w
    }

    static func realtime(now: Int64, minutes: Int, _ events: [Event]) -> RealtimeReport {
        let span = Int64(minutes) * 60_000_000
        let hour: Int64 = 3_600_000_000
        var report = RealtimeReport()
        report.current = window(events, after: now - span, through: now, distinct: true)
        report.dayBefore = window(events, after: now - day - span, through: now - day, distinct: true)
        report.lastHour = window(events, after: now - hour, through: now, distinct: false)
        report.lastHourDayBefore = window(events, after: now - day - hour, through: now - day, distinct: false)
        report.eventsPast24h = events.filter { $0.timestamp > now - day - span && $0.timestamp <= now - span }.count
        return report
    }
}

/// Float sums depend on the order values are added in; everything else must match exactly.
func agree(_ a: Double?, _ b: Double?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (let x?, let y?): return abs(x - y) <= 1e-9 * max(1, abs(x), abs(y))
    default: return false
    }
}

@Suite struct UserAnalyticsTests {
    @Test func agreesWithTheReference() async throws {
        var rng = SeededRandom(seed: 515)
        let now = epochDay + 40 * day
        for _ in 0..<3 {
            var project = try TestProject()
            try await project.add(randomActivity(&rng, count: 1200, now: now, days: 40))
            try project.compact(limit: 800)
            try await project.add(randomActivity(&rng, count: 300, now: now, days: 40))
            let snapshot = try project.snapshot()
            for _ in 0..<25 {
                let id = ["u\(Int.random(in: 0..<13, using: &rng))", "anon3", "nobody"].randomElement(using: &rng)!
                var start = now - Int64.random(in: 0...45, using: &rng) * day + Int64.random(in: 0..<day, using: &rng)
                var end = start + Int64.random(in: 0...40, using: &rng) * day
                // Often the range ends are event times exactly: start is inclusive, end exclusive.
                let times = project.events.filter { $0.userId == id }.map(\.timestamp).sorted()
                if times.count > 2, Bool.random(using: &rng) {
                    let a = Int.random(in: 0..<times.count, using: &rng)
                    let b = Int.random(in: 0..<times.count, using: &rng)
                    (start, end) = (times[min(a, b)], times[max(a, b)])
                }
                let reference = now - Int64.random(in: 0...20, using: &rng) * (day / 2)
                let engine = try UserEngine.run(userId: id, start: start, end: end, reference: reference, on: snapshot)
                let expected = ActivityReference.user(id, start: start, end: end, reference: reference, project.events)
                #expect((engine == nil) == (expected == nil), "\(id)")
                guard var engine, let expected else { continue }
                #expect(agree(engine.averageSessionSeconds, expected.averageSessionSeconds), "\(id)")
                #expect(agree(engine.satisfaction, expected.satisfaction), "\(id)")
                engine.averageSessionSeconds = expected.averageSessionSeconds
                engine.satisfaction = expected.satisfaction
                #expect(engine == expected, "\(id) \(start) \(end) \(reference)")
            }
            project.log.close()
        }
    }
}

@Suite struct RealtimeTests {
    @Test func agreesWithTheReferenceAtTheWindowEdges() async throws {
        var rng = SeededRandom(seed: 616)
        let now = epochDay + 3 * day + 12 * 3_600_000_000
        for minutes in [5, 15, 60] {
            let span = Int64(minutes) * 60_000_000
            let hour: Int64 = 3_600_000_000
            let edges = [now, now - span, now - day, now - day - span, now - hour, now - day - hour]
            var project = try TestProject()
            try await project.add(randomActivity(&rng, count: 1500, now: now, days: 3, boundaries: edges))
            try project.compact(limit: 1000)
            try await project.add(randomActivity(&rng, count: 400, now: now, days: 3, boundaries: edges))
            let snapshot = try project.snapshot()
            var engine = try RealtimeEngine.run(now: now, minutes: minutes, on: snapshot)
            let expected = ActivityReference.realtime(now: now, minutes: minutes, project.events)
            for path in [\RealtimeReport.current, \.dayBefore, \.lastHour, \.lastHourDayBefore] {
                #expect(agree(engine[keyPath: path].responseTimeSum, expected[keyPath: path].responseTimeSum))
                #expect(agree(engine[keyPath: path].satisfactionSum, expected[keyPath: path].satisfactionSum))
                engine[keyPath: path].responseTimeSum = expected[keyPath: path].responseTimeSum
                engine[keyPath: path].satisfactionSum = expected[keyPath: path].satisfactionSum
            }
            #expect(engine == expected, "\(minutes) minutes")
            #expect(expected.current.events > 0 && expected.dayBefore.events > 0, "the windows hold events")
            project.log.close()
        }
    }
}
