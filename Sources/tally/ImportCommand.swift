import AnalyticsServer
import ArgumentParser
import EventLog
import Logging
import Synchronization

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load NDJSON event files (plain, .lz4 or .zst) into a project's log.",
        discussion: "The server must not be running on the same data directory. Each line is one event in the Track Event schema.")

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Project id; created if it does not exist.") var project = "default"
    @Flag(help: "Stop at the first bad line instead of reporting and skipping it.") var strict = false
    @Option(help: "Codec of the written batches: lz4 or zstd.") var codec = "lz4"
    @Option(help: "Zstd level, or LZ4 acceleration (default: zstd 1, lz4 2).") var level: Int32?
    @Option(help: "Parallel parse/compress workers (default: one per core).") var workers: Int?
    @Flag(help: "No progress bar, even on a terminal.") var quiet = false
    @Argument(help: "NDJSON files.") var files: [String]

    func run() async throws {
        guard let codec = Codec(name: codec) else { throw CLIError("--codec: \"\(self.codec)\" is not lz4, zstd or none") }
        for file in files where !FileIO.exists(file) { throw CLIError("\(file): no such file") }
        var logger = Logger(label: "tally.import")
        logger.logLevel = .warning
        let store = try MetadataStore(path: try metadataPath(data.path, create: true))
        try store.createProject(project)
        let log = try EventLog.open(directory: ProjectLogs.logDirectory(dataDirectory: data.path, project: project), logger: logger)
        defer { log.close() }
        let importer = NDJSONImporter(codec: codec, codecLevel: level, workers: workers)
        let bar = ProgressBar(enabled: !quiet && standardErrorIsTerminal)
        let started = monotonicNanos()
        var total = ImportProgress()
        let badLines = Mutex(0)
        for file in files {
            let result = try importer.importFile(
                file, into: log, strict: strict,
                onBadLine: { bad in
                    let shown = badLines.withLock { n in
                        n += 1
                        return n
                    }
                    if shown <= 100 { bar.message("bad line: \(bad)") } else if shown == 101 { bar.message("(more bad lines not shown)") }
                },
                onProgress: { p in bar.update(file: file, progress: p, startedNanos: started) })
            total.events += result.events
            total.duplicates += result.duplicates
            total.badLines += result.badLines
            total.inputBytes += result.inputBytes
        }
        log.close()
        bar.finish()
        let seconds = Double(monotonicNanos() - started) / 1e9
        let logBytes = (try? SegmentName.list(in: log.directory))?.compactMap { FileIO.fileSize(path: log.directory + "/" + $0.name) }.reduce(0, +) ?? 0
        print(
            "imported \(total.events) events (\(total.duplicates) duplicate event_ids skipped, \(total.badLines) bad lines) "
                + "from \(formatBytes(total.inputBytes)) in \(String(format1(seconds))) s: "
                + "\(Int(Double(total.events) / max(seconds, 1e-9))) events/s, \(formatBytes(Int(Double(total.inputBytes) / max(seconds, 1e-9))))/s; "
                + "log now \(formatBytes(logBytes))")
        if total.badLines > 0 && strict { throw ExitCode(1) }
    }
}

func format1(_ v: Double) -> String {
    let r = (v * 10).rounded() / 10
    return String(r)
}

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
        v /= 1024
        u += 1
    }
    return u == 0 ? "\(n) B" : format1(v) + " " + units[u]
}

/// A one-line progress bar on stderr, redrawn at most ten times a second.
final class ProgressBar: Sendable {
    let enabled: Bool
    private let lastDraw = Mutex<UInt64>(0)

    init(enabled: Bool) { self.enabled = enabled }

    func update(file: String, progress p: ImportProgress, startedNanos: UInt64) {
        guard enabled else { return }
        let now = monotonicNanos()
        let draw = lastDraw.withLock { last -> Bool in
            guard now - last > 100_000_000 else { return false }
            last = now
            return true
        }
        guard draw else { return }
        let seconds = max(Double(now - startedNanos) / 1e9, 1e-3)
        let fraction = p.fileBytesTotal > 0 ? min(1, Double(p.fileBytesRead) / Double(p.fileBytesTotal)) : 0
        let width = 30
        let filled = Int(fraction * Double(width))
        let eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0
        let line =
            "\r\u{1B}[K[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
            + "\(Int(fraction * 100))% \(p.events) events, \(Int(Double(p.events) / seconds)) ev/s, "
            + "\(formatBytes(Int(Double(p.inputBytes) / seconds)))/s, ETA \(Int(eta)) s"
        printErrorRaw(line)
    }

    func message(_ text: String) {
        if enabled { printErrorRaw("\r\u{1B}[K") }
        printError(text)
    }

    func finish() {
        if enabled { printErrorRaw("\r\u{1B}[K") }
    }
}

func printErrorRaw(_ text: String) {
    var t = text
    t.withUTF8 { FileHandleWriter.stderr($0) }
}
