public import EventLog
public import Hummingbird
public import Logging
import NIOCore
import QueryEngine
import ServiceLifecycle
import Prometheus
import HTTPTypes

/// The analytics server: metadata, project logs, ingest, limits and metrics, and the
/// Hummingbird application that serves them.
public final class TallyServer: Sendable {
    public let configuration: ServerConfiguration
    public let metadata: MetadataStore
    public let logs: ProjectLogs
    public let metrics: ServerMetrics
    public let rateLimiter: RateLimiter
    public let ingestor: Ingestor
    public let logger: Logger
    let compactor: BackgroundCompactor

    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "tally")) throws {
        self.configuration = configuration
        self.logger = logger
        ColumnCache.shared.budgetBytes = configuration.columnCacheBytes
        ColumnCache.shared.residentTargetBytes = configuration.memoryTargetBytes
        try FileIO.makeDirectories(configuration.dataDirectory)
        metadata = try MetadataStore(path: configuration.dataDirectory + "/meta.sqlite")
        metrics = ServerMetrics()
        logs = ProjectLogs(dataDirectory: configuration.dataDirectory, configuration: configuration.log, logger: logger, metrics: metrics)
        rateLimiter = RateLimiter(configuration: configuration.rateLimits)
        ingestor = Ingestor(limits: configuration.ingest, codec: configuration.codec)
        compactor = BackgroundCompactor(logs: logs, settings: configuration.compaction, logger: logger, metrics: metrics)
    }

    /// The router with every route and middleware; also what HummingbirdTesting drives.
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: metrics, logger: logger))
        router.get("/healthz") { _, _ -> Response in
            Self.json(#"{"status":"ok"}"#)
        }
        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.exposition())))
        }
        let api = router.group("api/v1/analytics")
        api.post("events") { request, context in try await self.ingest(request, context: context, batch: false) }
        api.post("events/batch") { request, context in try await self.ingest(request, context: context, batch: true) }
        api.post("funnels") { request, context in try await self.funnels(request, context: context) }
        api.post("query") { request, context in try await self.query(request, context: context) }
        api.post("cohorts") { request, context in try await self.cohorts(request, context: context) }
        api.get("conversations/analytics") { request, context in try await self.conversations(request, context: context) }
        api.get("users/:user_id/analytics") { request, context in try await self.userAnalytics(request, context: context) }
        api.get("realtime") { request, context in try await self.realtime(request, context: context) }
        return router
    }

    /// The application, with the maintenance service that closes the logs after the HTTP
    /// server has drained its in-flight requests.
    /// `onServerRunning` gets the listening channel (tests bound to port 0 read the port).
    public func makeApplication(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            server: .http1(configuration: .init(additionalChannelHandlers: [IngestFastPath(server: self)])),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tally"),
            services: [MaintenanceService(server: self)],
            onServerRunning: onServerRunning,
            logger: logger)
    }

    /// Serves until SIGTERM or SIGINT, then drains requests and closes the logs.
    public func run() async throws {
        try await makeApplication().runService()
    }

    // MARK: - Authentication and limits

    /// The key behind the request's bearer token, if it may do what `scope` covers.
    func authorize(_ request: Request, scope required: Scope) throws -> APIKey {
        try authorize(headers: request.headers, scope: required)
    }

    func authorize(headers: HTTPFields, scope required: Scope) throws -> APIKey {
        // The first Authorization field (it is a singleton field); the subscript getter
        // would join every field of the name into a new string, on every request.
        guard let header = headers.first(where: { $0.name == .authorization })?.value else {
            throw APIError.unauthorized("missing Authorization header; send \"Authorization: Bearer <token>\"")
        }
        // The scheme is case-insensitive (RFC 9110 §11.1); compared byte by byte because this
        // runs on every request.
        let scheme = header.utf8.prefix(7)
        guard scheme.count == 7, zip(scheme, "bearer ".utf8).allSatisfy({ $0 | 0x20 == $1 }) else {
            throw APIError.unauthorized("Authorization header must be \"Bearer <token>\"")
        }
        let token = header.utf8.dropFirst(7).drop(while: { $0 == UInt8(ascii: " ") })
        guard let key = metadata.authenticate(token: Substring(token)) else {
            throw APIError.unauthorized("unknown or revoked token")
        }
        guard key.scope.allows(required) else {
            throw APIError(.forbidden, "insufficient_scope", "a \(key.scope.rawValue) token cannot use this endpoint; it needs \(required.rawValue) scope")
        }
        return key
    }

    /// Counts the request against its limits; throws 429 when over, else returns the headers.
    func rateLimit(_ operation: RateLimitedOperation, key: APIKey) throws -> HTTPFields {
        guard let decision = rateLimiter.check(operation, token: key.id, project: key.projectId) else { return [:] }
        var headers: HTTPFields = [:]
        headers[HTTPField.Name("X-RateLimit-Limit")!] = String(decision.limit)
        headers[HTTPField.Name("X-RateLimit-Remaining")!] = String(decision.remaining)
        headers[HTTPField.Name("X-RateLimit-Reset")!] = String(decision.resetAt)
        if !decision.allowed {
            headers[.retryAfter] = String(decision.retryAfter)
            throw APIError(
                .tooManyRequests, "rate_limited",
                "rate limit of \(decision.limit) \(operation.rawValue) requests exceeded; retry in \(decision.retryAfter) s",
                headers: headers)
        }
        return headers
    }

    // MARK: - Ingest

    /// The ingest routes as Hummingbird serves them: requests the connection's fast path
    /// (`IngestFastPath`) leaves to the router, such as those in HummingbirdTesting's
    /// router mode.
    func ingest(_ request: Request, context: BasicRequestContext, batch: Bool) async throws -> Response {
        var request = request
        var body: ByteBuffer?
        do {
            body = try await request.collectBody(upTo: ingestBodyLimit(batch: batch))
        } catch is NIOTooManyBytesError {
            body = nil
        }
        let reply = await withCheckedContinuation { continuation in
            ingest(headers: request.headers, body: body, batch: batch) { continuation.resume(returning: $0) }
        }
        return Response(status: reply.status, headers: reply.headers, body: .init(byteBuffer: reply.body))
    }

    func ingestBodyLimit(batch: Bool) -> Int {
        batch ? configuration.ingest.maxBatchBytes : configuration.ingest.maxEventBytes
    }

    /// Everything an ingest request does once its body is read (`nil`: it was over the
    /// limit), in the order clients see: authentication, rate limit, size, validation, then
    /// the append. `completion` gets the answer: at once for an error, else on the log's
    /// writer thread once the events are durable.
    func ingest(headers: HTTPFields, body: ByteBuffer?, batch: Bool, completion: @escaping @Sendable (IngestReply) -> Void) {
        do {
            let key = try authorize(headers: headers, scope: .write)
            let replyHeaders = try rateLimit(batch ? .batch : .track, key: key)
            guard let body else {
                throw APIError(
                    .contentTooLarge, batch ? "payload_too_large" : "event_too_large",
                    "request body is larger than \(ingestBodyLimit(batch: batch)) bytes", headers: replyHeaders)
            }
            let log: EventLog
            do {
                log = try logs.log(for: key.projectId)
            } catch {
                logger.error("cannot open project log", metadata: ["project": "\(key.projectId)", "error": "\(error)"])
                throw APIError(.serviceUnavailable, "storage_unavailable", "the project's event log cannot be opened", headers: replyHeaders)
            }
            append(body, batch: batch, project: key.projectId, to: log, headers: replyHeaders, completion: completion)
        } catch {
            completion(self.reply(error))
        }
    }

    private func append(
        _ body: ByteBuffer, batch: Bool, project: String, to log: EventLog, headers: HTTPFields,
        completion: @escaping @Sendable (IngestReply) -> Void
    ) {
        let prepared: Ingestor.PreparedRequest
        do {
            prepared = try body.withUnsafeReadableBytes { try ingestor.prepare(body: $0, batch: batch, for: log) }
        } catch is IdempotencyIndexNotReady {
            // Just restarted: client ids can be checked once the index has loaded.
            Task {
                await log.idempotency.waitUntilReady()
                self.append(body, batch: batch, project: project, to: log, headers: headers, completion: completion)
            }
            return
        } catch let error as IngestRequestError {
            completion(self.reply(APIError(HTTPResponse.Status(code: error.status), error.code, error.message, headers: headers)))
            return
        } catch {
            completion(self.reply(error))
            return
        }
        ingestor.complete(prepared, into: log) { result in
            switch result {
            case .success(let results):
                do {
                    completion(batch ? self.batchReply(results, headers: headers) : try self.singleReply(results[0], headers: headers))
                } catch {
                    completion(self.reply(error))
                }
            case .failure(EventLogError.closed):
                completion(self.reply(APIError(.serviceUnavailable, "shutting_down", "the server is shutting down; retry shortly", headers: headers)))
            case .failure(let error):
                self.logger.error("event log append failed", metadata: ["project": "\(project)", "error": "\(error)"])
                var h = headers
                h[.retryAfter] = "1"
                completion(self.reply(APIError(.serviceUnavailable, "storage_unavailable", "events could not be made durable; none were stored", headers: h)))
            }
        }
    }

    /// The answer for an error thrown while ingesting; one that is not an `APIError` is a bug,
    /// logged as the router's middleware logs it.
    func reply(_ error: any Error) -> IngestReply {
        if let error = error as? APIError { return error.reply }
        logger.error("unhandled error", metadata: ["error": "\(error)", "path": "ingest"])
        return APIError(.internalServerError, "internal_error", "internal error").reply
    }

    func singleReply(_ result: IngestedEventResult, headers: HTTPFields) throws -> IngestReply {
        let out = OutputBuffer(capacity: 256)
        let w = JSONWriter(out)
        switch result {
        case .rejected(let error):
            metrics.eventsRejected.increment()
            throw APIError(.badRequest, error.code, error.message, headers: headers)
        case .stored(let id, let timestamp, let clamped):
            w.raw(#"{"event_id":"#)
            w.eventId(id)
            w.raw(#","tracked":true,"timestamp":"#)
            w.timestamp(timestamp)
            if clamped {
                w.raw(#","warnings":[{"code":"timestamp_clamped","message":"timestamp was more than 24 h in the future; stored with the receive time"}]"#)
            }
            w.raw("}")
        case .duplicate(let id, let timestamp):
            metrics.duplicateEvents.increment()
            w.raw(#"{"event_id":"#)
            w.string(id)
            w.raw(#","tracked":true,"duplicate":true,"timestamp":"#)
            w.timestamp(timestamp)
            w.raw("}")
        }
        return IngestReply(status: .ok, headers: Self.jsonHeaders(headers), body: ByteBuffer(bytes: out.bytes))
    }

    func batchReply(_ results: [IngestedEventResult], headers: HTTPFields) -> IngestReply {
        var tracked = 0
        var failed = 0
        var duplicates = 0
        for r in results {
            switch r {
            case .stored: tracked += 1
            case .duplicate: tracked += 1; duplicates += 1
            case .rejected: failed += 1
            }
        }
        if failed > 0 { metrics.eventsRejected.increment(by: Int64(failed)) }
        if duplicates > 0 { metrics.duplicateEvents.increment(by: Int64(duplicates)) }
        let out = OutputBuffer(capacity: 64 + results.count * 28)
        let w = JSONWriter(out)
        w.raw(#"{"tracked":"#)
        w.int(Int64(tracked))
        w.raw(#","failed":"#)
        w.int(Int64(failed))
        w.raw(#","event_ids":["#)
        for (i, r) in results.enumerated() {
            if i > 0 { w.raw(",") }
            switch r {
            case .stored(let id, _, _): w.eventId(id)
            case .duplicate(let id, _): w.string(id)
            case .rejected: w.null()
            }
        }
        w.raw(#"],"errors":["#)
        var first = true
        for (i, r) in results.enumerated() {
            guard case .rejected(let e) = r else { continue }
            if !first { w.raw(",") }
            first = false
            w.raw(#"{"index":"#)
            w.int(Int64(i))
            w.raw(#","code":"#)
            w.string(e.code)
            w.raw(#","message":"#)
            w.string(e.message)
            w.raw("}")
        }
        w.raw("]")
        if duplicates > 0 {
            w.raw(#","duplicates":"#)
            w.int(Int64(duplicates))
        }
        var warnedFirst = true
        for (i, r) in results.enumerated() {
            guard case .stored(_, _, true) = r else { continue }
            w.raw(warnedFirst ? #","warnings":["# : ",")
            warnedFirst = false
            w.raw(#"{"index":"#)
            w.int(Int64(i))
            w.raw(#","code":"timestamp_clamped","message":"timestamp was more than 24 h in the future; stored with the receive time"}"#)
        }
        if !warnedFirst { w.raw("]") }
        w.raw("}")
        return IngestReply(status: .ok, headers: Self.jsonHeaders(headers), body: ByteBuffer(bytes: out.bytes))
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        Response(status: status, headers: jsonHeaders(headers), body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ out: OutputBuffer, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        Response(status: status, headers: jsonHeaders(headers), body: .init(byteBuffer: ByteBuffer(bytes: out.bytes)))
    }

    private static let jsonContentType: HTTPFields = [.contentType: "application/json; charset=utf-8"]

    /// `headers` plus the JSON content type. Most responses have no other headers: they
    /// share one prebuilt set instead of building one per request.
    static func jsonHeaders(_ headers: HTTPFields) -> HTTPFields {
        guard !headers.isEmpty else { return jsonContentType }
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return headers
    }
}

/// Turns every error into the JSON error shape and counts requests by route and status.
struct ErrorAndMetricsMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    let metrics: ServerMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            metrics.recordRequest(route: context.endpointPath ?? request.uri.path, method: request.method.rawValue, status: response.status.code)
            return response
        } catch {
            let apiError: APIError
            switch error {
            case let e as APIError:
                apiError = e
            case let e as HTTPError:
                let code =
                    switch e.status {
                    case .notFound: "not_found"
                    case .methodNotAllowed: "method_not_allowed"
                    case .contentTooLarge: "payload_too_large"
                    case .unsupportedMediaType: "unsupported_media_type"
                    default: e.status.code < 500 ? "bad_request" : "internal_error"
                    }
                let message = e.status == .notFound ? "no route for \(request.method.rawValue) \(request.uri.path)" : (e.body ?? e.status.reasonPhrase)
                apiError = APIError(e.status, code, message, headers: e.headers)
            case let e as any HTTPResponseError where e.status == .contentTooLarge:
                apiError = APIError(e.status, "payload_too_large", "request body is too large")
            default:
                logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
                apiError = APIError(.internalServerError, "internal_error", "internal error")
            }
            metrics.recordRequest(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: apiError.status.code)
            throw apiError
        }
    }
}

/// Background upkeep: idempotency snapshots and key reloads every few seconds, and the
/// compactor's thread. At shutdown, after the HTTP server has drained, it lets the compactor
/// finish its round and closes every project log (final fsync, checkpoint, snapshot).
struct MaintenanceService: Service {
    let server: TallyServer

    func run() async throws {
        server.logs.openAllInBackground()
        server.compactor.start()
        let interval = server.configuration.maintenanceIntervalSeconds
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                if Task.isCancelled { break }
                server.logs.persistIdempotency()
                do {
                    try server.metadata.reload()
                } catch {
                    server.logger.warning("could not reload API keys", metadata: ["error": "\(error)"])
                }
            }
        }
        server.compactor.stop()
        server.logs.closeAll()
        server.logger.info("event logs closed")
    }
}
