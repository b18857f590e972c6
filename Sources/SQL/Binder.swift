import ColumnStore
import QueryEngine

/// A column a query's FROM clause makes visible.
struct ScopeColumn {
    var qualifier: String?
    var name: String
    var type: SQLType
    var index: Int
}

/// A base table within a scope, for resolving `alias.properties.key`.
struct ScopeTable {
    var alias: String
    var scan: TableScan?
    var offset: Int
}

struct Scope {
    var columns: [ScopeColumn] = []
    var tables: [ScopeTable] = []
    var width = 0

    mutating func append(_ other: Scope) {
        for var c in other.columns {
            c.index += width
            columns.append(c)
        }
        for var t in other.tables {
            t.offset += width
            tables.append(t)
        }
        width += other.width
    }
}

struct OutputColumn {
    var name: String
    var type: SQLType
}

/// The post-GROUP BY view: expressions that match a group key, and aggregate calls.
final class Grouping {
    let input: Scope
    var groupKeys: [String]
    var groupTypes: [SQLType]
    var aggregates: [AggregateCall] = []
    init(input: Scope, groupKeys: [String], groupTypes: [SQLType]) {
        self.input = input
        self.groupKeys = groupKeys
        self.groupTypes = groupTypes
    }
}

/// Resolves names and types, binds parameters, and turns the syntax tree into a plan.
final class Binder {
    let source: String
    var catalog: Catalog
    let parameters: [SQLValue]
    let now: Int64
    var subqueries: [SubqueryResult] = []
    /// WITH names in scope, innermost last.
    var commonTables: [[String: (SharedPlan, [OutputColumn])]] = []

    static let aggregateNames: Set<String> = [
        "count", "sum", "avg", "min", "max", "percentile_cont", "quantile_cont", "quantile", "median", "mean",
    ]

    init(source: String, catalog: Catalog, parameters: [SQLValue], now: Int64) {
        self.source = source
        self.catalog = catalog
        self.parameters = parameters
        self.now = now
    }

    func error(_ kind: SQLError.Kind, _ message: String, _ location: SourceLocation) -> SQLError {
        SQLError(kind, message, at: location, in: source)
    }

    // MARK: SELECT

    func bind(_ statement: SelectStatement) throws -> (Plan, [OutputColumn]) {
        var names: [String: (SharedPlan, [OutputColumn])] = [:]
        commonTables.append([:])
        defer { commonTables.removeLast() }
        for entry in statement.with {
            guard names[entry.name] == nil else { throw error(.syntax, "WITH name \(entry.name) is defined twice", entry.location) }
            let (plan, columns) = try bind(entry.query)
            names[entry.name] = (SharedPlan(plan: plan), columns)
            commonTables[commonTables.count - 1] = names
        }

        // FROM and JOIN.
        let propertyKeys = collectPropertyKeys(statement)
        var plan: Plan = .single
        var scope = Scope()
        if let from = statement.from {
            (plan, scope) = try bindFrom(from, propertyKeys: propertyKeys)
            for join in statement.joins {
                let (rightPlan, rightScope) = try bindFrom(join.item, propertyKeys: propertyKeys)
                var combined = scope
                combined.append(rightScope)
                let (leftKeys, rightKeys) = try bindJoinCondition(join.condition, left: scope, right: rightScope, combined: combined)
                plan = .join(plan, rightPlan, kind: join.kind, leftKeys: leftKeys, rightKeys: rightKeys, rightWidth: rightScope.width)
                scope = combined
            }
        }

        if let filter = statement.filter {
            try rejectAggregates(filter, "WHERE")
            let (bound, type) = try bind(filter, scope, hint: .boolean)
            try expectBoolean(type, "WHERE", filter.location)
            if case .scan(let scan) = plan { pushDown(bound, into: scan) }
            plan = .filter(plan, bound)
        }

        // The select list, with stars expanded.
        var items: [(expression: Expression, name: String?)] = []
        for item in statement.items {
            if case .star(let qualifier) = item.expression.kind {
                let visible = scope.columns.filter { qualifier == nil || $0.qualifier == qualifier }
                if visible.isEmpty {
                    throw error(.unknownName, qualifier.map { "no table named \($0) in FROM" } ?? "SELECT * needs a FROM clause", item.expression.location)
                }
                for c in visible {
                    let parts = c.qualifier.map { [$0, c.name] } ?? [c.name]
                    items.append((Expression(.name(parts), at: item.expression.location), c.name))
                }
            } else {
                items.append((item.expression, item.alias))
            }
        }

        let isAggregate = !statement.groupBy.isEmpty || statement.having != nil
            || items.contains { containsAggregate($0.expression) } || statement.orderBy.contains { containsAggregate($0.expression) }
        var grouping: Grouping?
        if isAggregate {
            var groupExpressions: [BoundExpression] = []
            var groupTypes: [SQLType] = []
            for g in statement.groupBy {
                let resolved = try resolveGroupReference(g, items: items, scope: scope)
                try rejectAggregates(resolved, "GROUP BY")
                let (bound, type) = try bind(resolved, scope, hint: nil)
                groupExpressions.append(bound)
                groupTypes.append(type)
            }
            let state = Grouping(input: scope, groupKeys: groupExpressions.map(\.description), groupTypes: groupTypes)
            grouping = state
            // Bind everything that reads the groups before building the plan, so that all
            // aggregate calls are known.
            var projected: [(BoundExpression, SQLType)] = []
            for item in items { projected.append(try bindGrouped(item.expression, state, hint: nil)) }
            var having: BoundExpression?
            if let h = statement.having {
                let (bound, type) = try bindGrouped(h, state, hint: .boolean)
                try expectBoolean(type, "HAVING", h.location)
                having = bound
            }
            let (orderKeys, hidden) = try bindOrder(statement, items: items, projected: projected) { e in try self.bindGrouped(e, state, hint: nil) }
            plan = .aggregate(plan, groups: groupExpressions, aggregates: state.aggregates)
            if let having { plan = .filter(plan, having) }
            return try finish(statement, plan: plan, items: items, projected: projected, orderKeys: orderKeys, hidden: hidden)
        }
        _ = grouping
        var projected: [(BoundExpression, SQLType)] = []
        for item in items { projected.append(try bind(item.expression, scope, hint: nil)) }
        let (orderKeys, hidden) = try bindOrder(statement, items: items, projected: projected) { e in try self.bind(e, scope, hint: nil) }
        return try finish(statement, plan: plan, items: items, projected: projected, orderKeys: orderKeys, hidden: hidden)
    }

    /// Projection, DISTINCT, ORDER BY (over the output plus hidden sort columns), LIMIT.
    func finish(
        _ statement: SelectStatement, plan input: Plan, items: [(expression: Expression, name: String?)],
        projected: [(BoundExpression, SQLType)], orderKeys: [SortKey], hidden: [BoundExpression]
    ) throws -> (Plan, [OutputColumn]) {
        if statement.distinct, !hidden.isEmpty {
            throw error(.type, "with SELECT DISTINCT, ORDER BY expressions must appear in the select list", statement.orderBy[0].expression.location)
        }
        var plan: Plan = .project(input, projected.map(\.0) + hidden)
        if statement.distinct { plan = .distinct(plan) }
        if !orderKeys.isEmpty { plan = .sort(plan, orderKeys) }
        let limit = try statement.limit.map { try count($0, "LIMIT") }
        let offset = try statement.offset.map { try count($0, "OFFSET") } ?? 0
        if limit != nil || offset > 0 { plan = .limit(plan, limit: limit, offset: offset) }
        if !hidden.isEmpty { plan = .truncate(plan, count: projected.count) }
        return (plan, outputNames(items, projected))
    }

    func count(_ e: Expression, _ clause: String) throws -> Int {
        var value: SQLValue = .null
        if case .literal(let v) = e.kind { value = v }
        if case .parameter(let i) = e.kind { value = try parameter(i, e.location) }
        guard case .int(let n) = value, n >= 0 else {
            throw error(.parameter, "\(clause) must be a whole number ≥ 0, not \(value)", e.location)
        }
        return Int(clamping: n)
    }

    /// Unique output names: the alias, else the column or function name; repeats get `_2`, `_3`.
    func outputNames(_ items: [(expression: Expression, name: String?)], _ projected: [(BoundExpression, SQLType)]) -> [OutputColumn] {
        var used: [String: Int] = [:]
        var columns: [OutputColumn] = []
        for (i, item) in items.enumerated() {
            var name = item.name ?? Self.defaultName(item.expression) ?? "column\(i + 1)"
            if let n = used[name] {
                used[name] = n + 1
                name += "_\(n + 1)"
            } else {
                used[name] = 1
            }
            columns.append(OutputColumn(name: name, type: projected[i].1))
        }
        return columns
    }

    static func defaultName(_ e: Expression) -> String? {
        switch e.kind {
        case .name(let parts):
            if let p = parts.firstIndex(of: "properties"), p + 1 < parts.count { return parts[(p + 1)...].joined(separator: ".") }
            return parts.last
        case .propertySubscript(_, let key): return key
        case .function(let name, _, _): return name
        case .cast(let inner, _): return defaultName(inner)
        default: return nil
        }
    }

    /// GROUP BY 1, GROUP BY alias (when no input column has that name), or an expression.
    func resolveGroupReference(_ g: Expression, items: [(expression: Expression, name: String?)], scope: Scope) throws -> Expression {
        if case .literal(.int(let n)) = g.kind {
            guard n >= 1, n <= items.count else { throw error(.unknownName, "GROUP BY position \(n) is not in the select list", g.location) }
            return items[Int(n) - 1].expression
        }
        if case .name(let parts) = g.kind, parts.count == 1, !scope.columns.contains(where: { $0.name == parts[0] }),
            let item = items.first(where: { $0.name == parts[0] })
        {
            return item.expression
        }
        return g
    }

    /// ORDER BY keys over the projected row: output positions, output aliases, else
    /// expressions appended as hidden columns.
    func bindOrder(
        _ statement: SelectStatement, items: [(expression: Expression, name: String?)], projected: [(BoundExpression, SQLType)],
        bindInput: (Expression) throws -> (BoundExpression, SQLType)
    ) throws -> ([SortKey], [BoundExpression]) {
        var keys: [SortKey] = []
        var hidden: [BoundExpression] = []
        for o in statement.orderBy {
            var position: Int?
            if case .literal(.int(let n)) = o.expression.kind {
                guard n >= 1, n <= items.count else { throw error(.unknownName, "ORDER BY position \(n) is not in the select list", o.expression.location) }
                position = Int(n) - 1
            } else if case .name(let parts) = o.expression.kind, parts.count == 1, let i = items.firstIndex(where: { $0.name == parts[0] }) {
                position = i
            } else {
                let (bound, _) = try bindInput(o.expression)
                if let i = projected.firstIndex(where: { $0.0.description == bound.description }) {
                    position = i
                } else {
                    hidden.append(bound)
                    position = projected.count + hidden.count - 1
                }
            }
            keys.append(SortKey(expression: .column(position!), descending: o.descending, nullsFirst: o.nullsFirst ?? o.descending))
        }
        return (keys, hidden)
    }

    // MARK: FROM

    func bindFrom(_ item: FromItem, propertyKeys: [String?: Set<String>]) throws -> (Plan, Scope) {
        switch item {
        case .subquery(let statement, let alias, _):
            let (plan, columns) = try bind(statement)
            return (plan, scope(of: columns, qualifier: alias))
        case .table(let name, let alias, let location):
            for level in commonTables.reversed() {
                if let (shared, columns) = level[name] { return (.shared(shared), scope(of: columns, qualifier: alias ?? name)) }
            }
            guard let table = TableKind(rawValue: name) else {
                throw error(.unknownName, "no table named \(name); the tables are events, conversations and users", location)
            }
            let qualifier = alias ?? name
            var keys = propertyKeys[nil] ?? []
            keys.formUnion(propertyKeys[qualifier] ?? [])
            let scan = TableScan(table: table, columns: Catalog.columns(of: table), propertyKeys: table == .conversations ? [] : keys.sorted())
            var scope = Scope()
            for (i, c) in scan.columns.enumerated() { scope.columns.append(ScopeColumn(qualifier: qualifier, name: c.name, type: c.type, index: i)) }
            scope.tables.append(ScopeTable(alias: qualifier, scan: scan, offset: 0))
            scope.width = scan.width
            return (.scan(scan), scope)
        }
    }

    func scope(of columns: [OutputColumn], qualifier: String?) -> Scope {
        var scope = Scope()
        for (i, c) in columns.enumerated() { scope.columns.append(ScopeColumn(qualifier: qualifier, name: c.name, type: c.type, index: i)) }
        scope.tables.append(ScopeTable(alias: qualifier ?? "", scan: nil, offset: 0))
        scope.width = columns.count
        return scope
    }

    /// `ON a = b [AND c = d …]`, each equality with one side in each input.
    func bindJoinCondition(_ condition: Expression, left: Scope, right: Scope, combined: Scope) throws -> ([BoundExpression], [BoundExpression]) {
        var conjuncts: [Expression] = []
        func split(_ e: Expression) {
            if case .binary(.and, let l, let r) = e.kind {
                split(l)
                split(r)
            } else {
                conjuncts.append(e)
            }
        }
        split(condition)
        var leftKeys: [BoundExpression] = []
        var rightKeys: [BoundExpression] = []
        for c in conjuncts {
            guard case .binary(.equal, let a, let b) = c.kind else {
                throw error(.unsupported, "JOIN … ON takes equalities between the two sides, joined by AND", c.location)
            }
            if let l = try? bind(a, left, hint: nil), let r = try? bind(b, right, hint: l.1) {
                try checkComparable(l.1, r.1, c.location)
                leftKeys.append(l.0)
                rightKeys.append(r.0)
            } else if let l = try? bind(b, left, hint: nil), let r = try? bind(a, right, hint: l.1) {
                try checkComparable(l.1, r.1, c.location)
                leftKeys.append(l.0)
                rightKeys.append(r.0)
            } else {
                // Report the real problem: a name that is in neither side, or one side only.
                _ = try bind(a, combined, hint: nil)
                _ = try bind(b, combined, hint: nil)
                throw error(.unsupported, "each JOIN equality must compare a column of the left side with one of the right side", c.location)
            }
        }
        return (leftKeys, rightKeys)
    }

    /// Property keys named anywhere in this SELECT (not its subqueries), by table qualifier
    /// (nil: unqualified). Scans reserve slots for them before any expression is bound, so
    /// the row layout never changes under a join.
    func collectPropertyKeys(_ s: SelectStatement) -> [String?: Set<String>] {
        var keys: [String?: Set<String>] = [:]
        func visit(_ e: Expression) {
            switch e.kind {
            case .name(let parts):
                if parts.count >= 2, parts[0] == "properties" {
                    keys[nil, default: []].insert(parts[1...].joined(separator: "."))
                } else if parts.count >= 3, parts[1] == "properties" {
                    keys[parts[0], default: []].insert(parts[2...].joined(separator: "."))
                }
            case .propertySubscript(let qualifier, let key): keys[qualifier, default: []].insert(key)
            case .literal, .parameter, .star: break
            case .unary(_, let x), .isNull(let x, _), .cast(let x, _), .inSubquery(let x, _, _): visit(x)
            case .binary(_, let l, let r), .like(let l, let r, _, _):
                visit(l)
                visit(r)
            case .function(_, let args, _): args.forEach(visit)
            case .inList(let x, let list, _):
                visit(x)
                list.forEach(visit)
            case .between(let x, let lo, let hi, _):
                visit(x)
                visit(lo)
                visit(hi)
            case .caseWhen(let o, let branches, let otherwise):
                o.map(visit)
                for b in branches {
                    visit(b.condition)
                    visit(b.result)
                }
                otherwise.map(visit)
            }
        }
        s.items.forEach { visit($0.expression) }
        s.filter.map(visit)
        s.groupBy.forEach(visit)
        s.having.map(visit)
        s.orderBy.forEach { visit($0.expression) }
        s.joins.forEach { visit($0.condition) }
        return keys
    }

    // MARK: Push-down

    /// Time bounds and event names that let the scan skip whole blocks. The filter itself
    /// stays in the plan, so push-down only ever narrows what is read.
    func pushDown(_ filter: BoundExpression, into scan: TableScan) {
        let conjuncts = filter.conjuncts
        scan.conjuncts = conjuncts
        let timeColumns: Set<String> = scan.table == .events ? ["timestamp", "date"] : scan.table == .conversations ? ["started_at", "date"] : []
        for (index, c) in conjuncts.enumerated() {
            let read = c.columnsRead
            if read.count == 1 { scan.singleSlotConjuncts.append((read.first!, index)) }
            switch c {
            case .binary(let op, .column(let i), .literal(let v)) where op.isComparison:
                bound(scan, column: i, op, v, timeColumns)
            case .binary(let op, .literal(let v), .column(let i)) where op.isComparison:
                bound(scan, column: i, op.flipped, v, timeColumns)
            case .inList(.column(let i), let list, negated: false) where scan.table == .events && i < scan.columns.count && scan.columns[i].name == "event_name":
                var names: Set<String> = []
                for item in list {
                    guard case .literal(.string(let s)) = item else { return }
                    names.insert(s)
                }
                scan.eventNames = scan.eventNames.map { $0.intersection(names) } ?? names
            default: break
            }
        }
    }

    func bound(_ scan: TableScan, column i: Int, _ op: BinaryOperator, _ v: SQLValue, _ timeColumns: Set<String>) {
        guard i < scan.columns.count else { return }
        let name = scan.columns[i].name
        if scan.table == .events, name == "event_name", op == .equal, case .string(let s) = v {
            scan.eventNames = scan.eventNames.map { $0.intersection([s]) } ?? [s]
            return
        }
        guard timeColumns.contains(name) else { return }
        var micros: Int64
        var isDate = false
        switch v {
        case .timestamp(let t): micros = t
        case .date(let d):
            micros = Int64(d) * SQLValue.microsPerDay
            isDate = true
        default: return
        }
        // A `date` column compares whole days: `date <= D` holds through the end of D.
        let dayColumn = name == "date"
        let step: Int64 = dayColumn ? SQLValue.microsPerDay : 1
        if dayColumn, !isDate, micros % SQLValue.microsPerDay != 0 { return }
        switch op {
        case .equal:
            scan.start = max(scan.start, micros)
            scan.end = min(scan.end, micros &+ step)
        case .greaterOrEqual: scan.start = max(scan.start, micros)
        case .greater: scan.start = max(scan.start, micros &+ step)
        case .less: scan.end = min(scan.end, micros)
        case .lessOrEqual: scan.end = min(scan.end, micros &+ step)
        default: break
        }
    }
}

extension BinaryOperator {
    /// The operator with its operands swapped: `a < b` is `b > a`.
    var flipped: BinaryOperator {
        switch self {
        case .less: .greater
        case .lessOrEqual: .greaterOrEqual
        case .greater: .less
        case .greaterOrEqual: .lessOrEqual
        default: self
        }
    }
}

extension SQLValue {
    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }
}
