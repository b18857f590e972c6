import AnalyticsServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct ConversationUserRealtimeHTTPTests {
    static let conversations = """
        {"events":[
          {"event_name":"conversation_started","user_id":"u1","session_id":"s1","bot_id":"bot_1","timestamp":"2024-01-15T10:00:00Z","properties":{"topic":"billing","channel":"web"}},
          {"event_name":"message_received","user_id":"u1","session_id":"s1","bot_id":"bot_1","timestamp":"2024-01-15T10:00:10Z","properties":{"intent":"refund"}},
          {"event_name":"message_sent","user_id":"u1","session_id":"s1","bot_id":"bot_1","timestamp":"2024-01-15T10:00:12Z","properties":{"response_time_ms":2000}},
          {"event_name":"conversation_ended","user_id":"u1","session_id":"s1","bot_id":"bot_1","timestamp":"2024-01-15T10:06:00Z","properties":{"resolved":true,"satisfaction":5}},
          {"event_name":"conversation_started","user_id":"u2","session_id":"s2","bot_id":"bot_2","timestamp":"2024-01-15T11:00:00Z","properties":{"topic":"shipping"}},
          {"event_name":"message_received","user_id":"u2","session_id":"s2","bot_id":"bot_2","timestamp":"2024-01-15T11:01:00Z"},
          {"event_name":"message_sent","user_id":"u2","session_id":"s2","bot_id":"bot_2","timestamp":"2024-01-15T11:01:30Z","properties":{"response_time_ms":500}},
          {"event_name":"conversation_ended","user_id":"u2","session_id":"s2","bot_id":"bot_2","timestamp":"2024-01-15T11:02:00Z","properties":{"resolved":false,"satisfaction":2}},
          {"event_name":"conversation_started","user_id":"u1","session_id":"s3","bot_id":"bot_1","timestamp":"2024-01-16T03:00:00Z","properties":{"topic":"billing"}},
          {"event_name":"page_view","user_id":"u3","timestamp":"2024-01-15T12:00:00Z"}
        ]}
        """

    static func get(_ client: some TestClientProtocol, _ uri: String, _ token: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get, headers: bearer(token))
    }

    @Test func conversationAnalyticsFollowsTheConversationModel() async throws {
        let t = try TestServer()
        try await t.test { client in
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.conversations))
            let base = "/api/v1/analytics/conversations/analytics?period=custom&start_date=2024-01-15&end_date=2024-01-15"
            let all = try json(try await Self.get(client, base, t.readToken))
            let summary = try #require(all["summary"] as? [String: NSNumber])
            #expect(summary.mapValues(\.doubleValue) == [
                "total_conversations": 2, "completed_conversations": 2, "average_duration_seconds": 240,
                "average_messages_per_conversation": 2, "resolution_rate": 0.5,
            ])
            let timeline = try #require(all["timeline"] as? [[String: Any]])
            #expect(timeline.count == 1)
            #expect(timeline[0]["date"] as? String == "2024-01-15")
            #expect(timeline[0]["conversations"] as? Int == 2)
            #expect(timeline[0]["messages"] as? Int == 4)
            #expect(timeline[0]["unique_users"] as? Int == 2)
            let topics = try #require(all["topics"] as? [[String: Any]])
            #expect(topics.map { $0["topic"] as? String } == ["billing", "shipping"])
            #expect(topics.map { ($0["percentage"] as? NSNumber)?.doubleValue } == [50, 50])

            let bot = try json(try await Self.get(client, base + "&bot_id=bot_1&group_by=hour", t.readToken))
            #expect((bot["summary"] as? [String: NSNumber])?["total_conversations"] == 1)
            #expect((bot["summary"] as? [String: NSNumber])?["resolution_rate"]?.doubleValue == 1)
            #expect((bot["timeline"] as? [[String: Any]])?.map { $0["date"] as? String } == ["2024-01-15T10:00"])

            // In New York, 2024-01-16T03:00Z is still January 15: s3 counts there.
            let newYork = try json(try await Self.get(client, base + "&timezone=America/New_York", t.readToken))
            #expect((newYork["summary"] as? [String: NSNumber])?["total_conversations"] == 3)

            for bad in ["period=yearly", "period=custom&start_date=2024-01-15", "group_by=minute", "timezone=Mars/Olympus"] {
                let response = try await Self.get(client, "/api/v1/analytics/conversations/analytics?" + bad, t.readToken)
                #expect(response.status == .badRequest, "\(bad)")
            }
            #expect(try await Self.get(client, base, t.writeToken).status == .forbidden)
        }
    }

    /// Berlin moves its clocks forward at 01:00Z on 2024-03-31: local days and hours follow.
    @Test func timelinesFollowLocalTimeAcrossDaylightSavingChanges() async throws {
        let t = try TestServer()
        try await t.test { client in
            let events = """
                {"events":[
                  {"event_name":"conversation_started","user_id":"a","session_id":"s1","timestamp":"2024-03-30T22:30:00Z"},
                  {"event_name":"conversation_started","user_id":"b","session_id":"s2","timestamp":"2024-03-30T23:30:00Z"},
                  {"event_name":"conversation_started","user_id":"c","session_id":"s3","timestamp":"2024-03-31T00:30:00Z"},
                  {"event_name":"conversation_started","user_id":"d","session_id":"s4","timestamp":"2024-03-31T01:30:00Z"}
                ]}
                """
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(events))
            let base = "/api/v1/analytics/conversations/analytics?period=custom&start_date=2024-03-30&end_date=2024-03-31&timezone=Europe/Berlin"
            let days = try json(try await Self.get(client, base, t.readToken))
            // 22:30Z is 23:30 on the 30th in Berlin (CET); the others fall on the 31st.
            #expect((days["timeline"] as? [[String: Any]])?.map { $0["date"] as? String } == ["2024-03-30", "2024-03-31"])
            #expect((days["timeline"] as? [[String: Any]])?.map { $0["conversations"] as? Int } == [1, 3])
            let hours = try json(try await Self.get(client, base + "&group_by=hour", t.readToken))
            // 00:30Z is 01:30 CET; 01:30Z is 03:30 CEST: the local hour 02:00 does not exist.
            #expect((hours["timeline"] as? [[String: Any]])?.map { $0["date"] as? String }
                == ["2024-03-30T23:00", "2024-03-31T00:00", "2024-03-31T01:00", "2024-03-31T03:00"])
        }
    }

    @Test func userAnalyticsReportsOneUser() async throws {
        let t = try TestServer()
        try await t.test { client in
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.conversations))
            let response = try await Self.get(client, "/api/v1/analytics/users/u1/analytics?start_date=2024-01-01&end_date=2024-01-31", t.readToken)
            #expect(response.status == .ok)
            let object = try json(response)
            #expect(object["user_id"] as? String == "u1")
            let metrics = try #require(object["metrics"] as? [String: Any])
            #expect(metrics["total_sessions"] as? Int == 2)
            #expect(metrics["total_messages"] as? Int == 2)
            #expect((metrics["average_session_duration"] as? NSNumber)?.doubleValue == 180)
            #expect(metrics["last_active"] as? String == "2024-01-16T03:00:00Z")
            #expect((metrics["satisfaction_score"] as? NSNumber)?.doubleValue == 5)
            #expect(metrics["topics_discussed"] as? [String] == ["billing"])
            let engagement = try #require(object["engagement"] as? [String: Any])
            #expect(engagement["daily_active"] as? Bool == false)
            #expect((engagement["retention_30d"] as? NSNumber)?.doubleValue == 0.07)
            #expect(engagement["churn_risk"] as? String == "medium")

            let some = try json(try await Self.get(client, "/api/v1/analytics/users/u1/analytics?metrics=total_sessions,last_active", t.readToken))
            #expect(Set((some["metrics"] as? [String: Any])?.keys.map { $0 } ?? []) == ["total_sessions", "last_active"])
            #expect(try await Self.get(client, "/api/v1/analytics/users/u1/analytics?metrics=mood", t.readToken).status == .badRequest)
            #expect(try await Self.get(client, "/api/v1/analytics/users/nobody/analytics", t.readToken).status == .notFound)
            #expect(try await Self.get(client, "/api/v1/analytics/users/u1/analytics", t.writeToken).status == .forbidden)
        }
    }

    /// Events acknowledged a moment ago are in /realtime at once (the log tail is read).
    @Test func realtimeSeesJustAcknowledgedEventsAndComparesWithYesterday() async throws {
        let t = try TestServer()
        try await t.test { client in
            let yesterday = Timestamp.format(currentMicros() - 86_400_000_000 - 60_000_000)
            let events = """
                {"events":[
                  {"event_name":"message_received","user_id":"a","session_id":"x"},
                  {"event_name":"message_sent","user_id":"a","session_id":"x","properties":{"response_time_ms":100}},
                  {"event_name":"message_received","user_id":"b","session_id":"y"},
                  {"event_name":"message_sent","user_id":"b","session_id":"y","properties":{"response_time_ms":300}},
                  {"event_name":"page_view","user_id":"c"},
                  {"event_name":"page_view","user_id":"old","timestamp":"\(yesterday)"},
                  {"event_name":"page_view","user_id":"older","timestamp":"\(yesterday)"}
                ]}
                """
            let ingest = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(events))
            #expect(ingest.status == .ok)
            let object = try json(try await Self.get(client, "/api/v1/analytics/realtime", t.readToken))
            let current = try #require(object["current"] as? [String: NSNumber])
            #expect(current["active_users"] == 3)
            #expect(current["active_conversations"] == 2)
            #expect(current["messages_per_minute"]?.doubleValue == 0.8)
            #expect(current["average_response_time_ms"]?.doubleValue == 200)
            let trends = try #require(object["trends"] as? [String: Any])
            #expect(trends["users_change"] as? String == "+50%")
            #expect(trends["conversations_change"] is NSNull)
            let alerts = try #require(object["alerts"] as? [[String: Any]])
            #expect(alerts.first?["type"] as? String == "high_traffic")
            #expect(object["timestamp"] is String)
            #expect(try await Self.get(client, "/api/v1/analytics/realtime?minutes=0", t.readToken).status == .badRequest)
            #expect(try await Self.get(client, "/api/v1/analytics/realtime", t.writeToken).status == .forbidden)
        }
    }
}
