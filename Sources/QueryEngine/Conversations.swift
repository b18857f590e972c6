public import ColumnStore
import EventLog
public import Foundation

/// Time buckets for timelines, in a time zone: hours, days, ISO weeks or months of local time.
/// A bucket is a number of local units since the local epoch, so an hour that a DST change
/// repeats is one bucket here (the timeline shows each label once).
public struct Bucketing: Sendable {
    public enum Unit: String, Sendable, CaseIterable { case hour, day, week, month }
    public let unit: Unit
    public let zone: ZoneOffsets

    public init(unit: Unit, timeZone: TimeZone = TimeZone(identifier: "UTC")!) {
        self.unit = unit
        zone = ZoneOffsets.named(timeZone.identifier) ?? ZoneOffsets(timeZone)
    }

    @inline(__always)
    func bucket(local: Int64) -> Int {
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

        public init(label: String, conversations: Int = 0, messages: Int = 0, uniqueUsers: Int = 0) {
            self.label = label
            self.conversations = conversations
            self.messages = messages
            self.uniqueUsers = uniqueUsers
        }
    }
    public var conversations = 0
    public var completed = 0
    public var resolved = 0
    public var totalDurationSeconds = 0.0
    public var messages = 0
    public var timeline: [Bucket] = []
    /// Conversations per topic, most frequent first (ties by name).
    public var topics: [(topic: String, count: Int)] = []

    public init() {}

    public static func == (a: ConversationReport, b: ConversationReport) -> Bool {
        a.conversations == b.conversations && a.completed == b.completed && a.resolved == b.resolved
            && a.totalDurationSeconds == b.totalDurationSeconds && a.messages == b.messages && a.timeline == b.timeline
            && a.topics.map(\.topic) == b.topics.map(\.topic) && a.topics.map(\.count) == b.topics.map(\.count)
    }
}

/// One conversation folded from its events. Strings (bot, topic, channel) are numbers into the
/// sweep's `strings`; -1 is none. Each "first" value is the one of the earliest event that
/// carries it; at equal times the smaller string wins, so the answer does not depend on the
/// order blocks are read in.
public struct ConversationSummary: Sendable {
    public var session: UInt32
    public var first = Int64.max
    public var last = Int64.min
    public var messages: Int64 = 0
    public var completed = false
    public var resolved = false
    /// From the latest `conversation_ended` that carries one (at equal times, the larger).
    public var satisfaction: Double?
    var satisfactionTime = Int64.min
    /// The person of the earliest event that has one.
    public var person = noPerson
    var personTime = Int64.max
    public var bot: Int32 = -1
    var botTime = Int64.max
    public var topic: Int32 = -1
    var topicTime = Int64.max
    public var channel: Int32 = -1
    var channelTime = Int64.max

    init(session: UInt32) { self.session = session }
}

/// The conversation model of `conventions.md`: a conversation is a `session_id` with at least
/// one of the bot events; messages are `message_received` plus `message_sent`; duration is
/// last minus first event of the session; completed means it has `conversation_ended`,
/// resolved that such an event carries `resolved: true`; its topic is the first
/// `properties.topic` it carries.
///
/// Sessions are folded without a table of every session: each block's bot events are sorted
/// by session id and folded into one summary per session (on every core), and the blocks are
/// merged in order of their smallest session id (the footer's zone map). Once every block whose
/// range could still hold a session has been merged, the session is final and leaves memory,
/// so memory follows the sessions open across a block or two, not the project's total.
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

    /// Which sessions a sweep folds, and what it reads of them.
    public struct Sweep: Sendable {
        /// Events read: sessions may start before the range of interest or run past it.
        public var readStart: Int64
        public var readEnd: Int64
        /// Only this bot's events count.
        public var botId: String?
        /// Also fold bot, channel, person and satisfaction (the `conversations` table).
        public var details: Bool
        /// Per-bucket messages and people of bot events in `bucketRange`.
        public var bucketing: Bucketing?
        public var bucketRange: Range<Int64>

        public init(readStart: Int64, readEnd: Int64, botId: String? = nil, details: Bool, bucketing: Bucketing? = nil, bucketRange: Range<Int64> = 0..<0) {
            self.readStart = readStart
            self.readEnd = readEnd
            self.botId = botId
            self.details = details
            self.bucketing = bucketing
            self.bucketRange = bucketRange
        }
    }

    /// Strings a sweep's summaries refer to by number.
    public final class Strings {
        public private(set) var values: [String] = []
        var index: [String: Int32] = [:]

        public init() {}

        func intern(_ s: String) -> Int32 {
            if let i = index[s] { return i }
            let i = Int32(values.count)
            values.append(s)
            index[s] = i
            return i
        }

        public subscript(_ i: Int32) -> String? { i < 0 ? nil : values[Int(i)] }
    }

    /// Per-bucket counts of bot events: messages, and distinct (bucket, person) pairs.
    public struct BucketCounts {
        public var messages: [Int: Int] = [:]
        public var people: [Int: Int] = [:]
    }

    /// How far before and after a query's range a session's events are read (one day): enough
    /// to see where a conversation really started and ended, without reading everything. One
    /// that began more than this before the range is counted from its first event in the window.
    public static let margin: Int64 = 86_400_000_000

    public static func run(_ query: ConversationQuery, on snapshot: QuerySnapshot, threads: Int? = nil) throws -> ConversationReport {
        let sweep = Sweep(
            readStart: query.start == .min ? .min : query.start - margin, readEnd: query.end == .max ? .max : query.end + margin,
            botId: query.botId, details: false, bucketing: query.bucketing, bucketRange: query.start..<query.end)
        var report = ConversationReport()
        var bucketConversations: [Int: Int] = [:]
        var topicCounts: [Int32: Int] = [:]
        var cursor = ZoneOffsets.Cursor(query.bucketing.zone)
        let strings = Strings()
        let buckets = try fold(sweep, strings: strings, on: snapshot, threads: threads) { s in
            guard s.first >= query.start && s.first < query.end else { return }
            report.conversations += 1
            if s.completed { report.completed += 1 }
            if s.resolved { report.resolved += 1 }
            report.totalDurationSeconds += Double(s.last - s.first) / 1_000_000
            report.messages += Int(s.messages)
            bucketConversations[query.bucketing.bucket(local: cursor.local(s.first)), default: 0] += 1
            if s.topic >= 0 { topicCounts[s.topic, default: 0] += 1 }
        }
        let all = Set(bucketConversations.keys).union(buckets.messages.keys).union(buckets.people.keys).sorted()
        report.timeline = all.map { b in
            ConversationReport.Bucket(
                label: query.bucketing.label(b), conversations: bucketConversations[b] ?? 0, messages: buckets.messages[b] ?? 0,
                uniqueUsers: buckets.people[b] ?? 0)
        }
        report.topics = topicCounts.map { (strings[$0.key]!, $0.value) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        return report
    }

    /// Folds every session with a bot event in the sweep's window and hands each one, once
    /// final, to `body` (in increasing session id), its strings named in `strings`. Returns,
    /// when the sweep asks for them, the per-bucket counts.
    public static func fold(
        _ sweep: Sweep, strings: Strings, on snapshot: QuerySnapshot, threads: Int? = nil, _ body: (ConversationSummary) throws -> Void
    ) throws -> BucketCounts {
        let threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        // Blocks with sessions in the window, by their smallest session id.
        var blocks: [(block: BlockFile, minimum: Int64)] = []
        for block in snapshot.blocks where block.footer.maxTimestamp >= sweep.readStart && block.footer.minTimestamp < sweep.readEnd {
            guard let d = block.footer.columns.first(where: { !$0.isProperty && $0.name == "session_id" }), d.presentCount > 0 else { continue }
            blocks.append((block, d.minimum))
        }
        blocks.sort { $0.minimum < $1.minimum }
        var open: [ConversationSummary] = []
        var pairs: [UInt64] = []
        var messages: [Int: Int] = [:]
        let waveSize = max(1, threads * 2)
        var next = 0
        while next < blocks.count {
            try snapshot.checkDeadline()
            let range = next..<min(blocks.count, next + waveSize)
            let wave = range.map { blocks[$0].block }
            let partials = parallelMap(wave.count, threads: threads) { i in
                try BlockSessions(wave[i], sweep, snapshot)
            }
            for (offset, result) in partials.enumerated() {
                let partial = try result.get()
                let position = range.lowerBound + offset
                if let low = partial.summaries.first?.session, Int64(low) < blocks[position].minimum {
                    throw BlockFormatError.badFooter("\(blocks[position].block.path): session ids below the zone map's minimum")
                }
                open = merge(open, partial.translated(strings), strings, snapshot)
                pairs += partial.pairs
                for (b, n) in partial.messages { messages[b, default: 0] += n }
                // Every block still to merge starts at or above the next one's minimum.
                let threshold = position + 1 < blocks.count ? blocks[position + 1].minimum : .max
                var finished = 0
                while finished < open.count && Int64(open[finished].session) < threshold {
                    try body(open[finished])
                    finished += 1
                }
                open.removeFirst(finished)
            }
            next = range.upperBound
            ColumnCache.shared.relieve()
        }
        for s in open { try body(s) }
        var counts = BucketCounts()
        counts.messages = messages
        // Distinct (bucket, person) pairs: sort, then count changes.
        RadixSort.sort(&pairs)
        var previous: UInt64?
        for p in pairs where p != previous {
            counts.people[Int(Int32(bitPattern: UInt32(truncatingIfNeeded: p >> 32))), default: 0] += 1
            previous = p
        }
        return counts
    }

    /// Two lists of summaries sorted by session, merged; a session in both is folded into one.
    static func merge(_ a: [ConversationSummary], _ b: [ConversationSummary], _ strings: Strings, _ snapshot: QuerySnapshot) -> [ConversationSummary] {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        var out: [ConversationSummary] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0
        var j = 0
        while i < a.count && j < b.count {
            if a[i].session < b[j].session {
                out.append(a[i])
                i += 1
            } else if b[j].session < a[i].session {
                out.append(b[j])
                j += 1
            } else {
                var s = a[i]
                s.absorb(b[j], strings, snapshot)
                out.append(s)
                i += 1
                j += 1
            }
        }
        out += a[i...]
        out += b[j...]
        return out
    }
}

extension ConversationSummary {
    /// Folds in another summary of the same session (from another block).
    mutating func absorb(_ o: ConversationSummary, _ strings: ConversationEngine.Strings, _ snapshot: QuerySnapshot) {
        absorb(o, people: snapshot.people) { strings[$0]! < strings[$1]! }
    }

    /// Folds in another summary of the same session; `smaller` orders two string numbers of
    /// the same kind, for ties in time.
    mutating func absorb(_ o: ConversationSummary, people: IdTable, smaller: (Int32, Int32) -> Bool) {
        first = min(first, o.first)
        last = max(last, o.last)
        messages += o.messages
        completed = completed || o.completed
        resolved = resolved || o.resolved
        if let v = o.satisfaction { offerSatisfaction(v, at: o.satisfactionTime) }
        if o.person != noPerson { offerPerson(o.person, at: o.personTime, people: people) }
        Self.offerEarliest(&bot, &botTime, o.bot, at: o.botTime, smaller: smaller)
        Self.offerEarliest(&topic, &topicTime, o.topic, at: o.topicTime, smaller: smaller)
        Self.offerEarliest(&channel, &channelTime, o.channel, at: o.channelTime, smaller: smaller)
    }

    // The rules for each "first" and "latest" value, shared by the per-row fold of a block
    // and the merge of summaries across blocks.

    /// The satisfaction of the latest `conversation_ended`; at equal times, the larger.
    @inline(__always)
    mutating func offerSatisfaction(_ v: Double, at t: Int64) {
        if t > satisfactionTime || (t == satisfactionTime && v > (satisfaction ?? -.infinity)) {
            satisfaction = v
            satisfactionTime = t
        }
    }

    /// The person of the earliest event; at equal times, the smaller id string.
    @inline(__always)
    mutating func offerPerson(_ p: UInt32, at t: Int64, people: IdTable) {
        if person == noPerson || t < personTime || (t == personTime && people.string(Int(p)) < people.string(Int(person))) {
            person = p
            personTime = t
        }
    }

    /// A string value (code or number, -1 none) of the earliest event; at equal times, the one
    /// `smaller` puts first.
    @inline(__always)
    static func offerEarliest(_ value: inout Int32, _ time: inout Int64, _ candidate: Int32, at t: Int64, smaller: (Int32, Int32) -> Bool) {
        guard candidate >= 0 else { return }
        if value < 0 || t < time || (t == time && smaller(candidate, value)) {
            value = candidate
            time = t
        }
    }
}

/// One block's sessions, folded. Rows come in person-then-time order, so a session's events
/// are mostly one run: each run of a session becomes a summary as the rows stream by, and only
/// the summaries (about one per session) are sorted by session, a session's runs folded
/// together. String values are block dictionary codes until `translated` names them in the
/// sweep's strings (codes order like their strings, so ties inside a block compare codes).
struct BlockSessions {
    var summaries: [ConversationSummary] = []
    var dictionaries: (bot: StringDictionary?, topic: StringDictionary?, channel: StringDictionary?) = (nil, nil, nil)
    /// Distinct (bucket << 32 | person) of bot events in the bucket range.
    var pairs: [UInt64] = []
    var messages: [Int: Int] = [:]

    init(_ block: BlockFile, _ sweep: ConversationEngine.Sweep, _ snapshot: QuerySnapshot) throws {
        try snapshot.checkDeadline()
        let columns = BlockColumns(block)
        let n = columns.rows
        guard let nameColumn = try columns.builtin("event_name"), case .codes(let names, let nameDictionary) = nameColumn.values,
            let sessionColumn = try columns.builtin("session_id"), case .ints(let sessionIds) = sessionColumn.values
        else { return }
        let kind = ConversationEngine.eventKinds(nameDictionary)
        let ts = try columns.timestamps()
        let persons = try columns.persons()

        // Rows that count: bot events with a session, in the window, of the bot asked for.
        var botCode: Int?
        let bots = try columns.builtin("bot_id")
        var botCodes: CodeVector?
        if let bots, case .codes(let codes, let dictionary) = bots.values {
            botCodes = codes
            dictionaries.bot = dictionary
        }
        if let wanted = sweep.botId {
            guard let d = dictionaries.bot, let code = d.code(of: wanted) else { return }
            botCode = code
        }
        // The rows, a vector at a time through a selection vector, as session << 32 | row.
        var predicates: [RowPredicate] = [.codes(names, kind.map { $0 != 0 })]
        if let presence = sessionColumn.presence { predicates.append(.present(presence)) }
        if let botCode, let botCodes {
            var verdicts = [Bool](repeating: false, count: dictionaries.bot!.count + 1)
            verdicts[botCode] = true
            predicates.append(.codes(botCodes, verdicts))
        }
        let checkTime = block.footer.minTimestamp < sweep.readStart || block.footer.maxTimestamp >= sweep.readEnd
        let selection = UnsafeMutablePointer<UInt32>.allocate(capacity: VectorScan.vectorSize)
        defer { selection.deallocate() }
        let keys = [UInt64](unsafeUninitializedCapacity: n) { keys, kept in
            kept = 0
            ts.withUnsafeBufferPointer { ts in
                sessionIds.withUnsafeBufferPointer { ids in
                    var start = 0
                    while start < n {
                        let end = min(start + VectorScan.vectorSize, n)
                        defer { start = end }
                        var count: Int
                        var remaining = predicates[...]
                        if checkTime {
                            count = selectRows(selection, start, end, timestamps: ts, from: sweep.readStart, to: sweep.readEnd, check: true)
                        } else {
                            count = predicates[0].select(selection, start, end)
                            remaining = predicates.dropFirst()
                        }
                        for predicate in remaining where count > 0 { count = predicate.refine(selection, count) }
                        for i in 0..<count {
                            let r = Int(selection[i])
                            keys[kept + i] = UInt64(UInt32(truncatingIfNeeded: ids[r])) << 32 | UInt64(r)
                        }
                        kept += count
                    }
                }
            }
        }
        if keys.isEmpty { return }

        let topics = try columns.property("topic").first { $0.descriptor.kind == .string }
        var topicCodes: CodeVector?
        if let topics, case .codes(let codes, let dictionary) = topics.values {
            topicCodes = codes
            dictionaries.topic = dictionary
        }
        let resolvedColumn = try columns.property("resolved").first { $0.descriptor.kind == .bool }
        var channels: DecodedColumn?
        var channelCodes: CodeVector?
        var satisfactionColumns: [DecodedColumn] = []
        if sweep.details {
            channels = try columns.property("channel").first { $0.descriptor.kind == .string }
            if let channels, case .codes(let codes, let dictionary) = channels.values {
                channelCodes = codes
                dictionaries.channel = dictionary
            }
            satisfactionColumns = try columns.property("satisfaction").filter { $0.descriptor.kind == .int || $0.descriptor.kind == .double }
        }

        var current = ConversationSummary(session: UInt32(keys[0] >> 32))
        for key in keys {
            let session = UInt32(key >> 32)
            let r = Int(key & 0xFFFF_FFFF)
            if session != current.session {
                summaries.append(current)
                current = ConversationSummary(session: session)
            }
            let t = ts[r]
            let k = kind[names[r]]
            current.first = min(current.first, t)
            current.last = max(current.last, t)
            if k == 2 { current.messages += 1 }
            if k == 3 {
                current.completed = true
                if let resolvedColumn, resolvedColumn.isPresent(r), case .bools(let b) = resolvedColumn.values, b[r] != 0 { current.resolved = true }
                for c in satisfactionColumns where c.isPresent(r) {
                    var v: Double?
                    if case .ints(let x) = c.values { v = Double(x[r]) }
                    if case .doubles(let x) = c.values { v = x[r] }
                    if let v { current.offerSatisfaction(v, at: t) }
                }
            }
            // Codes of one block order like their strings.
            if let topicCodes, topics!.isPresent(r) {
                ConversationSummary.offerEarliest(&current.topic, &current.topicTime, Int32(topicCodes[r]), at: t, smaller: <)
            }
            if sweep.details {
                if let botCodes, bots!.isPresent(r) {
                    ConversationSummary.offerEarliest(&current.bot, &current.botTime, Int32(botCodes[r]), at: t, smaller: <)
                }
                if let channelCodes, channels!.isPresent(r) {
                    ConversationSummary.offerEarliest(&current.channel, &current.channelTime, Int32(channelCodes[r]), at: t, smaller: <)
                }
                if persons[r] != noPerson { current.offerPerson(persons[r], at: t, people: snapshot.people) }
            }
        }
        summaries.append(current)

        // By session, each session's runs folded into one.
        var order = [UInt64](unsafeUninitializedCapacity: summaries.count) { order, count in
            for (i, summary) in summaries.enumerated() { order[i] = UInt64(summary.session) << 32 | UInt64(i) }
            count = summaries.count
        }
        RadixSort.sort(&order)
        var folded: [ConversationSummary] = []
        folded.reserveCapacity(summaries.count)
        for key in order {
            let summary = summaries[Int(key & 0xFFFF_FFFF)]
            if let last = folded.last, last.session == summary.session {
                folded[folded.count - 1].absorb(summary, people: snapshot.people) { $0 < $1 }
            } else {
                folded.append(summary)
            }
        }
        summaries = folded

        // Per bucket: messages, and each person once. A block spans a day or so, so its
        // buckets are a short run of numbers and messages count in a dense array.
        guard let bucketing = sweep.bucketing else { return }
        var cursor = ZoneOffsets.Cursor(bucketing.zone)
        let range = sweep.bucketRange
        var messageBuckets: [Int] = []
        for key in keys {
            let r = Int(key & 0xFFFF_FFFF)
            let t = ts[r]
            guard range.contains(t) else { continue }
            let b = bucketing.bucket(local: cursor.local(t))
            if kind[names[r]] == 2 { messageBuckets.append(b) }
            if persons[r] != noPerson { pairs.append(UInt64(UInt32(bitPattern: Int32(truncatingIfNeeded: b))) << 32 | UInt64(persons[r])) }
        }
        if let low = messageBuckets.min(), let high = messageBuckets.max() {
            var counts = [Int](repeating: 0, count: high - low + 1)
            for b in messageBuckets { counts[b - low] += 1 }
            for (i, c) in counts.enumerated() where c > 0 { messages[low + i] = c }
        }
        RadixSort.sort(&pairs)
        var unique = 0
        for i in pairs.indices where i == 0 || pairs[i] != pairs[i - 1] {
            pairs[unique] = pairs[i]
            unique += 1
        }
        pairs.removeLast(pairs.count - unique)
    }

    /// The summaries with string codes replaced by numbers in `strings`.
    func translated(_ strings: ConversationEngine.Strings) -> [ConversationSummary] {
        func table(_ dictionary: StringDictionary?) -> [Int32] {
            guard let dictionary else { return [] }
            return [Int32](repeating: -2, count: dictionary.count)
        }
        var bots = table(dictionaries.bot)
        var topics = table(dictionaries.topic)
        var channels = table(dictionaries.channel)
        func name(_ code: Int32, _ cache: inout [Int32], _ dictionary: StringDictionary?) -> Int32 {
            guard code >= 0, let dictionary else { return -1 }
            if cache[Int(code)] == -2 { cache[Int(code)] = strings.intern(dictionary.string(Int(code))) }
            return cache[Int(code)]
        }
        var out = summaries
        for i in out.indices {
            out[i].bot = name(out[i].bot, &bots, dictionaries.bot)
            out[i].topic = name(out[i].topic, &topics, dictionaries.topic)
            out[i].channel = name(out[i].channel, &channels, dictionaries.channel)
        }
        return out
    }
}
