/// Why a query was refused or stopped. Each kind maps to one HTTP status and one error code.
public struct SQLError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The text is not in the dialect's grammar.
        case syntax = "syntax_error"
        /// A table, column, function or alias that does not exist.
        case unknownName = "unknown_name"
        /// Valid SQL that the dialect does not have (writes, other statements, functions).
        case unsupported = "unsupported"
        /// Operands or arguments of the wrong type.
        case type = "type_error"
        /// `?` parameters that do not match the placeholders.
        case parameter = "invalid_parameter"
        case timeout = "timeout"
        case memoryBudget = "memory_budget_exceeded"
        case tooManyRows = "result_too_large"
        /// A value that cannot be computed (bad cast, overflow).
        case evaluation = "evaluation_error"
    }

    public var kind: Kind
    public var message: String
    public var location: SourceLocation?
    /// The query line with a caret under `location`.
    public var excerpt: String?

    public init(_ kind: Kind, _ message: String, at location: SourceLocation? = nil, in source: String? = nil) {
        self.kind = kind
        self.message = message
        self.location = location
        if let location, let source {
            let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
            if location.line - 1 < lines.count {
                let line = String(lines[location.line - 1])
                excerpt = line + "\n" + String(repeating: " ", count: max(0, location.column - 1)) + "^"
            }
        }
    }

    /// `message at line:column`, then the excerpt.
    public var description: String {
        var text = message
        if let location { text += " at \(location.line):\(location.column)" }
        if let excerpt { text += "\n" + excerpt }
        return text
    }

    /// The message and position without the excerpt: one line, for JSON error bodies.
    public var summary: String {
        guard let location else { return message }
        return message + " at \(location.line):\(location.column)"
    }
}
