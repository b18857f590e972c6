import EventLog
import Foundation
import Hummingbird
import NIOCore
import QueryEngine
import SQL

/// Limits of POST /query, configurable per server.
public struct SQLSettings: Sendable {
    /// Used when the request does not say.
    public var defaultTimeoutSeconds = 30.0
    /// The most a request may ask for.
    public var maxTimeoutSeconds = 300.0
    public var maxRows = 100_000
    public var memoryBudgetBytes = 1 << 30

    public init() {}
}

/// POST /query: the restricted SQL dialect over the caller's project, with bound `?`
/// parameters and a timeout that cancels the scan.
extension TallyServer {
    struct SQLRequest: Sendable {
        var sql: String
        var parameters: [SQLValue]
        var options: SQLOptions
    }

    static let maxSQLBytes = 100_000

    func query(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let settings = configuration.sql
        let started = ContinuousClock.now
        // SQL keeps its own deadline: the request's timeout_seconds.
        return try await answer(
            request, deadline: false,
            parse: {
                var parsed = try Self.parseSQLRequest(try await Self.jsonObject($0), settings)
                parsed.options.startedAt = started
                return parsed
            },
            run: { request, snapshot in
                do {
                    return try SQLEngine.execute(request.sql, parameters: request.parameters, on: snapshot, options: request.options)
                } catch let error as SQLError {
                    throw Self.apiError(error)
                }
            }
        ) { result, _, _, w in
            w.raw(#"{"results":["#)
            for (r, row) in result.rows.enumerated() {
                if r > 0 { w.raw(",") }
                w.raw("{")
                for (c, value) in row.enumerated() {
                    if c > 0 { w.raw(",") }
                    w.key(result.columns[c].name)
                    value.write(to: w)
                }
                w.raw("}")
            }
            let elapsed = ContinuousClock.now - started
            w.raw(#"],"execution_time_ms":"#)
            w.int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
            w.raw(#","rows_returned":"#)
            w.int(Int64(result.rows.count))
            w.raw(#","columns":["#)
            for (c, column) in result.columns.enumerated() {
                if c > 0 { w.raw(",") }
                w.raw(#"{"name":"#)
                w.string(column.name)
                w.raw(#","type":"#)
                w.string(column.type.rawValue)
                w.raw("}")
            }
            w.raw("]")
        }
    }

    static func parseSQLRequest(_ body: [String: Any], _ settings: SQLSettings) throws -> SQLRequest {
        guard let raw = body["query"] else { throw invalid("query", "required") }
        guard let sql = raw as? String, !sql.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw invalid("query", "must be a non-empty string of SQL")
        }
        guard sql.utf8.count <= maxSQLBytes else { throw invalid("query", "longer than \(maxSQLBytes) bytes") }
        var parameters: [SQLValue] = []
        if let rawParameters = body["parameters"], !(rawParameters is NSNull) {
            guard let list = rawParameters as? [Any] else { throw invalid("parameters", "must be an array") }
            for (i, p) in list.enumerated() {
                if p is NSNull {
                    parameters.append(.null)
                } else if let s = p as? String {
                    parameters.append(.string(s))
                } else if let n = p as? NSNumber {
                    let type = String(cString: n.objCType)
                    if type == "c" {
                        parameters.append(.bool(n.boolValue))
                    } else if ["q", "l", "i", "s", "Q", "L", "I", "S"].contains(type), let exact = Int64(exactly: n.doubleValue) ?? Optional(n.int64Value) {
                        parameters.append(.int(exact))
                    } else {
                        parameters.append(.double(n.doubleValue))
                    }
                } else {
                    throw invalid("parameters[\(i)]", "must be a string, number, boolean or null")
                }
            }
        }
        var options = SQLOptions()
        options.timeoutSeconds = settings.defaultTimeoutSeconds
        if let rawTimeout = body["timeout_seconds"], !(rawTimeout is NSNull) {
            guard let n = rawTimeout as? NSNumber, String(cString: n.objCType) != "c", n.doubleValue > 0,
                n.doubleValue <= settings.maxTimeoutSeconds
            else {
                throw invalid("timeout_seconds", "must be a number of seconds above 0 and at most \(SQLValue.double(settings.maxTimeoutSeconds))")
            }
            options.timeoutSeconds = n.doubleValue
        }
        options.maxRows = settings.maxRows
        options.memoryBudgetBytes = settings.memoryBudgetBytes
        return SQLRequest(sql: sql, parameters: parameters, options: options)
    }

    /// Bad SQL is the caller's to fix (400, with where it went wrong); a query that is valid
    /// but exceeds a limit is well-formed yet unprocessable (422).
    static func apiError(_ error: SQLError) -> APIError {
        var details: String?
        if let location = error.location {
            let out = OutputBuffer(capacity: 128)
            let w = JSONWriter(out)
            w.raw(#"{"line":"#)
            w.int(Int64(location.line))
            w.raw(#","column":"#)
            w.int(Int64(location.column))
            if let excerpt = error.excerpt {
                w.raw(#","excerpt":"#)
                w.string(excerpt)
            }
            w.raw("}")
            details = String(decoding: out.bytes, as: UTF8.self)
        }
        switch error.kind {
        case .syntax, .unknownName, .unsupported, .type, .parameter, .evaluation:
            return APIError(.badRequest, error.kind.rawValue, error.summary, details: details)
        case .timeout, .memoryBudget, .tooManyRows:
            return APIError(.unprocessableContent, error.kind.rawValue, error.message, details: details)
        }
    }
}
