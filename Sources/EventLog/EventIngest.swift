import CSimdJSON

/// Size and shape limits on incoming events (conventions.md, "Events"). All configurable.
public struct IngestLimits: Sendable {
    /// Largest stored event record (its strings plus a few bytes per value), and the largest
    /// request body of the single-event endpoint.
    public var maxEventBytes = 32 * 1024
    public var maxProperties = 255
    public var maxKeyBytes = 255
    public var maxEventNameCharacters = 200
    /// Largest `user_id`, `anonymous_id`, `session_id`, `bot_id` or `event_id`, in bytes.
    public var maxIdentifierBytes = 255
    public var maxBatchEvents = 5000
    public var maxBatchBytes = 5 * 1024 * 1024
    /// Timestamps further ahead of the receive time than this are clamped to it.
    public var maxFutureMicros: Int64 = 24 * 3600 * 1_000_000

    public init() {}
}

/// Why one event was rejected. `code` is stable and documented; `message` names the field.
public struct IngestError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static func missing(_ field: String) -> IngestError { IngestError("missing_field", "\(field) is required") }
    static func invalid(_ field: String, _ why: String) -> IngestError { IngestError("invalid_field", "\(field) \(why)") }
}

/// What the encoder learned about an event it accepted.
public struct EncodedEvent {
    /// Offset of the record in the builder's buffer, so the caller can take it back.
    public var recordStart: Int
    public var timestamp: Int64
    public var clamped: Bool
    /// The client's `event_id`, pointing into the parsed document.
    public var clientEventId: UnsafeRawBufferPointer?
}

/// Validates one event object from JSON tokens and appends its record to a batch, in one
/// pass and without intermediate objects. Owned by one request at a time (see
/// `IngestWorkspace`).
public final class EventEncoder {
    public let limits: IngestLimits
    /// The dotted key being built while flattening; fixed size, allocated once.
    private let keyPath = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    private let scratch = OutputBuffer(capacity: 1024)

    public init(limits: IngestLimits) { self.limits = limits }

    deinit { keyPath.deallocate() }

    /// Encodes the event object at token `index` onto `builder`. On error nothing is appended.
    /// `sentAt` is the batch-level `sent_at`, if any.
    public func encode(
        _ tokens: JSONTokens, at index: Int, receivedAt: Int64, sentAt batchSentAt: Int64?, into builder: BatchBuilder
    ) -> Result<EncodedEvent, IngestError> {
        guard tokens.kind(index) == JSONKind.object else {
            return .failure(IngestError("invalid_event", "event must be a JSON object"))
        }
        var name = -1, user = -1, anonymous = -1, session = -1, bot = -1, timestamp = -1, sentAt = -1, eventId = -1
        var properties = -1
        var i = index + 1
        let end = tokens.end(index)
        while i < end {
            let key = tokens.string(i)
            let value = i + 1
            switch key.count {
            case 6 where equals(key, "bot_id"): bot = value
            case 7 where equals(key, "user_id"): user = value
            case 7 where equals(key, "sent_at"): sentAt = value
            case 8 where equals(key, "event_id"): eventId = value
            case 9 where equals(key, "timestamp"): timestamp = value
            case 10 where equals(key, "event_name"): name = value
            case 10 where equals(key, "session_id"): session = value
            case 10 where equals(key, "properties"): properties = value
            case 12 where equals(key, "anonymous_id"): anonymous = value
            default: break  // unknown top-level fields are ignored, as SDK envelopes carry extras
            }
            i = tokens.next(value)
        }

        // event_name
        guard name >= 0, tokens.kind(name) != JSONKind.null else { return .failure(.missing("event_name")) }
        guard tokens.kind(name) == JSONKind.string else { return .failure(.invalid("event_name", "must be a string")) }
        let nameBytes = tokens.string(name)
        let nameCharacters = nameBytes.reduce(0) { $0 + ($1 & 0xC0 != 0x80 ? 1 : 0) }
        guard nameCharacters >= 1 else { return .failure(.invalid("event_name", "must not be empty")) }
        guard nameCharacters <= limits.maxEventNameCharacters else {
            return .failure(.invalid("event_name", "is \(nameCharacters) characters long; the limit is \(limits.maxEventNameCharacters)"))
        }

        // times
        var eventTime: Int64? = nil
        if timestamp >= 0 {
            switch time(tokens, timestamp, "timestamp") {
            case .failure(let e): return .failure(e)
            case .success(let t): eventTime = t
            }
        }
        var clientSentAt = batchSentAt
        if sentAt >= 0 {
            switch time(tokens, sentAt, "sent_at") {
            case .failure(let e): return .failure(e)
            case .success(let t): if let t { clientSentAt = t }
            }
        }
        var ts: Int64
        if let eventTime {
            if let clientSentAt { ts = receivedAt &- (clientSentAt &- eventTime) } else { ts = eventTime }
        } else {
            ts = receivedAt
        }
        var clamped = false
        if ts > receivedAt &+ limits.maxFutureMicros {
            ts = receivedAt
            clamped = true
        }
        guard ts >= 0 else {
            return .failure(IngestError("invalid_timestamp", "timestamp is before 1970-01-01 after clock correction"))
        }

        // identifiers
        var flags: UInt8 = clamped ? EventRecord.timestampClamped : 0
        if let e = checkIdentifier(tokens, user, EventRecord.hasUserId, "user_id", &flags) { return .failure(e) }
        if let e = checkIdentifier(tokens, anonymous, EventRecord.hasAnonymousId, "anonymous_id", &flags) { return .failure(e) }
        if let e = checkIdentifier(tokens, session, EventRecord.hasSessionId, "session_id", &flags) { return .failure(e) }
        if let e = checkIdentifier(tokens, bot, EventRecord.hasBotId, "bot_id", &flags) { return .failure(e) }
        if let e = checkIdentifier(tokens, eventId, EventRecord.hasClientEventId, "event_id", &flags) { return .failure(e) }
        if properties >= 0 && tokens.kind(properties) != JSONKind.object && tokens.kind(properties) != JSONKind.null {
            return .failure(.invalid("properties", "must be a JSON object"))
        }

        // record
        let out = builder.records
        let start = EventRecord.beginRecord(into: out, timestamp: ts, receivedAt: receivedAt)
        // The size limit counts strings as if inline, whether or not the table held them.
        let stringBytesBefore = builder.strings.referencedBytes
        out.append(byte: flags)
        builder.appendString(nameBytes, field: BatchBuilder.Field.name)
        writeIdentifier(tokens, user, nil, into: builder)
        writeIdentifier(tokens, anonymous, nil, into: builder)
        writeIdentifier(tokens, session, nil, into: builder)
        writeIdentifier(tokens, bot, BatchBuilder.Field.botId, into: builder)
        writeIdentifier(tokens, eventId, nil, into: builder)
        if properties >= 0 && tokens.kind(properties) == JSONKind.object {
            let count = leafCount(tokens, properties)
            guard count <= limits.maxProperties else {
                out.count = start
                return .failure(IngestError("too_many_properties", "properties has \(count) values after flattening; the limit is \(limits.maxProperties)"))
            }
            out.append(varint: UInt64(count))
            var position = 0
            if let error = writeProperties(tokens, object: properties, prefixLength: 0, position: &position, into: builder) {
                out.count = start
                return .failure(error)
            }
        } else {
            out.append(varint: 0)
        }
        EventRecord.endRecord(into: out, start: start)
        let size = out.count - start + (builder.strings.referencedBytes - stringBytesBefore)
        guard size <= limits.maxEventBytes else {
            out.count = start
            return .failure(IngestError("event_too_large", "event is \(size) bytes; the limit is \(limits.maxEventBytes)"))
        }
        builder.commitEvent(timestamp: ts)
        let clientId = eventId >= 0 && tokens.kind(eventId) == JSONKind.string ? tokens.string(eventId) : nil
        return .success(EncodedEvent(recordStart: start, timestamp: ts, clamped: clamped, clientEventId: clientId))
    }

    @inline(__always)
    private func checkIdentifier(
        _ tokens: JSONTokens, _ index: Int, _ bit: UInt8, _ field: StaticString, _ flags: inout UInt8
    ) -> IngestError? {
        guard index >= 0 else { return nil }
        switch tokens.kind(index) {
        case JSONKind.null: return nil
        case JSONKind.string:
            let s = tokens.string(index)
            guard s.count > 0 else { return .invalid("\(field)", "must not be empty") }
            guard s.count <= limits.maxIdentifierBytes else {
                return .invalid("\(field)", "is \(s.count) bytes long; the limit is \(limits.maxIdentifierBytes)")
            }
        case JSONKind.int64 where bit != EventRecord.hasClientEventId, JSONKind.uint64 where bit != EventRecord.hasClientEventId:
            break
        default:
            return .invalid("\(field)", bit == EventRecord.hasClientEventId ? "must be a string" : "must be a string or an integer")
        }
        flags |= bit
        return nil
    }

    @inline(__always)
    /// Writes an id: a bot id through the string table, where `field` remembers its last
    /// value, and user, anonymous, session and event ids (`field` nil) inline.
    private func writeIdentifier(_ tokens: JSONTokens, _ index: Int, _ field: Int?, into builder: BatchBuilder) {
        guard index >= 0 else { return }
        switch tokens.kind(index) {
        case JSONKind.string:
            if let field { builder.appendString(tokens.string(index), field: field) } else { builder.appendInlineString(tokens.string(index)) }
        case JSONKind.int64:
            if field != nil { builder.appendString(String(tokens.int64(index))) } else { builder.appendInlineString(String(tokens.int64(index))) }
        case JSONKind.uint64:
            if field != nil { builder.appendString(String(tokens.uint64(index))) } else { builder.appendInlineString(String(tokens.uint64(index))) }
        default: break
        }
    }

    private func time(_ tokens: JSONTokens, _ index: Int, _ field: String) -> Result<Int64?, IngestError> {
        switch tokens.kind(index) {
        case JSONKind.null: return .success(nil)
        case JSONKind.string:
            guard let t = Timestamp.parse(tokens.string(index)) else {
                let text = String(decoding: tokens.string(index).prefix(64), as: UTF8.self)
                return .failure(IngestError("invalid_timestamp", "\(field) \"\(text)\" is not an RFC 3339 time or epoch milliseconds"))
            }
            return .success(t)
        case JSONKind.int64:
            let ms = tokens.int64(index)
            guard ms >= 0, ms < 253_402_300_800_000 else {
                return .failure(IngestError("invalid_timestamp", "\(field) \(ms) is out of range for epoch milliseconds"))
            }
            return .success(ms * 1000)
        case JSONKind.double:
            let ms = tokens.double(index)
            guard ms >= 0, ms < 253_402_300_800_000 else {
                return .failure(IngestError("invalid_timestamp", "\(field) \(ms) is out of range for epoch milliseconds"))
            }
            return .success(Int64((ms * 1000).rounded()))
        default:
            return .failure(IngestError("invalid_timestamp", "\(field) must be an RFC 3339 string or epoch milliseconds"))
        }
    }

    /// Number of stored values an object flattens to: scalars and arrays count one each.
    private func leafCount(_ tokens: JSONTokens, _ object: Int) -> Int {
        var count = 0
        var i = object + 1
        let end = tokens.end(object)
        while i < end {
            let value = i + 1
            if tokens.kind(value) == JSONKind.object {
                count += leafCount(tokens, value)
            } else {
                count += 1
            }
            i = tokens.next(value)
        }
        return count
    }

    /// Writes the leaves of `object`; `position` counts them across nested objects, for the
    /// builder's memory of each position's last key and value.
    private func writeProperties(
        _ tokens: JSONTokens, object: Int, prefixLength: Int, position: inout Int, into builder: BatchBuilder
    ) -> IngestError? {
        let out = builder.records
        var i = object + 1
        let end = tokens.end(object)
        while i < end {
            let key = tokens.string(i)
            let value = i + 1
            i = tokens.next(value)
            var length = prefixLength
            if prefixLength > 0 {
                keyPath[length] = UInt8(ascii: ".")
                length += 1
            }
            guard key.count > 0 else {
                return IngestError("invalid_property", "property keys must not be empty")
            }
            guard length + key.count <= limits.maxKeyBytes, length + key.count <= keyPath.count else {
                return IngestError(
                    "property_key_too_long",
                    "property key \"\(String(decoding: keyPath[0..<length].prefix(64), as: UTF8.self))\(String(decoding: key.prefix(64), as: UTF8.self))...\" is longer than \(limits.maxKeyBytes) bytes")
            }
            keyPath.baseAddress!.advanced(by: length).copyMemory(from: key.baseAddress!, byteCount: key.count)
            length += key.count
            let kind = tokens.kind(value)
            if kind == JSONKind.object {
                if let error = writeProperties(tokens, object: value, prefixLength: length, position: &position, into: builder) { return error }
                continue
            }
            builder.appendString(UnsafeRawBufferPointer(start: keyPath.baseAddress, count: length), field: BatchBuilder.Field.key(position))
            switch kind {
            case JSONKind.string:
                out.append(byte: EventRecord.Tag.string.rawValue)
                builder.appendString(tokens.string(value), field: BatchBuilder.Field.value(position))
            case JSONKind.int64:
                out.append(byte: EventRecord.Tag.int.rawValue)
                out.append(varint: zigzag(tokens.int64(value)))
            case JSONKind.uint64:
                out.append(byte: EventRecord.Tag.double.rawValue)
                out.append(double: Double(tokens.uint64(value)))
            case JSONKind.double:
                out.append(byte: EventRecord.Tag.double.rawValue)
                out.append(double: tokens.double(value))
            case JSONKind.true: out.append(byte: EventRecord.Tag.trueValue.rawValue)
            case JSONKind.false: out.append(byte: EventRecord.Tag.falseValue.rawValue)
            case JSONKind.array:
                scratch.removeAll()
                JSONWriter(scratch).tokens(tokens, at: value)
                out.append(byte: EventRecord.Tag.json.rawValue)
                builder.appendString(scratch.bytes)
            default: out.append(byte: EventRecord.Tag.null.rawValue)
            }
            position += 1
        }
        return nil
    }
}

@inline(__always)
func equals(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
    literal.withUTF8Buffer { lit in
        lit.count == bytes.count && memcmpBytes(bytes.baseAddress!, UnsafeRawPointer(lit.baseAddress!), lit.count)
    }
}

@inline(__always)
func memcmpBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    for i in 0..<n where a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) {
        return false
    }
    return true
}
