public import ColumnStore
import EventLog

public struct UserReport: Sendable, Equatable {
    public var events = 0
    public var sessions = 0
    public var messages = 0
    /// Mean over the user's sessions of last minus first event time (seconds).
    public var averageSessionSeconds: Double?
    public var lastActive: Int64?
    public var satisfaction: Double?
    /// Topics of the user's events, most frequent first.
    public var topics: [String] = []
    /// Days with at least one event among the 30 ending at the reference time.
    public var activeDaysLast30 = 0
    public var dailyActive = false

    public init() {}
}

/// One user's analytics. The user is found by `user_id` through the project dictionary, and
/// only that user's rows of each block are looked at (rows are grouped by person).
public enum UserEngine {
    /// Nil when the project has no events of this user at all.
    public static func run(userId: String, start: Int64, end: Int64, reference: Int64, on snapshot: QuerySnapshot) throws -> UserReport? {
        guard let person = snapshot.people.find(userId) else { return nil }
        var report = UserReport()
        var sessions: [Int64: (Int64, Int64)] = [:]
        var topicCounts: [String: Int] = [:]
        var satisfactionSum = 0.0
        var satisfactionCount = 0
        var activeDays = Set<Int32>()
        let dayMicros: Int64 = 86_400_000_000
        for block in snapshot.blocks {
            try snapshot.checkDeadline()
            let f = block.footer
            let inRange = f.maxTimestamp >= start && f.minTimestamp < end
            let inLast30 = f.maxTimestamp >= reference - 30 * dayMicros && f.minTimestamp <= reference
            guard inRange || inLast30 else { continue }
            let columns = BlockColumns(block)
            guard let users = try columns.builtin("user_id"), case .ints(let ids) = users.values else { continue }
            // Rows are ordered by person, so the user's rows are one run: find it by binary
            // search on the person order (user id, else anonymous id, people without either last).
            let rows = try userRows(person: Int64(person), ids: ids, users: users, columns: columns)
            guard !rows.isEmpty else { continue }
            let ts = try columns.timestamps()
            guard let nameColumn = try columns.builtin("event_name"), case .codes(let names, let dictionary) = nameColumn.values else { continue }
            let sessionColumn = try columns.builtin("session_id")
            let topic = try columns.property("topic").first { $0.descriptor.kind == .string }
            let satisfaction = try columns.property("satisfaction")
            for r in rows {
                let t = ts[r]
                if t >= reference - 30 * dayMicros && t <= reference { activeDays.insert(BlockBuilder.day(ofMicros: t)) }
                if t >= reference - dayMicros && t <= reference { report.dailyActive = true }
                guard t >= start && t < end else { continue }
                report.events += 1
                report.lastActive = max(report.lastActive ?? .min, t)
                let name = dictionary.string(names[r])
                if name == "message_received" || name == "message_sent" { report.messages += 1 }
                if let sessionColumn, sessionColumn.isPresent(r), case .ints(let s) = sessionColumn.values {
                    let span = sessions[s[r]] ?? (t, t)
                    sessions[s[r]] = (min(span.0, t), max(span.1, t))
                }
                if let topic, topic.isPresent(r), case .codes(let codes, let d) = topic.values { topicCounts[d.string(codes[r]), default: 0] += 1 }
                for c in satisfaction where c.isPresent(r) {
                    switch c.values {
                    case .ints(let v): satisfactionSum += Double(v[r]); satisfactionCount += 1
                    case .doubles(let v): satisfactionSum += v[r]; satisfactionCount += 1
                    default: break
                    }
                }
            }
        }
        report.sessions = sessions.count
        if !sessions.isEmpty {
            report.averageSessionSeconds = sessions.values.reduce(0.0) { $0 + Double($1.1 - $1.0) / 1_000_000 } / Double(sessions.count)
        }
        if satisfactionCount > 0 { report.satisfaction = satisfactionSum / Double(satisfactionCount) }
        report.topics = topicCounts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        report.activeDaysLast30 = activeDays.count
        return report
    }

    /// The rows whose `user_id` is `person`. They lie in one run, since rows are ordered by
    /// person (a user id, else an anonymous id), found by binary search.
    static func userRows(person: Int64, ids: [Int64], users: DecodedColumn, columns: BlockColumns) throws -> [Int] {
        let persons = try columns.persons()
        // Binary search for the first row whose person is >= the user's id.
        var low = 0
        var high = persons.count
        while low < high {
            let mid = (low + high) / 2
            if Int64(persons[mid]) < person { low = mid + 1 } else { high = mid }
        }
        var end = low
        while end < persons.count && Int64(persons[end]) == person { end += 1 }
        // Rows of the run whose person is this id through an anonymous id have no user_id.
        return (low..<end).filter { users.isPresent($0) && ids[$0] == person }
    }
}

public struct RealtimeReport: Sendable, Equatable {
    public struct Window: Sendable, Equatable {
        public var events = 0
        public var activeUsers = 0
        public var activeConversations = 0
        public var messages = 0
        public var responseTimeSum = 0.0
        public var responseTimes = 0
        public var satisfactionSum = 0.0
        public var satisfactions = 0

        public init() {}
    }
    /// The last `minutes` minutes, and the same minutes one day earlier.
    public var current = Window()
    public var dayBefore = Window()
    /// Satisfaction over the last hour and the same hour one day earlier.
    public var lastHour = Window()
    public var lastHourDayBefore = Window()
    /// Events in the 24 hours before the current window.
    public var eventsPast24h = 0

    public init() {}
}

/// `GET /realtime`: counts over the last minutes, compared with the same minutes a day
/// earlier.
public enum RealtimeEngine {
    public static func run(now: Int64, minutes: Int, on snapshot: QuerySnapshot) throws -> RealtimeReport {
        let window = Int64(minutes) * 60_000_000
        let day: Int64 = 86_400_000_000
        let hour: Int64 = 3_600_000_000
        var report = RealtimeReport()
        var people: [Set<UInt32>] = [[], [], [], []]
        var sessions: [Set<Int64>] = [[], [], [], []]
        // (start, end] of: current, day before, last hour, last hour a day before.
        let ranges: [(Int64, Int64)] = [(now - window, now), (now - day - window, now - day), (now - hour, now), (now - day - hour, now - day)]
        let earliest = now - day - max(window, hour)
        for block in snapshot.blocks where block.footer.maxTimestamp > earliest && block.footer.minTimestamp <= now {
            try snapshot.checkDeadline()
            let columns = BlockColumns(block)
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            guard let nameColumn = try columns.builtin("event_name"), case .codes(let names, let dictionary) = nameColumn.values else { continue }
            var kind = [UInt8](repeating: 0, count: dictionary.count + 1)
            for code in 0..<dictionary.count {
                let name = dictionary.string(code)
                if ConversationEngine.eventNames.contains(name) { kind[code] = name == "message_sent" ? 3 : name == "message_received" ? 2 : 1 }
            }
            let sessionColumn = try columns.builtin("session_id")
            let responseTime = try columns.property("response_time_ms")
            let satisfaction = try columns.property("satisfaction")
            func number(_ cs: [DecodedColumn], _ r: Int) -> Double? {
                for c in cs where c.isPresent(r) {
                    if case .ints(let v) = c.values { return Double(v[r]) }
                    if case .doubles(let v) = c.values { return v[r] }
                }
                return nil
            }
            for r in 0..<columns.rows {
                let t = ts[r]
                if t > now - day - window && t <= now - window { report.eventsPast24h += 1 }
                for (w, range) in ranges.enumerated() where t > range.0 && t <= range.1 {
                    var stats = w == 0 ? report.current : w == 1 ? report.dayBefore : w == 2 ? report.lastHour : report.lastHourDayBefore
                    stats.events += 1
                    if persons[r] != noPerson { people[w].insert(persons[r]) }
                    let k = kind[names[r]]
                    if k != 0, let sessionColumn, sessionColumn.isPresent(r), case .ints(let s) = sessionColumn.values { sessions[w].insert(s[r]) }
                    if k >= 2 { stats.messages += 1 }
                    if k == 3, let v = number(responseTime, r) {
                        stats.responseTimeSum += v
                        stats.responseTimes += 1
                    }
                    if let v = number(satisfaction, r) {
                        stats.satisfactionSum += v
                        stats.satisfactions += 1
                    }
                    switch w {
                    case 0: report.current = stats
                    case 1: report.dayBefore = stats
                    case 2: report.lastHour = stats
                    default: report.lastHourDayBefore = stats
                    }
                }
            }
        }
        report.current.activeUsers = people[0].count
        report.dayBefore.activeUsers = people[1].count
        report.current.activeConversations = sessions[0].count
        report.dayBefore.activeConversations = sessions[1].count
        return report
    }
}
