import EventLog
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Serves the two ingest routes in the connection's NIO pipeline, before Hummingbird's router.
///
/// A single-event request is small and cheap to handle: the server's own work (auth, parse,
/// validate, encode) takes a few microseconds. In Hummingbird's async handler, the request
/// also hops from the event loop to a task on Swift's cooperative pool, and then to the
/// log's writer thread and back to resume that task. Each hop wakes a thread. On a 2-core
/// machine the hops and the wakeups cost more than the work itself, and the route reached only
/// 0.5–0.75 of a bare route's requests per second. Here the request is read, prepared and
/// appended on the event loop. The writer thread hands the answer back to the same event loop
/// once the events are durable, and no task is involved.
///
/// The behaviour is the route's own: both call `TallyServer.ingest(headers:body:batch:completion:)`.
/// Requests that need anything else pass through to the router untouched: another path or
/// method, `Expect: 100-continue`, or `Connection: close`. NIO's pipelining handler, ahead of
/// this one, delivers a connection's next request only after the previous answer has ended,
/// so answers keep their order. A quiesce event (graceful shutdown) that arrives while an
/// answer is pending is held until the answer is written. The connection state handler
/// behind this one would otherwise close the connection, unaware of the request.
final class IngestFastPath: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    static let eventsPath = "/api/v1/analytics/events"
    static let batchPath = "/api/v1/analytics/events/batch"

    private enum State {
        case idle
        /// Reading the body of an ingest request; `body` nil once it is over the limit.
        case reading(batch: Bool)
        /// The request is read; its answer is pending.
        case answering
        /// Forwarding another request's parts to the router.
        case passing
    }

    private let server: TallyServer
    private var state = State.idle
    private var headers: HTTPFields = [:]
    private var body: ByteBuffer?
    private var limit = 0
    private var heldQuiesce: Any?

    init(server: TallyServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.idle, .head(let head)):
            if let batch = Self.ingestRoute(head) {
                state = .reading(batch: batch)
                limit = server.ingestBodyLimit(batch: batch)
                body = context.channel.allocator.buffer(capacity: 0)
                headers = head.headerFields
            } else {
                state = .passing
                context.fireChannelRead(data)
            }
        case (.reading, .body(var chunk)):
            guard let received = body?.readableBytes else { return }
            if received + chunk.readableBytes > limit {
                body = nil
            } else if received == 0 {
                body = chunk  // most bodies arrive in one part: no copy
            } else {
                body!.writeBuffer(&chunk)
            }
        case (.reading(let batch), .end):
            state = .answering
            answer(batch: batch, context: context)
        case (.passing, .end):
            state = .idle
            context.fireChannelRead(data)
        default:
            context.fireChannelRead(data)
        }
    }

    /// Whether `head` is an ingest request this handler serves, and which one.
    static func ingestRoute(_ head: HTTPRequest) -> Bool? {
        guard head.method == .post, var path = head.path else { return nil }
        if let query = path.firstIndex(of: "?") { path = String(path[..<query]) }
        let batch: Bool
        switch path {
        case eventsPath: batch = false
        case batchPath: batch = true
        default: return nil
        }
        for field in head.headerFields {
            if field.name == .expect { return nil }
            if field.name == .connection && field.value.lowercased().contains("close") { return nil }
        }
        return batch
    }

    private func answer(batch: Bool, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let route = batch ? Self.batchPath : Self.eventsPath
        let metrics = server.metrics
        // Taken before the call: an error is answered inside it, and writing the answer's end
        // can make the pipelining handler deliver the connection's next request at once.
        let headers = self.headers, body = self.body
        self.headers = [:]
        self.body = nil
        server.ingest(headers: headers, body: body, batch: batch) { reply in
            metrics.recordRequest(route: route, method: "POST", status: reply.status.code)
            if loop.inEventLoop {
                bound.value.0.write(reply, context: bound.value.1)
            } else {
                loop.execute { bound.value.0.write(reply, context: bound.value.1) }
            }
        }
    }

    private func write(_ reply: IngestReply, context: ChannelHandlerContext) {
        var headers = reply.headers
        headers[.contentLength] = String(reply.body.readableBytes)
        headers[.date] = HTTPDateCache.now()
        headers[.server] = "tally"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: reply.status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(reply.body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        state = .idle
        if let event = heldQuiesce {
            heldQuiesce = nil
            context.fireUserInboundEventTriggered(event)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        var busy = false
        switch state {
        case .reading, .answering: busy = true
        case .idle, .passing: busy = false
        }
        if busy && event is ChannelShouldQuiesceEvent {
            heldQuiesce = event
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// The `Date` header's value, formatted once a second.
enum HTTPDateCache {
    private static let cache = Mutex<(second: Int, text: String)>((0, ""))

    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let second = ts.tv_sec
        return cache.withLock { cached in
            if cached.second != second {
                cached = (second, format(second))
            }
            return cached.text
        }
    }

    /// RFC 9110's IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func format(_ second: Int) -> String {
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
