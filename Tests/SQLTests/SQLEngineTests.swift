import ColumnStore
import EventLog
import Foundation
import Logging
import QueryEngine
import SQL
import TallyTestSupport
import Testing

/// Events on disk: the first `compactFirst` compacted into blocks, the rest in the log tail.
struct EventFixture {
    var project: TestProject

    init(_ events: [Event], compactFirst: Int = .max) async throws {
        project = try TestProject()
        let cut = min(compactFirst, events.count)
        try await project.add(Array(events[..<cut]))
        if cut > 0 && compactFirst != .max { try project.compact() }
        try await project.add(Array(events[cut...]))
    }

    func query(_ sql: String, _ parameters: [SQLValue] = [], options: SQLOptions = SQLOptions()) throws -> SQLResult {
        try SQLEngine.execute(sql, parameters: parameters, on: try project.snapshot(), options: options)
    }
}

private let dayMicros: Int64 = 86_400_000_000
private let jan1: Int64 = 19_723 * dayMicros  // 2024-01-01

/// Two bots' conversations over three days: known answers for the document's example.
func conversationEvents() -> [Event] {
    var events: [Event] = []
    func add(_ name: String, _ t: Int64, session: String, bot: String, user: String, _ properties: [Property] = []) {
        var e = Event(name: name, timestamp: t, receivedAt: t)
        e.sessionId = session
        e.botId = bot
        e.userId = user
        e.properties = properties
        events.append(e)
    }
    // bot_123: s1 on Dec 31 (before the range), s2 and s3 in January.
    add("conversation_started", jan1 - dayMicros, session: "s1", bot: "bot_123", user: "u1", [Property("channel", .string("web"))])
    add("conversation_ended", jan1 - dayMicros + 100_000_000, session: "s1", bot: "bot_123", user: "u1")
    add("conversation_started", jan1 + 3_600_000_000, session: "s2", bot: "bot_123", user: "u2", [Property("topic", .string("billing"))])
    add("message_received", jan1 + 3_600_000_000 + 60_000_000, session: "s2", bot: "bot_123", user: "u2")
    add("message_sent", jan1 + 3_600_000_000 + 120_000_000, session: "s2", bot: "bot_123", user: "u2")
    add("conversation_ended", jan1 + 3_600_000_000 + 300_000_000, session: "s2", bot: "bot_123", user: "u2",
        [Property("resolved", .bool(true)), Property("satisfaction", .int(4))])
    add("conversation_started", jan1 + dayMicros, session: "s3", bot: "bot_123", user: "u1")
    add("message_received", jan1 + dayMicros + 421_000_000, session: "s3", bot: "bot_123", user: "u1")
    // bot_456: one conversation in range.
    add("conversation_started", jan1 + 2 * dayMicros, session: "s4", bot: "bot_456", user: "u3")
    add("message_received", jan1 + 2 * dayMicros + 10_000_000, session: "s4", bot: "bot_456", user: "u3")
    return events
}

@Suite struct SQLEngineTests {
    @Test func documentExampleWorksVerbatim() async throws {
        let fixture = try await EventFixture(conversationEvents())
        let result = try fixture.query(
            "SELECT COUNT(*) as total, AVG(duration) as avg_duration FROM conversations WHERE bot_id = ? AND date >= ?",
            [.string("bot_123"), .string("2024-01-01")])
        #expect(result.columns == [SQLColumn(name: "total", type: .integer), SQLColumn(name: "avg_duration", type: .double)])
        // s2 lasted 300 s, s3 421 s.
        #expect(result.rows.count == 1)
        #expect(result.rows[0][0] == .int(2))
        #expect(result.rows[0][1] == .double(360.5))
    }

    /// Every column of the `users` table against the events, person by person: sessions
    /// interleave within a person, cross blocks and the log tail, and a few are shared.
    @Test func usersTableAgreesWithTheEvents() async throws {
        var rng = SeededRandom(seed: 31)
        var events: [Event] = []
        for _ in 0..<2500 {
            let t = jan1 + Int64.random(in: 0..<(6 * dayMicros), using: &rng)
            var e = Event(name: ["message_sent", "message_received", "page_view"].randomElement(using: &rng)!, timestamp: t, receivedAt: t)
            let person = Int.random(in: 0..<30, using: &rng)
            if person % 5 == 0 { e.anonymousId = "anon\(person)" } else { e.userId = "u\(person)" }
            if Int.random(in: 0..<4, using: &rng) != 0 { e.sessionId = "s\(person * 3 + Int.random(in: 0..<4, using: &rng))" }
            // A few sessions are shared by several people (an anonymous visitor who signs in).
            if Int.random(in: 0..<10, using: &rng) == 0 { e.sessionId = "shared\(Int.random(in: 0..<5, using: &rng))" }
            if Bool.random(using: &rng) { e.properties.append(Property("plan", .string(["free", "pro"].randomElement(using: &rng)!))) }
            events.append(e)
        }
        let fixture = try await EventFixture(events, compactFirst: 1800)
        let result = try fixture.query("SELECT user_id, first_seen, last_seen, sessions, events, messages, properties.plan FROM users ORDER BY user_id")
        var expected: [[SQLValue]] = []
        for person in Set(events.map { $0.userId ?? $0.anonymousId! }).sorted() {
            let mine = events.filter { ($0.userId ?? $0.anonymousId!) == person }
            let plan = mine.filter { $0.properties.contains { $0.key == "plan" } }.max { $0.timestamp < $1.timestamp }
            var planValue = SQLValue.null
            if case .string(let p)? = plan?.properties.first(where: { $0.key == "plan" })?.value { planValue = .string(p) }
            expected.append([
                .string(person), .timestamp(mine.map(\.timestamp).min()!), .timestamp(mine.map(\.timestamp).max()!),
                .int(Int64(Set(mine.compactMap(\.sessionId)).count)), .int(Int64(mine.count)),
                .int(Int64(mine.filter { $0.name.hasPrefix("message_") }.count)), planValue,
            ])
        }
        #expect(result.rows == expected)
    }

    @Test func groupingOrderingAndLimits() async throws {
        let fixture = try await EventFixture(conversationEvents(), compactFirst: 50)
        let byName = try fixture.query("SELECT event_name, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC, event_name LIMIT 2")
        #expect(byName.rows == [[.string("conversation_started"), .int(4)], [.string("message_received"), .int(3)]])
        #expect(byName.native)  // sorted and limited above the engine's answer
        let perDay = try fixture.query(
            "SELECT date, count(DISTINCT user_id) FROM events WHERE timestamp >= ? GROUP BY date ORDER BY date", [.string("2024-01-01T00:00:00Z")])
        #expect(perDay.rows == [[.date(19_723), .int(1)], [.date(19_724), .int(1)], [.date(19_725), .int(1)]])
        #expect(perDay.native)
        let offset = try fixture.query("SELECT user_id FROM users ORDER BY user_id NULLS LAST LIMIT 2 OFFSET 1")
        #expect(offset.rows == [[.string("u2")], [.string("u3")]])
    }

    @Test func nativeAndGeneralPathsAgree() async throws {
        var rng = SeededRandom(seed: 7)
        var events: [Event] = []
        for i in 0..<3000 {
            let t = jan1 + Int64.random(in: 0..<(10 * dayMicros), using: &rng)
            var e = Event(name: ["a", "b", "c"].randomElement(using: &rng)!, timestamp: t, receivedAt: t)
            if i % 3 != 0 { e.userId = "u\(Int.random(in: 0..<40, using: &rng))" } else { e.anonymousId = "anon\(i % 7)" }
            events.append(e)
        }
        let fixture = try await EventFixture(events, compactFirst: 2000)
        let queries = [
            ("SELECT event_name, count(*) FROM events GROUP BY 1", "SELECT event_name, count(*) FROM events WHERE 1 = 1 GROUP BY 1"),
            ("SELECT date, count(DISTINCT user_id) FROM events WHERE timestamp >= ? GROUP BY date",
             "SELECT date, count(DISTINCT user_id) FROM events WHERE timestamp >= ? AND true GROUP BY date"),
            ("SELECT date_trunc('week', timestamp) AS w, count(*) FROM events WHERE event_name = 'b' GROUP BY w",
             "SELECT date_trunc('week', timestamp) AS w, count(*) FROM events WHERE event_name = 'b' AND user_id IS NULL OR event_name = 'b' AND user_id IS NOT NULL GROUP BY w"),
            // Several aggregates: one engine scan each, joined by group.
            ("SELECT event_name, count(*), count(DISTINCT user_id), count(event_id) FROM events GROUP BY 1",
             "SELECT event_name, count(*), count(DISTINCT user_id), count(event_id) FROM events WHERE 1 = 1 GROUP BY 1"),
            ("SELECT count(DISTINCT user_id), count(*) FROM events WHERE timestamp >= ?",
             "SELECT count(DISTINCT user_id), count(*) FROM events WHERE timestamp >= ? AND true"),
        ]
        for (native, general) in queries {
            let parameters: [SQLValue] = native.contains("?") ? [.timestamp(jan1 + 3 * dayMicros + 5)] : []
            let a = try fixture.query(native, parameters)
            let b = try fixture.query(general, parameters)
            #expect(a.native, "\(native) should run natively")
            #expect(!b.native)
            let sortedA = a.rows.sorted { "\($0)" < "\($1)" }
            let sortedB = b.rows.sorted { "\($0)" < "\($1)" }
            #expect(sortedA == sortedB, "\(native)")
        }
    }

    /// `date_trunc(unit, t, zone)` buckets by local time across Berlin's 2024 DST changes, on
    /// the native and the general path alike, as Foundation's calendar does.
    @Test func dateTruncInATimeZone() async throws {
        let springForward: Int64 = 1_711_846_800_000_000  // 2024-03-31T01:00Z
        let fallBack: Int64 = 1_729_990_800_000_000  // 2024-10-27T01:00Z
        var events: [Event] = []
        for transition in [springForward, fallBack] {
            var t = transition - 2 * dayMicros
            while t < transition + 2 * dayMicros {
                events.append(Event(name: "tick", timestamp: t, receivedAt: t, userId: "u"))
                t += 25 * 60_000_000
            }
        }
        let fixture = try await EventFixture(events, compactFirst: events.count / 2)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Europe/Berlin")!
        calendar.firstWeekday = 2
        calendar.minimumDaysInFirstWeek = 4
        for (unit, component) in [("hour", Calendar.Component.hour), ("day", .day), ("week", .weekOfYear), ("month", .month)] {
            var expected: [Int64: Int64] = [:]
            for e in events {
                let start = calendar.dateInterval(of: component, for: Date(timeIntervalSince1970: Double(e.timestamp) / 1e6))!.start
                expected[Int64((start.timeIntervalSince1970 * 1e6).rounded()), default: 0] += 1
            }
            let wanted = expected.sorted { $0.key < $1.key }.map { [SQLValue.timestamp($0.key), .int($0.value)] }
            let native = try fixture.query(
                "SELECT date_trunc('\(unit)', timestamp, 'Europe/Berlin') AS b, count(*) FROM events GROUP BY b ORDER BY b")
            let general = try fixture.query(
                "SELECT date_trunc('\(unit)', timestamp, 'Europe/Berlin') AS b, count(*) FROM events WHERE user_id IS NOT NULL GROUP BY b ORDER BY b")
            #expect(native.native && !general.native)
            #expect(native.rows == wanted, "\(unit), native")
            #expect(general.rows == wanted, "\(unit), general")
        }
        do {
            _ = try fixture.query("SELECT date_trunc('day', timestamp, 'Mars/Olympus') FROM events")
            Issue.record("an unknown zone should fail")
        } catch let error as SQLError {
            #expect(error.summary.hasPrefix("'Mars/Olympus' is not an IANA time zone name at 1:"), "\(error.summary)")
        }
    }

    @Test func expressionsAndNulls() async throws {
        let fixture = try await EventFixture(conversationEvents())
        let r = try fixture.query("""
            SELECT 7 / 2 AS half, 7 % 0 AS nothing, CASE WHEN 1 > 2 THEN 'a' ELSE 'b' END AS c, coalesce(NULL, 3) AS k,
                   nullif(2, 2) AS n, upper('abc') || lower('DEF') AS s, length('héllo') AS len, round(2.345, 2) AS r,
                   CAST('42' AS integer) + 1 AS i, DATE '2024-03-01' - INTERVAL '1 day' AS d, 'ab' LIKE 'a%' AS l, 'AB' ILIKE 'a_' AS il,
                   date_diff('day', DATE '2024-01-01', DATE '2024-03-01') AS dd, 3 BETWEEN 1 AND 2 AS bt, NULL IS NULL AS isn
            """)
        #expect(r.rows[0] == [.double(3.5), .null, .string("b"), .int(3), .null, .string("ABCdef"), .int(5), .double(2.35),
            .int(43), .timestamp(jan1 + 59 * dayMicros), .bool(true), .bool(true), .int(60), .bool(false), .bool(true)])
        let props = try fixture.query("SELECT properties.topic, properties['satisfaction'] * 2 AS s2 FROM events WHERE properties.satisfaction > 3")
        #expect(props.rows == [[.null, .int(8)]])
        let joined = try fixture.query("""
            WITH c AS (SELECT conversation_id, user_id FROM conversations)
            SELECT u.user_id, count(c.conversation_id) AS n FROM users u LEFT JOIN c ON c.user_id = u.user_id
            GROUP BY u.user_id ORDER BY u.user_id
            """)
        #expect(joined.rows == [[.string("u1"), .int(2)], [.string("u2"), .int(1)], [.string("u3"), .int(1)]])
        let sub = try fixture.query("SELECT count(*) FROM events WHERE session_id IN (SELECT conversation_id FROM conversations WHERE completed)")
        #expect(sub.rows == [[.int(6)]])
    }

    @Test(arguments: [
        ("SELECT event_name FROM", "expected a table name, found the end of the query at 1:23"),
        ("SELECT * FRM events", "expected the end of the query, found 'events' at 1:14"),
        ("SELECT count(*) FROM events WHERE", "expected an expression, found the end of the query at 1:34"),
        ("DELETE FROM events", "only SELECT queries are allowed; DELETE is not at 1:1"),
        ("SELECT * FROM sqlite_master", "no table named sqlite_master; the tables are events, conversations and users at 1:15"),
        ("SELECT * FROM read_csv('/etc/passwd')", "expected the end of the query, found '(' at 1:23"),
        ("SELECT nope FROM events", "no column named nope"),
        ("SELECT event_name, count(*) FROM events", "event_name must appear in GROUP BY or be used in an aggregate function at 1:8"),
        ("SELECT 1 + 'a'", "cannot apply + to integer and string at 1:10"),
        ("SELECT sum(event_name) FROM events", "sum needs numbers, not string at 1:12"),
        ("SELECT foo(1)", "function foo is not supported; docs/SQL.md lists the functions at 1:8"),
        ("SELECT 'abc", "unterminated string literal at 1:8"),
        ("SELECT * FROM events; DROP TABLE events", "expected the end of the query, found 'drop' at 1:23"),
        ("SELECT a FROM x UNION SELECT b FROM y", "UNION is not supported at 1:17"),
    ])
    func errorsNameTheProblem(sql: String, message: String) async throws {
        let fixture = try await EventFixture([])
        do {
            _ = try fixture.query(sql)
            Issue.record("\(sql) should fail")
        } catch let error as SQLError {
            #expect(error.summary.hasPrefix(message), "\(error.summary)")
        }
    }

    /// Found by the fuzzer: a long operator chain once built a tree deep enough to overflow
    /// the stack while binding.
    @Test func longOperatorChainsAreRefusedNotOverflowed() throws {
        for op in ["+", "*", "||", "AND", "OR"] {
            let sql = "SELECT " + Array(repeating: "1", count: 5000).joined(separator: " \(op) ")
            #expect(throws: SQLError.self) { try SQLEngine.check(sql) }
        }
        try SQLEngine.check("SELECT " + Array(repeating: "1", count: 50).joined(separator: " + "))
    }

    @Test func caretPointsAtTheProblem() throws {
        do {
            try SQLEngine.check("SELECT a,\n  b c d FROM events")
            Issue.record("should fail")
        } catch let error as SQLError {
            #expect(error.description == "expected the end of the query, found 'd' at 2:7\n  b c d FROM events\n      ^")
        }
    }

    @Test func parametersAreTypeChecked() async throws {
        let fixture = try await EventFixture(conversationEvents())
        #expect(throws: SQLError.self) { try fixture.query("SELECT count(*) FROM events WHERE date >= ?", [.string("yesterday")]) }
        #expect(throws: SQLError.self) { try fixture.query("SELECT count(*) FROM events WHERE user_id = ?", [.int(3)]) }
        #expect(throws: SQLError.self) { try fixture.query("SELECT count(*) FROM events WHERE user_id = ?", []) }
        #expect(throws: SQLError.self) { try fixture.query("SELECT count(*) FROM events", [.int(1)]) }
        let ok = try fixture.query("SELECT count(*) FROM events WHERE user_id = ? AND timestamp < ?", [.string("u1"), .string("2024-01-02")])
        #expect(ok.rows == [[.int(2)]])
    }

    @Test func limitsStopQueries() async throws {
        var events: [Event] = []
        for i in 0..<5000 { events.append(Event(name: "e\(i % 100)", timestamp: jan1 + Int64(i) * 1_000_000, receivedAt: jan1)) }
        let fixture = try await EventFixture(events, compactFirst: 2500)
        var options = SQLOptions()
        options.maxRows = 1000
        do {
            _ = try fixture.query("SELECT * FROM events", options: options)
            Issue.record("should fail")
        } catch let error as SQLError {
            #expect(error.kind == .tooManyRows)
            #expect(error.message.contains("/api/v1/analytics/export"))
        }
        options = SQLOptions()
        options.memoryBudgetBytes = 64 << 10
        #expect(throws: SQLError.self) { try fixture.query("SELECT a.event_id, b.event_id FROM events a JOIN events b ON a.event_name = b.event_name", options: options) }
        options = SQLOptions()
        options.timeoutSeconds = 0
        do {
            _ = try fixture.query("SELECT count(*) FROM events a JOIN events b ON a.event_name = b.event_name", options: options)
            Issue.record("should time out")
        } catch let error as SQLError {
            #expect(error.kind == .timeout)
        }
    }

    /// `tally query` opens the store without dictionary hash indexes; answers must not change,
    /// including for ids that only the log tail holds.
    @Test func storesOpenedWithoutDictionaryIndexesAnswerTheSame() async throws {
        var rng = SeededRandom(seed: 5)
        var events: [Event] = []
        for i in 0..<1500 {
            let t = jan1 + Int64.random(in: 0..<(5 * dayMicros), using: &rng)
            var e = Event(name: "e\(i % 4)", timestamp: t, receivedAt: t)
            e.userId = "u\(Int.random(in: 0..<(i < 1000 ? 40 : 60), using: &rng))"  // u40… only in the tail
            e.sessionId = "s\(i % 70)"
            events.append(e)
        }
        let fixture = try await EventFixture(events, compactFirst: 1000)
        let plain = try ColumnStore.open(directory: fixture.project.directory.path + "/blocks", indexDictionaries: false)
        let plainSnapshot = try QuerySnapshot(store: plain, log: fixture.project.log)
        for sql in [
            "SELECT user_id, session_id, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT count(DISTINCT user_id), count(DISTINCT session_id) FROM events WHERE user_id >= 'u4'",
        ] {
            let a = try fixture.query(sql)
            let b = try SQLEngine.execute(sql, on: plainSnapshot)
            #expect(a.rows == b.rows, "\(sql)")
        }
    }
}

