// swift-tools-version: 6.1
import PackageDescription

// A libFuzzer target for the SQL lexer, parser and binder, kept out of the main package so
// that `-sanitize=fuzzer` applies to it alone. Run it with tools/fuzz-sql/run.
let package = Package(
    name: "fuzz-sql",
    dependencies: [.package(name: "tally", path: "../..")],
    targets: [
        .executableTarget(
            name: "FuzzSQL",
            dependencies: [.product(name: "SQL", package: "tally")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
