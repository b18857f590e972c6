#if canImport(Glibc)
import Glibc
#endif
import ColumnStore
import EventLog
import Foundation

/// Paces the background compactor by how busy the machine is, so that a burst of ingest gets
/// the CPU and compaction catches up once it has passed.
///
/// While work other than compaction keeps at least `busyThreshold` of the machine's CPUs busy,
/// each compaction thread sleeps after each stretch of work long enough that it works only
/// `busyShare` of its wall time. The share rises with the backlog, to 1 at `backlogLimit`
/// events waiting in the log: under load that never ends, compaction goes back to taking
/// whatever CPU is idle, rather than let the log (and the tail every query scans) grow
/// without bound. This is the policy of PostgreSQL's cost-based vacuum delay and of
/// RocksDB's compaction rate limiter, driven by measured load rather than a fixed budget.
package final class LoadPacer: CompactionPacer, @unchecked Sendable {
    // Unchecked: every var is read and written under `condition`.
    package let busyShare: Double
    package let backlogLimit: Int
    /// The machine counts as busy while other work uses this share of all its CPUs.
    package static let busyThreshold = 0.5
    /// How often the machine's load is sampled.
    let sampleNanos: UInt64

    private let condition = NSCondition()
    private let probe: @Sendable () -> UInt64?
    private let cpus: Int
    private var stopped = false
    private var backlog = 0
    private var backlogProbe: (@Sendable () -> Int)?
    private var sampledAt: UInt64
    private var sampledBusyNanos: UInt64?
    /// Compaction CPU reported since the last sample, to tell it apart from the other work.
    private var compactionNanos: UInt64 = 0
    private var busy = false

    /// `probe` gives the CPU time all CPUs have spent busy, in nanoseconds, or nil when it
    /// cannot be read (then the machine never counts as busy).
    package init(
        busyShare: Double, backlogLimit: Int, cpus: Int = ProcessInfo.processInfo.activeProcessorCount,
        sampleNanos: UInt64 = 200_000_000, probe: @escaping @Sendable () -> UInt64? = LoadPacer.machineBusyNanos
    ) {
        self.busyShare = busyShare
        self.backlogLimit = backlogLimit
        self.cpus = max(1, cpus)
        self.probe = probe
        self.sampleNanos = sampleNanos
        sampledAt = monotonicNanos()
        sampledBusyNanos = probe()
    }

    /// Sets where the backlog the share is scaled by comes from: the events waiting in the
    /// log, read at every load sample. A round under a burst lasts long, and its share must
    /// rise as the backlog does, not stay what it was when the round began.
    package func follow(backlog probe: @escaping @Sendable () -> Int) {
        condition.lock()
        backlogProbe = probe
        backlog = probe()
        condition.unlock()
    }

    /// Ends every pause now and every later one at once: a stopping server finishes its round
    /// at full speed.
    package func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Compaction's share of its threads' wall time while the machine is busy.
    package var share: Double {
        condition.lock()
        defer { condition.unlock() }
        return currentShare
    }

    private var currentShare: Double {
        busyShare + (1 - busyShare) * min(1, Double(backlog) / Double(max(1, backlogLimit)))
    }

    package var isBusy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return busy
    }

    package func pause(afterWorking cpuNanos: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return }
        compactionNanos += cpuNanos
        let now = monotonicNanos()
        if now &- sampledAt >= sampleNanos {
            let machine = probe()
            if let machine, let before = sampledBusyNanos, machine >= before {
                let others = Double(machine - before) - Double(compactionNanos)
                busy = others >= Self.busyThreshold * Double(now &- sampledAt) * Double(cpus)
            } else {
                busy = false
            }
            sampledAt = now
            sampledBusyNanos = machine
            compactionNanos = 0
            if let backlogProbe { backlog = backlogProbe() }
        }
        let share = currentShare
        guard busy, share < 1 else { return }
        let until = Date(timeIntervalSinceNow: Double(cpuNanos) * (1 - share) / share / 1e9)
        while !stopped && condition.wait(until: until) {}
    }

    /// Busy CPU time of all CPUs from /proc/stat's first line: user, nice, system, irq and
    /// softirq. Idle, iowait and steal (time the hypervisor gave elsewhere) are not busy.
    @Sendable package static func machineBusyNanos() -> UInt64? {
        let fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return parseBusyTicks(buffer[0..<count]).map { $0 * UInt64(1_000_000_000 / max(1, sysconf(Int32(_SC_CLK_TCK)))) }
    }

    /// The busy ticks in the `cpu` line at the start of /proc/stat's text.
    package static func parseBusyTicks(_ text: ArraySlice<UInt8>) -> UInt64? {
        guard let line = text.split(separator: UInt8(ascii: "\n"), maxSplits: 1).first else { return nil }
        let fields = line.split(separator: UInt8(ascii: " "))
        guard fields.count >= 8, fields[0].elementsEqual("cpu".utf8) else { return nil }
        var ticks: [UInt64] = []
        for field in fields[1...7] {
            guard let value = UInt64(String(decoding: field, as: UTF8.self)) else { return nil }
            ticks.append(value)
        }
        // user nice system idle iowait irq softirq
        return ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    }
}
