public import EventLog
import Foundation

/// A fresh directory under the system temp dir, removed when the test ends.
public final class TemporaryDirectory {
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "tally-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A deterministic generator (SplitMix64) so failures reproduce.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public func randomString(_ rng: inout SeededRandom, maxLength: Int = 12) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789 _-é漢😀\"\\\n")
    let n = Int.random(in: 0...maxLength, using: &rng)
    return String((0..<n).map { _ in alphabet.randomElement(using: &rng)! })
}

public func randomEvent(_ rng: inout SeededRandom) -> Event {
    var properties: [Property] = []
    for i in 0..<Int.random(in: 0...6, using: &rng) {
        let value: PropertyValue
        switch Int.random(in: 0...6, using: &rng) {
        case 0: value = .null
        case 1: value = .bool(Bool.random(using: &rng))
        case 2: value = .int(Int64.random(in: .min ... .max, using: &rng))
        case 3: value = .double(Double.random(in: -1e12...1e12, using: &rng))
        case 4: value = .json("[1,2,\"x\"]")
        default: value = .string(randomString(&rng, maxLength: 40))
        }
        properties.append(Property("k\(i)_" + randomString(&rng, maxLength: 5), value))
    }
    return Event(
        name: "event_" + String(Int.random(in: 0..<10, using: &rng)),
        timestamp: Int64.random(in: 1_600_000_000_000_000...1_800_000_000_000_000, using: &rng),
        receivedAt: Int64.random(in: 1_600_000_000_000_000...1_800_000_000_000_000, using: &rng),
        userId: Bool.random(using: &rng) ? "user_" + randomString(&rng) : nil,
        anonymousId: Bool.random(using: &rng) ? randomString(&rng) : nil,
        sessionId: Bool.random(using: &rng) ? "sess" : nil,
        botId: Bool.random(using: &rng) ? "bot_1" : nil,
        clientEventId: nil,
        timestampClamped: Bool.random(using: &rng),
        properties: properties)
}

/// A batch of `events` in payload format `version` (1: strings inline, as logs written
/// before the string table hold them).
public func makeBatch(_ events: [Event], codec: Codec = .lz4, version: UInt8 = BatchHeader.currentVersion) throws -> PreparedBatch {
    let builder = BatchBuilder(version: version)
    for e in events { builder.append(e) }
    return try builder.seal(codec: codec)
}

public func readAll(_ log: EventLog, from: UInt64 = 0) throws -> [Event] {
    var reader = LogReader(snapshot: log.snapshot(), from: from)
    var events: [Event] = []
    while let e = try reader.next() { events.append(e) }
    return events
}

public func readAllOffline(_ directory: String) throws -> [Event] {
    var reader = try LogReader.offline(directory: directory)
    var events: [Event] = []
    while let e = try reader.next() { events.append(e) }
    return events
}

public func copyDirectory(_ from: String, _ to: String) {
    try? FileManager.default.removeItem(atPath: to)
    try! FileManager.default.copyItem(atPath: from, toPath: to)
}
