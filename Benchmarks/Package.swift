// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "TallyBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tally", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        // Already a dependency of the main package; named here so the query benchmarks can
        // quiet the log and store (their info messages would interleave with the results).
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "BenchmarkSupport", path: "BenchmarkSupport"),
        .executableTarget(
            name: "IngestBenchmarks",
            dependencies: [
                .product(name: "EventLog", package: "tally"),
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkSupport",
            ],
            path: "IngestBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "ColumnStoreBenchmarks",
            dependencies: [
                .product(name: "EventLog", package: "tally"),
                .product(name: "ColumnStore", package: "tally"),
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkSupport",
            ],
            path: "ColumnStoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "QueryEngineBenchmarks",
            dependencies: [
                .product(name: "EventLog", package: "tally"),
                .product(name: "ColumnStore", package: "tally"),
                .product(name: "QueryEngine", package: "tally"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkSupport",
            ],
            path: "QueryEngineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
