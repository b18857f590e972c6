import AnalyticsServer
import ArgumentParser
import ColumnStore
import EventLog
import Foundation
import Logging
import QueryEngine
import SQL

/// `tally bench`: the standard query suite on a recorded NDJSON file, optionally beside DuckDB.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the standard analytics suite on a recording and print cold and warm times.",
        discussion: """
            The recording is imported and compacted into --dir once (reused while the file is unchanged). \
            With --compare duckdb, tools/duckdb-bench loads the same NDJSON into DuckDB (pip install duckdb), \
            runs equivalent SQL, and the table shows both and whether the answers agree.
            """)

    @Option(help: "NDJSON recording (for example from tools/gen-events).") var data: String
    @Option(help: "Working directory for Tally's data and DuckDB's database (default /tmp/tally-bench-<name>).") var dir: String?
    @Option(help: "Compare with another engine: duckdb.") var compare: String?
    @Option(help: "Warm runs per query (the median is shown).") var runs = 3
    @Option(help: "Only the queries whose name contains this.") var only: String?

    struct Case {
        let name: String
        let run: (QuerySnapshot) throws -> (rows: [[Double]], keys: [[String]], scanned: Int)
    }

    func run() throws {
        guard FileIO.exists(data) else { throw CLIError("--data: \(data): no such file") }
        guard runs >= 1 else { throw CLIError("--runs must be at least 1") }
        if let compare, compare != "duckdb" { throw CLIError("--compare: only duckdb is supported") }
        let name = (data as NSString).lastPathComponent
        let size = FileIO.fileSize(path: data) ?? 0
        let work = dir ?? "/tmp/tally-bench-\(name)-\(size)"
        let dataDir = work + "/tally"
        var logger = Logger(label: "tally.bench")
        logger.logLevel = .warning
        let logDirectory = ProjectLogs.logDirectory(dataDirectory: dataDir, project: "default")
        let blockDirectory = ProjectLogs.blockDirectory(dataDirectory: dataDir, project: "default")
        if !FileIO.exists(work + "/.loaded") {
            try? FileManager.default.removeItem(atPath: work)
            try FileIO.makeDirectories(dataDir)
            print("importing and compacting \(data) into \(dataDir) …")
            let log = try EventLog.open(directory: logDirectory, logger: logger)
            let imported = try NDJSONImporter(codec: .lz4, codecLevel: nil, workers: nil).importFile(
                data, into: log, strict: false, onBadLine: { _ in }, onProgress: { _ in })
            let store = try ColumnStore.open(directory: blockDirectory, logger: logger)
            var options = CompactionOptions()
            options.coldAfterDays = 0
            while try store.compact(log: log, options: options) != nil {}
            try log.waitForSegmentRemovals()
            log.close()
            print("\(imported.events) events imported and compacted")
            try FileIO.writeAtomically(Array("ok\n".utf8), to: work + "/.loaded")
        }
        let log = try EventLog.open(directory: logDirectory, logger: logger)
        defer { log.close() }
        let store = try ColumnStore.open(directory: blockDirectory, logger: logger)
        let manifest = store.manifest
        guard let first = manifest.blocks.map(\.minTimestamp).min(), let last = manifest.blocks.map(\.maxTimestamp).max() else {
            throw CLIError("\(data) holds no events")
        }
        let day: Int64 = 86_400_000_000
        let end = (last / day + 1) * day
        let monthEnd = end
        let monthStart = max(first / day * day, monthEnd - 30 * day)
        let lastDayStart = last - day + 1
        let user = try mostActiveUser(store)
        let channel = "web"
        let term = "refund"
        let params: [String: Any] = [
            "month_start": monthStart, "month_end": monthEnd, "last_day_start": lastDayStart, "end": last + 1, "user_id": user,
            "channel": channel, "term": term,
        ]

        func aggregate(_ q: AggregateQuery, _ s: QuerySnapshot, numericKeys: Bool = false) throws -> ([[Double]], [[String]], Int) {
            let r = try AggregationEngine.run(q, on: s)
            return (r.rows.map(\.values), r.rows.map(\.keys), r.rowsScanned)
        }
        /// A SQL result as the table's keys (strings; dates as their midnight in µs) and values.
        func sqlRows(_ sql: String, _ parameters: [SQLValue], _ s: QuerySnapshot) throws -> ([[Double]], [[String]], Int) {
            let r = try SQLEngine.execute(sql, parameters: parameters, on: s)
            var keys: [[String]] = []
            var values: [[Double]] = []
            for row in r.rows {
                var k: [String] = []
                var v: [Double] = []
                for value in row {
                    switch value {
                    case .int(let n): v.append(Double(n))
                    case .double(let d): v.append(d)
                    case .date(let d): k.append(String(Int64(d) * day))
                    default: k.append(value.description)
                    }
                }
                keys.append(k)
                values.append(v)
            }
            return (values, keys, r.rowsScanned)
        }
        func rowsIn(_ s: QuerySnapshot, _ start: Int64, _ end: Int64) -> Int {
            s.blocks.filter { $0.footer.maxTimestamp >= start && $0.footer.minTimestamp < end }.reduce(0) { $0 + $1.rows }
        }
        let cases: [Case] = [
            Case(name: "events per day") { s in try aggregate(AggregateQuery(groupBy: [.period(.day)], aggregate: .count), s) },
            Case(name: "distinct users per event") { s in try aggregate(AggregateQuery(groupBy: [.eventName], aggregate: .distinctPeople), s) },
            Case(name: "3-step funnel, 24 h, one month") { s in
                var q = FunnelQuery(
                    steps: [
                        FunnelStep(name: "start", event: "conversation_started"), FunnelStep(name: "message", event: "message_received"),
                        FunnelStep(name: "end", event: "conversation_ended"),
                    ], start: monthStart, end: monthEnd)
                q.window = day
                let r = try FunnelEngine.run(q, on: s)
                return ([r.users.map(Double.init)], [[]], rowsIn(s, monthStart, monthEnd))
            },
            Case(name: "weekly retention") { s in
                let cohorts = try RetentionEngine.run(CohortQuery(unit: .week, start: monthStart, end: monthEnd), on: s)
                var rows: [[Double]] = []
                var keys: [[String]] = []
                for c in cohorts where c.users > 0 {
                    for (k, share) in c.retention.enumerated() {
                        let n = (share * Double(c.users)).rounded()
                        if n > 0 {
                            rows.append([n])
                            keys.append([String(c.start), String(k)])
                        }
                    }
                }
                return (rows, keys, s.blocks.reduce(0) { $0 + $1.rows })
            },
            Case(name: "avg response time by bot, one channel") { s in
                var q = AggregateQuery(eventName: "message_sent", groupBy: [.botId], aggregate: .average("response_time_ms"))
                q.filters = [PropertyFilter(property: "channel", op: .equals, value: .string(channel))]
                return try aggregate(q, s)
            },
            Case(name: "top 10 topics") { s in
                let r = try AggregationEngine.run(AggregateQuery(groupBy: [.property("topic")], aggregate: .count), on: s)
                let total = r.rows.reduce(0) { $0 + $1.values[0] }
                let top = r.rows.sorted { $0.values[0] != $1.values[0] ? $0.values[0] > $1.values[0] : $0.keys[0] < $1.keys[0] }.prefix(10)
                return (top.map { [$0.values[0], ($0.values[0] * 100 / total * 100).rounded() / 100] }, top.map(\.keys), r.rowsScanned)
            },
            Case(name: "one user's analytics") { s in
                guard let r = try UserEngine.run(userId: user, start: .min, end: .max, reference: end, on: s) else { return ([], [], 0) }
                return ([[Double(r.sessions), Double(r.messages), Double(r.lastActive ?? 0)]], [[]], 0)
            },
            Case(name: "last 24 h by hour") { s in
                try aggregate(AggregateQuery(start: lastDayStart, end: last + 1, groupBy: [.hour], aggregate: .count), s)
            },
            Case(name: "p50/p95/p99 response time by channel") { s in
                try aggregate(
                    AggregateQuery(eventName: "message_sent", groupBy: [.property("channel")], aggregate: .percentiles("response_time_ms", [0.5, 0.95, 0.99])), s)
            },
            Case(name: "substring search on query") { s in
                var q = AggregateQuery(groupBy: [], aggregate: .count)
                q.filters = [PropertyFilter(property: "query", op: .contains, value: .string(term))]
                let r = try AggregationEngine.run(q, on: s)
                return ([[r.rows.first?.values[0] ?? 0]], [[]], r.rowsScanned)
            },
            // Questions through the SQL dialect. "SQL: events per day" asks what "events per
            // day" asks natively, so the two rows give the planner's overhead.
            Case(name: "SQL: events per day") { s in
                try sqlRows("SELECT date, count(*) FROM events GROUP BY date ORDER BY date", [], s)
            },
            Case(name: "SQL: events by name") { s in
                try sqlRows("SELECT event_name, count(*) FROM events GROUP BY 1 ORDER BY 1", [], s)
            },
            Case(name: "SQL: distinct users per day") { s in
                try sqlRows(
                    "SELECT date, count(DISTINCT user_id) FROM events WHERE timestamp >= ? GROUP BY date ORDER BY date", [.timestamp(monthStart)], s)
            },
        ].filter { only == nil || $0.name.contains(only!) }

        var duck: [String: Any] = [:]
        if compare == "duckdb" {
            let paramText = String(decoding: try JSONSerialization.data(withJSONObject: params), as: UTF8.self)
            print("running DuckDB (tools/duckdb-bench; the first run loads the NDJSON) …")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", toolPath("duckdb-bench"), "--data", data, "--db", work + "/duckdb.db", "--params", paramText, "--runs", String(runs)]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0, let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any],
                let queries = object["queries"] as? [String: Any]
            else { throw CLIError("tools/duckdb-bench failed (exit \(process.terminationStatus)); is duckdb installed? pip install duckdb") }
            duck = queries
        }

        var table: [[String]] = [["query", "cold ms", "warm ms", "rows scanned", "rows/s"] + (compare == nil ? [] : ["duckdb cold", "duckdb warm", "answers"])]
        var disagreements = 0
        for c in cases {
            var times: [Double] = []
            var result: (rows: [[Double]], keys: [[String]], scanned: Int) = ([], [], 0)
            for _ in 0...runs {
                let started = monotonicNanos()
                let snapshot = try QuerySnapshot(store: store, log: log)
                result = try c.run(snapshot)
                times.append(Double(monotonicNanos() - started) / 1e6)
            }
            let warm = times.dropFirst().sorted()[runs / 2]
            var line = [c.name, format1(times[0]), format1(warm), String(result.scanned),
                        result.scanned == 0 ? "-" : String(Int(Double(result.scanned) / (warm / 1000)))]
            if compare != nil {
                if let d = duck[c.name] as? [String: Any], let rows = d["rows"] as? [[Any]] {
                    let agree = answersAgree(tally: result, duckdb: rows)
                    if !agree { disagreements += 1 }
                    line += [format1(d["cold_ms"] as? Double ?? 0), format1(d["warm_ms"] as? Double ?? 0), agree ? "agree" : "DIFFER"]
                } else {
                    line += ["-", "-", "-"]
                }
            }
            table.append(line)
        }
        let widths = (0..<table[0].count).map { col in table.map { $0[col].count }.max()! }
        for (i, row) in table.enumerated() {
            print(row.enumerated().map { j, cell in
                j == 0 ? cell.padding(toLength: widths[j], withPad: " ", startingAt: 0) : String(repeating: " ", count: widths[j] - cell.count) + cell
            }.joined(separator: "  "))
            if i == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        print("\n\(manifest.rows) events in \(manifest.blocks.count) blocks; month = \(Timestamp.format(monthStart)) to \(Timestamp.format(monthEnd)); user \(user); warm = median of \(runs)")
        if disagreements > 0 {
            printError("\(disagreements) answer(s) differ from DuckDB's")
            throw ExitCode(1)
        }
    }

    /// The user with the most events in the newest block: a person with real history.
    func mostActiveUser(_ store: ColumnStore) throws -> String {
        let snapshot = store.snapshot()
        guard let block = snapshot.blocks.max(by: { $0.footer.day < $1.footer.day }),
            let column = try block.builtin("user_id"), case .ints(let ids) = column.values
        else { throw CLIError("no user ids in the data") }
        var counts: [Int64: Int] = [:]
        for r in 0..<block.rows where column.isPresent(r) { counts[ids[r], default: 0] += 1 }
        let id = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }!.key
        return store.withDictionaries { $0.users.string(Int(id)) }
    }

    /// Tally's rows (keys then values) against DuckDB's: same count, keys equal, numbers within
    /// a relative 1e-6.
    func answersAgree(tally: (rows: [[Double]], keys: [[String]], scanned: Int), duckdb: [[Any]]) -> Bool {
        guard tally.rows.count == duckdb.count else { return false }
        func flatten(_ v: Any) -> [Any] { (v as? [Any])?.flatMap(flatten) ?? [v] }
        for (i, d) in duckdb.enumerated() {
            let expected: [Any] = tally.keys[i].map { $0 as Any } + tally.rows[i].map { $0 as Any }
            let actual = d.flatMap(flatten)
            guard expected.count == actual.count else { return false }
            for (e, a) in zip(expected, actual) {
                if let es = e as? String, Double(es) == nil {
                    guard (a as? String) == es else { return false }
                } else {
                    let ev = (e as? Double) ?? Double(e as? String ?? "") ?? .nan
                    let av = (a as? Double) ?? (a as? Int).map(Double.init) ?? (a as? NSNumber)?.doubleValue ?? .nan
                    guard abs(ev - av) <= 1e-6 * max(1, abs(av)) else { return false }
                }
            }
        }
        return true
    }

    /// tools/<name> next to the repository the binary was built in, or in the current directory.
    func toolPath(_ name: String) -> String {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = binary.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("tools/" + name).path
            if FileIO.exists(candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "tools/" + name
    }
}
