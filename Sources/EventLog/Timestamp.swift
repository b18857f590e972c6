/// Parsing and formatting of event times. Times are microseconds since the Unix epoch, UTC.
public enum Timestamp {
    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    @inline(__always)
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(_ y: Int, _ m: Int) -> Int {
        switch m {
        case 2: isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Parses RFC 3339 / ISO 8601: `YYYY-MM-DD`, optionally followed by `T` (or a space)
    /// `HH:MM[:SS[.fraction]]` and `Z` or `±HH[:MM]`. No offset means UTC. A string of digits
    /// only is epoch milliseconds. Returns nil when the text is not a valid time.
    public static func parse(_ text: UnsafeRawBufferPointer) -> Int64? {
        let n = text.count
        guard n > 0 else { return nil }
        @inline(__always) func digit(_ i: Int) -> Int? {
            guard i < n else { return nil }
            let c = text[i]
            return c >= 48 && c <= 57 ? Int(c - 48) : nil
        }
        @inline(__always) func number(_ at: Int, _ count: Int) -> Int? {
            var v = 0
            for i in at..<at + count {
                guard let d = digit(i) else { return nil }
                v = v * 10 + d
            }
            return v
        }
        if text.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
            guard n <= 15, let ms = Int64(String(decoding: text, as: UTF8.self)) else { return nil }
            return ms * 1000
        }
        guard n >= 10, let year = number(0, 4), text[4] == UInt8(ascii: "-"), let month = number(5, 2),
            text[7] == UInt8(ascii: "-"), let day = number(8, 2),
            (1...12).contains(month), day >= 1, day <= daysInMonth(year, month)
        else { return nil }
        var micros = Int64(daysFromCivil(year: year, month: month, day: day)) * 86_400_000_000
        var i = 10
        if i == n { return micros }
        guard text[i] == UInt8(ascii: "T") || text[i] == UInt8(ascii: "t") || text[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let hour = number(i, 2), i + 2 < n, text[i + 2] == UInt8(ascii: ":"), let minute = number(i + 3, 2),
            hour < 24, minute < 60
        else { return nil }
        i += 5
        var second = 0
        if i < n && text[i] == UInt8(ascii: ":") {
            guard let s = number(i + 1, 2), s <= 60 else { return nil }
            second = min(s, 59)  // a leap second is folded into :59
            i += 3
        }
        micros += Int64(hour * 3600 + minute * 60 + second) * 1_000_000
        if i < n && (text[i] == UInt8(ascii: ".") || text[i] == UInt8(ascii: ",")) {
            i += 1
            var scale: Int64 = 100_000
            var fraction: Int64 = 0
            let start = i
            while let d = digit(i) {
                fraction += Int64(d) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
            micros += fraction
        }
        if i == n { return micros }
        switch text[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return i + 1 == n ? micros : nil
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign: Int64 = text[i] == UInt8(ascii: "+") ? 1 : -1
            guard let oh = number(i + 1, 2), oh <= 23 else { return nil }
            var om = 0
            var j = i + 3
            if j < n {
                if text[j] == UInt8(ascii: ":") { j += 1 }
                guard let m = number(j, 2), m < 60 else { return nil }
                om = m
                j += 2
            }
            guard j == n else { return nil }
            return micros - sign * Int64(oh * 3600 + om * 60) * 1_000_000
        default:
            return nil
        }
    }

    public static func parse(_ text: String) -> Int64? {
        var t = text
        return t.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    /// RFC 3339 in UTC: `2024-01-15T10:00:00Z`, with `.mmm` or `.uuuuuu` only when needed.
    public static func format(_ micros: Int64) -> String {
        let out = OutputBuffer(capacity: 32)
        write(micros, into: out)
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// Appends `format(micros)` to `out` without building a String (response hot path).
    public static func write(_ micros: Int64, into out: OutputBuffer) {
        let days = micros >= 0 ? micros / 86_400_000_000 : (micros - 86_399_999_999) / 86_400_000_000
        let inDay = micros - days * 86_400_000_000
        let (y, m, d) = civilFromDays(Int(days))
        let secs = Int(inDay / 1_000_000)
        let frac = Int(inDay % 1_000_000)
        out.reserve(32)
        digits(y, 4, out)
        out.append(byte: UInt8(ascii: "-"))
        digits(m, 2, out)
        out.append(byte: UInt8(ascii: "-"))
        digits(d, 2, out)
        out.append(byte: UInt8(ascii: "T"))
        digits(secs / 3600, 2, out)
        out.append(byte: UInt8(ascii: ":"))
        digits(secs / 60 % 60, 2, out)
        out.append(byte: UInt8(ascii: ":"))
        digits(secs % 60, 2, out)
        if frac != 0 {
            out.append(byte: UInt8(ascii: "."))
            if frac % 1000 == 0 { digits(frac / 1000, 3, out) } else { digits(frac, 6, out) }
        }
        out.append(byte: UInt8(ascii: "Z"))
    }

    /// `value` zero-padded to `width` digits (wider values are written in full).
    @inline(__always)
    static func digits(_ value: Int, _ width: Int, _ out: OutputBuffer) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        if value >= divisor * 10 || value < 0 {
            out.append(String(value))
            return
        }
        var v = value
        while divisor > 0 {
            out.append(byte: UInt8(48 + v / divisor))
            v %= divisor
            divisor /= 10
        }
    }
}
