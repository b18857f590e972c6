import AnalyticsServer
import ColumnStore
import ArgumentParser
import EventLog
import Foundation
import Logging
import NIOCore

@main
struct Tally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "A self-hosted analytics server for chat bots and products.",
        subcommands: [Serve.self, Keys.self, Import.self, Compact.self, Dump.self, Query.self, Bench.self, Log.self, Blocks.self, BaselineServe.self],
        defaultSubcommand: Serve.self)
}

/// Reads `TALLY_<NAME>` for options not given on the command line.
func environment(_ name: String) -> String? {
    ProcessInfo.processInfo.environment["TALLY_" + name]
}

struct DataDirectoryOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory (env TALLY_DATA_DIR; default ./tally-data).")
    var dataDir: String?

    var path: String { dataDir ?? environment("DATA_DIR") ?? "./tally-data" }
}

/// A failure the CLI reports as one line on stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

func parseSize(_ text: String) -> Int? {
    let lower = text.lowercased()
    let units: [(String, Int)] = [("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10), ("b", 1)]
    for (suffix, scale) in units where lower.hasSuffix(suffix) {
        return Int(lower.dropLast(suffix.count)).map { $0 * scale }
    }
    return Int(lower)
}

func parseDuration(_ text: String) -> Int? {
    let lower = text.lowercased()
    let units: [(String, Int)] = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)]
    for (suffix, scale) in units where lower.hasSuffix(suffix) {
        return Int(lower.dropLast(suffix.count)).map { $0 * scale }
    }
    return Int(lower)
}

func makeLogger(level: String?, format: String?) -> Logger {
    let levelValue = Logger.Level(rawValue: level ?? environment("LOG_LEVEL") ?? "info") ?? .info
    let json = (format ?? environment("LOG_FORMAT")) == "json"
    LoggingSystem.bootstrap { label in
        LineLogHandler(label: label, format: json ? .json : .text, logLevel: levelValue)
    }
    return Logger(label: "tally")
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the Analytics API over HTTP.")

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Address to bind (env TALLY_HOST; default 0.0.0.0).") var host: String?
    @Option(help: "Port (env TALLY_PORT; default 8080).") var port: Int?
    @Option(help: "Roll log segments at this size, e.g. 64MiB (env TALLY_SEGMENT_MAX_BYTES).") var segmentMaxBytes: String?
    @Option(help: "Roll log segments at this age, e.g. 1h (env TALLY_SEGMENT_MAX_AGE).") var segmentMaxAge: String?
    @Option(help: "Codec of ingested batches: lz4 or zstd (env TALLY_CODEC; default lz4).") var codec: String?
    @Option(help: "Remember client event_ids this long, e.g. 7d (env TALLY_IDEMPOTENCY_WINDOW).") var idempotencyWindow: String?
    @Option(help: "Group-commit delay under load, in microseconds (env TALLY_GROUP_COMMIT_DELAY_US; default 200; 0 = off).")
    var groupCommitDelay: Int?
    @Flag(help: "Do not enforce rate limits, for benchmarks (env TALLY_NO_RATE_LIMITS=1).") var noRateLimits = false
    @Option(
        name: .customLong("rate-limit"),
        help: "Override a limit: OPERATION=N/UNIT for track, batch, query, export; prefix project: for per-project (env TALLY_RATE_LIMITS, comma-separated).")
    var rateLimits: [String] = []
    @Flag(help: "Acknowledge before fsync. Unsafe: only for throwaway benchmarks.") var unsafeNoFsync = false
    @Flag(help: "Do not compact logs into blocks in the background (env TALLY_NO_COMPACTION=1).") var noCompaction = false
    @Option(help: "Compact once this many events wait in a project's log (env TALLY_COMPACT_MIN_EVENTS; default 250000).")
    var compactMinEvents: Int?
    @Option(help: "Compact once events have waited this long, e.g. 5m (env TALLY_COMPACT_MAX_AGE; default 5m).")
    var compactMaxAge: String?
    @Option(help: "How often to check whether to compact, in seconds (env TALLY_COMPACT_INTERVAL; default 5).")
    var compactInterval: Double?
    @Option(help: "Share of its time compaction works while the machine is busy with other work; 1 for no pacing (env TALLY_COMPACT_BUSY_SHARE; default 0.25).")
    var compactBusyShare: Double?
    @Option(help: "Events waiting in the log at which compaction stops yielding to a busy machine (env TALLY_COMPACT_BACKLOG_LIMIT; default 20000000).")
    var compactBacklogLimit: Int?
    @Option(help: "Recompress blocks of days older than this with zstd (env TALLY_COLD_AFTER_DAYS; default 7).")
    var coldAfterDays: Int?
    @Option(help: "Cancel funnels, cohorts and other analytics after this many seconds (env TALLY_ANALYTICS_TIMEOUT; default 30).")
    var analyticsTimeout: Double?
    @Option(help: "MiB of decoded columns kept between queries (env TALLY_COLUMN_CACHE_MB; default 256).")
    var columnCacheMb: Int?
    @Option(help: "MiB of resident memory the column cache keeps the server under; 0 for none (env TALLY_MEMORY_TARGET_MB; default 640).")
    var memoryTargetMb: Int?
    @Option(help: "The longest timeout_seconds POST /query may ask for (env TALLY_SQL_MAX_TIMEOUT; default 300).")
    var sqlMaxTimeout: Double?
    @Option(help: "Refuse SQL results with more rows than this (env TALLY_SQL_MAX_ROWS; default 100000).")
    var sqlMaxRows: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error (env TALLY_LOG_LEVEL).") var logLevel: String?
    @Option(help: "Log format: text or json (env TALLY_LOG_FORMAT).") var logFormat: String?

    func run() async throws {
        let logger = makeLogger(level: logLevel, format: logFormat)
        var config = ServerConfiguration()
        config.dataDirectory = data.path
        if let h = host ?? environment("HOST") { config.host = h }
        if let text = port.map(String.init) ?? environment("PORT") {
            guard let p = Int(text), (0...65535).contains(p) else { throw CLIError("--port: \"\(text)\" is not a port number (0-65535)") }
            config.port = p
        }
        if let text = segmentMaxBytes ?? environment("SEGMENT_MAX_BYTES") {
            guard let v = parseSize(text), v >= 4096 else { throw CLIError("--segment-max-bytes: \"\(text)\" is not a size of at least 4KiB") }
            config.log.segmentMaxBytes = v
        }
        if let text = segmentMaxAge ?? environment("SEGMENT_MAX_AGE") {
            guard let v = parseDuration(text), v > 0 else { throw CLIError("--segment-max-age: \"\(text)\" is not a duration like 30m or 1h") }
            config.log.segmentMaxAgeSeconds = v
        }
        if let text = idempotencyWindow ?? environment("IDEMPOTENCY_WINDOW") {
            guard let v = parseDuration(text), v > 0 else { throw CLIError("--idempotency-window: \"\(text)\" is not a duration like 7d") }
            config.log.idempotencyWindowSeconds = v
        }
        if let text = codec ?? environment("CODEC") {
            guard let c = Codec(name: text), c != .none else { throw CLIError("--codec: \"\(text)\" is not lz4 or zstd") }
            config.codec = c
        }
        if noRateLimits || environment("NO_RATE_LIMITS") == "1" { config.rateLimits.enabled = false }
        if noCompaction || environment("NO_COMPACTION") == "1" { config.compaction.enabled = false }
        if let text = compactMinEvents.map(String.init) ?? environment("COMPACT_MIN_EVENTS") {
            guard let v = Int(text), v > 0 else { throw CLIError("--compact-min-events: \"\(text)\" is not a positive number") }
            config.compaction.minEvents = v
        }
        if let text = compactMaxAge ?? environment("COMPACT_MAX_AGE") {
            guard let v = parseDuration(text), v >= 0 else { throw CLIError("--compact-max-age: \"\(text)\" is not a duration like 5m") }
            config.compaction.maxAgeSeconds = v
        }
        if let text = compactInterval.map({ String($0) }) ?? environment("COMPACT_INTERVAL") {
            guard let v = Double(text), v > 0, v <= 86_400 else { throw CLIError("--compact-interval: \"\(text)\" is not a number of seconds") }
            config.compaction.checkIntervalSeconds = v
        }
        if let text = compactBusyShare.map({ String($0) }) ?? environment("COMPACT_BUSY_SHARE") {
            guard let v = Double(text), v > 0, v <= 1 else { throw CLIError("--compact-busy-share: \"\(text)\" is not a share above 0 and at most 1") }
            config.compaction.busyShare = v
        }
        if let text = compactBacklogLimit.map(String.init) ?? environment("COMPACT_BACKLOG_LIMIT") {
            guard let v = Int(text), v > 0 else { throw CLIError("--compact-backlog-limit: \"\(text)\" is not a positive number of events") }
            config.compaction.backlogLimit = v
        }
        if let text = coldAfterDays.map(String.init) ?? environment("COLD_AFTER_DAYS") {
            guard let v = Int(text), v >= 0 else { throw CLIError("--cold-after-days: \"\(text)\" is not a number of days") }
            config.compaction.options.coldAfterDays = v
        }
        if let text = analyticsTimeout.map({ String($0) }) ?? environment("ANALYTICS_TIMEOUT") {
            guard let v = Double(text), v > 0 else { throw CLIError("--analytics-timeout: \"\(text)\" is not a number of seconds") }
            config.analyticsTimeoutSeconds = v
        }
        if let text = columnCacheMb.map({ String($0) }) ?? environment("COLUMN_CACHE_MB") {
            guard let v = Int(text), v >= 0, v < 1 << 20 else { throw CLIError("--column-cache-mb: \"\(text)\" is not a number of MiB") }
            config.columnCacheBytes = v << 20
        }
        if let text = memoryTargetMb.map({ String($0) }) ?? environment("MEMORY_TARGET_MB") {
            guard let v = Int(text), v >= 0, v < 1 << 30 else { throw CLIError("--memory-target-mb: \"\(text)\" is not a number of MiB") }
            config.memoryTargetBytes = v == 0 ? nil : v << 20
        }
        if let text = sqlMaxTimeout.map({ String($0) }) ?? environment("SQL_MAX_TIMEOUT") {
            guard let v = Double(text), v > 0 else { throw CLIError("--sql-max-timeout: \"\(text)\" is not a number of seconds") }
            config.sql.maxTimeoutSeconds = v
            config.sql.defaultTimeoutSeconds = min(config.sql.defaultTimeoutSeconds, v)
        }
        if let text = sqlMaxRows.map(String.init) ?? environment("SQL_MAX_ROWS") {
            guard let v = Int(text), v > 0 else { throw CLIError("--sql-max-rows: \"\(text)\" is not a positive number") }
            config.sql.maxRows = v
        }
        let overrides = rateLimits + (environment("RATE_LIMITS")?.split(separator: ",").map(String.init) ?? [])
        for text in overrides {
            var spec = text
            let perProject = spec.hasPrefix("project:")
            if perProject { spec.removeFirst("project:".count) }
            let parts = spec.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let op = RateLimitedOperation(rawValue: String(parts[0])) else {
                throw CLIError("--rate-limit: \"\(text)\" must look like batch=100/minute or project:export=10/hour")
            }
            let limit: RateLimit?
            if parts[1] == "off" {
                limit = nil
            } else {
                guard let l = RateLimit(parsing: String(parts[1])) else {
                    throw CLIError("--rate-limit: \"\(parts[1])\" must look like 100/minute or off")
                }
                limit = l
            }
            if perProject { config.rateLimits.perProject[op] = limit } else { config.rateLimits.perToken[op] = limit }
        }
        if unsafeNoFsync { config.log.fsync = false }
        if let delay = groupCommitDelay ?? environment("GROUP_COMMIT_DELAY_US").flatMap(Int.init) {
            guard (0...100_000).contains(delay) else { throw CLIError("--group-commit-delay: \(delay) must be 0-100000 µs") }
            config.log.groupCommitDelayMicros = delay
        }

        let server = try TallyServer(configuration: config, logger: logger)
        let created = try server.metadata.bootstrapIfEmpty()
        if !created.isEmpty {
            var text = "Created project \"default\" in \(config.dataDirectory).\n"
            for c in created { text += "  \(c.key.scope.rawValue) token: \(c.token)\n" }
            text += "Store these tokens now: only their hashes are kept.\n"
            text.withUTF8 { FileHandleWriter.stdout($0) }
        }
        // Open (and recover) every known project's log before taking traffic.
        for project in try server.metadata.projects() { _ = try server.logs.log(for: project) }
        logger.info("serving", metadata: ["address": "\(config.host):\(config.port)", "data_dir": "\(config.dataDirectory)"])
        do {
            try await server.run()
        } catch let error as IOError {
            throw CLIError("cannot listen on \(config.host):\(config.port): \(error)")
        }
    }
}

/// The bare-route yardstick for HTTP benchmarks; hidden from help.
struct BaselineServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline-server", abstract: "Serve a bare POST /baseline route (benchmark yardstick).", shouldDisplay: false)
    @Option var host = "127.0.0.1"
    @Option var port = 8081

    func run() async throws {
        try await BaselineServer.run(host: host, port: port)
    }
}
