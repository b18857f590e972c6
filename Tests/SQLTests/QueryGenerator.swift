import Foundation
import TallyTestSupport

// A random query generator for the differential test. Each expression is built once and
// rendered twice, in Tally's dialect and in SQLite's, as it is built: the two texts differ
// only where the dialects do (column names, `/`, date and timestamp literals, casts, ILIKE,
// OFFSET without LIMIT, defaulted NULLS FIRST/LAST). Every query stays inside the dialect
// the SQL module documents; a query Tally rejects is a failure.
//

enum GenType: CaseIterable {
    case int, double, string, bool, date, timestamp
    var isNumeric: Bool { self == .int || self == .double }
}

/// What a column holds, so that the literals it is compared with hit real values.
enum GenDomain {
    case eventId, eventName, userId, anonymousId, sessionId, botId, plan, amount, score, channel, active
    case timestamp, date, count, other
}

/// Binding strength, for rendering with as few parentheses as both parsers need.
enum GenPrec: Int, Comparable {
    case or = 1
    case and, not, compare, add, mul, unary, atom
    static func < (a: GenPrec, b: GenPrec) -> Bool { a.rawValue < b.rawValue }
}

/// An expression in both dialects.
struct GenExpr {
    var tally: String
    var lite: String
    var type: GenType
    var prec: GenPrec = .atom
    var domain: GenDomain = .other
    /// Contains no column reference (a bare integer constant in GROUP BY or ORDER BY would
    /// be read as an ordinal).
    var constant = false
    /// Is an integer or double literal.
    var literal = false
    /// A double that two engines may compute with different rounding errors (after `/`,
    /// summing such values): never rounded, cast to an integer or ordered by.
    var inexact = false
    /// A double that may have a fraction binary cannot hold (after `/`, avg, round(x, n)),
    /// which the engines print to different lengths.
    var fractional = false

    func tallyIn(_ p: GenPrec, strict: Bool = false) -> String {
        prec < p || (strict && prec == p) ? "(\(tally))" : tally
    }
    func liteIn(_ p: GenPrec, strict: Bool = false) -> String {
        prec < p || (strict && prec == p) ? "(\(lite))" : lite
    }
}

/// A column in scope: of `events`, or an output column of a subquery or WITH query.
struct GenColumn {
    var tally: String
    /// `properties['key']` for `properties.key`.
    var tallyAlternative: String?
    var lite: String
    var type: GenType
    var domain: GenDomain

    var inexact = false
    var fractional = false

    var expr: GenExpr { GenExpr(tally: tally, lite: lite, type: type, domain: domain, inexact: inexact, fractional: fractional) }
}

/// A FROM clause and the columns it brings into scope.
struct GenFrom {
    var tally: String
    var lite: String
    var columns: [GenColumn]
}

/// A SELECT (possibly a subquery) in both dialects, with its output columns.
struct GenSelect {
    var tally: String
    var lite: String
    /// Output column names and what they hold.
    var outputs: [(name: String, type: GenType, domain: GenDomain, inexact: Bool, fractional: Bool)]
    /// ORDER BY covers every output column: the order of the rows is determined.
    var ordered: Bool
}

struct GeneratedQuery {
    var tally: String
    var lite: String
    var columns: [String]
    var ordered: Bool
    /// Values of the `?` placeholders, in the order of each text.
    var tallyParameters: [ParameterValue] = []
    var liteParameters: [ParameterValue] = []
    /// Tally's text has `LIMIT limit OFFSET offset` without an ORDER BY that fixes the rows;
    /// SQLite's has neither, and Tally's rows must be that many of SQLite's.
    var unorderedLimit: (limit: Int, offset: Int)?
}

/// A `?` parameter's value, for both engines (dates and timestamps are integers in SQLite).
enum ParameterValue {
    case int(Int64)
    case double(Double)
    case string(String)
    case date(Int32)
    case timestamp(Int64)
}

struct QueryGenerator {
    var rng: SeededRandom
    /// How many rows a FROM clause yields (up to the limit + 1), asked of SQLite, to keep
    /// joins small.
    let rowCount: (String, Int) -> Int?
    let eventCount: Int
    /// Some of the events' timestamps, so that equalities with timestamps can hold.
    let timestamps: [Int64]
    private var nextName = 0
    private var withQueries: [(name: String, select: GenSelect)] = []
    /// Parameters made so far; the texts carry markers `\u{2}index\u{3}` until the end.
    private var parameters: [(tally: ParameterValue, lite: ParameterValue)] = []
    /// Literals may become parameters: only in WHERE and HAVING predicates, so that no
    /// placeholder is repeated in a GROUP BY or ORDER BY copy of an expression.
    private var parametersAllowed = false

    static let maxJoinRows = 6_000

    init(seed: UInt64, eventCount: Int, timestamps: [Int64] = [], rowCount: @escaping (String, Int) -> Int?) {
        rng = SeededRandom(seed: seed)
        self.eventCount = eventCount
        self.timestamps = timestamps
        self.rowCount = rowCount
    }

    // MARK: Randomness

    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func pick<T>(_ items: [T]) -> T { items.randomElement(using: &rng)! }
    mutating func name(_ prefix: String) -> String {
        nextName += 1
        return prefix + String(nextName)
    }
    /// Keywords and function names in Tally's text in random case, sometimes after a
    /// comment or a line break.
    mutating func kw(_ word: String) -> String {
        let cased: String
        switch int(0...9) {
        case 0: cased = word.lowercased()
        case 1: cased = word.prefix(1).uppercased() + word.dropFirst().lowercased()
        default: cased = word
        }
        switch int(0...99) {
        case 0..<2: return "/* \(word.lowercased()) */ " + cased
        case 2..<5: return "\n" + cased
        case 5..<6: return "\t" + cased
        default: return cased
        }
    }

    // MARK: Queries

    mutating func query() -> GeneratedQuery {
        nextName = 0
        withQueries = []
        parameters = []
        var withTally: [String] = []
        var withLite: [String] = []
        if chance(20) {
            for _ in 0..<int(1...2) {
                let sub = select(depth: 1, top: false)
                let name = name("w")
                withTally.append("\(name) \(kw("AS")) (\(sub.tally))")
                withLite.append("\(name) AS (\(sub.lite))")
                withQueries.append((name, sub))
            }
        }
        var main = select(depth: 2, top: true)
        var unorderedLimit: (limit: Int, offset: Int)?
        if !main.ordered && chance(12) {
            // LIMIT without an order: which rows is up to the engine, not how many.
            let limit = pick([0, 1, 3, 10, 50])
            let offset = chance(30) ? pick([1, 4]) : 0
            main.tally += " \(kw("LIMIT")) \(limit)" + (offset > 0 ? " \(kw("OFFSET")) \(offset)" : "")
            unorderedLimit = (limit, offset)
        }
        let prefixTally = withTally.isEmpty ? "" : kw("WITH") + " " + withTally.joined(separator: ", ") + " "
        let prefixLite = withLite.isEmpty ? "" : "WITH " + withLite.joined(separator: ", ") + " "
        var (tally, tallyParameters) = placeholders(prefixTally + main.tally) { parameters[$0].tally }
        if chance(5) { tally += pick([";", " ;", "\n"]) }
        let (lite, liteParameters) = placeholders(prefixLite + main.lite) { parameters[$0].lite }
        return GeneratedQuery(
            tally: tally,
            lite: lite,
            columns: main.outputs.map(\.name),
            ordered: main.ordered,
            tallyParameters: tallyParameters,
            liteParameters: liteParameters,
            unorderedLimit: unorderedLimit
        )
    }

    /// The text with each parameter marker replaced by `?`, and the parameters in text order.
    func placeholders(_ text: String, _ value: (Int) -> ParameterValue) -> (String, [ParameterValue]) {
        guard text.contains("\u{2}") else { return (text, []) }
        var out = ""
        var values: [ParameterValue] = []
        var rest = Substring(text)
        while let start = rest.firstIndex(of: "\u{2}") {
            out += rest[..<start]
            let end = rest[start...].firstIndex(of: "\u{3}")!
            values.append(value(Int(rest[rest.index(after: start)..<end])!))
            out += "?"
            rest = rest[rest.index(after: end)...]
        }
        return (out + rest, values)
    }

    /// A literal as a parameter, if parameters are allowed here and the dice say so.
    mutating func maybeParameter(_ e: GenExpr, _ tally: ParameterValue, _ lite: ParameterValue) -> GenExpr {
        guard parametersAllowed, chance(20) else { return e }
        parameters.append((tally, lite))
        let marker = "\u{2}\(parameters.count - 1)\u{3}"
        return GenExpr(tally: marker, lite: marker, type: e.type, domain: e.domain, constant: true)
    }

    /// One SELECT. `want`: the output types (an IN subquery wants one column of a type).
    mutating func select(depth: Int, top: Bool, want: [GenType]? = nil, wantDomain: GenDomain? = nil) -> GenSelect {
        let outerParametersAllowed = parametersAllowed
        parametersAllowed = false
        defer { parametersAllowed = outerParametersAllowed }
        let from = fromClause(depth: depth)
        var outputs: [(expr: GenExpr, name: String)] = []
        var groupBy: [(tally: String, lite: String)] = []
        var groupKeys: [GenExpr] = []
        var having: GenExpr?
        let aggregate = chance(want == nil ? 45 : 25)
        var distinct = chance(aggregate ? 5 : 20)
        var filter: GenExpr?
        if chance(70) {
            parametersAllowed = true
            filter = predicate(.row(from.columns), depth: 2, subqueryDepth: depth)
            parametersAllowed = false
        }

        if !aggregate {
            let types = want ?? (0..<int(1...4)).map { _ in outputType() }
            for type in types {
                var e: GenExpr
                if let wantDomain, let c = from.columns.filter({ $0.domain == wantDomain && $0.type == type }).randomElement(using: &rng),
                    chance(70)
                {
                    e = columnExpr(c)
                } else {
                    e = expression(type, .row(from.columns), depth: chance(50) ? 0 : 2)
                }
                if e.type == .bool && !(e.prec == .atom) {
                    e = GenExpr(tally: "(\(e.tally))", lite: "(\(e.lite))", type: .bool, domain: e.domain)
                }
                outputs.append((e, name("a")))
            }
        } else {
            // Group keys: expressions with a column in them.
            var keys: [GenExpr] = []
            for _ in 0..<pick([0, 1, 1, 1, 2, 2, 3]) {
                let type = pick([GenType.string, .string, .string, .int, .int, .date, .bool, .double, .timestamp])
                var e: GenExpr
                if let wantDomain, let c = from.columns.filter({ $0.domain == wantDomain }).randomElement(using: &rng), keys.isEmpty,
                    chance(70)
                {
                    e = columnExpr(c)
                } else if chance(65), let c = from.columns.filter({ $0.type == type }).randomElement(using: &rng) {
                    e = columnExpr(c)
                } else {
                    e = expression(type, .row(from.columns), depth: 1)
                }
                if e.constant { continue }
                if e.type == .bool && e.prec != .atom {
                    e = GenExpr(tally: "(\(e.tally))", lite: "(\(e.lite))", type: .bool, domain: e.domain)
                }
                keys.append(e)
            }
            groupKeys = keys
            let level = Level.aggregate(rows: from.columns, keys: keys)
            var keyOutputs: [Int: Int] = [:]  // key index → output index
            if let want {
                for type in want {
                    if let k = keys.indices.filter({ keys[$0].type == type && keyOutputs[$0] == nil }).randomElement(using: &rng),
                        chance(60)
                    {
                        keyOutputs[k] = outputs.count
                        outputs.append((keys[k], name("a")))
                    } else {
                        outputs.append((expression(type, level, depth: int(0...2)), name("a")))
                    }
                }
            } else {
                for k in keys.indices where chance(80) {
                    keyOutputs[k] = outputs.count
                    outputs.append((keys[k], name("a")))
                }
                for _ in 0..<int(outputs.isEmpty ? 1...3 : 0...3) {
                    var e = expression(outputType(), level, depth: int(0...2))
                    if e.type == .bool && e.prec != .atom {
                        e = GenExpr(tally: "(\(e.tally))", lite: "(\(e.lite))", type: .bool, domain: e.domain)
                    }
                    outputs.append((e, name("a")))
                }
                if outputs.count > 1 && chance(30) {
                    // Keys need not come first.
                    let order = Array(outputs.indices).shuffled(using: &rng)
                    outputs = order.map { outputs[$0] }
                    for (k, o) in keyOutputs { keyOutputs[k] = order.firstIndex(of: o)! }
                }
            }
            for (k, key) in keys.enumerated() {
                if let o = keyOutputs[k], chance(50) {
                    if chance(50) {
                        groupBy.append((outputs[o].name, outputs[o].name))
                    } else {
                        groupBy.append(("\(o + 1)", "\(o + 1)"))
                    }
                } else {
                    groupBy.append((key.tally, key.lite))
                }
            }
            if keys.isEmpty {
                distinct = false
                // Without GROUP BY, SQLite groups only when an output has an aggregate.
                if !outputs.contains(where: { hasAggregateCall($0.expr.lite) }),
                    let call = aggregateCall(want?[0] ?? pick([.int, .double, .string]), from.columns)
                {
                    outputs[0].expr = call
                }
            }
            if chance(35) {
                parametersAllowed = true
                having = predicate(level, depth: 2, subqueryDepth: 0)
                parametersAllowed = false
            }
        }

        // ORDER BY: all output columns (the order is then fixed) or some.
        var orderTally: [String] = []
        var orderLite: [String] = []
        var ordered = false
        var limitTally = ""
        var limitLite = ""
        if (top && chance(55)) || (!top && chance(15)) {
            var positions = Array(outputs.indices).shuffled(using: &rng)
            ordered = top ? chance(80) : true
            if !ordered { positions = Array(positions.prefix(int(1...max(1, positions.count - 1)))) }
            ordered = ordered || positions.count == outputs.count
            // Values with rounding errors in them may tie in one engine and not the other.
            if outputs.contains(where: { $0.expr.inexact }) { ordered = false }
            // Sometimes an expression that is not an output, anywhere in the list (not with
            // DISTINCT): a key made of it and every output still fixes the order of the rows.
            var hidden: GenExpr?
            if !distinct && chance(20) {
                let e =
                    aggregate
                    ? expression(pick([.int, .string, .double]), .aggregate(rows: from.columns, keys: groupKeys), depth: 1)
                    : expression(pick([.int, .string, .double, .timestamp]), .row(from.columns), depth: 1)
                if !e.constant && e.type != .bool && !e.inexact { hidden = e }
            }
            let hiddenAt = int(0...positions.count)
            for (i, p) in (positions + [-1]).enumerated() {
                if i == hiddenAt, let hidden {
                    let descending = chance(50)
                    orderTally.append(hidden.tally + (descending ? " " + kw("DESC") : ""))
                    orderLite.append(hidden.lite + (descending ? " DESC NULLS FIRST" : " ASC NULLS LAST"))
                }
                if p < 0 { break }
                let (e, name) = outputs[p]
                var (t, l): (String, String)
                switch int(0...2) {
                case 0: (t, l) = (name, name)
                case 1: (t, l) = ("\(p + 1)", "\(p + 1)")
                default:
                    // Text equal to an output expression; a constant one would read as an ordinal.
                    if e.constant {
                        (t, l) = (name, name)
                    } else {
                        (t, l) = (e.tally, e.lite)
                    }
                }
                let descending = chance(50)
                if descending {
                    t += " " + kw("DESC")
                    l += " DESC"
                } else if chance(50) {
                    t += " " + kw("ASC")
                }
                if !descending { l += " ASC" }
                switch int(0...2) {
                case 0:
                    t += " " + kw("NULLS FIRST")
                    l += " NULLS FIRST"
                case 1:
                    t += " " + kw("NULLS LAST")
                    l += " NULLS LAST"
                default:
                    // Tally's default is PostgreSQL's: NULLs are larger than every value.
                    l += descending ? " NULLS FIRST" : " NULLS LAST"
                }
                orderTally.append(t)
                orderLite.append(l)
            }
            if ordered && chance(top ? 45 : 90) {
                let limit = pick([0, 1, 2, 3, 5, 10, 25, 100])
                let offset = chance(35) ? pick([0, 1, 2, 5, 20]) : nil
                if chance(85) || offset == nil {
                    limitTally = " \(kw("LIMIT")) \(limit)"
                    limitLite = " LIMIT \(limit)"
                    if let offset {
                        limitTally += " \(kw("OFFSET")) \(offset)"
                        limitLite += " OFFSET \(offset)"
                    }
                } else if let offset {
                    limitTally = " \(kw("OFFSET")) \(offset)"
                    limitLite = " LIMIT -1 OFFSET \(offset)"
                }
            } else if !top {
                // A subquery's ORDER BY without LIMIT says nothing: drop it.
                orderTally = []
                orderLite = []
                ordered = false
            }
        }

        var tally = kw("SELECT") + (distinct ? " " + kw("DISTINCT") : "") + " "
        var lite = "SELECT" + (distinct ? " DISTINCT" : "") + " "
        tally += outputs.map { "\($0.expr.tally) \(kw("AS")) \($0.name)" }.joined(separator: ", ")
        lite += outputs.map { "\($0.expr.lite) AS \($0.name)" }.joined(separator: ", ")
        tally += " \(kw("FROM")) " + from.tally
        lite += " FROM " + from.lite
        if let filter {
            tally += " \(kw("WHERE")) " + filter.tally
            lite += " WHERE " + filter.lite
        }
        if !groupBy.isEmpty {
            tally += " \(kw("GROUP BY")) " + groupBy.map(\.tally).joined(separator: ", ")
            lite += " GROUP BY " + groupBy.map(\.lite).joined(separator: ", ")
        }
        if let having {
            tally += " \(kw("HAVING")) " + having.tally
            lite += " HAVING " + having.lite
        }
        if !orderTally.isEmpty {
            tally += " \(kw("ORDER BY")) " + orderTally.joined(separator: ", ")
            lite += " ORDER BY " + orderLite.joined(separator: ", ")
        }
        tally += limitTally
        lite += limitLite
        return GenSelect(
            tally: tally,
            lite: lite,
            outputs: outputs.map { ($0.name, $0.expr.type, $0.expr.domain, $0.expr.inexact, $0.expr.fractional) },
            ordered: ordered
        )
    }

    mutating func outputType() -> GenType {
        pick([GenType.int, .int, .double, .string, .string, .string, .bool, .date, .timestamp])
    }

    // MARK: FROM

    mutating func fromClause(depth: Int) -> GenFrom {
        if depth > 0 && chance(18) {
            for _ in 0..<3 {
                if let join = join(depth: depth) { return join }
            }
        }
        let roll = int(0...99)
        if roll < 20 && depth > 0 {
            let sub = select(depth: depth - 1, top: false)
            let alias = name("t")
            let qualify = chance(30)
            return GenFrom(
                tally: "(\(sub.tally)) \(kw("AS")) \(alias)",
                lite: "(\(sub.lite)) AS \(alias)",
                columns: derivedColumns(sub.outputs, qualifier: qualify ? alias : nil)
            )
        }
        if roll < 35, let w = withQueries.randomElement(using: &rng) {
            if chance(50) {
                return GenFrom(tally: w.name, lite: w.name, columns: derivedColumns(w.select.outputs, qualifier: nil))
            }
            let alias = name("t")
            return GenFrom(
                tally: "\(w.name) \(kw("AS")) \(alias)",
                lite: "\(w.name) AS \(alias)",
                columns: derivedColumns(w.select.outputs, qualifier: chance(50) ? alias : nil)
            )
        }
        if chance(25) {
            let alias = name("t")
            let bare = chance(30)
            return GenFrom(
                tally: bare ? "events \(alias)" : "events \(kw("AS")) \(alias)",
                lite: "events AS \(alias)",
                columns: eventColumns(qualifier: chance(60) ? alias : nil)
            )
        }
        return GenFrom(tally: "events", lite: "events", columns: eventColumns(qualifier: nil))
    }

    func derivedColumns(
        _ outputs: [(name: String, type: GenType, domain: GenDomain, inexact: Bool, fractional: Bool)],
        qualifier: String?
    ) -> [GenColumn] {
        outputs.map { o in
            let ref = qualifier.map { "\($0).\(o.name)" } ?? o.name
            return GenColumn(tally: ref, lite: ref, type: o.type, domain: o.domain, inexact: o.inexact, fractional: o.fractional)
        }
    }

    func eventColumns(qualifier: String?) -> [GenColumn] {
        let q = qualifier.map { $0 + "." } ?? ""
        func column(_ name: String, _ type: GenType, _ domain: GenDomain, lite: String? = nil) -> GenColumn {
            GenColumn(tally: q + name, lite: q + (lite ?? name), type: type, domain: domain)
        }
        func property(_ key: String, _ type: GenType, _ domain: GenDomain) -> GenColumn {
            GenColumn(
                tally: "\(q)properties.\(key)",
                tallyAlternative: "\(q)properties['\(key)']",
                lite: "\(q)p_\(key)",
                type: type,
                domain: domain
            )
        }
        return [
            column("event_id", .string, .eventId),
            column("event_name", .string, .eventName),
            column("user_id", .string, .userId),
            column("anonymous_id", .string, .anonymousId),
            column("session_id", .string, .sessionId),
            column("bot_id", .string, .botId),
            column("timestamp", .timestamp, .timestamp, lite: "ts"),
            column("date", .date, .date, lite: "day"),
            column("received_at", .timestamp, .timestamp, lite: "received"),
            property("plan", .string, .plan),
            property("amount", .int, .amount),
            property("score", .double, .score),
            property("channel", .string, .channel),
            property("active", .bool, .active),
        ]
    }

    /// An INNER or LEFT join of two sources on equalities, small enough to check quickly.
    mutating func join(depth: Int) -> GenFrom? {
        func side(_ g: inout QueryGenerator) -> (GenFrom, raw: Bool) {
            let alias = g.name("t")
            if g.chance(55) {
                return (
                    GenFrom(
                        tally: "events \(g.kw("AS")) \(alias)",
                        lite: "events AS \(alias)",
                        columns: g.eventColumns(qualifier: alias)
                    ),
                    true
                )
            }
            if g.chance(30), let w = g.withQueries.randomElement(using: &g.rng) {
                return (
                    GenFrom(
                        tally: "\(w.name) \(g.kw("AS")) \(alias)",
                        lite: "\(w.name) AS \(alias)",
                        columns: g.derivedColumns(w.select.outputs, qualifier: alias)
                    ), false
                )
            }
            let sub = g.select(depth: depth - 1, top: false)
            return (
                GenFrom(
                    tally: "(\(sub.tally)) \(g.kw("AS")) \(alias)",
                    lite: "(\(sub.lite)) AS \(alias)",
                    columns: g.derivedColumns(sub.outputs, qualifier: alias)
                ), false
            )
        }
        let (left, leftRaw) = side(&self)
        let (right, rightRaw) = side(&self)
        var pairs: [(GenColumn, GenColumn)] = []
        if leftRaw && rightRaw {
            // Keys with few rows per value, so the join stays small.
            let keySets = [
                ["event_id"], ["user_id", "event_name", "date"], ["user_id", "session_id", "event_name"],
                ["anonymous_id", "event_name"], ["bot_id", "user_id", "date"], ["user_id", "properties.plan", "date"],
            ]
            for key in pick(keySets) {
                let l = left.columns.first { $0.tally.hasSuffix("." + key) }!
                let r = right.columns.first { $0.tally.hasSuffix("." + key) }!
                pairs.append((l, r))
            }
        } else {
            var candidates: [(GenColumn, GenColumn)] = []
            for l in left.columns where l.type != .bool && l.type != .double {
                for r in right.columns where r.type == l.type && (r.domain == l.domain || l.domain == .other || r.domain == .other) {
                    candidates.append((l, r))
                }
                // An integer key equal to a double one (2 = 2.0).
                if l.type == .int {
                    for r in right.columns where r.type == .double { candidates.append((l, r)) }
                }
            }
            guard !candidates.isEmpty else { return nil }
            candidates.shuffle(using: &rng)
            pairs = Array(candidates.prefix(chance(70) ? 1 : 2))
        }
        let leftJoin = chance(40)
        let joinTally = leftJoin ? kw("LEFT JOIN") : (chance(50) ? kw("JOIN") : kw("INNER JOIN"))
        let joinLite = leftJoin ? "LEFT JOIN" : "JOIN"
        // Equalities of the two sides' keys (strings sometimes through lower or upper), and
        // sometimes one of a column with a literal, which filters one side.
        var equalities: [(GenExpr, GenExpr)] = []
        for (l, r) in pairs {
            var (a, b) = (l.expr, r.expr)
            if a.type == .string && chance(15) {
                let f = pick(["lower", "upper"])
                a = GenExpr(tally: "\(kw(f.uppercased()))(\(a.tally))", lite: "\(f)(\(a.lite))", type: .string)
                b = GenExpr(tally: "\(kw(f.uppercased()))(\(b.tally))", lite: "\(f)(\(b.lite))", type: .string)
            }
            equalities.append((a, b))
        }
        if chance(25),
            let c = (chance(50) ? left : right).columns.filter({ $0.type != .bool && $0.type != .double }).randomElement(using: &rng)
        {
            equalities.insert((c.expr, literal(c.type, domain: c.domain)), at: int(0...equalities.count))
        }
        var onTally: [String] = []
        for (a, b) in equalities {
            onTally.append(chance(50) ? "\(a.tally) = \(b.tally)" : "\(b.tally) = \(a.tally)")
        }
        let onLite = equalities.map { "\($0.0.lite) = \($0.1.lite)" }.joined(separator: " AND ")
        let clause = GenFrom(
            tally: "\(left.tally) \(joinTally) \(right.tally) \(kw("ON")) " + onTally.joined(separator: " \(kw("AND")) "),
            lite: "\(left.lite) \(joinLite) \(right.lite) ON \(onLite)",
            columns: left.columns + right.columns
        )
        guard let n = rowCount(clause.lite, Self.maxJoinRows), n <= Self.maxJoinRows else { return nil }
        return clause
    }

    // MARK: Expressions

    /// Where an expression is: over rows (columns in scope), or over groups (group keys and
    /// aggregates of row expressions).
    enum Level {
        case row([GenColumn])
        case aggregate(rows: [GenColumn], keys: [GenExpr])
    }

    func columnExpr(_ c: GenColumn) -> GenExpr { c.expr }

    mutating func reference(_ c: GenColumn) -> GenExpr {
        var e = c.expr
        if let alternative = c.tallyAlternative, chance(30) {
            e.tally = alternative
        } else if c.tallyAlternative == nil && chance(8) {
            // A quoted identifier: "t3"."user_id".
            e.tally = c.tally.split(separator: ".").map { "\"\($0)\"" }.joined(separator: ".")
        }
        return e
    }

    /// A leaf of type `type` at `level`, or nil if there is none but a literal.
    mutating func leaf(_ type: GenType, _ level: Level) -> GenExpr {
        switch level {
        case .row(let columns):
            let matching = columns.filter { $0.type == type }
            if !matching.isEmpty && chance(75) { return reference(pick(matching)) }
        case .aggregate(let rows, let keys):
            let matching = keys.filter { $0.type == type }
            if !matching.isEmpty && chance(35) { return pick(matching) }
            if chance(80), let a = aggregateCall(type, rows) { return a }
        }
        return literal(type, domain: .other)
    }

    /// count, sum, avg, min, max over a row expression.
    mutating func aggregateCall(_ type: GenType, _ rows: [GenColumn]) -> GenExpr? {
        let level = Level.row(rows)
        func arg(_ g: inout QueryGenerator, _ t: GenType) -> GenExpr {
            if g.chance(70), let column = g.leafColumn(t, rows) { return column }
            return g.expression(t, level, depth: 1)
        }
        switch type {
        case .int:
            switch int(0...5) {
            case 0:
                return GenExpr(tally: kw("COUNT") + "(*)", lite: "count(*)", type: .int, domain: .count)
            case 1:
                let a = arg(&self, pick([.int, .string, .double, .date]))
                return GenExpr(tally: "\(kw("COUNT"))(\(a.tally))", lite: "count(\(a.lite))", type: .int, domain: .count)
            case 2:
                let a = arg(&self, pick([.int, .string, .string, .date, .bool, .double, .timestamp]))
                return GenExpr(
                    tally: "\(kw("COUNT"))(\(kw("DISTINCT")) \(a.tally))",
                    lite: "count(DISTINCT \(a.lite))",
                    type: .int,
                    domain: .count
                )
            case 3:
                let a = arg(&self, .int)
                return GenExpr(tally: "\(kw("SUM"))(\(a.tally))", lite: "sum(\(a.lite))", type: .int, domain: a.domain)
            default:
                let a = arg(&self, .int)
                let f = pick(["min", "max"])
                return GenExpr(tally: "\(kw(f.uppercased()))(\(a.tally))", lite: "\(f)(\(a.lite))", type: .int, domain: a.domain)
            }
        case .double:
            switch int(0...3) {
            case 0:
                let a = arg(&self, .double)
                return GenExpr(
                    tally: "\(kw("SUM"))(\(a.tally))",
                    lite: "sum(\(a.lite))",
                    type: .double,
                    domain: a.domain,
                    inexact: a.inexact,
                    fractional: a.fractional
                )
            case 1, 2:
                let a = arg(&self, pick([.int, .double]))
                return GenExpr(
                    tally: "\(kw("AVG"))(\(a.tally))",
                    lite: "avg(\(a.lite))",
                    type: .double,
                    domain: a.domain,
                    inexact: a.inexact,
                    fractional: true
                )
            default:
                let a = arg(&self, .double)
                let f = pick(["min", "max"])
                return GenExpr(
                    tally: "\(kw(f.uppercased()))(\(a.tally))",
                    lite: "\(f)(\(a.lite))",
                    type: .double,
                    domain: a.domain,
                    inexact: a.inexact,
                    fractional: a.fractional
                )
            }
        case .string, .date, .timestamp:
            let a = arg(&self, type)
            let f = pick(["min", "max"])
            return GenExpr(tally: "\(kw(f.uppercased()))(\(a.tally))", lite: "\(f)(\(a.lite))", type: type, domain: a.domain)
        case .bool:
            return nil
        }
    }

    mutating func leafColumn(_ type: GenType, _ columns: [GenColumn]) -> GenExpr? {
        let matching = columns.filter { $0.type == type }
        return matching.isEmpty ? nil : reference(pick(matching))
    }

    mutating func expression(_ type: GenType, _ level: Level, depth: Int) -> GenExpr {
        if type == .bool { return predicate(level, depth: depth, subqueryDepth: 0) }
        if depth <= 0 || chance(35) { return leaf(type, level) }
        let d = depth - 1
        switch type {
        case .int:
            switch int(0...11) {
            case 0, 1:
                let op = pick(["+", "-", "+"])
                return arithmetic(expression(.int, level, depth: d), op, expression(.int, level, depth: d), .int)
            case 2:
                // Products of products of sums could overflow: one side is a small literal
                // for aggregates, and depth is bounded for rows.
                let l = expression(.int, level, depth: d)
                let r = isAggregate(level) || d > 0 ? literal(.int, domain: .other) : expression(.int, level, depth: d)
                return arithmetic(l, "*", r, .int)
            case 3:
                let r = chance(70) ? GenExpr.int(Int64(pick([0, 2, 3, 7, -4, 10]))) : expression(.int, level, depth: d)
                return arithmetic(expression(.int, level, depth: d), "%", r, .int)
            case 4:
                let a = expression(.int, level, depth: d)
                if chance(25) {
                    // Through text and back.
                    return GenExpr(
                        tally: "\(kw("CAST"))(\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("STRING"))) \(kw("AS")) \(kw("INTEGER")))",
                        lite: "CAST(CAST(\(a.lite) AS TEXT) AS INTEGER)",
                        type: .int,
                        constant: a.constant
                    )
                }
                return GenExpr(tally: "\(kw("ABS"))(\(a.tally))", lite: "abs(\(a.lite))", type: .int, constant: a.constant)
            case 5:
                let a = expression(.string, level, depth: d)
                return GenExpr(tally: "\(kw("LENGTH"))(\(a.tally))", lite: "length(\(a.lite))", type: .int, constant: a.constant)
            case 6: return caseWhen(.int, level, depth: d)
            case 7: return coalesce(.int, level, depth: d)
            case 8: return nullif(.int, level, depth: d)
            case 9:
                let a = expression(.int, level, depth: d)
                let inner = a.prec == .atom && !a.tally.hasPrefix("-") ? (a.tally, a.lite) : ("(\(a.tally))", "(\(a.lite))")
                return GenExpr(tally: "-" + inner.0, lite: "-" + inner.1, type: .int, prec: .unary, constant: a.constant)
            case 10:
                let a = expression(.bool, level, depth: d)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("INTEGER")))",
                    lite: "CAST(\(a.lite) AS INTEGER)",
                    type: .int,
                    constant: a.constant
                )
            default:
                // CAST(double AS integer) rounds half away from zero in Tally (as PostgreSQL
                // does); SQLite truncates toward zero, but its round() rounds the same way.
                let a = expression(.double, level, depth: d)
                if a.inexact { return leaf(.int, level) }
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("INTEGER")))",
                    lite: "CAST(round(\(a.lite)) AS INTEGER)",
                    type: .int,
                    constant: a.constant
                )
            }
        case .double:
            switch int(0...9) {
            case 0, 1:
                let types = pick([(GenType.double, GenType.double), (.int, .double), (.double, .int)])
                return arithmetic(expression(types.0, level, depth: d), pick(["+", "-"]), expression(types.1, level, depth: d), .double)
            case 2:
                let l = expression(pick([.double, .int]), level, depth: d)
                let r = isAggregate(level) || d > 0 ? literal(.double, domain: .other) : expression(.double, level, depth: d)
                return arithmetic(l, "*", r, .double)
            case 3, 4:
                let l = expression(pick([.double, .int]), level, depth: d)
                let r = chance(30) ? GenExpr.int(Int64(pick([0, 3, 4]))) : expression(pick([.double, .int]), level, depth: d)
                return divide(l, r)
            case 5:
                let a = expression(pick([.double, .int]), level, depth: d)
                // Rounding a value with rounding errors in it can fall either way of a half.
                if a.inexact { return a }
                if chance(50) {
                    return GenExpr(tally: "\(kw("ROUND"))(\(a.tally))", lite: "round(\(a.lite))", type: .double, constant: a.constant)
                }
                let n = int(0...2)
                return GenExpr(
                    tally: "\(kw("ROUND"))(\(a.tally), \(n))",
                    lite: "round(\(a.lite), \(n))",
                    type: .double,
                    constant: a.constant,
                    fractional: n > 0 || a.fractional
                )
            case 6:
                let a = expression(.double, level, depth: d)
                if chance(30) {
                    let inner = a.prec == .atom && !a.tally.hasPrefix("-") ? (a.tally, a.lite) : ("(\(a.tally))", "(\(a.lite))")
                    return GenExpr(
                        tally: "-" + inner.0,
                        lite: "-" + inner.1,
                        type: .double,
                        prec: .unary,
                        constant: a.constant,
                        inexact: a.inexact,
                        fractional: a.fractional
                    )
                }
                return GenExpr(
                    tally: "\(kw("ABS"))(\(a.tally))",
                    lite: "abs(\(a.lite))",
                    type: .double,
                    constant: a.constant,
                    inexact: a.inexact,
                    fractional: a.fractional
                )
            case 7: return caseWhen(.double, level, depth: d)
            case 8: return coalesce(.double, level, depth: d)
            default:
                if chance(20) {
                    // Through text and back: the shortest text gives the same double again.
                    let a = expression(.double, level, depth: d)
                    return GenExpr(
                        tally: "\(kw("CAST"))(\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("STRING"))) \(kw("AS")) \(kw("DOUBLE")))",
                        lite: a.lite,
                        type: .double,
                        prec: a.prec,
                        constant: a.constant,
                        inexact: a.inexact,
                        fractional: a.fractional
                    )
                }
                let a = expression(.int, level, depth: d)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("DOUBLE")))",
                    lite: "CAST(\(a.lite) AS REAL)",
                    type: .double,
                    constant: a.constant
                )
            }
        case .string:
            switch int(0...6) {
            case 0, 1:
                let f = pick(["lower", "upper"])
                let a = expression(.string, level, depth: d)
                return GenExpr(tally: "\(kw(f.uppercased()))(\(a.tally))", lite: "\(f)(\(a.lite))", type: .string, constant: a.constant)
            case 2: return caseWhen(.string, level, depth: d)
            case 3: return coalesce(.string, level, depth: d)
            case 4: return nullif(.string, level, depth: d)
            case 5:
                // Dates as YYYY-MM-DD; doubles as their shortest text, which is SQLite's too
                // for the exact values the data hold (not after `/`).
                if chance(50) {
                    let a = expression(.date, level, depth: d)
                    return GenExpr(
                        tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("STRING")))",
                        lite: "date(\(a.liteIn(.mul)) * 86400, 'unixepoch')",
                        type: .string,
                        constant: a.constant
                    )
                }
                let a = expression(.double, level, depth: d)
                if a.inexact || a.fractional {
                    return leaf(.string, level)
                }
                // + 0.0: Tally prints -0.0 as "-0.0", SQLite as "0.0".
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tallyIn(.add)) + 0.0 \(kw("AS")) \(kw("STRING")))",
                    lite: "CAST(\(a.liteIn(.add)) + 0.0 AS TEXT)",
                    type: .string,
                    constant: a.constant
                )
            default:
                let a = expression(.int, level, depth: d)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("STRING")))",
                    lite: "CAST(\(a.lite) AS TEXT)",
                    type: .string,
                    constant: a.constant
                )
            }
        case .date:
            if chance(15) {
                // Through text and back.
                let a = expression(.date, level, depth: d)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("STRING"))) \(kw("AS")) \(kw("DATE")))",
                    lite: a.lite,
                    type: .date,
                    prec: a.prec,
                    constant: a.constant
                )
            }
            if chance(50) {
                let a = expression(.timestamp, level, depth: 0)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("DATE")))",
                    lite: "(\(a.liteIn(.mul)) / \(diffMicrosPerDay))",
                    type: .date,
                    constant: a.constant
                )
            }
            return leaf(.date, level)
        case .timestamp:
            if chance(50) {
                let a = expression(.date, level, depth: 0)
                return GenExpr(
                    tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("TIMESTAMP")))",
                    lite: "(\(a.liteIn(.mul)) * \(diffMicrosPerDay))",
                    type: .timestamp,
                    constant: a.constant
                )
            }
            return leaf(.timestamp, level)
        case .bool:
            fatalError("handled above")
        }
    }

    /// Whether SQLite's text calls an aggregate (they are rendered in lower case there, and
    /// no column or string the generator makes contains these).
    func hasAggregateCall(_ lite: String) -> Bool {
        ["count(", "sum(", "avg(", "min(", "max("].contains { lite.contains($0) }
    }

    func isAggregate(_ level: Level) -> Bool {
        if case .aggregate = level { return true }
        return false
    }

    func arithmetic(_ l: GenExpr, _ op: String, _ r: GenExpr, _ type: GenType) -> GenExpr {
        let p: GenPrec = op == "+" || op == "-" ? .add : .mul
        return GenExpr(
            tally: "\(l.tallyIn(p)) \(op) \(r.tallyIn(p, strict: true))",
            lite: "\(l.liteIn(p)) \(op) \(r.liteIn(p, strict: true))",
            type: type,
            prec: p,
            constant: l.constant && r.constant,
            inexact: l.inexact || r.inexact,
            fractional: l.fractional || r.fractional
        )
    }

    /// `/` is floating division in Tally; SQLite divides integers as integers.
    func divide(_ l: GenExpr, _ r: GenExpr) -> GenExpr {
        GenExpr(
            tally: "\(l.tallyIn(.mul)) / \(r.tallyIn(.mul, strict: true))",
            lite: "CAST(\(l.lite) AS REAL) / \(r.liteIn(.mul, strict: true))",
            type: .double,
            prec: .mul,
            constant: l.constant && r.constant,
            inexact: true,
            fractional: true
        )
    }

    mutating func caseWhen(_ type: GenType, _ level: Level, depth: Int) -> GenExpr {
        var tally = kw("CASE")
        var lite = "CASE"
        var constant = true
        var inexact = false
        var fractional = false
        for i in 0..<int(1...3) {
            let condition = predicate(level, depth: depth, subqueryDepth: 0)
            // The first branch is never NULL, so that the CASE has a type.
            let value = i == 0 ? expression(type, level, depth: depth) : branch(type, level, depth: depth)
            tally += " \(kw("WHEN")) \(condition.tally) \(kw("THEN")) \(value.tally)"
            lite += " WHEN \(condition.lite) THEN \(value.lite)"
            constant = constant && condition.constant && value.constant
            inexact = inexact || value.inexact
            fractional = fractional || value.fractional
        }
        if chance(70) {
            let value = branch(type, level, depth: depth)
            tally += " \(kw("ELSE")) \(value.tally)"
            lite += " ELSE \(value.lite)"
            constant = constant && value.constant
            inexact = inexact || value.inexact
            fractional = fractional || value.fractional
        }
        return GenExpr(
            tally: tally + " " + kw("END"),
            lite: lite + " END",
            type: type,
            constant: constant,
            inexact: inexact,
            fractional: fractional
        )
    }

    /// A CASE or COALESCE branch: of the type, or NULL.
    mutating func branch(_ type: GenType, _ level: Level, depth: Int) -> GenExpr {
        if chance(10) { return GenExpr(tally: kw("NULL"), lite: "NULL", type: type, constant: true) }
        // An integer branch among doubles: the CASE or COALESCE is double throughout.
        if type == .double && chance(25) { return expression(.int, level, depth: depth) }
        return expression(type, level, depth: depth)
    }

    mutating func coalesce(_ type: GenType, _ level: Level, depth: Int) -> GenExpr {
        var args = [expression(type, level, depth: depth)]
        for _ in 0..<int(1...2) {
            args.append(chance(70) ? literal(type, domain: args[0].domain) : branch(type, level, depth: depth))
        }
        return GenExpr(
            tally: "\(kw("COALESCE"))(" + args.map(\.tally).joined(separator: ", ") + ")",
            lite: "coalesce(" + args.map(\.lite).joined(separator: ", ") + ")",
            type: type,
            constant: args.allSatisfy(\.constant),
            inexact: args.contains(where: \.inexact),
            fractional: args.contains(where: \.fractional)
        )
    }

    mutating func nullif(_ type: GenType, _ level: Level, depth: Int) -> GenExpr {
        let a = expression(type, level, depth: depth)
        let b = chance(70) ? literal(type, domain: a.domain) : expression(type, level, depth: depth)
        return GenExpr(
            tally: "\(kw("NULLIF"))(\(a.tally), \(b.tally))",
            lite: "nullif(\(a.lite), \(b.lite))",
            type: type,
            constant: a.constant && b.constant,
            inexact: a.inexact,
            fractional: a.fractional
        )
    }

    // MARK: Predicates

    /// A boolean expression. `subqueryDepth` > 0 allows IN (subquery).
    mutating func predicate(_ level: Level, depth: Int, subqueryDepth: Int) -> GenExpr {
        if depth > 0 && chance(35) {
            let d = depth - 1
            switch int(0...4) {
            case 0, 1:
                let (l, r) = (
                    predicate(level, depth: d, subqueryDepth: subqueryDepth), predicate(level, depth: d, subqueryDepth: subqueryDepth)
                )
                return logical(l, "AND", r, .and)
            case 2, 3:
                let (l, r) = (
                    predicate(level, depth: d, subqueryDepth: subqueryDepth), predicate(level, depth: d, subqueryDepth: subqueryDepth)
                )
                return logical(l, "OR", r, .or)
            default:
                let a = predicate(level, depth: d, subqueryDepth: subqueryDepth)
                return GenExpr(
                    tally: "\(kw("NOT")) \(a.tallyIn(.not))",
                    lite: "NOT \(a.liteIn(.not))",
                    type: .bool,
                    prec: .not,
                    constant: a.constant
                )
            }
        }
        return simplePredicate(level, depth: depth, subqueryDepth: subqueryDepth)
    }

    func logical(_ l: GenExpr, _ op: String, _ r: GenExpr, _ p: GenPrec) -> GenExpr {
        GenExpr(
            tally: "\(l.tallyIn(p)) \(op) \(r.tallyIn(p, strict: true))",
            lite: "\(l.liteIn(p)) \(op) \(r.liteIn(p, strict: true))",
            type: .bool,
            prec: p,
            constant: l.constant && r.constant
        )
    }

    /// An operand for a comparison: usually a column (a key or an aggregate over groups).
    mutating func operand(_ level: Level, depth: Int) -> GenExpr {
        let type = pick([GenType.string, .string, .int, .int, .double, .date, .timestamp])
        if chance(60) {
            switch level {
            case .row(let columns):
                let matching = columns.filter { $0.type != .bool }
                if !matching.isEmpty { return reference(pick(matching)) }
            case .aggregate:
                break
            }
        }
        return expression(type, level, depth: min(depth, 1))
    }

    mutating func simplePredicate(_ level: Level, depth: Int, subqueryDepth: Int) -> GenExpr {
        switch int(0...13) {
        case 0...3:
            // Comparison with a literal (or another expression of the type).
            var a = operand(level, depth: depth)
            var b: GenExpr
            if a.type == .date && chance(20) {
                // A date compares with a timestamp as its midnight.
                b = literal(.timestamp, domain: .timestamp, context: !a.constant)
                a.lite = "(\(a.liteIn(.mul)) * \(diffMicrosPerDay))"
                a.prec = .atom
            } else if a.type == .timestamp && chance(20) {
                b = literal(.date, domain: .date, context: !a.constant)
                b.lite = "(\(b.liteIn(.mul)) * \(diffMicrosPerDay))"
                b.prec = .atom
            } else {
                b =
                    chance(80)
                    ? literal(a.type, domain: a.domain, context: !a.constant)
                    : expression(a.type == .int ? pick([.int, .double]) : a.type, level, depth: 1)
            }
            let op = pick(["=", "<>", "<", "<=", ">", ">=", "=", "!="])
            let (l, r) = chance(80) ? (a, b) : (b, a)
            return GenExpr(
                tally: "\(l.tallyIn(.add)) \(op) \(r.tallyIn(.add))",
                lite: "\(l.liteIn(.add)) \(op) \(r.liteIn(.add))",
                type: .bool,
                prec: .compare,
                constant: a.constant && b.constant
            )
        case 4:
            let a = chance(20) ? leafOrPredicateAtom(level) : operand(level, depth: depth)
            let not = chance(50) ? " " + kw("NOT") : ""
            return GenExpr(
                tally: "\(a.tallyIn(.add)) \(kw("IS"))\(not) \(kw("NULL"))",
                lite: "\(a.liteIn(.add)) IS\(not.isEmpty ? "" : " NOT") NULL",
                type: .bool,
                prec: .compare,
                constant: a.constant
            )
        case 5, 6:
            var a = operand(level, depth: depth)
            if a.type == .double { a = operand(level, depth: depth) }
            var items: [GenExpr] = []
            for _ in 0..<int(1...4) {
                // An integer is found among doubles by value (2 = 2.0).
                let type = a.type == .int && chance(10) ? GenType.double : a.type
                items.append(literal(type, domain: a.domain, context: !a.constant))
            }
            if chance(10) { items.append(GenExpr(tally: kw("NULL"), lite: "NULL", type: a.type, constant: true)) }
            let not = chance(35)
            return GenExpr(
                tally: "\(a.tallyIn(.add)) \(not ? kw("NOT") + " " : "")\(kw("IN")) (" + items.map(\.tally).joined(separator: ", ") + ")",
                lite: "\(a.liteIn(.add)) \(not ? "NOT " : "")IN (" + items.map(\.lite).joined(separator: ", ") + ")",
                type: .bool,
                prec: .compare,
                constant: a.constant
            )
        case 7:
            let a = operand(level, depth: depth)
            var (lo, hi) = (
                literal(a.type, domain: a.domain, context: !a.constant), literal(a.type, domain: a.domain, context: !a.constant)
            )
            if chance(85), let x = literalValue(lo), let y = literalValue(hi), y < x { swap(&lo, &hi) }
            let not = chance(30)
            return GenExpr(
                tally:
                    "\(a.tallyIn(.add)) \(not ? kw("NOT") + " " : "")\(kw("BETWEEN")) \(lo.tallyIn(.add)) \(kw("AND")) \(hi.tallyIn(.add))",
                lite: "\(a.liteIn(.add)) \(not ? "NOT " : "")BETWEEN \(lo.liteIn(.add)) AND \(hi.liteIn(.add))",
                type: .bool,
                prec: .compare,
                constant: a.constant
            )
        case 8, 9:
            let a = stringOperand(level, depth: depth)
            let pattern = likePattern(a.domain)
            let not = chance(25)
            let notTally = not ? kw("NOT") + " " : ""
            let notLite = not ? "NOT " : ""
            if chance(30) {
                return GenExpr(
                    tally: "\(a.tallyIn(.add)) \(notTally)\(kw("ILIKE")) \(quote(pattern))",
                    lite: "lower(\(a.lite)) \(notLite)LIKE lower(\(quote(pattern)))",
                    type: .bool,
                    prec: .compare,
                    constant: a.constant
                )
            }
            return GenExpr(
                tally: "\(a.tallyIn(.add)) \(notTally)\(kw("LIKE")) \(quote(pattern))",
                lite: "\(a.liteIn(.add)) \(notLite)LIKE \(quote(pattern))",
                type: .bool,
                prec: .compare,
                constant: a.constant
            )
        case 10:
            if subqueryDepth > 0 {
                let type = pick([GenType.string, .string, .int])
                var a: GenExpr
                var domain: GenDomain = .other
                if case .row(let columns) = level, let c = columns.filter({ $0.type == type }).randomElement(using: &rng) {
                    a = reference(c)
                    domain = c.domain
                } else {
                    a = expression(type, level, depth: 1)
                    domain = a.domain
                }
                let sub = select(depth: subqueryDepth - 1, top: false, want: [type], wantDomain: domain)
                let not = chance(30)
                return GenExpr(
                    tally: "\(a.tallyIn(.add)) \(not ? kw("NOT") + " " : "")\(kw("IN")) (\(sub.tally))",
                    lite: "\(a.liteIn(.add)) \(not ? "NOT " : "")IN (\(sub.lite))",
                    type: .bool,
                    prec: .compare,
                    constant: false
                )
            }
            return leafOrPredicateAtom(level)
        default:
            return leafOrPredicateAtom(level)
        }
    }

    /// A boolean column, or a comparison of two expressions of one type.
    mutating func leafOrPredicateAtom(_ level: Level) -> GenExpr {
        if case .row(let columns) = level, let c = columns.filter({ $0.type == .bool }).randomElement(using: &rng), chance(70) {
            return reference(c)
        }
        if case .aggregate(_, let keys) = level, let k = keys.filter({ $0.type == .bool }).randomElement(using: &rng), chance(50) {
            return k
        }
        if chance(10) {
            let a = expression(.int, level, depth: 1)
            return GenExpr(
                tally: "\(kw("CAST"))(\(a.tally) \(kw("AS")) \(kw("BOOLEAN")))",
                lite: "(\(a.liteIn(.add)) <> 0)",
                type: .bool,
                constant: a.constant
            )
        }
        if chance(15) {
            // Booleans compared (false < true).
            let a = predicate(level, depth: 0, subqueryDepth: 0)
            let b = predicate(level, depth: 0, subqueryDepth: 0)
            let op = pick(["=", "<>", "<"])
            return GenExpr(
                tally: "\(a.tallyIn(.add)) \(op) \(b.tallyIn(.add))",
                lite: "\(a.liteIn(.add)) \(op) \(b.liteIn(.add))",
                type: .bool,
                prec: .compare,
                constant: a.constant && b.constant
            )
        }
        let type = pick([GenType.int, .string, .double])
        let a = expression(type, level, depth: 1)
        let b = expression(type, level, depth: 1)
        let op = pick(["=", "<>", "<", ">=", "!="])
        return GenExpr(
            tally: "\(a.tallyIn(.add)) \(op) \(b.tallyIn(.add))",
            lite: "\(a.liteIn(.add)) \(op) \(b.liteIn(.add))",
            type: .bool,
            prec: .compare,
            constant: a.constant && b.constant
        )
    }

    mutating func stringOperand(_ level: Level, depth: Int) -> GenExpr {
        if case .row(let columns) = level, let c = columns.filter({ $0.type == .string }).randomElement(using: &rng), chance(75) {
            return reference(c)
        }
        return expression(.string, level, depth: min(depth, 1))
    }

    // MARK: Literals

    /// A literal of the type, drawn from the values of the domain. `context`: the literal is
    /// compared with an expression of its type, which then types it: a date or timestamp may
    /// be a bare string, and any literal may become a `?` parameter.
    mutating func literal(_ type: GenType, domain: GenDomain, context: Bool = false) -> GenExpr {
        switch type {
        case .int:
            let n: Int64
            switch domain {
            case .amount: n = chance(15) ? 0 : Int64(int(-520...520))
            case .count: n = Int64(pick([0, 1, 2, 3, 5, 8, 10, 20, 40, 100, 500]))
            default: n = Int64(chance(50) ? int(-5...12) : int(-600...600))
            }
            let e = GenExpr.int(n)
            return context ? maybeParameter(e, .int(n), .int(n)) : e
        case .double:
            let x: Double
            switch domain {
            case .score, .amount: x = Double(int(-420...420)) / 4
            default: x = chance(50) ? Double(int(-20...40)) / 4 : Double(int(-2400...2400)) / 8
            }
            let e = GenExpr.double(x)
            return context ? maybeParameter(e, .double(x), .double(x)) : e
        case .string:
            let text = stringValue(domain)
            let e = GenExpr.string(text)
            return context ? maybeParameter(e, .string(text), .string(text)) : e
        case .bool:
            let b = chance(50)
            return GenExpr(tally: kw(b ? "TRUE" : "FALSE"), lite: b ? "1" : "0", type: .bool, constant: true)
        case .date:
            let day = Int(diffFirstDay) + int(-1...Int(diffDayCount))
            var e = GenExpr(tally: "\(kw("DATE")) '\(civilDate(day))'", lite: "\(day)", type: .date, constant: true, literal: true)
            if context {
                if chance(25) { e.tally = "'\(civilDate(day))'" }
                let tally: ParameterValue = chance(50) ? .date(Int32(day)) : .string(civilDate(day))
                e = maybeParameter(e, tally, .int(Int64(day)))
            }
            return e
        case .timestamp:
            // An event's own time (to the microsecond), a midnight, or any second.
            let micros: Int64
            switch int(0...99) {
            case 0..<20 where !timestamps.isEmpty: micros = pick(timestamps)
            case 0..<45: micros = (Int64(diffFirstDay) + Int64(int(-1...Int(diffDayCount)))) * diffMicrosPerDay
            default: micros = (Int64(diffFirstDay) * 86_400 + Int64(int(-3_600...(Int(diffDayCount) * 86_400 + 3_600)))) * 1_000_000
            }
            let plain = timestampText(micros, offsetMinutes: 0)
            let text = plain.replacingOccurrences(of: "T", with: " ").dropLast()
            var e = GenExpr(
                tally: chance(50) ? "\(kw("CAST"))('\(text)' \(kw("AS")) \(kw("TIMESTAMP")))" : "\(kw("TIMESTAMP")) '\(text)'",
                lite: "\(micros)",
                type: .timestamp,
                constant: true,
                literal: true
            )
            if context {
                // RFC 3339, sometimes with an offset from UTC.
                let rfc3339 = timestampText(micros, offsetMinutes: chance(20) ? pick([-300, -60, 60, 120, 330]) : 0)
                if chance(25) { e.tally = "'\(rfc3339)'" }
                let tally: ParameterValue = chance(50) ? .timestamp(micros) : .string(rfc3339)
                e = maybeParameter(e, tally, .int(micros))
            }
            return e
        }
    }

    mutating func stringValue(_ domain: GenDomain) -> String {
        switch domain {
        case .eventId: return String(format16(UInt64(int(0...(eventCount + 5)))))
        case .eventName: return chance(90) ? pick(DiffVocabulary.eventNames) : pick(["nope", "Signup", ""])
        case .userId: return "u\(int(0...(DiffVocabulary.users + 4)))"
        case .anonymousId: return "anon\(int(0...(DiffVocabulary.anonymous + 3)))"
        case .sessionId: return "s\(int(0...(DiffVocabulary.sessions + 2)))"
        case .botId: return chance(90) ? pick(DiffVocabulary.bots) : "bot_9"
        case .plan: return chance(90) ? pick(DiffVocabulary.plans) : pick(["Pro", "none", "pro "])
        case .channel: return chance(90) ? pick(DiffVocabulary.channels) : pick(["WEB", "e_mail", "o'"])
        default:
            return pick(
                DiffVocabulary.eventNames + DiffVocabulary.plans + DiffVocabulary.channels + DiffVocabulary.bots
                    + ["u1", "u7", "u42", "s3", "anon2", "", "a", "zzz", "0", "12"]
            )
        }
    }

    func format16(_ sequence: UInt64) -> String {
        let hex = String(sequence, radix: 16)
        return "evt_" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }

    /// A LIKE pattern made from a value of the domain: a prefix, a suffix, a middle, or the
    /// value with `_` for some characters.
    mutating func likePattern(_ domain: GenDomain) -> String {
        var value = Array(stringValue(domain))
        if value.isEmpty { return pick(["%", "", "_%"]) }
        switch int(0...5) {
        case 0: return String(value.prefix(int(0...value.count))) + "%"
        case 1: return "%" + String(value.suffix(int(0...value.count)))
        case 2:
            let start = int(0...(value.count - 1))
            let end = int(start...value.count)
            return "%" + String(value[start..<end]) + "%"
        case 3:
            for i in value.indices where chance(25) { value[i] = "_" }
            return String(value)
        case 4:
            // Case changed: matches only through ILIKE.
            return String(value).uppercased() + (chance(50) ? "%" : "")
        default: return String(value)
        }
    }

    func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    func literalValue(_ e: GenExpr) -> Double? {
        guard e.literal else { return nil }
        return Double(e.lite.trimmingCharacters(in: ["(", ")"]))
    }

    func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// RFC 3339 text of a time (µs since the epoch), in local time at an offset from UTC,
    /// with the fraction of a second when there is one.
    func timestampText(_ micros: Int64, offsetMinutes: Int) -> String {
        let local = micros + Int64(offsetMinutes) * 60_000_000
        let seconds = local >= 0 ? local / 1_000_000 : (local - 999_999) / 1_000_000
        let fraction = local - seconds * 1_000_000
        let day = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let s = Int(seconds - Int64(day) * 86_400)
        var text = "\(civilDate(day))T\(two(s / 3600)):\(two(s / 60 % 60)):\(two(s % 60))"
        if fraction != 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: 6 - digits.count) + digits
        }
        if offsetMinutes == 0 { return text + "Z" }
        let sign = offsetMinutes < 0 ? "-" : "+"
        return text + sign + two(abs(offsetMinutes) / 60) + ":" + two(abs(offsetMinutes) % 60)
    }
}

extension GenExpr {
    static func int(_ n: Int64) -> GenExpr {
        let text = n < 0 ? "(\(n))" : "\(n)"
        return GenExpr(tally: text, lite: text, type: .int, constant: true, literal: true)
    }
    static func double(_ x: Double) -> GenExpr {
        let text = x < 0 ? "(\(x))" : "\(x)"
        return GenExpr(tally: text, lite: text, type: .double, constant: true, literal: true)
    }
    static func string(_ s: String) -> GenExpr {
        let text = "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        return GenExpr(tally: text, lite: text, type: .string, constant: true)
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), by Howard Hinnant's civil_from_days.
func civilDate(_ days: Int) -> String {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
}
