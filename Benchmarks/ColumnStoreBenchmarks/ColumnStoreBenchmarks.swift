import Benchmark
import ColumnStore
import EventLog
import Foundation

/// A block of one million events shaped like a day of bot traffic: a skewed event name on
/// every row, a topic on conversation rows only, and timestamps in per-person runs.
final class BlockFixture: @unchecked Sendable {
    let block: BlockFile
    let rows: Int

    init(rows: Int = 1_000_000) throws {
        let directory = NSTemporaryDirectory() + "tally-bench-" + UUID().uuidString
        try FileIO.makeDirectories(directory)
        let dictionaries = ProjectDictionaries(
            users: try GlobalDictionary.open(path: directory + "/users.dict"),
            sessions: try GlobalDictionary.open(path: directory + "/sessions.dict"))
        let names = [
            "message_received", "message_sent", "message_received", "message_sent", "conversation_started",
            "conversation_ended", "page_view", "page_view", "search", "button_clicked", "fallback_triggered", "handoff",
            "purchase_completed", "user_registered", "profile_completed",
        ]
        let topics = ["billing", "shipping", "returns", "account", "orders", "technical", "pricing", "feedback"]
        var state: UInt64 = 42
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var builder = BlockBuilder(day: 20_300)
        let out = OutputBuffer()
        let dayStart: Int64 = 20_300 * 86_400_000_000
        for i in 0..<rows {
            let user = Int(next() % 20_000)
            let name = names[Int(next() % UInt64(names.count))]
            var properties: [Property] = []
            if name.hasPrefix("message") || name.hasPrefix("conversation") {
                properties.append(Property("topic", .string(topics[user % topics.count])))
            }
            let event = Event(
                name: name, timestamp: dayStart + Int64(next() % 86_400_000) * 1000, receivedAt: dayStart + 86_400_000_000,
                userId: "user_\(user)", sessionId: "sess_\(user)_\(i % 7)", properties: properties)
            out.removeAll()
            EventRecord.encode(event, into: out)
            try builder.append(recordBody: UnsafeRawBufferPointer(rebasing: out.bytes[4...]), sequence: UInt64(i))
        }
        try builder.resolveGlobalIds(dictionaries)
        let (bytes, _) = try builder.finish(codec: .lz4, level: 1, dictionaries: dictionaries)
        let path = directory + "/bench.blk"
        try FileIO.writeAtomically(bytes.toArray(), to: path)
        block = try BlockFile(path: path)
        // The open block keeps its descriptor, so the files can go now: nothing is left in
        // the temporary directory after a run, however it ends.
        try? FileManager.default.removeItem(atPath: directory)
        self.rows = rows
    }

    func column(_ name: String, property: Bool = false) -> ColumnDescriptor {
        block.footer.columns.first { $0.name == name && $0.isProperty == property }!
    }
}

let benchmarks: @Sendable () -> Void = {
    let fixture = try! BlockFixture()
    // One iteration decodes one million-row column: throughput × 1M is rows per second, and
    // with one-byte codes rows per second is bytes per second.
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 1000)

    Benchmark("Decode dictionary codes: event_name, 1M rows, u8", configuration: configuration) { benchmark in
        let d = fixture.column("event_name")
        for _ in benchmark.scaledIterations { blackHole(try fixture.block.decode(d)) }
    }
    Benchmark("Decode dictionary codes with nulls: properties.topic, 1M rows", configuration: configuration) { benchmark in
        let d = fixture.column("topic", property: true)
        for _ in benchmark.scaledIterations { blackHole(try fixture.block.decode(d)) }
    }
    Benchmark("Decode timestamps (runs), 1M rows", configuration: configuration) { benchmark in
        let d = fixture.column("timestamp")
        for _ in benchmark.scaledIterations { blackHole(try fixture.block.decode(d)) }
    }
    Benchmark("Decode user ids (project ids), 1M rows", configuration: configuration) { benchmark in
        let d = fixture.column("user_id")
        for _ in benchmark.scaledIterations { blackHole(try fixture.block.decode(d)) }
    }
}
