import QueryEngine

/// A bound expression: names resolved to positions in the input row, parameters to values.
indirect enum BoundExpression: CustomStringConvertible {
    case column(Int)
    case literal(SQLValue)
    case unary(UnaryOperator, BoundExpression)
    case binary(BinaryOperator, BoundExpression, BoundExpression)
    case function(ScalarFunction, [BoundExpression])
    case isNull(BoundExpression, negated: Bool)
    case inList(BoundExpression, [BoundExpression], negated: Bool)
    case inSubquery(BoundExpression, SubqueryResult, negated: Bool)
    /// `compiled` is the pattern when it is a constant, compiled once at bind time.
    case like(BoundExpression, pattern: BoundExpression, compiled: LikePattern?, caseInsensitive: Bool, negated: Bool)
    case caseWhen(operand: BoundExpression?, branches: [(BoundExpression, BoundExpression)], otherwise: BoundExpression?)
    case cast(BoundExpression, SQLType)

    /// Structural text, used to match a select-list expression against a GROUP BY one.
    var description: String {
        switch self {
        case .column(let i): "#\(i)"
        case .literal(let v): "lit(\(v.type):\(v))"
        case .unary(let op, let e): "\(op.rawValue)(\(e))"
        case .binary(let op, let l, let r): "(\(l) \(op.rawValue) \(r))"
        case .function(let f, let args): "\(f)(\(args.map(\.description).joined(separator: ",")))"
        case .isNull(let e, let n): "isnull(\(e),\(n))"
        case .inList(let e, let list, let n): "in(\(e),[\(list.map(\.description).joined(separator: ","))],\(n))"
        case .inSubquery(let e, let s, let n): "insub(\(e),\(ObjectIdentifier(s).hashValue),\(n))"
        case .like(let e, let p, _, let ci, let n): "like(\(e),\(p),\(ci),\(n))"
        case .caseWhen(let o, let b, let e):
            "case(\(o?.description ?? "-"),\(b.map { "\($0.0)->\($0.1)" }.joined(separator: ",")),\(e?.description ?? "-"))"
        case .cast(let e, let t): "cast(\(e),\(t))"
        }
    }

    /// The expression split at its top-level ANDs.
    var conjuncts: [BoundExpression] {
        if case .binary(.and, let l, let r) = self { return l.conjuncts + r.conjuncts }
        return [self]
    }

    /// The input columns the expression reads.
    var columnsRead: Set<Int> {
        switch self {
        case .column(let i): [i]
        case .literal: []
        case .unary(_, let e), .isNull(let e, _), .cast(let e, _), .inSubquery(let e, _, _): e.columnsRead
        case .binary(_, let l, let r), .like(let l, let r, _, _, _): l.columnsRead.union(r.columnsRead)
        case .function(_, let args): args.reduce(into: []) { $0.formUnion($1.columnsRead) }
        case .inList(let e, let list, _): list.reduce(e.columnsRead) { $0.union($1.columnsRead) }
        case .caseWhen(let o, let b, let e):
            b.reduce((o?.columnsRead ?? []).union(e?.columnsRead ?? [])) { $0.union($1.0.columnsRead).union($1.1.columnsRead) }
        }
    }

    /// Whether the expression reads any input column.
    var readsColumns: Bool {
        switch self {
        case .column: true
        case .literal: false
        case .unary(_, let e), .isNull(let e, _), .cast(let e, _), .inSubquery(let e, _, _): e.readsColumns
        case .binary(_, let l, let r), .like(let l, let r, _, _, _): l.readsColumns || r.readsColumns
        case .function(_, let args): args.contains { $0.readsColumns }
        case .inList(let e, let list, _): e.readsColumns || list.contains { $0.readsColumns }
        case .caseWhen(let o, let b, let e):
            (o?.readsColumns ?? false) || b.contains { $0.0.readsColumns || $0.1.readsColumns } || (e?.readsColumns ?? false)
        }
    }
}

enum ScalarFunction: String {
    case lower, upper, length, coalesce, nullif, abs, round, dateTrunc = "date_trunc", dateDiff = "date_diff"
    case concat, greatest, least
}

/// An uncorrelated `IN (SELECT …)`: run once before the query that uses it.
final class SubqueryResult {
    let plan: Plan
    var values: Set<SQLValue> = []
    var hasNull = false
    init(plan: Plan) { self.plan = plan }
}

enum AggregateFunction: Equatable {
    case countRows
    case count
    case sum
    case average
    case minimum
    case maximum
    /// Interpolated percentile (0...1), as `percentile_cont` / `quantile_cont`.
    case percentile(Double)
}

struct AggregateCall: CustomStringConvertible {
    var function: AggregateFunction
    var distinct: Bool
    /// nil for `count(*)`.
    var argument: BoundExpression?
    var argumentType: SQLType

    var description: String { "\(function)(\(distinct ? "distinct " : "")\(argument?.description ?? "*"))" }

    var resultType: SQLType {
        switch function {
        case .countRows, .count: .integer
        case .sum: argumentType == .integer ? .integer : .double
        case .average, .percentile: .double
        case .minimum, .maximum: argumentType
        }
    }
}

enum TableKind: String {
    case events, conversations, users
}

/// What a table scan gives each property reference: values of the stored types that fit.
enum PropertyWant: Int, CaseIterable {
    case numeric, string, boolean, timestamp
    /// Whatever the row holds.
    case any
}

/// A scan of one base table. Its output row is the table's own columns, then one slot per
/// (property key, wanted type), fixed before binding so that a join's layout never moves.
/// Slots no expression reads stay NULL and are never decoded.
final class TableScan {
    let table: TableKind
    let columns: [(name: String, type: SQLType)]
    let propertyKeys: [String]
    var used: Set<Int> = []
    /// Time bounds pushed down from WHERE (µs, start inclusive, end exclusive).
    var start = Int64.min
    var end = Int64.max
    /// Event names pushed down from `event_name = …` / `IN (…)`.
    var eventNames: Set<String>?
    /// WHERE conjuncts that read a single slot: where that slot is dictionary-coded in a
    /// block, each is evaluated once per code and applied to rows as a table lookup.
    var singleSlotConjuncts: [(slot: Int, conjunct: Int)] = []
    /// The WHERE filter pushed to this scan, split at its top-level ANDs; a block rebuilds
    /// its row filter from the ones it did not already apply by code.
    var conjuncts: [BoundExpression] = []

    init(table: TableKind, columns: [(name: String, type: SQLType)], propertyKeys: [String]) {
        self.table = table
        self.columns = columns
        self.propertyKeys = propertyKeys
    }

    var width: Int { columns.count + propertyKeys.count * PropertyWant.allCases.count }

    func slot(key: String, want: PropertyWant) -> Int? {
        guard let k = propertyKeys.firstIndex(of: key) else { return nil }
        return columns.count + k * PropertyWant.allCases.count + want.rawValue
    }

    /// The property key and wanted type of output slot `slot` (past the table's columns).
    func property(at slot: Int) -> (key: String, want: PropertyWant) {
        let i = slot - columns.count
        return (propertyKeys[i / PropertyWant.allCases.count], PropertyWant(rawValue: i % PropertyWant.allCases.count)!)
    }
}

/// A shared WITH query, run at most once however often it is referenced.
final class SharedPlan {
    let plan: Plan
    var rows: [[SQLValue]]?
    init(plan: Plan) { self.plan = plan }
}

struct SortKey {
    var expression: BoundExpression
    var descending: Bool
    var nullsFirst: Bool
}

indirect enum Plan {
    case scan(TableScan)
    /// One row with no columns: `SELECT 1`.
    case single
    case shared(SharedPlan)
    case filter(Plan, BoundExpression)
    case project(Plan, [BoundExpression])
    /// Output: the group values, then the aggregates.
    case aggregate(Plan, groups: [BoundExpression], aggregates: [AggregateCall])
    case join(Plan, Plan, kind: Join.Kind, leftKeys: [BoundExpression], rightKeys: [BoundExpression], rightWidth: Int)
    case distinct(Plan)
    case sort(Plan, [SortKey])
    case limit(Plan, limit: Int?, offset: Int)
    /// Keeps the first `count` columns (drops ORDER BY's hidden ones).
    case truncate(Plan, count: Int)
    /// A query the engine answers natively, without going row by row.
    case native(NativeAggregate)
}
