import ColumnStore
import Testing

@Suite struct ByteStringTableTests {
    /// Strings that share prefixes and lengths (as ids do), plus the empty string and
    /// lengths on every side of the hash's word boundaries.
    static func strings(_ n: Int) -> [String] {
        (0..<n).map { i in
            switch i % 4 {
            case 0: "sess_\(String(UInt64(i) &* 0x9E37_79B9_7F4A_7C15, radix: 16))"
            case 1: String(repeating: "x", count: i % 40)
            case 2: "user_\(i)"
            default: "漢\(i)"
            }
        }
    }

    @Test func internGivesDenseIdsInFirstSeenOrderThroughEveryGrowth() {
        let values = Self.strings(200_000)
        var table = ByteStringTable(capacity: 4)
        var expected: [String: UInt32] = [:]
        for v in values {
            let id = table.intern(v)
            if let known = expected[v] {
                #expect(id == known, "\(v) changed id")
            } else {
                #expect(Int(id) == expected.count, "\(v) did not get the next id")
                expected[v] = id
            }
        }
        #expect(table.count == expected.count)
        for (v, id) in expected {
            #expect(table.find(v) == id)
            #expect(table.string(Int(id)) == v)
        }
        for missing in ["sess_", "user_-1", "漢", String(repeating: "x", count: 41)] {
            #expect(table.find(missing) == nil, "\(missing) was never interned")
        }
    }

    @Test func aTableLoadedWithoutItsIndexBuildsItOnFirstIntern() {
        var source = ByteStringTable()
        for v in Self.strings(5_000) { source.intern(v) }
        let ends = source.offsets.dropFirst().flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        var loaded = ByteStringTable()
        let appended = ends.withUnsafeBytes { e in
            source.blob.withUnsafeBytes { loaded.appendWithoutIndex(count: source.count, ends: e, blob: $0) }
        }
        #expect(appended)
        #expect(!loaded.isIndexed)
        #expect(loaded.find("user_2") == source.find("user_2"))
        #expect(loaded.intern("user_2") == source.find("user_2"))
        #expect(loaded.isIndexed)
        #expect(loaded.intern("brand new") == UInt32(source.count))
        for id in stride(from: 0, to: source.count, by: 97) {
            #expect(loaded.find(source.string(id)) == UInt32(id))
        }
    }

    @Test func removeAllForgetsEveryString() {
        var table = ByteStringTable()
        for v in Self.strings(1_000) { table.intern(v) }
        table.removeAll()
        #expect(table.count == 0)
        #expect(table.find("user_2") == nil)
        #expect(table.intern("user_2") == 0)
    }
}
