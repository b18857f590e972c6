#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The end of the default range. Fixed, never the wall clock: output is a function of the options.
let defaultEndDay = daysFromCivil(2026, 11, 1)

struct Options {
    var events = 1_000_000
    var days = 90
    var users = 200_000
    var bots = 5
    var seed: UInt64 = 1
    var startDay: Int? = nil
    var out: String? = nil
    var stats = false

    var firstDay: Int { startDay ?? (defaultEndDay - days) }

    static let help = """
        gen-events: deterministic, realistic NDJSON analytics events for Tally.

        usage: tools/gen-events [options]

          --events N          lines to write, exactly (default 1000000)
          --days D            days covered (default 90)
          --users U           users acquired over the range (default 200000)
          --bots B            bots answering conversations (default 5)
          --seed S            PRNG seed, an unsigned 64-bit integer (default 1)
          --start YYYY-MM-DD  first day (default: D days before 2026-11-01)
          --out FILE          write here instead of stdout
          --stats             print a summary to stderr when done
          --help              this text

        Same options, same bytes. Numbers may use _ as a separator (10_000_000).
        The model is described in docs/GEN-EVENTS.md.

        """

    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var i = 0
        func fail(_ message: String) -> Never {
            writeStderr("gen-events: \(message)\nrun with --help for usage\n")
            exit(2)
        }
        func integer(_ name: String, _ text: String, min: Int, max: Int = Int.max) -> Int {
            let cleaned = text.filter { $0 != "_" }
            guard let v = Int(cleaned), v >= min, v <= max else {
                fail("\(name) wants an integer from \(min) to \(max), got \"\(text)\"")
            }
            return v
        }
        while i < arguments.count {
            var arg = arguments[i]
            var inline: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                inline = String(arg[arg.index(after: eq)...])
                arg = String(arg[..<eq])
            }
            func value() -> String {
                if let v = inline { return v }
                i += 1
                guard i < arguments.count else { fail("\(arg) needs a value") }
                return arguments[i]
            }
            switch arg {
            case "--help", "-h":
                writeFD(1, help)
                exit(0)
            case "--events": o.events = integer(arg, value(), min: 0)
            case "--days": o.days = integer(arg, value(), min: 1, max: 36_500)
            case "--users": o.users = integer(arg, value(), min: 1, max: 2_000_000_000)
            case "--bots": o.bots = integer(arg, value(), min: 1, max: 250)
            case "--seed":
                let text = value()
                guard let s = UInt64(text.filter { $0 != "_" }) else {
                    fail("--seed wants an unsigned 64-bit integer, got \"\(text)\"")
                }
                o.seed = s
            case "--start":
                let text = value()
                guard let day = parseDate(text) else { fail("--start wants a date YYYY-MM-DD, got \"\(text)\"") }
                guard day >= 1 else { fail("--start must be after 1970-01-01") }
                o.startDay = day
            case "--out": o.out = value()
            case "--stats": o.stats = true
            default: fail("unknown option \(arg)")
            }
            i += 1
        }
        if o.firstDay + o.days > daysFromCivil(9999, 12, 31) { fail("the range must end before the year 10000") }
        return o
    }

    static func parseDate(_ text: String) -> Int? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
            (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        let day = daysFromCivil(y, m, d)
        let back = civilFromDays(day)
        return back.year == y && back.month == m && back.day == d ? day : nil
    }
}
