#if canImport(Glibc)
import Glibc
#endif
public import ColumnStore

/// A value a filter compares with, as the request gave it.
public enum FilterValue: Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case list([FilterValue])
}

/// The operators of `conventions.md` → Property filters.
public enum FilterOperator: String, Sendable, CaseIterable {
    case equals = "="
    case notEquals = "!="
    case greater = ">"
    case greaterOrEqual = ">="
    case less = "<"
    case lessOrEqual = "<="
    case isIn = "in"
    case notIn = "not_in"
    case contains
    case notContains = "not_contains"
    case containsIgnoringCase = "icontains"
    case isSet = "is_set"
    case isNotSet = "is_not_set"

    /// Negative operators also hold for events without the property, as in PostHog: "plan
    /// != pro" keeps events that carry no plan at all.
    var holdsWhenAbsent: Bool {
        switch self {
        case .notEquals, .notIn, .notContains, .isNotSet: true
        default: false
        }
    }

    public var needsValue: Bool { self != .isSet && self != .isNotSet }
}

/// `{"property": "resolved", "operator": "=", "value": true}`. The top-level fields
/// `event_name`, `user_id`, `anonymous_id`, `session_id` and `bot_id` may be named as the
/// property; any other name is an event property (a JSON `null` value counts as not set).
public struct PropertyFilter: Sendable, Equatable {
    public var property: String
    public var op: FilterOperator
    public var value: FilterValue?

    public init(property: String, op: FilterOperator, value: FilterValue?) {
        self.property = property
        self.op = op
        self.value = value
    }

    static let topLevel: Set<String> = ["event_name", "user_id", "anonymous_id", "session_id", "bot_id"]

    /// Whether a present value satisfies the filter. Values of another type than the filter's
    /// never equal it and never order against it.
    func holds(string: String) -> Bool {
        switch op {
        case .isSet: return true
        case .isNotSet: return false
        case .contains: if case .string(let v) = value { return string.contains(v) } else { return false }
        case .notContains: if case .string(let v) = value { return !string.contains(v) } else { return true }
        case .containsIgnoringCase:
            if case .string(let v) = value { return string.lowercased().contains(v.lowercased()) } else { return false }
        default: return compare { other in
            if case .string(let s) = other { return string < s ? -1 : string == s ? 0 : 1 }
            return nil
        }
        }
    }

    func holds(number: Double) -> Bool {
        holdsForNonString { other in
            if case .number(let n) = other { return number < n ? -1 : number == n ? 0 : 1 }
            return nil
        }
    }

    func holds(bool: Bool) -> Bool {
        holdsForNonString { other in
            if case .bool(let b) = other { return b == bool ? 0 : nil }
            return nil
        }
    }

    /// Numbers and booleans: substring operators never match them (`not_contains` always does).
    private func holdsForNonString(_ order: (FilterValue) -> Int?) -> Bool {
        switch op {
        case .isSet: return true
        case .isNotSet: return false
        case .contains, .containsIgnoringCase: return false
        case .notContains: return true
        default: return compare(order)
        }
    }

    /// Applies a comparison operator given how the row value orders against a filter value
    /// (nil: not comparable, e.g. another type).
    private func compare(_ order: (FilterValue) -> Int?) -> Bool {
        guard let value else { return false }
        switch op {
        case .equals: return order(value) == 0
        case .notEquals: return order(value) != 0
        case .greater: return order(value).map { $0 > 0 } ?? false
        case .greaterOrEqual: return order(value).map { $0 >= 0 } ?? false
        case .less: return order(value).map { $0 < 0 } ?? false
        case .lessOrEqual: return order(value).map { $0 <= 0 } ?? false
        case .isIn, .notIn:
            let list: [FilterValue]
            if case .list(let l) = value { list = l } else { list = [value] }
            let found = list.contains { order($0) == 0 }
            return op == .isIn ? found : !found
        default: return false
        }
    }

    static func bytes(_ haystack: ArraySlice<UInt8>, contain needle: [UInt8]) -> Bool {
        if needle.isEmpty { return true }
        guard haystack.count >= needle.count else { return false }
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                let first = n[0]
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first && memcmp(h.baseAddress! + i, n.baseAddress!, n.count) == 0 { return true }
                    i += 1
                }
                return false
            }
        }
    }

    /// The filter's verdict for each code of `dictionary`, and last for the null code of
    /// rows without a value.
    func verdicts(_ dictionary: StringDictionary) -> [Bool] {
        var table = [Bool](repeating: op.holdsWhenAbsent, count: dictionary.count + 1)
        if (op == .contains || op == .notContains), case .string(let needle) = value {
            // Substring search straight on the dictionary's bytes: no String per entry.
            let pattern = Array(needle.utf8)
            for code in 0..<dictionary.count {
                let found = Self.bytes(dictionary.bytes(code), contain: pattern)
                table[code] = op == .contains ? found : !found
            }
        } else {
            for code in 0..<dictionary.count { table[code] = holds(string: dictionary.string(code)) }
        }
        return table
    }

    /// The filter in the form a vector scan tests on the rows it still holds: a verdict per
    /// code when the property is one dictionary-coded column (the usual case), else a verdict
    /// per row.
    func predicate(in columns: BlockColumns, people: IdTable, sessions: IdTable) throws -> RowPredicate {
        let candidates: [DecodedColumn]
        if Self.topLevel.contains(property) {
            candidates = try columns.builtin(property).map { [$0] } ?? []
        } else {
            candidates = try columns.property(property)
        }
        if candidates.isEmpty { return .constant(op.holdsWhenAbsent) }
        if candidates.count == 1, case .codes(let codes, let dictionary) = candidates[0].values {
            return .codes(codes, verdicts(dictionary))
        }
        return .mask(try rows(in: columns, people: people, sessions: sessions))
    }

    /// The rows of a block for which the filter holds.
    public func rows(in columns: BlockColumns, people: IdTable, sessions: IdTable) throws -> [Bool] {
        let n = columns.rows
        var result = [Bool](repeating: op.holdsWhenAbsent, count: n)
        if Self.topLevel.contains(property) {
            guard let column = try columns.builtin(property) else { return result }
            switch column.values {
            case .codes(let codes, let dictionary):
                let matches = codeMatches(codes, rows: n) { code in
                    code < dictionary.count ? holds(string: dictionary.string(code)) : op.holdsWhenAbsent
                }
                return matches
            case .ints(let ids):
                let table = property == "session_id" ? sessions : people
                var memo: [Int64: Bool] = [:]
                for r in 0..<n where column.isPresent(r) {
                    if let m = memo[ids[r]] {
                        result[r] = m
                    } else {
                        let m = holds(string: table.string(Int(ids[r])))
                        memo[ids[r]] = m
                        result[r] = m
                    }
                }
                return result
            default:
                return result
            }
        }
        for column in try columns.property(property) {
            switch column.values {
            case .codes(let codes, let dictionary):
                // One verdict per code, the null code (absent rows) included, then a lookup.
                let table = verdicts(dictionary)
                let absent = op.holdsWhenAbsent
                result.withUnsafeMutableBufferPointer { out in
                    table.withUnsafeBufferPointer { t in
                        // Rows absent here may hold the key with another type: keep their verdict.
                        switch codes {
                        case .u8(let c): for r in 0..<n { let v = t[Int(c[r])]; if v != absent { out[r] = v } }
                        case .u16(let c): for r in 0..<n { let v = t[Int(c[r])]; if v != absent { out[r] = v } }
                        case .u32(let c): for r in 0..<n { let v = t[Int(c[r])]; if v != absent { out[r] = v } }
                        }
                    }
                }
            case .ints(let v):
                column.forEachPresentRow(n) { r in result[r] = holds(number: Double(v[r])) }
            case .doubles(let v):
                column.forEachPresentRow(n) { r in result[r] = holds(number: v[r]) }
            case .bools(let v):
                column.forEachPresentRow(n) { r in result[r] = holds(bool: v[r] != 0) }
            case .presenceOnly:
                break  // JSON null: not set
            }
        }
        return result
    }
}

/// Rows for which every filter holds.
func rows(matchingAll filters: [PropertyFilter], in columns: BlockColumns, people: IdTable, sessions: IdTable) throws -> [Bool]? {
    guard !filters.isEmpty else { return nil }
    var result = [Bool](repeating: true, count: columns.rows)
    for filter in filters {
        let m = try filter.rows(in: columns, people: people, sessions: sessions)
        for r in 0..<columns.rows where !m[r] { result[r] = false }
    }
    return result
}
