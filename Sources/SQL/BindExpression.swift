import ColumnStore

extension Binder {
    // MARK: Checks

    func containsAggregate(_ e: Expression) -> Bool {
        switch e.kind {
        case .function(let name, let args, _): return Self.aggregateNames.contains(name) || args.contains(where: containsAggregate)
        case .literal, .parameter, .name, .propertySubscript, .star, .inSubquery: return false
        case .unary(_, let x), .isNull(let x, _), .cast(let x, _): return containsAggregate(x)
        case .binary(_, let l, let r), .like(let l, let r, _, _): return containsAggregate(l) || containsAggregate(r)
        case .inList(let x, let list, _): return containsAggregate(x) || list.contains(where: containsAggregate)
        case .between(let x, let lo, let hi, _): return containsAggregate(x) || containsAggregate(lo) || containsAggregate(hi)
        case .caseWhen(let o, let branches, let otherwise):
            return (o.map(containsAggregate) ?? false) || branches.contains { containsAggregate($0.condition) || containsAggregate($0.result) }
                || (otherwise.map(containsAggregate) ?? false)
        }
    }

    func rejectAggregates(_ e: Expression, _ clause: String) throws {
        if containsAggregate(e) { throw error(.type, "aggregate functions are not allowed in \(clause)", e.location) }
    }

    func expectBoolean(_ type: SQLType, _ clause: String, _ location: SourceLocation) throws {
        guard type == .boolean || type == .null else { throw error(.type, "\(clause) needs a boolean condition, not \(type)", location) }
    }

    static func comparable(_ a: SQLType, _ b: SQLType) -> Bool {
        if a == .null || b == .null || a == b { return true }
        if a.isNumeric && b.isNumeric { return true }
        let times: Set<SQLType> = [.date, .timestamp]
        return times.contains(a) && times.contains(b)
    }

    func checkComparable(_ a: SQLType, _ b: SQLType, _ location: SourceLocation) throws {
        guard Self.comparable(a, b) else { throw error(.type, "cannot compare \(a) with \(b)", location) }
    }

    /// Types whose values the context decides: `?`, string literals (which may be dates),
    /// NULL, and property references.
    func isContextTyped(_ e: Expression) -> Bool {
        switch e.kind {
        case .parameter, .literal(.string), .literal(.null), .propertySubscript: return true
        case .name(let parts): return parts.contains("properties") && parts.count >= 2
        default: return false
        }
    }

    // MARK: Parameters and literals

    func parameter(_ index: Int, _ location: SourceLocation) throws -> SQLValue {
        guard index < parameters.count else {
            throw error(.parameter, "placeholder \(index + 1) has no parameter", location)
        }
        return parameters[index]
    }

    /// A parameter or string literal in a context that decides its type.
    func coerce(_ value: SQLValue, to hint: SQLType?, isParameter: Bool, index: Int, _ location: SourceLocation) throws -> SQLValue {
        guard let hint, !value.isNull else { return value }
        let what = isParameter ? "parameter \(index + 1)" : "literal"
        switch (hint, value) {
        case (.date, .string(let s)):
            if let d = SQLValue.date(parsing: s) { return d }
            if let t = SQLValue.timestamp(parsing: s) { return t }
            throw error(.parameter, "\(what) '\(s)' is not a date (YYYY-MM-DD)", location)
        case (.timestamp, .string(let s)):
            if let t = SQLValue.timestamp(parsing: s) { return t }
            throw error(.parameter, "\(what) '\(s)' is not a timestamp (RFC 3339, e.g. 2024-01-15T10:30:00Z)", location)
        default: break
        }
        guard isParameter else { return value }
        let fits: Bool
        switch hint {
        case .integer, .double: fits = value.type.isNumeric
        case .string: fits = value.type == .string
        case .boolean: fits = value.type == .boolean
        case .date, .timestamp: fits = value.type == .date || value.type == .timestamp
        case .interval: fits = value.type == .interval
        case .null: fits = true
        }
        guard fits else {
            throw error(.parameter, "parameter \(index + 1) must be \(Self.article(hint)), not \(Self.article(value.type)) (\(value))", location)
        }
        return value
    }

    static func article(_ type: SQLType) -> String {
        switch type {
        case .integer, .interval: "an \(type)"
        case .double: "a number"
        default: "a \(type)"
        }
    }

    // MARK: Expressions

    func bind(_ e: Expression, _ scope: Scope, hint: SQLType?) throws -> (BoundExpression, SQLType) {
        try bindExpression(e, scope, hint: hint, grouping: nil)
    }

    func bindGrouped(_ e: Expression, _ grouping: Grouping, hint: SQLType?) throws -> (BoundExpression, SQLType) {
        try bindExpression(e, grouping.input, hint: hint, grouping: grouping)
    }

    func bindExpression(_ e: Expression, _ scope: Scope, hint: SQLType?, grouping: Grouping?) throws -> (BoundExpression, SQLType) {
        if let g = grouping {
            if case .function(let name, let args, let distinct) = e.kind, Self.aggregateNames.contains(name) {
                let call = try bindAggregate(name, args, distinct: distinct, g.input, e.location)
                // The same call twice (in the select list and ORDER BY) is one aggregate.
                if let k = g.aggregates.firstIndex(where: { $0.description == call.description }) {
                    return (.column(g.groupKeys.count + k), call.resultType)
                }
                g.aggregates.append(call)
                return (.column(g.groupKeys.count + g.aggregates.count - 1), call.resultType)
            }
            if !containsAggregate(e) {
                let (bound, type) = try bindExpression(e, g.input, hint: hint, grouping: nil)
                if let k = g.groupKeys.firstIndex(of: bound.description) { return (.column(k), g.groupTypes[k]) }
                if !bound.readsColumns { return (bound, type) }
                switch e.kind {
                case .name, .propertySubscript:
                    throw error(.type, "\(Self.defaultName(e) ?? "column") must appear in GROUP BY or be used in an aggregate function", e.location)
                default: break
                }
            }
        }
        // Children bind in the same mode as their parent.
        func sub(_ x: Expression, _ h: SQLType?) throws -> (BoundExpression, SQLType) {
            try bindExpression(x, scope, hint: h, grouping: grouping)
        }

        switch e.kind {
        case .literal(let v):
            return (.literal(try coerce(v, to: hint, isParameter: false, index: 0, e.location)), hint == .date || hint == .timestamp ? (try coerce(v, to: hint, isParameter: false, index: 0, e.location)).type : v.type)
        case .parameter(let i):
            let v = try coerce(try parameter(i, e.location), to: hint, isParameter: true, index: i, e.location)
            return (.literal(v), v.type)
        case .star:
            throw error(.syntax, "* is only allowed alone in the select list or in count(*)", e.location)
        case .name(let parts):
            return try resolveName(parts, scope, hint: hint, e.location)
        case .propertySubscript(let qualifier, let key):
            return try property(key, qualifier: qualifier, scope, hint: hint, e.location)
        case .unary(let op, let x):
            switch op {
            case .not:
                let (b, t) = try sub(x, .boolean)
                try expectBoolean(t, "NOT", x.location)
                return (.unary(.not, b), .boolean)
            case .negate, .plus:
                let (b, t) = try sub(x, .double)
                guard t.isNumeric || t == .interval || t == .null else { throw error(.type, "cannot negate \(t)", e.location) }
                return (op == .plus ? b : .unary(.negate, b), t)
            }
        case .binary(let op, let l, let r):
            return try bindBinary(op, l, r, e.location, sub)
        case .function(let name, let args, let distinct):
            if Self.aggregateNames.contains(name) {
                throw error(.type, "aggregate function \(name) is not allowed here", e.location)
            }
            if distinct { throw error(.syntax, "DISTINCT applies only to aggregate functions", e.location) }
            return try bindFunction(name, args, hint: hint, e.location, sub)
        case .isNull(let x, let negated):
            let (b, _) = try sub(x, nil)
            return (.isNull(b, negated: negated), .boolean)
        case .inList(let x, let list, let negated):
            let (target, type) = try bindFirstOf(x, others: list, sub)
            var items: [BoundExpression] = []
            for item in list {
                let (b, t) = try sub(item, type)
                try checkComparable(type, t, item.location)
                items.append(b)
            }
            return (.inList(target, items, negated: negated), .boolean)
        case .inSubquery(let x, let statement, let negated):
            let (plan, columns) = try bind(statement)
            guard columns.count == 1 else {
                throw error(.type, "the IN subquery must select exactly one column, not \(columns.count)", statement.location)
            }
            let (target, type) = try sub(x, columns[0].type)
            try checkComparable(type, columns[0].type, e.location)
            let result = SubqueryResult(plan: plan)
            subqueries.append(result)
            return (.inSubquery(target, result, negated: negated), .boolean)
        case .between(let x, let low, let high, let negated):
            let (target, type) = try bindFirstOf(x, others: [low, high], sub)
            let (lo, loType) = try sub(low, type)
            let (hi, hiType) = try sub(high, type)
            try checkComparable(type, loType, low.location)
            try checkComparable(type, hiType, high.location)
            let range: BoundExpression = .binary(.and, .binary(.greaterOrEqual, target, lo), .binary(.lessOrEqual, target, hi))
            return (negated ? .unary(.not, range) : range, .boolean)
        case .like(let x, let pattern, let caseInsensitive, let negated):
            let (b, t) = try sub(x, .string)
            let (p, pt) = try sub(pattern, .string)
            guard t == .string || t == .null, pt == .string || pt == .null else {
                throw error(.type, "\(caseInsensitive ? "ILIKE" : "LIKE") compares strings, not \(t == .string ? pt : t)", e.location)
            }
            var compiled: LikePattern?
            if case .literal(.string(let text)) = p { compiled = LikePattern(text, caseInsensitive: caseInsensitive) }
            return (.like(b, pattern: p, compiled: compiled, caseInsensitive: caseInsensitive, negated: negated), .boolean)
        case .caseWhen(let operand, let branches, let otherwise):
            var boundOperand: BoundExpression?
            var operandType: SQLType = .null
            if let operand { (boundOperand, operandType) = try sub(operand, nil) }
            var bound: [(BoundExpression, BoundExpression)] = []
            var resultTypes: [(SQLType, SourceLocation)] = []
            for branch in branches {
                let condition: BoundExpression
                if let boundOperand {
                    let (v, t) = try sub(branch.condition, operandType)
                    try checkComparable(operandType, t, branch.condition.location)
                    condition = .binary(.equal, boundOperand, v)
                } else {
                    let (c, t) = try sub(branch.condition, .boolean)
                    try expectBoolean(t, "WHEN", branch.condition.location)
                    condition = c
                }
                let (result, t) = try sub(branch.result, hint)
                bound.append((condition, result))
                resultTypes.append((t, branch.result.location))
            }
            var otherwiseBound: BoundExpression?
            if let otherwise {
                let (b, t) = try sub(otherwise, hint)
                otherwiseBound = b
                resultTypes.append((t, otherwise.location))
            }
            let type = try unify(resultTypes, "CASE results")
            for i in bound.indices { bound[i].1 = Self.widen(bound[i].1, from: resultTypes[i].0, to: type) }
            if let o = otherwiseBound { otherwiseBound = Self.widen(o, from: resultTypes[resultTypes.count - 1].0, to: type) }
            return (.caseWhen(operand: nil, branches: bound, otherwise: otherwiseBound), type)
        case .cast(let x, let type):
            let (b, from) = try sub(x, nil)
            if case .literal(let v) = b {
                // Fold constant casts now, so `CAST('2024-01-01' AS date)` errors at bind time.
                return (.literal(try Evaluator.cast(v, to: type, location: e.location, source: source)), type)
            }
            guard Evaluator.canCast(from, to: type) else { throw error(.type, "cannot cast \(from) to \(type)", e.location) }
            return (.cast(b, type), type)
        }
    }

    /// Binds `x` knowing the others' type when `x` takes its type from context.
    func bindFirstOf(
        _ x: Expression, others: [Expression], _ sub: (Expression, SQLType?) throws -> (BoundExpression, SQLType)
    ) throws -> (BoundExpression, SQLType) {
        if isContextTyped(x), let typed = others.first(where: { !isContextTyped($0) }) {
            let (_, t) = try sub(typed, nil)
            return try sub(x, t)
        }
        return try sub(x, nil)
    }

    /// `e` converted to the type its branch was unified to (integers in a double CASE, dates
    /// among timestamps), so values always have their column's type.
    static func widen(_ e: BoundExpression, from: SQLType, to: SQLType) -> BoundExpression {
        guard from != to, from != .null else { return e }
        if case .literal(let v) = e, let cast = try? Evaluator.cast(v, to: to, location: nil, source: nil) { return .literal(cast) }
        return .cast(e, to)
    }

    func unify(_ types: [(SQLType, SourceLocation)], _ what: String) throws -> SQLType {
        var result: SQLType = .null
        for (t, location) in types where t != .null {
            if result == .null || result == t {
                result = t
            } else if result.isNumeric && t.isNumeric {
                result = .double
            } else if Set([result, t]) == [.date, .timestamp] {
                result = .timestamp
            } else {
                throw error(.type, "\(what) mix \(result) and \(t)", location)
            }
        }
        return result
    }

    func bindBinary(
        _ op: BinaryOperator, _ l: Expression, _ r: Expression, _ location: SourceLocation,
        _ sub: (Expression, SQLType?) throws -> (BoundExpression, SQLType)
    ) throws -> (BoundExpression, SQLType) {
        switch op {
        case .and, .or:
            let (lb, lt) = try sub(l, .boolean)
            let (rb, rt) = try sub(r, .boolean)
            try expectBoolean(lt, op.rawValue, l.location)
            try expectBoolean(rt, op.rawValue, r.location)
            return (.binary(op, lb, rb), .boolean)
        case .concatenate:
            let (lb, _) = try sub(l, .string)
            let (rb, _) = try sub(r, .string)
            return (.binary(op, lb, rb), .string)
        default:
            break
        }
        // Bind the side that fixes the type first.
        var lb: BoundExpression, lt: SQLType, rb: BoundExpression, rt: SQLType
        let numericHint: SQLType? = op.isComparison ? nil : .double
        if isContextTyped(l) && !isContextTyped(r) {
            (rb, rt) = try sub(r, numericHint)
            (lb, lt) = try sub(l, op.isComparison || rt.isNumeric ? rt : nil)
        } else {
            (lb, lt) = try sub(l, numericHint)
            (rb, rt) = try sub(r, op.isComparison || lt.isNumeric ? lt : nil)
        }
        if op.isComparison {
            try checkComparable(lt, rt, location)
            return (.binary(op, lb, rb), .boolean)
        }
        guard let type = Self.arithmeticType(op, lt, rt) else {
            throw error(.type, "cannot apply \(op.rawValue) to \(lt) and \(rt)", location)
        }
        return (.binary(op, lb, rb), type)
    }

    static func arithmeticType(_ op: BinaryOperator, _ l: SQLType, _ r: SQLType) -> SQLType? {
        if l == .null && r == .null { return .null }
        if l.isNumeric || r.isNumeric, l.isNumeric || l == .null, r.isNumeric || r == .null {
            if op == .divide { return .double }
            return l == .double || r == .double ? .double : .integer
        }
        switch (op, l, r) {
        case (.add, .timestamp, .interval), (.add, .interval, .timestamp), (.subtract, .timestamp, .interval): return .timestamp
        case (.add, .date, .interval), (.add, .interval, .date), (.subtract, .date, .interval): return .timestamp
        case (.add, .date, .integer), (.add, .integer, .date), (.subtract, .date, .integer): return .date
        case (.subtract, .timestamp, .timestamp), (.subtract, .timestamp, .date), (.subtract, .date, .timestamp): return .interval
        case (.subtract, .date, .date): return .integer
        case (.add, .interval, .interval), (.subtract, .interval, .interval): return .interval
        case (_, .null, let t), (_, let t, .null): return [.timestamp, .date, .interval].contains(t) && op != .multiply && op != .divide ? t : nil
        default: return nil
        }
    }

    // MARK: Names

    func resolveName(_ parts: [String], _ scope: Scope, hint: SQLType?, _ location: SourceLocation) throws -> (BoundExpression, SQLType) {
        if parts.count >= 2, parts[0] == "properties" {
            return try property(parts[1...].joined(separator: "."), qualifier: nil, scope, hint: hint, location)
        }
        if parts.count >= 3, parts[1] == "properties" {
            return try property(parts[2...].joined(separator: "."), qualifier: parts[0], scope, hint: hint, location)
        }
        guard parts.count <= 2 else { throw error(.unknownName, "no column named \(parts.joined(separator: "."))", location) }
        let name = parts.last!
        let qualifier = parts.count == 2 ? parts[0] : nil
        let matches = scope.columns.filter { $0.name == name && (qualifier == nil || $0.qualifier == qualifier) }
        if matches.count > 1 {
            throw error(.unknownName, "column name \(name) is ambiguous; qualify it with a table name or alias", location)
        }
        guard let column = matches.first else {
            if qualifier == nil, name == "current_date" { return (.literal(.date(Int32(SQLValue.floorDiv(now, SQLValue.microsPerDay)))), .date) }
            if qualifier == nil, name == "current_timestamp" { return (.literal(.timestamp(now)), .timestamp) }
            if let qualifier, !scope.tables.contains(where: { $0.alias == qualifier }) {
                throw error(.unknownName, "no table named \(qualifier) in FROM", location)
            }
            let available = scope.columns.map(\.name)
            let hintText = available.isEmpty ? "" : "; columns are " + available.prefix(16).joined(separator: ", ")
            throw error(.unknownName, "no column named \(parts.joined(separator: "."))\(hintText)", location)
        }
        markUsed(column.index, scope)
        return (.column(column.index), column.type)
    }

    func markUsed(_ index: Int, _ scope: Scope) {
        for table in scope.tables {
            if let scan = table.scan, index >= table.offset, index < table.offset + scan.width { scan.used.insert(index - table.offset) }
        }
    }

    func property(_ key: String, qualifier: String?, _ scope: Scope, hint: SQLType?, _ location: SourceLocation) throws -> (BoundExpression, SQLType) {
        let tables = scope.tables.filter { $0.scan != nil && (qualifier == nil || $0.alias == qualifier) }
        guard let table = tables.first, let scan = table.scan else {
            if let qualifier, !scope.tables.contains(where: { $0.alias == qualifier }) {
                throw error(.unknownName, "no table named \(qualifier) in FROM", location)
            }
            throw error(.unknownName, "properties.\(key): only the events and users tables have properties", location)
        }
        guard tables.count == 1 else {
            throw error(.unknownName, "properties.\(key) is ambiguous; qualify it, as alias.properties.\(key)", location)
        }
        guard scan.table != .conversations else {
            throw error(.unknownName, "properties.\(key): the conversations table has no properties", location)
        }
        let kinds = catalog.kinds(of: key)
        let want: PropertyWant
        let type: SQLType
        switch hint {
        case .integer?, .double?:
            want = .numeric
            type = !kinds.isEmpty && kinds.isSubset(of: [.int]) ? .integer : .double
        case .string?:
            (want, type) = (.string, .string)
        case .boolean?:
            (want, type) = (.boolean, .boolean)
        case .date?, .timestamp?:
            (want, type) = (.timestamp, .timestamp)
        default:
            if kinds.isEmpty {
                (want, type) = (.any, .null)
            } else if kinds.isSubset(of: [.string, .json]) {
                (want, type) = (.string, .string)
            } else if kinds.isSubset(of: [.int]) {
                (want, type) = (.numeric, .integer)
            } else if kinds.isSubset(of: [.int, .double]) {
                (want, type) = (.numeric, .double)
            } else if kinds == [.bool] {
                (want, type) = (.boolean, .boolean)
            } else {
                // Mixed types and no context: every value as text.
                (want, type) = (.any, .string)
            }
        }
        let slot = scan.slot(key: key, want: want)!
        scan.used.insert(slot)
        return (.column(table.offset + slot), type)
    }
}
