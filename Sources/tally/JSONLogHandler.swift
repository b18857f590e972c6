import EventLog
import Logging

/// Writes one JSON object per log line to stderr: time, level, label, message and metadata,
/// for log shippers that parse structured logs.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let out = OutputBuffer(capacity: 256)
        let w = JSONWriter(out)
        w.raw(#"{"time":"#)
        w.string(Timestamp.format(currentMicros()))
        w.raw(#","level":"#)
        w.string(event.level.rawValue)
        w.raw(#","label":"#)
        w.string(label)
        w.raw(#","message":"#)
        w.string(event.message.description)
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            w.raw(",")
            w.key(key)
            w.string(value.description)
        }
        w.raw("}\n")
        out.bytes.withMemoryRebound(to: UInt8.self) { FileHandleWriter.stderr($0) }
    }
}
