import Benchmark
import EventLog
import Foundation
import Synchronization

// Microbenchmarks of Tally's ingest path, on one realistic batch: 1,000 events of ~250 bytes of
// JSON each (see `EventCorpus`). Benchmarks whose unit of work is one 1k-event batch use the
// `.kilo` scaling factor, so the scaled (`*`) throughput column reads directly as events/s and
// the scaled wall clock as time per event. See README.md for how to run and the numbers.

/// Metrics of every benchmark. `.instructions` is left out: on Linux it needs a hardware PMU
/// (`/sys/bus/event_source/devices/cpu`), which the 2-core VMs this project runs on do not expose,
/// so the column would stay empty. Add it back with `--metric instructions` on bare metal.
/// `.cpuTotal` is left out too: its 10 ms resolution is coarser than one iteration.
let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

/// Custom metric for the concurrent append benchmark, whose unit of work is 8 batches.
let eventsPerSecond = BenchmarkMetric.custom("events/s", polarity: .prefersLarger, useScalingFactor: false)

/// Shared state built in a benchmark's setup and dropped in its teardown.
final class Fixture<State>: @unchecked Sendable {
    // @unchecked: set in setup and read by the benchmark closure on the runner's thread, never
    // concurrently.
    var state: State?
    var value: State { state! }
}

/// A fresh log in a temporary directory, with commit statistics collected from `onCommit`.
final class LogFixture: Sendable {
    struct Totals {
        var commits = 0
        var batches = 0
        var events = 0
        var bytes = 0
        var fsyncNanoseconds: UInt64 = 0
    }

    final class Counters: Sendable {
        let totals = Mutex(Totals())
    }

    let directory: String
    let log: EventLog
    let counters = Counters()
    let ndjsonBytesPerBatch: Int

    init(label: String, corpus: EventCorpus) throws {
        let base = ProcessInfo.processInfo.environment["TALLY_BENCH_DIR"] ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("tally-bench-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.removeItem(atPath: directory)
        let counters = self.counters
        ndjsonBytesPerBatch = corpus.ndjson.count
        var configuration = EventLog.Configuration()
        configuration.fsync = true
        log = try EventLog.open(directory: directory, configuration: configuration) { stats in
            counters.totals.withLock {
                $0.commits += 1
                $0.batches += stats.batches
                $0.events += stats.events
                $0.bytes += stats.bytes
                $0.fsyncNanoseconds += stats.fsyncNanoseconds
            }
        }
    }

    /// Closes the log, prints what group commit did and how big the log is against the JSON
    /// it holds, and removes the directory.
    func finish(_ name: String) {
        log.close()
        let t = counters.totals.withLock { $0 }
        var onDisk = 0
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for file in names {
                let path = (directory as NSString).appendingPathComponent(file)
                onDisk += ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
        guard t.commits > 0 else { return }
        let json = Double(t.batches * ndjsonBytesPerBatch)
        print("")
        print(
            "\(name): \(t.batches) batches (\(t.events) events) in \(t.commits) group commits = "
                + "\(String(format: "%.2f", Double(t.batches) / Double(t.commits))) batches per fdatasync, "
                + "mean fdatasync \(String(format: "%.2f", Double(t.fsyncNanoseconds) / Double(t.commits) / 1e6)) ms; "
                + "batch frames \(String(format: "%.1f", Double(t.bytes) / json * 100))% and log directory "
                + "\(String(format: "%.1f", Double(onDisk) / json * 100))% of the NDJSON appended"
        )
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        timeUnits: .automatic,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 100_000
    )

    // 1. The ingest CPU path: tokenize the request body with simdjson, validate every event and
    //    encode it into the batch builder's records (no compression, no I/O).
    do {
        struct State {
            let corpus: EventCorpus
            let tokenizer: JSONTokenizer
            let encoder: EventEncoder
            let builder: BatchBuilder
        }
        let fixture = Fixture<State>()
        Benchmark("JSON parse + validate + encode (1k-event batch)") { benchmark in
            let s = fixture.value
            s.corpus.body.withUnsafeBytes { body in
                s.builder.reset()
                let n = try! encodeBatch(
                    body,
                    tokenizer: s.tokenizer,
                    encoder: s.encoder,
                    builder: s.builder,
                    receivedAt: s.corpus.receivedAt
                )
                precondition(n == s.corpus.eventCount)
                blackHole(s.builder.records.count)
            }
        } setup: {
            let corpus = EventCorpus()
            fixture.state = State(
                corpus: corpus,
                tokenizer: JSONTokenizer(),
                encoder: EventEncoder(limits: IngestLimits()),
                builder: BatchBuilder()
            )
            print("")
            print(
                "corpus: \(corpus.eventCount) events, request body \(corpus.body.count) B, "
                    + "\(String(format: "%.1f", corpus.jsonBytesPerEvent)) B of JSON per event"
            )
        } teardown: {
            fixture.state = nil
        }
    }

    // 2. simdjson alone, through the C shim: the floor under benchmark 1.
    do {
        struct State {
            let corpus: EventCorpus
            let tokenizer: JSONTokenizer
        }
        let fixture = Fixture<State>()
        Benchmark("JSON tokenize only (simdjson shim)") { benchmark in
            let s = fixture.value
            s.corpus.body.withUnsafeBytes { body in
                let tokens = try! s.tokenizer.parse(body)
                blackHole(tokens.count(tokens.root))
            }
        } setup: {
            fixture.state = State(corpus: EventCorpus(), tokenizer: JSONTokenizer())
        } teardown: {
            fixture.state = nil
        }
    }

    // 3. Sealing a batch: compress the encoded records of 1,000 events, checksum the payload
    //    and build the frame. Refilling the builder (a memcpy) is outside the measurement.
    for (codec, label) in [(Codec.lz4, "LZ4"), (Codec.zstd, "Zstd level 1")] {
        let fixture = Fixture<EncodedBatch>()
        Benchmark("Batch seal: \(label)") { benchmark in
            let encoded = fixture.value
            encoded.refill()
            benchmark.startMeasurement()
            let batch = try! encoded.builder.seal(codec: codec, level: 1)
            benchmark.stopMeasurement()
            blackHole(batch)
        } setup: {
            let corpus = EventCorpus()
            let encoded = try EncodedBatch(corpus)
            fixture.state = encoded
            if codec == .lz4 { try printCompressionReport(corpus, encoded) }
        } teardown: {
            fixture.state = nil
        }
    }

    // 4. Durable append: one prepared (LZ4) batch per iteration, acknowledged after write +
    //    fdatasync on the log's writer thread.
    do {
        let fixture = Fixture<(LogFixture, PreparedBatch)>()
        let name = "Log append with fsync (1k-event batch)"
        Benchmark(name, configuration: .init(warmupIterations: 5)) { benchmark in
            let (logFixture, batch) = fixture.value
            _ = try! await logFixture.log.append(batch)
        } setup: {
            let corpus = EventCorpus()
            let batch = try EncodedBatch(corpus).seal(.lz4)
            fixture.state = (try LogFixture(label: "append1", corpus: corpus), batch)
        } teardown: {
            fixture.state?.0.finish(name)
            fixture.state = nil
        }
    }

    // 4b. Eight requests appending at once: the writer thread writes every queued batch with one
    //     write and one fdatasync (group commit). One iteration is 8 batches = 8,000 events, so
    //     throughput counts rounds and the custom `events/s` metric gives the event rate.
    do {
        let appenders = 8
        let fixture = Fixture<(LogFixture, [PreparedBatch])>()
        let name = "Log append with fsync (8 concurrent appenders x 1k-event batch)"
        Benchmark(
            name,
            configuration: .init(
                metrics: metrics + [eventsPerSecond],
                units: [eventsPerSecond: .kilo],
                warmupIterations: 5,
                scalingFactor: .one
            )
        ) { benchmark in
            let (logFixture, batches) = fixture.value
            let log = logFixture.log
            let start = ContinuousClock.now
            await withTaskGroup(of: Void.self) { group in
                for batch in batches {
                    group.addTask { _ = try! await log.append(batch) }
                }
            }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let events = batches.reduce(0) { $0 + $1.eventCount }
            benchmark.measurement(eventsPerSecond, Int(Double(events) / seconds))
        } setup: {
            let corpus = EventCorpus()
            let encoded = try EncodedBatch(corpus)
            let batches = try (0..<appenders).map { _ in try encoded.seal(.lz4) }
            fixture.state = (try LogFixture(label: "append8", corpus: corpus), batches)
        } teardown: {
            fixture.state?.0.finish(name)
            fixture.state = nil
        }
    }
}
