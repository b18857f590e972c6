public import ColumnStore
public import EventLog
import Logging
public import QueryEngine

/// A project on disk for engine tests: events appended to a log in batches, part of them
/// compacted into blocks, the rest left in the log tail, so that both sources are read.
public struct TestProject {
    public let directory = TemporaryDirectory()
    public let log: EventLog
    public let store: ColumnStore
    /// The events as appended, with their sequence numbers.
    public var events: [Event] = []

    public init() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        log = try EventLog.open(directory: directory.path + "/log", logger: logger)
        store = try ColumnStore.open(directory: directory.path + "/blocks", logger: logger)
    }

    /// Appends `new` in batches of `batchSize` events.
    public mutating func add(_ new: [Event], batchSize: Int = 50) async throws {
        var start = 0
        while start < new.count {
            let slice = Array(new[start..<min(start + batchSize, new.count)])
            let builder = BatchBuilder()
            for e in slice { builder.append(e) }
            let first = try await log.append(try builder.seal(codec: .lz4))
            for (i, var e) in slice.enumerated() {
                e.sequence = first + UInt64(i)
                events.append(e)
            }
            start += batchSize
        }
    }

    /// Compacts the log into blocks, `limit` events per round at most.
    public func compact(limit: Int = .max) throws {
        var options = CompactionOptions()
        options.maxEventsPerRound = max(1, limit)
        _ = try store.compact(log: log, options: options)
    }

    public func snapshot() throws -> QuerySnapshot { try QuerySnapshot(store: store, log: log) }
}
