public import ColumnStore
import EventLog
public import Foundation

/// Time buckets for timelines, in a time zone: hours, days, ISO weeks or months of local time.
public struct Bucketing: Sendable {
    public enum Unit: String, Sendable, CaseIterable { case hour, day, week, month }
    public let unit: Unit
    public let timeZone: TimeZone

    public init(unit: Unit, timeZone: TimeZone = TimeZone(identifier: "UTC")!) {
        self.unit = unit
        self.timeZone = timeZone
    }

    /// Offsets (µs) by UTC hour: zones change offset on hour boundaries, so one lookup per
    /// hour of data instead of one per event.
    final class OffsetCache {
        let timeZone: TimeZone
        var byHour: [Int64: Int64] = [:]
        init(_ timeZone: TimeZone) { self.timeZone = timeZone }
        func offset(_ micros: Int64) -> Int64 {
            let hour = micros >= 0 ? micros / 3_600_000_000 : (micros + 1) / 3_600_000_000 - 1
            if let o = byHour[hour] { return o }
            let o = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(hour) * 3600))) * 1_000_000
            byHour[hour] = o
            return o
        }
    }

    func bucket(_ micros: Int64, _ cache: OffsetCache) -> Int {
        let local = micros + cache.offset(micros)
        switch unit {
        case .hour: return Int(local >= 0 ? local / 3_600_000_000 : (local + 1) / 3_600_000_000 - 1)
        case .day: return PeriodUnit.day.index(ofMicros: local)
        case .week: return PeriodUnit.week.index(ofMicros: local)
        case .month: return PeriodUnit.month.index(ofMicros: local)
        }
    }

    /// The bucket's local start as the API shows it: `2024-01-15` for days, weeks and months,
    /// `2024-01-15T10:00` for hours.
    public func label(_ index: Int) -> String {
        let localStart: Int64
        switch unit {
        case .hour: localStart = Int64(index) * 3_600_000_000
        case .day: localStart = PeriodUnit.day.start(ofIndex: index)
        case .week: localStart = PeriodUnit.week.start(ofIndex: index)
        case .month: localStart = PeriodUnit.month.start(ofIndex: index)
        }
        let text = Timestamp.format(localStart)
        return unit == .hour ? String(text.prefix(16)) : String(text.prefix(10))
    }
}

public struct ConversationQuery: Sendable {
    /// Conversations whose first event is in `start..<end` (µs).
    public var start: Int64
    public var end: Int64
    public var botId: String?
    public var bucketing: Bucketing

    public init(start: Int64, end: Int64, botId: String? = nil, bucketing: Bucketing) {
        self.start = start
        self.end = end
        self.botId = botId
        self.bucketing = bucketing
    }
}

public struct ConversationReport: Sendable, Equatable {
    public struct Bucket: Sendable, Equatable {
        public var label: String
        public var conversations = 0
        public var messages = 0
        public var uniqueUsers = 0
    }
    public var conversations = 0
    public var completed = 0
    public var resolved = 0
    public var totalDurationSeconds = 0.0
    public var messages = 0
    public var timeline: [Bucket] = []
    /// Conversations per topic, most frequent first (ties by name).
    public var topics: [(topic: String, count: Int)] = []

    public static func == (a: ConversationReport, b: ConversationReport) -> Bool {
        a.conversations == b.conversations && a.completed == b.completed && a.resolved == b.resolved
            && a.totalDurationSeconds == b.totalDurationSeconds && a.messages == b.messages && a.timeline == b.timeline
            && a.topics.map(\.topic) == b.topics.map(\.topic) && a.topics.map(\.count) == b.topics.map(\.count)
    }
}

/// The conversation model of `conventions.md`: a conversation is a `session_id` with at least
/// one of the bot events; messages are `message_received` plus `message_sent`; duration is
/// last minus first event of the session; completed means it has `conversation_ended`,
/// resolved that such an event carries `resolved: true`; its topic is the first
/// `properties.topic` it carries.
public enum ConversationEngine {
    public static let eventNames: Set<String> = [
        "conversation_started", "message_received", "message_sent", "fallback_triggered", "handoff", "conversation_ended",
    ]

    /// Per `event_name` code of a block (plus its null code): 0 not a bot event, 1 another
    /// bot event, 2 a message, 3 the conversation's end.
    public static func eventKinds(_ dictionary: StringDictionary) -> [UInt8] {
        var kind = [UInt8](repeating: 0, count: dictionary.count + 1)
        for code in 0..<dictionary.count {
            let name = dictionary.string(code)
            if eventNames.contains(name) {
                kind[code] = name.hasPrefix("message_") ? 2 : name == "conversation_ended" ? 3 : 1
            }
        }
        return kind
    }

    struct Session {
        var first = Int64.max
        var last = Int64.min
        var messages = 0
        var completed = false
        var resolved = false
        var topic: String?
        var topicTime = Int64.max
        var person = noPerson
    }

    public static func run(_ query: ConversationQuery, on snapshot: QuerySnapshot) throws -> ConversationReport {
        var sessions: [UInt32: Session] = [:]
        // Messages and people per bucket count events in the range, whatever the session.
        var bucketMessages: [Int: Int] = [:]
        var bucketPeople: [Int: Set<UInt32>] = [:]
        let cache = Bucketing.OffsetCache(query.bucketing.timeZone)
        for block in snapshot.blocks {
            try snapshot.checkDeadline()
            // Sessions may start before the range and run into it, so read a day either side.
            guard block.footer.maxTimestamp >= query.start - 86_400_000_000, block.footer.minTimestamp < query.end + 86_400_000_000 else { continue }
            let columns = BlockColumns(block)
            guard let nameColumn = try columns.builtin("event_name"), case .codes(let names, let dictionary) = nameColumn.values,
                let sessionColumn = try columns.builtin("session_id"), case .ints(let sessionIds) = sessionColumn.values
            else { continue }
            let kind = eventKinds(dictionary)
            var botRows: [Bool]? = nil
            if let bot = query.botId {
                botRows = try PropertyFilter(property: "bot_id", op: .equals, value: .string(bot)).rows(
                    in: columns, people: snapshot.people, sessions: snapshot.sessions)
            }
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            let topics = try columns.property("topic").first { if case .codes = $0.values { return $0.descriptor.kind == .string } else { return false } }
            let resolvedColumn = try columns.property("resolved").first { if case .bools = $0.values { return true } else { return false } }
            for r in 0..<columns.rows {
                let k = kind[names[r]]
                guard k != 0, sessionColumn.isPresent(r), botRows?[r] ?? true else { continue }
                let t = ts[r]
                let id = UInt32(truncatingIfNeeded: sessionIds[r])
                var s = sessions[id] ?? Session()
                s.first = min(s.first, t)
                s.last = max(s.last, t)
                if s.person == noPerson { s.person = persons[r] }
                if k == 2 { s.messages += 1 }
                if k == 3 {
                    s.completed = true
                    if let resolvedColumn, resolvedColumn.isPresent(r), case .bools(let b) = resolvedColumn.values, b[r] != 0 { s.resolved = true }
                }
                if let topics, topics.isPresent(r), t < s.topicTime, case .codes(let codes, let topicDictionary) = topics.values {
                    s.topic = topicDictionary.string(codes[r])
                    s.topicTime = t
                }
                sessions[id] = s
                if t >= query.start && t < query.end {
                    let b = query.bucketing.bucket(t, cache)
                    if k == 2 { bucketMessages[b, default: 0] += 1 }
                    if persons[r] != noPerson { bucketPeople[b, default: []].insert(persons[r]) }
                }
            }
        }
        var report = ConversationReport()
        var bucketConversations: [Int: Int] = [:]
        var topicCounts: [String: Int] = [:]
        for (_, s) in sessions where s.first >= query.start && s.first < query.end {
            report.conversations += 1
            if s.completed { report.completed += 1 }
            if s.resolved { report.resolved += 1 }
            report.totalDurationSeconds += Double(s.last - s.first) / 1_000_000
            report.messages += s.messages
            bucketConversations[query.bucketing.bucket(s.first, cache), default: 0] += 1
            if let topic = s.topic { topicCounts[topic, default: 0] += 1 }
        }
        let buckets = Set(bucketConversations.keys).union(bucketMessages.keys).union(bucketPeople.keys).sorted()
        report.timeline = buckets.map { b in
            ConversationReport.Bucket(
                label: query.bucketing.label(b), conversations: bucketConversations[b] ?? 0, messages: bucketMessages[b] ?? 0,
                uniqueUsers: bucketPeople[b]?.count ?? 0)
        }
        report.topics = topicCounts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
        return report
    }
}
