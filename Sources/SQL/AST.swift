/// The parsed query, before names are resolved. Every node keeps where it came from so that
/// the binder's errors point into the text too.
public struct Expression: Sendable {
    public indirect enum Kind: Sendable {
        case literal(SQLValue)
        /// The `index`-th `?` of the query, from 0.
        case parameter(Int)
        /// A dotted name as written: `user_id`, `e.user_id`, `properties.plan`, `e.properties.a.b`.
        case name([String])
        /// `properties['key']`, optionally qualified by a table alias.
        case propertySubscript(qualifier: String?, key: String)
        /// `*` or `alias.*` in a select list, and `count(*)`'s argument.
        case star(qualifier: String?)
        case unary(UnaryOperator, Expression)
        case binary(BinaryOperator, Expression, Expression)
        case function(name: String, arguments: [Expression], distinct: Bool)
        case isNull(Expression, negated: Bool)
        case inList(Expression, [Expression], negated: Bool)
        case inSubquery(Expression, SelectStatement, negated: Bool)
        case between(Expression, low: Expression, high: Expression, negated: Bool)
        case like(Expression, pattern: Expression, caseInsensitive: Bool, negated: Bool)
        case caseWhen(operand: Expression?, branches: [(condition: Expression, result: Expression)], otherwise: Expression?)
        case cast(Expression, SQLType)
    }

    public var kind: Kind
    public var location: SourceLocation

    public init(_ kind: Kind, at location: SourceLocation) {
        self.kind = kind
        self.location = location
    }
}

public enum UnaryOperator: String, Sendable {
    case negate = "-"
    case plus = "+"
    case not = "NOT"
}

public enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", modulo = "%", concatenate = "||"
    case equal = "=", notEqual = "<>", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case and = "AND", or = "OR"

    var isComparison: Bool {
        switch self {
        case .equal, .notEqual, .less, .lessOrEqual, .greater, .greaterOrEqual: true
        default: false
        }
    }
}

public struct SelectItem: Sendable {
    public var expression: Expression
    public var alias: String?
}

public indirect enum FromItem: Sendable {
    case table(name: String, alias: String?, location: SourceLocation)
    case subquery(SelectStatement, alias: String?, location: SourceLocation)
}

public struct Join: Sendable {
    public enum Kind: Sendable { case inner, left }
    public var kind: Kind
    public var item: FromItem
    public var condition: Expression
}

public struct OrderItem: Sendable {
    public var expression: Expression
    public var descending: Bool
    /// nil: the default, NULLs last ascending and first descending (as PostgreSQL).
    public var nullsFirst: Bool?
}

public final class SelectStatement: Sendable {
    public let with: [(name: String, query: SelectStatement, location: SourceLocation)]
    public let distinct: Bool
    public let items: [SelectItem]
    public let from: FromItem?
    public let joins: [Join]
    public let filter: Expression?
    public let groupBy: [Expression]
    public let having: Expression?
    public let orderBy: [OrderItem]
    public let limit: Expression?
    public let offset: Expression?
    public let location: SourceLocation

    init(
        with: [(name: String, query: SelectStatement, location: SourceLocation)], distinct: Bool, items: [SelectItem], from: FromItem?,
        joins: [Join], filter: Expression?, groupBy: [Expression], having: Expression?, orderBy: [OrderItem], limit: Expression?,
        offset: Expression?, location: SourceLocation
    ) {
        self.with = with
        self.distinct = distinct
        self.items = items
        self.from = from
        self.joins = joins
        self.filter = filter
        self.groupBy = groupBy
        self.having = having
        self.orderBy = orderBy
        self.limit = limit
        self.offset = offset
        self.location = location
    }
}
