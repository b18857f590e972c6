import AnalyticsServer
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct FunnelOptionsHTTPTests {
    /// u1 and u3 on plan pro, u2 on free (who cancels right after signing up), u4 without a plan.
    static let events = """
        {"events":[
          {"event_name":"signup","user_id":"u1","timestamp":"2024-01-02T10:00:00Z","properties":{"plan":"pro"}},
          {"event_name":"profile","user_id":"u1","timestamp":"2024-01-02T10:05:00Z"},
          {"event_name":"first_action","user_id":"u1","timestamp":"2024-01-02T10:10:00Z"},
          {"event_name":"signup","user_id":"u2","timestamp":"2024-01-02T10:00:00Z","properties":{"plan":"free"}},
          {"event_name":"cancel","user_id":"u2","timestamp":"2024-01-02T10:01:00Z"},
          {"event_name":"profile","user_id":"u2","timestamp":"2024-01-02T10:02:00Z"},
          {"event_name":"first_action","user_id":"u2","timestamp":"2024-01-02T10:03:00Z"},
          {"event_name":"signup","user_id":"u3","timestamp":"2024-01-03T10:00:00Z","properties":{"plan":"pro"}},
          {"event_name":"profile","user_id":"u3","timestamp":"2024-01-03T11:00:00Z"},
          {"event_name":"signup","user_id":"u4","timestamp":"2024-01-04T10:00:00Z"}
        ]}
        """

    static func funnel(_ extra: String) -> String {
        """
        {"name":"f","steps":[{"name":"signup","event":"signup"},{"name":"profile","event":"profile"},
          {"name":"first_action","event":"first_action"}],
         "date_range":{"start":"2024-01-01","end":"2024-01-31"}\(extra)}
        """
    }

    @Test func breakdownAndExclusionsChangeTheAnswerAsDocumented() async throws {
        let t = try TestServer()
        try await t.test { client in
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.events))
            func steps(_ extra: String) async throws -> ([Int], [[String: Any]]) {
                let response = try await client.execute(
                    uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(Self.funnel(extra)))
                #expect(response.status == .ok, "\(extra)")
                let funnel = try #require(try json(response)["funnel"] as? [String: Any])
                let users = (funnel["steps"] as? [[String: Any]] ?? []).compactMap { $0["users"] as? Int }
                return (users, funnel["breakdown"] as? [[String: Any]] ?? [])
            }
            #expect(try await steps("").0 == [4, 3, 2])
            let exclusion = #","exclusions":[{"event":"cancel","from_step":0,"to_step":1}]"#
            #expect(try await steps(exclusion).0 == [4, 2, 1])
            let (users, groups) = try await steps(exclusion + #","breakdown":"plan""#)
            #expect(users == [4, 2, 1])
            #expect(groups.map { $0["value"] as? String } == ["pro", "free", nil])
            #expect(groups.map { ($0["steps"] as? [[String: Any]])?.compactMap { $0["users"] as? Int } ?? [] } == [[2, 2, 1], [1, 0, 0], [1, 0, 0]])
            #expect(groups.map { $0["total_users"] as? Int } == [2, 1, 1])

            for bad in [
                #","exclusions":[{"event":"cancel","from_step":1,"to_step":1}]"#, #","exclusions":[{"from_step":0,"to_step":1}]"#,
                #","exclusions":{"event":"cancel"}"#, #","breakdown":7"#,
            ] {
                let response = try await client.execute(
                    uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(Self.funnel(bad)))
                #expect(response.status == .badRequest, "\(bad)")
                #expect(errorCode(response) == "invalid_field", "\(bad)")
            }
        }
    }

    @Test func analyticsPastTheServersDeadlineAreCancelled() async throws {
        let t = try TestServer { $0.analyticsTimeoutSeconds = 0.000_001 }
        try await t.test { client in
            _ = try await client.execute(uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken), body: body(Self.events))
            let response = try await client.execute(
                uri: "/api/v1/analytics/funnels", method: .post, headers: bearer(t.readToken), body: body(Self.funnel("")))
            #expect(response.status == .unprocessableContent)
            #expect(errorCode(response) == "timeout")
        }
    }
}
