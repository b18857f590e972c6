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

    /// One row per person (user id, else anonymous id): first and last seen, distinct
    /// sessions, events, messages, and each property's latest value.
    ///
    /// The blocks are folded on every core, each thread into a `PersonTotals` of its own,
    /// and the totals merged. State lives in flat arrays indexed by project person id. Rows
    /// come in person-then-time order, so a person's sessions are counted only when the
    /// session changes from the row before, not once per event.
    static func users(_ scan: TableScan, _ context: ExecutionContext) throws -> [[SQLValue]] {
        let snapshot = context.snapshot
        let propertySlots = scan.used.filter { $0 >= scan.columns.count }.sorted()
        let blocks = snapshot.blocks
        let parts = max(1, min(context.threads, blocks.count))
        let scanner = ScanWork(scanner: TableScanner(scan: scan, context: context), filter: nil, aggregate: nil)
        var partials = try parallelMap(parts, threads: parts) { part in
            var totals = PersonTotals(people: snapshot.people.count, sessions: snapshot.sessions.count, properties: propertySlots.count)
            for b in stride(from: part, to: blocks.count, by: parts) {
                try totals.add(blocks[b], propertySlots: propertySlots, scanner.scanner)
            }
            return totals
        }.map { try $0.get() }
        var totals = partials.removeFirst()
        for other in partials {
            try context.checkDeadline()
            totals.merge(other)
        }
        let sessionCounts = totals.distinctSessionsPerPerson()
        var rows: [[SQLValue]] = []
        for p in 0..<totals.events.count where totals.events[p] > 0 {
            var row = [SQLValue](repeating: .null, count: scan.width)
            row[0] = .string(snapshot.people.string(p))
            row[1] = .timestamp(totals.first[p])
            row[2] = .timestamp(totals.last[p])
            row[3] = .int(sessionCounts[p])
            row[4] = .int(totals.events[p])
            row[5] = .int(totals.messages[p])
            for (i, slot) in propertySlots.enumerated() { row[slot] = totals.latest[i][p].value }
            rows.append(row)
            if rows.count & 4095 == 0 { try context.charge(4096 * ExecutionContext.size(row)) }
        }
        return rows
    }
}

/// The `users` table's per-person state over some blocks.
///
/// Distinct sessions: nearly every session belongs to one person, so the first person seen
/// with a session owns it (one `UInt32` per project session); a session seen with another
/// person too goes to a list of (person, session) pairs, deduplicated at the end. A set of
/// sessions per person took about 0.3 GB and most of the time at 100 M events.
struct PersonTotals {
    static let noOwner = UInt32.max
    var first: [Int64]
    var last: [Int64]
    var events: [Int64]
    var messages: [Int64]
    var owner: [UInt32]
    var sharedSessions: [UInt64] = []
    /// Per used property slot and person: the latest value and its time.
    var latest: [[(time: Int64, value: SQLValue)]]

    init(people: Int, sessions: Int, properties: Int) {
        first = [Int64](repeating: .max, count: people)
        last = [Int64](repeating: .min, count: people)
        events = [Int64](repeating: 0, count: people)
        messages = [Int64](repeating: 0, count: people)
        owner = [UInt32](repeating: Self.noOwner, count: sessions)
        latest = [[(time: Int64, value: SQLValue)]](
            repeating: [(time: Int64, value: SQLValue)](repeating: (.min, .null), count: properties == 0 ? 0 : people), count: properties)
    }

    mutating func add(_ block: BlockFile, propertySlots: [Int], _ scanner: TableScanner) throws {
        let context = scanner.context
        try context.checkDeadline()
        let columns = BlockColumns(block)
        context.scanned(columns.rows)
        let ts = try columns.timestamps()
        let persons = try columns.persons()
        var isMessage = [Bool](repeating: false, count: 1)
        var names: CodeVector?
        if let c = try columns.builtin("event_name"), case .codes(let codes, let dictionary) = c.values {
            names = codes
            isMessage = ConversationEngine.eventKinds(dictionary).map { $0 == 2 }
        }
        var sessionIds: [Int64]?
        let sessionColumn = try columns.builtin("session_id")
        if let sessionColumn, case .ints(let ids) = sessionColumn.values { sessionIds = ids }
        let sources = try propertySlots.map { try scanner.source(slot: $0, columns, ts) }
        var previous: (person: UInt32, session: Int64) = (noPerson, -1)
        for r in 0..<columns.rows {
            let p = Int(persons[r])
            if p == Int(noPerson) { continue }
            if r & 4095 == 0 { try context.checkDeadline() }
            let t = ts[r]
            first[p] = min(first[p], t)
            last[p] = max(last[p], t)
            events[p] += 1
            if let names, isMessage[names[r]] { messages[p] += 1 }
            if let sessionIds, sessionColumn!.isPresent(r), (UInt32(p), sessionIds[r]) != previous {
                let session = sessionIds[r]
                previous = (UInt32(p), session)
                guard session >= 0 && session < owner.count else {
                    throw BlockFormatError.badChunk(
                        column: "session_id", chunk: .values, reason: "id \(session) lies outside the project's \(owner.count) sessions")
                }
                let o = owner[Int(session)]
                if o == Self.noOwner {
                    owner[Int(session)] = UInt32(p)
                } else if o != UInt32(p) {
                    sharedSessions.append(UInt64(p) << 32 | UInt64(session))
                }
            }
            for (i, source) in sources.enumerated() where t >= latest[i][p].time {
                let v = scanner.value(source, r)
                if !v.isNull { latest[i][p] = (t, v) }
            }
        }
    }

    mutating func merge(_ other: PersonTotals) {
        for p in events.indices where other.events[p] > 0 {
            first[p] = min(first[p], other.first[p])
            last[p] = max(last[p], other.last[p])
            events[p] += other.events[p]
            messages[p] += other.messages[p]
            for i in latest.indices where other.latest[i][p].time > latest[i][p].time && !other.latest[i][p].value.isNull {
                latest[i][p] = other.latest[i][p]
            }
        }
        for s in owner.indices where other.owner[s] != Self.noOwner {
            if owner[s] == Self.noOwner {
                owner[s] = other.owner[s]
            } else if owner[s] != other.owner[s] {
                sharedSessions.append(UInt64(other.owner[s]) << 32 | UInt64(s))
            }
        }
        sharedSessions += other.sharedSessions
    }

    /// Each person's owned sessions plus the distinct shared pairs not already owned.
    func distinctSessionsPerPerson() -> [Int64] {
        var counts = [Int64](repeating: 0, count: events.count)
        for o in owner where o != Self.noOwner { counts[Int(o)] += 1 }
        let pairs = sharedSessions.sorted()
        for (i, pair) in pairs.enumerated() where i == 0 || pair != pairs[i - 1] {
            let person = UInt32(pair >> 32)
            if owner[Int(pair & 0xFFFF_FFFF)] != person { counts[Int(person)] += 1 }
        }
        return counts
    }
}
