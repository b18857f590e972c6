import ColumnStore
import EventLog
import BenchmarkSupport
import Foundation
import Logging
import QueryEngine

/// A real project on disk, shaped like ten days of chat-bot traffic: events appended to an
/// `EventLog` in 1,000-event batches, all of them compacted into block files (one per UTC day),
/// and a `QuerySnapshot` of the result. Built once per benchmark process, outside measurement.
///
/// The data (SplitMix64, fixed seed): 2,000,000 events from 2025-06-01T00:00Z to
/// 2025-06-11T00:00Z, evenly spread in time, from 20,000 users (`user_<n>`, one session per
/// user and day). Each event has one of 8 names (skewed: `message_received` and `message_sent`
/// 30 % each, `page_view` 15 %, ...), a `bot_id` of 3, and the string properties `channel` (5
/// values, fixed per user) and `plan` (3 values, fixed per user). `message_sent` events also
/// carry the integer `response_time_ms` (mostly 40–440, a tenth of them up to 5 s).
final class ScanProject: @unchecked Sendable {
    // @unchecked: built in setup and only read afterwards (the snapshot is immutable).
    static let eventCount = 2_000_000
    static let userCount = 20_000
    static let days = 10
    /// 2025-06-01T00:00:00Z in µs.
    static let firstDay: Int64 = 1_748_736_000_000_000
    static let microsPerDay: Int64 = 86_400_000_000

    static let eventNames = [
        "message_received", "message_sent", "page_view", "conversation_started", "conversation_ended",
        "button_clicked", "handoff_requested", "feedback_submitted",
    ]
    static let eventWeights = [30, 30, 15, 8, 7, 6, 2, 2]
    static let bots = ["support_bot", "sales_bot", "onboarding_bot"]
    static let channels = ["web", "ios", "android", "slack", "whatsapp"]
    static let plans = ["free", "pro", "enterprise"]
    static let planWeights = [70, 25, 5]

    let directory: String
    let log: EventLog
    let store: ColumnStore
    let snapshot: QuerySnapshot
    /// What building took, for the setup report.
    let appendSeconds: Double
    let compactSeconds: Double

    init() async throws {
        let base = ProcessInfo.processInfo.environment["TALLY_BENCH_DIR"] ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("tally-bench-query-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.removeItem(atPath: directory)
        var logger = Logger(label: "tally.bench")
        logger.logLevel = .critical
        var configuration = EventLog.Configuration()
        configuration.fsync = false  // a throwaway project: durability is not what is measured
        log = try EventLog.open(directory: directory + "/log", configuration: configuration, logger: logger)
        store = try ColumnStore.open(directory: directory + "/blocks", logger: logger)

        var clock = ContinuousClock.now
        try await Self.appendEvents(to: log)
        appendSeconds = Self.seconds(since: clock)

        clock = ContinuousClock.now
        var options = CompactionOptions()
        options.maxEventsPerRound = Self.eventCount
        // Keep every day on the hot codec (LZ4), as for recent data; warm queries read the
        // decoded column cache either way.
        options.coldAfterDays = 100_000
        while try store.compact(log: log, options: options) != nil {}
        compactSeconds = Self.seconds(since: clock)

        snapshot = try QuerySnapshot(store: store, log: log)
        precondition(snapshot.publishedBlocks == snapshot.blocks.count, "events left in the log tail")
        let rows = snapshot.blocks.reduce(0) { $0 + $1.rows }
        precondition(rows == Self.eventCount, "the blocks hold \(rows) events, not \(Self.eventCount)")
    }

    /// Generates the events in time order and appends them in 1,000-event LZ4 batches.
    static func appendEvents(to log: EventLog) async throws {
        var rng = SplitMix64(state: 0x7A11_5CA9)
        let eventCumulative = cumulative(eventWeights)
        let planCumulative = cumulative(planWeights)
        let userChannel = (0..<userCount).map { _ in channels[rng.below(channels.count)] }
        let userPlan = (0..<userCount).map { _ in plans[rng.weighted(planCumulative)] }
        let userIds = (0..<userCount).map { "user_\($0)" }
        let messageSent = eventNames.firstIndex(of: "message_sent")!
        // Evenly spread over the days: event i falls in its own slot of `step` µs.
        let step = Int64(days) * microsPerDay / Int64(eventCount)
        let builder = BatchBuilder()
        for i in 0..<eventCount {
            let user = rng.below(userCount)
            let name = rng.weighted(eventCumulative)
            let timestamp = firstDay + Int64(i) * step + Int64(rng.below(Int(step)))
            let day = (timestamp - firstDay) / microsPerDay
            var properties = [Property("channel", .string(userChannel[user])), Property("plan", .string(userPlan[user]))]
            if name == messageSent {
                let tail = rng.below(10) == 0 ? rng.below(5_000) : 0
                properties.append(Property("response_time_ms", .int(Int64(40 + rng.below(400) + tail))))
            }
            builder.append(
                Event(
                    name: eventNames[name], timestamp: timestamp, receivedAt: timestamp + 1_000_000, userId: userIds[user],
                    sessionId: "s_\(user)_\(day)", botId: bots[rng.below(bots.count)], properties: properties))
            if builder.eventCount == 1_000 || i == eventCount - 1 {
                _ = try await log.append(try builder.seal(codec: .lz4))
            }
        }
    }

    static func cumulative(_ weights: [Int]) -> [Int] {
        var total = 0
        return weights.map {
            total += $0
            return total
        }
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Closes the log and removes the project directory.
    func remove() {
        log.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
