import EventLog
import QueryEngine

/// A row-at-a-time evaluator written straight from `conventions.md`, for the engine to agree
/// with. Slow and obvious on purpose.
enum Reference {
    static func person(_ e: Event) -> String? { e.userId ?? e.anonymousId }

    static func value(_ e: Event, _ property: String) -> PropertyValue? {
        switch property {
        case "event_name": return .string(e.name)
        case "user_id": return e.userId.map { .string($0) }
        case "anonymous_id": return e.anonymousId.map { .string($0) }
        case "session_id": return e.sessionId.map { .string($0) }
        case "bot_id": return e.botId.map { .string($0) }
        default:
            // The last value of a repeated key; JSON null is "not set".
            guard let v = e.properties.last(where: { $0.key == property })?.value else { return nil }
            if case .null = v { return nil }
            return v
        }
    }

    static func holds(_ f: PropertyFilter, _ e: Event) -> Bool {
        guard let v = value(e, f.property) else {
            return [.notEquals, .notIn, .notContains, .isNotSet].contains(f.op)
        }
        func order(_ other: FilterValue) -> Int? {
            switch (v, other) {
            case (.string(let a), .string(let b)), (.json(let a), .string(let b)): return a < b ? -1 : a == b ? 0 : 1
            case (.int(let a), .number(let b)): return Double(a) < b ? -1 : Double(a) == b ? 0 : 1
            case (.double(let a), .number(let b)): return a < b ? -1 : a == b ? 0 : 1
            case (.bool(let a), .bool(let b)): return a == b ? 0 : nil
            default: return nil
            }
        }
        var text: String? = nil
        if case .string(let s) = v { text = s }
        if case .json(let s) = v { text = s }
        switch f.op {
        case .isSet: return true
        case .isNotSet: return false
        case .equals: return order(f.value!) == 0
        case .notEquals: return order(f.value!) != 0
        case .greater: return order(f.value!).map { $0 > 0 } ?? false
        case .greaterOrEqual: return order(f.value!).map { $0 >= 0 } ?? false
        case .less: return order(f.value!).map { $0 < 0 } ?? false
        case .lessOrEqual: return order(f.value!).map { $0 <= 0 } ?? false
        case .isIn, .notIn:
            guard case .list(let list) = f.value! else { return false }
            let found = list.contains { order($0) == 0 }
            return f.op == .isIn ? found : !found
        case .contains:
            guard let text, case .string(let needle) = f.value! else { return false }
            return text.contains(needle)
        case .notContains:
            guard let text, case .string(let needle) = f.value! else { return true }
            return !text.contains(needle)
        case .containsIgnoringCase:
            guard let text, case .string(let needle) = f.value! else { return false }
            return text.lowercased().contains(needle.lowercased())
        }
    }

    /// Furthest step per person: entries are (time, step) for every step an event matches
    /// (and "other" for strict), ordered by time then step.
    static func funnel(_ q: FunnelQuery, _ events: [Event]) -> [Int] {
        funnelWithBreakdown(q, events).users
    }

    /// The funnel by the model's definition: each occurrence of the first step starts an
    /// attempt, which reaches step L+1 at the first later entry of step L within the window
    /// (in strict order, only if no other event of the person comes between); an exclusion
    /// event ends every attempt that has reached its `fromStep` but not its `toStep`. A person
    /// counts up to the best level of any attempt. With a breakdown, the person's value is the
    /// one on the first-step event of the attempt that reached that level first (the latest
    /// such start when several reach it at the same entry).
    static func funnelWithBreakdown(_ q: FunnelQuery, _ events: [Event]) -> (users: [Int], groups: [String?: [Int]]) {
        // (time, order code, value): steps 0..<64, exclusions 500+, unrelated 1000.
        var byPerson: [String: [(Int64, Int, String?)]] = [:]
        for e in events where e.timestamp >= q.start && e.timestamp < q.end {
            guard let p = person(e) else { continue }
            var any = false
            for (s, step) in q.steps.enumerated() where e.name == step.event && step.filters.allSatisfy({ holds($0, e) }) {
                var value: String?
                if s == 0, let key = q.breakdown, let v = e.properties.last(where: { $0.key == key })?.value {
                    switch v {
                    case .string(let t): value = t
                    case .int(let n): value = String(n)
                    case .double(let d): value = "\(d)"
                    case .bool(let b): value = b ? "true" : "false"
                    default: value = nil
                    }
                }
                byPerson[p, default: []].append((e.timestamp, s, value))
                any = true
            }
            for (x, exclusion) in q.exclusions.enumerated() where e.name == exclusion.event && exclusion.filters.allSatisfy({ holds($0, e) }) {
                byPerson[p, default: []].append((e.timestamp, 500 + x, nil))
                any = true
            }
            if !any && q.strict { byPerson[p, default: []].append((e.timestamp, 1000, nil)) }
        }
        var users = [Int](repeating: 0, count: q.steps.count)
        var groups: [String?: [Int]] = [:]
        for (_, unsorted) in byPerson {
            let entries = unsorted.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            var best = 0
            var bestAt = Int.max
            var bestValue: String?
            for (i, start) in entries.enumerated() where start.1 == 0 {
                // alive[L]: the attempt has reached steps 0..<L and may go on.
                var alive = [Bool](repeating: false, count: q.steps.count + 1)
                alive[1] = true
                var level = 1
                var reachedAt = i
                for k in (i + 1)..<max(i + 1, entries.count) {
                    let e = entries[k]
                    if q.strict {
                        guard e.1 == level, e.0 - start.0 <= q.window, level < q.steps.count else { break }
                        level += 1
                        reachedAt = k
                        continue
                    }
                    if e.1 >= 500 && e.1 < 1000 {
                        let x = q.exclusions[e.1 - 500]
                        for l in (x.fromStep + 1)...x.toStep { alive[l] = false }
                        continue
                    }
                    let s = e.1
                    guard s < q.steps.count, s >= 1, alive[s], e.0 - start.0 <= q.window else { continue }
                    alive[s + 1] = true
                    if s + 1 > level {
                        level = s + 1
                        reachedAt = k
                    }
                }
                if level > best || (level == best && reachedAt < bestAt) || (level == best && reachedAt == bestAt) {
                    best = level
                    bestAt = reachedAt
                    bestValue = start.2
                }
            }
            for s in 0..<best { users[s] += 1 }
            if best > 0 {
                var g = groups[bestValue] ?? [Int](repeating: 0, count: q.steps.count)
                for s in 0..<best { g[s] += 1 }
                groups[bestValue] = g
            }
        }
        return (users, groups)
    }

    static func cohorts(_ q: CohortQuery, _ events: [Event]) -> [Cohort] {
        var first: [String: Int64] = [:]
        for e in events where q.startEvent == nil || e.name == q.startEvent {
            guard let p = person(e) else { continue }
            first[p] = min(first[p] ?? .max, e.timestamp)
        }
        var result: [Cohort] = []
        var c = q.unit.index(ofMicros: q.start)
        if q.unit.start(ofIndex: c) < q.start { c += 1 }
        while q.unit.start(ofIndex: c) < q.end {
            let members = Set(first.filter { q.unit.index(ofMicros: $0.value) == c }.keys)
            var n = 0
            if let periods = q.periods { n = periods + 1 } else { while q.unit.start(ofIndex: c + n) < q.end { n += 1 } }
            n = max(n, 1)
            var retention: [Double] = []
            for k in 0..<n {
                if members.isEmpty {
                    retention.append(0)
                } else if k == 0 {
                    retention.append(1)
                } else {
                    let back = Set(events.filter { e in
                        guard let p = person(e), members.contains(p), q.returnEvent == nil || e.name == q.returnEvent else { return false }
                        return q.unit.index(ofMicros: e.timestamp) == c + k
                    }.compactMap(person))
                    retention.append(Double(back.count) / Double(members.count))
                }
            }
            result.append(Cohort(start: q.unit.start(ofIndex: c), users: members.count, retention: retention))
            c += 1
        }
        return result
    }
}
