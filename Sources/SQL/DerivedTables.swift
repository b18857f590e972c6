import ColumnStore
import QueryEngine

/// The `conversations` and `users` tables: one row per session and per person, derived
/// from the events on each query (so they are as fresh as the events).
enum DerivedTables {
    /// One row per conversation whose first event is in the scan's time bounds, handed to
    /// `body` as `ConversationEngine` folds them (in session id order, with the row's start
    /// and session id for callers that sort). The model is conventions.md's, as
    /// `ConversationEngine` applies it: satisfaction comes from the latest
    /// `conversation_ended`; bot, topic, channel and user are the first values the session
    /// carries.
    static func conversations(_ scan: TableScan, _ context: ExecutionContext, _ body: ([SQLValue], Int64, UInt32) throws -> Void) throws {
        let snapshot = context.snapshot
        // Sessions may start before the range and run into it, so read a day either side.
        let margin = ConversationEngine.margin
        let sweep = ConversationEngine.Sweep(
            readStart: scan.start == .min ? .min : scan.start - margin, readEnd: scan.end == .max ? .max : scan.end + margin, details: true)
        let strings = ConversationEngine.Strings()
        let used = scan.used.sorted()
        var handedOver = 0
        do {
            _ = try ConversationEngine.fold(sweep, strings: strings, on: snapshot, threads: context.threads) { s in
                handedOver += 1
                if handedOver & 4095 == 0 { try context.checkDeadline() }
                guard s.first >= scan.start && s.first < scan.end else { return }
                var row = [SQLValue](repeating: .null, count: scan.width)
                func text(_ i: Int32) -> SQLValue { strings[i].map { .string($0) } ?? .null }
                // Only the columns the query reads: ids and strings cost an allocation each.
                for slot in used {
                    switch slot {
                    case 0: row[0] = .string(snapshot.sessions.string(Int(s.session)))
                    case 1: row[1] = text(s.bot)
                    case 2: row[2] = s.person == noPerson ? .null : .string(snapshot.people.string(Int(s.person)))
                    case 3: row[3] = text(s.channel)
                    case 4: row[4] = .timestamp(s.first)
                    case 5: row[5] = .timestamp(s.last)
                    case 6: row[6] = .date(Int32(SQLValue.floorDiv(s.first, SQLValue.microsPerDay)))
                    case 7: row[7] = .double(Double(s.last - s.first) / 1_000_000)
                    case 8: row[8] = .int(s.messages)
                    case 9: row[9] = .bool(s.completed)
                    case 10: row[10] = .bool(s.resolved)
                    case 11: row[11] = s.satisfaction.map { .double($0) } ?? .null
                    case 12: row[12] = text(s.topic)
                    default: break
                    }
                }
                try body(row, s.first, s.session)
            }
        } catch QueryError.timeout {
            try context.checkDeadline()
            throw SQLError(.timeout, "the query ran past its timeout and was cancelled")
        }
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
