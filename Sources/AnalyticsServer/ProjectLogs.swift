public import ColumnStore
public import EventLog
public import Logging
import Foundation
import Synchronization

/// The open event log of each project, opened on first use and closed at shutdown.
///
/// Each project's data lives under `<data-dir>/projects/<id>/`, so nothing one project's key
/// can reach touches another's files.
public final class ProjectLogs: Sendable {
    public let dataDirectory: String
    let configuration: EventLog.Configuration
    let logger: Logger
    let metrics: ServerMetrics
    private let logs = Mutex<[String: EventLog]>([:])
    private let stores = Mutex<[String: ColumnStore]>([:])
    // Separate locks: a store can take seconds to open (its id dictionaries), and a log
    // open, which ingest waits for, must not queue behind it.
    private let openingLog = Mutex<Void>(())
    private let openingStore = Mutex<Void>(())
    private let closed = Mutex<Bool>(false)

    public init(dataDirectory: String, configuration: EventLog.Configuration, logger: Logger, metrics: ServerMetrics) {
        self.dataDirectory = dataDirectory
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
    }

    public static func logDirectory(dataDirectory: String, project: String) -> String {
        dataDirectory + "/projects/" + project + "/log"
    }

    public static func blockDirectory(dataDirectory: String, project: String) -> String {
        dataDirectory + "/projects/" + project + "/blocks"
    }

    /// The project's log, opening (and recovering) it if this is its first use.
    public func log(for project: String) throws -> EventLog {
        if let log = logs.withLock({ $0[project] }) { return log }
        return try openingLog.withLock { _ in
            if let log = logs.withLock({ $0[project] }) { return log }
            var logger = self.logger
            logger[metadataKey: "project"] = "\(project)"
            let metrics = self.metrics
            let log = try EventLog.open(
                directory: Self.logDirectory(dataDirectory: dataDirectory, project: project), configuration: configuration,
                logger: logger, loadIdempotencyInBackground: true, onCommit: { metrics.recordCommit($0) })
            logs.withLock { $0[project] = log }
            return log
        }
    }

    public var openLogs: [EventLog] { logs.withLock { Array($0.values) } }

    /// The project's compacted blocks, opening the store if this is its first use.
    public func store(for project: String) throws -> ColumnStore {
        if let store = stores.withLock({ $0[project] }) { return store }
        return try openingStore.withLock { _ in
            if let store = stores.withLock({ $0[project] }) { return store }
            var logger = self.logger
            logger[metadataKey: "project"] = "\(project)"
            let store = try ColumnStore.open(directory: Self.blockDirectory(dataDirectory: dataDirectory, project: project), logger: logger)
            stores.withLock { $0[project] = store }
            return store
        }
    }

    /// Projects with a directory on disk, whether or not they have been opened.
    public func projectsOnDisk() -> [String] {
        let root = dataDirectory + "/projects"
        return ((try? FileIO.listDirectory(root)) ?? []).filter { FileIO.isDirectory(root + "/" + $0) }
    }

    /// Opens every project's log and then its store on a thread of its own, right after
    /// start. Recovery is quick, but a store loads and indexes the project's id dictionaries
    /// (about 5 s for 13.5 M sessions at 100 M events); done here, the first query finds
    /// them ready instead of loading them itself. A request that comes sooner waits for the
    /// same open.
    public func openAllInBackground() {
        let thread = Thread { [self] in
            for project in projectsOnDisk() where !closed.withLock({ $0 }) {
                do {
                    _ = try log(for: project)
                } catch {
                    logger.error("cannot open project log", metadata: ["project": "\(project)", "error": "\(error)"])
                }
            }
            for project in projectsOnDisk() where !closed.withLock({ $0 }) {
                do {
                    _ = try store(for: project)
                } catch {
                    logger.error("cannot open project blocks", metadata: ["project": "\(project)", "error": "\(error)"])
                }
            }
        }
        thread.name = "tally-open-projects"
        thread.start()
    }

    /// Writes idempotency snapshots of every open log.
    public func persistIdempotency() {
        for log in openLogs {
            do {
                try log.persistIdempotency()
            } catch {
                logger.warning("could not persist the idempotency index", metadata: ["error": "\(error)", "log": "\(log.directory)"])
            }
        }
    }

    /// Drains and closes every log.
    public func closeAll() {
        closed.withLock { $0 = true }
        let all = logs.withLock { l in
            defer { l = [:] }
            return Array(l.values)
        }
        for log in all { log.close() }
    }
}
