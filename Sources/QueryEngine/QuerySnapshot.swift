public import ColumnStore
public import EventLog

/// Everything one query reads, fixed at one moment: the published blocks, the log past what
/// they hold (turned into in-memory blocks of the same format, so every operator has one
/// input shape), and the person and session ids of both.
///
/// Events acknowledged before the snapshot are all in it: blocks cover sequences below the
/// manifest's "compacted through", the tail covers the rest up to the log's durable end.
public final class QuerySnapshot: @unchecked Sendable {
    // Unchecked: immutable after init.
    public let blocks: [BlockFile]
    /// Number of leading `blocks` that are published block files; the rest hold the log tail.
    public let publishedBlocks: Int
    /// The time (µs) up to which every acknowledged event is included.
    public let dataThrough: Int64
    /// Project ids of user and anonymous ids: the project dictionary as of the snapshot,
    /// then ids of this snapshot's own for strings only the log tail holds.
    public let people: IdTable
    public let sessions: IdTable
    /// When set, operators stop with `QueryError.timeout` once it has passed: they check it
    /// before each block. Set it before the snapshot is shared with a query.
    public var deadline: ContinuousClock.Instant?

    /// Throws `QueryError.timeout` once the deadline has passed.
    @inline(__always)
    public func checkDeadline() throws {
        if let deadline, ContinuousClock.now >= deadline { throw QueryError.timeout }
    }

    public init(store: ColumnStore, log: EventLog?) throws {
        let taken = currentMicros()
        // The manifest is read before the log snapshot: a compaction publishing in between
        // moves events from the log into blocks, and reading the log from the older
        // "compacted through" then sees them twice; so re-check and retry.
        var attempt = 0
        while true {
            let storeSnapshot = store.snapshot()
            let (users, sessionTable) = store.withDictionaries { ($0.users.table, $0.sessions.table) }
            var people = IdTable(base: users)
            var sessions = IdTable(base: sessionTable)
            var tail: [BlockFile] = []
            if let log, case let logSnapshot = log.snapshot(), logSnapshot.durableSequence > storeSnapshot.manifest.compactedThrough {
                do {
                    tail = try Self.tailBlocks(
                        logSnapshot, from: storeSnapshot.manifest.compactedThrough, people: &people, sessions: &sessions)
                } catch let error as FileError where error.errno == 2 && attempt < 3 {
                    // A segment was removed by a compaction that published after the manifest
                    // was read: read the new manifest.
                    attempt += 1
                    continue
                }
            }
            guard store.manifest.generation == storeSnapshot.manifest.generation || attempt >= 3 else {
                attempt += 1
                continue
            }
            self.blocks = storeSnapshot.blocks + tail
            self.publishedBlocks = storeSnapshot.blocks.count
            self.people = people
            self.sessions = sessions
            self.dataThrough = taken
            return
        }
    }

    /// The log from `from` on, as one in-memory block per UTC day.
    static func tailBlocks(_ snapshot: LogSnapshot, from: UInt64, people: inout IdTable, sessions: inout IdTable) throws -> [BlockFile] {
        var days = DayBuilders()
        var reader = LogReader(snapshot: snapshot, from: from)
        while let (header, payload) = try reader.nextBatch() {
            try days.add(header, payload: payload, range: from..<UInt64.max)
        }
        var builders = days.builders
        var blocks: [BlockFile] = []
        for i in builders.indices {
            try builders[i].resolveGlobalIds(users: { people.id(of: $0) }, sessions: { sessions.id(of: $0) })
            let (bytes, _) = try builders[i].finish(
                codec: .none, level: 0, userDictionaryCount: UInt32(people.count), sessionDictionaryCount: UInt32(sessions.count))
            blocks.append(try BlockFile(bytes: bytes.toArray(), name: "log tail, day \(builders[i].day)"))
        }
        return blocks
    }
}

/// Project ids of strings: a dictionary snapshot plus ids of its own past the end of it.
public struct IdTable: Sendable {
    var base: ByteStringTable
    var extra = ByteStringTable(capacity: 256)

    init(base: ByteStringTable) {
        self.base = base
    }

    public var count: Int { base.count + extra.count }

    mutating func id(of bytes: UnsafeRawBufferPointer) -> UInt32 {
        // A dictionary opened without its index gets one once the log tail needs lookups.
        if !base.isIndexed { base.buildIndex() }
        if let id = base.find(bytes) { return id }
        return UInt32(base.count) + extra.intern(bytes)
    }

    /// The id of `string`, if any event holds it.
    public func find(_ string: String) -> UInt32? {
        if let id = base.find(string) { return id }
        return extra.find(string).map { UInt32(base.count) + $0 }
    }

    public func string(_ id: Int) -> String {
        id < base.count ? base.string(id) : extra.string(id - base.count)
    }
}
