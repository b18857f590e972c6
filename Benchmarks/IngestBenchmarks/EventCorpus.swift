import EventLog
import BenchmarkSupport
import Foundation

/// A deterministic batch of analytics events, as an SDK would send them to `POST /events/batch`.
///
/// Each event is about 250 bytes of JSON: `event_name` from a small set, `user_id`,
/// `session_id`, an RFC 3339 `timestamp`, and `properties` with four keys (a string path, a
/// number, a string referrer and a nested `device` object). By default the events come from
/// 250 users, each keeping one device and session for the whole batch; `users: nil` gives every
/// event its own user, the least compressible case.
struct EventCorpus {
    /// `{"events":[...]}`: the request body of one batch.
    let body: [UInt8]
    /// The same events, one JSON object per line (the NDJSON export/import format).
    let ndjson: [UInt8]
    let eventCount: Int
    /// When the server received the batch (µs); later than every event timestamp, so nothing
    /// is clamped.
    let receivedAt: Int64

    var jsonBytesPerEvent: Double { Double(ndjson.count - eventCount) / Double(eventCount) }

    static let eventNames = ["page_view", "button_click", "signup", "add_to_cart", "purchase", "search"]
    static let paths = [
        "/", "/pricing", "/docs/getting-started", "/docs/api/events", "/blog/2025/launch-week",
        "/blog/2025/self-hosting", "/product/dashboards", "/product/funnels", "/account/settings",
        "/account/billing", "/checkout", "/checkout/confirm", "/search", "/integrations/segment",
        "/integrations/slack", "/changelog", "/careers", "/about", "/contact", "/login",
    ]
    static let referrers = [
        "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
        "https://twitter.com/", "https://www.linkedin.com/", "https://github.com/", "", "https://www.bing.com/",
    ]
    static let devices: [(os: String, widths: [Int])] = [
        ("macOS", [1440, 1512, 1728, 1920]), ("Windows", [1366, 1536, 1920]), ("iOS", [390, 393, 430]),
        ("Android", [360, 412, 384]), ("Linux", [1920, 2560]),
    ]

    /// - Parameter users: how many distinct users (each with one device and session) the events
    ///   are drawn from; `nil` gives every event a fresh user, the worst case for compression.
    init(events: Int = 1000, users: Int? = 250, seed: UInt64 = 0x7A11_7A11) {
        var rng = SplitMix64(state: seed)
        struct User {
            var id: String
            var session: String
            var os: String
            var width: Int
        }
        func makeUser() -> User {
            let device = rng.pick(EventCorpus.devices)
            return User(id: "u_" + rng.hex(8), session: "s_" + rng.hex(12), os: device.os, width: rng.pick(device.widths))
        }
        let pool: [User] = (0..<(users ?? 0)).map { _ in makeUser() }
        // 2025-06-01T12:00:00Z, then a few hundred ms between events.
        var clock: Int64 = 1_748_779_200_000_000
        var lines: [String] = []
        lines.reserveCapacity(events)
        for _ in 0..<events {
            clock += Int64(50_000 + rng.below(900_000))
            clock -= clock % 1000  // SDKs send milliseconds
            let user = pool.isEmpty ? makeUser() : rng.pick(pool)
            let name = rng.pick(EventCorpus.eventNames)
            let path = rng.pick(EventCorpus.paths)
            let duration = 20 + rng.below(30_000)
            let referrer = rng.pick(EventCorpus.referrers)
            lines.append(
                #"{"event_name":"\#(name)","user_id":"\#(user.id)","session_id":"\#(user.session)","#
                    + #""timestamp":"\#(Timestamp.format(clock))","properties":{"path":"\#(path)","#
                    + #""duration_ms":\#(duration),"referrer":"\#(referrer)","#
                    + #""device":{"os":"\#(user.os)","screen_width":\#(user.width)}}}"#
            )
        }
        body = Array(("{\"events\":[" + lines.joined(separator: ",") + "]}").utf8)
        ndjson = Array((lines.joined(separator: "\n") + "\n").utf8)
        eventCount = events
        receivedAt = clock + 2_000_000
    }
}

/// The ingest CPU path of `POST /events/batch`, as `Ingestor` runs it: tokenize the body,
/// find the `events` array, then validate and encode every event into the batch builder.
/// Returns the number of events encoded.
@inline(never)
func encodeBatch(
    _ body: UnsafeRawBufferPointer,
    tokenizer: JSONTokenizer,
    encoder: EventEncoder,
    builder: BatchBuilder,
    receivedAt: Int64
) throws -> Int {
    let tokens = try tokenizer.parse(body)
    // Body shape is `{"events":[...]}`: the root object, then the key, then the array.
    let root = tokens.root
    precondition(tokens.kind(root) == JSONKind.object && String(decoding: tokens.string(root + 1), as: UTF8.self) == "events")
    let array = root + 2
    var i = array + 1
    let end = tokens.end(array)
    var encoded = 0
    while i < end {
        switch encoder.encode(tokens, at: i, receivedAt: receivedAt, sentAt: nil, into: builder) {
        case .success: encoded += 1
        case .failure(let error): fatalError("benchmark event rejected: \(error)")
        }
        i = tokens.next(i)
    }
    return encoded
}

/// A builder holding the 1,000 encoded events of `corpus`, plus a copy of its record bytes and
/// string table so the builder can be refilled after each `seal` (which resets it).
final class EncodedBatch {
    let builder: BatchBuilder
    let records: [UInt8]
    /// The batch's string table, in index order.
    let strings: [[UInt8]]
    let eventCount: Int
    let minTimestamp: Int64
    let maxTimestamp: Int64

    init(_ corpus: EventCorpus) throws {
        let tokenizer = JSONTokenizer()
        let encoder = EventEncoder(limits: IngestLimits())
        let builder = BatchBuilder()
        self.builder = builder
        eventCount = try corpus.body.withUnsafeBytes {
            try encodeBatch($0, tokenizer: tokenizer, encoder: encoder, builder: builder, receivedAt: corpus.receivedAt)
        }
        records = builder.records.toArray()
        minTimestamp = builder.minTimestamp
        maxTimestamp = builder.maxTimestamp
        let sealed = try builder.seal(codec: .none)
        strings = try sealed.frame.withUnsafeBytes { frame in
            let payload = UnsafeRawBufferPointer(rebasing: frame[BatchHeader.size...])
            var table = BatchStringTable()
            try table.load(payload)
            return (0..<table.count).map { Array(table.string(UInt64($0), in: payload.baseAddress!)!) }
        }
    }

    /// Puts the string table and records back into the (reset) builder without re-encoding
    /// them. The table's few hundred lookups are a few percent of a seal.
    @inline(__always)
    func refill() {
        builder.reset()
        for string in strings { _ = string.withUnsafeBytes { builder.strings.reference($0) } }
        records.withUnsafeBytes { builder.records.append($0) }
        // Only the count and time bounds matter to `seal`; one call per event like the encoder.
        builder.commitEvent(timestamp: minTimestamp)
        for _ in 1..<(eventCount - 1) { builder.commitEvent(timestamp: minTimestamp) }
        builder.commitEvent(timestamp: maxTimestamp)
    }

    func seal(_ codec: Codec) throws -> PreparedBatch {
        refill()
        return try builder.seal(codec: codec)
    }
}

/// How the corpus compresses: NDJSON bytes against the bytes the log stores (batch header +
/// compressed payload), printed once so the README's size claim can be checked. Also shown for
/// a batch in which every event comes from a different user (no repeated ids at all).
func printCompressionReport(_ corpus: EventCorpus, _ encoded: EncodedBatch) throws {
    let distinct = EventCorpus(events: corpus.eventCount, users: nil)
    for (c, e, label) in [(corpus, encoded, "250 users"), (distinct, try EncodedBatch(distinct), "every event a different user")] {
        let json = c.ndjson.count
        print("")
        print(
            "corpus (\(label)): \(c.eventCount) events, request body \(c.body.count) B, NDJSON \(json) B "
                + "(\(String(format: "%.1f", c.jsonBytesPerEvent)) B of JSON per event), encoded records \(e.records.count) B"
        )
        for (codec, name) in [(Codec.none, "none"), (.lz4, "LZ4"), (.zstd, "Zstd level 1")] {
            let batch = try e.seal(codec)
            let ratio = Double(batch.frame.count) / Double(json)
            print("  \(name): log frame \(batch.frame.count) B = \(String(format: "%.1f", ratio * 100))% of NDJSON")
        }
    }
}
