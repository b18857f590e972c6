public import EventLog
public import Prometheus
import Synchronization

/// The counters and histograms behind `GET /metrics`, in Prometheus text format.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let eventsIngested: Counter
    let eventsRejected: Counter
    let duplicateEvents: Counter
    let batchesWritten: Counter
    let groupCommits: Counter
    let bytesWritten: Counter
    let fsyncDuration: DurationHistogram
    let eventsCompacted: Counter
    let blockBytesWritten: Counter
    struct RequestKey: Hashable {
        var route: String
        var method: String
        var status: Int
    }
    private let requestCounters = Mutex<[RequestKey: Counter]>([:])

    public init() {
        eventsIngested = registry.makeCounter(name: "tally_events_ingested_total", help: "Events made durable in the log")
        eventsRejected = registry.makeCounter(name: "tally_events_rejected_total", help: "Events refused by validation")
        duplicateEvents = registry.makeCounter(name: "tally_events_duplicate_total", help: "Events whose event_id was already stored")
        batchesWritten = registry.makeCounter(name: "tally_batches_ingested_total", help: "Batches appended to the log")
        groupCommits = registry.makeCounter(name: "tally_log_group_commits_total", help: "Write+fsync rounds of the log writers")
        bytesWritten = registry.makeCounter(name: "tally_log_bytes_written_total", help: "Bytes appended to log segments")
        eventsCompacted = registry.makeCounter(name: "tally_events_compacted_total", help: "Events moved from the log into blocks")
        blockBytesWritten = registry.makeCounter(name: "tally_block_bytes_written_total", help: "Bytes of block files written by the compactor")
        fsyncDuration = registry.makeDurationHistogram(
            name: "tally_log_fsync_seconds",
            buckets: [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
                      .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .seconds(1)],
            help: "Latency of the fdatasync that covers a group commit")
    }

    /// The hook handed to each project's log.
    public func recordCommit(_ stats: CommitStatistics) {
        groupCommits.increment()
        batchesWritten.increment(by: Int64(stats.batches))
        eventsIngested.increment(by: Int64(stats.events))
        bytesWritten.increment(by: Int64(stats.bytes))
        fsyncDuration.recordNanoseconds(Int64(stats.fsyncNanoseconds))
    }

    func recordCompaction(events: Int, bytes: Int) {
        eventsCompacted.increment(by: Int64(events))
        blockBytesWritten.increment(by: Int64(bytes))
    }

    func recordRequest(route: String, method: String, status: Int) {
        let key = RequestKey(route: route, method: method, status: status)
        let counter = requestCounters.withLock { counters in
            if let c = counters[key] { return c }
            let c = registry.makeCounter(
                name: "tally_http_requests_total", labels: [("route", route), ("method", method), ("status", String(status))])
            counters[key] = c
            return c
        }
        counter.increment()
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
