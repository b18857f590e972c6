#if canImport(Glibc)
import Glibc
#endif
public import ColumnStore
import EventLog
import Foundation
import Logging

/// When the server compacts a project's log into blocks.
public struct CompactionSettings: Sendable {
    public var enabled = true
    /// Compact once this many events wait in the log…
    public var minEvents = 250_000
    /// …or once any have waited this long (seconds).
    public var maxAgeSeconds = 300
    /// How often the thresholds are checked (seconds).
    public var checkIntervalSeconds = 5.0
    /// Compaction's share of its threads' wall time while other work keeps the machine busy
    /// (1 turns pacing off); see `LoadPacer`.
    public var busyShare = 0.25
    /// Events waiting in the log at which compaction stops yielding to other work.
    public var backlogLimit = 20_000_000
    /// One thread by default: the compactor runs beside ingest and must not take its cores.
    public var options: CompactionOptions = {
        var options = CompactionOptions()
        options.threads = 1
        return options
    }()

    public init() {}
}

/// Compacts every project in the background, on a thread of its own at idle priority, so
/// that fsync-heavy ingest keeps the CPU it needs; compaction only reads the durable part of
/// the log and never holds the writer.
final class BackgroundCompactor: @unchecked Sendable {
    // Unchecked: `lastRun` and `stopping` are touched under `condition` or by the thread alone.
    let logs: ProjectLogs
    let settings: CompactionSettings
    let logger: Logger
    let metrics: ServerMetrics
    private let condition = NSCondition()
    private var stopping = false
    private var finished = false
    private var lastRun: [String: UInt64] = [:]
    private let pacer: LoadPacer?
    private let options: CompactionOptions

    init(logs: ProjectLogs, settings: CompactionSettings, logger: Logger, metrics: ServerMetrics) {
        self.logs = logs
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        var options = settings.options
        if settings.busyShare < 1 {
            let pacer = LoadPacer(busyShare: settings.busyShare, backlogLimit: settings.backlogLimit)
            options.pacer = pacer
            self.pacer = pacer
        } else {
            pacer = nil
        }
        self.options = options
    }

    func start() {
        guard settings.enabled else {
            finished = true
            return
        }
        let thread = Thread { [self] in
            // On Linux scheduling attributes are per thread, `0` names the calling one, and
            // threads it starts (the compactor's id resolver) inherit them. SCHED_IDLE runs
            // the compactor only on CPU that ingest leaves idle: at nice 10 it still took
            // two thirds of a core from a saturated ingest. Nice 10 stays as the fallback.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
            var parameters = sched_param()
            parameters.sched_priority = 0
            _ = sched_setscheduler(0, Self.schedIdle, &parameters)
            self.loop()
        }
        thread.name = "tally-compactor"
        thread.start()
    }

    /// `SCHED_IDLE` from <sched.h>, which Swift's Glibc module leaves out.
    private static let schedIdle: Int32 = 5

    /// Finishes the round in progress (a round is bounded), then returns.
    func stop() {
        pacer?.stop()
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: settings.checkIntervalSeconds)) }
            let stop = stopping
            condition.unlock()
            if stop { break }
            for project in logs.projectsOnDisk() {
                if isStopping { break }
                compactIfDue(project)
            }
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    private func compactIfDue(_ project: String) {
        do {
            let log = try logs.log(for: project)
            let store = try logs.store(for: project)
            let now = monotonicNanos()
            let last = lastRun[project] ?? now
            if lastRun[project] == nil { lastRun[project] = now }
            let pending = Int(log.durableSequence) - Int(store.manifest.compactedThrough)
            let aged = now - last >= UInt64(settings.maxAgeSeconds) * 1_000_000_000
            guard pending >= settings.minEvents || (pending > 0 && aged) else { return }
            pacer?.follow { Int(log.durableSequence) - Int(store.manifest.compactedThrough) }
            while !isStopping, let round = try store.compact(log: log, options: options) {
                metrics.recordCompaction(events: round.events, bytes: round.bytesWritten)
                logger.info(
                    "compacted",
                    metadata: [
                        "project": "\(project)", "events": "\(round.events)", "blocks_written": "\(round.blocksWritten)",
                        "blocks_replaced": "\(round.blocksReplaced)", "segments_removed": "\(round.segmentsRemoved)",
                        "through": "\(round.through)",
                    ])
                if Int(log.durableSequence) - Int(store.manifest.compactedThrough) < settings.minEvents { break }
            }
            try log.waitForSegmentRemovals()
            lastRun[project] = monotonicNanos()
        } catch {
            logger.error("compaction failed; will retry", metadata: ["project": "\(project)", "error": "\(error)"])
            lastRun[project] = monotonicNanos()
        }
    }
}
