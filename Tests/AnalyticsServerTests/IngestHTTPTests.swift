import AnalyticsServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct IngestHTTPTests {
    static let trackExample = """
        {
          "event_name": "button_clicked",
          "user_id": "user123",
          "session_id": "sess_abc123",
          "properties": {
            "button_name": "submit",
            "page": "checkout",
            "value": 99.99
          },
          "timestamp": "2024-01-15T10:00:00Z"
        }
        """

    static let batchExample = """
        {
          "events": [
            {
              "event_name": "page_view",
              "user_id": "user123",
              "properties": {"page": "home"}
            },
            {
              "event_name": "search",
              "user_id": "user123",
              "properties": {"query": "help"}
            }
          ]
        }
        """

    @Test func trackEventExampleWorksVerbatim() async throws {
        let t = try TestServer()
        try await t.test { client in
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken), body: body(Self.trackExample)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                let object = try json(response)
                #expect(object["tracked"] as? Bool == true)
                #expect(object["timestamp"] as? String == "2024-01-15T10:00:00Z")
                #expect((object["event_id"] as? String)?.hasPrefix("evt_") == true)
            }
            let stored = try t.storedEvents()
            #expect(stored.count == 1)
            #expect(stored[0].name == "button_clicked")
            #expect(stored[0].sessionId == "sess_abc123")
            #expect(stored[0].properties.contains(Property("value", .double(99.99))))
        }
    }

    @Test func batchEventsExampleWorksVerbatim() async throws {
        let t = try TestServer()
        try await t.test { client in
            try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.batchExample)) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["tracked"] as? Int == 2)
                #expect(object["failed"] as? Int == 0)
                let ids = object["event_ids"] as? [String]
                #expect(ids?.count == 2)
                #expect(Set(ids ?? []).count == 2)
            }
            #expect(try t.storedEvents().map(\.name) == ["page_view", "search"])
        }
    }

    @Test func pythonExampleWorksVerbatim() async throws {
        // requests.post(..., json={...}) sends this body with these headers.
        let t = try TestServer()
        try await t.test { client in
            let payload = #"{"event_name": "purchase_completed", "user_id": "user123", "properties": {"amount": 99.99, "currency": "USD", "items": 3}}"#
            try await client.execute(
                uri: "/api/v1/analytics/events", method: .post,
                headers: [.authorization: "Bearer \(t.writeToken)", .contentType: "application/json", .userAgent: "python-requests/2.32"],
                body: body(payload)
            ) { response in
                #expect(response.status == .ok)
            }
            let e = try t.storedEvents()[0]
            #expect(e.properties == [Property("amount", .double(99.99)), Property("currency", .string("USD")), Property("items", .int(3))])
        }
    }

    @Test func batchReportsEachRejectedEventWithoutDisturbingTheOthers() async throws {
        let t = try TestServer()
        try await t.test { client in
            let payload = #"{"events":[{"event_name":"ok1"},{"event_name":""},{"event_name":"ok2","timestamp":"bad"},{"event_name":"ok3","event_id":"e-1"},"x"]}"#
            try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(payload)) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["tracked"] as? Int == 2)
                #expect(object["failed"] as? Int == 3)
                let ids = object["event_ids"] as! [Any]
                #expect(ids.count == 5)
                #expect(ids[1] is NSNull && ids[2] is NSNull && ids[4] is NSNull)
                #expect(ids[3] as? String == "e-1")
                let errors = object["errors"] as! [[String: Any]]
                #expect(errors.map { $0["index"] as? Int } == [1, 2, 4])
                #expect(errors.map { $0["code"] as? String } == ["invalid_field", "invalid_timestamp", "invalid_event"])
                #expect((errors[0]["message"] as? String)?.contains("event_name") == true)
            }
            #expect(try t.storedEvents().map(\.name) == ["ok1", "ok3"])
        }
    }

    @Test func clientEventIdsAreIdempotent() async throws {
        let t = try TestServer()
        try await t.test { client in
            for _ in 0..<3 {
                try await client.execute(
                    uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken),
                    body: body(#"{"event_name":"signup","event_id":"order-77","timestamp":"2024-03-01T00:00:00Z"}"#)
                ) { response in
                    #expect(response.status == .ok)
                    let object = try json(response)
                    #expect(object["event_id"] as? String == "order-77")
                    #expect(object["timestamp"] as? String == "2024-03-01T00:00:00Z")
                }
            }
            #expect(try t.storedEvents().count == 1)
        }
    }

    @Test func futureTimestampsAreClampedAndSaidSo() async throws {
        let t = try TestServer()
        try await t.test { client in
            try await client.execute(
                uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken),
                body: body(#"{"event_name":"e","timestamp":"2999-01-01T00:00:00Z"}"#)
            ) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                let warnings = object["warnings"] as? [[String: Any]]
                #expect(warnings?.first?["code"] as? String == "timestamp_clamped")
            }
            let e = try t.storedEvents()[0]
            #expect(e.timestampClamped)
            #expect(abs(e.timestamp - currentMicros()) < 60_000_000)
        }
    }

    @Test func badRequestsGetTheirStatusAndANamedReason() async throws {
        let t = try TestServer { config in
            config.ingest.maxBatchEvents = 10
            config.ingest.maxBatchBytes = 64 * 1024
        }
        try await t.test { client in
            let cases: [(String, String, Int, String)] = [
                ("/api/v1/analytics/events", "{", 400, "invalid_json"),
                ("/api/v1/analytics/events", #"{"user_id":"u"}"#, 400, "missing_field"),
                ("/api/v1/analytics/events", #"{"event_name":"e","timestamp":"tuesday"}"#, 400, "invalid_timestamp"),
                ("/api/v1/analytics/events", #"{"event_name":"e","properties":{"x":"\#(String(repeating: "y", count: 40_000))"}}"#, 413, "event_too_large"),
                ("/api/v1/analytics/events/batch", #"{"events":"no"}"#, 400, "invalid_field"),
                ("/api/v1/analytics/events/batch", #"{"events":[\#((0..<11).map { _ in #"{"event_name":"e"}"# }.joined(separator: ","))]}"#, 413, "batch_too_large"),
                ("/api/v1/analytics/events/batch", #"{"events":[{"event_name":"\#(String(repeating: "y", count: 70_000))"}]}"#, 413, "payload_too_large"),
            ]
            for (uri, payload, status, code) in cases {
                try await client.execute(uri: uri, method: .post, headers: bearer(t.writeToken), body: body(payload)) { response in
                    #expect(response.status.code == status, "\(code)")
                    let error = try errorBody(response)
                    #expect(error.code == code)
                    #expect(!error.message.isEmpty)
                }
            }
            #expect(try t.storedEvents().isEmpty)
        }
    }

    @Test func authenticationAndScopes() async throws {
        let t = try TestServer()
        try await t.test { client in
            let event = body(#"{"event_name":"e"}"#)
            let cases: [(HTTPFields, Int, String)] = [
                ([:], 401, "unauthorized"),
                ([.authorization: "Basic abc"], 401, "unauthorized"),
                ([.authorization: "Bearer tly_nope"], 401, "unauthorized"),
                // The last character changed, whatever it was (tokens are random).
                ([.authorization: "Bearer " + t.writeToken.dropLast() + (t.writeToken.hasSuffix("X") ? "Y" : "X")], 401, "unauthorized"),
                ([.authorization: "Bearer"], 401, "unauthorized"),
                ([.authorization: "Bearerx" + t.writeToken], 401, "unauthorized"),
                (bearer(t.readToken), 403, "insufficient_scope"),
                // The scheme is case-insensitive and spaces before the token are skipped.
                ([.authorization: "bEARER   " + t.readToken], 403, "insufficient_scope"),
            ]
            for (headers, status, code) in cases {
                try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: headers, body: event) { response in
                    #expect(response.status.code == status)
                    let error = try errorBody(response)
                    #expect(error.code == code)
                    if status == 401 { #expect(response.headers[.wwwAuthenticate] == "Bearer") }
                }
            }
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: [.authorization: "BEARER " + t.writeToken], body: event) { response in
                #expect(response.status == .ok)
            }
            // Admin tokens may ingest too.
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.adminToken), body: event) { response in
                #expect(response.status == .ok)
            }
            // A revoked key stops working at once in this process.
            let key = try t.server.metadata.listKeys(project: "default").first { $0.scope == .write }!
            #expect(try t.server.metadata.revokeKey(id: key.id))
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken), body: event) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func keysOfAnotherProjectWriteToThatProjectOnly() async throws {
        let t = try TestServer()
        try t.server.metadata.createProject("other")
        let otherToken = try t.server.metadata.createKey(project: "other", scope: .write).token
        try await t.test { client in
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(otherToken), body: body(#"{"event_name":"theirs"}"#)) { response in
                #expect(response.status == .ok)
            }
            #expect(try t.storedEvents(project: "other").map(\.name) == ["theirs"])
            #expect(try t.storedEvents(project: "default").isEmpty)
        }
    }

    @Test func rateLimitsAnswer429WithHeaders() async throws {
        let t = try TestServer { config in
            config.rateLimits.perToken[.track] = RateLimit(limit: 2, windowSeconds: 60)
        }
        try await t.test { client in
            for i in 0..<3 {
                try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken), body: body(#"{"event_name":"e"}"#)) { response in
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Limit")!] == "2")
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Remaining")!] == String(max(0, 1 - i)))
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Reset")!] != nil)
                    if i < 2 {
                        #expect(response.status == .ok)
                    } else {
                        #expect(response.status == .tooManyRequests)
                        #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
                        #expect(errorCode(response) == "rate_limited")
                    }
                }
            }
            // Batches have their own budget.
            try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(#"{"events":[{"event_name":"e"}]}"#)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-RateLimit-Limit")!] == "100")
            }
        }
    }

    @Test func rateLimitsCanBeSwitchedOff() async throws {
        let t = try TestServer { config in
            config.rateLimits.perToken[.track] = RateLimit(limit: 1, windowSeconds: 60)
            config.rateLimits.enabled = false
        }
        try await t.test { client in
            for _ in 0..<5 {
                try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken), body: body(#"{"event_name":"e"}"#)) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Limit")!] == nil)
                }
            }
        }
    }

    @Test func unknownRoutesAnd503WhileShuttingDown() async throws {
        let t = try TestServer()
        try await t.test { client in
            try await client.execute(uri: "/api/v1/analytics/nothing-here", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(errorCode(response) == "not_found")
            }
            _ = try t.server.logs.log(for: "default")
            t.server.logs.closeAll()
            // The registry reopens closed projects on demand, so close the instance it hands out.
            let log = try t.server.logs.log(for: "default")
            log.close()
            try await client.execute(uri: "/api/v1/analytics/events", method: .post, headers: bearer(t.writeToken), body: body(#"{"event_name":"e"}"#)) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(errorCode(response) == "shutting_down")
            }
        }
    }

    @Test func healthAndMetrics() async throws {
        let t = try TestServer()
        try await t.test { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.batchExample)) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("tally_events_ingested_total 2"))
                #expect(text.contains("tally_batches_ingested_total 1"))
                #expect(text.contains("tally_log_fsync_seconds_count 1"))
                #expect(text.contains("tally_log_bytes_written_total"))
                #expect(text.contains(#"tally_http_requests_total{route="/api/v1/analytics/events/batch",method="POST",status="200"} 1"#))
            }
        }
    }

    /// The whole server on a real socket (see `withLiveClient`).
    @Test func realServerOverTCP() async throws {
        let t = try TestServer()
        defer { t.cleanUp() }
        try await t.withLiveClient { client in
            let response = try await client.execute(
                .init("/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.batchExample)))
            #expect(response.status == .ok)
            let object = try JSONSerialization.jsonObject(with: Data((response.body ?? ByteBuffer()).readableBytesView)) as? [String: Any]
            #expect(object?["tracked"] as? Int == 2)
        }
    }
}
