import EventLog
import QueryEngine
import Foundation

/// Evaluates bound expressions over one row. SQL's three-valued logic: NULL in, NULL out,
/// except for AND/OR (FALSE AND NULL is FALSE), IS NULL, COALESCE and CASE.
enum Evaluator {
    static func evaluate(_ e: BoundExpression, _ row: [SQLValue]) throws -> SQLValue {
        switch e {
        case .column(let i): return row[i]
        case .literal(let v): return v
        case .unary(let op, let x):
            let v = try evaluate(x, row)
            switch (op, v) {
            case (_, .null): return .null
            case (.not, .bool(let b)): return .bool(!b)
            case (.negate, .int(let n)):
                let (r, overflow) = Int64(0).subtractingReportingOverflow(n)
                if overflow { throw SQLError(.evaluation, "integer overflow negating \(n)") }
                return .int(r)
            case (.negate, .double(let d)): return .double(-d)
            case (.negate, .interval(let m, let u)): return .interval(months: -m, micros: -u)
            default: return v
            }
        case .binary(let op, let l, let r):
            return try binary(op, l, r, row)
        case .function(let f, let args):
            return try function(f, args, row)
        case .isNull(let x, let negated):
            return .bool(try evaluate(x, row).isNull != negated)
        case .inList(let x, let list, let negated):
            let v = try evaluate(x, row)
            if v.isNull { return .null }
            var sawNull = false
            for item in list {
                let w = try evaluate(item, row)
                if w.isNull {
                    sawNull = true
                } else if SQLValue.compare(v, w) == 0 {
                    return .bool(!negated)
                }
            }
            return sawNull ? .null : .bool(negated)
        case .inSubquery(let x, let result, let negated):
            // Nothing is IN an empty set, NULL included.
            if result.values.isEmpty && !result.hasNull { return .bool(negated) }
            let v = try evaluate(x, row)
            if v.isNull { return .null }
            if result.values.contains(v) { return .bool(!negated) }
            return result.hasNull ? .null : .bool(negated)
        case .like(let x, let pattern, let compiled, let caseInsensitive, let negated):
            guard case .string(let s) = try evaluate(x, row) else { return .null }
            if let compiled { return .bool(compiled.matches(s) != negated) }
            guard case .string(let p) = try evaluate(pattern, row) else { return .null }
            return .bool(LikePattern(p, caseInsensitive: caseInsensitive).matches(s) != negated)
        case .caseWhen(_, let branches, let otherwise):
            for (condition, result) in branches {
                if case .bool(true) = try evaluate(condition, row) { return try evaluate(result, row) }
            }
            return try otherwise.map { try evaluate($0, row) } ?? .null
        case .cast(let x, let type):
            return try cast(try evaluate(x, row), to: type, location: nil, source: nil)
        }
    }

    /// Whether a WHERE / HAVING / ON condition holds (NULL does not).
    @inline(__always)
    static func holds(_ e: BoundExpression, _ row: [SQLValue]) throws -> Bool {
        if case .bool(true) = try evaluate(e, row) { return true }
        return false
    }

    static func binary(_ op: BinaryOperator, _ l: BoundExpression, _ r: BoundExpression, _ row: [SQLValue]) throws -> SQLValue {
        switch op {
        case .and:
            let a = try evaluate(l, row)
            if case .bool(false) = a { return .bool(false) }
            let b = try evaluate(r, row)
            if case .bool(false) = b { return .bool(false) }
            if a.isNull || b.isNull { return .null }
            return .bool(true)
        case .or:
            let a = try evaluate(l, row)
            if case .bool(true) = a { return .bool(true) }
            let b = try evaluate(r, row)
            if case .bool(true) = b { return .bool(true) }
            if a.isNull || b.isNull { return .null }
            return .bool(false)
        default:
            break
        }
        let a = try evaluate(l, row)
        let b = try evaluate(r, row)
        if a.isNull || b.isNull { return .null }
        switch op {
        case .equal: return SQLValue.compare(a, b).map { .bool($0 == 0) } ?? .null
        case .notEqual: return SQLValue.compare(a, b).map { .bool($0 != 0) } ?? .null
        case .less: return SQLValue.compare(a, b).map { .bool($0 < 0) } ?? .null
        case .lessOrEqual: return SQLValue.compare(a, b).map { .bool($0 <= 0) } ?? .null
        case .greater: return SQLValue.compare(a, b).map { .bool($0 > 0) } ?? .null
        case .greaterOrEqual: return SQLValue.compare(a, b).map { .bool($0 >= 0) } ?? .null
        case .concatenate: return .string(text(a) + text(b))
        default: return try arithmetic(op, a, b)
        }
    }

    static func text(_ v: SQLValue) -> String {
        if case .string(let s) = v { return s }
        return v.description
    }

    static func double(_ v: SQLValue) -> Double? {
        switch v {
        case .int(let n): Double(n)
        case .double(let d): d
        default: nil
        }
    }

    static func arithmetic(_ op: BinaryOperator, _ a: SQLValue, _ b: SQLValue) throws -> SQLValue {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let result: (Int64, Bool)
            switch op {
            case .add: result = x.addingReportingOverflow(y)
            case .subtract: result = x.subtractingReportingOverflow(y)
            case .multiply: result = x.multipliedReportingOverflow(by: y)
            case .divide: return y == 0 ? .null : .double(Double(x) / Double(y))
            case .modulo:
                if y == 0 { return .null }
                if y == -1 { return .int(0) }
                return .int(x % y)
            default: return .null
            }
            if result.1 { throw SQLError(.evaluation, "integer overflow in \(x) \(op.rawValue) \(y)") }
            return .int(result.0)
        case (.int, .double), (.double, .int), (.double, .double):
            let x = double(a)!
            let y = double(b)!
            switch op {
            case .add: return .double(x + y)
            case .subtract: return .double(x - y)
            case .multiply: return .double(x * y)
            case .divide: return y == 0 ? .null : .double(x / y)
            case .modulo: return y == 0 ? .null : .double(x.truncatingRemainder(dividingBy: y))
            default: return .null
            }
        case (.timestamp(let t), .interval(let m, let u)):
            return .timestamp(op == .add ? addInterval(t, m, u) : addInterval(t, -m, -u))
        case (.interval(let m, let u), .timestamp(let t)) where op == .add:
            return .timestamp(addInterval(t, m, u))
        case (.date(let d), .interval(let m, let u)):
            let t = Int64(d) * SQLValue.microsPerDay
            return .timestamp(op == .add ? addInterval(t, m, u) : addInterval(t, -m, -u))
        case (.interval(let m, let u), .date(let d)) where op == .add:
            return .timestamp(addInterval(Int64(d) * SQLValue.microsPerDay, m, u))
        case (.date(let d), .int(let n)):
            return .date(Int32(clamping: op == .add ? Int64(d) + n : Int64(d) - n))
        case (.int(let n), .date(let d)) where op == .add:
            return .date(Int32(clamping: Int64(d) + n))
        case (.timestamp, .timestamp), (.timestamp, .date), (.date, .timestamp):
            return .interval(months: 0, micros: micros(a)! - micros(b)!)
        case (.date(let x), .date(let y)):
            return .int(Int64(x) - Int64(y))
        case (.interval(let m1, let u1), .interval(let m2, let u2)):
            return op == .add ? .interval(months: m1 &+ m2, micros: u1 &+ u2) : .interval(months: m1 &- m2, micros: u1 &- u2)
        default:
            return .null
        }
    }

    static func micros(_ v: SQLValue) -> Int64? {
        switch v {
        case .timestamp(let t): t
        case .date(let d): Int64(d) * SQLValue.microsPerDay
        default: nil
        }
    }

    /// Adds calendar months (clamping the day, as Jan 31 + 1 month = Feb 29) then micros.
    static func addInterval(_ t: Int64, _ months: Int32, _ micros: Int64) -> Int64 {
        var result = t
        if months != 0 {
            let day = SQLValue.floorDiv(t, SQLValue.microsPerDay)
            let inDay = t - day * SQLValue.microsPerDay
            let (y, m, d) = Timestamp.civilFromDays(Int(day))
            let total = y * 12 + (m - 1) + Int(months)
            let ny = Int((Double(total) / 12).rounded(.down))
            let nm = total - ny * 12 + 1
            let lastDay = Timestamp.civilFromDays(Timestamp.daysFromCivil(year: nm == 12 ? ny + 1 : ny, month: nm == 12 ? 1 : nm + 1, day: 1) - 1).day
            result = Int64(Timestamp.daysFromCivil(year: ny, month: nm, day: min(d, lastDay))) * SQLValue.microsPerDay + inDay
        }
        return result &+ micros
    }

    static func function(_ f: ScalarFunction, _ args: [BoundExpression], _ row: [SQLValue]) throws -> SQLValue {
        switch f {
        case .coalesce:
            for a in args {
                let v = try evaluate(a, row)
                if !v.isNull { return v }
            }
            return .null
        case .greatest, .least:
            var best: SQLValue = .null
            for a in args {
                let v = try evaluate(a, row)
                if v.isNull { continue }
                if best.isNull { best = v } else if let c = SQLValue.compare(v, best), f == .greatest ? c > 0 : c < 0 { best = v }
            }
            return best
        case .concat:
            var s = ""
            for a in args {
                let v = try evaluate(a, row)
                if !v.isNull { s += text(v) }
            }
            return .string(s)
        default:
            break
        }
        let values = try args.map { try evaluate($0, row) }
        if values.contains(where: \.isNull), f != .nullif { return .null }
        switch f {
        case .lower: return .string(text(values[0]).lowercased())
        case .upper: return .string(text(values[0]).uppercased())
        case .length: return .int(Int64(text(values[0]).unicodeScalars.count))
        case .abs:
            switch values[0] {
            case .int(let n):
                guard n != .min else { throw SQLError(.evaluation, "integer overflow in abs(\(n))") }
                return .int(Swift.abs(n))
            case .double(let d): return .double(Swift.abs(d))
            default: return .null
            }
        case .round:
            guard let x = double(values[0]) else { return .null }
            var digits = 0
            if values.count == 2, case .int(let n) = values[1] { digits = Int(max(-18, min(18, n))) }
            let scale = pow(10.0, Double(digits))
            let scaled = x * scale
            // Halves round away from zero, as in SQLite and PostgreSQL.
            let rounded = scaled.rounded(.toNearestOrAwayFromZero) / scale
            return .double(scaled.isFinite ? rounded : x)
        case .nullif:
            if values[0].isNull { return .null }
            if !values[1].isNull, SQLValue.compare(values[0], values[1]) == 0 { return .null }
            return values[0]
        case .dateTrunc:
            guard case .string(let u) = values[0], let unit = DateUnit(rawValue: u), let t = micros(values[1]) else { return .null }
            if values.count == 3, case .string(let name) = values[2], let zone = ZoneOffsets.named(name) {
                return .timestamp(truncate(t, unit, in: zone))
            }
            let truncated = truncate(t, unit)
            if case .date = values[1], unit.isWholeDays { return .date(Int32(SQLValue.floorDiv(truncated, SQLValue.microsPerDay))) }
            return .timestamp(truncated)
        case .dateDiff:
            guard case .string(let u) = values[0], let unit = DateUnit(rawValue: u), let a = micros(values[1]), let b = micros(values[2]) else {
                return .null
            }
            return .int(difference(a, b, unit))
        case .coalesce, .greatest, .least, .concat:
            return .null
        }
    }

    static func truncate(_ t: Int64, _ unit: DateUnit) -> Int64 {
        let day = SQLValue.floorDiv(t, SQLValue.microsPerDay)
        switch unit {
        case .second: return SQLValue.floorDiv(t, 1_000_000) * 1_000_000
        case .minute: return SQLValue.floorDiv(t, 60_000_000) * 60_000_000
        case .hour: return SQLValue.floorDiv(t, 3_600_000_000) * 3_600_000_000
        case .day: return day * SQLValue.microsPerDay
        case .week:
            // 1970-01-01 was a Thursday: Monday-based weeks start 3 days before epoch weeks.
            return (SQLValue.floorDiv(day + 3, 7) * 7 - 3) * SQLValue.microsPerDay
        case .month, .quarter, .year:
            let (y, m, _) = Timestamp.civilFromDays(Int(day))
            let month = unit == .month ? m : unit == .quarter ? (m - 1) / 3 * 3 + 1 : 1
            return Int64(Timestamp.daysFromCivil(year: y, month: month, day: 1)) * SQLValue.microsPerDay
        }
    }

    /// The instant the local `unit` of `zone` holding `t` starts: clock units (second, minute,
    /// hour) under the offset in force at `t`, calendar ones from local midnight.
    static func truncate(_ t: Int64, _ unit: DateUnit, in zone: ZoneOffsets) -> Int64 {
        switch unit {
        case .second: return zone.startOfLocalUnit(t, length: 1_000_000)
        case .minute: return zone.startOfLocalUnit(t, length: 60_000_000)
        case .hour: return zone.startOfLocalUnit(t, length: 3_600_000_000)
        default: return zone.utc(ofLocal: truncate(zone.local(t), unit))
        }
    }

    /// Unit boundaries crossed from `a` to `b` (as DuckDB's and ClickHouse's date_diff).
    static func difference(_ a: Int64, _ b: Int64, _ unit: DateUnit) -> Int64 {
        switch unit {
        case .second: return SQLValue.floorDiv(b, 1_000_000) - SQLValue.floorDiv(a, 1_000_000)
        case .minute: return SQLValue.floorDiv(b, 60_000_000) - SQLValue.floorDiv(a, 60_000_000)
        case .hour: return SQLValue.floorDiv(b, 3_600_000_000) - SQLValue.floorDiv(a, 3_600_000_000)
        case .day: return SQLValue.floorDiv(b, SQLValue.microsPerDay) - SQLValue.floorDiv(a, SQLValue.microsPerDay)
        case .week: return (truncate(b, .week) - truncate(a, .week)) / (7 * SQLValue.microsPerDay)
        case .month, .quarter, .year:
            let (ya, ma, _) = Timestamp.civilFromDays(Int(SQLValue.floorDiv(a, SQLValue.microsPerDay)))
            let (yb, mb, _) = Timestamp.civilFromDays(Int(SQLValue.floorDiv(b, SQLValue.microsPerDay)))
            switch unit {
            case .month: return Int64((yb * 12 + mb) - (ya * 12 + ma))
            case .quarter: return Int64((yb * 4 + (mb - 1) / 3) - (ya * 4 + (ma - 1) / 3))
            default: return Int64(yb - ya)
            }
        }
    }

    // MARK: CAST

    static func canCast(_ from: SQLType, to: SQLType) -> Bool {
        if from == to || from == .null || from == .string || to == .string { return true }
        switch (from, to) {
        case (.integer, .double), (.double, .integer), (.integer, .boolean), (.boolean, .integer): return true
        case (.date, .timestamp), (.timestamp, .date): return true
        default: return false
        }
    }

    static func cast(_ v: SQLValue, to type: SQLType, location: SourceLocation?, source: String?) throws -> SQLValue {
        func fail() -> SQLError {
            SQLError(.evaluation, "cannot cast \(v.type) '\(v)' to \(type)", at: location, in: source)
        }
        switch (v, type) {
        case (.null, _): return .null
        case (_, .string): return .string(text(v))
        case (.int, .integer), (.double, .double), (.bool, .boolean), (.timestamp, .timestamp), (.date, .date): return v
        case (.int(let n), .double): return .double(Double(n))
        case (.double(let d), .integer):
            let r = d.rounded(.toNearestOrAwayFromZero)
            guard let n = Int64(exactly: r) else { throw fail() }
            return .int(n)
        case (.int(let n), .boolean): return .bool(n != 0)
        case (.bool(let b), .integer): return .int(b ? 1 : 0)
        case (.date(let d), .timestamp): return .timestamp(Int64(d) * SQLValue.microsPerDay)
        case (.timestamp(let t), .date): return .date(Int32(SQLValue.floorDiv(t, SQLValue.microsPerDay)))
        case (.string(let s), .integer):
            guard let n = Int64(s.trimmingSpaces) else { throw fail() }
            return .int(n)
        case (.string(let s), .double):
            guard let d = Double(s.trimmingSpaces) else { throw fail() }
            return .double(d)
        case (.string(let s), .boolean):
            switch s.trimmingSpaces.lowercased() {
            case "true", "t", "1", "yes": return .bool(true)
            case "false", "f", "0", "no": return .bool(false)
            default: throw fail()
            }
        case (.string(let s), .date):
            if let d = SQLValue.date(parsing: s) { return d }
            if case .timestamp(let t)? = SQLValue.timestamp(parsing: s) { return .date(Int32(SQLValue.floorDiv(t, SQLValue.microsPerDay))) }
            throw fail()
        case (.string(let s), .timestamp):
            guard let t = SQLValue.timestamp(parsing: s) else { throw fail() }
            return t
        default:
            throw fail()
        }
    }
}

/// A LIKE pattern: `%` any run, `_` one character, no escape character. Matched by the
/// two-pointer wildcard algorithm over the text's UTF-8 bytes (decoding a scalar only where a
/// token needs one), which backtracks only to the last `%`: O(text × pattern) at worst, so no
/// pattern can make a query hang, and no allocation per row for LIKE.
struct LikePattern: Sendable {
    enum Token: Equatable, Sendable {
        case scalar(UInt32)
        case one
        case any
    }
    let tokens: [Token]
    let caseInsensitive: Bool

    init(_ pattern: String, caseInsensitive: Bool) {
        self.caseInsensitive = caseInsensitive
        var tokens: [Token] = []
        for s in (caseInsensitive ? pattern.lowercased() : pattern).unicodeScalars {
            switch s {
            case "%": if tokens.last != .any { tokens.append(.any) }
            case "_": tokens.append(.one)
            default: tokens.append(.scalar(s.value))
            }
        }
        self.tokens = tokens
    }

    func matches(_ text: String) -> Bool {
        var t = caseInsensitive ? text.lowercased() : text
        return t.withUTF8 { match($0) }
    }

    /// The byte offset of the scalar after the one at `i`.
    @inline(__always)
    static func next(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        let b = s[i]
        return i + (b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4)
    }

    @inline(__always)
    static func scalar(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt32 {
        let b = UInt32(s[i])
        if b < 0x80 { return b }
        if b < 0xE0 { return (b & 0x1F) << 6 | UInt32(s[i + 1] & 0x3F) }
        if b < 0xF0 { return (b & 0x0F) << 12 | UInt32(s[i + 1] & 0x3F) << 6 | UInt32(s[i + 2] & 0x3F) }
        return (b & 0x07) << 18 | UInt32(s[i + 1] & 0x3F) << 12 | UInt32(s[i + 2] & 0x3F) << 6 | UInt32(s[i + 3] & 0x3F)
    }

    private func match(_ s: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        var p = 0
        var starToken = -1
        var starText = 0
        while i < s.count {
            if p < tokens.count {
                switch tokens[p] {
                case .one:
                    i = Self.next(s, i)
                    p += 1
                    continue
                case .any:
                    starToken = p
                    starText = i
                    p += 1
                    continue
                case .scalar(let c):
                    if Self.scalar(s, i) == c {
                        i = Self.next(s, i)
                        p += 1
                        continue
                    }
                }
            }
            guard starToken >= 0 else { return false }
            p = starToken + 1
            starText = Self.next(s, starText)
            i = starText
        }
        while p < tokens.count, tokens[p] == .any { p += 1 }
        return p == tokens.count
    }
}
