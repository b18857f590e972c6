import ColumnStore
import EventLog
import Foundation
import GRDB
import Logging
import QueryEngine
import SQL
import TallyTestSupport

// The two sides of the differential test: the same random events in a Tally project (part
// compacted into blocks, part left in the log tail) and in an in-memory SQLite table, and
// the comparison of their answers.

let diffMicrosPerDay: Int64 = 86_400_000_000
/// 2024-01-01, days since the Unix epoch.
let diffFirstDay: Int32 = 19_723
let diffDayCount: Int32 = 10

/// The values the random events draw from. The generator draws its literals from the same
/// sets (plus a few values that occur nowhere) so that predicates select something.
enum DiffVocabulary {
    static let eventNames = ["signup", "login", "message_sent", "purchase", "page_view"]
    /// The empty string is a value, not an absence.
    static let plans = ["free", "pro", "team", "Enterprise", "pro_plus", ""]
    /// `%`, `_` and `'` appear in the data on purpose: LIKE wildcards and quoting.
    static let channels = ["web", "ios", "android", "slack", "e%mail", "o'reilly", "Web", "sms_2"]
    static let bots = ["bot_1", "bot_2", "bot_3"]
    static let users = 50
    static let anonymous = 30
    static let sessions = 25
}

/// Random events over `diffDayCount` days from 2024-01-01. Every property key keeps one type:
/// `plan` string (sometimes an explicit JSON null or empty), `amount` int (zero and negative
/// too), `score` double (multiples of 0.25, so sums are exact in any order), `channel`
/// string, `active` bool. Each is absent from a good share of events. Some events fall
/// exactly on midnight or on the last microsecond of a day, some carry a client event id,
/// and events from `tailFrom` on (those left in the log tail) bring a few user, anonymous
/// and session ids that no block has.
func randomDifferentialEvents(_ rng: inout SeededRandom, count: Int, tailFrom: Int) -> [Event] {
    (0..<count).map { i in
        var ts: Int64
        let day = Int64(diffFirstDay) + Int64.random(in: 0..<Int64(diffDayCount), using: &rng)
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<3: ts = day * diffMicrosPerDay
        case 3..<6: ts = (day + 1) * diffMicrosPerDay - 1
        case 6..<50: ts = day * diffMicrosPerDay + Int64.random(in: 0..<86_400, using: &rng) * 1_000_000  // whole seconds: ties
        default: ts = day * diffMicrosPerDay + Int64.random(in: 0..<diffMicrosPerDay, using: &rng)
        }
        var e = Event(
            name: DiffVocabulary.eventNames.randomElement(using: &rng)!,
            timestamp: ts,
            receivedAt: ts + Int64.random(in: 0...90_000_000, using: &rng)
        )
        let tailOnly = i >= tailFrom && Int.random(in: 0..<10, using: &rng) == 0
        if Int.random(in: 0..<100, using: &rng) < 85 {
            e.userId =
                "u\(tailOnly ? Int.random(in: DiffVocabulary.users..<(DiffVocabulary.users + 4), using: &rng) : Int.random(in: 0..<DiffVocabulary.users, using: &rng))"
        }
        if Int.random(in: 0..<100, using: &rng) < 30 || tailOnly {
            e.anonymousId =
                "anon\(tailOnly ? Int.random(in: DiffVocabulary.anonymous..<(DiffVocabulary.anonymous + 2), using: &rng) : Int.random(in: 0..<DiffVocabulary.anonymous, using: &rng))"
        }
        if Int.random(in: 0..<100, using: &rng) < 60 || tailOnly {
            e.sessionId =
                "s\(tailOnly ? Int.random(in: DiffVocabulary.sessions..<(DiffVocabulary.sessions + 2), using: &rng) : Int.random(in: 0..<DiffVocabulary.sessions, using: &rng))"
        }
        if Int.random(in: 0..<100, using: &rng) < 8 { e.clientEventId = "order-\(i)" }
        if Int.random(in: 0..<100, using: &rng) < 75 { e.botId = DiffVocabulary.bots.randomElement(using: &rng)! }
        var properties: [Property] = []
        let roll = Int.random(in: 0..<100, using: &rng)
        if roll < 70 {
            properties.append(Property("plan", .string(DiffVocabulary.plans.randomElement(using: &rng)!)))
        } else if roll < 73 {
            properties.append(Property("plan", .null))
        }
        if Int.random(in: 0..<100, using: &rng) < 65 {
            let amount = Int.random(in: 0..<10, using: &rng) == 0 ? 0 : Int64.random(in: -500...500, using: &rng)
            properties.append(Property("amount", .int(amount)))
        }
        if Int.random(in: 0..<100, using: &rng) < 60 {
            properties.append(Property("score", .double(Double(Int.random(in: -400...400, using: &rng)) / 4)))
        }
        if Int.random(in: 0..<100, using: &rng) < 70 {
            properties.append(Property("channel", .string(DiffVocabulary.channels.randomElement(using: &rng)!)))
        }
        if Int.random(in: 0..<100, using: &rng) < 50 {
            properties.append(Property("active", .bool(Bool.random(using: &rng))))
        }
        properties.shuffle(using: &rng)
        e.properties = properties
        return e
    }
}

/// The SQLite side: one table with the events' columns and one column per property key.
func makeSQLiteDatabase(_ events: [Event]) throws -> DatabaseQueue {
    let db = try DatabaseQueue()
    try db.inDatabase { db in
        try db.execute(sql: "PRAGMA case_sensitive_like = ON")
        try db.execute(
            sql: """
                CREATE TABLE events(
                    event_id TEXT, event_name TEXT, user_id TEXT, anonymous_id TEXT, session_id TEXT,
                    bot_id TEXT, ts INTEGER, day INTEGER, received INTEGER,
                    p_plan TEXT, p_amount INTEGER, p_score REAL, p_channel TEXT, p_active INTEGER)
                """
        )
        let insert = try db.makeStatement(sql: "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for e in events {
            func property(_ key: String) -> PropertyValue? { e.properties.first { $0.key == key }?.value }
            var plan: String?
            if case .string(let s)? = property("plan") { plan = s }
            var amount: Int64?
            if case .int(let n)? = property("amount") { amount = n }
            var score: Double?
            if case .double(let d)? = property("score") { score = d }
            var channel: String?
            if case .string(let s)? = property("channel") { channel = s }
            var active: Int64?
            if case .bool(let b)? = property("active") { active = b ? 1 : 0 }
            let day = e.timestamp / diffMicrosPerDay  // all timestamps are after 1970: no floor needed
            try insert.execute(arguments: [
                e.eventId, e.name, e.userId, e.anonymousId, e.sessionId, e.botId, e.timestamp, day,
                e.receivedAt, plan, amount, score, channel, active,
            ])
        }
    }
    return db
}

// MARK: - Results

/// One result value, normalised so that both engines' answers compare: booleans are 0/1,
/// timestamps are µs and dates are days since the epoch.
enum DiffCell: Equatable, CustomStringConvertible {
    case null
    case int(Int64)
    case double(Double)
    case string(String)
    /// Anything the comparison does not expect (an interval, a blob): never equal.
    case other(String)

    init(_ value: SQLValue) {
        switch value {
        case .null: self = .null
        case .int(let n): self = .int(n)
        case .double(let d): self = .double(d)
        case .bool(let b): self = .int(b ? 1 : 0)
        case .string(let s): self = .string(s)
        case .timestamp(let t): self = .int(t)
        case .date(let d): self = .int(Int64(d))
        case .interval(let months, let micros): self = .other("interval(\(months) months, \(micros) µs)")
        }
    }

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let n): self = .int(n)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .blob(let data): self = .other("blob(\(data.count) bytes)")
        }
    }

    var description: String {
        switch self {
        case .null: "NULL"
        case .int(let n): "\(n)"
        case .double(let d): "\(d)"
        case .string(let s): "'\(s)'"
        case .other(let s): "<\(s)>"
        }
    }

    var number: Double? {
        switch self {
        case .int(let n): Double(n)
        case .double(let d): d
        default: nil
        }
    }

    /// Numbers compare by value with a relative tolerance of 1e-9 (ints and doubles alike).
    func matches(_ other: DiffCell) -> Bool {
        switch (self, other) {
        case (.null, .null): return true
        case (.int(let a), .int(let b)): return a == b
        case (.string(let a), .string(let b)): return a.utf8.elementsEqual(b.utf8)
        default:
            guard let a = number, let b = other.number else { return false }
            if a == b { return true }
            return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-3)
        }
    }

    static func quantized(_ x: Double) -> Double {
        guard x != 0, x.isFinite else { return x }
        let scale = pow(10, 8 - floor(log10(abs(x))))
        return (x * scale).rounded() / scale
    }
}

struct DiffAnswer {
    var columns: [String]
    var rows: [[DiffCell]]
}

/// Tally's error for a query: an SQLError's message, or any other error described.
struct TallyFailure: Error {
    var message: String
}

func runTally(_ sql: String, parameters: [ParameterValue] = [], on snapshot: QuerySnapshot) -> Result<DiffAnswer, TallyFailure> {
    let values: [SQLValue] = parameters.map {
        switch $0 {
        case .int(let n): .int(n)
        case .double(let d): .double(d)
        case .string(let s): .string(s)
        case .date(let d): .date(d)
        case .timestamp(let t): .timestamp(t)
        }
    }
    do {
        let result = try SQLEngine.execute(sql, parameters: values, on: snapshot)
        // Every value has its column's declared type.
        for (i, row) in result.rows.enumerated() {
            for (j, value) in row.enumerated() where j < result.columns.count && !value.isNull && value.type != result.columns[j].type {
                return .failure(
                    TallyFailure(
                        message:
                            "column \(result.columns[j].name) is declared \(result.columns[j].type) but row \(i) holds \(value.type) \(value)"
                    )
                )
            }
            if row.count != result.columns.count {
                return .failure(TallyFailure(message: "row \(i) has \(row.count) values for \(result.columns.count) columns"))
            }
        }
        return .success(DiffAnswer(columns: result.columns.map(\.name), rows: result.rows.map { $0.map(DiffCell.init) }))
    } catch let error as SQLError {
        return .failure(TallyFailure(message: error.description))
    } catch {
        return .failure(TallyFailure(message: "not an SQLError: \(error)"))
    }
}

/// An error from SQLite means the generator rendered something SQLite does not take.
struct SQLiteFailure: Error, CustomStringConvertible {
    var description: String
}

func runSQLite(_ sql: String, parameters: [ParameterValue] = [], on db: DatabaseQueue) -> Result<DiffAnswer, SQLiteFailure> {
    let values: [DatabaseValue] = parameters.map {
        switch $0 {
        case .int(let n): n.databaseValue
        case .double(let d): d.databaseValue
        case .string(let s): s.databaseValue
        case .date(let d): Int64(d).databaseValue
        case .timestamp(let t): t.databaseValue
        }
    }
    do {
        return .success(
            try db.inDatabase { db in
                let statement = try db.makeStatement(sql: sql)
                let rows = try Row.fetchAll(statement, arguments: StatementArguments(values)).map { row in
                    Array(row.databaseValues.map { DiffCell($0) })
                }
                return DiffAnswer(columns: statement.columnNames, rows: rows)
            }
        )
    } catch {
        return .failure(SQLiteFailure(description: "\(error)"))
    }
}

/// How many rows a FROM clause yields, up to `limit + 1` (counting stops there).
func sqliteCount(_ fromClause: String, limit: Int, on db: DatabaseQueue) -> Int? {
    try? db.inDatabase { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM \(fromClause) LIMIT \(limit + 1))") }
}

/// A row as text that sorts rows into a canonical order: numbers by value (integral ones as
/// integers, so that 2 and 2.0 agree; others rounded to 9 significant digits), strings as
/// they are. Sorting these is much cheaper than comparing cells one by one.
func rowSignature(_ row: [DiffCell]) -> String {
    var text = ""
    for cell in row {
        switch cell {
        case .null: text += "\u{1}N"
        case .int(let n): text += "\u{1}#\(n)"
        case .double(let d):
            if let n = Int64(exactly: d) { text += "\u{1}#\(n)" } else { text += "\u{1}#\(DiffCell.quantized(d))" }
        case .string(let s): text += "\u{1}S" + s
        case .other(let s): text += "\u{1}O" + s
        }
    }
    return text
}

func rowsSorted(_ rows: [[DiffCell]]) -> [[DiffCell]] {
    let keys = rows.map(rowSignature)
    return rows.indices.sorted { keys[$0] < keys[$1] }.map { rows[$0] }
}

/// For a LIMIT without an order: nil when Tally has the right number of rows, each of them
/// among SQLite's (all rows, no LIMIT), otherwise what is wrong.
func limitDifference(tally: DiffAnswer, sqlite: DiffAnswer, limit: Int, offset: Int) -> String? {
    let expected = max(0, min(limit, sqlite.rows.count - offset))
    if tally.rows.count != expected {
        return
            "LIMIT \(limit) OFFSET \(offset) without an order: Tally has \(tally.rows.count) rows, SQLite \(sqlite.rows.count) before the limit"
    }
    var available: [String: Int] = [:]
    for row in sqlite.rows { available[rowSignature(row), default: 0] += 1 }
    for row in tally.rows {
        let key = rowSignature(row)
        guard let n = available[key], n > 0 else {
            return "LIMIT without an order: Tally's row (" + row.map(\.description).joined(separator: ", ") + ") is not among SQLite's rows"
        }
        available[key] = n - 1
    }
    return nil
}

/// Nil when the answers agree, otherwise what differs and the first row that differs.
/// `ordered`: the query's ORDER BY fixes the order of the rows, so they compare in order;
/// otherwise as multisets.
func answerDifference(tally: DiffAnswer, sqlite: DiffAnswer, ordered: Bool, expectedColumns: [String]?) -> (String, row: Int?)? {
    if let expectedColumns, tally.columns != expectedColumns {
        return ("column names: Tally \(tally.columns), expected \(expectedColumns)", nil)
    }
    if !ordered && tally.rows.count != sqlite.rows.count {
        // Name rows that one side has more often than the other.
        var counts: [String: (Int, [DiffCell])] = [:]
        for row in tally.rows { counts[rowSignature(row), default: (0, row)].0 += 1 }
        for row in sqlite.rows { counts[rowSignature(row), default: (0, row)].0 -= 1 }
        let extra = counts.values.filter { $0.0 > 0 }.map(\.1)
        let missing = counts.values.filter { $0.0 < 0 }.map(\.1)
        func some(_ rows: [[DiffCell]]) -> String {
            rowsSorted(rows).prefix(3).map { "(" + $0.map(\.description).joined(separator: ", ") + ")" }.joined(separator: ", ")
                + (rows.count > 3 ? ", …" : "")
        }
        var text = "row count: Tally \(tally.rows.count), SQLite \(sqlite.rows.count)"
        if !missing.isEmpty { text += "; only SQLite has \(some(missing))" }
        if !extra.isEmpty { text += "; only Tally has \(some(extra))" }
        return (text, nil)
    }
    let (a, b) = ordered ? (tally.rows, sqlite.rows) : (rowsSorted(tally.rows), rowsSorted(sqlite.rows))
    for (i, (x, y)) in zip(a, b).enumerated() {
        if x.count != y.count { return ("row \(i) width: Tally \(x.count), SQLite \(y.count)", i) }
        for (j, (u, v)) in zip(x, y).enumerated() where !u.matches(v) {
            return ("\(ordered ? "row" : "sorted row") \(i), column \(j): Tally \(u), SQLite \(v)", i)
        }
    }
    if a.count != b.count {
        return ("row count: Tally \(a.count), SQLite \(b.count)", min(a.count, b.count))
    }
    return nil
}

func formatRows(_ rows: [[DiffCell]], from: Int = 0, limit: Int = 12) -> String {
    var lines = rows.dropFirst(from).prefix(limit).map { "    (" + $0.map(\.description).joined(separator: ", ") + ")" }
    if rows.count > from + limit { lines.append("    … \(rows.count - from - limit) more") }
    if rows.isEmpty { lines.append("    (no rows)") }
    return lines.joined(separator: "\n")
}
