import AnalyticsServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct AnalyticsHTTPTests {
    static let funnelExample = """
        {
          "name": "onboarding_funnel",
          "steps": [
            {"name": "signup", "event": "user_registered"},
            {"name": "profile", "event": "profile_completed"},
            {"name": "first_action", "event": "first_conversation"}
          ],
          "date_range": {
            "start": "2024-01-01",
            "end": "2024-01-31"
          }
        }
        """

    static let cohortExample = """
        {
          "cohort_type": "acquisition",
          "group_by": "week",
          "metric": "retention",
          "date_range": {
            "start": "2024-01-01",
            "end": "2024-01-31"
          }
        }
        """

    /// Four people through the onboarding funnel in January 2024 (the last one registers on
    /// the range's last day), plus events outside the range that must not count.
    static let onboardingEvents = """
        {"events":[
          {"event_name":"user_registered","user_id":"u1","timestamp":"2024-01-02T10:00:00Z"},
          {"event_name":"profile_completed","user_id":"u1","timestamp":"2024-01-02T10:05:00Z"},
          {"event_name":"first_conversation","user_id":"u1","timestamp":"2024-01-03T09:00:00Z"},
          {"event_name":"user_registered","user_id":"u2","timestamp":"2024-01-05T10:00:00Z"},
          {"event_name":"profile_completed","user_id":"u2","timestamp":"2024-01-05T11:00:00Z"},
          {"event_name":"user_registered","user_id":"u3","timestamp":"2024-01-09T10:00:00Z"},
          {"event_name":"first_conversation","user_id":"u3","timestamp":"2024-01-10T10:00:00Z"},
          {"event_name":"user_registered","user_id":"u4","timestamp":"2024-01-31T23:00:00Z"},
          {"event_name":"profile_completed","user_id":"u4","timestamp":"2024-01-31T23:30:00Z"},
          {"event_name":"first_conversation","user_id":"u4","timestamp":"2024-02-01T00:10:00Z"},
          {"event_name":"user_registered","user_id":"u5","timestamp":"2023-12-31T23:59:59Z"},
          {"event_name":"page_view","user_id":"u1","timestamp":"2024-01-09T08:00:00Z"},
          {"event_name":"page_view","user_id":"u2","timestamp":"2024-01-20T08:00:00Z"},
          {"event_name":"page_view","user_id":"u3","timestamp":"2024-01-16T08:00:00Z"}
        ]}
        """

    @Test func funnelExampleAnswersWithTheDocumentedShape() async throws {
        let t = try TestServer()
        try await t.test { client in
            let ingest = try await client.execute(
                uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.onboardingEvents))
            #expect(ingest.status == .ok)
            let response = try await client.execute(
                uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(Self.funnelExample))
            #expect(response.status == .ok)
            let object = try json(response)
            let funnel = try #require(object["funnel"] as? [String: Any])
            #expect(funnel["name"] as? String == "onboarding_funnel")
            #expect(funnel["total_users"] as? Int == 4)
            let steps = try #require(funnel["steps"] as? [[String: Any]])
            #expect(steps.map { $0["name"] as? String } == ["signup", "profile", "first_action"])
            #expect(steps.map { $0["users"] as? Int } == [4, 3, 1])
            #expect(steps.map { ($0["percentage"] as? NSNumber)?.doubleValue } == [100, 75, 25])
            #expect(steps[0]["drop_off"] == nil)
            #expect(steps.dropFirst().map { $0["drop_off"] as? Int } == [1, 2])
            #expect((funnel["completion_rate"] as? NSNumber)?.doubleValue == 0.25)
            #expect(object["data_through"] is String)
            // u1 took 5 minutes to the profile step; u2 an hour; u4 30 minutes: median 30 min.
            #expect((steps[1]["median_time_to_convert_seconds"] as? NSNumber)?.doubleValue == 1800)

            // Strict order and a one-hour window change the answer as documented.
            let strict = Self.funnelExample.replacingOccurrences(
                of: #""name": "onboarding_funnel","#, with: #""name": "f", "order": "strict", "conversion_window": "1h","#)
            let strictResponse = try await client.execute(
                uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(strict))
            let strictSteps = try #require((try json(strictResponse)["funnel"] as? [String: Any])?["steps"] as? [[String: Any]])
            #expect(strictSteps.map { $0["users"] as? Int } == [4, 3, 0])
        }
    }

    @Test func cohortExampleAnswersWithTheDocumentedShape() async throws {
        let t = try TestServer()
        try await t.test { client in
            _ = try await client.execute(
                uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.onboardingEvents))
            let response = try await client.execute(
                uri: "/api/v1/analytics/cohorts", method: .post, headers: bearer(t.adminToken), body: body(Self.cohortExample))
            #expect(response.status == .ok)
            let cohorts = try #require(try json(response)["cohorts"] as? [[String: Any]])
            #expect(cohorts.map { $0["cohort_date"] as? String } == ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22", "2024-01-29"])
            // Week of Jan 1: u1 and u2 (u5 joined in December); u1 came back in week 1, u2 in week 2.
            #expect(cohorts[0]["users"] as? Int == 2)
            let retention = try #require(cohorts[0]["retention"] as? [String: NSNumber])
            #expect(retention.mapValues(\.doubleValue) == ["week_0": 1, "week_1": 0.5, "week_2": 0.5, "week_3": 0, "week_4": 0])
            #expect(cohorts[1]["users"] as? Int == 1)
            #expect((cohorts[1]["retention"] as? [String: NSNumber])?.mapValues(\.doubleValue) == ["week_0": 1, "week_1": 1, "week_2": 0, "week_3": 0])
            #expect(cohorts[4]["users"] as? Int == 1)
        }
    }

    @Test func writeTokensAreRefusedAndBadRequestsNamed() async throws {
        let t = try TestServer()
        try await t.test { client in
            for path in ["funnels", "cohorts"] {
                let example = path == "funnels" ? Self.funnelExample : Self.cohortExample
                let forbidden = try await client.execute(
                    uri: "/api/v1/analytics/\(path)", method: .post, headers: bearer(t.writeToken), body: body(example))
                #expect(forbidden.status == .forbidden)
                #expect(errorCode(forbidden) == "insufficient_scope")
                let anonymous = try await client.execute(uri: "/api/v1/analytics/\(path)", method: .post, body: body(example))
                #expect(anonymous.status == .unauthorized)
            }
            let cases: [(String, String, HTTPResponse.Status, String)] = [
                ("funnels", "not json", .badRequest, "the request body"),
                ("funnels", #"{"steps":[{"event":"a"}],"date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .unprocessableContent, "2 to 64 steps"),
                ("funnels", #"{"steps":[{"event":"a"},{"name":"x"}],"date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .badRequest, "steps[1].event"),
                ("funnels", #"{"steps":[{"event":"a"},{"event":"b"}]}"#, .badRequest, "date_range"),
                ("funnels", #"{"steps":[{"event":"a"},{"event":"b"}],"date_range":{"start":"2024-02-01","end":"2024-01-02"}}"#, .badRequest, "start must be before end"),
                ("funnels", #"{"steps":[{"event":"a"},{"event":"b"}],"date_range":{"start":"yesterday","end":"2024-01-02"}}"#, .badRequest, "date_range.start"),
                ("funnels", #"{"steps":[{"event":"a"},{"event":"b"}],"date_range":{"start":"2024-01-01","end":"2024-01-02"},"conversion_window":"soon"}"#, .badRequest, "conversion_window"),
                ("funnels", #"{"steps":[{"event":"a","filters":[{"property":"plan","operator":"~"}]},{"event":"b"}],"date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .badRequest, "steps[0].filters[0].operator"),
                ("funnels", #"{"steps":[{"event":"a","filters":[{"property":"plan","operator":"in","value":"pro"}]},{"event":"b"}],"date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .badRequest, "takes a list"),
                ("cohorts", #"{"cohort_type":"behavioral","date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .badRequest, "cohort_type"),
                ("cohorts", #"{"group_by":"year","date_range":{"start":"2024-01-01","end":"2024-01-02"}}"#, .badRequest, "group_by"),
            ]
            for (path, text, status, needle) in cases {
                let response = try await client.execute(
                    uri: "/api/v1/analytics/\(path)", method: .post, headers: bearer(t.readToken), body: body(text))
                #expect(response.status == status, "\(text)")
                let message = (try? errorBody(response).message) ?? ""
                #expect(message.contains(needle), "\(text): \(message)")
            }
        }
    }

    /// Step filters reach the engine: only events whose property matches count.
    @Test func stepFiltersNarrowTheFunnel() async throws {
        let t = try TestServer()
        try await t.test { client in
            let events = """
                {"events":[
                  {"event_name":"conversation_started","user_id":"a","timestamp":"2024-03-01T10:00:00Z","properties":{"channel":"web"}},
                  {"event_name":"conversation_ended","user_id":"a","timestamp":"2024-03-01T10:10:00Z","properties":{"resolved":true}},
                  {"event_name":"conversation_started","user_id":"b","timestamp":"2024-03-01T11:00:00Z","properties":{"channel":"sms"}},
                  {"event_name":"conversation_ended","user_id":"b","timestamp":"2024-03-01T11:10:00Z","properties":{"resolved":false}}
                ]}
                """
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(events))
            let query = """
                {"steps":[{"name":"start","event":"conversation_started"},
                          {"name":"resolved","event":"conversation_ended","filters":[{"property":"resolved","operator":"=","value":true}]}],
                 "date_range":{"start":"2024-03-01","end":"2024-03-01"}}
                """
            let response = try await client.execute(uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(query))
            let steps = try #require((try json(response)["funnel"] as? [String: Any])?["steps"] as? [[String: Any]])
            #expect(steps.map { $0["users"] as? Int } == [2, 1])
        }
    }
}
