// swift-tools-version: 6.1
import PackageDescription

/// Strict concurrency and the upcoming features, turned on for every Swift target in one place.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "tally",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tally", targets: ["tally"]),
        .library(name: "EventLog", targets: ["EventLog"]),
        .library(name: "ColumnStore", targets: ["ColumnStore"]),
        .library(name: "QueryEngine", targets: ["QueryEngine"]),
        .library(name: "SQL", targets: ["SQL"]),
        .library(name: "AnalyticsServer", targets: ["AnalyticsServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        // Thin shims over the system's C libraries (Debian: liblz4-dev, libzstd-dev, libsimdjson-dev).
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // CRC-32C on the CPU's instruction, chosen at run time.
        .target(name: "CCRC32C", cSettings: [.unsafeFlags(["-O3"])]),
        // A cache prefetch hint, which Swift lacks (one inline function).
        .target(name: "CPrefetch"),
        .target(
            name: "CSimdJSON",
            cxxSettings: [.unsafeFlags(["-O3", "-std=c++17"])],
            linkerSettings: [.linkedLibrary("simdjson")]
        ),

        .target(
            name: "EventLog",
            dependencies: [
                "CLZ4", "CZstd", "CSimdJSON", "CCRC32C",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ColumnStore",
            dependencies: ["EventLog", "CPrefetch", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "QueryEngine",
            dependencies: ["EventLog", "ColumnStore"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SQL",
            dependencies: ["EventLog", "ColumnStore", "QueryEngine"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AnalyticsServer",
            dependencies: [
                "EventLog", "ColumnStore", "QueryEngine", "SQL",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "tally",
            dependencies: [
                "EventLog", "ColumnStore", "QueryEngine", "SQL", "AnalyticsServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "TallyTestSupport",
            dependencies: ["EventLog", "ColumnStore", "QueryEngine", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TallyTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventLogTests",
            dependencies: ["EventLog", "TallyTestSupport", "CLZ4", "CZstd", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ColumnStoreTests",
            dependencies: ["ColumnStore", "EventLog", "TallyTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "QueryEngineTests",
            dependencies: ["QueryEngine", "ColumnStore", "EventLog", "TallyTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SQLTests",
            dependencies: [
                "SQL", "QueryEngine", "ColumnStore", "EventLog", "TallyTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AnalyticsServerTests",
            dependencies: [
                "AnalyticsServer", "EventLog", "ColumnStore",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    cxxLanguageStandard: .cxx17
)
