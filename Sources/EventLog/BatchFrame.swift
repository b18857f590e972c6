/// The fixed header in front of every batch in a segment file. All integers little-endian.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `TBAT` |
/// | 4 | 1 | payload format version: 1 strings inline, 2 a string table first (below) |
/// | 5 | 1 | codec (0 none, 1 LZ4, 2 Zstd) |
/// | 6 | 2 | flags: bit 0 = some event carries a client `event_id`; other bits 0 |
/// | 8 | 4 | payload length on disk |
/// | 12 | 4 | payload length uncompressed |
/// | 16 | 4 | event count |
/// | 20 | 4 | CRC32C of the payload bytes on disk |
/// | 24 | 8 | sequence number of the first event |
/// | 32 | 8 | minimum event timestamp, µs |
/// | 40 | 8 | maximum event timestamp, µs |
/// | 48 | 4 | CRC32C of bytes 0..<48 |
/// | 52 | 4 | reserved, must be 0 (a non-zero value is damage) |
///
/// A version-1 payload is the event records back to back (``EventRecord``), each string in
/// them written inline. A version-2 payload starts with the batch's string table (``BatchStringWriter``):
///
/// | size | field |
/// |---|---|
/// | 4 | byte length T of the rest of the table |
/// | var | string count N |
/// | N × (var + bytes) | the distinct strings of the batch, each a varint length and UTF-8 bytes |
///
/// and the records follow, each string in them either an index into the table or inline
/// (``EventRecord``). Writers write version 2; readers read both, so logs written before it
/// stay readable.
public struct BatchHeader: Equatable, Sendable {
    public static let size = 56
    public static let magic: UInt32 = 0x5441_4254  // "TBAT" read little-endian
    /// The payload format new batches are written in.
    public static let currentVersion: UInt8 = 2
    public static let stringTableVersion: UInt8 = 2

    public var version: UInt8
    /// A batch can never be larger than this; anything claiming more is corrupt.
    public static let maxPayloadBytes = 256 << 20

    public var codec: Codec
    /// Bit 0: some event carries a client `event_id`, so idempotency replay must read it.
    public var flags: UInt16 = 0
    public var payloadLength: UInt32
    public var uncompressedLength: UInt32
    public var eventCount: UInt32
    public var payloadChecksum: UInt32
    public var firstSequence: UInt64
    public var minTimestamp: Int64
    public var maxTimestamp: Int64

    public static let hasClientEventIds: UInt16 = 1

    public var frameLength: Int { BatchHeader.size + Int(payloadLength) }
    /// Whether the payload starts with a string table that its records index.
    public var hasStringTable: Bool { version >= BatchHeader.stringTableVersion }
    /// The sequence number after this batch's last event.
    public var endSequence: UInt64 { firstSequence + UInt64(eventCount) }

    public init(
        version: UInt8 = BatchHeader.currentVersion, codec: Codec, payloadLength: UInt32, uncompressedLength: UInt32, eventCount: UInt32,
        payloadChecksum: UInt32, firstSequence: UInt64, minTimestamp: Int64, maxTimestamp: Int64
    ) {
        self.version = version
        self.codec = codec
        self.payloadLength = payloadLength
        self.uncompressedLength = uncompressedLength
        self.eventCount = eventCount
        self.payloadChecksum = payloadChecksum
        self.firstSequence = firstSequence
        self.minTimestamp = minTimestamp
        self.maxTimestamp = maxTimestamp
    }

    /// Writes the 56 header bytes at `pointer`, including the header checksum.
    public func write(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: BatchHeader.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        pointer.storeBytes(of: version, toByteOffset: 4, as: UInt8.self)
        pointer.storeBytes(of: codec.rawValue, toByteOffset: 5, as: UInt8.self)
        pointer.storeBytes(of: flags.littleEndian, toByteOffset: 6, as: UInt16.self)
        pointer.storeBytes(of: payloadLength.littleEndian, toByteOffset: 8, as: UInt32.self)
        pointer.storeBytes(of: uncompressedLength.littleEndian, toByteOffset: 12, as: UInt32.self)
        pointer.storeBytes(of: eventCount.littleEndian, toByteOffset: 16, as: UInt32.self)
        pointer.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 20, as: UInt32.self)
        pointer.storeBytes(of: firstSequence.littleEndian, toByteOffset: 24, as: UInt64.self)
        pointer.storeBytes(of: minTimestamp.littleEndian, toByteOffset: 32, as: Int64.self)
        pointer.storeBytes(of: maxTimestamp.littleEndian, toByteOffset: 40, as: Int64.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: pointer, count: 48))
        pointer.storeBytes(of: crc.littleEndian, toByteOffset: 48, as: UInt32.self)
        pointer.storeBytes(of: UInt32(0), toByteOffset: 52, as: UInt32.self)
    }

    /// Why bytes at some offset are not a valid batch.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case truncatedHeader(available: Int)
        case badMagic(UInt32)
        case unsupportedVersion(UInt8)
        case headerChecksumMismatch(stored: UInt32, computed: UInt32)
        case unknownCodec(UInt8)
        case implausibleLength(UInt32)
        case truncatedPayload(expected: Int, available: Int)
        case payloadChecksumMismatch(stored: UInt32, computed: UInt32)
        case sequenceGap(expected: UInt64, found: UInt64)

        public var description: String {
            switch self {
            case .truncatedHeader(let n): "torn batch header: \(n) of \(BatchHeader.size) bytes present"
            case .badMagic(let m): "bad batch magic 0x\(String(m, radix: 16))"
            case .unsupportedVersion(let v): "unsupported batch format version \(v)"
            case .headerChecksumMismatch(let s, let c): "header CRC32C mismatch (stored \(hex(s)), computed \(hex(c)))"
            case .unknownCodec(let c): "unknown codec id \(c)"
            case .implausibleLength(let n): "implausible payload length \(n)"
            case .truncatedPayload(let e, let a): "torn batch payload: \(a) of \(e) bytes present"
            case .payloadChecksumMismatch(let s, let c): "payload CRC32C mismatch (stored \(hex(s)), computed \(hex(c)))"
            case .sequenceGap(let e, let f): "sequence gap: expected first sequence \(e), found \(f)"
            }
        }
    }

    /// Parses and checks the header at the start of `bytes`. The payload is not touched.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<BatchHeader, Problem> {
        guard bytes.count >= size else { return .failure(.truncatedHeader(available: bytes.count)) }
        let magic = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magic == BatchHeader.magic else { return .failure(.badMagic(magic)) }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<48]))
        guard stored == computed else { return .failure(.headerChecksumMismatch(stored: stored, computed: computed)) }
        guard bytes.loadUnaligned(fromByteOffset: 52, as: UInt32.self) == 0 else {
            return .failure(.headerChecksumMismatch(stored: stored, computed: computed))
        }
        let version = bytes[4]
        guard version >= 1 && version <= BatchHeader.currentVersion else { return .failure(.unsupportedVersion(version)) }
        guard let codec = Codec(rawValue: bytes[5]) else { return .failure(.unknownCodec(bytes[5])) }
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        let flags = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        guard flags & ~BatchHeader.hasClientEventIds == 0 else { return .failure(.headerChecksumMismatch(stored: stored, computed: computed)) }
        var header = BatchHeader(
            version: version, codec: codec, payloadLength: u32(8), uncompressedLength: u32(12), eventCount: u32(16),
            payloadChecksum: u32(20),
            firstSequence: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            minTimestamp: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 32, as: Int64.self)),
            maxTimestamp: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 40, as: Int64.self)))
        header.flags = flags
        guard Int(header.payloadLength) <= maxPayloadBytes, Int(header.uncompressedLength) <= maxPayloadBytes else {
            return .failure(.implausibleLength(max(header.payloadLength, header.uncompressedLength)))
        }
        return .success(header)
    }

    /// Parses the header at the start of `bytes` and checks the payload that follows (its
    /// length always, its checksum when `checksPayload`: a reader that skips most batches by
    /// header checks only the payloads it reads, with `checkPayload`).
    public static func parseFrame(
        _ bytes: UnsafeRawBufferPointer, checksPayload: Bool = true
    ) -> Result<(BatchHeader, UnsafeRawBufferPointer), Problem> {
        switch parse(bytes) {
        case .failure(let p): return .failure(p)
        case .success(let header):
            let available = bytes.count - size
            guard available >= Int(header.payloadLength) else {
                return .failure(.truncatedPayload(expected: Int(header.payloadLength), available: available))
            }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[size..<size + Int(header.payloadLength)])
            if checksPayload, case .failure(let problem) = header.checkPayload(payload) { return .failure(problem) }
            return .success((header, payload))
        }
    }

    /// Whether `payload` is the one this header's checksum was taken of.
    public func checkPayload(_ payload: UnsafeRawBufferPointer) -> Result<Void, Problem> {
        let crc = CRC32C.checksum(payload)
        guard crc == payloadChecksum else { return .failure(.payloadChecksumMismatch(stored: payloadChecksum, computed: crc)) }
        return .success(())
    }

    /// Decompresses a checked payload into a fresh buffer of `uncompressedLength` bytes.
    public func decompress(_ payload: UnsafeRawBufferPointer) throws -> [UInt8] {
        var out: [UInt8] = []
        try decompress(payload, into: &out)
        return out
    }

    /// Decompresses into `out`, reusing its storage when it is not shared.
    public func decompress(_ payload: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        let n = Int(uncompressedLength)
        if out.count != n {
            if out.count > n {
                out.removeLast(out.count - n)
            } else {
                out.append(contentsOf: repeatElement(0, count: n - out.count))
            }
        }
        try out.withUnsafeMutableBytes { try codec.decompress(payload, into: $0) }
    }
}

func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

/// A batch ready for the log: header (without its sequence number) and compressed payload,
/// built by the request that owns the events, so compression runs in parallel on request
/// threads and the writer thread only stamps sequence numbers and writes.
public struct PreparedBatch: Sendable {
    /// Header bytes (sequence and header CRC still unset) followed by the payload.
    public var frame: [UInt8]
    public var header: BatchHeader
    /// Client ids reserved in the idempotency index, committed when the batch is durable.
    public var clientKeys: [BatchClientKey] = []

    public var eventCount: Int { Int(header.eventCount) }
}

/// Accumulates encoded event records and seals them into a `PreparedBatch`.
///
/// Records are written in the builder's payload format: by default version 2, whose strings
/// go through `strings` (`appendString`); version 1 (strings inline) stays writable so that
/// tests can make the logs older servers wrote.
public final class BatchBuilder {
    public let records = OutputBuffer(capacity: 256 * 1024)
    /// The batch's distinct strings, which version-2 records refer to by index. A record
    /// taken back (`removeLast`) leaves its strings here, unreferenced and harmless.
    public let strings = BatchStringWriter()
    public let version: UInt8
    /// Per field, the string index it had in the previous event (`Field`).
    let recentIndexes = UnsafeMutablePointer<UInt32>.allocate(capacity: Field.count)
    @exclusivity(unchecked) public private(set) var eventCount = 0
    @exclusivity(unchecked) public private(set) var minTimestamp = Int64.max
    @exclusivity(unchecked) public private(set) var maxTimestamp = Int64.min
    let compressed = OutputBuffer(capacity: 64 * 1024)
    /// The table and records together, for version 2.
    let payload = OutputBuffer(capacity: 64 * 1024)

    public init(version: UInt8 = BatchHeader.currentVersion) {
        precondition(version >= 1 && version <= BatchHeader.currentVersion, "no batch format version \(version)")
        self.version = version
        recentIndexes.initialize(repeating: .max, count: Field.count)
    }

    deinit { recentIndexes.deallocate() }

    public var isEmpty: Bool { eventCount == 0 }
    public var uncompressedBytes: Int { records.count + strings.table.count }

    /// Writes a string field of the record being built: its index in the string table, or
    /// in version 1 its length and bytes.
    @inline(__always)
    public func appendString(_ bytes: UnsafeRawBufferPointer) {
        if version >= BatchHeader.stringTableVersion {
            records.append(varint: UInt64(strings.reference(bytes)) << 1)
        } else {
            records.append(lengthPrefixed: bytes)
        }
    }

    /// Writes a string field inline, outside the table: for user, anonymous, session and
    /// client event ids. They are most of a batch's distinct strings, each seen a few times;
    /// looking them up in the table cost the import 13% more CPU (one core, 2 M events of
    /// `tools/sample-events`), where names, keys, values and bot ids, a small vocabulary
    /// that stays in cache, cost nothing measurable once the smaller payload's cheaper
    /// compression is counted.
    @inline(__always)
    public func appendInlineString(_ bytes: UnsafeRawBufferPointer) {
        if version >= BatchHeader.stringTableVersion {
            records.append(varint: UInt64(bytes.count) << 1 | 1)
            records.append(bytes)
        } else {
            records.append(lengthPrefixed: bytes)
        }
    }

    public func appendInlineString(_ string: String) {
        var s = string
        s.withUTF8 { appendInlineString(UnsafeRawBufferPointer($0)) }
    }

    /// The fields `appendString(_:field:)` remembers the last string of.
    public enum Field {
        public static let name = 0, botId = 1
        /// Property keys and values by position in the event, the first `positions` of them.
        public static let positions = 16
        public static func key(_ position: Int) -> Int { position < positions ? 2 + position : Int.max }
        public static func value(_ position: Int) -> Int { position < positions ? 2 + positions + position : Int.max }
        static let count = 2 + 2 * positions
    }

    /// `appendString` for a field that tends to repeat from one event to the next, `field`
    /// one of `Field`'s (a property past the remembered positions takes the plain path).
    @inline(__always)
    public func appendString(_ bytes: UnsafeRawBufferPointer, field: Int) {
        guard version >= BatchHeader.stringTableVersion, field < Field.count else { return appendString(bytes) }
        records.append(varint: UInt64(strings.reference(bytes, recent: &recentIndexes[field])) << 1)
    }

    public func appendString(_ string: String) {
        var s = string
        s.withUTF8 { appendString(UnsafeRawBufferPointer($0)) }
    }

    /// Records that the event just appended to `records` is complete.
    @inline(__always)
    public func commitEvent(timestamp: Int64) {
        eventCount += 1
        if timestamp < minTimestamp { minTimestamp = timestamp }
        if timestamp > maxTimestamp { maxTimestamp = timestamp }
    }

    /// Takes back the last record, which started at `recordStart`. The time bounds stay as
    /// they were: they only need to contain every event.
    public func removeLast(recordStart: Int) {
        records.count = recordStart
        eventCount -= 1
    }

    public func append(_ event: Event) {
        EventRecord.encode(event, into: self)
        commitEvent(timestamp: event.timestamp)
    }

    /// Compresses the payload and returns the batch; the builder is reset for reuse.
    public func seal(codec: Codec, level: Int32 = 1) throws -> PreparedBatch {
        var source = records.bytes
        if version >= BatchHeader.stringTableVersion {
            payload.removeAll()
            strings.write(into: payload)
            payload.append(records.bytes)
            source = payload.bytes
        }
        compressed.removeAll()
        compressed.reserve(BatchHeader.size)
        compressed.count = BatchHeader.size
        let payloadLength = try codec.compress(source, into: compressed, level: level)
        let compressedPayload = UnsafeRawBufferPointer(start: compressed.base + BatchHeader.size, count: payloadLength)
        let header = BatchHeader(
            version: version, codec: codec, payloadLength: UInt32(payloadLength), uncompressedLength: UInt32(source.count),
            eventCount: UInt32(eventCount), payloadChecksum: CRC32C.checksum(compressedPayload), firstSequence: 0,
            minTimestamp: eventCount == 0 ? 0 : minTimestamp, maxTimestamp: eventCount == 0 ? 0 : maxTimestamp)
        let batch = PreparedBatch(frame: compressed.toArray(), header: header)
        reset()
        return batch
    }

    public func reset() {
        records.removeAll()
        strings.reset()
        recentIndexes.update(repeating: .max, count: Field.count)
        eventCount = 0
        minTimestamp = .max
        maxTimestamp = .min
    }
}
