#if canImport(Glibc)
import Glibc
#endif
public import EventLog

/// The types of the dialect.
public enum SQLType: String, Sendable, CustomStringConvertible {
    /// The type of a bare `NULL`: it fits wherever a value does.
    case null
    case integer
    case double
    case string
    case boolean
    case timestamp
    case date
    case interval

    public var description: String { rawValue }

    init?(name: String) {
        switch name.lowercased() {
        case "int", "integer", "bigint", "int64", "int32", "smallint", "long": self = .integer
        case "double", "float", "real", "numeric", "decimal", "float64", "number": self = .double
        case "string", "text", "varchar", "char": self = .string
        case "bool", "boolean": self = .boolean
        case "date": self = .date
        case "timestamp", "datetime", "timestamptz": self = .timestamp
        default: return nil
        }
    }

    var isNumeric: Bool { self == .integer || self == .double }
}

/// One value of a result or of an expression being evaluated.
public enum SQLValue: Sendable, CustomStringConvertible {
    case null
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case string(String)
    /// Microseconds since the Unix epoch, UTC.
    case timestamp(Int64)
    /// Days since the Unix epoch.
    case date(Int32)
    case interval(months: Int32, micros: Int64)

    public var type: SQLType {
        switch self {
        case .null: .null
        case .int: .integer
        case .double: .double
        case .bool: .boolean
        case .string: .string
        case .timestamp: .timestamp
        case .date: .date
        case .interval: .interval
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    static let microsPerDay: Int64 = 86_400_000_000

    /// As text: what `CAST(x AS string)` gives and what CSV and tables print.
    public var description: String {
        switch self {
        case .null: return "NULL"
        case .int(let n): return String(n)
        case .double(let d): return Self.format(d)
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return s
        case .timestamp(let t): return Timestamp.format(t)
        case .date(let d): return String(Timestamp.format(Int64(d) * Self.microsPerDay).prefix(10))
        case .interval(let months, let micros):
            var parts: [String] = []
            if months != 0 { parts.append("\(months) month" + (abs(months) == 1 ? "" : "s")) }
            var rest = micros
            for (unit, size) in [("day", Self.microsPerDay), ("hour", 3_600_000_000), ("minute", 60_000_000), ("second", 1_000_000)] as [(String, Int64)] {
                let n = rest / size
                if n != 0 { parts.append("\(n) \(unit)" + (abs(n) == 1 ? "" : "s")) }
                rest -= n * size
            }
            if rest != 0 { parts.append("\(rest) microseconds") }
            return parts.isEmpty ? "0 seconds" : parts.joined(separator: " ")
        }
    }

    /// Shortest text that reads back as the same double; whole numbers keep a `.0`.
    static func format(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return "\(d)"
    }

    /// `2024-01-15`.
    public static func date(parsing text: String) -> SQLValue? {
        let t = text.trimmingSpaces
        let parts = t.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        let days = Timestamp.daysFromCivil(year: y, month: m, day: d)
        // Reject dates like 2024-02-30 that the civil arithmetic would roll over.
        let (y2, m2, d2) = Timestamp.civilFromDays(days)
        guard y2 == y, m2 == m, d2 == d else { return nil }
        return .date(Int32(days))
    }

    /// RFC 3339 / ISO 8601 (`2024-01-15T10:30:00Z`, a space instead of `T`, no zone meaning
    /// UTC), or a bare date for midnight UTC.
    public static func timestamp(parsing text: String) -> SQLValue? {
        let t = text.trimmingSpaces
        if case .date(let d)? = date(parsing: t) { return .timestamp(Int64(d) * microsPerDay) }
        var normalized = t.replacingFirstSpaceWithT
        let hasZone = normalized.hasSuffix("Z") || normalized.hasSuffix("z") || normalized.dropFirst(10).contains("+")
            || normalized.dropFirst(10).contains("-")
        if !hasZone { normalized += "Z" }
        return Timestamp.parse(normalized).map { .timestamp($0) }
    }

    /// `7 days`, `2 hours 30 minutes`, `1 month`, `-1 week`, `90 seconds`.
    public static func interval(parsing text: String) -> SQLValue? {
        let words = text.lowercased().split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !words.isEmpty, words.count % 2 == 0 else { return nil }
        var months: Int64 = 0
        var micros: Int64 = 0
        var i = 0
        while i < words.count {
            guard let n = Int64(words[i]), abs(n) < 1_000_000 else { return nil }
            var unit = String(words[i + 1])
            if unit.hasSuffix("s") { unit.removeLast() }
            switch unit {
            case "microsecond": micros += n
            case "millisecond": micros += n * 1000
            case "second", "sec": micros += n * 1_000_000
            case "minute", "min": micros += n * 60_000_000
            case "hour": micros += n * 3_600_000_000
            case "day": micros += n * microsPerDay
            case "week": micros += n * 7 * microsPerDay
            case "month": months += n
            case "year": months += n * 12
            default: return nil
            }
            i += 2
        }
        guard abs(months) < Int64(Int32.max) else { return nil }
        return .interval(months: Int32(months), micros: micros)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }

    var replacingFirstSpaceWithT: String {
        guard let i = firstIndex(of: " ") else { return self }
        var s = self
        s.replaceSubrange(i...i, with: "T")
        return s
    }
}

// MARK: Equality and order

extension SQLValue: Hashable {
    /// Grouping equality: NULL equals NULL (one group), and 1 equals 1.0.
    public static func == (a: SQLValue, b: SQLValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.null, _), (_, .null): return false
        default: return compare(a, b) == 0
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .int(let n): hasher.combine(n)
        case .double(let d):
            if let n = Int64(exactly: d) { hasher.combine(n) } else { hasher.combine(d) }
        case .bool(let b): hasher.combine(b)
        case .string(let s):
            if s.utf8.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
                s.utf8.forEach { hasher.combine($0) }
            }
        case .timestamp(let t): hasher.combine(t)
        case .date(let d): hasher.combine(Int64(d) * Self.microsPerDay)
        case .interval(let m, let u):
            hasher.combine(m)
            hasher.combine(u)
        }
    }

    /// -1, 0 or 1; nil when either is NULL or the two cannot be compared. Strings compare
    /// bytewise (UTF-8), booleans false < true, dates as their midnight.
    public static func compare(_ a: SQLValue, _ b: SQLValue) -> Int? {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? -1 : x > y ? 1 : 0
        case (.double(let x), .double(let y)): return x < y ? -1 : x > y ? 1 : x == y ? 0 : nil
        case (.int(let x), .double(let y)): return compareMixed(x, y)
        case (.double(let x), .int(let y)): return compareMixed(y, x).map { -$0 }
        case (.string(let x), .string(let y)): return compareBytes(x, y)
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (!x ? -1 : 1)
        case (.timestamp(let x), .timestamp(let y)): return x < y ? -1 : x > y ? 1 : 0
        case (.date(let x), .date(let y)): return x < y ? -1 : x > y ? 1 : 0
        case (.date(let x), .timestamp(let y)): return compare(.timestamp(Int64(x) * microsPerDay), .timestamp(y))
        case (.timestamp(let x), .date(let y)): return compare(.timestamp(x), .timestamp(Int64(y) * microsPerDay))
        case (.interval(let m1, let u1), .interval(let m2, let u2)):
            let x = Int64(m1) * 30 * microsPerDay + u1
            let y = Int64(m2) * 30 * microsPerDay + u2
            return x < y ? -1 : x > y ? 1 : 0
        default: return nil
        }
    }

    /// An integer against a double, exactly (no rounding of large integers).
    static func compareMixed(_ x: Int64, _ y: Double) -> Int? {
        if y.isNaN { return nil }
        if y >= 9.3e18 { return -1 }
        if y <= -9.3e18 { return 1 }
        let yFloor = y.rounded(.down)
        let yi = Int64(yFloor)
        if x < yi { return -1 }
        if x > yi { return 1 }
        return yFloor == y ? 0 : -1
    }

    /// Bytewise (UTF-8) order, through memcmp on the strings' contiguous storage.
    static func compareBytes(_ x: String, _ y: String) -> Int {
        var a = x
        var b = y
        return a.withUTF8 { p in
            b.withUTF8 { q in
                let n = min(p.count, q.count)
                let c = n == 0 ? 0 : memcmp(p.baseAddress!, q.baseAddress!, n)
                if c != 0 { return c < 0 ? -1 : 1 }
                return p.count == q.count ? 0 : p.count < q.count ? -1 : 1
            }
        }
    }
}

extension SQLValue {
    /// The value in a JSON result: numbers and booleans as such (non-finite doubles as null),
    /// timestamps as RFC 3339 strings, dates as `YYYY-MM-DD`, intervals as text.
    public func write(to w: JSONWriter) {
        switch self {
        case .null: w.null()
        case .int(let n): w.int(n)
        case .double(let d): if d.isFinite { w.double(d) } else { w.null() }
        case .bool(let b): w.raw(b ? "true" : "false")
        case .string(let s): w.string(s)
        case .timestamp(let t): w.timestamp(t)
        case .date, .interval: w.string(description)
        }
    }
}
