import AnalyticsServer
import ArgumentParser
import ColumnStore
import EventLog
import Logging

/// Where a project's log and blocks live, from `--data-dir` and `--project`.
struct ProjectOption: ParsableArguments {
    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Project id.") var project = "default"

    var logDirectory: String { ProjectLogs.logDirectory(dataDirectory: data.path, project: project) }
    var blockDirectory: String { ProjectLogs.blockDirectory(dataDirectory: data.path, project: project) }

    func requireProject() throws {
        guard FileIO.isDirectory(logDirectory) || FileIO.isDirectory(blockDirectory) else {
            throw CLIError("project \"\(project)\" has no data in \(data.path)")
        }
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a project's log into per-day columnar blocks.",
        discussion: "The server must not be running on the same data directory; it compacts in the background itself.")

    @OptionGroup var target: ProjectOption
    @Option(help: "Codec for recent days: lz4 or zstd.") var codec = "lz4"
    @Option(help: "Days after which blocks are recompressed with zstd.") var coldAfterDays = 7
    @Flag(help: "Keep every block in the --codec codec, however old its day.") var noRecompress = false
    @Option(help: "Events read from the log per round.") var roundEvents = 2_000_000
    @Option(help: "Threads that read and encode (default: one per core).") var threads: Int?
    @Flag(help: "No progress bar, even on a terminal.") var quiet = false

    func run() throws {
        try target.requireProject()
        guard let recent = Codec(name: codec), recent != .none else { throw CLIError("--codec: \"\(codec)\" is not lz4 or zstd") }
        guard roundEvents > 0 else { throw CLIError("--round-events must be positive") }
        if let threads, !(1...16).contains(threads) { throw CLIError("--threads: \(threads) is not between 1 and 16") }
        guard coldAfterDays >= 0 else { throw CLIError("--cold-after-days must be 0 or more (use --no-recompress to keep --codec)") }
        var options = CompactionOptions()
        options.codec = recent
        options.maxEventsPerRound = roundEvents
        if let threads { options.threads = threads }
        options.coldAfterDays = coldAfterDays
        if noRecompress { options.coldCodec = recent }
        var logger = Logger(label: "tally.compact")
        logger.logLevel = .warning
        let log = try EventLog.open(directory: target.logDirectory, logger: logger)
        defer { log.close() }
        let store = try ColumnStore.open(directory: target.blockDirectory, logger: logger)
        let start = store.manifest.compactedThrough
        let end = log.durableSequence
        let started = monotonicNanos()
        let showProgress = !quiet && standardErrorIsTerminal
        var total = CompactionRound()
        while let round = try store.compact(log: log, options: options) {
            total.events += round.events
            total.blocksWritten += round.blocksWritten
            total.blocksReplaced += round.blocksReplaced
            total.bytesWritten += round.bytesWritten
            total.segmentsRemoved += round.segmentsRemoved
            total.readNanos += round.readNanos
            total.mergeNanos += round.mergeNanos
            total.encodeNanos += round.encodeNanos
            total.writeNanos += round.writeNanos
            if showProgress {
                let done = Double(store.manifest.compactedThrough - start) / Double(max(end - start, 1))
                let seconds = Double(monotonicNanos() - started) / 1e9
                let width = 30
                let filled = Int(done * Double(width))
                printErrorRaw(
                    "\r[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] "
                        + "\(Int(done * 100))% \(total.events) events, \(Int(Double(total.events) / max(seconds, 1e-9))) events/s\u{1B}[K")
            }
        }
        try log.waitForSegmentRemovals()
        if showProgress { printError("") }
        let seconds = Double(monotonicNanos() - started) / 1e9
        print(
            "compacted \(total.events) events in \(format1(seconds)) s (\(Int(Double(total.events) / max(seconds, 1e-9))) events/s): "
                + "\(total.blocksWritten) blocks written, \(total.blocksReplaced) replaced, \(formatBytes(total.bytesWritten)); "
                + "\(total.segmentsRemoved) log segments removed; compacted through sequence \(store.manifest.compactedThrough)\n"
                + "time: read \(format1(Double(total.readNanos) / 1e9)) s, merge \(format1(Double(total.mergeNanos) / 1e9)) s, "
                + "encode \(format1(Double(total.encodeNanos) / 1e9)) s, write \(format1(Double(total.writeNanos) / 1e9)) s")
    }
}

struct Blocks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect a project's columnar blocks.", subcommands: [Verify.self, Stats.self, Dump.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the manifest, every block's framing and chunk checksums, and every column; exits 1 on corruption.")
        @OptionGroup var target: ProjectOption

        func run() throws {
            try target.requireProject()
            let result = try BlockVerifier.verify(directory: target.blockDirectory)
            for problem in result.problems { printError(problem.description) }
            print("\(result.blocks) blocks, \(result.rows) rows, \(result.bytes) bytes: "
                + (result.problems.isEmpty ? "OK" : "\(result.problems.count) problem(s)"))
            if !result.problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per day: blocks, rows, bytes and bytes per event; per column: encoding, codec and compression.")
        @OptionGroup var target: ProjectOption
        @Option(help: "Show the column table for this day only (YYYY-MM-DD).") var day: String?
        @Flag(help: "Skip the per-day table.") var columnsOnly = false

        func run() throws {
            try target.requireProject()
            let store = try ColumnStore.open(directory: target.blockDirectory, logger: Logger(label: "tally.blocks"))
            let snapshot = store.snapshot()
            var onlyDay: Int32? = nil
            if let day {
                guard let micros = Timestamp.parse(day + "T00:00:00Z") else { throw CLIError("--day: \"\(day)\" is not a date like 2026-08-01") }
                onlyDay = BlockBuilder.day(ofMicros: micros)
            }
            print(BlockStatistics(snapshot: snapshot, directory: target.blockDirectory, onlyDay: onlyDay).render(perDay: !columnsOnly))
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the events in blocks as NDJSON, block by block.")
        @OptionGroup var target: ProjectOption
        @Option(help: "Stop after this many events.") var limit: Int?

        func run() throws {
            try target.requireProject()
            let store = try ColumnStore.open(directory: target.blockDirectory, logger: Logger(label: "tally.blocks"))
            try dumpBlocks(store, limit: limit)
        }
    }
}

/// Every stored event of a project: the blocks, then the log past what they hold.
struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print every stored event of a project as NDJSON: compacted blocks, then the log tail.")
    @OptionGroup var target: ProjectOption

    func run() throws {
        try target.requireProject()
        let store = try ColumnStore.open(directory: target.blockDirectory, logger: Logger(label: "tally.blocks"))
        try dumpBlocks(store, limit: nil)
        guard FileIO.isDirectory(target.logDirectory) else { return }
        var reader = try LogReader.offline(directory: target.logDirectory, from: store.manifest.compactedThrough)
        let out = OutputBuffer(capacity: 1 << 20)
        while let event = try reader.next() {
            writeNDJSON(event, into: out)
            if out.count > 1 << 19 { flush(out) }
        }
        flush(out)
    }
}

func dumpBlocks(_ store: ColumnStore, limit: Int?) throws {
    let snapshot = store.snapshot()
    let out = OutputBuffer(capacity: 1 << 20)
    var printed = 0
    for block in snapshot.blocks {
        let events = try store.withDictionaries { try block.events(users: $0.users.table, sessions: $0.sessions.table) }
        for event in events {
            if let limit, printed >= limit { break }
            writeNDJSON(event, into: out)
            printed += 1
            if out.count > 1 << 19 { flush(out) }
        }
    }
    flush(out)
}
