import ColumnStore
import Foundation
import QueryEngine

/// Limits and counters shared by every operator of one query, on every thread.
final class ExecutionContext: @unchecked Sendable {
    // Unchecked: the mutable counters are behind `lock`.
    let snapshot: QuerySnapshot
    let deadline: ContinuousClock.Instant
    let timeoutSeconds: Double
    let memoryBudget: Int
    let threads: Int
    private let lock = NSLock()
    private var memoryUsed = 0
    private var scanned = 0

    init(snapshot: QuerySnapshot, options: SQLOptions) {
        self.snapshot = snapshot
        timeoutSeconds = options.timeoutSeconds
        deadline = (options.startedAt ?? ContinuousClock.now).advanced(by: .nanoseconds(Int64(min(options.timeoutSeconds, 1e9) * 1e9)))
        memoryBudget = options.memoryBudgetBytes
        threads = options.threads ?? ProcessInfo.processInfo.activeProcessorCount
    }

    var rowsScanned: Int { lock.withLock { scanned } }

    func scanned(_ rows: Int) {
        lock.withLock { scanned += rows }
    }

    /// Throws once the deadline has passed. Loops call it every few thousand rows, so a
    /// query stops within milliseconds of its deadline.
    @inline(__always)
    func checkDeadline() throws {
        if ContinuousClock.now >= deadline {
            throw SQLError(.timeout, "the query ran past its timeout of \(SQLValue.format(timeoutSeconds)) s and was cancelled")
        }
    }

    /// Charges `bytes` of materialized rows or group state against the budget.
    func charge(_ bytes: Int) throws {
        let used = lock.withLock {
            memoryUsed += bytes
            return memoryUsed
        }
        if used > memoryBudget {
            throw SQLError(
                .memoryBudget,
                "the query needs more than its memory budget of \(memoryBudget >> 20) MiB; filter more rows, group by fewer keys or add a LIMIT")
        }
    }

    /// A rough size of a materialized row: the array, its values, and string payloads.
    static func size(_ row: [SQLValue]) -> Int {
        var bytes = 32 + row.count * 17
        for v in row { if case .string(let s) = v, s.utf8.count > 15 { bytes += s.utf8.count + 32 } }
        return bytes
    }
}

/// Runs a plan. Scans run on every core, one block per task, with the WHERE filter and
/// (when the query aggregates) partial aggregation fused in; everything above a scan works
/// on the materialized rows below it.
struct Executor {
    let context: ExecutionContext

    func run(_ plan: Plan) throws -> [[SQLValue]] {
        try context.checkDeadline()
        switch plan {
        case .single:
            return [[]]
        case .scan(let scan):
            return try TableScanner(scan: scan, context: context).rows(filter: nil)
        case .filter(.scan(let scan), let filter):
            return try TableScanner(scan: scan, context: context).rows(filter: filter)
        case .shared(let shared):
            if let rows = shared.rows { return rows }
            let rows = try run(shared.plan)
            shared.rows = rows
            return rows
        case .filter(let input, let filter):
            var out: [[SQLValue]] = []
            for (i, row) in try run(input).enumerated() {
                if i & 1023 == 0 { try context.checkDeadline() }
                if try Evaluator.holds(filter, row) { out.append(row) }
            }
            return out
        case .project(let input, let expressions):
            let rows = try run(input)
            var out: [[SQLValue]] = []
            out.reserveCapacity(rows.count)
            for (i, row) in rows.enumerated() {
                if i & 1023 == 0 { try context.checkDeadline() }
                out.append(try expressions.map { try Evaluator.evaluate($0, row) })
            }
            return out
        case .aggregate(let input, let groups, let aggregates):
            var table: AggregateTable
            switch input {
            case .scan(let scan):
                table = try TableScanner(scan: scan, context: context).aggregate(filter: nil, groups: groups, aggregates: aggregates)
            case .filter(.scan(let scan), let filter):
                table = try TableScanner(scan: scan, context: context).aggregate(filter: filter, groups: groups, aggregates: aggregates)
            default:
                table = AggregateTable(groups: groups, aggregates: aggregates)
                for (i, row) in try run(input).enumerated() {
                    if i & 1023 == 0 { try context.checkDeadline() }
                    try table.add(row, context)
                }
            }
            return try table.finish()
        case .join(let left, let right, let kind, let leftKeys, let rightKeys, let rightWidth):
            return try join(try run(left), try run(right), kind, leftKeys, rightKeys, rightWidth)
        case .distinct(let input):
            var seen: Set<[SQLValue]> = []
            var out: [[SQLValue]] = []
            for row in try run(input) where seen.insert(row).inserted { out.append(row) }
            return out
        case .sort(let input, let keys):
            let rows = try run(input)
            try context.checkDeadline()
            let values = try rows.map { row in try keys.map { try Evaluator.evaluate($0.expression, row) } }
            var order = Array(rows.indices)
            order.sort { a, b in Self.precedes(values[a], values[b], keys) ?? (a < b) }
            return order.map { rows[$0] }
        case .limit(let input, let limit, let offset):
            let rows = try run(input)
            let start = min(offset, rows.count)
            let end = limit.map { min(rows.count, start + $0) } ?? rows.count
            return Array(rows[start..<end])
        case .truncate(let input, let count):
            return try run(input).map { Array($0.prefix(count)) }
        case .native(let native):
            return try native.run(context)
        }
    }

    /// Sort order of two rows' key values; nil when they tie (the sort then keeps input
    /// order, so results are stable).
    static func precedes(_ a: [SQLValue], _ b: [SQLValue], _ keys: [SortKey]) -> Bool? {
        for (k, key) in keys.enumerated() {
            let x = a[k]
            let y = b[k]
            switch (x.isNull, y.isNull) {
            case (true, true): continue
            case (true, false): return key.nullsFirst
            case (false, true): return !key.nullsFirst
            default:
                guard let c = SQLValue.compare(x, y), c != 0 else { continue }
                return key.descending ? c > 0 : c < 0
            }
        }
        return nil
    }

    /// Hash join: the right side is hashed on its keys, the left probes. NULL keys never match.
    func join(
        _ left: [[SQLValue]], _ right: [[SQLValue]], _ kind: Join.Kind, _ leftKeys: [BoundExpression], _ rightKeys: [BoundExpression],
        _ rightWidth: Int
    ) throws -> [[SQLValue]] {
        var table: [[SQLValue]: [Int]] = [:]
        for (i, row) in right.enumerated() {
            let key = try rightKeys.map { try Evaluator.evaluate($0, row) }
            if key.contains(where: \.isNull) { continue }
            table[key, default: []].append(i)
        }
        let padding = [SQLValue](repeating: .null, count: rightWidth)
        var out: [[SQLValue]] = []
        var produced = 0
        for (i, row) in left.enumerated() {
            if i & 1023 == 0 { try context.checkDeadline() }
            let key = try leftKeys.map { try Evaluator.evaluate($0, row) }
            if !key.contains(where: \.isNull), let matches = table[key] {
                for m in matches {
                    let joined = row + right[m]
                    produced += 1
                    if produced & 1023 == 0 {
                        try context.checkDeadline()
                        try context.charge(1024 * ExecutionContext.size(joined))
                    }
                    out.append(joined)
                }
            } else if kind == .left {
                out.append(row + padding)
            }
        }
        return out
    }
}
