import Foundation
import Logging

/// Deletes the files of segments the log has already let go of, on a thread of its own.
///
/// One removal runs at a time, in the order they were asked for: a later one waits for the
/// one before, so the directory is never fsynced before an earlier unlink. A failed unlink is
/// kept and thrown by the next `wait` (the compactor's next round, `tally compact` at its
/// end, `close`), so it is reported where a synchronous delete would have thrown it.
final class SegmentRemover: @unchecked Sendable {
    // Unchecked: `running` and `failure` are only touched under `condition`.
    private let directory: String
    private let logger: Logger
    private let condition = NSCondition()
    private var running = false
    private var failure: (any Error)?

    init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    /// Starts deleting `names` (then fsyncs the directory) once earlier removals are done.
    func remove(_ names: [String], limit: UInt64) {
        condition.lock()
        while running { condition.wait() }
        running = true
        condition.unlock()
        let thread = Thread { [self] in
            var error: (any Error)?
            do {
                for name in names { try FileIO.unlink(directory + "/" + name) }
                try FileIO.fsyncDirectory(directory)
                logger.info("removed compacted log segments", metadata: ["segments": "\(names.count)", "before": "\(limit)"])
            } catch let e {
                error = e
            }
            condition.lock()
            if failure == nil { failure = error }
            running = false
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "tally-segment-remover"
        thread.start()
    }

    /// Waits for the removal in progress, then throws (and forgets) the first failure.
    func wait() throws {
        condition.lock()
        while running { condition.wait() }
        let error = failure
        failure = nil
        condition.unlock()
        if let error { throw error }
    }
}
