#if canImport(Glibc)
import Glibc
#endif
import CPrefetch
public import EventLog

/// The project-wide dictionaries of user and session ids (see ``GlobalDictionary``).
///
/// `user_id` and `anonymous_id` share one id space, the "distinct id" of PostHog: a funnel
/// or retention query follows one integer per person whichever of the two identified them,
/// and a later identify/alias merge becomes a remap of integers.
public final class ProjectDictionaries: @unchecked Sendable {
    // Unchecked: mutated only by the one compactor of a project, which holds the store's
    // compaction lock; readers take immutable copies (`snapshot`).
    public var users: GlobalDictionary
    public var sessions: GlobalDictionary

    public init(users: GlobalDictionary, sessions: GlobalDictionary) {
        self.users = users
        self.sessions = sessions
    }
}

/// Accumulates the events of one UTC day and writes them as one block file.
///
/// Rows arrive as log records in any order. `finish` sorts them by (person, timestamp,
/// sequence): each person's events become one contiguous, time-ordered run, so funnels and
/// retention take one pass per person without sorting at query time, and the user and session
/// id columns shrink to almost nothing under delta encoding. Time-range filters still prune
/// whole blocks, because a block is one day.
public struct BlockBuilder {
    public let day: Int32
    public private(set) var rows = 0
    let timestamps: ColumnBuffer<Int64>
    let received: ColumnBuffer<Int64>
    let sequences: ColumnBuffer<Int64>
    var clampedRows: [UInt32] = []
    var names = ByteStringTable()
    let nameCodes: ColumnBuffer<UInt32>
    /// User, anonymous and session ids are interned in small per-block tables first (cache
    /// friendly, once per row) and mapped to project ids once per distinct value by
    /// `resolveGlobalIds`. Values with `resolvedBit` set are project ids already (rows merged
    /// from existing blocks).
    var localUsers: ByteStringTable
    var localSessions: ByteStringTable
    let users: ColumnBuffer<UInt32>
    let anonymous: ColumnBuffer<UInt32>
    let sessions: ColumnBuffer<UInt32>
    /// The codes of the previous row's user, anonymous, session and bot ids: a person's
    /// events often arrive back to back (a quarter of rows repeat the previous user and
    /// session, two thirds the bot), and a compare with the last one is cheaper than a hash
    /// and probe.
    var lastUser = none, lastAnonymous = none, lastSession = none, lastBot = none
    var globalIdsResolved = false
    /// Project ids of the per-block codes, until `finish` applies them to the columns.
    var globalUserIds: [UInt32]? = nil
    var globalSessionIds: [UInt32]? = nil
    var globalIdsApplied = false
    static let resolvedBit: UInt32 = 1 << 31
    var bots = ByteStringTable()
    let botCodes: ColumnBuffer<UInt32>
    var eventIds = ByteStringTable()
    let eventIdCodes: ColumnBuffer<UInt32>

    var propertyKeys = ByteStringTable()
    /// What was last seen at each of the first property positions of a record, per event
    /// name (`keySlot`).
    let keyCache = ColumnBuffer<KeyCacheEntry>(repeatElement(KeyCacheEntry(), count: keyCacheNames * keyCachePositions))
    static let keyCacheNames = 32
    static let keyCachePositions = 16
    /// `slotOfKeyKind[key * 8 + kind]` is the index into `properties`, or -1.
    let slotOfKeyKind = ColumnBuffer<Int32>(capacity: 256)
    let keyLastRow = ColumnBuffer<Int32>(capacity: 32)
    let keyLastEntry = ColumnBuffer<Int32>(capacity: 32)
    var properties: [PropertyColumnBuilder] = []
    /// The same builders, unretained (`properties` owns them): the per-value appends of
    /// `append(recordBody:)` then cost no retain and release, which were 2.5% of compaction.
    var propertyHandles: [Unmanaged<PropertyColumnBuilder>] = []
    /// Row `i`'s property values are entries `entryStart[i] ..< entryStart[i + 1]`, each a
    /// column slot (low half) and the value's index in that column, or for a string column
    /// the value's code itself (high half). One word rather than two arrays: `finish` reads
    /// them in output order, which is random, and one cache miss per row beats two.
    let entryStart: ColumnBuffer<UInt32>
    let entries: ColumnBuffer<UInt64>

    @inline(__always)
    static func entry(column: Int, value: UInt32) -> UInt64 { UInt64(UInt32(column)) | UInt64(value) << 32 }

    static let none = UInt32.max

    public init(day: Int32) {
        self.init(day: day, rows: 16_384, entries: 65_536, users: 4096, sessions: 4096)
    }

    /// A builder whose buffers and id tables start an eighth above the sizes `previous`
    /// reached. Days next to each other are about as large, and grown from the default
    /// sizes, a day's columns were copied by `realloc` several times over (1.2% of a
    /// compaction) and its id tables rehashed twice.
    public init(day: Int32, sizedLike previous: BlockBuilder) {
        func roomy(_ n: Int) -> Int { n + n / 8 }
        self.init(
            day: day, rows: roomy(previous.rows), entries: roomy(previous.entries.count),
            users: roomy(previous.localUsers.count), sessions: roomy(previous.localSessions.count))
    }

    /// Room for `rows` rows, `entries` property values and so many distinct user (and
    /// anonymous) and session ids before anything grows.
    init(day: Int32, rows: Int, entries entryCount: Int, users userCount: Int, sessions sessionCount: Int) {
        self.day = day
        let rows = max(rows, 1024)
        timestamps = ColumnBuffer(capacity: rows)
        received = ColumnBuffer(capacity: rows)
        sequences = ColumnBuffer(capacity: rows)
        nameCodes = ColumnBuffer(capacity: rows)
        users = ColumnBuffer(capacity: rows)
        anonymous = ColumnBuffer(capacity: rows)
        sessions = ColumnBuffer(capacity: rows)
        botCodes = ColumnBuffer(capacity: rows)
        eventIdCodes = ColumnBuffer(capacity: rows)
        entryStart = ColumnBuffer(capacity: rows + 1)
        entryStart.append(0)
        entries = ColumnBuffer(capacity: max(entryCount, 4096))
        localUsers = ByteStringTable(capacity: max(userCount, 256))
        localSessions = ByteStringTable(capacity: max(sessionCount, 256))
    }

    /// The UTC day (days since 1970-01-01) of a timestamp in microseconds.
    @inline(__always)
    public static func day(ofMicros micros: Int64) -> Int32 {
        Int32(truncatingIfNeeded: micros >= 0 ? micros / 86_400_000_000 : (micros + 1) / 86_400_000_000 - 1)
    }

    /// The timestamp of a record, without decoding the rest.
    @inline(__always)
    public static func timestamp(ofRecordBody body: UnsafeRawBufferPointer) -> Int64? {
        guard body.count >= 8 else { return nil }
        return Int64(littleEndian: body.loadUnaligned(as: Int64.self))
    }

    /// Adds one event given as a log record body (the bytes after its length field). When its
    /// batch has a string table (`strings`), its strings are references into it or inline;
    /// else all are inline.
    public mutating func append(
        recordBody body: UnsafeRawBufferPointer, sequence: UInt64, strings: BatchStringCodes? = nil
    ) throws(RecordDecodingError) {
        guard let start = body.baseAddress else { throw RecordDecodingError(offset: 0, reason: "truncated record header") }
        var r = RecordCursor(start: start, count: body.count)
        func fail(_ reason: String) -> RecordDecodingError { RecordDecodingError(offset: r.offset, reason: reason) }
        guard r.remaining >= 17 else { throw fail("truncated record header") }
        let ts = r.int64(), recv = r.int64(), flags = r.byteUnchecked()
        guard let nameCode = Self.code(&r, strings, .name, intern: { names.intern($0) }) else { throw fail("bad event_name") }
        let row = UInt32(rows)
        timestamps.append(ts)
        received.append(recv)
        sequences.append(Int64(bitPattern: sequence))
        if flags & EventRecord.timestampClamped != 0 { clampedRows.append(row) }
        nameCodes.append(nameCode)
        var user = Self.none, anon = Self.none, session = Self.none, bot = Self.none, eventId = Self.none
        if flags & EventRecord.hasUserId != 0 {
            guard let code = Self.code(&r, strings, .users, intern: { Self.intern($0, into: &localUsers, last: &lastUser) })
            else { throw fail("bad user_id") }
            user = code
        }
        if flags & EventRecord.hasAnonymousId != 0 {
            guard let code = Self.code(&r, strings, .users, intern: { Self.intern($0, into: &localUsers, last: &lastAnonymous) })
            else { throw fail("bad anonymous_id") }
            anon = code
        }
        if flags & EventRecord.hasSessionId != 0 {
            guard let code = Self.code(&r, strings, .sessions, intern: { Self.intern($0, into: &localSessions, last: &lastSession) })
            else { throw fail("bad session_id") }
            session = code
        }
        if flags & EventRecord.hasBotId != 0 {
            guard let code = Self.code(&r, strings, .bots, intern: { Self.intern($0, into: &bots, last: &lastBot) })
            else { throw fail("bad bot_id") }
            bot = code
        }
        if flags & EventRecord.hasClientEventId != 0 {
            guard let code = Self.code(&r, strings, .eventIds, intern: { eventIds.intern($0) }) else { throw fail("bad event_id") }
            eventId = code
        }
        users.append(user)
        anonymous.append(anon)
        sessions.append(session)
        botCodes.append(bot)
        eventIdCodes.append(eventId)
        guard let count = r.varint(), count <= 65_536 else { throw fail("bad property count") }
        for position in 0..<Int(count) {
            let keyId: Int, slot: Int, tag: EventRecord.Tag
            if let strings {
                // The key's id is cached per string of the batch; its column follows from the
                // value's type.
                guard let id = Self.code(&r, strings, .keys, intern: { propertyKeys.intern($0) }), let tagByte = r.byte(),
                    let t = EventRecord.Tag(rawValue: tagByte)
                else { throw fail("bad property") }
                tag = t
                keyId = Int(id)
                slot = self.slot(key: keyId, kind: ColumnKind(t))
            } else {
                guard let key = r.string(), let tagByte = r.byte(), let t = EventRecord.Tag(rawValue: tagByte)
                else { throw fail("truncated property") }
                tag = t
                (keyId, slot) = keySlot(key, kind: ColumnKind(t), name: nameCode, position: position)
            }
            let column = propertyHandles[slot]
            let valueIndex: UInt32
            switch tag {
            case .null: valueIndex = column._withUnsafeGuaranteedRef { $0.appendNull() }
            case .falseValue: valueIndex = column._withUnsafeGuaranteedRef { $0.append(bool: false) }
            case .trueValue: valueIndex = column._withUnsafeGuaranteedRef { $0.append(bool: true) }
            case .int:
                guard let v = r.varint() else { throw fail("truncated int property") }
                valueIndex = column._withUnsafeGuaranteedRef { $0.append(int: zigzagDecode(v)) }
            case .double:
                guard r.remaining >= 8 else { throw fail("truncated double property") }
                let d = Double(bitPattern: UInt64(bitPattern: r.int64()))
                valueIndex = column._withUnsafeGuaranteedRef { $0.append(double: d) }
            case .string, .json:
                guard
                    let code = Self.code(
                        &r, strings, .property(slot), intern: { s in column._withUnsafeGuaranteedRef { $0.append(string: s) } })
                else { throw fail("bad string property") }
                valueIndex = code
            }
            // A key repeated within one event: the last value wins, as in JavaScript. `slot`
            // has sized both arrays past `keyId`.
            let lastRow = keyLastRow.base, lastEntry = keyLastEntry.base
            if lastRow[keyId] == Int32(row) {
                entries[Int(lastEntry[keyId])] = Self.entry(column: slot, value: valueIndex)
            } else {
                lastRow[keyId] = Int32(row)
                lastEntry[keyId] = Int32(entries.count)
                entries.append(Self.entry(column: slot, value: valueIndex))
            }
        }
        guard r.isAtEnd else { throw fail("\(r.remaining) trailing bytes in record") }
        entryStart.append(UInt32(entries.count))
        rows += 1
    }

    /// The code of the record's next string in `field`: read inline and interned, or looked up
    /// in the batch's string table, where a string met before in the same builder and field
    /// has its code cached and is not hashed again. (Strings of version-2 records are inline
    /// when the varint before them is odd.)
    @inline(__always)
    static func code(
        _ r: inout RecordCursor, _ strings: BatchStringCodes?, _ field: BatchStringCodes.Field,
        intern: (UnsafeRawBufferPointer) -> UInt32
    ) -> UInt32? {
        guard let strings else {
            guard let bytes = r.string() else { return nil }
            return intern(bytes)
        }
        guard let v = r.varint() else { return nil }
        if v & 1 == 1 {
            // Inline (ids): interned per row, after the compare with the previous row's.
            guard v >> 1 <= UInt64(r.remaining) else { return nil }
            let bytes = UnsafeRawBufferPointer(start: r.position, count: Int(v >> 1))
            r.position += Int(v >> 1)
            return intern(bytes)
        }
        let index = v >> 1
        guard index < UInt64(strings.count) else { return nil }
        let cell = strings.cache + Int(index)
        let owner = strings.builder | field.id
        if cell.pointee.owner == owner { return cell.pointee.code }
        let code = intern(strings.bytes(Int(index)))
        cell.pointee = BatchStringCodes.Cell(owner: owner, code: code)
        return code
    }

    /// The code of `bytes` in `table`, checking `last` (the code this column had in the
    /// previous row) before hashing.
    @inline(__always)
    static func intern(_ bytes: UnsafeRawBufferPointer, into table: inout ByteStringTable, last: inout UInt32) -> UInt32 {
        if last != none && table.equals(id: Int(last), bytes) { return last }
        let code = table.intern(bytes)
        last = code
        return code
    }

    /// The key id and column slot of a property. Events of one name list the same keys in the
    /// same order with the same value types, so each of the first `keyCachePositions`
    /// positions of each event name (names past `keyCacheNames` share entries) remembers the
    /// last key seen there (its bytes, when short) and its slot: a hit costs a length check
    /// and a few word compares instead of a hash, a probe and a slot lookup. Positions alone
    /// missed about half the time, as events of different names interleave.
    @inline(__always)
    mutating func keySlot(_ key: UnsafeRawBufferPointer, kind: ColumnKind, name: UInt32, position: Int) -> (keyId: Int, slot: Int) {
        guard position < Self.keyCachePositions else { return keySlotUncached(key, kind: kind) }
        let cached = keyCache.base + Int(name % UInt32(Self.keyCacheNames)) * Self.keyCachePositions + position
        if Int(cached.pointee.length) == key.count, key.count <= KeyCacheEntry.capacity,
            withUnsafeBytes(of: &cached.pointee.bytes, { ByteStringTable.bytesEqual($0.baseAddress!, UnsafeRawPointer(key.baseAddress!), count: key.count) })
        {
            if cached.pointee.kind == kind.rawValue { return (Int(cached.pointee.keyId), Int(cached.pointee.slot)) }
            let keyId = Int(cached.pointee.keyId)
            let slot = slot(key: keyId, kind: kind)
            cached.pointee.kind = kind.rawValue
            cached.pointee.slot = Int32(slot)
            return (keyId, slot)
        }
        let (keyId, slot) = keySlotUncached(key, kind: kind)
        if key.count <= KeyCacheEntry.capacity {
            var entry = KeyCacheEntry()
            entry.length = UInt8(key.count)
            entry.kind = kind.rawValue
            entry.keyId = Int32(keyId)
            entry.slot = Int32(slot)
            if let source = key.baseAddress { withUnsafeMutableBytes(of: &entry.bytes) { $0.baseAddress!.copyMemory(from: source, byteCount: key.count) } }
            cached.pointee = entry
        }
        return (keyId, slot)
    }

    @inline(never)
    mutating func keySlotUncached(_ key: UnsafeRawBufferPointer, kind: ColumnKind) -> (keyId: Int, slot: Int) {
        let keyId = Int(propertyKeys.intern(key))
        return (keyId, slot(key: keyId, kind: kind))
    }

    /// Maps per-block user and session codes to project-wide ids, adding new ones to the
    /// project dictionaries. Runs on one thread, before blocks are finished in parallel.
    public mutating func resolveGlobalIds(_ dictionaries: ProjectDictionaries) throws {
        try adoptGlobalIds(
            users: dictionaries.users.internAll(of: localUsers), sessions: dictionaries.sessions.internAll(of: localSessions))
    }

    /// Maps per-block codes through the given lookups (a query maps the log tail through the
    /// project dictionaries plus ids of its own for strings they do not hold yet).
    ///
    /// Only the distinct strings are looked up here, which is the part that must be serial;
    /// the columns are rewritten by `finish`, which runs on every core.
    public mutating func resolveGlobalIds(
        users userId: (UnsafeRawBufferPointer) -> UInt32, sessions sessionId: (UnsafeRawBufferPointer) -> UInt32
    ) throws {
        func map(_ local: ByteStringTable, _ lookup: (UnsafeRawBufferPointer) -> UInt32) -> [UInt32] {
            local.blob.withUnsafeBytes { blob in
                (0..<local.count).map { i in
                    lookup(UnsafeRawBufferPointer(rebasing: blob[Int(local.offsets[i])..<Int(local.offsets[i + 1])]))
                }
            }
        }
        try adoptGlobalIds(users: map(localUsers, userId), sessions: map(localSessions, sessionId))
    }

    /// Keeps the project ids of the per-block codes for `finish`; they must leave the top bit
    /// free (`resolvedBit`).
    private mutating func adoptGlobalIds(users: [UInt32], sessions: [UInt32]) throws {
        guard users.allSatisfy({ $0 < Self.resolvedBit }), sessions.allSatisfy({ $0 < Self.resolvedBit }) else {
            throw BlockFormatError.badFooter("more than 2^31 distinct ids in a project dictionary")
        }
        globalUserIds = users
        globalSessionIds = sessions
        globalIdsResolved = true
    }

    /// Rewrites the user, anonymous and session columns from per-block codes to the project
    /// ids `resolveGlobalIds` found.
    mutating func applyGlobalIds() {
        guard !globalIdsApplied else { return }
        globalIdsApplied = true
        // Without a resolution there are no per-block codes, only merged rows' project ids.
        let userIds = globalUserIds ?? [], sessionIds = globalSessionIds ?? []
        func apply(_ column: ColumnBuffer<UInt32>, _ ids: [UInt32]) {
            let values = column.base
            ids.withUnsafeBufferPointer { ids in
                for i in 0..<column.count {
                    let v = values[i]
                    if v == Self.none { continue }
                    values[i] = v & Self.resolvedBit != 0 ? v & ~Self.resolvedBit : ids[Int(v)]
                }
            }
        }
        apply(users, userIds)
        apply(anonymous, userIds)
        apply(sessions, sessionIds)
        globalUserIds = nil
        globalSessionIds = nil
    }

    /// The column builder of (property key, kind), created on first use.
    @inline(__always)
    mutating func slot(key keyId: Int, kind: ColumnKind) -> Int {
        if keyId >= keyLastRow.count {
            keyLastRow.append(-1)
            keyLastEntry.append(-1)
            slotOfKeyKind.append(contentsOf: repeatElement(-1, count: 8))
        }
        let index = keyId * 8 + Int(kind.rawValue)
        if slotOfKeyKind[index] < 0 {
            slotOfKeyKind[index] = Int32(properties.count)
            let column = PropertyColumnBuilder(keyId: keyId, kind: kind)
            properties.append(column)
            propertyHandles.append(Unmanaged.passUnretained(column))
        }
        return Int(slotOfKeyKind[index])
    }

    /// Adds every row of an existing block of the same day, column by column: the merge of
    /// small blocks never turns rows back into events or strings back into ids.
    public mutating func append(block: BlockFile) throws {
        let n = block.rows
        func ints(_ name: String) throws -> [Int64] {
            guard let c = try block.builtin(name), case .ints(let v) = c.values else { throw BlockFormatError.noSuchColumn(name) }
            return v
        }
        let ts = try ints("timestamp"), recv = try ints("received_at"), seq = try ints("sequence")
        guard let nameColumn = try block.builtin("event_name"), case .codes(let blockNameCodes, let nameDictionary) = nameColumn.values else {
            throw BlockFormatError.noSuchColumn("event_name")
        }
        let nameMap = (0..<nameDictionary.count).map { i in nameDictionary.bytes(i).withUnsafeBytes { names.intern($0) } }
        func ids(_ name: String) throws -> [UInt32] {
            guard let c = try block.builtin(name), case .ints(let v) = c.values else { return [UInt32](repeating: Self.none, count: n) }
            return (0..<n).map { c.isPresent($0) ? UInt32(truncatingIfNeeded: v[$0]) | Self.resolvedBit : Self.none }
        }
        func localCodes(_ name: String, _ table: inout ByteStringTable) throws -> [UInt32] {
            guard let c = try block.builtin(name), case .codes(let codes, let dictionary) = c.values else {
                return [UInt32](repeating: Self.none, count: n)
            }
            let map = (0..<dictionary.count).map { i in dictionary.bytes(i).withUnsafeBytes { table.intern($0) } }
            return (0..<n).map { c.isPresent($0) ? map[codes[$0]] : Self.none }
        }
        let userColumn = try ids("user_id"), anonColumn = try ids("anonymous_id"), sessionColumn = try ids("session_id")
        let botColumn = try localCodes("bot_id", &bots), eventIdColumn = try localCodes("event_id", &eventIds)
        let clamped = try block.builtin("timestamp_clamped")

        // Property columns, each with its builder slot and values already in builder form.
        struct Source {
            let column: DecodedColumn
            let target: PropertyColumnBuilder
            let codeMap: [UInt32]
        }
        var sources: [Source] = []
        for d in block.footer.columns where d.isProperty {
            let column = try block.decode(d)
            let slot = slot(key: Int(propertyKeys.intern(d.name)), kind: d.kind)
            var codeMap: [UInt32] = []
            if case .codes(_, let dictionary) = column.values {
                let target = properties[slot]
                codeMap = (0..<dictionary.count).map { i in dictionary.bytes(i).withUnsafeBytes { target.strings.intern($0) } }
            }
            sources.append(Source(column: column, target: properties[slot], codeMap: codeMap))
        }
        for row in 0..<n {
            let newRow = UInt32(rows)
            timestamps.append(ts[row])
            received.append(recv[row])
            sequences.append(seq[row])
            nameCodes.append(nameMap[blockNameCodes[row]])
            users.append(userColumn[row])
            anonymous.append(anonColumn[row])
            sessions.append(sessionColumn[row])
            botCodes.append(botColumn[row])
            eventIdCodes.append(eventIdColumn[row])
            if let clamped, clamped.isPresent(row) { clampedRows.append(newRow) }
            for source in sources where source.column.isPresent(row) {
                let t = source.target
                let valueIndex: UInt32
                switch source.column.values {
                case .ints(let v): valueIndex = t.append(int: v[row])
                case .doubles(let v): valueIndex = t.append(double: v[row])
                case .bools(let v): valueIndex = t.append(bool: v[row] != 0)
                case .presenceOnly: valueIndex = t.appendNull()
                case .codes(let codes, _):
                    valueIndex = source.codeMap[codes[row]]
                }
                entries.append(Self.entry(column: Int(slotOfKeyKind[t.keyId * 8 + Int(t.kind.rawValue)]), value: valueIndex))
            }
            entryStart.append(UInt32(entries.count))
            rows += 1
        }
    }

    /// The order rows are written in: by person (user id, else anonymous id, else last),
    /// then timestamp, then sequence.
    ///
    /// Two sorts of plain 64-bit keys instead of one of structs under a comparator: rows are
    /// ranked by (timestamp, arrival), then sorted by (person, that rank). Rows of one person
    /// at one timestamp, rare, are then put in sequence order. Also returns the (timestamp,
    /// arrival) order it ranked by, for the sequence prediction.
    func rowOrder() -> (order: [UInt32], byTime: [UInt32]?) {
        let n = rows
        let actors = [UInt32](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = users[i] != Self.none ? users[i] : anonymous[i] }
            count = n
        }
        guard let byTime = SequencePrediction.timeOrder(timestamps.buffer) else { return (rowOrderByComparison(actors), nil) }
        var rank = [UInt32](repeating: 0, count: n)
        for (r, row) in byTime.enumerated() { rank[Int(row)] = UInt32(r) }
        // The rank takes only the bits `n` needs: the fewer bits vary, the fewer radix passes.
        let rankBits = UInt64(64 - UInt64(n).leadingZeroBitCount)
        let rankMask = (UInt64(1) << rankBits) &- 1
        var keys = [UInt64](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = UInt64(actors[i]) << rankBits | UInt64(rank[i]) }
            count = n
        }
        RadixSort.sort(&keys)
        var order = keys.map { byTime[Int($0 & rankMask)] }
        // Ties of person and time are in row order now, which is sequence order unless older
        // blocks were merged in; only then are they re-sorted. (The loop reads two columns in
        // person order, a cache miss per row, for ties that are rare.)
        let seq = sequences.base
        var arrivedInSequenceOrder = true
        for r in 1..<max(n, 1) where UInt64(bitPattern: seq[r - 1]) > UInt64(bitPattern: seq[r]) {
            arrivedInSequenceOrder = false
            break
        }
        var i = arrivedInSequenceOrder ? n : 0
        while i < n {
            var end = i + 1
            let row = Int(order[i])
            while end < n && actors[Int(order[end])] == actors[row] && timestamps[Int(order[end])] == timestamps[row] { end += 1 }
            if end - i > 1 {
                order[i..<end].sort { UInt64(bitPattern: sequences[Int($0)]) < UInt64(bitPattern: sequences[Int($1)]) }
            }
            i = end
        }
        return (order, byTime)
    }

    private func rowOrderByComparison(_ actors: [UInt32]) -> [UInt32] {
        var order = (0..<UInt32(rows)).map { $0 }
        order.sort { a, b in
            let (x, y) = (Int(a), Int(b))
            if actors[x] != actors[y] { return actors[x] < actors[y] }
            if timestamps[x] != timestamps[y] { return timestamps[x] < timestamps[y] }
            return UInt64(bitPattern: sequences[x]) < UInt64(bitPattern: sequences[y])
        }
        return order
    }

    /// Encodes the block: header, chunks, footer, trailer. `codec` compresses every chunk
    /// (chunks that do not shrink are stored plain).
    public mutating func finish(
        codec: Codec, level: Int32, dictionaries: ProjectDictionaries, createdAt: Int64 = currentMicros()
    ) throws -> (bytes: OutputBuffer, footer: BlockFooter) {
        try finish(
            codec: codec, level: level, userDictionaryCount: UInt32(dictionaries.users.count),
            sessionDictionaryCount: UInt32(dictionaries.sessions.count), createdAt: createdAt)
    }

    public mutating func finish(
        codec: Codec, level: Int32, userDictionaryCount: UInt32, sessionDictionaryCount: UInt32,
        createdAt: Int64 = currentMicros(), pacer: (any CompactionPacer)? = nil
    ) throws -> (bytes: OutputBuffer, footer: BlockFooter) {
        precondition(globalIdsResolved || rows == 0 || (localUsers.count == 0 && localSessions.count == 0),
            "resolveGlobalIds must run before finish")
        applyGlobalIds()
        mergeNumericKinds()
        let (order, byTime) = rowOrder()
        var inverse = [UInt32](repeating: 0, count: rows)
        for (r, old) in order.enumerated() { inverse[Int(old)] = UInt32(r) }
        let writer = BlockWriter(codec: codec, level: level, rows: rows, pacer: pacer)
        let n = rows

        let ts = gather(timestamps.buffer, order)
        let recv = gather(received.buffer, order)
        let seq = gather(sequences.buffer, order)
        try writer.addIntColumn("timestamp", kind: .int, values: ts, presentRows: nil)
        let relative = [Int64](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = recv[i] &- ts[i] }
            count = n
        }
        try writer.addIntColumn("received_at", kind: .int, values: recv, presentRows: nil, alternative: (relative, 1))
        // Arrival order is sequence order unless older blocks were merged in.
        var sortedSequences = sequences.buffer.map { UInt64(bitPattern: $0) }
        if zip(sortedSequences, sortedSequences.dropFirst()).contains(where: { $0 > $1 }) { sortedSequences.sort() }
        let predicted = SequencePrediction.predict(
            timestamps: ts, byTime: byTime.map { SequencePrediction.outputTimeOrder($0, inverse: inverse, timestamps: ts) },
            sortedSequences: sortedSequences.map { Int64(bitPattern: $0) })
        let residual = [Int64](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = seq[i] &- predicted[i] }
            count = n
        }
        try writer.addIntColumn(
            "sequence", kind: .int, values: seq, presentRows: nil, alternative: (residual, SequencePrediction.parameter))
        try writer.addStringColumn("event_name", kind: .string, table: names, codes: gather(nameCodes.buffer, order), presentRows: nil)

        for (column, ids) in [("user_id", users), ("anonymous_id", anonymous), ("session_id", sessions)] {
            let (present, values) = presentGather(ids.buffer, order)
            if !present.isEmpty {
                try writer.addIntColumn(column, kind: .globalId, values: values.map { Int64($0) }, presentRows: present)
            }
        }
        for (column, table, codes) in [("bot_id", bots, botCodes), ("event_id", eventIds, eventIdCodes)] {
            let (present, values) = presentGather(codes.buffer, order)
            if !present.isEmpty { try writer.addStringColumn(column, kind: .string, table: table, codes: values, presentRows: present) }
        }
        if !clampedRows.isEmpty {
            try writer.addPresenceOnlyColumn("timestamp_clamped", presentRows: clampedRows.map { inverse[Int($0)] }.sorted(), property: false)
        }

        // Properties: count each column's entries, then walk rows in output order and deal
        // each entry to its column's stretch of two shared arrays.
        let columnCount = properties.count
        let entryCount = entries.count
        var stretchStart = [Int](repeating: 0, count: columnCount + 1)
        stretchStart.withUnsafeMutableBufferPointer { counts in
            let packed = entries.base
            for e in 0..<entryCount { counts[Int(UInt32(truncatingIfNeeded: packed[e])) + 1] += 1 }
        }
        for c in 0..<columnCount { stretchStart[c + 1] += stretchStart[c] }
        var dealtRows = [UInt32](repeating: 0, count: entryCount)
        var dealtValues = [UInt32](repeating: 0, count: entryCount)
        var cursors = stretchStart
        // Each row's entry range is gathered first: in one loop with the dealing, every row
        // waited for its range before it could load its entries (two dependent cache misses
        // per row, as rows are read in output order); gathered, the loads of many rows
        // overlap.
        let entryRanges = [UInt64](unsafeUninitializedCapacity: n) { buffer, count in
            order.withUnsafeBufferPointer { o in
                let starts = entryStart.base
                for r in 0..<n {
                    let old = Int(o[r])
                    buffer[r] = UInt64(starts[old]) | UInt64(starts[old + 1]) << 32
                }
            }
            count = n
        }
        entryRanges.withUnsafeBufferPointer { rowRanges in
            dealtRows.withUnsafeMutableBufferPointer { rowsOut in
                dealtValues.withUnsafeMutableBufferPointer { valuesOut in
                    cursors.withUnsafeMutableBufferPointer { cursor in
                        let packed = entries.base
                        let ahead = Self.gatherAhead
                        for r in 0..<n {
                            // The entries of a row a few ahead: rows are read in output order,
                            // so each one's entries are a cache miss the prefetch overlaps.
                            if r + ahead < n { tally_prefetch(packed + Int(UInt32(truncatingIfNeeded: rowRanges[r + ahead]))) }
                            let range = rowRanges[r]
                            for e in Int(UInt32(truncatingIfNeeded: range))..<Int(range >> 32) {
                                let entry = packed[e]
                                let c = Int(UInt32(truncatingIfNeeded: entry))
                                let at = cursor[c]
                                rowsOut[at] = UInt32(r)
                                valuesOut[at] = UInt32(truncatingIfNeeded: entry >> 32)
                                cursor[c] = at + 1
                            }
                        }
                    }
                }
            }
        }
        // Columns in key order, so that a block's footer reads alphabetically.
        let slots = properties.indices.filter { stretchStart[$0 + 1] > stretchStart[$0] }.sorted { a, b in
            let ka = propertyKeys.bytes(properties[a].keyId), kb = propertyKeys.bytes(properties[b].keyId)
            return ka.lexicographicallyPrecedes(kb) || (ka == kb && properties[a].kind.rawValue < properties[b].kind.rawValue)
        }
        for slot in slots {
            let column = properties[slot]
            let name = propertyKeys.string(column.keyId)
            let rowsPresent = Array(dealtRows[stretchStart[slot]..<stretchStart[slot + 1]])
            let picks = dealtValues[stretchStart[slot]..<stretchStart[slot + 1]]
            switch column.kind {
            case .int:
                try writer.addIntColumn(name, kind: .int, values: picks.map { column.ints[Int($0)] }, presentRows: rowsPresent, property: true)
            case .double:
                try writer.addDoubleColumn(name, values: picks.map { column.doubles[Int($0)] }, presentRows: rowsPresent)
            case .bool:
                try writer.addBoolColumn(name, values: picks.map { column.bools[Int($0)] }, presentRows: rowsPresent)
            case .string, .json:
                try writer.addStringColumn(
                    name, kind: column.kind, table: column.strings, codes: Array(picks),
                    presentRows: rowsPresent, property: true)
            case .null:
                try writer.addPresenceOnlyColumn(name, presentRows: rowsPresent, property: true)
            case .globalId:
                break
            }
        }
        var ranges: [SequenceRange] = []
        if var current = sortedSequences.first.map({ SequenceRange($0, $0) }) {
            for s in sortedSequences {
                if s != current.end {
                    ranges.append(current)
                    current = SequenceRange(s, s)
                }
                current.end = s + 1
            }
            ranges.append(current)
        }
        let footer = BlockFooter(
            day: day, rows: UInt32(n), minTimestamp: ts.min() ?? 0, maxTimestamp: ts.max() ?? 0, createdAt: createdAt,
            userDictionaryCount: userDictionaryCount, sessionDictionaryCount: sessionDictionaryCount,
            sequenceRanges: ranges, columns: writer.columns)
        return (writer.finish(footer: footer), footer)
    }

    /// The output rows where `values` (in builder order) is not `none`, and the values there.
    ///
    /// Written without a branch per row: whether an optional id is there (an anonymous id on
    /// a fifth of events, say) is unpredictable, and every row writes its slot and advances
    /// only when present.
    private func presentGather(_ values: UnsafeBufferPointer<UInt32>, _ order: [UInt32]) -> (present: [UInt32], values: [UInt32]) {
        let n = order.count
        var found = 0
        var gathered: [UInt32] = []
        let present = [UInt32](unsafeUninitializedCapacity: n) { presentOut, presentCount in
            gathered = [UInt32](unsafeUninitializedCapacity: n) { valuesOut, valuesCount in
                order.withUnsafeBufferPointer { o in
                    for r in 0..<n {
                        if r + Self.gatherAhead < n { tally_prefetch(values.baseAddress! + Int(o[r + Self.gatherAhead])) }
                        let v = values[Int(o[r])]
                        presentOut[found] = UInt32(r)
                        valuesOut[found] = v
                        found &+= v != Self.none ? 1 : 0
                    }
                }
                valuesCount = found
            }
            presentCount = found
        }
        return (present, gathered)
    }

    /// How many rows ahead the output-order gathers prefetch: rows are read in an order (by
    /// person) unrelated to the one they were stored in (arrival), so every read of a large
    /// column misses the cache unless it was asked for earlier.
    static let gatherAhead = 16

    /// `values` in the order of `order` (output row → builder row).
    private func gather<T: BitwiseCopyable>(_ values: UnsafeBufferPointer<T>, _ order: [UInt32]) -> [T] {
        [T](unsafeUninitializedCapacity: order.count) { buffer, count in
            order.withUnsafeBufferPointer { o in
                let n = o.count
                for r in 0..<n {
                    if r + Self.gatherAhead < n { tally_prefetch(values.baseAddress! + Int(o[r + Self.gatherAhead])) }
                    buffer[r] = values[Int(o[r])]
                }
            }
            count = order.count
        }
    }

    /// A key with both integer and fractional values becomes one double column, so a number
    /// property is one column to filter and aggregate. Integers above 2^53 lose precision in
    /// such a mixed column only.
    mutating func mergeNumericKinds() {
        for keyId in 0..<propertyKeys.count {
            let intSlot = Int(slotOfKeyKind[keyId * 8 + Int(ColumnKind.int.rawValue)])
            let doubleSlot = Int(slotOfKeyKind[keyId * 8 + Int(ColumnKind.double.rawValue)])
            guard intSlot >= 0, doubleSlot >= 0 else { continue }
            let base = UInt32(properties[doubleSlot].doubles.count)
            properties[doubleSlot].doubles.append(contentsOf: properties[intSlot].ints.map { Double($0) })
            for e in entries.indices where UInt32(truncatingIfNeeded: entries[e]) == UInt32(intSlot) {
                entries[e] = Self.entry(column: doubleSlot, value: UInt32(truncatingIfNeeded: entries[e] >> 32) + base)
            }
            properties[intSlot].ints.removeAll()
        }
    }
}

extension ColumnKind {
    /// The column a log value of this tag goes to.
    @inline(__always)
    init(_ tag: EventRecord.Tag) {
        switch tag {
        case .null: self = .null
        case .falseValue, .trueValue: self = .bool
        case .int: self = .int
        case .double: self = .double
        case .string: self = .string
        case .json: self = .json
        }
    }
}

/// One position of `BlockBuilder.keyCache`: a key of at most `capacity` bytes, its id, and
/// the kind and slot of the value last seen with it. A fresh entry's length (255) matches no
/// key.
struct KeyCacheEntry: BitwiseCopyable {
    static let capacity = 32
    var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    var length: UInt8 = 255
    var kind: UInt8 = 0
    var keyId: Int32 = 0
    var slot: Int32 = 0
}

/// Reads a record body by pointer. The builder reads some fifty fields per event, and a
/// cursor with an end pointer keeps the loop's state in registers where an offset into a
/// buffer (`ByteReader`) spilled; string lengths, nearly all below 128, take one compare.
struct RecordCursor {
    let start: UnsafeRawPointer
    var position: UnsafeRawPointer
    let end: UnsafeRawPointer

    init(start: UnsafeRawPointer, count: Int) {
        self.start = start
        position = start
        end = start + count
    }

    var offset: Int { position - start }
    var remaining: Int { end - position }
    var isAtEnd: Bool { position >= end }

    /// A little-endian `i64`; the caller has checked `remaining`.
    @inline(__always)
    mutating func int64() -> Int64 {
        defer { position += 8 }
        return Int64(littleEndian: position.loadUnaligned(as: Int64.self))
    }

    /// A byte; the caller has checked `remaining`.
    @inline(__always)
    mutating func byteUnchecked() -> UInt8 {
        defer { position += 1 }
        return position.load(as: UInt8.self)
    }

    @inline(__always)
    mutating func byte() -> UInt8? {
        guard position < end else { return nil }
        return byteUnchecked()
    }

    @inline(__always)
    mutating func varint() -> UInt64? {
        if position < end {
            let b = position.load(as: UInt8.self)
            if b < 0x80 {
                position += 1
                return UInt64(b)
            }
            // Two bytes: references to strings 64 to 8k of a batch's table.
            if end - position >= 2 {
                let c = position.load(fromByteOffset: 1, as: UInt8.self)
                if c < 0x80 {
                    position += 2
                    return UInt64(b & 0x7F) | UInt64(c) << 7
                }
            }
        }
        return longVarint()
    }

    @inline(never)
    mutating func longVarint() -> UInt64? {
        var reader = ByteReader(UnsafeRawBufferPointer(start: position, count: remaining))
        let value = reader.readVarint()
        position += reader.offset
        return value
    }

    /// A varint length and that many bytes.
    @inline(__always)
    mutating func string() -> UnsafeRawBufferPointer? {
        guard let n = varint(), n <= UInt64(remaining) else { return nil }
        defer { position += Int(n) }
        return UnsafeRawBufferPointer(start: position, count: Int(n))
    }
}

/// The values of one (key, kind) pair, in arrival order. A class, so that appending through
/// the builder's array of columns never copies or re-checks that array.
final class PropertyColumnBuilder {
    let keyId: Int
    let kind: ColumnKind
    let ints = ColumnBuffer<Int64>(capacity: 256)
    let doubles = ColumnBuffer<Double>(capacity: 16)
    let bools = ColumnBuffer<UInt8>(capacity: 16)
    // Unchecked exclusivity: a builder is filled by one thread, and no append re-enters another.
    @exclusivity(unchecked) var strings = ByteStringTable()
    @exclusivity(unchecked) var nulls: UInt32 = 0
    @exclusivity(unchecked) var lastCode: Int32 = -1

    init(keyId: Int, kind: ColumnKind) {
        self.keyId = keyId
        self.kind = kind
        if kind == .string || kind == .json { strings = ByteStringTable(capacity: 16) }
    }

    func appendNull() -> UInt32 {
        nulls += 1
        return nulls - 1
    }
    func append(bool: Bool) -> UInt32 {
        bools.append(bool ? 1 : 0)
        return UInt32(bools.count - 1)
    }
    func append(int: Int64) -> UInt32 {
        ints.append(int)
        return UInt32(ints.count - 1)
    }
    func append(double: Double) -> UInt32 {
        doubles.append(double)
        return UInt32(doubles.count - 1)
    }
    /// Unlike the other appends, returns the value itself, its code in `strings`: an entry
    /// then holds the code, and `finish` needs no second, random, lookup to find it.
    func append(string: UnsafeRawBufferPointer) -> UInt32 {
        // Low-cardinality values (plan, channel) often repeat the previous one: compare
        // before hashing.
        if lastCode >= 0 && strings.equals(id: Int(lastCode), string) { return UInt32(lastCode) }
        let code = strings.intern(string)
        lastCode = Int32(code)
        return code
    }
}

/// Sequence numbers stored as their difference from a prediction.
///
/// The log is written in roughly timestamp order, so the row with the k-th smallest
/// timestamp of a block usually holds the k-th smallest of its sequence numbers. Predicting
/// that and storing the residual turns a column of 17-bit jumps (rows are ordered by person)
/// into mostly zeros; late events leave small residuals. Readers rebuild the prediction from
/// the timestamps and the footer's sequence ranges.
package enum SequencePrediction {
    static let parameter: Int64 = 2

    /// For each row, the sequence number the k-th smallest timestamp would have, where k is
    /// the row's rank by (timestamp, row). `byTime`, when given, is that order already.
    static func predict(timestamps: [Int64], byTime known: [UInt32]? = nil, sortedSequences: [Int64]) -> [Int64] {
        let n = timestamps.count
        let byTime = known ?? timestamps.withUnsafeBufferPointer { (t: UnsafeBufferPointer<Int64>) -> [UInt32] in
            if let order = timeOrder(t) { return order }
            var order = (0..<UInt32(n)).map { $0 }
            order.sort { (a: UInt32, b: UInt32) -> Bool in
                let (x, y) = (t[Int(a)], t[Int(b)])
                return x < y || (x == y && a < b)
            }
            return order
        }
        var predicted = [Int64](repeating: 0, count: n)
        for (rank, row) in byTime.enumerated() { predicted[Int(row)] = sortedSequences[rank] }
        return predicted
    }

    /// The output rows in (timestamp, output row) order, from the builder rows in (timestamp,
    /// builder row) order and `inverse` (builder row → output row): rows keep their time
    /// order and only runs of equal timestamps are re-sorted, instead of sorting all rows
    /// again. `timestamps` is in output order.
    package static func outputTimeOrder(_ byBuilderRow: [UInt32], inverse: [UInt32], timestamps: [Int64]) -> [UInt32] {
        var order = byBuilderRow.map { inverse[Int($0)] }
        let n = order.count
        var i = 0
        while i < n {
            let t = timestamps[Int(order[i])]
            var end = i + 1
            while end < n && timestamps[Int(order[end])] == t { end += 1 }
            if end - i > 1 { order[i..<end].sort() }
            i = end
        }
        return order
    }

    /// The rows ordered by (timestamp, row), by sorting keys that pack the timestamp's offset
    /// from the minimum above the row number; nil when the two do not fit in 64 bits (never
    /// for one day of timestamps, which spans 37 bits).
    package static func timeOrder(_ timestamps: UnsafeBufferPointer<Int64>) -> [UInt32]? {
        let n = timestamps.count
        guard n > 0 else { return [] }
        var minimum = Int64.max
        var maximum = Int64.min
        for t in timestamps {
            minimum = Swift.min(minimum, t)
            maximum = Swift.max(maximum, t)
        }
        let rowBits = UInt64(64 - UInt64(n).leadingZeroBitCount)
        let span = maximum.subtractingReportingOverflow(minimum)
        guard !span.overflow, rowBits < 64, UInt64(span.partialValue) >> (64 - rowBits) == 0 else { return nil }
        if let order = nearlySortedTimeOrder(timestamps, minimum: minimum, rowBits: rowBits) { return order }
        var keys = [UInt64](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = UInt64(timestamps[i] &- minimum) << rowBits | UInt64(i) }
            count = n
        }
        RadixSort.sort(&keys)
        let rowMask = (UInt64(1) << rowBits) &- 1
        return keys.map { UInt32(truncatingIfNeeded: $0 & rowMask) }
    }

    /// The same order for rows that arrived in about time order, as the log's do: rows whose
    /// timestamp is at least every earlier row's are in place already, the others (late
    /// events) are sorted apart and merged in. Nil when more than one row in 16 is late; the
    /// radix sort is then as quick.
    static func nearlySortedTimeOrder(_ timestamps: UnsafeBufferPointer<Int64>, minimum: Int64, rowBits: UInt64) -> [UInt32]? {
        let n = timestamps.count
        let lateLimit = n / 16
        var late: [UInt64] = []
        let inPlace = [UInt32](unsafeUninitializedCapacity: n) { buffer, count in
            var latest = Int64.min
            count = 0
            for i in 0..<n {
                let t = timestamps[i]
                if t >= latest {
                    latest = t
                    buffer[count] = UInt32(i)
                    count += 1
                } else {
                    late.append(UInt64(t &- minimum) << rowBits | UInt64(i))
                    if late.count > lateLimit { return }
                }
            }
        }
        guard late.count <= lateLimit else { return nil }
        if late.isEmpty { return inPlace }
        RadixSort.sort(&late)
        // Both lists are in (timestamp, row) order; the packed keys compare that way.
        let rowMask = (UInt64(1) << rowBits) &- 1
        return [UInt32](unsafeUninitializedCapacity: n) { buffer, count in
            var a = 0, b = 0, k = 0
            inPlace.withUnsafeBufferPointer { inPlace in
                while a < inPlace.count && b < late.count {
                    let row = inPlace[a]
                    let key = UInt64(timestamps[Int(row)] &- minimum) << rowBits | UInt64(row)
                    if key < late[b] {
                        buffer[k] = row
                        a += 1
                    } else {
                        buffer[k] = UInt32(truncatingIfNeeded: late[b] & rowMask)
                        b += 1
                    }
                    k += 1
                }
                while a < inPlace.count {
                    buffer[k] = inPlace[a]
                    a += 1
                    k += 1
                }
            }
            while b < late.count {
                buffer[k] = UInt32(truncatingIfNeeded: late[b] & rowMask)
                b += 1
                k += 1
            }
            count = k
        }
    }
}
