import AnalyticsServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import NIOCore
import Synchronization
import Testing

/// The ingest routes as the NIO-level fast path serves them on a real socket, against the
/// same requests through the router (HummingbirdTesting's router mode never reaches the
/// channel pipeline, so the other HTTP tests cover the router's side only).
@Suite struct IngestFastPathTests {
    /// What a client can tell about an answer: status, the headers it acts on, and the JSON
    /// body's keys and error code. Event ids and times differ between two servers.
    struct Answer: Equatable, CustomStringConvertible {
        var status: Int
        var headers: [String: String]
        var keys: [String]
        var errorCode: String?
        var tracked: Int?

        init(status: Int, headers: HTTPFields, body: ByteBuffer) {
            self.status = status
            var kept: [String: String] = [:]
            for name in ["Content-Type", "WWW-Authenticate", "X-RateLimit-Limit", "X-RateLimit-Remaining"] {
                if let value = headers[HTTPField.Name(name)!] { kept[name] = value }
            }
            // The seconds to wait depend on when in the window each server was asked.
            if let wait = headers[.retryAfter] { kept["Retry-After"] = Int(wait).map { $0 > 0 ? "positive" : "\($0)" } ?? wait }
            self.headers = kept
            let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
            keys = object.keys.sorted()
            errorCode = (object["error"] as? [String: Any])?["code"] as? String
            tracked = object["tracked"] as? Int
        }

        var description: String { "\(status) \(headers) \(keys) \(errorCode ?? "-") \(tracked.map(String.init) ?? "-")" }
    }

    struct Call {
        var uri: String
        var method: HTTPRequest.Method = .post
        var headers: HTTPFields
        var body: String?
    }

    static func calls(_ t: TestServer) -> [Call] {
        let write = bearer(t.writeToken)
        return [
            Call(uri: "/api/v1/analytics/events", headers: write, body: IngestHTTPTests.trackExample),
            Call(uri: "/healthz", method: .get, headers: [:], body: nil),
            Call(uri: "/api/v1/analytics/events/batch", headers: write, body: IngestHTTPTests.batchExample),
            Call(uri: "/api/v1/analytics/events?source=test", headers: write, body: #"{"event_name":"with_query"}"#),
            Call(uri: "/api/v1/analytics/events", headers: write, body: "{"),
            Call(uri: "/api/v1/analytics/events", headers: write, body: #"{"user_id":"u"}"#),
            Call(uri: "/api/v1/analytics/events", headers: write, body: #"{"event_name":"e","properties":{"x":"\#(String(repeating: "y", count: 40_000))"}}"#),
            Call(uri: "/api/v1/analytics/events/batch", headers: write, body: #"{"events":[{"event_name":"ok"},{"user_id":"no name"}]}"#),
            Call(uri: "/api/v1/analytics/events", headers: [.contentType: "application/json"], body: #"{"event_name":"e"}"#),
            Call(uri: "/api/v1/analytics/events", headers: bearer(t.readToken), body: #"{"event_name":"e"}"#),
            Call(uri: "/api/v1/analytics/events", method: .get, headers: write, body: nil),
            Call(uri: "/api/v1/analytics/events", headers: write, body: #"{"event_name":"e","event_id":"once"}"#),
            Call(uri: "/api/v1/analytics/events", headers: write, body: #"{"event_name":"e","event_id":"once"}"#),
            // The track budget below is 7 (counted from the first request that passes
            // authentication): this one is over it.
            Call(uri: "/api/v1/analytics/events", headers: write, body: #"{"event_name":"e"}"#),
            Call(uri: "/healthz", method: .get, headers: [:], body: nil),
        ]
    }

    static func server() throws -> TestServer {
        try TestServer { config in
            config.rateLimits.perToken[.track] = RateLimit(limit: 7, windowSeconds: 60)
        }
    }

    @Test func theFastPathAnswersAsTheRouterDoes() async throws {
        let routed = try Self.server()
        let routedAnswers = Mutex<[Answer]>([])
        try await routed.test(.router) { client in
            var answers: [Answer] = []
            for call in Self.calls(routed) {
                let response = try await client.execute(
                    uri: call.uri, method: call.method, headers: call.headers, body: call.body.map { ByteBuffer(string: $0) })
                answers.append(Answer(status: Int(response.status.code), headers: response.headers, body: response.body))
            }
            let stored = try routed.storedEvents().count
            answers.append(Answer(status: stored, headers: [:], body: ByteBuffer()))
            routedAnswers.withLock { $0 = answers }
        }
        let expected = routedAnswers.withLock { $0 }

        let live = try Self.server()
        defer { live.cleanUp() }
        var answers: [Answer] = []
        try await live.withLiveClient { client in
            for call in Self.calls(live) {
                let response = try await client.execute(
                    .init(call.uri, method: call.method, headers: call.headers, body: call.body.map { ByteBuffer(string: $0) }))
                let body = response.body ?? ByteBuffer()
                answers.append(Answer(status: Int(response.status.code), headers: response.headers, body: body))
                // What Hummingbird adds to every answer, the fast path adds too.
                #expect(response.headers[.contentLength] == String(body.readableBytes))
                #expect(response.headers[.server] == "tally")
                #expect(response.headers[.date]?.hasSuffix(" GMT") == true)
            }
            let stored = try live.storedEvents().count
            answers.append(Answer(status: stored, headers: [:], body: ByteBuffer()))
            let metrics = try await client.execute(.init("/metrics", method: .get))
            let text = String(buffer: metrics.body ?? ByteBuffer())
            #expect(text.contains(#"tally_http_requests_total{route="/api/v1/analytics/events",method="POST",status="200"} 4"#))
            #expect(text.contains(#"tally_http_requests_total{route="/api/v1/analytics/events",method="POST",status="429"} 1"#))
            #expect(text.contains(#"tally_http_requests_total{route="/api/v1/analytics/events/batch",method="POST",status="200"} 2"#))
        }
        #expect(answers.count == expected.count)
        for (i, (got, want)) in zip(answers, expected).enumerated() {
            #expect(got == want, "call \(i)")
        }
        #expect(expected.last?.status == 6, "events stored: track, 2 of batch, query, 1 of the mixed batch, once")
    }

    /// Requests pipelined on one connection are answered in order, whichever path serves
    /// each: an error answered inline, a durable append, a routed request and a batch.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let t = try TestServer()
        defer { t.cleanUp() }
        func post(_ path: String, _ json: String) -> String {
            "POST \(path) HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer \(t.writeToken)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)"
        }
        let requests = post("/api/v1/analytics/events", "{") + post("/api/v1/analytics/events", #"{"event_name":"p1"}"#)
            + "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
            + post("/api/v1/analytics/events/batch", #"{"events":[{"event_name":"p2"},{"event_name":"p3"}]}"#)
            + post("/api/v1/analytics/events", #"{"event_name":"p4"}"#)
        try await t.withLiveServer { port in
            let answers = try pipelinedExchange(port: port, requests: requests, answers: 5)
            #expect(answers.map(\.status) == [400, 200, 200, 200, 200])
            #expect(answers[0].body.contains("invalid_json"))
            #expect(answers[1].body.contains(#""tracked":true"#))
            #expect(answers[2].body.contains(#""status":"ok""#))
            #expect(answers[3].body.contains(#""tracked":2"#))
            #expect(answers[4].body.contains(#""tracked":true"#))
            #expect(try t.storedEvents().map(\.name) == ["p1", "p2", "p3", "p4"])
        }
    }

    /// Events acknowledged by the fast path are on disk with their fields, in the order the
    /// answers came.
    @Test func acknowledgedEventsAreStored() async throws {
        let t = try TestServer()
        defer { t.cleanUp() }
        try await t.withLiveClient { client in
            var ids: [String] = []
            for i in 0..<20 {
                let response = try await client.execute(
                    .init("/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken),
                          body: ByteBuffer(string: #"{"event_name":"n\#(i)","user_id":"u\#(i % 3)","properties":{"i":\#(i)}}"#)))
                #expect(response.status == .ok)
                let object = try JSONSerialization.jsonObject(with: Data((response.body ?? ByteBuffer()).readableBytesView)) as? [String: Any]
                ids.append(object?["event_id"] as? String ?? "")
            }
            let stored = try t.storedEvents()
            #expect(stored.map(\.name) == (0..<20).map { "n\($0)" })
            #expect(stored.map(\.userId) == (0..<20).map { "u\($0 % 3)" })
            #expect(stored.map(\.eventId) == ids)
        }
    }
}

extension TestServer {
    /// Runs `body` with a client of the whole server on a real socket. HummingbirdTesting's
    /// live mode gives up after 20 s without a read, which a CI machine running every suite at
    /// once has exceeded; this client waits up to 120 s.
    func withLiveClient(_ body: (TestClient) async throws -> Void) async throws {
        try await withLiveServer { port in
            let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(120)))
            client.connect()
            var failure: (any Error)?
            do {
                try await body(client)
            } catch {
                failure = error
            }
            try? await client.shutdown()
            if let failure { throw failure }
        }
    }

    /// Runs `body` with the port of the whole server listening on 127.0.0.1.
    func withLiveServer(_ body: (Int) async throws -> Void) async throws {
        let (ports, announce) = AsyncStream<Int>.makeStream()
        let app = server.makeApplication { channel in announce.yield(channel.localAddress?.port ?? 0) }
        let serving = Task { try await app.runService() }
        var iterator = ports.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        var failure: (any Error)?
        do {
            try await body(port)
        } catch {
            failure = error
        }
        serving.cancel()
        _ = await serving.result
        if let failure { throw failure }
    }
}

/// Writes `requests` to a new connection in one write (HTTP/1.1 pipelining) and reads
/// `count` answers, each framed by its `Content-Length`: their status codes and bodies.
func pipelinedExchange(port: Int, requests: String, answers count: Int) throws -> [(status: Int, body: String)] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw TestFailure("connect: errno \(errno)") }
    var timeout = timeval(tv_sec: 120, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(requests.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw TestFailure("send: errno \(errno)") }
        sent += n
    }
    var received: [UInt8] = []
    var answers: [(status: Int, body: String)] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while answers.count < count {
        // Take every complete answer at the front of what has arrived.
        while let end = received.firstRange(of: Array("\r\n\r\n".utf8)) {
            let head = String(decoding: received[..<end.lowerBound], as: UTF8.self)
            let lines = head.split(separator: "\r\n")
            let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
            let length = lines.dropFirst().compactMap { line -> Int? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }.first ?? 0
            guard received.count >= end.upperBound + length else { break }
            answers.append((status, String(decoding: received[end.upperBound..<end.upperBound + length], as: UTF8.self)))
            received.removeFirst(end.upperBound + length)
        }
        if answers.count == count { break }
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw TestFailure("connection ended after \(answers.count) of \(count) answers (errno \(errno))") }
        received += chunk[..<n]
    }
    return answers
}
