/// Recursive descent over the token list, one function per precedence level:
/// OR < AND < NOT < comparisons (IS, IN, BETWEEN, LIKE) < `||` < `+ -` < `* / %` < unary < postfix.
struct Parser {
    let source: String
    let tokens: [Token]
    var position = 0
    /// `?` placeholders seen so far.
    var parameterCount = 0
    /// Nesting depth, bounded so that hostile input cannot overflow the stack.
    var depth = 0
    static let maximumDepth = 100

    init(_ source: String) throws(SQLError) {
        self.source = source
        var lexer = Lexer(source)
        tokens = try lexer.tokens()
    }

    /// Parses one SELECT statement (a trailing `;` allowed) and nothing else.
    static func parse(_ source: String) throws(SQLError) -> (SelectStatement, parameters: Int) {
        var parser = try Parser(source)
        let statement = try parser.statement()
        return (statement, parser.parameterCount)
    }

    // MARK: Tokens

    var current: Token { tokens[position] }

    mutating func advance() {
        if position < tokens.count - 1 { position += 1 }
    }

    func isKeyword(_ keyword: Keyword) -> Bool {
        if case .keyword(keyword) = current.kind { return true }
        return false
    }

    func isSymbol(_ symbol: String) -> Bool {
        if case .symbol(symbol) = current.kind { return true }
        return false
    }

    /// A non-reserved word such as `date` or `first`, as an identifier.
    func isWord(_ word: String) -> Bool {
        if case .identifier(word) = current.kind { return true }
        return false
    }

    mutating func accept(_ keyword: Keyword) -> Bool {
        guard isKeyword(keyword) else { return false }
        advance()
        return true
    }

    mutating func acceptSymbol(_ symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        advance()
        return true
    }

    mutating func expect(_ keyword: Keyword, _ context: String) throws(SQLError) {
        guard accept(keyword) else { throw error("expected \(keyword.rawValue.uppercased()) \(context)") }
    }

    mutating func expectSymbol(_ symbol: String, _ context: String) throws(SQLError) {
        guard acceptSymbol(symbol) else { throw error("expected '\(symbol)' \(context)") }
    }

    func describe(_ token: Token) -> String {
        switch token.kind {
        case .identifier(let name): "'\(name)'"
        case .quotedIdentifier(let name): "\"\(name)\""
        case .keyword(let k): k.rawValue.uppercased()
        case .string: "a string"
        case .integer, .number: "a number"
        case .parameter: "'?'"
        case .symbol(let s): "'\(s)'"
        case .end: "the end of the query"
        }
    }

    func error(_ message: String, at location: SourceLocation? = nil) -> SQLError {
        SQLError(.syntax, message + ", found \(describe(current))", at: location ?? current.location, in: source)
    }

    /// A left-deep chain (`a + b + c …`) nests one level per operator though the parser
    /// loops: count its links against the same bound, or the binder's recursion would not be.
    mutating func link(_ links: inout Int) throws(SQLError) {
        links += 1
        guard depth + links <= Self.maximumDepth else {
            throw SQLError(.syntax, "expression nests more than \(Self.maximumDepth) levels deep", at: current.location, in: source)
        }
    }

    mutating func enter() throws(SQLError) {
        depth += 1
        guard depth <= Self.maximumDepth else {
            throw SQLError(.syntax, "query nests more than \(Self.maximumDepth) levels deep", at: current.location, in: source)
        }
    }

    // MARK: Statements

    mutating func statement() throws(SQLError) -> SelectStatement {
        if case .identifier(let word) = current.kind, !isKeyword(.select), !isKeyword(.with) {
            let others = ["insert", "update", "delete", "drop", "create", "alter", "attach", "detach", "pragma", "copy", "replace",
                "truncate", "grant", "vacuum", "explain", "set", "begin", "commit", "load", "install", "export", "import", "call"]
            if others.contains(word) {
                throw SQLError(.unsupported, "only SELECT queries are allowed; \(word.uppercased()) is not", at: current.location, in: source)
            }
        }
        let statement = try select()
        _ = acceptSymbol(";")
        guard case .end = current.kind else {
            if isKeyword(.union) {
                throw SQLError(.unsupported, "UNION is not supported", at: current.location, in: source)
            }
            throw error("expected the end of the query")
        }
        return statement
    }

    mutating func select() throws(SQLError) -> SelectStatement {
        try enter()
        defer { depth -= 1 }
        let start = current.location
        var with: [(name: String, query: SelectStatement, location: SourceLocation)] = []
        if accept(.with) {
            repeat {
                let location = current.location
                let name = try identifier("a name after WITH")
                try expect(.as, "after the WITH name")
                try expectSymbol("(", "before the WITH query")
                let query = try select()
                try expectSymbol(")", "after the WITH query")
                with.append((name, query, location))
            } while acceptSymbol(",")
        }
        guard accept(.select) else { throw error("expected SELECT") }
        let distinct = accept(.distinct)
        if !distinct { _ = accept(.all) }
        var items: [SelectItem] = []
        repeat {
            let expression = try self.expression()
            var alias: String?
            if accept(.as) {
                alias = try identifier("an alias after AS")
            } else if case .identifier(let name) = current.kind {
                alias = name
                advance()
            } else if case .quotedIdentifier(let name) = current.kind {
                alias = name
                advance()
            }
            items.append(SelectItem(expression: expression, alias: alias))
        } while acceptSymbol(",")

        var from: FromItem?
        var joins: [Join] = []
        if accept(.from) {
            from = try fromItem()
            while true {
                if acceptSymbol(",") || isKeyword(.right) || isKeyword(.full) || isKeyword(.cross) {
                    throw SQLError(.unsupported, "only [INNER] JOIN and LEFT [OUTER] JOIN with ON are supported", at: tokens[position].location, in: source)
                }
                var kind: Join.Kind
                if accept(.join) {
                    kind = .inner
                } else if accept(.inner) {
                    try expect(.join, "after INNER")
                    kind = .inner
                } else if accept(.left) {
                    _ = accept(.outer)
                    try expect(.join, "after LEFT")
                    kind = .left
                } else {
                    break
                }
                let item = try fromItem()
                try expect(.on, "after the joined table")
                joins.append(Join(kind: kind, item: item, condition: try expression()))
            }
        }
        let filter = accept(.where) ? try expression() : nil
        var groupBy: [Expression] = []
        if accept(.group) {
            try expect(.by, "after GROUP")
            repeat { groupBy.append(try expression()) } while acceptSymbol(",")
        }
        let having = accept(.having) ? try expression() : nil
        var orderBy: [OrderItem] = []
        if accept(.order) {
            try expect(.by, "after ORDER")
            repeat {
                let expression = try self.expression()
                var descending = false
                if accept(.desc) { descending = true } else { _ = accept(.asc) }
                var nullsFirst: Bool?
                if accept(.nulls) {
                    if isWord("first") {
                        nullsFirst = true
                    } else if isWord("last") {
                        nullsFirst = false
                    } else {
                        throw error("expected FIRST or LAST after NULLS")
                    }
                    advance()
                }
                orderBy.append(OrderItem(expression: expression, descending: descending, nullsFirst: nullsFirst))
            } while acceptSymbol(",")
        }
        var limit: Expression?
        var offset: Expression?
        if accept(.limit) { limit = try limitValue("LIMIT") }
        if accept(.offset) { offset = try limitValue("OFFSET") }
        if limit == nil, accept(.limit) { limit = try limitValue("LIMIT") }
        return SelectStatement(
            with: with, distinct: distinct, items: items, from: from, joins: joins, filter: filter, groupBy: groupBy, having: having,
            orderBy: orderBy, limit: limit, offset: offset, location: start)
    }

    mutating func limitValue(_ clause: String) throws(SQLError) -> Expression {
        let location = current.location
        switch current.kind {
        case .integer(let n):
            advance()
            return Expression(.literal(.int(n)), at: location)
        case .parameter:
            advance()
            parameterCount += 1
            return Expression(.parameter(parameterCount - 1), at: location)
        default:
            throw error("expected a whole number or ? after \(clause)")
        }
    }

    mutating func fromItem() throws(SQLError) -> FromItem {
        let location = current.location
        if acceptSymbol("(") {
            let query = try select()
            try expectSymbol(")", "after the subquery")
            return .subquery(query, alias: try alias(), location: location)
        }
        var name = try identifier("a table name")
        if acceptSymbol(".") {
            // `schema.table`: no schema is reachable from a query.
            let table = (try? identifier("a table name")) ?? ""
            name += "." + table
        }
        return .table(name: name, alias: try alias(), location: location)
    }

    mutating func alias() throws(SQLError) -> String? {
        if accept(.as) { return try identifier("an alias after AS") }
        switch current.kind {
        case .identifier(let name), .quotedIdentifier(let name):
            advance()
            return name
        default:
            return nil
        }
    }

    mutating func identifier(_ what: String) throws(SQLError) -> String {
        switch current.kind {
        case .identifier(let name), .quotedIdentifier(let name):
            advance()
            return name
        default:
            throw error("expected \(what)")
        }
    }

    // MARK: Expressions

    mutating func expression() throws(SQLError) -> Expression {
        try enter()
        defer { depth -= 1 }
        return try disjunction()
    }

    mutating func disjunction() throws(SQLError) -> Expression {
        var left = try conjunction()
        var links = 0
        while isKeyword(.or) {
            try link(&links)
            let location = current.location
            advance()
            left = Expression(.binary(.or, left, try conjunction()), at: location)
        }
        return left
    }

    mutating func conjunction() throws(SQLError) -> Expression {
        var left = try negation()
        var links = 0
        while isKeyword(.and) {
            try link(&links)
            let location = current.location
            advance()
            left = Expression(.binary(.and, left, try negation()), at: location)
        }
        return left
    }

    mutating func negation() throws(SQLError) -> Expression {
        if isKeyword(.not) {
            let location = current.location
            advance()
            try enter()
            defer { depth -= 1 }
            return Expression(.unary(.not, try negation()), at: location)
        }
        return try comparison()
    }

    mutating func comparison() throws(SQLError) -> Expression {
        let left = try concatenation()
        let location = current.location
        if case .symbol(let s) = current.kind, let op = Self.comparisonOperators[s] {
            advance()
            return Expression(.binary(op, left, try concatenation()), at: location)
        }
        if accept(.is) {
            let negated = accept(.not)
            try expect(.null, "after IS")
            return Expression(.isNull(left, negated: negated), at: location)
        }
        let negated = accept(.not)
        if accept(.in) {
            try expectSymbol("(", "after IN")
            if isKeyword(.select) || isKeyword(.with) {
                let query = try select()
                try expectSymbol(")", "after the IN subquery")
                return Expression(.inSubquery(left, query, negated: negated), at: location)
            }
            var values: [Expression] = []
            repeat { values.append(try expression()) } while acceptSymbol(",")
            try expectSymbol(")", "after the IN list")
            return Expression(.inList(left, values, negated: negated), at: location)
        }
        if accept(.between) {
            let low = try concatenation()
            try expect(.and, "in BETWEEN")
            let high = try concatenation()
            return Expression(.between(left, low: low, high: high, negated: negated), at: location)
        }
        if isKeyword(.like) || isKeyword(.ilike) {
            let caseInsensitive = isKeyword(.ilike)
            advance()
            return Expression(.like(left, pattern: try concatenation(), caseInsensitive: caseInsensitive, negated: negated), at: location)
        }
        if negated { throw error("expected IN, BETWEEN, LIKE or ILIKE after NOT") }
        return left
    }

    static let comparisonOperators: [String: BinaryOperator] = [
        "=": .equal, "<>": .notEqual, "!=": .notEqual, "<": .less, "<=": .lessOrEqual, ">": .greater, ">=": .greaterOrEqual,
    ]

    mutating func concatenation() throws(SQLError) -> Expression {
        var left = try additive()
        var links = 0
        while isSymbol("||") {
            try link(&links)
            let location = current.location
            advance()
            left = Expression(.binary(.concatenate, left, try additive()), at: location)
        }
        return left
    }

    mutating func additive() throws(SQLError) -> Expression {
        var left = try multiplicative()
        var links = 0
        while true {
            let location = current.location
            let op: BinaryOperator
            if isSymbol("+") { op = .add } else if isSymbol("-") { op = .subtract } else { return left }
            try link(&links)
            advance()
            left = Expression(.binary(op, left, try multiplicative()), at: location)
        }
    }

    mutating func multiplicative() throws(SQLError) -> Expression {
        var left = try unary()
        var links = 0
        while true {
            let location = current.location
            let op: BinaryOperator
            if isSymbol("*") { op = .multiply } else if isSymbol("/") { op = .divide } else if isSymbol("%") { op = .modulo } else { return left }
            try link(&links)
            advance()
            left = Expression(.binary(op, left, try unary()), at: location)
        }
    }

    mutating func unary() throws(SQLError) -> Expression {
        let location = current.location
        if isSymbol("-") || isSymbol("+") {
            let op: UnaryOperator = isSymbol("-") ? .negate : .plus
            advance()
            try enter()
            defer { depth -= 1 }
            let operand = try unary()
            // Fold `-5` into a literal so that `-9223372036854775808` fits.
            if op == .negate, case .literal(.int(let n)) = operand.kind { return Expression(.literal(.int(0 &- n)), at: location) }
            if op == .negate, case .literal(.double(let n)) = operand.kind { return Expression(.literal(.double(-n)), at: location) }
            return Expression(.unary(op, operand), at: location)
        }
        var result = try primary()
        while acceptSymbol("::") {
            result = Expression(.cast(result, try typeName()), at: location)
        }
        return result
    }

    mutating func typeName() throws(SQLError) -> SQLType {
        let location = current.location
        let name: String
        switch current.kind {
        case .identifier(let n): name = n
        case .keyword(let k): name = k.rawValue
        default: throw error("expected a type name")
        }
        advance()
        guard let type = SQLType(name: name) else {
            throw SQLError(.unsupported, "unknown type \(name); types are integer, double, string, boolean, date and timestamp", at: location, in: source)
        }
        // `varchar(255)`, `decimal(10, 2)`: the size does not matter here.
        if acceptSymbol("(") {
            while !isSymbol(")") {
                guard case .end = current.kind else {
                    advance()
                    continue
                }
                throw error("expected ')' after the type's size")
            }
            advance()
        }
        return type
    }

    mutating func primary() throws(SQLError) -> Expression {
        let token = current
        let location = token.location
        switch token.kind {
        case .integer(let n):
            advance()
            return Expression(.literal(.int(n)), at: location)
        case .number(let n):
            advance()
            return Expression(.literal(.double(n)), at: location)
        case .string(let s):
            advance()
            return Expression(.literal(.string(s)), at: location)
        case .parameter:
            advance()
            parameterCount += 1
            return Expression(.parameter(parameterCount - 1), at: location)
        case .keyword(.null):
            advance()
            return Expression(.literal(.null), at: location)
        case .keyword(.true):
            advance()
            return Expression(.literal(.bool(true)), at: location)
        case .keyword(.false):
            advance()
            return Expression(.literal(.bool(false)), at: location)
        case .keyword(.interval):
            advance()
            guard case .string(let text) = current.kind else { throw error("expected a string such as '7 days' after INTERVAL") }
            guard let interval = SQLValue.interval(parsing: text) else {
                throw SQLError(.syntax, "invalid interval '\(text)'; write e.g. '7 days' or '2 hours 30 minutes'", at: current.location, in: source)
            }
            advance()
            return Expression(.literal(interval), at: location)
        case .keyword(.case):
            advance()
            return try caseExpression(location)
        case .keyword(.cast):
            advance()
            try expectSymbol("(", "after CAST")
            let value = try expression()
            try expect(.as, "in CAST")
            let type = try typeName()
            try expectSymbol(")", "after CAST's type")
            return Expression(.cast(value, type), at: location)
        case .symbol("("):
            advance()
            if isKeyword(.select) || isKeyword(.with) {
                throw SQLError(.unsupported, "scalar subqueries are not supported; use IN (SELECT …), a join or WITH", at: current.location, in: source)
            }
            let inner = try expression()
            try expectSymbol(")", "to close '('")
            return inner
        case .symbol("*"):
            advance()
            return Expression(.star(qualifier: nil), at: location)
        case .identifier(let name), .quotedIdentifier(let name):
            let quoted: Bool
            if case .quotedIdentifier = token.kind { quoted = true } else { quoted = false }
            advance()
            if !quoted, name == "date" || name == "timestamp", case .string(let text) = current.kind {
                return try typedLiteral(name, text)
            }
            if !quoted, isSymbol("(") {
                return try functionCall(name, location)
            }
            return try dottedName(name, location)
        default:
            throw error("expected an expression")
        }
    }

    mutating func typedLiteral(_ type: String, _ text: String) throws(SQLError) -> Expression {
        let location = current.location
        advance()
        let value = type == "date" ? SQLValue.date(parsing: text) : SQLValue.timestamp(parsing: text)
        guard let value else {
            throw SQLError(.syntax, "invalid \(type.uppercased()) literal '\(text)'", at: location, in: source)
        }
        return Expression(.literal(value), at: location)
    }

    mutating func functionCall(_ name: String, _ location: SourceLocation) throws(SQLError) -> Expression {
        advance()  // (
        var arguments: [Expression] = []
        var distinct = false
        if !isSymbol(")") {
            distinct = accept(.distinct)
            repeat { arguments.append(try expression()) } while acceptSymbol(",")
        }
        try expectSymbol(")", "after the arguments of \(name)")
        if isWord("over") || isWord("filter") || isWord("within") {
            throw SQLError(.unsupported, "window functions and aggregate modifiers (\(describe(current))) are not supported", at: current.location, in: source)
        }
        return Expression(.function(name: name, arguments: arguments, distinct: distinct), at: location)
    }

    mutating func dottedName(_ first: String, _ location: SourceLocation) throws(SQLError) -> Expression {
        var parts = [first]
        while acceptSymbol(".") {
            if acceptSymbol("*") {
                guard parts.count == 1 else { throw error("expected a name after '.'") }
                return Expression(.star(qualifier: first), at: location)
            }
            switch current.kind {
            case .identifier(let name), .quotedIdentifier(let name):
                parts.append(name)
                advance()
            case .keyword(let k):
                // Property keys may be words the dialect reserves: `properties.end`.
                parts.append(k.rawValue)
                advance()
            default:
                throw error("expected a name after '.'")
            }
        }
        if acceptSymbol("[") {
            guard case .string(let key) = current.kind else { throw error("expected a quoted key inside [ ]") }
            advance()
            try expectSymbol("]", "after the key")
            guard parts.last == "properties", parts.count <= 2 else {
                throw SQLError(.unsupported, "[ ] applies only to properties, as properties['key']", at: location, in: source)
            }
            return Expression(.propertySubscript(qualifier: parts.count == 2 ? parts[0] : nil, key: key), at: location)
        }
        return Expression(.name(parts), at: location)
    }

    mutating func caseExpression(_ location: SourceLocation) throws(SQLError) -> Expression {
        var operand: Expression?
        if !isKeyword(.when) { operand = try expression() }
        var branches: [(condition: Expression, result: Expression)] = []
        while accept(.when) {
            let condition = try expression()
            try expect(.then, "after WHEN's condition")
            branches.append((condition, try expression()))
        }
        guard !branches.isEmpty else { throw error("expected WHEN in CASE") }
        let otherwise = accept(.else) ? try expression() : nil
        try expect(.end, "to close CASE")
        return Expression(.caseWhen(operand: operand, branches: branches, otherwise: otherwise), at: location)
    }
}
