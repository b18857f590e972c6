import CSimdJSON
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

/// Loads NDJSON event files (one event object per line, the Track Event schema) into a log.
///
/// The file is cut into chunks of whole lines; parallel workers parse, validate, encode and
/// compress chunks into batches, which the log appends with group commit. Events with an
/// `event_id` go through the idempotency index like HTTP events do, so importing a file twice
/// stores its identified events once.
public final class NDJSONImporter: Sendable {
    public let limits: IngestLimits
    public let codec: Codec
    public let codecLevel: Int32
    public let workers: Int
    public let chunkBytes: Int

    public init(limits: IngestLimits = .init(), codec: Codec = .zstd, codecLevel: Int32 = 1, workers: Int = 2, chunkBytes: Int = 4 << 20) {
        self.limits = limits
        self.codec = codec
        self.codecLevel = codecLevel
        self.workers = max(1, workers)
        self.chunkBytes = chunkBytes
    }

    struct Chunk: @unchecked Sendable {
        // Safe: each chunk's buffer is owned by exactly one worker after it is handed over.
        var bytes: UnsafeMutableRawBufferPointer  // lines plus TJ_PADDING readable bytes
        var length: Int
        var firstLine: Int
    }

    /// Imports `path` into `log`. `onBadLine` sees each rejected line; with `strict` the first
    /// one stops the import by throwing. `onProgress` is called after each chunk.
    public func importFile(
        _ path: String, into log: EventLog, strict: Bool, receivedAt: Int64 = currentMicros(),
        onBadLine: @Sendable @escaping (BadLine) -> Void, onProgress: @Sendable @escaping (ImportProgress) -> Void
    ) async throws -> ImportProgress {
        let input = ReaderOwned(input: try CompressedInput(path: path))
        let progress = SharedProgress(ImportProgress(fileBytesTotal: input.input.fileSize))
        let (stream, continuation) = AsyncStream<Chunk>.makeStream(bufferingPolicy: .unbounded)
        let fileName = path
        let limits = self.limits, codec = self.codec, level = self.codecLevel

        return try await withThrowingTaskGroup(of: Void.self) { group in
            // Bounded hand-off: the reader waits when workers fall behind.
            let slots = AsyncSemaphore(permits: workers * 2)
            group.addTask {
                defer { continuation.finish() }
                var carry: [UInt8] = []
                var line = 1
                while await slots.wait() {
                    let dataCapacity = carry.count + self.chunkBytes
                    let capacity = dataCapacity + Int(TJ_PADDING)
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
                    carry.withUnsafeBytes { if $0.count > 0 { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                    var filled = carry.count
                    carry = []
                    var atEnd = false
                    while filled < dataCapacity {
                        let n = try input.input.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<dataCapacity]))
                        if n == 0 {
                            atEnd = true
                            break
                        }
                        filled += n
                    }
                    // Keep the partial last line for the next chunk.
                    var cut = filled
                    if !atEnd {
                        while cut > 0 && buffer[cut - 1] != 0x0A { cut -= 1 }
                        if cut == 0 { cut = filled }  // a line longer than a chunk is handed over as is
                        carry = Array(buffer[cut..<filled])
                    }
                    for i in cut..<cut + Int(TJ_PADDING) { buffer[i] = 0x20 }
                    var lines = 0
                    for i in 0..<cut where buffer[i] == 0x0A { lines += 1 }
                    progress.value.withLock { $0.fileBytesRead = input.input.bytesRead }
                    if cut == 0 {
                        buffer.deallocate()
                        slots.signal()
                        break
                    }
                    continuation.yield(Chunk(bytes: buffer, length: cut, firstLine: line))
                    line += lines
                    if atEnd && carry.isEmpty { break }
                }
            }
            for _ in 0..<workers {
                group.addTask {
                    let tokenizer = JSONTokenizer()
                    let encoder = EventEncoder(limits: limits)
                    let builder = BatchBuilder()
                    for await chunk in stream {
                        defer {
                            chunk.bytes.deallocate()
                            slots.signal()
                        }
                        var keys: [BatchClientKey] = []
                        var events = 0, duplicates = 0, bad = 0
                        var start = 0
                        var lineNumber = chunk.firstLine
                        let base = UnsafeRawBufferPointer(chunk.bytes)
                        while start < chunk.length {
                            var end = start
                            while end < chunk.length && base[end] != 0x0A { end += 1 }
                            defer {
                                start = end + 1
                                lineNumber += 1
                            }
                            var lineEnd = end
                            if lineEnd > start && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                            let text = UnsafeRawBufferPointer(rebasing: base[start..<lineEnd])
                            if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                            let failure: String?
                            do {
                                let tokens = try tokenizer.parse(text, padded: true)
                                switch encoder.encode(tokens, at: 0, receivedAt: receivedAt, sentAt: nil, into: builder) {
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
                                            continue
                                        }
                                    }
                                    events += 1
                                }
                            } catch {
                                failure = "\(error)"
                            }
                            if let failure {
                                bad += 1
                                let badLine = BadLine(file: fileName, line: lineNumber, message: failure)
                                onBadLine(badLine)
                                if strict {
                                    log.idempotency.release(keys)
                                    slots.close()
                                    throw ImportError.badLine(badLine)
                                }
                            }
                        }
                        if !builder.isEmpty {
                            var batch = try builder.seal(codec: codec, level: level)
                            batch.clientKeys = keys
                            _ = try await log.append(batch)
                        }
                        let snapshot = progress.value.withLock { p -> ImportProgress in
                            p.events += events
                            p.duplicates += duplicates
                            p.badLines += bad
                            p.inputBytes += chunk.length
                            return p
                        }
                        onProgress(snapshot)
                    }
                }
            }
            try await group.waitForAll()
            return progress.value.withLock { $0 }
        }
    }
}

/// The input file, used only by the reader task.
struct ReaderOwned: @unchecked Sendable {
    // Safe: exactly one task (the chunk reader) touches the input.
    let input: CompressedInput
}

final class SharedProgress: Sendable {
    let value: Mutex<ImportProgress>
    init(_ initial: ImportProgress) { value = Mutex(initial) }
}

public enum ImportError: Error, CustomStringConvertible {
    case badLine(BadLine)
    public var description: String {
        switch self {
        case .badLine(let l): "\(l) (stopping: --strict)"
        }
    }
}

/// A counting semaphore for tasks.
final class AsyncSemaphore: Sendable {
    private let state: Mutex<(permits: Int, closed: Bool, waiters: [CheckedContinuation<Bool, Never>])>

    init(permits: Int) { state = Mutex((permits, false, [])) }

    /// Takes a permit; false once the semaphore is closed.
    func wait() async -> Bool {
        await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let ready = state.withLock { s -> Bool? in
                if s.closed { return false }
                if s.permits > 0 {
                    s.permits -= 1
                    return true
                }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Wakes every waiter with false; later waits return false at once.
    func close() {
        let waiters = state.withLock { s in
            s.closed = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: false) }
    }

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            if s.waiters.isEmpty {
                s.permits += 1
                return nil
            }
            return s.waiters.removeFirst()
        }
        waiter?.resume(returning: true)
    }
}
