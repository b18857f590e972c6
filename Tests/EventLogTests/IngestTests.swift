import CLZ4
import CZstd
import EventLog
import TallyTestSupport
import Foundation
import Testing

@Suite struct TimestampTests {
    @Test func parsesRFC3339Variants() {
        let base = Timestamp.parse("2024-01-15T10:00:00Z")!
        #expect(base == 1_705_312_800_000_000)
        #expect(Timestamp.parse("2024-01-15T10:00:00.5Z") == base + 500_000)
        #expect(Timestamp.parse("2024-01-15T10:00:00.123456789Z") == base + 123_456)
        #expect(Timestamp.parse("2024-01-15T12:00:00+02:00") == base)
        #expect(Timestamp.parse("2024-01-15T05:30:00-0430") == base)
        #expect(Timestamp.parse("2024-01-15T10:00:00") == base)
        #expect(Timestamp.parse("2024-01-15 10:00:00z") == base)
        #expect(Timestamp.parse("2024-01-15T10:00Z") == base)
        #expect(Timestamp.parse("2024-01-15") == base - 36_000_000_000)
        #expect(Timestamp.parse("1705312800000") == base)
        #expect(Timestamp.parse("2024-02-29T00:00:00Z") != nil)
        for bad in ["", "2024-02-30T00:00:00Z", "2023-02-29", "2024-13-01", "2024-01-15T24:00:00Z", "2024-01-15T10:00:00ZZ",
                    "2024-01-15T10:00:00+25:00", "yesterday", "2024-01-15T10:00:00.Z", "2024/01/15"] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func formatsInUTCWithTheShortestFraction() {
        #expect(Timestamp.format(1_705_312_800_000_000) == "2024-01-15T10:00:00Z")
        #expect(Timestamp.format(1_705_312_800_123_000) == "2024-01-15T10:00:00.123Z")
        #expect(Timestamp.format(1_705_312_800_000_001) == "2024-01-15T10:00:00.000001Z")
        #expect(Timestamp.format(0) == "1970-01-01T00:00:00Z")
        var rng = SeededRandom(seed: 1)
        for _ in 0..<1000 {
            let t = Int64.random(in: 0...253_402_300_799_999_999, using: &rng)
            #expect(Timestamp.parse(Timestamp.format(t)) == t)
            // The response writer formats exactly like Timestamp.format.
            let out = OutputBuffer()
            JSONWriter(out).timestamp(t)
            #expect(String(decoding: out.bytes, as: UTF8.self) == "\"" + Timestamp.format(t) + "\"")
        }
    }
}

/// Encodes one event from JSON text and decodes it back.
func encodeOne(_ json: String, receivedAt: Int64 = 1_705_312_800_000_000, sentAt: Int64? = nil) throws -> Result<Event, IngestError> {
    let tokenizer = JSONTokenizer()
    let builder = BatchBuilder()
    let encoder = EventEncoder(limits: IngestLimits())
    let bytes = Array(json.utf8)
    let result = try bytes.withUnsafeBytes { raw -> Result<EncodedEvent, IngestError> in
        let tokens = try tokenizer.parse(raw)
        return encoder.encode(tokens, at: tokens.root, receivedAt: receivedAt, sentAt: sentAt, into: builder)
    }
    switch result {
    case .failure(let e):
        #expect(builder.records.count == 0, "a rejected event left bytes behind")
        return .failure(e)
    case .success:
        let batch = try builder.seal(codec: .none)
        return .success(try batch.frame.withUnsafeBytes { frame in
            var decoder = try EventRecordDecoder(header: batch.header, payload: UnsafeRawBufferPointer(rebasing: frame[BatchHeader.size...]))
            return try decoder.next()!
        })
    }
}

@Suite struct EventEncoderTests {
    let now: Int64 = 1_705_312_800_000_000

    @Test func theSpecExampleIsStoredFaithfully() throws {
        let event = try encodeOne(
            #"{"event_name":"button_clicked","user_id":"user123","session_id":"sess_abc123","properties":{"button_name":"submit","page":"checkout","value":99.99},"timestamp":"2024-01-15T10:00:00Z"}"#,
            receivedAt: now + 5_000_000
        ).get()
        #expect(event.name == "button_clicked")
        #expect(event.userId == "user123")
        #expect(event.sessionId == "sess_abc123")
        #expect(event.timestamp == now)
        #expect(event.receivedAt == now + 5_000_000)
        #expect(event.properties == [Property("button_name", .string("submit")), Property("page", .string("checkout")), Property("value", .double(99.99))])
    }

    @Test func nestedPropertiesAreFlattenedAndArraysKeptAsJSON() throws {
        let event = try encodeOne(
            #"{"event_name":"e","properties":{"a":{"b":1,"c":{"d":"x"}},"list":[1,"two",{"three":3},null],"big":18446744073709551615,"t":true,"f":false,"n":null,"empty":{}}}"#
        ).get()
        #expect(event.properties == [
            Property("a.b", .int(1)), Property("a.c.d", .string("x")), Property("list", .json(#"[1,"two",{"three":3},null]"#)),
            Property("big", .double(18_446_744_073_709_551_615)), Property("t", .bool(true)), Property("f", .bool(false)),
            Property("n", .null),
        ])
    }

    @Test func sentAtCorrectsTheClientClock() throws {
        // The client's clock is 1 h fast: it says the event happened at 11:00 and was sent at 11:00:10.
        let event = try encodeOne(#"{"event_name":"e","timestamp":"2024-01-15T11:00:00Z","sent_at":"2024-01-15T11:00:10Z"}"#, receivedAt: now).get()
        #expect(event.timestamp == now - 10_000_000)
        // Batch-level sent_at applies when the event has none.
        let batchLevel = try encodeOne(#"{"event_name":"e","timestamp":1705316400000}"#, receivedAt: now, sentAt: 1_705_316_410_000_000).get()
        #expect(batchLevel.timestamp == now - 10_000_000)
        // No timestamp: the receive time.
        #expect(try encodeOne(#"{"event_name":"e"}"#, receivedAt: now).get().timestamp == now)
    }

    @Test func timestampsFarInTheFutureAreClamped() throws {
        let event = try encodeOne(#"{"event_name":"e","timestamp":"2030-01-01T00:00:00Z"}"#, receivedAt: now).get()
        #expect(event.timestamp == now)
        #expect(event.timestampClamped)
        let nearFuture = try encodeOne(#"{"event_name":"e","timestamp":"2024-01-16T09:00:00Z"}"#, receivedAt: now).get()
        #expect(!nearFuture.timestampClamped)
        #expect(nearFuture.timestamp == now + 23 * 3_600_000_000)
    }

    @Test func numericIdentifiersBecomeDecimalStrings() throws {
        let event = try encodeOne(#"{"event_name":"e","user_id":12345,"bot_id":"b","anonymous_id":null}"#).get()
        #expect(event.userId == "12345")
        #expect(event.botId == "b")
        #expect(event.anonymousId == nil)
    }

    @Test(arguments: [
        (#"{}"#, "missing_field", "event_name"),
        (#"{"event_name":null}"#, "missing_field", "event_name"),
        (#"{"event_name":5}"#, "invalid_field", "event_name"),
        (#"{"event_name":""}"#, "invalid_field", "event_name"),
        (#"{"event_name":"e","user_id":""}"#, "invalid_field", "user_id"),
        (#"{"event_name":"e","user_id":true}"#, "invalid_field", "user_id"),
        (#"{"event_name":"e","event_id":7}"#, "invalid_field", "event_id"),
        (#"{"event_name":"e","session_id":["x"]}"#, "invalid_field", "session_id"),
        (#"{"event_name":"e","timestamp":"next tuesday"}"#, "invalid_timestamp", "timestamp"),
        (#"{"event_name":"e","timestamp":-5}"#, "invalid_timestamp", "timestamp"),
        (#"{"event_name":"e","sent_at":true}"#, "invalid_timestamp", "sent_at"),
        (#"{"event_name":"e","properties":[1]}"#, "invalid_field", "properties"),
        (#"{"event_name":"e","properties":{"":1}}"#, "invalid_property", "empty"),
    ])
    func invalidEventsNameTheFieldAndReason(json: String, code: String, mentions: String) throws {
        guard case .failure(let error) = try encodeOne(json) else {
            Issue.record("accepted \(json)")
            return
        }
        #expect(error.code == code)
        #expect(error.message.contains(mentions), "\(error.message)")
    }

    @Test func hostileShapesAreAnsweredNotCrashedOn() throws {
        let deepArray = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
        let stored = try encodeOne(#"{"event_name":"e","properties":{"x":\#(deepArray)}}"#).get()
        #expect(stored.properties == [Property("x", .json(deepArray))])
        let deepObject = String(repeating: #"{"a":"#, count: 1000) + "1" + String(repeating: "}", count: 1000)
        #expect(try encodeOne(#"{"event_name":"e","properties":\#(deepObject)}"#).failureCode == "property_key_too_long")
        // A repeated field: the last one wins.
        #expect(try encodeOne(#"{"event_name":"a","event_name":"b"}"#).get().name == "b")
        let tokenizer = JSONTokenizer()
        for bad in ["{\"event_name\":\"a\"", "[" + String(repeating: "[", count: 2000), "{\"n\":1e400}", "{\"n\":123456789012345678901234567890}"] {
            #expect(throws: JSONSyntaxError.self) { _ = try Array(bad.utf8).withUnsafeBytes { try tokenizer.parse($0) } }
        }
    }

    @Test func limitsAreEnforced() throws {
        let longName = String(repeating: "é", count: 201)
        #expect(try encodeOne(#"{"event_name":"\#(longName)"}"#).failureCode == "invalid_field")
        #expect(try encodeOne(#"{"event_name":"\#(String(repeating: "é", count: 200))"}"#).failureCode == nil)
        let manyProps = (0..<256).map { "\"p\($0)\":\($0)" }.joined(separator: ",")
        #expect(try encodeOne(#"{"event_name":"e","properties":{\#(manyProps)}}"#).failureCode == "too_many_properties")
        let nested = #"{"a":{"# + (0..<128).map { "\"p\($0)\":1" }.joined(separator: ",") + "},\"b\":{" + (0..<128).map { "\"p\($0)\":1" }.joined(separator: ",") + "}}"
        #expect(try encodeOne(#"{"event_name":"e","properties":\#(nested)}"#).failureCode == "too_many_properties")
        let longKey = String(repeating: "k", count: 250)
        #expect(try encodeOne(#"{"event_name":"e","properties":{"\#(longKey)":{"abcdef":1}}}"#).failureCode == "property_key_too_long")
        #expect(try encodeOne(#"{"event_name":"e","properties":{"\#(longKey)":{"abcd":1}}}"#).failureCode == nil)
        let big = String(repeating: "x", count: 33 * 1024)
        #expect(try encodeOne(#"{"event_name":"e","properties":{"blob":"\#(big)"}}"#).failureCode == "event_too_large")
        #expect(try encodeOne(#"{"event_name":"e","user_id":"\#(String(repeating: "u", count: 256))"}"#).failureCode == "invalid_field")
    }
}

extension Result where Failure == IngestError {
    var failureCode: String? {
        if case .failure(let e) = self { return e.code }
        return nil
    }
}

@Suite struct IngestorTests {
    func ingest(_ json: String, batch: Bool, into log: EventLog, _ ingestor: Ingestor = Ingestor()) async throws -> [IngestedEventResult] {
        let bytes = Array(json.utf8)
        let request = try bytes.withUnsafeBytes { try ingestor.prepare(body: $0, batch: batch, for: log) }
        return try await ingestor.complete(request, into: log)
    }

    @Test func batchesJudgeEachEventAlone() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        defer { log.close() }
        let results = try await ingest(
            #"{"events":[{"event_name":"a"},{"user_id":"x"},7,{"event_name":"b","event_id":"id-1"},{"event_name":"c","event_id":"id-1"}]}"#,
            batch: true, into: log)
        #expect(results.count == 5)
        guard case .stored(let id0, _, _) = results[0] else { Issue.record("\(results[0])"); return }
        #expect(id0.description == "evt_0000000000000000")
        #expect(results[1] == .rejected(IngestError("missing_field", "event_name is required")))
        #expect(results[2] == .rejected(IngestError("invalid_event", "event must be a JSON object")))
        guard case .stored(let id3, _, _) = results[3] else { Issue.record("\(results[3])"); return }
        #expect(id3 == .client("id-1"))
        guard case .duplicate(let id4, _) = results[4] else { Issue.record("\(results[4])"); return }
        #expect(id4 == "id-1")
        #expect(try readAll(log).map(\.name) == ["a", "b"])
        // Sent again later: stored once.
        let again = try await ingest(#"{"event_name":"b","event_id":"id-1"}"#, batch: false, into: log)
        guard case .duplicate = again[0] else { Issue.record("\(again)"); return }
        #expect(log.durableSequence == 2)
    }

    @Test func concurrentRequestsWithTheSameIdStoreItOnce() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        defer { log.close() }
        let ingestor = Ingestor()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<32 {
                group.addTask {
                    let json = #"{"events":[{"event_name":"e","event_id":"shared"},{"event_name":"e","event_id":"own-\#(i)"}]}"#
                    let results = try await ingest(json, batch: true, into: log, ingestor)
                    for r in results {
                        if case .rejected(let e) = r { Issue.record("rejected: \(e)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let events = try readAll(log)
        #expect(events.count == 33)
        #expect(events.filter { $0.clientEventId == "shared" }.count == 1)
    }

    @Test func requestLevelErrors() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let log = try EventLog.open(directory: dir.path)
        defer { log.close() }
        var limits = IngestLimits()
        limits.maxBatchEvents = 3
        let ingestor = Ingestor(limits: limits)
        let cases: [(String, Bool, Int, String)] = [
            ("{", true, 400, "invalid_json"),
            ("", false, 400, "invalid_json"),
            ("[1,2]", false, 400, "invalid_body"),
            (#"{"nope":[]}"#, true, 400, "missing_field"),
            (#"{"events":{}}"#, true, 400, "invalid_field"),
            (#"{"events":[]}"#, true, 400, "invalid_field"),
            (#"{"events":[{},{},{},{}]}"#, true, 413, "batch_too_large"),
            (#"{"events":[{"event_name":"a"}],"sent_at":"soon"}"#, true, 400, "invalid_timestamp"),
        ]
        for (body, batch, status, code) in cases {
            do {
                _ = try await ingest(body, batch: batch, into: log, ingestor)
                Issue.record("accepted \(body)")
            } catch let error as IngestRequestError {
                #expect(error.status == status, "\(body)")
                #expect(error.code == code, "\(body)")
            }
        }
        #expect(log.durableSequence == 0)
    }
}

@Suite struct ImportTests {
    func writeCompressed(_ text: String, to path: String) throws {
        let input = Array(text.utf8)
        var output: [UInt8]
        if path.hasSuffix(".zst") {
            output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
            let n = ZSTD_compress(&output, output.count, input, input.count, 3)
            output.removeLast(output.count - n)
        } else if path.hasSuffix(".lz4") {
            output = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(input.count, nil))
            let n = LZ4F_compressFrame(&output, output.count, input, input.count, nil)
            output.removeLast(output.count - n)
        } else {
            output = input
        }
        try FileIO.writeAtomically(output, to: path, durable: false)
    }

    @Test(arguments: ["events.ndjson", "events.ndjson.zst", "events.ndjson.lz4"])
    func importsGoodLinesAndReportsBadOnes(fileName: String) async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        var lines: [String] = []
        for i in 0..<5000 {
            switch i {
            case 17: lines.append("{not json")
            case 2500: lines.append(#"{"user_id":"no name"}"#)
            case 2501: lines.append("")
            default: lines.append(#"{"event_name":"e\#(i % 7)","user_id":"u\#(i)","timestamp":"2024-01-15T10:00:00Z","properties":{"i":\#(i)}}"#)
            }
        }
        let path = dir.path + "/" + fileName
        try writeCompressed(lines.joined(separator: "\n") + "\n", to: path)
        let log = try EventLog.open(directory: dir.path + "/log")
        let bad = BadLines()
        let importer = NDJSONImporter(chunkBytes: 16 * 1024)
        let progress = try importer.importFile(path, into: log, strict: false, onBadLine: { bad.add($0) }, onProgress: { _ in })
        #expect(progress.events == 4997)
        #expect(progress.badLines == 2)
        #expect(bad.lines.map(\.line).sorted() == [18, 2501])
        let events = try readAll(log)
        #expect(events.count == 4997)
        let values = Set(events.compactMap { e -> Int64? in if case .int(let v) = e.properties.first?.value { v } else { nil } })
        #expect(values.count == 4997)
        log.close()
    }

    @Test func strictModeStopsAtTheFirstBadLine() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let path = dir.path + "/bad.ndjson"
        try writeCompressed(#"{"event_name":"a"}"# + "\n{oops}\n" + #"{"event_name":"b"}"# + "\n", to: path)
        let log = try EventLog.open(directory: dir.path + "/log")
        defer { log.close() }
        await #expect(throws: ImportError.self) {
            _ = try NDJSONImporter().importFile(path, into: log, strict: true, onBadLine: { _ in }, onProgress: { _ in })
        }
    }

    @Test func reimportingIdentifiedEventsStoresThemOnce() async throws {
        let dir = TemporaryDirectory()
        defer { withExtendedLifetime(dir) {} }  // keep the directory until the test ends
        let path = dir.path + "/ids.ndjson"
        try writeCompressed((0..<100).map { #"{"event_name":"e","event_id":"id-\#($0)"}"# }.joined(separator: "\n"), to: path)
        let log = try EventLog.open(directory: dir.path + "/log")
        defer { log.close() }
        let first = try NDJSONImporter().importFile(path, into: log, strict: true, onBadLine: { _ in }, onProgress: { _ in })
        let second = try NDJSONImporter().importFile(path, into: log, strict: true, onBadLine: { _ in }, onProgress: { _ in })
        #expect(first.events == 100)
        #expect(second.events == 0)
        #expect(second.duplicates == 100)
        #expect(log.durableSequence == 100)
    }
}

final class BadLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [BadLine] = []
    func add(_ line: BadLine) { lock.withLock { stored.append(line) } }
    var lines: [BadLine] { lock.withLock { stored } }
}
