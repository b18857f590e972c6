#if canImport(Glibc)
import Glibc
#endif

/// Lets whoever runs a compaction hold it back between units of work.
///
/// The server compacts on the cores that serve ingest. Idle scheduling priority alone is not
/// enough on a small VM: a compaction thread that takes CPU ingest leaves idle still slows
/// ingest by a tenth or more (a shell busy loop at idle priority does the same), so the
/// server's pacer makes compaction sleep for part of each stretch of work while the machine is
/// busy. Compaction calls `pause(afterWorking:)` from each of its threads between units small
/// enough (a log batch, a block chunk) for the pauses to come evenly; `tally compact` passes
/// no pacer and runs flat out.
public protocol CompactionPacer: Sendable {
    /// Called from a compaction thread that has used `cpuNanos` of CPU since its previous
    /// call; returns when the thread may go on.
    func pause(afterWorking cpuNanos: UInt64)
}

/// One compaction thread's CPU since it last offered to pause.
///
/// CPU time rather than wall time: a compaction thread at idle priority spends much of its
/// wall time waiting for the CPU under load, and that waiting is not work to pace.
struct PacedWork {
    let pacer: (any CompactionPacer)?
    private var since: UInt64

    /// Work shorter than this is not offered: a pause per log batch would cost a clock read
    /// and a lock per millisecond for nothing.
    static let sliceNanos: UInt64 = 10_000_000

    init(_ pacer: (any CompactionPacer)?) {
        self.pacer = pacer
        since = pacer == nil ? 0 : threadCPUNanos()
    }

    mutating func checkpoint() {
        guard let pacer else { return }
        let now = threadCPUNanos()
        guard now &- since >= Self.sliceNanos else { return }
        pacer.pause(afterWorking: now &- since)
        since = threadCPUNanos()
    }
}

/// CPU time the calling thread has used, in nanoseconds.
public func threadCPUNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
