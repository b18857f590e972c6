import ColumnStore
import EventLog
import Foundation
import Logging
import Synchronization
import TallyTestSupport
import Testing

/// Events spread over `days` consecutive UTC days, with every value type, nulls, a key of
/// mixed types, empty and unicode strings and extreme numbers.
func storeTestEvents(count: Int, days: Int, seed: UInt64) -> [Event] {
    var rng = SeededRandom(seed: seed)
    let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
    let specials: [PropertyValue] = [
        .int(.max), .int(.min), .int(0), .double(.greatestFiniteMagnitude), .double(-.leastNonzeroMagnitude),
        .double(-0.0), .double(19.99), .string(""), .string("漢字 😀 é"), .json("[]"), .null, .bool(true),
    ]
    return (0..<count).map { i in
        var e = randomEvent(&rng)
        e.timestamp = dayZero + Int64.random(in: 0..<(Int64(days) * 86_400_000_000), using: &rng)
        e.receivedAt = e.timestamp + Int64.random(in: 0..<5_000_000, using: &rng)
        if i % 7 == 0 { e.properties.append(Property("mixed", specials[i / 7 % specials.count])) }
        if i % 5 == 0 { e.properties.append(Property("price", i % 10 == 0 ? .double(Double(i % 1000) / 100) : .int(Int64(i)))) }
        if i % 3 == 0 { e.clientEventId = "client-\(i)" }
        if i % 11 == 0 { e.userId = "" }
        return e
    }
}

/// Whether the store's blocks hold exactly `stored`, with each day's rows in blocks of
/// that day.
func expectBlocksHoldExactly(_ stored: [Event], _ store: ColumnStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
    expectSameEvents(stored, try store.allEvents(), sourceLocation: sourceLocation)
    var perDay: [Int32: Int] = [:]
    for e in stored { perDay[BlockBuilder.day(ofMicros: e.timestamp), default: 0] += 1 }
    var blockRows: [Int32: Int] = [:]
    for block in store.manifest.blocks { blockRows[block.day, default: 0] += Int(block.rows) }
    #expect(blockRows == perDay, sourceLocation: sourceLocation)
}

/// Whether `actual` (read back from blocks) is `expected` (as appended): the same fields,
/// properties in any order, and integers of a key that also held fractions read as doubles.
func sameEvent(_ expected: Event, _ actual: Event) -> Bool {
    var a = expected
    var b = actual
    guard a.properties.count == b.properties.count else { return false }
    func order(_ p: Property) -> String {
        let kind: String
        switch p.value {
        case .null: kind = "0"
        case .bool: kind = "1"
        case .int, .double: kind = "2"
        case .string: kind = "3"
        case .json: kind = "4"
        }
        return p.key + "\u{0}" + kind
    }
    a.properties.sort { order($0) < order($1) }
    b.properties.sort { order($0) < order($1) }
    for (p, q) in zip(a.properties, b.properties) {
        guard p.key == q.key else { return false }
        switch (p.value, q.value) {
        case (.int(let i), .double(let d)): if Double(i) != d { return false }
        case (.double(let x), .double(let y)): if x.bitPattern != y.bitPattern { return false }
        default: if p.value != q.value { return false }
        }
    }
    a.properties = []
    b.properties = []
    return a == b
}

func expectSameEvents(_ expected: [Event], _ actual: [Event], sourceLocation: SourceLocation = #_sourceLocation) {
    let e = expected.sorted { $0.sequence < $1.sequence }
    let a = actual.sorted { $0.sequence < $1.sequence }
    #expect(e.count == a.count, "expected \(e.count) events, read \(a.count)", sourceLocation: sourceLocation)
    for (x, y) in zip(e, a) where !sameEvent(x, y) {
        Issue.record("event \(x.sequence) differs:\n  wrote \(x)\n  read  \(y)", sourceLocation: sourceLocation)
        return
    }
}

/// Appends `events` in batches of `batchSize` and returns them with their sequence numbers.
/// `versions` are the payload formats of the batches in turn.
func append(
    _ events: [Event], to log: EventLog, batchSize: Int = 100, versions: [UInt8] = [BatchHeader.currentVersion]
) async throws -> [Event] {
    var stored: [Event] = []
    var start = 0
    while start < events.count {
        let slice = Array(events[start..<min(start + batchSize, events.count)])
        let first = try await log.append(try makeBatch(slice, version: versions[start / batchSize % versions.count]))
        for (i, var e) in slice.enumerated() {
            e.sequence = first + UInt64(i)
            stored.append(e)
        }
        start += batchSize
    }
    return stored
}

func quietLogger() -> Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

/// What a reader sees after a restart: events in listed blocks plus the log past
/// "compacted through".
func visibleEvents(projectDirectory: String) throws -> [Event] {
    let store = try ColumnStore.open(directory: projectDirectory + "/blocks", logger: quietLogger())
    let log = try EventLog.open(directory: projectDirectory + "/log", logger: quietLogger())
    defer { log.close() }
    var events = try store.allEvents()
    var reader = LogReader(snapshot: log.snapshot(), from: store.manifest.compactedThrough)
    while let e = try reader.next() { events.append(e) }
    return events
}

@Suite struct IntegerEncodingTests {
    @Test(arguments: IntegerEncoding.allCases)
    func roundTrips(_ encoding: IntegerEncoding) throws {
        var rng = SeededRandom(seed: 7)
        let cases: [[Int64]] = [
            [], [0], [.max], [.min, .max, 0, -1, 1], (0..<1000).map { Int64($0) * 1000 },
            // Common divisors: milliseconds in microseconds (either sign), 2⁶³, a large odd one.
            (0..<600).map { _ in Int64.random(in: -1_000_000_000_000...1_000_000_000_000, using: &rng) * 1000 },
            [0, .min, 0, .min, .min], [.min, 0, .min],
            (0..<300).map { _ in Int64.random(in: -1000...1000, using: &rng) * 999_999_999_989 },
            (0..<777).map { _ in Int64.random(in: .min ... .max, using: &rng) },
            (0..<300).map { _ in Int64.random(in: 0..<16, using: &rng) },
            (0..<500).map { i in i % 50 == 0 ? Int64.random(in: .min ... .max, using: &rng) : Int64(i) },
            // Every bit width from 0 to 64, one mini-block each, and a short last block.
            (0..<(128 * 65 + 37)).map { i in
                let width = UInt64(i / 128 % 65)
                return Int64(bitPattern: width == 64 ? rng.next() : rng.next() & ((1 << width) - 1))
            },
        ]
        for values in cases {
            let out = OutputBuffer()
            let applies = values.withUnsafeBufferPointer { IntegerEncoding.encode($0, as: encoding, into: out) }
            guard applies else { continue }
            var decoded = [Int64](repeating: 0, count: values.count)
            try decoded.withUnsafeMutableBufferPointer { d in try IntegerEncoding.decode(out.bytes, as: encoding, into: d) }
            #expect(decoded == values, "\(encoding) of \(values.count) values")
        }
    }

    /// Division by multiplication agrees with `/` and `%` on multiples and non-multiples of
    /// odd, even and power-of-two divisors up to 2⁶³.
    @Test func exactDivisionAgreesWithDivision() {
        var rng = SeededRandom(seed: 17)
        var divisors: [UInt64] = [1, 2, 3, 7, 8, 10, 1000, 1 << 20, 3 << 40, 999_999_999_989, 1 << 62, 1 << 63, UInt64(Int64.max)]
        divisors += (0..<200).map { _ in rng.next() >> (rng.next() % 64) | 1 }
        divisors += (0..<200).map { _ in (rng.next() >> (rng.next() % 64) | 1) << (rng.next() % 8) }
        for d in divisors {
            let divisor = ExactDivisor(d)
            let bound = Int64(clamping: UInt64(Int64.max) / d)
            for _ in 0..<50 {
                let q = Int64.random(in: -bound...bound, using: &rng)
                let x = q * Int64(bitPattern: d)
                #expect(divisor.divides(x.magnitude), "\(d) divides \(x)")
                #expect(divisor.quotient(x) == q, "\(x) / \(d)")
                let other = rng.next()
                #expect(divisor.divides(other) == (other % d == 0), "\(d) divides \(other)")
            }
        }
        #expect(ExactDivisor(1 << 63).divides(1 << 63) && !ExactDivisor(1 << 63).divides(1 << 62))
    }

    @Test func commonDivisorIsTheGreatestCommonDivisor() {
        var rng = SeededRandom(seed: 19)
        for round in 0..<300 {
            let scale = rng.next() % 5000 + 1
            let count = Int(rng.next() % 40)
            // Zeros first in some rounds: the divisor of nothing but zeros is 1.
            let values = (0..<count).map { i in round % 3 == 0 && i < 3 ? 0 : (rng.next() % 1_000_000) * scale }
            var common = CommonDivisor()
            for v in values { common.add(v) }
            let expected = values.reduce(0, gcd)
            #expect(common.divisor.value == max(expected, 1), "\(values)")
            #expect(common.isOne == (expected == 1))
        }
    }

    @Test func outliersBecomeExceptionsInsteadOfWideningTheBlock() {
        var values = (0..<1024).map { Int64($0 % 8) }
        values[100] = 1 << 40
        let out = OutputBuffer()
        _ = values.withUnsafeBufferPointer { IntegerEncoding.encode($0, as: .frame, into: out) }
        // 3 bits × 1024 values is 384 bytes; one 40-bit outlier must not cost 37 more bits each.
        #expect(out.count < 500)
    }

    @Test func corruptChunksThrowInsteadOfTrapping() {
        var rng = SeededRandom(seed: 3)
        let values = (0..<500).map { _ in Int64.random(in: -1000...1000, using: &rng) }
        for encoding in IntegerEncoding.allCases {
            let out = OutputBuffer()
            _ = values.withUnsafeBufferPointer { IntegerEncoding.encode($0, as: encoding, into: out) }
            let bytes = out.toArray()
            for cut in stride(from: 0, to: bytes.count, by: 7) {
                var decoded = [Int64](repeating: 0, count: values.count)
                let truncated = Array(bytes[0..<cut])
                #expect(throws: ColumnDecodingError.self) {
                    try truncated.withUnsafeBytes { b in
                        try decoded.withUnsafeMutableBufferPointer { try IntegerEncoding.decode(b, as: encoding, into: $0) }
                    }
                }
            }
        }
    }
}

@Suite struct SequencePredictionTests {
    /// The writer derives the (timestamp, output row) order from the builder's (timestamp,
    /// builder row) order; readers sort the output timestamps afresh. The two must agree,
    /// ties included, or every sequence number decodes wrong.
    @Test(arguments: [1, 2, 300, 5_000])
    func derivedTimeOrderEqualsASortOfTheOutput(count: Int) throws {
        var rng = SeededRandom(seed: UInt64(count))
        // Few distinct timestamps, so most rows tie.
        let builderTimestamps = (0..<count).map { _ in Int64.random(in: 0..<50, using: &rng) * 1000 }
        let order = (0..<UInt32(count)).shuffled(using: &rng)
        var inverse = [UInt32](repeating: 0, count: count)
        for (r, old) in order.enumerated() { inverse[Int(old)] = UInt32(r) }
        let outputTimestamps = order.map { builderTimestamps[Int($0)] }
        let byBuilderRow = try #require(builderTimestamps.withUnsafeBufferPointer { SequencePrediction.timeOrder($0) })
        let expected = try #require(outputTimestamps.withUnsafeBufferPointer { SequencePrediction.timeOrder($0) })
        #expect(SequencePrediction.outputTimeOrder(byBuilderRow, inverse: inverse, timestamps: outputTimestamps) == expected)
    }
}

extension SequencePredictionTests {
    /// Rows in about time order (the log's) take a merge instead of a sort: in-order rows,
    /// late rows tying with them, a late row before all others, and too many late rows
    /// (the sort again) all give the (timestamp, row) order.
    @Test(arguments: [0, 1, 3, 40, 2_000])
    func timeOrderOfNearlySortedRowsIsTheSortedOrder(lateRows: Int) throws {
        var rng = SeededRandom(seed: UInt64(lateRows) + 7)
        let n = 10_000
        var timestamps = (0..<n).map { Int64($0 / 3) * 1_000 }
        for _ in 0..<lateRows {
            let i = Int.random(in: 1..<n, using: &rng)
            timestamps[i] = timestamps[Int.random(in: 0..<i, using: &rng)] - Int64.random(in: 0...1, using: &rng) * 500
        }
        if lateRows > 0 { timestamps[n - 1] = -1 }
        let expected = (0..<UInt32(n)).sorted { (timestamps[Int($0)], $0) < (timestamps[Int($1)], $1) }
        let order = try #require(timestamps.withUnsafeBufferPointer { SequencePrediction.timeOrder($0) })
        #expect(order == expected)
    }
}

@Suite struct RadixSortTests {
    /// Keys shaped like the compactor's (a few varying bit ranges, many equal digits) and
    /// fully random ones, short and long, sort exactly as the standard library sorts them.
    @Test(arguments: [0, 1, 2, 200, 257, 5_000, 100_000])
    func sortsLikeTheStandardLibrary(count: Int) {
        var generator = SystemRandomNumberGenerator()
        let shapes: [() -> UInt64] = [
            { UInt64.random(in: 0...UInt64.max, using: &generator) },
            { UInt64.random(in: 0..<200_000, using: &generator) << 32 | UInt64.random(in: 0..<1 << 17, using: &generator) },
            { UInt64.random(in: 0..<86_400_000_000, using: &generator) << 27 | UInt64.random(in: 0..<3, using: &generator) },
            { 0xFFFF_0000_0000_0000 | UInt64.random(in: 0..<16, using: &generator) },
        ]
        for shape in shapes {
            var keys = (0..<count).map { _ in shape() }
            let expected = keys.sorted()
            RadixSort.sort(&keys)
            #expect(keys == expected)
        }
    }
}

@Suite struct CompactionTests {
    /// Batches of both payload formats, alternating: logs written before the string table
    /// compact alongside new ones.
    @Test(arguments: [[BatchHeader.currentVersion], [1, 2]])
    func eventsRoundTripThroughLogCompactorAndBlocks(versions: [UInt8]) async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let stored = try await append(storeTestEvents(count: 3000, days: 4, seed: 11), to: log, versions: versions)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        let round = try #require(try store.compact(log: log))
        #expect(round.events == 3000)
        #expect(store.manifest.compactedThrough == log.durableSequence)
        #expect(Set(store.manifest.blocks.map(\.day)).count == store.manifest.blocks.count, "one block per day")
        expectSameEvents(stored, try store.allEvents())
        // Rows are ordered by person, then time.
        for block in store.snapshot().blocks {
            let events = try store.withDictionaries { try block.events(users: $0.users.table, sessions: $0.sessions.table) }
            #expect(events.map(\.timestamp).min() ?? 0 >= block.footer.minTimestamp)
            #expect(BlockBuilder.day(ofMicros: events[0].timestamp) == block.footer.day)
        }
        log.close()
        expectSameEvents(stored, try visibleEvents(projectDirectory: dir.path))
    }

    /// The builder remembers the key and slot seen at each property position per event name;
    /// these events make that memory wrong in every way it can be: one key with values of
    /// different types at one position, keys that differ only in the middle or only in
    /// length, keys too long to remember, an empty key, and more names than it has rows. In
    /// format-2 batches the keys come as string indexes, cached per batch instead.
    @Test(arguments: [UInt8(1), 2])
    func propertyKeysAreReadRightWhateverTheKeyCacheHolds(version: UInt8) async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
        let long = String(repeating: "k", count: 40)
        let values: [PropertyValue] = [.int(7), .string("seven"), .double(7.5), .bool(true), .null, .json("[7]")]
        var events: [Event] = []
        for i in 0..<2_000 {
            // 24-byte keys alike but for one byte in the middle (words 8..<16), and keys that
            // are prefixes of one another.
            let middle = "abcdefgh_" + String(UnicodeScalar(UInt8(97 + i % 3))) + "_ijklmnopqrstu"
            let keys = [middle, String(middle.prefix(8 + i % 9)), long + String(i % 2), "", "k\(i % 5)"]
            var properties: [Property] = []
            for (position, key) in keys.enumerated() {
                properties.append(Property(key, values[(i + position * 7 + i / 3) % values.count]))
            }
            if i % 3 == 0 { properties.swapAt(0, 4) }
            events.append(Event(
                name: "name_\(i % 70)", timestamp: dayZero + Int64(i) * 1_000_000, receivedAt: dayZero + Int64(i) * 1_000_000,
                userId: "user_\(i % 13)", anonymousId: nil, sessionId: nil, botId: nil, clientEventId: nil,
                timestampClamped: false, properties: properties))
        }
        let stored = try await append(events, to: log, versions: [version])
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        _ = try #require(try store.compact(log: log))
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    /// The compactor caches the code each string of a format-2 batch got, per day builder and
    /// field. Here one batch uses the same few strings as names, user, anonymous, session and
    /// bot ids, event ids, keys and values of every type, on three days in turn: a code cached
    /// for one field or day must never be taken for another.
    @Test func stringsSharedByFieldsAndDaysOfABatchKeepTheirMeaning() async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
        let words = ["a", "b", "", "ü", "a.b"]
        func word(_ i: Int) -> String { words[i % words.count] }
        var events: [Event] = []
        for i in 0..<1_500 {
            let properties = [
                Property(word(i + 1), .string(word(i + 2))), Property(word(i + 2), .json(word(i))),
                Property(word(i + 3), .string(word(i))), Property("k" + word(i), .int(Int64(i))),
            ]
            events.append(Event(
                name: word(i) + "e", timestamp: dayZero + Int64(i % 3) * 86_400_000_000 + Int64(i), receivedAt: dayZero,
                userId: i % 4 == 0 ? nil : "u" + word(i / 2), anonymousId: i % 3 == 0 ? "u" + word(i / 3) : nil,
                sessionId: "u" + word(i + 4), botId: i % 5 == 0 ? nil : "u" + word(i), clientEventId: "u" + word(i) + String(i),
                timestampClamped: false, properties: properties))
        }
        let stored = try await append(events, to: log, batchSize: 1_500)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        _ = try #require(try store.compact(log: log))
        #expect(store.manifest.blocks.count == 3)
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    /// Read workers claim days as they meet them (`DayClaims`). Batches here hold events of
    /// many days in random order, so the workers meet every day at once and contend for
    /// each: with 1, 3 and 8 of them the blocks hold exactly the events appended, and the
    /// same rows per day.
    @Test(arguments: [1, 3, 8])
    func everyDayIsBuiltOnceWhateverWorkerClaimsIt(workers: Int) async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        var events = storeTestEvents(count: 6_000, days: 40, seed: 31)
        // Then a stretch in time order, as a live log is, with a few late events.
        let ordered = storeTestEvents(count: 4_000, days: 40, seed: 32).sorted { $0.timestamp < $1.timestamp }
        events += ordered.enumerated().map { i, e in
            var e = e
            if i % 97 == 0 { e.timestamp -= 20 * 86_400_000_000 }
            return e
        }
        let stored = try await append(events, to: log, batchSize: 64)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        var options = CompactionOptions()
        options.threads = workers
        options.maxEventsPerRound = 3_000
        while try store.compact(log: log, options: options) != nil {}
        #expect(store.manifest.compactedThrough == log.durableSequence)
        try expectBlocksHoldExactly(stored, store)
        log.close()
    }

    /// A round ends at the log's next day boundary when one comes within a quarter round, or
    /// else at the last one in the half round before its plain end. Days in time order,
    /// rounds of 1,000 events: days of 400 run each round on to the end of its third day;
    /// days of 700 have no boundary in the quarter round after, so each round ends back at
    /// the end of its day. No day is split between rounds, so no round merges the block the
    /// one before it wrote, and every day is one block.
    @Test(arguments: [(400, 4_000, [1_200, 2_400, 3_600, 4_000] as [UInt64]), (700, 3_500, [700, 1_400, 2_100, 2_800, 3_500])])
    func roundsEndAtDayBoundaries(dayEvents: Int, count: Int, expectedEnds: [UInt64]) async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
        let events = (0..<count).map { i in
            Event(
                name: "e", timestamp: dayZero + Int64(i / dayEvents) * 86_400_000_000 + Int64(i % dayEvents) * 1_000_000,
                receivedAt: dayZero, userId: "u\(i % 7)", anonymousId: nil, sessionId: nil, botId: nil, clientEventId: nil,
                timestampClamped: false, properties: [])
        }
        let stored = try await append(events, to: log, batchSize: 50)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        var options = CompactionOptions()
        options.maxEventsPerRound = 1_000
        var ends: [UInt64] = []
        while let round = try store.compact(log: log, options: options) {
            #expect(round.blocksReplaced == 0)
            ends.append(round.through)
        }
        #expect(ends == expectedEnds)
        #expect(store.manifest.blocks.count == count / dayEvents)
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    /// A round of few large days is read in one stretch of the log per worker
    /// (`RoundPartition`): each stretch's part of a day becomes a block of its own, named
    /// apart, every event is stored once, the small blocks of earlier rounds are merged
    /// exactly once, and two stores built alike hold the same blocks, whichever worker was
    /// faster.
    @Test func roundsOfFewDaysAreReadInStretches() async throws {
        let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
        var rng = SeededRandom(seed: 5)
        // A few events of days 0 and 1 first (a round of their own: small blocks), then
        // 6,000 in time order over days 0–2, with late ones.
        var events = storeTestEvents(count: 40, days: 2, seed: 3)
        events += storeTestEvents(count: 6_000, days: 3, seed: 4).sorted { $0.timestamp < $1.timestamp }.map { e in
            var e = e
            if Int.random(in: 0..<50, using: &rng) == 0 { e.timestamp = dayZero + Int64.random(in: 0..<86_400_000_000, using: &rng) }
            return e
        }
        var layouts: [[String: UInt32]] = []
        for _ in 0..<2 {
            let dir = TemporaryDirectory()
            let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
            let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
            var options = CompactionOptions()
            options.threads = 3
            options.minEventsPerStretch = 500
            var stored = try await append(Array(events[..<40]), to: log, batchSize: 20)
            _ = try #require(try store.compact(log: log, options: options))
            #expect(store.manifest.blocks.count == 2, "40 events are too few to read in stretches")
            stored += try await append(Array(events[40...]), to: log, batchSize: 64)
            let round = try #require(try store.compact(log: log, options: options))
            #expect(round.blocksReplaced == 2, "each day's small block is merged once")
            #expect(store.manifest.blocks.count > 3, "days that span stretches have a block per stretch")
            #expect(store.manifest.blocks.contains { $0.name.hasSuffix("-1.blk") })
            try expectBlocksHoldExactly(stored, store)
            layouts.append(Dictionary(uniqueKeysWithValues: store.manifest.blocks.map { ($0.name, $0.rows) }))
            log.close()
        }
        #expect(layouts[0] == layouts[1])
    }

    /// The builder compares each row's user, anonymous, session and bot ids with the
    /// previous row's before hashing them. These rows repeat, swap and nearly repeat them:
    /// ids equal but for the last byte or the length, an anonymous id equal to the row's
    /// user id, empty ids, absent ones between equal ones, and runs of one person. Format-2
    /// batches take that path only for strings not yet cached from their string table.
    @Test(arguments: [UInt8(1), 2])
    func idsRepeatedFromThePreviousRowAreReadRight(version: UInt8) async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let dayZero: Int64 = 1_750_000_000_000_000 / 86_400_000_000 * 86_400_000_000
        let ids: [String?] = ["user_1", "user_1", "user_2", "user_1", "user_10", "", "", nil, "user_10", "user_1x", "sess_a"]
        var rng = SeededRandom(seed: 7)
        var events: [Event] = []
        for i in 0..<3_000 {
            // Runs of one id as often as changes.
            func pick(_ salt: Int) -> String? { ids[(i / (1 + salt % 3) + salt) % ids.count] }
            let user = pick(0)
            events.append(Event(
                name: "e\(i % 3)", timestamp: dayZero + Int64(i) * 1_000_000, receivedAt: dayZero + Int64(i) * 1_000_000,
                userId: user, anonymousId: i % 4 == 0 ? user : pick(1), sessionId: pick(2), botId: pick(Int.random(in: 0..<3, using: &rng)),
                clientEventId: nil, timestampClamped: false, properties: []))
        }
        let stored = try await append(events, to: log, versions: [version])
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        _ = try #require(try store.compact(log: log))
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    /// Size-tiered merging: new events of a day merge with its blocks of comparable size; a
    /// few late events make a small block of their own (the day's big block is not
    /// rewritten), which the next few late events merge with; a crowded day merges all.
    @Test func lateEventsMergeWithBlocksOfComparableSize() async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        var stored: [Event] = []
        func round(_ count: Int, seed: UInt64, options: CompactionOptions = CompactionOptions()) async throws -> CompactionRound? {
            stored += try await append(storeTestEvents(count: count, days: 2, seed: seed), to: log)
            let result = try store.compact(log: log, options: options)
            expectSameEvents(stored, try store.allEvents())
            return result
        }
        _ = try await round(500, seed: 1)
        #expect(store.manifest.blocks.count == 2)
        _ = try await round(1000, seed: 2)
        #expect(store.manifest.blocks.count == 2, "about 250 rows a day merge with 500 new ones")
        let bigBlocks = Set(store.manifest.blocks.map(\.name))

        let late = try await round(20, seed: 3)
        #expect(late?.blocksReplaced == 0, "a few late events do not rewrite their day")
        #expect(store.manifest.blocks.count == 4)
        _ = try await round(24, seed: 4)
        #expect(store.manifest.blocks.count == 4, "the next few merge with the small blocks")
        #expect(bigBlocks.isSubset(of: Set(store.manifest.blocks.map(\.name))))

        var crowded = CompactionOptions()
        crowded.maxBlocksPerDay = 2
        _ = try await round(10, seed: 5, options: crowded)
        #expect(store.manifest.blocks.count == 2, "a crowded day merges all its small blocks")

        // Without merging, late events land in a block of their own.
        var options = CompactionOptions()
        options.mergeBelowRows = 0
        _ = try await round(100, seed: 9, options: options)
        #expect(store.manifest.blocks.count == 4)
        log.close()
    }

    @Test func compactedSegmentsAreRemovedAndTheRestStay() async throws {
        let dir = TemporaryDirectory()
        var configuration = EventLog.Configuration()
        configuration.segmentMaxBytes = 16 * 1024
        let log = try EventLog.open(directory: dir.path + "/log", configuration: configuration, logger: quietLogger())
        let stored = try await append(storeTestEvents(count: 2000, days: 3, seed: 5), to: log)
        let segmentsBefore = log.snapshot().segments.count
        #expect(segmentsBefore > 3)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        var options = CompactionOptions()
        options.maxEventsPerRound = 700
        let round = try #require(try store.compact(log: log, options: options))
        #expect(round.segmentsRemoved > 0)
        #expect(log.snapshot().segments.first!.firstSequence <= store.manifest.compactedThrough)
        try log.waitForSegmentRemovals()
        #expect(try SegmentName.list(in: dir.path + "/log").count == segmentsBefore - round.segmentsRemoved)
        log.close()
        expectSameEvents(stored, try visibleEvents(projectDirectory: dir.path))
    }

    /// Stops the compaction before each of its durable steps in turn, then reopens everything
    /// from disk as a restarted process would: the visible events are exactly those appended.
    /// Rounds read by day, and read in stretches (`RoundPartition`, with merges after the read).
    @Test(arguments: [false, true])
    func aFailureAtAnyCompactionStepLosesAndDuplicatesNothing(inStretches: Bool) async throws {
        var failAt = 1
        while true {
            let dir = TemporaryDirectory()
            var configuration = EventLog.Configuration()
            configuration.segmentMaxBytes = 8 * 1024
            var stored: [Event] = []
            let faults = FaultInjector(failAt: failAt)
            do {
                let log = try EventLog.open(directory: dir.path + "/log", configuration: configuration, logger: quietLogger())
                let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
                var options = CompactionOptions()
                if inStretches {
                    options.threads = 3
                    options.minEventsPerStretch = 50
                }
                stored = try await append(storeTestEvents(count: 400, days: 3, seed: 21), to: log)
                try store.compact(log: log, options: options)
                stored += try await append(storeTestEvents(count: 300, days: 4, seed: 22), to: log)
                // Every day is cold: the first round's blocks (several a day in stretches)
                // are recompressed too.
                options.coldAfterDays = -10
                var failed = false
                do {
                    try store.compact(log: log, options: options, faults: faults)
                } catch is FaultInjector.Fault {
                    failed = true
                }
                log.close()
                expectSameEvents(stored, try visibleEvents(projectDirectory: dir.path))
                // A restarted compactor finishes the job.
                let log2 = try EventLog.open(directory: dir.path + "/log", configuration: configuration, logger: quietLogger())
                let store2 = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
                try store2.compact(log: log2, options: options)
                #expect(store2.manifest.compactedThrough == log2.durableSequence)
                #expect(!inStretches || store2.manifest.blocks.contains { $0.name.hasSuffix("-1.blk") }, "days read in stretches")
                log2.close()
                expectSameEvents(stored, try visibleEvents(projectDirectory: dir.path))
                if !failed { break }
            }
            failAt += 1
            #expect(failAt < 200)
            if failAt >= 200 { break }
        }
        #expect(failAt > 10, "the protocol has at least ten durable steps")
    }

    /// A paced compaction offers every thread's work to its pacer in slices (reading the
    /// log, resolving ids and encoding chunks all call it), and pausing changes nothing in
    /// what is written.
    @Test func pacedCompactionOffersItsWorkAndWritesTheSame() async throws {
        final class RecordingPacer: CompactionPacer {
            let offered = Mutex<[UInt64]>([])
            func pause(afterWorking cpuNanos: UInt64) {
                offered.withLock { $0.append(cpuNanos) }
                usleep(200)
            }
        }
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let stored = try await append(storeTestEvents(count: 20_000, days: 3, seed: 21), to: log)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        let pacer = RecordingPacer()
        var options = CompactionOptions()
        options.pacer = pacer
        options.threads = 1
        let round = try #require(try store.compact(log: log, options: options))
        #expect(round.events == 20_000)
        let offered = pacer.offered.withLock { $0 }
        #expect(!offered.isEmpty, "a compaction of this size takes many slices")
        #expect(offered.allSatisfy { $0 >= 10_000_000 }, "work is offered in slices of at least 10 ms of CPU")
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    @Test func coldDaysAreRecompressedWithZstd() async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        let stored = try await append(storeTestEvents(count: 1000, days: 2, seed: 4), to: log)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        var options = CompactionOptions()
        options.coldAfterDays = 100_000
        try store.compact(log: log, options: options)
        #expect(store.manifest.blocks.allSatisfy { $0.codec == .lz4 })
        options.coldAfterDays = 0
        try store.compact(log: log, options: options)
        #expect(store.manifest.blocks.allSatisfy { $0.codec == .zstd })
        expectSameEvents(stored, try store.allEvents())
        log.close()
    }

    @Test func flippedBitsInABlockAreDetected() async throws {
        let dir = TemporaryDirectory()
        let log = try EventLog.open(directory: dir.path + "/log", logger: quietLogger())
        _ = try await append(storeTestEvents(count: 800, days: 1, seed: 8), to: log)
        let store = try ColumnStore.open(directory: dir.path + "/blocks", logger: quietLogger())
        try store.compact(log: log)
        log.close()
        let name = try #require(store.manifest.blocks.first?.name)
        let path = dir.path + "/blocks/" + name
        let original = try FileIO.readFile(path)
        #expect(try BlockVerifier.verify(directory: dir.path + "/blocks").problems.isEmpty)
        var rng = SeededRandom(seed: 99)
        for _ in 0..<40 {
            var bytes = original
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            try FileIO.writeAtomically(bytes, to: path, durable: false)
            let problems = try BlockVerifier.verify(directory: dir.path + "/blocks").problems
            #expect(!problems.isEmpty, "a flipped bit at \(at) went unnoticed")
            #expect(problems.allSatisfy { $0.file.hasSuffix(name) })
            #expect(throws: (any Error).self) {
                let block = try BlockFile(path: path)
                _ = try store.withDictionaries { try block.events(users: $0.users.table, sessions: $0.sessions.table) }
            }
        }
    }
}

@Suite struct DictionaryTests {
    /// A dictionary opened without its hash index maps ids to the same strings, finds them by
    /// scanning, and builds the index the moment something is interned.
    @Test func dictionariesOpenedWithoutAnIndexAnswerTheSame() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/users.dict"
        var rng = SeededRandom(seed: 11)
        var dictionary = try GlobalDictionary.open(path: path)
        var strings: [String] = []
        for round in 0..<3 {
            for i in 0..<500 {
                let s = "user_\(round)_\(i)_" + randomString(&rng, maxLength: 6)
                strings.append(s)
                var copy = s
                _ = copy.withUTF8 { dictionary.intern(UnsafeRawBufferPointer($0)) }
            }
            try dictionary.persist()  // one frame per round
        }
        let indexed = try GlobalDictionary.open(path: path)
        var plain = try GlobalDictionary.open(path: path, indexed: false)
        #expect(!plain.table.isIndexed)
        #expect(plain.count == indexed.count)
        for id in [0, 1, 499, 500, 1234, indexed.count - 1] {
            #expect(plain.string(id) == indexed.string(id))
            #expect(plain.find(indexed.string(id)) == UInt32(id))
        }
        #expect(plain.find("nobody") == nil)
        var fresh = "someone new"
        let id = fresh.withUTF8 { plain.intern(UnsafeRawBufferPointer($0)) }
        #expect(plain.table.isIndexed)
        #expect(id == UInt32(indexed.count))
        var again = strings[42]
        #expect(again.withUTF8 { plain.intern(UnsafeRawBufferPointer($0)) } == indexed.find(strings[42]))
    }
}
