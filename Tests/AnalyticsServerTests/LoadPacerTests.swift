import AnalyticsServer
import ColumnStore
import EventLog
import Foundation
import Synchronization
import Testing

@Suite struct LoadPacerTests {
    /// A stand-in for /proc/stat: busy CPU time that grows as the test says.
    final class MachineClock: Sendable {
        let busyNanos = Mutex<UInt64>(0)
        func add(_ nanos: UInt64) { busyNanos.withLock { $0 += nanos } }
        var probe: @Sendable () -> UInt64? { { self.busyNanos.withLock { $0 } } }
    }

    /// Waits out a sampling interval while work other than compaction keeps `busyCPUs` of the
    /// machine's CPUs busy. The interval is long beside the work the tests report, which the
    /// pacer takes off the busy time.
    func elapse(_ machine: MachineClock, busyCPUs: Double, interval: UInt64 = 100_000_000) {
        let start = monotonicNanos()
        usleep(useconds_t(interval / 1000))
        machine.add(UInt64(Double(monotonicNanos() - start) * busyCPUs))
    }

    @Test func aBusyMachineMakesCompactionSleepForItsShare() {
        let machine = MachineClock()
        let pacer = LoadPacer(busyShare: 0.5, backlogLimit: 1_000_000, cpus: 2, sampleNanos: 10_000_000, probe: machine.probe)
        elapse(machine, busyCPUs: 2)
        let start = monotonicNanos()
        pacer.pause(afterWorking: 30_000_000)
        #expect(pacer.isBusy)
        // Working half its time, a thread that worked 30 ms sleeps 30 ms.
        #expect(monotonicNanos() - start >= 29_000_000)
    }

    @Test func anIdleMachineLetsCompactionRun() {
        let machine = MachineClock()
        let pacer = LoadPacer(busyShare: 0.1, backlogLimit: 1_000_000, cpus: 2, sampleNanos: 10_000_000, probe: machine.probe)
        elapse(machine, busyCPUs: 0.2)
        pacer.pause(afterWorking: 10_000_000)
        #expect(!pacer.isBusy)
    }

    /// The CPU compaction itself uses shows in /proc/stat too; it is not load to yield to.
    @Test func compactionsOwnWorkIsNotCountedAsLoad() {
        let machine = MachineClock()
        let pacer = LoadPacer(busyShare: 0.5, backlogLimit: 1_000_000, cpus: 2, sampleNanos: 10_000_000, probe: machine.probe)
        let start = monotonicNanos()
        usleep(20_000)
        let elapsed = monotonicNanos() - start
        // Both CPUs busy, all of it compaction.
        machine.add(2 * elapsed)
        pacer.pause(afterWorking: 2 * elapsed)
        #expect(!pacer.isBusy)
        // The same busy time with compaction reporting none of it is load.
        elapse(machine, busyCPUs: 2)
        pacer.pause(afterWorking: 0)
        #expect(pacer.isBusy)
    }

    @Test func theShareRisesWithTheBacklogToNoPausesAtTheLimit() {
        let machine = MachineClock()
        let pacer = LoadPacer(busyShare: 0.2, backlogLimit: 1_000, cpus: 2, sampleNanos: 10_000_000, probe: machine.probe)
        #expect(pacer.share == 0.2)
        pacer.follow { 500 }
        #expect(abs(pacer.share - 0.6) < 1e-9)
        pacer.follow { 5_000 }
        #expect(pacer.share == 1)
        elapse(machine, busyCPUs: 2)
        pacer.pause(afterWorking: 10_000_000)
        #expect(pacer.isBusy, "the machine is busy; only the backlog lifted the pause")
    }

    /// A stopping server must not wait out a pause: `stop` ends the ones in progress.
    @Test func stopEndsAPauseInProgress() async throws {
        let machine = MachineClock()
        let pacer = LoadPacer(busyShare: 0.001, backlogLimit: 1_000_000, cpus: 2, sampleNanos: 10_000_000, probe: machine.probe)
        elapse(machine, busyCPUs: 2)
        final class Flag: Sendable {
            private let value = Atomic<Bool>(false)
            var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
            func set() { value.store(true, ordering: .sequentiallyConsistent) }
        }
        let returned = Flag()
        let thread = Thread {
            pacer.pause(afterWorking: 50_000_000)  // a pause of 50 s
            returned.set()
        }
        thread.start()
        try await Task.sleep(for: .milliseconds(50))
        #expect(!returned.isSet)
        pacer.stop()
        let deadline = Date().addingTimeInterval(10)
        while !returned.isSet && Date() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(returned.isSet)
    }

    @Test func procStatIsReadForBusyTicks() {
        let text = "cpu  100 5 30 9000 40 2 3 7 0 0\ncpu0 50 2 15 4500 20 1 1 3 0 0\n"
        #expect(LoadPacer.parseBusyTicks(ArraySlice(text.utf8)) == 140)
        #expect(LoadPacer.parseBusyTicks(ArraySlice("intr 1 2 3\n".utf8)) == nil)
        #expect(LoadPacer.parseBusyTicks(ArraySlice("cpu  1 2 x 4 5 6 7\n".utf8)) == nil)
        #expect(LoadPacer.parseBusyTicks(ArraySlice("cpu  1 2\n".utf8)) == nil)
        #expect(LoadPacer.machineBusyNanos() != nil, "this machine has /proc/stat")
    }
}
