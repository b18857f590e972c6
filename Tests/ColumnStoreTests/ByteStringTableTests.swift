import ColumnStore
import TallyTestSupport
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

    /// `internAll` (groups with their slots loaded ahead) assigns exactly the ids that
    /// interning one string at a time does, in packed and plain tables, for strings already
    /// present, new ones, repeats within a group and ids too long to pack.
    @Test(arguments: [false, true])
    func internAllAssignsTheIdsOfOneAtATime(packsIds: Bool) {
        let first = Self.strings(5_000)
        var batch = ByteStringTable(capacity: 4)
        for v in Self.strings(12_000).reversed() + [String(repeating: "a1", count: 200), "sess_00000000deadbeef"] { batch.intern(v) }
        var oneAtATime = ByteStringTable(capacity: 4, packsIds: packsIds)
        var grouped = ByteStringTable(capacity: 4, packsIds: packsIds)
        for v in first {
            oneAtATime.intern(v)
            grouped.intern(v)
        }
        let expected = (0..<batch.count).map { oneAtATime.intern(batch.string($0)) }
        #expect(grouped.internAll(of: batch) == expected)
        #expect(grouped.count == oneAtATime.count)
        for id in 0..<grouped.count { #expect(grouped.string(id) == oneAtATime.string(id)) }
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

    /// Ids of every shape the packed form treats differently: hex after a prefix (odd and
    /// even digit counts, too few digits), bare hex, UUIDs (and near misses), uppercase hex,
    /// strings starting with bytes UTF-8 never uses, and more prefixes than can be numbered.
    static func idShapes(_ rng: inout SeededRandom) -> [[UInt8]] {
        func hex(_ n: Int) -> String { String((0..<n).map { _ in "0123456789abcdef".randomElement(using: &rng)! }) }
        var out: [[UInt8]] = []
        for i in 0..<3_000 {
            let s: String
            switch i % 12 {
            case 0: s = "sess_" + hex(16)
            case 1: s = "anon_" + hex(Int.random(in: 1...21, using: &rng))
            case 2: s = hex(Int.random(in: 6...40, using: &rng))
            case 3: s = "\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(12))"
            case 4: s = "\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(11))"
            case 5: s = "\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(12))".uppercased()
            case 6: s = "p\(i)_" + hex(10)  // a new prefix each: more than 255
            case 7: s = String(repeating: "x", count: 33) + hex(12)  // prefix too long
            case 8: s = "user_\(i)"
            case 9: s = ""
            case 10: s = "ABCDEF0123456789"
            default: s = "e" + hex(9)
            }
            out.append(Array(s.utf8))
            if i % 97 == 0 { out.append([0xF8 + UInt8(i % 8)] + Array(hex(12).utf8)) }  // not UTF-8
        }
        return out + out.shuffled(using: &rng)  // every id twice
    }

    /// The word-at-a-time digit tests and conversions agree with the byte-at-a-time ones on
    /// every byte value in every position, and packing then unpacking gives the digits back.
    @Test func hexDigitsReadAndWrittenEightAtATimeMatchOneAtATime() {
        var rng = SeededRandom(seed: 47)
        let digits = Array("0123456789abcdef".utf8)
        for round in 0..<20_000 {
            var bytes = (0..<8).map { _ in digits.randomElement(using: &rng)! }
            if round % 2 == 1 { bytes[Int.random(in: 0..<8, using: &rng)] = UInt8(round / 2 % 256) }
            let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let scalar = bytes.map(IdPacking.hexValue)
            guard let values = IdPacking.hexWord(word) else {
                #expect(scalar.contains(nil), "\(bytes) are all hex digits")
                continue
            }
            #expect(!scalar.contains(nil), "\(bytes) are not all hex digits")
            let expected = (0..<4).map { scalar[2 * $0]! << 4 | scalar[2 * $0 + 1]! }
            let packed = IdPacking.packNibbles(values)
            #expect(withUnsafeBytes(of: packed.littleEndian, Array.init) == expected)
            #expect(withUnsafeBytes(of: IdPacking.unpackNibbles(packed).littleEndian, Array.init) == bytes)
        }
    }

    @Test func aTableThatPacksIdsAgreesWithOneThatDoesNot() {
        var rng = SeededRandom(seed: 46)
        let ids = Self.idShapes(&rng)
        var plain = ByteStringTable()
        var packed = ByteStringTable(packsIds: true)
        for id in ids {
            let a = id.withUnsafeBytes { plain.intern($0) }
            let b = id.withUnsafeBytes { packed.intern($0) }
            #expect(a == b, "\(id) got \(b) packed, \(a) plain")
        }
        #expect(packed.count == plain.count)
        #expect(packed.blob.count < plain.blob.count * 3 / 4, "packing saved too little: \(packed.blob.count) of \(plain.blob.count) bytes")
        for id in 0..<plain.count {
            let original = Array(plain.bytes(id))
            #expect(packed.withString(id) { Array($0) } == original)
            #expect(original.withUnsafeBytes { packed.find($0) } == UInt32(id))
        }
        for _ in 0..<500 {
            let missing = ids.randomElement(using: &rng)! + Array("0f".utf8)
            let inPlain = missing.withUnsafeBytes { plain.find($0) }
            #expect(missing.withUnsafeBytes { packed.find($0) } == inPlain)
        }
    }
}
