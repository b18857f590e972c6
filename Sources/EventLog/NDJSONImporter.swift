import CSimdJSON
import Foundation
import Synchronization

/// Progress of an import, reported as it goes.
public struct ImportProgress: Sendable {
    public var events = 0
    public var duplicates = 0
    public var badLines = 0
    public var inputBytes = 0
    public var fileBytesRead = 0
    public var fileBytesTotal = 0

    public init(fileBytesTotal: Int = 0) { self.fileBytesTotal = fileBytesTotal }
}

/// A line that could not be imported.
public struct BadLine: Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public var description: String { "\(file):\(line): \(message)" }
}

public enum ImportError: Error, CustomStringConvertible {
    case badLine(BadLine)
    public var description: String {
        switch self {
        case .badLine(let l): "\(l) (stopping: --strict)"
        }
    }
}

/// Loads NDJSON event files (one event object per line, the Track Event schema) into a log.
///
/// A reader cuts the file into chunks of whole lines; worker threads (one per core by
/// default) parse, validate, encode and compress each chunk into one batch and hand it to the
/// log's writer without waiting, so parsing, compression and the fsyncs overlap. Events with
/// an `event_id` go through the idempotency index like HTTP events do, so importing a file
/// twice stores its identified events once. Batch order in the log follows chunk completion,
/// not strictly file order.
public final class NDJSONImporter: Sendable {
    public let limits: IngestLimits
    public let codec: Codec
    public let codecLevel: Int32
    public let workers: Int
    public let chunkBytes: Int

    public init(
        limits: IngestLimits = .init(), codec: Codec = .lz4, codecLevel: Int32? = nil,
        workers: Int? = nil, chunkBytes: Int = 4 << 20
    ) {
        self.limits = limits
        self.codec = codec
        self.codecLevel = codecLevel ?? codec.defaultLevel
        self.workers = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        self.chunkBytes = chunkBytes
    }

    /// A block of whole lines, followed by `TJ_PADDING` readable bytes.
    struct Chunk: @unchecked Sendable {
        // Safe: a chunk's buffer belongs to one thread at a time (reader, then one worker).
        var bytes: UnsafeMutableRawBufferPointer
        var length: Int
        var firstLine: Int
    }

    /// Shared state of one import run.
    final class Run: @unchecked Sendable {
        // Safe: every mutable field is guarded by `condition`.
        let condition = NSCondition()
        var chunks: [Chunk] = []
        var readerDone = false
        var stop = false
        var failure: (any Error)?
        var inFlightAppends = 0
        var workersRunning = 0
        var progress: ImportProgress

        init(progress: ImportProgress) { self.progress = progress }

        func fail(_ error: any Error) {
            condition.lock()
            if failure == nil { failure = error }
            stop = true
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Imports `path` into `log`, blocking the calling thread (which becomes the reader).
    /// `onBadLine` sees each rejected line; with `strict` the first one stops the import by
    /// throwing. `onProgress` is called after each chunk.
    public func importFile(
        _ path: String, into log: EventLog, strict: Bool, receivedAt: Int64 = currentMicros(),
        onBadLine: @Sendable @escaping (BadLine) -> Void, onProgress: @Sendable @escaping (ImportProgress) -> Void
    ) throws -> ImportProgress {
        let input = try CompressedInput(path: path)
        let run = Run(progress: ImportProgress(fileBytesTotal: input.fileSize))
        let maxQueued = workers * 2
        let maxInFlight = workers * 4

        run.workersRunning = workers
        for _ in 0..<workers {
            let thread = Thread { [self] in
                self.work(run: run, path: path, log: log, strict: strict, receivedAt: receivedAt, maxInFlight: maxInFlight,
                          onBadLine: onBadLine, onProgress: onProgress)
            }
            thread.name = "tally-import"
            thread.start()
        }

        var carry: [UInt8] = []
        var line = 1
        do {
            reading: while true {
                run.condition.lock()
                while run.chunks.count >= maxQueued && !run.stop { run.condition.wait() }
                let stop = run.stop
                run.condition.unlock()
                if stop { break }

                let dataCapacity = carry.count + chunkBytes
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: dataCapacity + Int(TJ_PADDING), alignment: 64)
                carry.withUnsafeBytes { if $0.count > 0 { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                var filled = carry.count
                carry = []
                var atEnd = false
                while filled < dataCapacity {
                    let n = try input.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<dataCapacity]))
                    if n == 0 {
                        atEnd = true
                        break
                    }
                    filled += n
                }
                // Keep the partial last line for the next chunk.
                var cut = filled
                if !atEnd {
                    if let lastNewline = lastIndex(of: 0x0A, in: UnsafeRawBufferPointer(rebasing: buffer[0..<filled])) {
                        cut = lastNewline + 1
                    }  // else: a line longer than a chunk is handed over as is
                    carry = Array(buffer[cut..<filled])
                }
                for i in cut..<cut + Int(TJ_PADDING) { buffer[i] = 0x20 }
                let lines = count(of: 0x0A, in: UnsafeRawBufferPointer(rebasing: buffer[0..<cut]))
                if cut == 0 {
                    buffer.deallocate()
                    break reading
                }
                run.condition.lock()
                run.chunks.append(Chunk(bytes: buffer, length: cut, firstLine: line))
                run.progress.fileBytesRead = input.bytesRead
                run.condition.broadcast()
                run.condition.unlock()
                line += lines
                if atEnd && carry.isEmpty { break }
            }
        } catch {
            run.fail(error)
        }

        run.condition.lock()
        run.readerDone = true
        run.condition.broadcast()
        while run.workersRunning > 0 || run.inFlightAppends > 0 { run.condition.wait() }
        for chunk in run.chunks { chunk.bytes.deallocate() }
        run.chunks = []
        let failure = run.failure
        let progress = run.progress
        run.condition.unlock()
        if let failure { throw failure }
        return progress
    }

    private func work(
        run: Run, path: String, log: EventLog, strict: Bool, receivedAt: Int64, maxInFlight: Int,
        onBadLine: @Sendable (BadLine) -> Void, onProgress: @Sendable (ImportProgress) -> Void
    ) {
        let tokenizer = JSONTokenizer()
        let encoder = EventEncoder(limits: limits)
        let builder = BatchBuilder()
        defer {
            run.condition.lock()
            run.workersRunning -= 1
            run.condition.broadcast()
            run.condition.unlock()
        }
        while true {
            run.condition.lock()
            while run.chunks.isEmpty && !run.readerDone && !run.stop { run.condition.wait() }
            if run.stop || run.chunks.isEmpty {
                run.condition.unlock()
                return
            }
            let chunk = run.chunks.removeFirst()
            run.condition.broadcast()
            run.condition.unlock()
            defer { chunk.bytes.deallocate() }

            var keys: [BatchClientKey] = []
            var duplicates = 0, bad = 0
            var lineNumber = chunk.firstLine
            let base = UnsafeRawBufferPointer(chunk.bytes)
            var start = 0
            builder.reset()
            while start < chunk.length {
                let rest = UnsafeRawBufferPointer(rebasing: base[start..<chunk.length])
                let end = firstIndex(of: 0x0A, in: rest).map { start + $0 } ?? chunk.length
                defer {
                    start = end + 1
                    lineNumber += 1
                }
                var lineEnd = end
                if lineEnd > start && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let text = UnsafeRawBufferPointer(rebasing: base[start..<lineEnd])
                let failure: String?
                do {
                    let tokens = try tokenizer.parse(text, padded: true)
                    switch encoder.encode(tokens, at: tokens.root, receivedAt: receivedAt, sentAt: nil, into: builder) {
                    case .failure(let e): failure = e.message
                    case .success(let event):
                        failure = nil
                        if let raw = event.clientEventId {
                            let key = IdempotencyKey(raw)
                            if case .reserved = log.idempotency.reserve(key) {
                                keys.append(BatchClientKey(key: key, index: UInt32(builder.eventCount - 1), timestamp: event.timestamp))
                            } else {
                                builder.removeLast(recordStart: event.recordStart)
                                duplicates += 1
                            }
                        }
                    }
                } catch {
                    // Blank lines are allowed between events.
                    failure = text.allSatisfy { $0 == 0x20 || $0 == 0x09 } ? nil : "\(error)"
                }
                if let failure {
                    bad += 1
                    let badLine = BadLine(file: path, line: lineNumber, message: failure)
                    onBadLine(badLine)
                    if strict {
                        log.idempotency.release(keys)
                        run.fail(ImportError.badLine(badLine))
                        return
                    }
                }
            }
            let events = builder.eventCount
            if events > 0 {
                let batch: PreparedBatch
                do {
                    batch = try builder.seal(codec: codec, level: codecLevel)
                } catch {
                    log.idempotency.release(keys)
                    run.fail(error)
                    return
                }
                var withKeys = batch
                withKeys.clientKeys = keys
                run.condition.lock()
                while run.inFlightAppends >= maxInFlight && !run.stop { run.condition.wait() }
                run.inFlightAppends += 1
                run.condition.unlock()
                log.append(withKeys) { result in
                    if case .failure(let error) = result { run.fail(error) }
                    run.condition.lock()
                    run.inFlightAppends -= 1
                    run.condition.broadcast()
                    run.condition.unlock()
                }
            }
            run.condition.lock()
            run.progress.events += events
            run.progress.duplicates += duplicates
            run.progress.badLines += bad
            run.progress.inputBytes += chunk.length
            let snapshot = run.progress
            run.condition.unlock()
            onProgress(snapshot)
        }
    }
}

@inline(__always)
func firstIndex(of byte: UInt8, in bytes: UnsafeRawBufferPointer) -> Int? {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
    guard let found = memchr(base, Int32(byte), bytes.count) else { return nil }
    return UnsafeRawPointer(found) - base
}

@inline(__always)
func lastIndex(of byte: UInt8, in bytes: UnsafeRawBufferPointer) -> Int? {
    var i = bytes.count - 1
    while i >= 0 {
        if bytes[i] == byte { return i }
        i -= 1
    }
    return nil
}

func count(of byte: UInt8, in bytes: UnsafeRawBufferPointer) -> Int {
    var n = 0
    var rest = bytes
    while let i = firstIndex(of: byte, in: rest) {
        n += 1
        rest = UnsafeRawBufferPointer(rebasing: rest[(i + 1)...])
    }
    return n
}
