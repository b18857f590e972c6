public import EventLog

/// Everything `tally serve` can be told, from flags or `TALLY_*` environment variables.
public struct ServerConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    /// One directory holds everything: `meta.sqlite` and `projects/<id>/log/`.
    public var dataDirectory = "./tally-data"
    public var log = EventLog.Configuration()
    public var ingest = IngestLimits()
    /// Codec of batches written by the HTTP ingest path.
    public var codec: Codec = .lz4
    public var rateLimits = RateLimitConfiguration()
    /// How often idempotency snapshots are written and API keys re-read, in seconds.
    public var maintenanceIntervalSeconds = 2
    /// When logs are compacted into blocks in the background.
    public var compaction = CompactionSettings()
    /// How long funnels, cohorts, conversation, user and realtime analytics may run before
    /// they are cancelled (422 `timeout`).
    public var analyticsTimeoutSeconds = 30.0
    /// Limits of POST /query.
    public var sql = SQLSettings()
    /// Decoded columns kept between queries, at most (`memoryTargetBytes` may leave less).
    /// Smaller than the command-line default (512 MiB); warm queries over a working set larger
    /// than this decode again.
    public var columnCacheBytes = 256 << 20
    /// The resident memory the column cache keeps the server under: the cache holds at most
    /// what the id dictionaries, the idempotency index and running queries leave below it.
    /// Nil: the cache's own budget only.
    public var memoryTargetBytes: Int? = 640 << 20

    public init() {}
}
