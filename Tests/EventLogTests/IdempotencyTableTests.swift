import EventLog
import TallyTestSupport
import Testing

@Suite struct IdempotencyTableTests {
    static func key(_ rng: inout SeededRandom) -> IdempotencyKey {
        IdempotencyKey(high: UInt64.random(in: 0...UInt64.max, using: &rng), low: UInt64.random(in: 0...UInt64.max, using: &rng))
    }

    /// The table agrees with a `Dictionary` through inserts, replacements, growth and
    /// several rounds of in-place expiry. Keys are drawn from a narrow range of `high`
    /// values too, so probe runs are long and wrap past the end of the slots.
    @Test func agreesWithADictionaryThroughGrowthAndExpiry() {
        var rng = SeededRandom(seed: 44)
        for clustered in [false, true] {
            var table = IdempotencyTable()
            var reference: [IdempotencyKey: IdempotencyIndex.Entry] = [:]
            var second: UInt32 = 1_000
            for round in 0..<6 {
                for _ in 0..<8_000 {
                    var key = Self.key(&rng)
                    // Clustered keys all hash to the last few slots, so runs wrap to slot 0.
                    if clustered { key.high = UInt64.max - UInt64.random(in: 0..<(1 << 56), using: &rng) }
                    if !reference.isEmpty, Int.random(in: 0..<10, using: &rng) == 0 { key = reference.keys.randomElement(using: &rng)! }
                    let entry = IdempotencyIndex.Entry(timestamp: Int64.random(in: -1_000...1_000, using: &rng), receivedSecond: second)
                    table.insert(key, entry)
                    reference[key] = entry
                    if Int.random(in: 0..<100, using: &rng) == 0 { second += 1 }
                }
                let cutoff = second - UInt32(3 + round % 3)
                let oldest = table.removeAll(receivedBefore: cutoff)
                reference = reference.filter { $0.value.receivedSecond >= cutoff }
                #expect(oldest == (reference.values.map(\.receivedSecond).min() ?? .max))
                #expect(table.count == reference.count)
                for (key, entry) in reference where table.find(key) != entry {
                    Issue.record("round \(round): \(key) should map to \(entry), found \(String(describing: table.find(key)))")
                    return
                }
                var seen = 0
                table.forEach { key, entry in
                    seen += 1
                    if reference[key] != entry { Issue.record("round \(round): \(key) survived expiry or changed") }
                }
                #expect(seen == reference.count)
                for _ in 0..<1_000 { #expect(table.find(Self.key(&rng)) == nil) }
            }
        }
    }

    @Test func aSnapshotRoundTripsThroughTheCurrentFormat() {
        var rng = SeededRandom(seed: 45)
        let entries = (0..<500).map { i in (Self.key(&rng), IdempotencyIndex.Entry(timestamp: Int64(i) - 250, receivedSecond: UInt32(100 + i))) }
        let encoded = IdempotencySnapshots.encode(entries, from: 10, through: 20)
        let index = IdempotencyIndex()
        let decoded = IdempotencySnapshots.decode(Array(encoded.bytes)) { packed, count, layout in
            index.restoreSnapshot(packed, count: count, entrySize: layout.entrySize, timestampOffset: layout.timestampOffset, cutoff: 300)
        }
        #expect(decoded?.count == 500)
        #expect(decoded?.newestSecond == 599)
        #expect(index.count == 300)  // receive seconds 100 ..< 300 are past the cutoff
        index.markReady()
        for (key, entry) in entries {
            let reservation = index.reserve(key)
            switch reservation {
            case .stored(let found): #expect(entry.receivedSecond >= 300 && found == entry)
            case .reserved: #expect(entry.receivedSecond < 300)
            default: Issue.record("unexpected reservation for \(key)")
            }
        }
        var damaged = Array(encoded.bytes)
        damaged[50] ^= 1
        #expect(IdempotencySnapshots.decode(damaged) { _, _, _ in Issue.record("a damaged snapshot was restored") } == nil)
    }
}
