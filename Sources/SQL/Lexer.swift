/// Where a token starts in the query text, for error messages.
public struct SourceLocation: Sendable, Equatable {
    public var offset: Int
    public var line: Int
    public var column: Int
}

public enum TokenKind: Sendable, Equatable {
    case identifier(String)
    /// A double-quoted identifier: never a keyword, case kept.
    case quotedIdentifier(String)
    case keyword(Keyword)
    case string(String)
    case integer(Int64)
    case number(Double)
    case parameter
    case symbol(String)
    case end
}

/// Reserved words: they cannot be bare column names or aliases (quote them to use them so).
/// `date`, `timestamp`, `first` and `last` are not reserved: they are column names too, and
/// the parser reads them as keywords only where one fits (`DATE '…'`, `NULLS FIRST`).
public enum Keyword: String, Sendable, CaseIterable {
    case select, distinct, from, `where`, group, by, having, order, limit, offset, asc, desc, nulls
    case and, or, not, `in`, between, like, ilike, `is`, null, `true`, `false`, `case`, when, then, `else`, end
    case cast, `as`, join, inner, left, outer, on, with, interval, all, union
    case right, full, cross

    static let byName: [String: Keyword] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0) })
}

public struct Token: Sendable {
    public var kind: TokenKind
    public var location: SourceLocation
}

/// Splits query text into tokens. The whole text is tokenized before parsing, so a bad
/// character is reported at its own position.
struct Lexer {
    let text: [UInt8]
    let source: String
    var position = 0
    var line = 1
    var lineStart = 0

    init(_ source: String) {
        self.source = source
        text = Array(source.utf8)
    }

    var location: SourceLocation {
        // Columns count characters, not bytes, so carets line up under multi-byte text.
        let column = String(decoding: text[lineStart..<position], as: UTF8.self).count + 1
        return SourceLocation(offset: position, line: line, column: column)
    }

    mutating func tokens() throws(SQLError) -> [Token] {
        var result: [Token] = []
        while true {
            try skipSpaceAndComments()
            let start = location
            guard position < text.count else {
                result.append(Token(kind: .end, location: start))
                return result
            }
            result.append(Token(kind: try next(start), location: start))
        }
    }

    mutating func skipSpaceAndComments() throws(SQLError) {
        while position < text.count {
            let c = text[position]
            if c == UInt8(ascii: "\n") {
                position += 1
                line += 1
                lineStart = position
            } else if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") {
                position += 1
            } else if c == UInt8(ascii: "-"), peek(1) == UInt8(ascii: "-") {
                while position < text.count, text[position] != UInt8(ascii: "\n") { position += 1 }
            } else if c == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "*") {
                let start = location
                position += 2
                while true {
                    guard position < text.count else { throw SQLError(.syntax, "unterminated comment", at: start, in: source) }
                    if text[position] == UInt8(ascii: "*"), peek(1) == UInt8(ascii: "/") {
                        position += 2
                        break
                    }
                    if text[position] == UInt8(ascii: "\n") {
                        line += 1
                        lineStart = position + 1
                    }
                    position += 1
                }
            } else {
                return
            }
        }
    }

    func peek(_ ahead: Int) -> UInt8? {
        position + ahead < text.count ? text[position + ahead] : nil
    }

    static func isIdentifierStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "_")
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    mutating func next(_ start: SourceLocation) throws(SQLError) -> TokenKind {
        let c = text[position]
        if Self.isIdentifierStart(c) {
            let begin = position
            while position < text.count, Self.isIdentifierStart(text[position]) || Self.isDigit(text[position]) { position += 1 }
            let word = String(decoding: text[begin..<position], as: UTF8.self)
            if let keyword = Keyword.byName[word.lowercased()] { return .keyword(keyword) }
            return .identifier(word.lowercased())
        }
        if Self.isDigit(c) || (c == UInt8(ascii: ".") && peek(1).map(Self.isDigit) == true) {
            return try number(start)
        }
        switch c {
        case UInt8(ascii: "'"):
            return .string(try quoted(UInt8(ascii: "'"), start, what: "string literal"))
        case UInt8(ascii: "\""):
            let name = try quoted(UInt8(ascii: "\""), start, what: "quoted identifier")
            guard !name.isEmpty else { throw SQLError(.syntax, "empty quoted identifier", at: start, in: source) }
            return .quotedIdentifier(name)
        case UInt8(ascii: "?"):
            position += 1
            return .parameter
        default:
            break
        }
        for symbol in ["<=", ">=", "<>", "!=", "||", "::"] where text[position...].starts(with: symbol.utf8) {
            position += 2
            return .symbol(symbol)
        }
        if "(),.*+-/%=<>[];".utf8.contains(c) {
            position += 1
            return .symbol(String(UnicodeScalar(c)))
        }
        let character = String(decoding: text[position...].prefix(4), as: UTF8.self).first.map(String.init) ?? "?"
        throw SQLError(.syntax, "unexpected character '\(character)'", at: start, in: source)
    }

    mutating func quoted(_ quote: UInt8, _ start: SourceLocation, what: String) throws(SQLError) -> String {
        position += 1
        var bytes: [UInt8] = []
        while true {
            guard position < text.count else { throw SQLError(.syntax, "unterminated \(what)", at: start, in: source) }
            let c = text[position]
            position += 1
            if c == quote {
                if position < text.count, text[position] == quote {
                    bytes.append(quote)
                    position += 1
                    continue
                }
                return String(decoding: bytes, as: UTF8.self)
            }
            if c == UInt8(ascii: "\n") {
                line += 1
                lineStart = position
            }
            bytes.append(c)
        }
    }

    mutating func number(_ start: SourceLocation) throws(SQLError) -> TokenKind {
        let begin = position
        var isInteger = true
        while position < text.count, Self.isDigit(text[position]) { position += 1 }
        if position < text.count, text[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            while position < text.count, Self.isDigit(text[position]) { position += 1 }
        }
        if position < text.count, text[position] == UInt8(ascii: "e") || text[position] == UInt8(ascii: "E") {
            let save = position
            position += 1
            if position < text.count, text[position] == UInt8(ascii: "+") || text[position] == UInt8(ascii: "-") { position += 1 }
            if position < text.count, Self.isDigit(text[position]) {
                isInteger = false
                while position < text.count, Self.isDigit(text[position]) { position += 1 }
            } else {
                position = save
            }
        }
        if position < text.count, Self.isIdentifierStart(text[position]) {
            throw SQLError(.syntax, "malformed number", at: start, in: source)
        }
        let literal = String(decoding: text[begin..<position], as: UTF8.self)
        if isInteger, let value = Int64(literal) { return .integer(value) }
        guard let value = Double(literal), value.isFinite else {
            throw SQLError(.syntax, "number \(literal) is out of range", at: start, in: source)
        }
        return .number(value)
    }
}
