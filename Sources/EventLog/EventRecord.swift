/// The binary form of one event inside a batch payload (before compression).
///
/// ```
/// u32  body length (bytes after this field)
/// i64  timestamp µs        i64 received_at µs
/// u8   flags: bit0 user_id, bit1 anonymous_id, bit2 session_id, bit3 bot_id,
///             bit4 client event_id, bit5 timestamp clamped
/// str  event_name          str × popcount(flags & 0x1F), in flag order
/// var  property count      then per property: str key, u8 tag, value
/// ```
/// `var` is an unsigned LEB128 varint. `str` is, in a version-2 payload, a `var` v: for even v
/// string v / 2 of the batch's string table (``BatchStringTable``), for odd v the string
/// inline, v / 2 bytes of UTF-8 following (writers inline user, anonymous, session and
/// client event ids, and put the other strings in the table). In version 1 it is a `var`
/// length and the UTF-8 bytes. Value tags: 0 null, 1 false, 2 true, 3 int (zigzag varint),
/// 4 double (8 bytes), 5 string (`str`), 6 JSON text (`str`).
public enum EventRecord {
    public static let hasUserId: UInt8 = 1 << 0
    public static let hasAnonymousId: UInt8 = 1 << 1
    public static let hasSessionId: UInt8 = 1 << 2
    public static let hasBotId: UInt8 = 1 << 3
    public static let hasClientEventId: UInt8 = 1 << 4
    public static let timestampClamped: UInt8 = 1 << 5
    static let knownFlags: UInt8 = 0x3F

    public enum Tag: UInt8 {
        case null = 0, falseValue = 1, trueValue = 2, int = 3, double = 4, string = 5, json = 6
    }

    /// Appends `event` to the batch `builder` builds, in its payload format. The ingest
    /// parser writes the same layout straight from JSON tokens; this path serves tests,
    /// tools and re-encoding.
    public static func encode(_ event: Event, into builder: BatchBuilder) {
        encode(event, into: builder.records, string: { builder.appendString($0) }, id: { builder.appendInlineString($0) })
    }

    /// Appends `event` to `out` as a version-1 record, strings inline.
    public static func encode(_ event: Event, into out: OutputBuffer) {
        encode(event, into: out, string: { appendString($0, into: out) }, id: { appendString($0, into: out) })
    }

    /// `id` writes user, anonymous, session and client event ids, `string` the other strings.
    private static func encode(_ event: Event, into out: OutputBuffer, string: (String) -> Void, id: (String) -> Void) {
        let start = beginRecord(into: out, timestamp: event.timestamp, receivedAt: event.receivedAt)
        var flags: UInt8 = 0
        if event.userId != nil { flags |= hasUserId }
        if event.anonymousId != nil { flags |= hasAnonymousId }
        if event.sessionId != nil { flags |= hasSessionId }
        if event.botId != nil { flags |= hasBotId }
        if event.clientEventId != nil { flags |= hasClientEventId }
        if event.timestampClamped { flags |= timestampClamped }
        out.append(byte: flags)
        string(event.name)
        for s in [event.userId, event.anonymousId, event.sessionId] { if let s { id(s) } }
        if let s = event.botId { string(s) }
        if let s = event.clientEventId { id(s) }
        out.append(varint: UInt64(event.properties.count))
        for p in event.properties {
            string(p.key)
            switch p.value {
            case .null: out.append(byte: Tag.null.rawValue)
            case .bool(let b): out.append(byte: b ? Tag.trueValue.rawValue : Tag.falseValue.rawValue)
            case .int(let i):
                out.append(byte: Tag.int.rawValue)
                out.append(varint: zigzag(i))
            case .double(let d):
                out.append(byte: Tag.double.rawValue)
                out.append(double: d)
            case .string(let s):
                out.append(byte: Tag.string.rawValue)
                string(s)
            case .json(let s):
                out.append(byte: Tag.json.rawValue)
                string(s)
            }
        }
        endRecord(into: out, start: start)
    }

    /// Writes the length placeholder and the two times; returns the record's start offset.
    @inline(__always)
    public static func beginRecord(into out: OutputBuffer, timestamp: Int64, receivedAt: Int64) -> Int {
        let start = out.count
        out.append(littleEndian: UInt32(0))
        out.append(littleEndian: timestamp)
        out.append(littleEndian: receivedAt)
        return start
    }

    /// Back-patches the body length of the record that began at `start`.
    @inline(__always)
    public static func endRecord(into out: OutputBuffer, start: Int) {
        let body = UInt32(out.count - start - 4)
        (out.base + start).storeBytes(of: body.littleEndian, as: UInt32.self)
    }

    @inline(__always)
    static func appendString(_ s: String, into out: OutputBuffer) {
        var s = s
        s.withUTF8 { out.append(lengthPrefixed: UnsafeRawBufferPointer($0)) }
    }
}

public struct RecordDecodingError: Error, CustomStringConvertible, Equatable {
    public var offset: Int
    public var reason: String
    public var description: String { "malformed event record at payload offset \(offset): \(reason)" }

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }
}

/// Decodes the records of one uncompressed batch payload.
public struct EventRecordDecoder {
    var reader: ByteReader
    public let firstSequence: UInt64
    public private(set) var index: UInt64 = 0

    /// The payload's string table, for version 2.
    var strings: BatchStringTable?
    let payload: UnsafeRawBufferPointer

    /// A decoder of version-1 records (strings inline).
    public init(payload: UnsafeRawBufferPointer, firstSequence: UInt64) {
        self.reader = ByteReader(payload)
        self.payload = payload
        self.firstSequence = firstSequence
    }

    /// A decoder of the payload of the batch `header` describes, in its format.
    public init(header: BatchHeader, payload: UnsafeRawBufferPointer) throws(RecordDecodingError) {
        self.init(payload: payload, firstSequence: header.firstSequence)
        if header.hasStringTable {
            var table = BatchStringTable()
            try table.load(payload)
            strings = table
            reader = ByteReader(UnsafeRawBufferPointer(rebasing: payload[table.recordsOffset...]))
        }
    }

    public var isAtEnd: Bool { reader.isAtEnd }

    /// Skips the next record without decoding it.
    public mutating func skip() throws {
        let at = reader.offset
        guard let length = reader.read(UInt32.self), reader.readBytes(Int(length)) != nil else {
            throw RecordDecodingError(offset: at, reason: "record length runs past the payload")
        }
        index += 1
    }

    /// The next event, fully materialized.
    public mutating func next() throws -> Event? {
        guard !reader.isAtEnd else { return nil }
        let at = reader.offset
        func fail(_ reason: String) -> RecordDecodingError { RecordDecodingError(offset: at, reason: reason) }
        guard let length = reader.read(UInt32.self), let body = reader.readBytes(Int(length)) else {
            throw fail("record length runs past the payload")
        }
        var r = ByteReader(body)
        guard let timestamp = r.read(Int64.self), let receivedAt = r.read(Int64.self),
            let flags = r.readByte()
        else { throw fail("truncated record header") }
        guard flags & ~EventRecord.knownFlags == 0 else { throw fail("unknown flag bits \(flags)") }
        func string(_ what: String) throws -> String {
            if let strings {
                guard let v = r.readVarint() else { throw fail("truncated \(what)") }
                if v & 1 == 1 {
                    guard let raw = r.readBytes(Int(clamping: v >> 1)) else { throw fail("truncated \(what)") }
                    return String(decoding: raw, as: UTF8.self)
                }
                guard let raw = strings.string(v >> 1, in: payload.baseAddress!) else {
                    throw fail("\(what) refers to string \(v >> 1) of a table of \(strings.count)")
                }
                return String(decoding: raw, as: UTF8.self)
            }
            guard let raw = r.readLengthPrefixed() else { throw fail("truncated \(what)") }
            return String(decoding: raw, as: UTF8.self)
        }
        var event = Event(
            sequence: firstSequence &+ index, name: try string("event_name"),
            timestamp: timestamp, receivedAt: receivedAt)
        if flags & EventRecord.hasUserId != 0 { event.userId = try string("user_id") }
        if flags & EventRecord.hasAnonymousId != 0 { event.anonymousId = try string("anonymous_id") }
        if flags & EventRecord.hasSessionId != 0 { event.sessionId = try string("session_id") }
        if flags & EventRecord.hasBotId != 0 { event.botId = try string("bot_id") }
        if flags & EventRecord.hasClientEventId != 0 { event.clientEventId = try string("event_id") }
        event.timestampClamped = flags & EventRecord.timestampClamped != 0
        guard let count = r.readVarint(), count <= 65_536 else { throw fail("bad property count") }
        event.properties.reserveCapacity(Int(count))
        for _ in 0..<count {
            let key = try string("property key")
            guard let tagByte = r.readByte(), let tag = EventRecord.Tag(rawValue: tagByte) else {
                throw fail("bad value tag for property \(key)")
            }
            let value: PropertyValue
            switch tag {
            case .null: value = .null
            case .falseValue: value = .bool(false)
            case .trueValue: value = .bool(true)
            case .int:
                guard let v = r.readVarint() else { throw fail("truncated int property \(key)") }
                value = .int(unzigzag(v))
            case .double:
                guard let d = r.readDouble() else { throw fail("truncated double property \(key)") }
                value = .double(d)
            case .string: value = .string(try string("string property \(key)"))
            case .json: value = .json(try string("json property \(key)"))
            }
            event.properties.append(Property(key, value))
        }
        guard r.isAtEnd else { throw fail("\(r.remaining) trailing bytes in record") }
        index += 1
        return event
    }
}
