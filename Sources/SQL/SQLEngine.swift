public import QueryEngine
import Foundation

public struct SQLOptions: Sendable {
    /// Seconds before the query is cancelled.
    public var timeoutSeconds: Double = 30
    /// More result rows than this is an error that points to the export endpoint.
    public var maxRows = 100_000
    /// Bytes of materialized rows and group state one query may hold.
    public var memoryBudgetBytes = 1 << 30
    /// Blocks scanned at once (nil: one per core).
    public var threads: Int?
    /// What `now()` and `today()` mean (µs); nil: the wall clock when the query starts.
    public var now: Int64?
    /// When the timeout starts counting (nil: when execution starts). The server sets it to
    /// the request's arrival, so taking the snapshot counts against the timeout too.
    public var startedAt: ContinuousClock.Instant?

    public init() {}
}

public struct SQLColumn: Sendable, Equatable {
    public var name: String
    public var type: SQLType

    public init(name: String, type: SQLType) {
        self.name = name
        self.type = type
    }
}

public struct SQLResult: Sendable {
    public var columns: [SQLColumn]
    public var rows: [[SQLValue]]
    public var rowsScanned: Int
    /// Whether the engine answered natively (no per-row evaluation).
    public var native: Bool
}

/// The dialect's entry points: parse, bind (names, types, parameters), plan, run.
public enum SQLEngine {
    /// Runs one SELECT against `snapshot`, the caller's own project: no statement can name
    /// anything else.
    public static func execute(
        _ sql: String, parameters: [SQLValue] = [], on snapshot: QuerySnapshot, options: SQLOptions = SQLOptions()
    ) throws -> SQLResult {
        let context = ExecutionContext(snapshot: snapshot, options: options)
        let (plan, columns) = try prepare(sql, parameters: parameters, catalog: Catalog(snapshot: snapshot), now: options.now)
        var native = false
        if case .native = plan.innermost { native = true }
        let executor = Executor(context: context)
        for subquery in plan.subqueries {
            for row in try executor.run(subquery.plan) {
                if row[0].isNull { subquery.hasNull = true } else { subquery.values.insert(row[0]) }
            }
        }
        let rows = try executor.run(plan.root)
        guard rows.count <= options.maxRows else {
            throw SQLError(
                .tooManyRows,
                "the result has \(rows.count) rows, more than the limit of \(options.maxRows); add a LIMIT, aggregate, or use POST /api/v1/analytics/export for bulk data")
        }
        return SQLResult(columns: columns.map { SQLColumn(name: $0.name, type: $0.type) }, rows: rows, rowsScanned: context.rowsScanned, native: native)
    }

    struct Prepared {
        var root: Plan
        var subqueries: [SubqueryResult]
        var innermost: Plan {
            var p = root
            while true {
                switch p {
                case .project(let i, _), .sort(let i, _), .limit(let i, _, _), .truncate(let i, _), .distinct(let i), .filter(let i, _): p = i
                default: return p
                }
            }
        }
    }

    static func prepare(_ sql: String, parameters: [SQLValue], catalog: Catalog, now: Int64?) throws -> (Prepared, [OutputColumn]) {
        let (statement, placeholders) = try Parser.parse(sql)
        guard placeholders == parameters.count else {
            throw SQLError(.parameter, "the query has \(placeholders) placeholder\(placeholders == 1 ? "" : "s") (?) but \(parameters.count) parameter\(parameters.count == 1 ? " was" : "s were") given")
        }
        let binder = Binder(source: sql, catalog: catalog, parameters: parameters, now: now ?? Int64(Date().timeIntervalSince1970 * 1_000_000))
        let (plan, columns) = try binder.bind(statement)
        return (Prepared(root: lowerNative(plan), subqueries: binder.subqueries), columns)
    }

    /// Checks a query without running it: parse, bind and plan against tables with no data.
    /// Missing parameters are taken as NULL. For the fuzzer and for tools that validate saved
    /// queries.
    public static func check(_ sql: String, parameters: [SQLValue] = []) throws {
        let (_, placeholders) = try Parser.parse(sql)
        let bound = parameters + Array(repeating: SQLValue.null, count: max(0, placeholders - parameters.count))
        _ = try prepare(sql, parameters: bound, catalog: Catalog(snapshot: nil), now: 0)
    }

    /// Replaces aggregations the engine can answer natively.
    static func lowerNative(_ plan: Plan) -> Plan {
        switch plan {
        case .aggregate(let input, let groups, let aggregates):
            if let native = NativeAggregate.lower(input, groups: groups, aggregates: aggregates) { return .native(native) }
            return plan
        case .project(let i, let e): return .project(lowerNative(i), e)
        case .sort(let i, let k): return .sort(lowerNative(i), k)
        case .limit(let i, let l, let o): return .limit(lowerNative(i), limit: l, offset: o)
        case .truncate(let i, let c): return .truncate(lowerNative(i), count: c)
        case .distinct(let i): return .distinct(lowerNative(i))
        case .filter(let i, let f):
            if case .scan = i { return plan }
            return .filter(lowerNative(i), f)
        default: return plan
        }
    }
}
