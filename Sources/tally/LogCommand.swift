import AnalyticsServer
import ArgumentParser
import EventLog

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect a project's event log.", subcommands: [Verify.self, Dump.self])

    struct Target: ParsableArguments {
        @OptionGroup var data: DataDirectoryOption
        @Option(help: "Project id.") var project = "default"
        @Option(help: "A log directory to use instead of the project's.") var dir: String?

        var directory: String { dir ?? ProjectLogs.logDirectory(dataDirectory: data.path, project: project) }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every batch's framing, checksums and sequence numbers; exits 1 on corruption.")
        @OptionGroup var target: Target

        func run() throws {
            let result = try LogVerifier.verify(directory: target.directory)
            for problem in result.problems { printError(problem.description) }
            print("\(result.segments) segments, \(result.batches) batches, \(result.events) events, \(result.bytes) bytes: "
                + (result.problems.isEmpty ? "OK" : "\(result.problems.count) problem(s)"))
            if !result.problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print events as NDJSON, in sequence order.")
        @OptionGroup var target: Target
        @Option(help: "First sequence number to print.") var from: UInt64 = 0
        @Option(help: "Stop after this many events.") var limit: Int?

        func run() throws {
            var reader = try LogReader.offline(directory: target.directory, from: from)
            let out = OutputBuffer(capacity: 1 << 20)
            var printed = 0
            while let event = try reader.next() {
                if let limit, printed >= limit { break }
                writeNDJSON(event, into: out)
                printed += 1
                if out.count > 1 << 19 { flush(out) }
            }
            flush(out)
        }
    }
}

func flush(_ out: OutputBuffer) {
    out.bytes.withMemoryRebound(to: UInt8.self) { FileHandleWriter.stdout($0) }
    out.removeAll()
}

/// One event in the Track Event schema, plus `sequence`, `received_at` and `event_id`.
func writeNDJSON(_ event: Event, into out: OutputBuffer) {
    let w = JSONWriter(out)
    w.raw(#"{"sequence":"#)
    w.int(Int64(bitPattern: event.sequence))
    w.raw(#","event_id":"#)
    w.string(event.eventId)
    w.raw(#","event_name":"#)
    w.string(event.name)
    w.raw(#","timestamp":"#)
    w.string(Timestamp.format(event.timestamp))
    w.raw(#","received_at":"#)
    w.string(Timestamp.format(event.receivedAt))
    for (key, value) in [("user_id", event.userId), ("anonymous_id", event.anonymousId), ("session_id", event.sessionId), ("bot_id", event.botId)] {
        if let value {
            w.raw(",")
            w.key(key)
            w.string(value)
        }
    }
    w.raw(#","properties":{"#)
    for (i, p) in event.properties.enumerated() {
        if i > 0 { w.raw(",") }
        w.key(p.key)
        if case .json(let text) = p.value { w.raw(text) } else { w.value(p.value) }
    }
    w.raw("}}\n")
}
