import Benchmark
import Foundation
import QueryEngine

// Scan-kernel benchmarks of the public query API: `AggregationEngine.run` over a real
// compacted project of 2,000,000 events in 10 day blocks (see `ScanProject`), with the column
// cache warm, so what is measured is the vector scan (select, filter, group, aggregate) and the
// merge of the per-block partials, not disk reads or decompression. Each query runs on one
// thread (`threads: 1`: the per-core figure) and on every core. One iteration is one query over
// every row; the custom `rows/s` metric is rows scanned (all 2M events, whatever the filter
// keeps) divided by that query's wall clock. See README.md for how to run and the numbers.

/// `.instructions` and `.cpuTotal` are left out for the reasons given in IngestBenchmarks.
let rowsPerSecond = BenchmarkMetric.custom("rows/s", polarity: .prefersLarger, useScalingFactor: false)
let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal, rowsPerSecond]

/// Shared state built in a benchmark's setup and dropped in its teardown.
final class Fixture<State>: @unchecked Sendable {
    // @unchecked: set in setup and read by the benchmark closure on the runner's thread, never
    // concurrently.
    var state: State?
    var value: State { state! }
}

/// The project every benchmark of this process scans. The plugin runs each benchmark in a
/// process of its own, so in practice it is built once per benchmark.
let project = Fixture<ScanProject>()

/// The five scans, from the cheapest (one dictionary code per row into a dense counter) to
/// the ones that gather a property value or set a bit per row.
let scans: [(label: String, query: AggregateQuery)] = {
    var filtered = AggregateQuery(eventName: "message_sent", groupBy: [.botId], aggregate: .average("response_time_ms"))
    filtered.filters = [PropertyFilter(property: "channel", op: .equals, value: .string("slack"))]
    return [
        ("count by event_name", AggregateQuery(groupBy: [.eventName], aggregate: .count)),
        ("count of message_sent by UTC day", AggregateQuery(eventName: "message_sent", groupBy: [.period(.day)], aggregate: .count)),
        ("avg response_time_ms of message_sent where channel = slack, by bot_id", filtered),
        (
            "p50/p95/p99 response_time_ms by channel",
            AggregateQuery(groupBy: [.property("channel")], aggregate: .percentiles("response_time_ms", [0.5, 0.95, 0.99]))
        ),
        ("distinct users by event_name", AggregateQuery(groupBy: [.eventName], aggregate: .distinctUsers)),
    ]
}()

/// Builds the project unless this process already has it.
func buildProject() async throws -> ScanProject {
    if let built = project.state { return built }
    let built = try await ScanProject()
    project.state = built
    let snapshot = built.snapshot
    print("")
    print(
        "project: \(ScanProject.eventCount) events in \(snapshot.blocks.count) blocks, \(snapshot.people.count) users; "
            + "append \(String(format: "%.1f", built.appendSeconds)) s, compaction \(String(format: "%.1f", built.compactSeconds)) s"
    )
    return built
}

/// One line of a result, for the setup report: the first groups and their values.
func summary(_ result: AggregateResult) -> String {
    let shown = result.rows.prefix(4).map { row in
        row.keys.joined(separator: ",") + "=" + row.values.map { String(format: "%.1f", $0) }.joined(separator: "/")
    }
    return "\(result.rows.count) groups: " + shown.joined(separator: " ") + (result.rows.count > 4 ? " ..." : "")
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        timeUnits: .automatic,
        units: [rowsPerSecond: .mega],
        warmupIterations: 3,
        scalingFactor: .one,
        maxDuration: .seconds(3),
        maxIterations: 1_000
    )

    for (label, query) in scans {
        for threads in [1, nil] as [Int?] {
            let name = "Scan: \(label) (\(threads == nil ? "all cores" : "1 thread"))"
            Benchmark(name) { benchmark in
                let snapshot = project.value.snapshot
                for _ in benchmark.scaledIterations {
                    let start = ContinuousClock.now
                    let result = try! AggregationEngine.run(query, on: snapshot, threads: threads)
                    let seconds = ScanProject.seconds(since: start)
                    precondition(result.rowsScanned == ScanProject.eventCount)
                    benchmark.measurement(rowsPerSecond, Int(Double(result.rowsScanned) / seconds))
                    blackHole(result)
                }
            } setup: {
                let built = try await buildProject()
                // Warm the column cache (and check the answer) with one run before measuring.
                let result = try AggregationEngine.run(query, on: built.snapshot, threads: threads)
                print("\(label): \(summary(result))")
            } teardown: {
                project.state?.remove()
                project.state = nil
            }
        }
    }
}
