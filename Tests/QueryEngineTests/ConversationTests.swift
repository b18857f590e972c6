import ColumnStore
import EventLog
import Foundation
import QueryEngine
import TallyTestSupport
import Testing

/// Bot conversations over a few days: sessions that cross midnight, late events for days
/// already compacted (several blocks per day), equal timestamps, events without a session or a
/// person, and topics sent with other types now and then.
func randomConversationEvents(_ rng: inout SeededRandom, count: Int, days: Int) -> [Event] {
    let names = ["conversation_started", "message_received", "message_sent", "fallback_triggered", "handoff", "conversation_ended", "page_view"]
    let topics = ["billing", "shipping", "returns", "Billing", ""]
    return (0..<count).map { _ in
        let session = Int.random(in: 0..<60, using: &rng)
        // Each session lives around its own hour, now and then straying a day or two.
        let home = epochDay + Int64(session % days) * day + Int64(session % 24) * (day / 24)
        var ts = home + Int64.random(in: -6...6, using: &rng) * (day / 48)
        if Int.random(in: 0..<15, using: &rng) == 0 { ts += Int64.random(in: -2...2, using: &rng) * day }
        var e = Event(name: names.randomElement(using: &rng)!, timestamp: ts, receivedAt: ts)
        if Int.random(in: 0..<12, using: &rng) != 0 { e.sessionId = "s\(session)" }
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: e.anonymousId = "anon\(session % 7)"
        case 1: break
        default: e.userId = "u\(Int.random(in: 0..<(session % 5 == 0 ? 3 : 1), using: &rng) + session / 3)"
        }
        // Most sessions talk to one bot; every fourth to both.
        let bot = session % 4 == 0 ? Int.random(in: 0..<2, using: &rng) : session % 2
        if Int.random(in: 0..<4, using: &rng) != 0 { e.botId = ["bot_1", "bot_2"][bot] }
        if Int.random(in: 0..<3, using: &rng) == 0 {
            e.properties.append(Property("topic", Int.random(in: 0..<10, using: &rng) == 0 ? .int(7) : .string(topics.randomElement(using: &rng)!)))
        }
        if Int.random(in: 0..<3, using: &rng) == 0 { e.properties.append(Property("channel", .string(["web", "ios", "sms"].randomElement(using: &rng)!))) }
        if e.name == "conversation_ended" {
            if Int.random(in: 0..<4, using: &rng) != 0 { e.properties.append(Property("resolved", .bool(Bool.random(using: &rng)))) }
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: e.properties.append(Property("satisfaction", .int(Int64.random(in: 1...5, using: &rng))))
            case 1: e.properties.append(Property("satisfaction", .double(Double(Int.random(in: 2...10, using: &rng)) / 2)))
            default: break
            }
        }
        return e
    }
}

/// The conversation model written out from `conventions.md`, one session at a time.
enum ConversationReference {
    struct Session {
        var first = Int64.max
        var last = Int64.min
        var messages = 0
        var completed = false
        var resolved = false
        var satisfaction: (time: Int64, value: Double)?
        var person: (time: Int64, value: String)?
        var bot: (time: Int64, value: String)?
        var topic: (time: Int64, value: String)?
        var channel: (time: Int64, value: String)?
    }

    /// The value at the earliest time, the smaller string at equal times.
    static func earliest(_ current: inout (time: Int64, value: String)?, _ t: Int64, _ value: String?) {
        guard let value else { return }
        if let c = current, c.time < t || (c.time == t && c.value <= value) { return }
        current = (t, value)
    }

    static func sessions(_ events: [Event], from: Int64, to: Int64, bot: String?) -> [String: Session] {
        var sessions: [String: Session] = [:]
        for e in events where ConversationEngine.eventNames.contains(e.name) && e.sessionId != nil && e.timestamp >= from && e.timestamp < to {
            if let bot, e.botId != bot { continue }
            var s = sessions[e.sessionId!] ?? Session()
            let t = e.timestamp
            s.first = min(s.first, t)
            s.last = max(s.last, t)
            if e.name.hasPrefix("message_") { s.messages += 1 }
            if e.name == "conversation_ended" {
                s.completed = true
                if case .bool(true)? = Reference.value(e, "resolved") { s.resolved = true }
                var v: Double?
                if case .int(let n)? = Reference.value(e, "satisfaction") { v = Double(n) }
                if case .double(let d)? = Reference.value(e, "satisfaction") { v = d }
                if let v, s.satisfaction == nil || t > s.satisfaction!.time || (t == s.satisfaction!.time && v > s.satisfaction!.value) {
                    s.satisfaction = (t, v)
                }
            }
            func string(_ key: String) -> String? {
                if case .string(let x)? = Reference.value(e, key) { return x }
                return nil
            }
            earliest(&s.topic, t, string("topic"))
            earliest(&s.channel, t, string("channel"))
            earliest(&s.bot, t, e.botId)
            earliest(&s.person, t, Reference.person(e))
            sessions[e.sessionId!] = s
        }
        return sessions
    }

    static func label(_ t: Int64, _ unit: Bucketing.Unit, _ zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = zone
        let date = Date(timeIntervalSince1970: Double(t) / 1e6)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = zone
        switch unit {
        case .hour:
            formatter.dateFormat = "yyyy-MM-dd'T'HH:00"
            return formatter.string(from: date)
        case .day:
            formatter.dateFormat = "yyyy-MM-dd"
            return formatter.string(from: date)
        case .week:
            formatter.dateFormat = "yyyy-MM-dd"
            return formatter.string(from: calendar.dateInterval(of: .weekOfYear, for: date)!.start)
        case .month:
            formatter.dateFormat = "yyyy-MM-01"
            return formatter.string(from: date)
        }
    }

    static func report(_ q: ConversationQuery, _ events: [Event], zone: TimeZone) -> ConversationReport {
        let sessions = sessions(events, from: q.start - ConversationEngine.margin, to: q.end + ConversationEngine.margin, bot: q.botId)
        var report = ConversationReport()
        var conversations: [String: Int] = [:]
        var messages: [String: Int] = [:]
        var people: [String: Set<String>] = [:]
        var topics: [String: Int] = [:]
        for (_, s) in sessions where s.first >= q.start && s.first < q.end {
            report.conversations += 1
            if s.completed { report.completed += 1 }
            if s.resolved { report.resolved += 1 }
            report.messages += s.messages
            report.totalDurationSeconds += Double(s.last - s.first) / 1_000_000
            conversations[label(s.first, q.bucketing.unit, zone), default: 0] += 1
            if let topic = s.topic?.value { topics[topic, default: 0] += 1 }
        }
        for e in events where ConversationEngine.eventNames.contains(e.name) && e.sessionId != nil && e.timestamp >= q.start && e.timestamp < q.end {
            if let bot = q.botId, e.botId != bot { continue }
            let b = label(e.timestamp, q.bucketing.unit, zone)
            if e.name.hasPrefix("message_") { messages[b, default: 0] += 1 }
            if let p = Reference.person(e) { people[b, default: []].insert(p) }
        }
        let labels = Set(conversations.keys).union(messages.keys).union(people.keys).sorted()
        report.timeline = labels.map {
            ConversationReport.Bucket(label: $0, conversations: conversations[$0] ?? 0, messages: messages[$0] ?? 0, uniqueUsers: people[$0]?.count ?? 0)
        }
        report.topics = topics.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
        return report
    }
}

@Suite struct ConversationTests {
    @Test func analyticsAgreeWithTheReference() async throws {
        var rng = SeededRandom(seed: 4242)
        for round in 0..<3 {
            var project = try TestProject()
            try await project.add(randomConversationEvents(&rng, count: 900, days: 6))
            try project.compact(limit: 300)
            // Late events for compacted days become further blocks of those days.
            try await project.add(randomConversationEvents(&rng, count: 300, days: 6))
            try project.compact(limit: 150)
            try await project.add(randomConversationEvents(&rng, count: 200, days: 6))
            let snapshot = try project.snapshot()
            #expect(snapshot.blocks.count > 6)
            for _ in 0..<12 {
                let zoneName = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"].randomElement(using: &rng)!
                let zone = TimeZone(identifier: zoneName)!
                let start = epochDay + Int64.random(in: -1..<5, using: &rng) * day + Int64.random(in: 0..<4, using: &rng) * (day / 4)
                let end = start + Int64.random(in: 1...(4 * 24), using: &rng) * (day / 24)
                let unit = Bucketing.Unit.allCases.randomElement(using: &rng)!
                let bot = [nil, "bot_1", "bot_2", "bot_9"].randomElement(using: &rng)!
                let query = ConversationQuery(start: start, end: end, botId: bot, bucketing: Bucketing(unit: unit, timeZone: zone))
                let engine = try ConversationEngine.run(query, on: snapshot, threads: Int.random(in: 1...3, using: &rng))
                let reference = ConversationReference.report(query, project.events, zone: zone)
                #expect(engine.timeline == reference.timeline, "round \(round) \(zoneName) \(unit) bot \(bot ?? "-")")
                #expect(engine.topics.map(\.topic) == reference.topics.map(\.topic))
                #expect(engine.topics.map(\.count) == reference.topics.map(\.count))
                let counts: [Int] = [engine.conversations, engine.completed, engine.resolved, engine.messages]
                let expected: [Int] = [reference.conversations, reference.completed, reference.resolved, reference.messages]
                #expect(counts == expected)
                #expect(abs(engine.totalDurationSeconds - reference.totalDurationSeconds) < 1e-6)
            }
            project.log.close()
        }
    }

    /// The per-session details the `conversations` table shows: first bot, person, channel
    /// and topic, and the latest satisfaction.
    @Test func summariesAgreeWithTheReference() async throws {
        var rng = SeededRandom(seed: 99)
        var project = try TestProject()
        try await project.add(randomConversationEvents(&rng, count: 1200, days: 5))
        try project.compact(limit: 400)
        try await project.add(randomConversationEvents(&rng, count: 300, days: 5))
        let snapshot = try project.snapshot()
        let strings = ConversationEngine.Strings()
        var folded: [String: ConversationSummary] = [:]
        var order: [UInt32] = []
        _ = try ConversationEngine.fold(.init(readStart: .min, readEnd: .max, details: true), strings: strings, on: snapshot, threads: 2) { s in
            folded[snapshot.sessions.string(Int(s.session))] = s
            order.append(s.session)
        }
        #expect(order == order.sorted(), "sessions are handed over in id order")
        let reference = ConversationReference.sessions(project.events, from: .min, to: .max, bot: nil)
        #expect(Set(folded.keys) == Set(reference.keys))
        for (id, r) in reference {
            guard let s = folded[id] else { continue }
            let values: [Int64] = [s.first, s.last, s.messages]
            #expect(values == [r.first, r.last, Int64(r.messages)], "\(id)")
            #expect(s.completed == r.completed && s.resolved == r.resolved, "\(id)")
            #expect(s.satisfaction == r.satisfaction?.value, "\(id)")
            #expect(strings[s.bot] == r.bot?.value && strings[s.topic] == r.topic?.value && strings[s.channel] == r.channel?.value, "\(id)")
            #expect((s.person == noPerson ? nil : snapshot.people.string(Int(s.person))) == r.person?.value, "\(id)")
        }
        project.log.close()
    }
}
