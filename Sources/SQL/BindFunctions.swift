import QueryEngine

extension Binder {
    func bindAggregate(_ name: String, _ args: [Expression], distinct: Bool, _ input: Scope, _ location: SourceLocation) throws -> AggregateCall {
        for a in args where containsAggregate(a) {
            throw error(.type, "aggregate functions cannot be nested", a.location)
        }
        func argument(_ hint: SQLType?) throws -> (BoundExpression, SQLType) {
            guard let first = args.first else { throw error(.type, "\(name) takes an argument", location) }
            if case .star = first.kind { throw error(.type, "only count takes *", first.location) }
            return try bind(first, input, hint: hint)
        }
        func fraction(_ e: Expression) throws -> Double {
            var v: SQLValue = .null
            if case .literal(let x) = e.kind { v = x }
            if case .parameter(let i) = e.kind { v = try parameter(i, e.location) }
            let p: Double
            switch v {
            case .int(let n): p = Double(n)
            case .double(let d): p = d
            default: throw error(.type, "\(name)'s fraction must be a constant number between 0 and 1", e.location)
            }
            guard p >= 0, p <= 1 else { throw error(.type, "\(name)'s fraction must be between 0 and 1, not \(p)", e.location) }
            return p
        }
        switch name {
        case "count":
            if args.count == 1, case .star = args[0].kind {
                guard !distinct else { throw error(.syntax, "count(DISTINCT *) is not valid; name a column", location) }
                return AggregateCall(function: .countRows, distinct: false, argument: nil, argumentType: .null)
            }
            guard args.count == 1 else { throw error(.type, "count takes one argument or *", location) }
            let (b, t) = try argument(nil)
            return AggregateCall(function: .count, distinct: distinct, argument: b, argumentType: t)
        case "sum", "avg", "mean":
            guard args.count == 1 else { throw error(.type, "\(name) takes one argument", location) }
            let (b, t) = try argument(.double)
            guard t.isNumeric || t == .null else { throw error(.type, "\(name) needs numbers, not \(t)", args[0].location) }
            return AggregateCall(function: name == "sum" ? .sum : .average, distinct: distinct, argument: b, argumentType: t)
        case "min", "max":
            guard args.count == 1 else { throw error(.type, "\(name) takes one argument", location) }
            let (b, t) = try argument(nil)
            return AggregateCall(function: name == "min" ? .minimum : .maximum, distinct: false, argument: b, argumentType: t)
        case "median", "percentile_cont", "quantile_cont", "quantile":
            let p: Double
            if name == "median" {
                guard args.count == 1 else { throw error(.type, "median takes one argument", location) }
                p = 0.5
            } else {
                guard args.count == 2 else { throw error(.type, "\(name) takes (value, fraction), e.g. \(name)(x, 0.95)", location) }
                p = try fraction(args[1])
            }
            let (b, t) = try argument(.double)
            guard t.isNumeric || t == .null else { throw error(.type, "\(name) needs numbers, not \(t)", args[0].location) }
            return AggregateCall(function: .percentile(p), distinct: false, argument: b, argumentType: t)
        default:
            throw error(.unsupported, "function \(name) is not supported", location)
        }
    }

    func bindFunction(
        _ name: String, _ args: [Expression], hint: SQLType?, _ location: SourceLocation,
        _ sub: (Expression, SQLType?) throws -> (BoundExpression, SQLType)
    ) throws -> (BoundExpression, SQLType) {
        func arity(_ n: ClosedRange<Int>) throws {
            guard n.contains(args.count) else {
                let expected = n.lowerBound == n.upperBound ? "\(n.lowerBound)" : "\(n.lowerBound) to \(n.upperBound)"
                throw error(.type, "\(name) takes \(expected) argument\(n.upperBound == 1 ? "" : "s"), not \(args.count)", location)
            }
        }
        func typed(_ i: Int, _ hint: SQLType?, _ allowed: Set<SQLType>, _ what: String) throws -> BoundExpression {
            let (b, t) = try sub(args[i], hint)
            guard allowed.contains(t) || t == .null else { throw error(.type, "\(name) needs \(what), not \(t)", args[i].location) }
            return b
        }
        func unit(_ i: Int) throws -> String {
            guard case .literal(.string(let u)) = args[i].kind, DateUnit(rawValue: u.lowercased()) != nil else {
                throw error(.type, "\(name)'s unit must be one of \(DateUnit.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", "))", args[i].location)
            }
            return u.lowercased()
        }
        switch name {
        case "lower", "upper":
            try arity(1...1)
            return (.function(name == "lower" ? .lower : .upper, [try typed(0, .string, [.string], "a string")]), .string)
        case "length":
            try arity(1...1)
            return (.function(.length, [try typed(0, .string, [.string], "a string")]), .integer)
        case "abs":
            try arity(1...1)
            let (b, t) = try sub(args[0], .double)
            guard t.isNumeric || t == .null else { throw error(.type, "abs needs a number, not \(t)", args[0].location) }
            return (.function(.abs, [b]), t)
        case "round":
            try arity(1...2)
            var bound = [try typed(0, .double, [.integer, .double], "a number")]
            if args.count == 2 { bound.append(try typed(1, .integer, [.integer], "a whole number of digits")) }
            return (.function(.round, bound), .double)
        case "coalesce", "greatest", "least":
            try arity(1...64)
            var bound: [BoundExpression] = []
            var types: [(SQLType, SourceLocation)] = []
            let firstTyped = args.first { !isContextTyped($0) }
            let contextType = try firstTyped.map { try sub($0, hint).1 } ?? hint
            for a in args {
                let (b, t) = try sub(a, contextType)
                bound.append(b)
                types.append((t, a.location))
            }
            let function: ScalarFunction = name == "coalesce" ? .coalesce : name == "greatest" ? .greatest : .least
            let type = try unify(types, "\(name)'s arguments")
            return (.function(function, bound.indices.map { Self.widen(bound[$0], from: types[$0].0, to: type) }), type)
        case "nullif":
            try arity(2...2)
            let (a, t) = try sub(args[0], hint)
            let (b, u) = try sub(args[1], t)
            try checkComparable(t, u, location)
            return (.function(.nullif, [a, b]), t)
        case "concat":
            try arity(1...64)
            return (.function(.concat, try args.map { try sub($0, .string).0 }), .string)
        case "date_trunc":
            try arity(2...3)
            let u = try unit(0)
            let (b, t) = try sub(args[1], .timestamp)
            guard t == .timestamp || t == .date || t == .null else { throw error(.type, "date_trunc needs a timestamp or date, not \(t)", args[1].location) }
            if args.count == 3 {
                // The local periods of an IANA zone; the result is the instant one starts.
                guard case .literal(.string(let zone)) = args[2].kind else {
                    throw error(.type, "date_trunc's time zone must be a string literal such as 'Europe/Berlin'", args[2].location)
                }
                guard ZoneOffsets.named(zone) != nil else {
                    throw error(.type, "'\(zone)' is not an IANA time zone name", args[2].location)
                }
                let instant = t == .date ? BoundExpression.cast(b, .timestamp) : b
                return (.function(.dateTrunc, [.literal(.string(u)), instant, .literal(.string(zone))]), .timestamp)
            }
            let resultType: SQLType = t == .date && DateUnit(rawValue: u)!.isWholeDays ? .date : .timestamp
            return (.function(.dateTrunc, [.literal(.string(u)), b]), resultType)
        case "date_diff", "datediff":
            try arity(3...3)
            let u = try unit(0)
            let a = try typed(1, .timestamp, [.timestamp, .date], "timestamps or dates")
            let b = try typed(2, .timestamp, [.timestamp, .date], "timestamps or dates")
            return (.function(.dateDiff, [.literal(.string(u)), a, b]), .integer)
        case "now", "current_timestamp":
            try arity(0...0)
            return (.literal(.timestamp(now)), .timestamp)
        case "today", "current_date":
            try arity(0...0)
            return (.literal(.date(Int32(SQLValue.floorDiv(now, SQLValue.microsPerDay)))), .date)
        default:
            throw error(.unsupported, "function \(name) is not supported; docs/SQL.md lists the functions", location)
        }
    }
}

/// Units of `date_trunc` and `date_diff`. Weeks start on Monday (ISO).
enum DateUnit: String, CaseIterable {
    case second, minute, hour, day, week, month, quarter, year

    var isWholeDays: Bool {
        switch self {
        case .second, .minute, .hour: false
        default: true
        }
    }
}
