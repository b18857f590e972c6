import ColumnStore
import QueryEngine

/// The `conversations` and `users` tables: one row per session and per person, derived
/// from the events on each query (so they are as fresh as the events).
enum DerivedTables {
    /// The conversation model of conventions.md, as `ConversationEngine` applies it: a
    /// conversation is a session with at least one bot event; messages are
    /// `message_received` plus `message_sent`; completed means a `conversation_ended`,
    /// resolved that it carries `resolved: true`; satisfaction comes from it too; topic and
    /// channel are the first values the session carries.
    struct Conversation {
        var first = Int64.max
        var last = Int64.min
        var messages: Int64 = 0
        var completed = false
        var resolved = false
        var satisfaction: SQLValue = .null
        var bot: SQLValue = .null
        var botTime = Int64.max
        var user: SQLValue = .null
        var topic: SQLValue = .null
        var topicTime = Int64.max
        var channel: SQLValue = .null
        var channelTime = Int64.max
    }

    static func conversations(_ scan: TableScan, _ context: ExecutionContext) throws -> [[SQLValue]] {
        let snapshot = context.snapshot
        var sessions: [UInt32: Conversation] = [:]
        // Sessions may start before the range and run into it, so read a day either side.
        let margin: Int64 = 86_400_000_000
        let readStart = scan.start == .min ? .min : scan.start - margin
        let readEnd = scan.end == .max ? .max : scan.end + margin
        for block in snapshot.blocks {
            try context.checkDeadline()
            guard block.footer.maxTimestamp >= readStart, block.footer.minTimestamp < readEnd else { continue }
            let columns = BlockColumns(block)
            context.scanned(columns.rows)
            guard let nameColumn = try columns.builtin("event_name"), case .codes(let names, let dictionary) = nameColumn.values,
                let sessionColumn = try columns.builtin("session_id"), case .ints(let sessionIds) = sessionColumn.values
            else { continue }
            let kind = ConversationEngine.eventKinds(dictionary)
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            let bots = try columns.builtin("bot_id")
            let topics = try stringProperty("topic", columns)
            let channels = try stringProperty("channel", columns)
            let resolvedColumn = try columns.property("resolved").first { $0.descriptor.kind == .bool }
            let satisfactionColumns = try columns.property("satisfaction").filter { $0.descriptor.kind == .int || $0.descriptor.kind == .double }
            for r in 0..<columns.rows {
                let k = kind[names[r]]
                guard k != 0, sessionColumn.isPresent(r) else { continue }
                if r & 4095 == 0 { try context.checkDeadline() }
                let t = ts[r]
                let id = UInt32(truncatingIfNeeded: sessionIds[r])
                var s = sessions[id] ?? Conversation()
                s.first = min(s.first, t)
                s.last = max(s.last, t)
                if s.user.isNull, persons[r] != noPerson { s.user = .string(snapshot.people.string(Int(persons[r]))) }
                if k == 2 { s.messages += 1 }
                if let bots, bots.isPresent(r), t < s.botTime, case .codes(let codes, let d) = bots.values {
                    s.bot = .string(d.string(codes[r]))
                    s.botTime = t
                }
                if k == 3 {
                    s.completed = true
                    if let resolvedColumn, resolvedColumn.isPresent(r), case .bools(let b) = resolvedColumn.values, b[r] != 0 { s.resolved = true }
                    for c in satisfactionColumns where c.isPresent(r) {
                        if case .ints(let v) = c.values { s.satisfaction = .double(Double(v[r])) }
                        if case .doubles(let v) = c.values { s.satisfaction = .double(v[r]) }
                    }
                }
                if let topics, topics.isPresent(r), t < s.topicTime, case .codes(let codes, let d) = topics.values {
                    s.topic = .string(d.string(codes[r]))
                    s.topicTime = t
                }
                if let channels, channels.isPresent(r), t < s.channelTime, case .codes(let codes, let d) = channels.values {
                    s.channel = .string(d.string(codes[r]))
                    s.channelTime = t
                }
                sessions[id] = s
            }
        }
        var rows: [[SQLValue]] = []
        for (id, s) in sessions.sorted(by: { $0.value.first != $1.value.first ? $0.value.first < $1.value.first : $0.key < $1.key })
        where s.first >= scan.start && s.first < scan.end {
            var row = [SQLValue](repeating: .null, count: scan.width)
            row[0] = .string(snapshot.sessions.string(Int(id)))
            row[1] = s.bot
            row[2] = s.user
            row[3] = s.channel
            row[4] = .timestamp(s.first)
            row[5] = .timestamp(s.last)
            row[6] = .date(Int32(SQLValue.floorDiv(s.first, SQLValue.microsPerDay)))
            row[7] = .double(Double(s.last - s.first) / 1_000_000)
            row[8] = .int(s.messages)
            row[9] = .bool(s.completed)
            row[10] = .bool(s.resolved)
            row[11] = s.satisfaction
            row[12] = s.topic
            rows.append(row)
            if rows.count & 4095 == 0 { try context.charge(4096 * ExecutionContext.size(row)) }
        }
        return rows
    }

    static func stringProperty(_ key: String, _ columns: BlockColumns) throws -> DecodedColumn? {
        try columns.property(key).first { $0.descriptor.kind == .string }
    }

    struct Person {
        var first = Int64.max
        var last = Int64.min
        var events: Int64 = 0
        var messages: Int64 = 0
        var sessions: Set<Int64> = []
        /// Per used property slot: the latest value and its time.
        var latest: [(time: Int64, value: SQLValue)]
    }

    /// One row per person (user id, else anonymous id): first and last seen, distinct
    /// sessions, events, messages, and each property's latest value.
    static func users(_ scan: TableScan, _ context: ExecutionContext) throws -> [[SQLValue]] {
        let snapshot = context.snapshot
        let propertySlots = scan.used.filter { $0 >= scan.columns.count }.sorted()
        var people: [UInt32: Person] = [:]
        let scanner = TableScanner(scan: scan, context: context)
        for block in snapshot.blocks {
            try context.checkDeadline()
            let columns = BlockColumns(block)
            context.scanned(columns.rows)
            let ts = try columns.timestamps()
            let persons = try columns.persons()
            var isMessage: [Bool] = []
            var names: CodeVector?
            if let c = try columns.builtin("event_name"), case .codes(let codes, let dictionary) = c.values {
                names = codes
                isMessage = ConversationEngine.eventKinds(dictionary).map { $0 == 2 }
            }
            let sessionColumn = try columns.builtin("session_id")
            let sources = try propertySlots.map { try scanner.source(slot: $0, columns, ts) }
            for r in 0..<columns.rows where persons[r] != noPerson {
                if r & 4095 == 0 { try context.checkDeadline() }
                let t = ts[r]
                var p = people[persons[r]] ?? Person(latest: Array(repeating: (Int64.min, SQLValue.null), count: propertySlots.count))
                p.first = min(p.first, t)
                p.last = max(p.last, t)
                p.events += 1
                if let names, isMessage[names[r]] { p.messages += 1 }
                if let sessionColumn, sessionColumn.isPresent(r), case .ints(let ids) = sessionColumn.values { p.sessions.insert(ids[r]) }
                for (i, source) in sources.enumerated() where t >= p.latest[i].time {
                    let v = scanner.value(source, r)
                    if !v.isNull { p.latest[i] = (t, v) }
                }
                people[persons[r]] = p
            }
        }
        var rows: [[SQLValue]] = []
        for (id, p) in people.sorted(by: { $0.key < $1.key }) {
            var row = [SQLValue](repeating: .null, count: scan.width)
            row[0] = .string(snapshot.people.string(Int(id)))
            row[1] = .timestamp(p.first)
            row[2] = .timestamp(p.last)
            row[3] = .int(Int64(p.sessions.count))
            row[4] = .int(p.events)
            row[5] = .int(p.messages)
            for (i, slot) in propertySlots.enumerated() { row[slot] = p.latest[i].value }
            rows.append(row)
            if rows.count & 4095 == 0 { try context.charge(4096 * ExecutionContext.size(row)) }
        }
        return rows
    }
}
