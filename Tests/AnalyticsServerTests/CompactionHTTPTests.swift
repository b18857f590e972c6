import AnalyticsServer
import ColumnStore
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Testing

@Suite struct CompactionHTTPTests {
    /// Events posted over HTTP reach the blocks through the server's background compactor,
    /// with every field intact, while the server keeps serving.
    @Test func backgroundCompactorMovesIngestedEventsIntoBlocks() async throws {
        let t = try TestServer { config in
            config.compaction.minEvents = 1
            config.compaction.checkIntervalSeconds = 0.05
            config.log.segmentMaxBytes = 4096
        }
        try await t.test { client in
            var posted = 0
            for round in 0..<5 {
                let events = (0..<40).map { i in
                    """
                    {"event_name":"message_sent","user_id":"u\(i % 7)","session_id":"s\(round)-\(i % 3)","bot_id":"bot_1",
                     "event_id":"e-\(round)-\(i)","timestamp":"2024-01-15T10:00:\(String(format: "%02d", i % 60)).5Z",
                     "properties":{"response_time_ms":\(100 + i),"topic":"billing","nested":{"ok":true}}}
                    """
                }
                let response = try await client.execute(
                    uri: "/api/v1/analytics/events/batch", method: .post, headers: bearer(t.writeToken),
                    body: body(#"{"events":[\#(events.joined(separator: ","))]}"#))
                #expect(response.status == .ok)
                posted += events.count
            }
            let log = try t.server.logs.log(for: "default")
            let store = try t.server.logs.store(for: "default")
            let deadline = Date().addingTimeInterval(20)
            while store.manifest.compactedThrough < log.durableSequence && Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(store.manifest.compactedThrough == UInt64(posted))
            let events = try store.allEvents()
            #expect(events.count == posted)
            #expect(Set(events.map(\.eventId)).count == posted)
            let sample = try #require(events.first { $0.clientEventId == "e-2-5" })
            #expect(sample.userId == "u5")
            #expect(sample.sessionId == "s2-2")
            #expect(sample.botId == "bot_1")
            #expect(sample.timestamp == Timestamp.parse("2024-01-15T10:00:05.5Z"))
            #expect(Set(sample.properties) == [
                Property("response_time_ms", .int(105)), Property("topic", .string("billing")), Property("nested.ok", .bool(true)),
            ])
            #expect(log.snapshot().segments.count < 10, "compacted segments are removed")
        }
    }
}
