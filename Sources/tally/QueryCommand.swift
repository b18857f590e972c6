import ArgumentParser
import ColumnStore
import EventLog
import Foundation
import Logging
import QueryEngine
import SQL

/// `tally query "SQL"`: the dialect of POST /query, run on a data directory.
struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a SQL query on a project's events (the dialect of POST /api/v1/analytics/query).",
        discussion: """
            Each --param binds the next ? placeholder. A parameter that reads as a JSON scalar \
            (42, 1.5, true, null, "quoted") has that type; anything else is a string, so \
            --param 2024-01-01 and --param '"123"' are both strings. \
            The server must not be running on the same data directory; query it over HTTP instead.
            """)

    @OptionGroup var target: ProjectOption
    @Argument(help: "The SQL query.") var sql: String
    @Option(name: .customLong("param"), help: "A value for the next ? placeholder (repeatable).") var parameters: [String] = []
    @Option(help: "Output: table, json, csv or ndjson.") var format = "table"
    @Option(help: "Cancel the query after this many seconds.") var timeout = 30.0
    @Option(help: "Refuse results with more rows than this.") var maxRows = 100_000

    func run() throws {
        guard ["table", "json", "csv", "ndjson"].contains(format) else {
            throw CLIError("--format: \"\(format)\" is not one of table, json, csv, ndjson")
        }
        guard timeout > 0 else { throw CLIError("--timeout: must be above 0 seconds") }
        try target.requireProject()
        var logger = Logger(label: "tally.query")
        logger.logLevel = .warning
        // The log first: its lock proves no server is writing this project right now.
        let log: EventLog?
        if FileIO.isDirectory(target.logDirectory) {
            do {
                // A query never appends, so the idempotency index may load on the side.
                log = try EventLog.open(directory: target.logDirectory, logger: logger, loadIdempotencyInBackground: true)
            } catch let error as EventLogError {
                if case .locked = error {
                    throw CLIError("a server is running on \(target.data.path); query it with POST /api/v1/analytics/query, or stop it first")
                }
                throw error
            }
        } else {
            log = nil
        }
        defer { log?.close() }
        // Ids only need mapping to strings here: skip hashing millions of dictionary entries.
        let store = try ColumnStore.open(directory: target.blockDirectory, logger: logger, indexDictionaries: false)
        let snapshot = try QuerySnapshot(store: store, log: log)
        var options = SQLOptions()
        options.timeoutSeconds = timeout
        options.maxRows = maxRows
        let result: SQLResult
        do {
            result = try SQLEngine.execute(sql, parameters: parameters.map(Self.parameter), on: snapshot, options: options)
        } catch let error as SQLError {
            throw CLIError(error.description)
        }
        let out = OutputBuffer(capacity: 1 << 16)
        switch format {
        case "json":
            let w = JSONWriter(out)
            w.raw("[")
            for (r, row) in result.rows.enumerated() {
                w.raw(r == 0 ? "\n" : ",\n")
                writeObject(row, result.columns, w)
            }
            w.raw(result.rows.isEmpty ? "]\n" : "\n]\n")
        case "ndjson":
            let w = JSONWriter(out)
            for row in result.rows {
                writeObject(row, result.columns, w)
                w.raw("\n")
                if out.count > 1 << 19 { flush(out) }
            }
        case "csv":
            out.append(result.columns.map { Self.csvField($0.name) }.joined(separator: ",") + "\n")
            for row in result.rows {
                out.append(row.map { $0.isNull ? "" : Self.csvField($0.description) }.joined(separator: ",") + "\n")
                if out.count > 1 << 19 { flush(out) }
            }
        default:
            out.append(Self.table(result))
        }
        flush(out)
    }

    func writeObject(_ row: [SQLValue], _ columns: [SQLColumn], _ w: JSONWriter) {
        w.raw("{")
        for (c, value) in row.enumerated() {
            if c > 0 { w.raw(",") }
            w.key(columns[c].name)
            value.write(to: w)
        }
        w.raw("}")
    }

    static func parameter(_ text: String) -> SQLValue {
        switch text {
        case "null": return .null
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: break
        }
        if let n = Int64(text) { return .int(n) }
        if let d = Double(text), d.isFinite, text.first.map({ $0.isNumber || $0 == "-" }) == true { return .double(d) }
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\""),
            let decoded = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed) as? String
        {
            return .string(decoded)
        }
        return .string(text)
    }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Columns padded to their widest value; numbers right-aligned; a row count below.
    static func table(_ result: SQLResult) -> String {
        let header = result.columns.map(\.name)
        let cells = result.rows.map { row in row.map { $0.description } }
        var widths = header.map(\.count)
        for row in cells { for (c, cell) in row.enumerated() { widths[c] = max(widths[c], cell.count) } }
        func line(_ values: [String], numeric: [Bool]) -> String {
            values.enumerated().map { c, v in
                let pad = String(repeating: " ", count: widths[c] - v.count)
                return numeric[c] ? pad + v : v + pad
            }.joined(separator: " | ")
        }
        let numeric = result.columns.map { $0.type == .integer || $0.type == .double }
        var text = line(header, numeric: Array(repeating: false, count: header.count)) + "\n"
        text += widths.map { String(repeating: "-", count: $0) }.joined(separator: "-+-") + "\n"
        for row in cells { text += line(row, numeric: numeric) + "\n" }
        text += "(\(result.rows.count) row\(result.rows.count == 1 ? "" : "s"))\n"
        return text
    }
}
