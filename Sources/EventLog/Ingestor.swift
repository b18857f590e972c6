import CSimdJSON
import Synchronization

/// A request-level rejection: the whole body is refused. `status` is the HTTP status the
/// server maps it to.
public struct IngestRequestError: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// Thrown by `Ingestor.prepare` when the request carries client `event_id`s and the index is
/// still loading: await `IdempotencyIndex.waitUntilReady()` and prepare again.
public struct IdempotencyIndexNotReady: Error {}

/// The fate of one event of a request, in request order.
public enum IngestedEventResult: Sendable, Equatable {
    /// Stored now: its id and stored timestamp.
    case stored(id: EventIdentifier, timestamp: Int64, clamped: Bool)
    /// Its `event_id` was already stored: the stored copy's id and timestamp.
    case duplicate(id: String, timestamp: Int64)
    case rejected(IngestError)
}

/// Parsing, validation and encoding state borrowed by one request.
final class IngestWorkspace {
    let tokenizer = JSONTokenizer()
    let builder = BatchBuilder()
    let encoder: EventEncoder

    init(limits: IngestLimits) { encoder = EventEncoder(limits: limits) }
}

struct SendableWorkspace: @unchecked Sendable {
    // Safe: a parked workspace is owned by the pool's mutex alone.
    let workspace: IngestWorkspace
}

/// Turns request bodies into durable events: parse, validate each event, reserve client ids,
/// compress once, append with group commit, and report per-event results.
public final class Ingestor: Sendable {
    public let limits: IngestLimits
    public let codec: Codec
    /// Zstd level or LZ4 acceleration.
    public let codecLevel: Int32
    /// Batches whose records take fewer bytes are stored uncompressed.
    public static let smallBatchBytes = 512
    private let pool = Mutex<[SendableWorkspace]>([])

    public init(limits: IngestLimits = .init(), codec: Codec = .lz4, codecLevel: Int32? = nil) {
        self.limits = limits
        self.codec = codec
        self.codecLevel = codecLevel ?? codec.defaultLevel
    }

    private func withWorkspace<R>(_ body: (IngestWorkspace) throws -> R) rethrows -> R {
        let workspace = pool.withLock { $0.popLast() }?.workspace ?? IngestWorkspace(limits: limits)
        defer {
            workspace.builder.reset()
            pool.withLock { if $0.count < 64 { $0.append(SendableWorkspace(workspace: workspace)) } }
        }
        return try body(workspace)
    }

    enum Pending: Sendable {
        case new(recordIndex: UInt32, clientId: String?, timestamp: Int64, clamped: Bool)
        case duplicate(IdempotencyIndex.Entry, String)
        case waiting(IdempotencyIndex.InFlight, String)
        case rejected(IngestError)
    }

    /// A parsed and encoded request, not yet appended.
    public struct PreparedRequest: Sendable {
        var pending: [Pending]
        var batch: PreparedBatch?
        let index: IdempotencyIndex
    }

    /// Checks the body size limit of the endpoint.
    public func checkBodySize(_ count: Int, batch: Bool) throws(IngestRequestError) {
        if batch {
            guard count <= limits.maxBatchBytes else {
                throw IngestRequestError(status: 413, code: "payload_too_large", message: "batch body is \(count) bytes; the limit is \(limits.maxBatchBytes)")
            }
        } else if count > limits.maxEventBytes {
            throw IngestRequestError(status: 413, code: "event_too_large", message: "event body is \(count) bytes; the limit is \(limits.maxEventBytes)")
        }
    }

    /// Parses and validates the body of `POST /events` (`batch: false`) or
    /// `POST /events/batch`, reserves client ids and compresses the batch. Synchronous and
    /// CPU-bound; the returned request must be passed to `complete`, which releases its reserved
    /// ids if the append fails.
    public func prepare(body: UnsafeRawBufferPointer, batch: Bool, for log: EventLog, receivedAt: Int64 = currentMicros()) throws
        -> PreparedRequest
    {
        try checkBodySize(body.count, batch: batch)
        let (pending, prepared) = try withWorkspace { ws in
            try prepare(body: body, batch: batch, receivedAt: receivedAt, index: log.idempotency, ws)
        }
        return PreparedRequest(pending: pending, batch: prepared, index: log.idempotency)
    }

    /// Appends a prepared request and returns once its events are durable, with each event's
    /// result in request order.
    public func complete(_ request: PreparedRequest, into log: EventLog) async throws -> [IngestedEventResult] {
        var firstSequence: UInt64 = 0
        if let batch = request.batch {
            firstSequence = try await log.append(batch)
        }
        var results: [IngestedEventResult] = []
        results.reserveCapacity(request.pending.count)
        for p in request.pending {
            if case .waiting(let inFlight, let id) = p {
                if let entry = await inFlight.wait() {
                    results.append(.duplicate(id: id, timestamp: entry.timestamp))
                } else {
                    results.append(.rejected(IngestError("storage_failed", "another request with event_id \"\(id)\" failed to store it; retry")))
                }
            } else {
                results.append(Self.result(p, firstSequence: firstSequence))
            }
        }
        return results
    }

    /// `complete` for a caller that is not an async task (the server's ingest fast path): the
    /// results go to `completion`, on the log's writer thread when there was something to
    /// append. A request that waits on another request's event ids takes the async path.
    public func complete(
        _ request: PreparedRequest, into log: EventLog,
        completion: @escaping @Sendable (Result<[IngestedEventResult], any Error>) -> Void
    ) {
        let waits = request.pending.contains { if case .waiting = $0 { true } else { false } }
        if waits {
            Task {
                do { completion(.success(try await complete(request, into: log))) } catch { completion(.failure(error)) }
            }
            return
        }
        let pending = request.pending
        guard let batch = request.batch else {
            completion(.success(pending.map { Self.result($0, firstSequence: 0) }))
            return
        }
        log.append(batch) { appended in
            completion(appended.map { first in pending.map { Self.result($0, firstSequence: first) } })
        }
    }

    /// The result of an event that waits on nothing.
    private static func result(_ p: Pending, firstSequence: UInt64) -> IngestedEventResult {
        switch p {
        case .new(let index, let clientId, let ts, let clamped):
            let id: EventIdentifier = clientId.map { .client($0) } ?? .server(firstSequence + UInt64(index))
            return .stored(id: id, timestamp: ts, clamped: clamped)
        case .duplicate(let entry, let id):
            return .duplicate(id: id, timestamp: entry.timestamp)
        case .rejected(let e):
            return .rejected(e)
        case .waiting:
            preconditionFailure("a waiting event's result comes from the request it waits on")
        }
    }

    /// `prepare` and `complete` in one call.
    public func ingest(body: UnsafeRawBufferPointer, batch: Bool, into log: EventLog, receivedAt: Int64 = currentMicros())
        async throws -> [IngestedEventResult]
    {
        let request: PreparedRequest
        do {
            request = try prepare(body: body, batch: batch, for: log, receivedAt: receivedAt)
        } catch is IdempotencyIndexNotReady {
            await log.idempotency.waitUntilReady()
            request = try prepare(body: body, batch: batch, for: log, receivedAt: receivedAt)
        }
        return try await complete(request, into: log)
    }

    private func prepare(
        body: UnsafeRawBufferPointer, batch: Bool, receivedAt: Int64, index idempotency: IdempotencyIndex, _ ws: IngestWorkspace
    ) throws
        -> ([Pending], PreparedBatch?)
    {
        let tokens: JSONTokens
        do {
            tokens = try ws.tokenizer.parse(body)
        } catch {
            throw IngestRequestError(status: 400, code: "invalid_json", message: "request body is not valid JSON: \(error.message)")
        }
        let root = tokens.root
        var eventIndices: [Int] = []
        var sentAt: Int64? = nil
        if batch {
            var array = -1
            if tokens.kind(root) == JSONKind.array {
                array = root
            } else if tokens.kind(root) == JSONKind.object {
                var i = root + 1
                while i < tokens.end(root) {
                    let key = tokens.string(i)
                    if equals(key, "events") { array = i + 1 }
                    if equals(key, "sent_at") {
                        let v = i + 1
                        switch tokens.kind(v) {
                        case JSONKind.string:
                            guard let t = Timestamp.parse(tokens.string(v)) else {
                                throw IngestRequestError(status: 400, code: "invalid_timestamp", message: "sent_at is not an RFC 3339 time or epoch milliseconds")
                            }
                            sentAt = t
                        case JSONKind.int64: sentAt = tokens.int64(v) * 1000
                        case JSONKind.double: sentAt = Int64(tokens.double(v) * 1000)
                        case JSONKind.null: break
                        default:
                            throw IngestRequestError(status: 400, code: "invalid_timestamp", message: "sent_at must be an RFC 3339 string or epoch milliseconds")
                        }
                    }
                    i = tokens.next(i + 1)
                }
            } else {
                throw IngestRequestError(status: 400, code: "invalid_body", message: "batch body must be an object with an \"events\" array")
            }
            guard array >= 0 else { throw IngestRequestError(status: 400, code: "missing_field", message: "events is required") }
            guard tokens.kind(array) == JSONKind.array else {
                throw IngestRequestError(status: 400, code: "invalid_field", message: "events must be an array")
            }
            let count = Int(tokens.count(array))
            guard count > 0 else { throw IngestRequestError(status: 400, code: "invalid_field", message: "events must not be empty") }
            guard count <= limits.maxBatchEvents else {
                throw IngestRequestError(status: 413, code: "batch_too_large", message: "batch has \(count) events; the limit is \(limits.maxBatchEvents)")
            }
            eventIndices.reserveCapacity(count)
            var i = array + 1
            while i < tokens.end(array) {
                eventIndices.append(i)
                i = tokens.next(i)
            }
        } else {
            guard tokens.kind(root) == JSONKind.object else {
                throw IngestRequestError(status: 400, code: "invalid_body", message: "event body must be a JSON object")
            }
            eventIndices = [root]
        }

        var pending: [Pending] = []
        pending.reserveCapacity(eventIndices.count)
        var keys: [BatchClientKey] = []
        let builder = ws.builder
        builder.reset()
        for index in eventIndices {
            switch ws.encoder.encode(tokens, at: index, receivedAt: receivedAt, sentAt: sentAt, into: builder) {
            case .failure(let error):
                pending.append(.rejected(error))
            case .success(let event):
                guard let rawId = event.clientEventId else {
                    pending.append(.new(recordIndex: UInt32(builder.eventCount - 1), clientId: nil, timestamp: event.timestamp, clamped: event.clamped))
                    continue
                }
                let key = IdempotencyKey(rawId)
                let id = String(decoding: rawId, as: UTF8.self)
                switch idempotency.reserve(key) {
                case .reserved:
                    let recordIndex = UInt32(builder.eventCount - 1)
                    keys.append(BatchClientKey(key: key, index: recordIndex, timestamp: event.timestamp))
                    pending.append(.new(recordIndex: recordIndex, clientId: id, timestamp: event.timestamp, clamped: event.clamped))
                case .stored(let entry):
                    builder.removeLast(recordStart: event.recordStart)
                    pending.append(.duplicate(entry, id))
                case .inFlight(let inFlight):
                    builder.removeLast(recordStart: event.recordStart)
                    pending.append(.waiting(inFlight, id))
                case .notReady:
                    idempotency.release(keys)
                    throw IdempotencyIndexNotReady()
                }
            }
        }
        guard !builder.isEmpty else { return (pending, nil) }
        do {
            // A record or two does not compress enough to pay for the compressor's setup.
            let batchCodec = builder.uncompressedBytes < Ingestor.smallBatchBytes ? Codec.none : codec
            var prepared = try builder.seal(codec: batchCodec, level: codecLevel)
            prepared.clientKeys = keys
            return (pending, prepared)
        } catch {
            idempotency.release(keys)
            throw error
        }
    }

}
