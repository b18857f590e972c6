/// A property value as stored. Integers and doubles are kept apart so that ids and counters
/// above 2^53 survive the round trip; arrays keep their JSON text.
public enum PropertyValue: Equatable, Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    /// JSON text of an array, kept verbatim (minified) as the conventions require.
    case json(String)
}

public struct Property: Equatable, Hashable, Sendable {
    public var key: String
    public var value: PropertyValue
    public init(_ key: String, _ value: PropertyValue) {
        self.key = key
        self.value = value
    }
}

/// One event as it lives in the log, after validation, clock correction and flattening.
public struct Event: Equatable, Sendable {
    /// Position in the project's log, assigned at append. Zero before that.
    public var sequence: UInt64
    public var name: String
    /// Event time, microseconds since the Unix epoch (UTC), after `sent_at` correction.
    public var timestamp: Int64
    /// When the server received the event, microseconds since the Unix epoch.
    public var receivedAt: Int64
    public var userId: String?
    public var anonymousId: String?
    public var sessionId: String?
    public var botId: String?
    /// The client's idempotency key; nil when the server assigned the id.
    public var clientEventId: String?
    /// The timestamp was more than 24 h ahead of the receive time and was clamped to it.
    public var timestampClamped: Bool
    public var properties: [Property]

    public init(
        sequence: UInt64 = 0, name: String, timestamp: Int64, receivedAt: Int64,
        userId: String? = nil, anonymousId: String? = nil, sessionId: String? = nil,
        botId: String? = nil, clientEventId: String? = nil, timestampClamped: Bool = false,
        properties: [Property] = []
    ) {
        self.sequence = sequence
        self.name = name
        self.timestamp = timestamp
        self.receivedAt = receivedAt
        self.userId = userId
        self.anonymousId = anonymousId
        self.sessionId = sessionId
        self.botId = botId
        self.clientEventId = clientEventId
        self.timestampClamped = timestampClamped
        self.properties = properties
    }

    /// The id clients see: their own `event_id`, or the one derived from the sequence number.
    public var eventId: String { clientEventId ?? EventID.serverAssigned(sequence) }
}

/// An event's id as answered to clients, without formatting server ids into strings until
/// they are written out (a batch response carries thousands).
public enum EventIdentifier: Equatable, Sendable, CustomStringConvertible {
    case server(UInt64)
    case client(String)

    public var description: String {
        switch self {
        case .server(let sequence): EventID.serverAssigned(sequence)
        case .client(let id): id
        }
    }
}

/// Server-assigned event ids are derived from the log sequence number, so they cost nothing
/// to store and are unique within a project.
public enum EventID {
    public static let prefix = "evt_"

    public static func serverAssigned(_ sequence: UInt64) -> String {
        let hex = String(sequence, radix: 16)
        return prefix + String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }

    /// The sequence number encoded in a server-assigned id, if `id` has that exact shape.
    public static func sequence(fromServerAssigned id: String) -> UInt64? {
        guard id.utf8.count == 20, id.hasPrefix(prefix) else { return nil }
        return UInt64(id.dropFirst(4), radix: 16)
    }
}
