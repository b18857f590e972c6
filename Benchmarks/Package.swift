// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "TallyBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tally", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "IngestBenchmarks",
            dependencies: [
                .product(name: "EventLog", package: "tally"),
                .product(name: "Benchmark", package: "benchmark"),
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
            ],
            path: "ColumnStoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
