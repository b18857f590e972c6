import EventLog
public import Hummingbird
import NIOCore

/// An error answered as `{"error": {"code", "message", "details"}}` with its HTTP status:
/// the one shape every endpoint uses (conventions.md, "Server").
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var details: String?
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, details: String? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let reply = self.reply
        return Response(status: reply.status, headers: reply.headers, body: .init(byteBuffer: reply.body))
    }

    /// The error's answer, for the router and for the ingest fast path alike.
    var reply: IngestReply {
        let out = OutputBuffer(capacity: 128)
        let w = JSONWriter(out)
        w.raw(#"{"error":{"code":"#)
        w.string(code)
        w.raw(#","message":"#)
        w.string(message)
        if let details {
            w.raw(#","details":"#)
            w.raw(details)
        }
        w.raw("}}")
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return IngestReply(status: status, headers: headers, body: ByteBuffer(bytes: out.bytes))
    }

    static func unauthorized(_ message: String) -> APIError {
        APIError(.unauthorized, "unauthorized", message, headers: [.wwwAuthenticate: "Bearer"])
    }
}

/// An answer as status, headers and body: what both the router (as a `Response`) and the
/// ingest fast path (as response parts written to the channel) send.
struct IngestReply: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: ByteBuffer
}
