import AnalyticsServer
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct QueryHTTPTests {
    static let example = """
        {
          "query": "SELECT COUNT(*) as total, AVG(duration) as avg_duration FROM conversations WHERE bot_id = ? AND date >= ?",
          "parameters": ["bot_123", "2024-01-01"],
          "timeout_seconds": 30
        }
        """

    /// bot_123: one conversation in December (outside), two in January lasting 300 s and
    /// 421 s; bot_456: one in January.
    static let events = """
        {"events":[
          {"event_name":"conversation_started","session_id":"s1","bot_id":"bot_123","user_id":"u1","timestamp":"2023-12-31T10:00:00Z"},
          {"event_name":"conversation_ended","session_id":"s1","bot_id":"bot_123","user_id":"u1","timestamp":"2023-12-31T10:05:00Z"},
          {"event_name":"conversation_started","session_id":"s2","bot_id":"bot_123","user_id":"u2","timestamp":"2024-01-01T01:00:00Z"},
          {"event_name":"message_received","session_id":"s2","bot_id":"bot_123","user_id":"u2","timestamp":"2024-01-01T01:01:00Z"},
          {"event_name":"conversation_ended","session_id":"s2","bot_id":"bot_123","user_id":"u2","timestamp":"2024-01-01T01:05:00Z","properties":{"resolved":true}},
          {"event_name":"conversation_started","session_id":"s3","bot_id":"bot_123","user_id":"u1","timestamp":"2024-01-02T00:00:00Z"},
          {"event_name":"message_received","session_id":"s3","bot_id":"bot_123","user_id":"u1","timestamp":"2024-01-02T00:07:01Z"},
          {"event_name":"conversation_started","session_id":"s4","bot_id":"bot_456","user_id":"u3","timestamp":"2024-01-03T00:00:00Z"}
        ]}
        """

    @Test func documentExampleAnswersWithTheDocumentedShape() async throws {
        let t = try TestServer()
        try await t.test { client in
            let ingest = try await client.execute(
                uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.events))
            #expect(ingest.status == .ok)
            let response = try await client.execute(uri: "/api/v1/analytics/query", method: .post, headers: bearer(t.readToken), body: body(Self.example))
            #expect(response.status == .ok)
            let object = try json(response)
            let results = try #require(object["results"] as? [[String: Any]])
            #expect(results.count == 1)
            #expect(results[0]["total"] as? Int == 2)
            #expect((results[0]["avg_duration"] as? NSNumber)?.doubleValue == 360.5)
            #expect(object["rows_returned"] as? Int == 1)
            #expect(object["execution_time_ms"] is Int)
            #expect(object["data_through"] is String)
            let columns = try #require(object["columns"] as? [[String: String]])
            #expect(columns == [["name": "total", "type": "integer"], ["name": "avg_duration", "type": "double"]])
        }
    }

    @Test func errorsAreNamedAndScopesEnforced() async throws {
        let t = try TestServer()
        try await t.test { client in
            let write = try await client.execute(uri: "/api/v1/analytics/query", method: .post, headers: bearer(t.writeToken), body: body(Self.example))
            #expect(write.status == .forbidden)
            let cases: [(String, HTTPResponse.Status, String)] = [
                (#"{"query":"SELECT count(*) FROM events WHERE"}"#, .badRequest, "syntax_error"),
                (#"{"query":"SELECT * FROM other_project.events"}"#, .badRequest, "unknown_name"),
                (#"{"query":"INSERT INTO events VALUES (1)"}"#, .badRequest, "unsupported"),
                (#"{"query":"ATTACH DATABASE '/tmp/x.db' AS x"}"#, .badRequest, "unsupported"),
                (#"{"query":"PRAGMA table_info(events)"}"#, .badRequest, "unsupported"),
                (#"{"query":"SELECT * FROM '/etc/passwd'"}"#, .badRequest, "syntax_error"),
                (#"{"query":"SELECT * FROM information_schema.tables"}"#, .badRequest, "unknown_name"),
                (#"{"query":"SELECT load_extension('x')"}"#, .badRequest, "unsupported"),
                (#"{"query":"SELECT * FROM events; DELETE FROM events"}"#, .badRequest, "syntax_error"),
                (#"{"query":"SELECT count(*) FROM events WHERE user_id = ?"}"#, .badRequest, "invalid_parameter"),
                (#"{"query":"SELECT count(*) FROM events WHERE date >= ?","parameters":["soon"]}"#, .badRequest, "invalid_parameter"),
                (#"{"query":"SELECT 1","timeout_seconds":-1}"#, .badRequest, "invalid_field"),
                (#"{"query":"SELECT 1","timeout_seconds":100000}"#, .badRequest, "invalid_field"),
                (#"{"parameters":[]}"#, .badRequest, "invalid_field"),
                (#"{"query":"SELECT 1","parameters":[{"a":1}]}"#, .badRequest, "invalid_field"),
            ]
            for (text, status, code) in cases {
                let response = try await client.execute(uri: "/api/v1/analytics/query", method: .post, headers: bearer(t.readToken), body: body(text))
                #expect(response.status == status, "\(text)")
                #expect(errorCode(response) == code, "\(text)")
            }
            let syntax = try await client.execute(
                uri: "/api/v1/analytics/query", method: .post, headers: bearer(t.readToken), body: body(#"{"query":"SELECT event_name FROM events WHER x"}"#))
            let message = try errorBody(syntax).message
            #expect(message == "expected the end of the query, found 'x' at 1:36")
        }
    }

    @Test func resultLimitPointsToExportAndProjectsStayApart() async throws {
        let t = try TestServer { $0.sql.maxRows = 3 }
        _ = try t.server.metadata.createProject("other")
        try await t.test { client in
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.events))
            let big = try await client.execute(
                uri: "/api/v1/analytics/query", method: .post, headers: bearer(t.readToken), body: body(#"{"query":"SELECT * FROM events"}"#))
            #expect(big.status == .unprocessableContent)
            #expect(try errorBody(big).message.contains("/api/v1/analytics/export"))
            // Another project's reader sees none of these events.
            let otherToken = try t.server.metadata.createKey(project: "other", scope: .read).token
            let other = try await client.execute(
                uri: "/api/v1/analytics/query", method: .post, headers: bearer(otherToken), body: body(#"{"query":"SELECT count(*) AS n FROM events"}"#))
            #expect(other.status == .ok)
            #expect((try json(other)["results"] as? [[String: Any]])?.first?["n"] as? Int == 0)
        }
    }
}
