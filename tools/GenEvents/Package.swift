// swift-tools-version: 6.1
// gen-events: a deterministic generator of realistic NDJSON analytics events for Tally.
// Standalone on purpose (no dependencies, not part of the server's package): run it through
// the wrapper `tools/gen-events`, which builds it in release mode on first use.
import PackageDescription

let package = Package(
    name: "GenEvents",
    products: [
        .executable(name: "gen-events", targets: ["GenEvents"])
    ],
    targets: [
        .executableTarget(
            name: "GenEvents",
            swiftSettings: [
                // The hot path is byte copying and integer formatting over raw pointers.
                .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"], .when(configuration: .release))
            ]
        )
    ]
)
