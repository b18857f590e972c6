import CLZ4
import EventLog
import TallyTestSupport
import Testing

@Suite struct FramingTests {
    @Test func crc32cMatchesKnownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        // Checksumming in pieces equals checksumming at once.
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(bytes)
        let part = bytes.withUnsafeBytes { p in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[333...]), continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[..<333])))
        }
        #expect(whole == part)
    }

    /// The CPU-instruction path and the table path agree for every length and alignment
    /// around the 8-byte steps, and for a continued checksum.
    @Test func crc32cHardwareAgreesWithTables() {
        var rng = SeededRandom(seed: 32)
        let bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes.withUnsafeBytes { p in
            for start in 0..<9 {
                for end in stride(from: start, through: p.count, by: 7) {
                    let slice = UnsafeRawBufferPointer(rebasing: p[start..<end])
                    #expect(CRC32C.checksum(slice) == CRC32C.softwareChecksum(slice), "bytes \(start)..<\(end)")
                    #expect(CRC32C.checksum(slice, continuing: 0x1234_5678) == CRC32C.softwareChecksum(slice, continuing: 0x1234_5678))
                }
            }
        }
    }

    @Test(arguments: Codec.allCases)
    func codecsRoundTrip(codec: Codec) throws {
        var rng = SeededRandom(seed: 7)
        for size in [0, 1, 17, 4096, 100_000] {
            let input = (0..<size).map { _ in UInt8.random(in: 0...15, using: &rng) }
            let out = OutputBuffer()
            let n = try input.withUnsafeBytes { try codec.compress($0, into: out) }
            #expect(n == out.count)
            var back = [UInt8](repeating: 0, count: size)
            try back.withUnsafeMutableBytes { try codec.decompress(out.bytes, into: $0) }
            #expect(back == input)
        }
    }

    @Test(arguments: [Codec.lz4, Codec.zstd])
    func corruptCompressedInputThrowsInsteadOfCrashing(codec: Codec) throws {
        let input = [UInt8](repeating: 65, count: 10_000) + Array("tail".utf8)
        let out = OutputBuffer()
        try input.withUnsafeBytes { _ = try codec.compress($0, into: out) }
        var corrupt = out.toArray()
        var rng = SeededRandom(seed: 3)
        for _ in 0..<200 {
            var copy = corrupt
            let i = Int.random(in: 0..<copy.count, using: &rng)
            copy[i] ^= UInt8.random(in: 1...255, using: &rng)
            var back = [UInt8](repeating: 0, count: input.count)
            // Either it fails cleanly or it produces some bytes; it must never trap.
            _ = try? back.withUnsafeMutableBytes { dst in try copy.withUnsafeBytes { try codec.decompress($0, into: dst) } }
        }
        corrupt.removeLast(corrupt.count / 2)
        var back = [UInt8](repeating: 0, count: input.count)
        #expect(throws: (any Error).self) {
            try back.withUnsafeMutableBytes { dst in try corrupt.withUnsafeBytes { try codec.decompress($0, into: dst) } }
        }
    }

    @Test func eventRecordsRoundTrip() throws {
        var rng = SeededRandom(seed: 11)
        let events = (0..<500).map { _ in randomEvent(&rng) }
        let out = OutputBuffer()
        for e in events { EventRecord.encode(e, into: out) }
        var decoder = EventRecordDecoder(payload: out.bytes, firstSequence: 1000)
        var decoded: [Event] = []
        while let e = try decoder.next() { decoded.append(e) }
        #expect(decoded.count == events.count)
        for (i, (a, b)) in zip(events, decoded).enumerated() {
            var expected = a
            expected.sequence = 1000 + UInt64(i)
            #expect(expected == b)
        }
    }

    @Test func truncatedRecordsAreErrorsNotCrashes() throws {
        var rng = SeededRandom(seed: 5)
        let out = OutputBuffer()
        EventRecord.encode(randomEvent(&rng), into: out)
        let bytes = out.toArray()
        for cut in 0..<bytes.count {
            bytes.withUnsafeBytes { p in
                var decoder = EventRecordDecoder(payload: UnsafeRawBufferPointer(rebasing: p[0..<cut]), firstSequence: 0)
                if cut == 0 {
                    #expect((try? decoder.next()) == .some(nil))
                } else {
                    #expect(throws: RecordDecodingError.self) { _ = try decoder.next() }
                }
            }
        }
    }

    /// Both payload formats decode to the events given, and format 2 stores each distinct
    /// string once.
    @Test(arguments: [UInt8(1), 2])
    func batchPayloadsRoundTrip(version: UInt8) throws {
        var rng = SeededRandom(seed: 12)
        var events = (0..<400).map { _ in randomEvent(&rng) }
        events[7].properties = [Property("", .string("")), Property("", .json("[]"))]
        for i in stride(from: 0, to: events.count, by: 3) { events[i].clientEventId = "evt-\(i)" }
        for i in events.indices { events[i].sequence = UInt64(i) }
        let batch = try makeBatch(events, codec: .none, version: version)
        #expect(batch.header.version == version)
        try batch.frame.withUnsafeBytes { frame in
            let payload = UnsafeRawBufferPointer(rebasing: frame[BatchHeader.size...])
            var decoder = try EventRecordDecoder(header: batch.header, payload: payload)
            var decoded: [Event] = []
            while let e = try decoder.next() { decoded.append(e) }
            #expect(decoded == events)
            guard version == 2 else { return }
            var table = BatchStringTable()
            try table.load(payload)
            var distinct = Set<String>()
            for e in events {
                // User, anonymous, session and client event ids are inline.
                distinct.formUnion([e.name, e.botId].compactMap { $0 })
                for p in e.properties {
                    distinct.insert(p.key)
                    if case .string(let v) = p.value { distinct.insert(v) }
                    if case .json(let v) = p.value { distinct.insert(v) }
                }
            }
            #expect(table.count == distinct.count)
        }
    }

    /// A format-2 payload cut anywhere, or with any byte of its string table or first record
    /// changed, decodes to an error or to some events, and never traps.
    @Test func damagedStringTablesAreErrorsNotCrashes() throws {
        var rng = SeededRandom(seed: 13)
        let batch = try makeBatch((0..<3).map { _ in randomEvent(&rng) }, codec: .none)
        let payload = Array(batch.frame[BatchHeader.size...])
        for cut in 0..<payload.count {
            let cutPayload = Array(payload[0..<cut])
            #expect(throws: RecordDecodingError.self) {
                try cutPayload.withUnsafeBytes { p in
                    var decoder = try EventRecordDecoder(header: batch.header, payload: p)
                    var n = 0
                    while try decoder.next() != nil { n += 1 }
                    if n < 3 { throw RecordDecodingError(offset: 0, reason: "short") }
                }
            }
        }
        for at in 0..<min(payload.count, 400) {
            for value: UInt8 in [0, 1, 0x7F, 0x80, 0xFF] {
                var damaged = payload
                damaged[at] = value
                _ = try? damaged.withUnsafeBytes { p in
                    var decoder = try EventRecordDecoder(header: batch.header, payload: p)
                    while try decoder.next() != nil {}
                }
            }
        }
        // An index past the table is named.
        var header = batch.header
        header.eventCount = 1
        let builder = BatchBuilder()
        _ = Array("only".utf8).withUnsafeBytes { builder.strings.reference($0) }
        let table = try builder.seal(codec: .none)
        var bad = Array(table.frame[BatchHeader.size...])
        // Body: two times, no flags, event_name string 5 (varint 10), no properties.
        bad += [19, 0, 0, 0] + [UInt8](repeating: 0, count: 16) + [0, 10, 0]
        #expect(throws: RecordDecodingError(offset: 0, reason: "event_name refers to string 5 of a table of 1")) {
            try bad.withUnsafeBytes { p in
                var decoder = try EventRecordDecoder(header: header, payload: p)
                _ = try decoder.next()
            }
        }
    }

    @Test func batchHeaderRoundTripsAndDetectsDamage() throws {
        var rng = SeededRandom(seed: 2)
        var batch = try makeBatch((0..<20).map { _ in randomEvent(&rng) }, codec: .zstd)
        var header = batch.header
        header.firstSequence = 42
        batch.frame.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        let parsed = batch.frame.withUnsafeBytes { BatchHeader.parseFrame($0) }
        guard case .success(let (h, payload)) = parsed else {
            Issue.record("valid frame rejected: \(parsed)")
            return
        }
        #expect(h == header)
        #expect(payload.count == Int(header.payloadLength))
        let plain = try h.decompress(payload)
        #expect(plain.count == Int(header.uncompressedLength))

        // Every single-bit flip anywhere in the frame is detected.
        for byte in stride(from: 0, to: batch.frame.count, by: max(1, batch.frame.count / 300)) {
            for bit in [0, 3, 7] {
                var damaged = batch.frame
                damaged[byte] ^= UInt8(1 << bit)
                if case .success = damaged.withUnsafeBytes({ BatchHeader.parseFrame($0) }) {
                    Issue.record("flip of bit \(bit) in byte \(byte) went unnoticed")
                }
            }
        }
        // Every truncation is detected.
        for cut in [0, 10, BatchHeader.size - 1, BatchHeader.size, batch.frame.count - 1] {
            if case .success = batch.frame.withUnsafeBytes({ BatchHeader.parseFrame(UnsafeRawBufferPointer(rebasing: $0[0..<cut])) }) {
                Issue.record("truncation at \(cut) went unnoticed")
            }
        }
    }

    @Test func segmentHeaderAndNames() {
        let header = SegmentHeader(firstSequence: 123_456, createdAt: 1_700_000_000_000_000)
        let bytes = header.encoded()
        #expect(bytes.count == SegmentHeader.size)
        #expect(bytes.withUnsafeBytes { SegmentHeader.parse($0) } == header)
        var damaged = bytes
        damaged[20] ^= 1
        #expect(damaged.withUnsafeBytes { SegmentHeader.parse($0) } == nil)
        #expect(SegmentName.fileName(firstSequence: 42) == "00000000000000000042.seg")
        #expect(SegmentName.firstSequence(of: "00000000000000000042.seg") == 42)
        #expect(SegmentName.firstSequence(of: "42.seg") == nil)
        #expect(SegmentName.firstSequence(of: "00000000000000000042.seg.tmp") == nil)
    }

    @Test func checkpointRoundTrip() {
        let c = LogCheckpoint(segmentFirstSequence: 10, offset: 4096, nextSequence: 99)
        #expect(LogCheckpoint.parse(c.encoded()) == c)
        var damaged = c.encoded()
        damaged[17] ^= 4
        #expect(LogCheckpoint.parse(damaged) == nil)
    }

    @Test func murmur3MatchesReference() {
        // Reference values from the canonical C++ implementation (seed 0).
        let empty = [UInt8]().withUnsafeBytes { Murmur3.hash128($0) }
        #expect(empty.0 == 0 && empty.1 == 0)
        let hello = Array("hello".utf8).withUnsafeBytes { Murmur3.hash128($0) }
        #expect(hello.0 == 0xcbd8_a7b3_41bd_9b02 && hello.1 == 0x5b1e_906a_48ae_1d19)
        let fox = Array("The quick brown fox jumps over the lazy dog".utf8).withUnsafeBytes { Murmur3.hash128($0) }
        #expect(fox.0 == 0xe34b_bc7b_bc07_1b6c && fox.1 == 0x7a43_3ca9_c49a_9347)
        let tail = Array("0123456789abcdefX".utf8).withUnsafeBytes { Murmur3.hash128($0) }
        #expect(tail.0 == 0xcdeb_d2ac_b570_d6f7 && tail.1 == 0x8f72_1197_8210_4b27)
    }

    @Test func serverEventIdsFormatTheSameEverywhere() {
        var rng = SeededRandom(seed: 12)
        for sequence in [0, 1, 255, UInt64.max] + (0..<100).map({ _ in UInt64.random(in: 0...UInt64.max, using: &rng) }) {
            let out = OutputBuffer()
            JSONWriter(out).eventId(.server(sequence))
            let text = String(decoding: out.bytes, as: UTF8.self)
            #expect(text == "\"" + EventID.serverAssigned(sequence) + "\"")
            #expect(EventID.sequence(fromServerAssigned: EventID.serverAssigned(sequence)) == sequence)
        }
    }
}
