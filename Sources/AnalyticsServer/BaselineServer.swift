public import Hummingbird
import NIOCore

/// A bare Hummingbird route that reads the request body and returns a constant: the yardstick
/// the single-event ingest path is measured against (`tools/http-load`).
public enum BaselineServer {
    public static func run(host: String, port: Int, maxBody: Int = 5 << 20) async throws {
        let router = Router()
        router.post("/baseline") { request, _ -> Response in
            var request = request
            _ = try await request.collectBody(upTo: maxBody)
            return Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"ok":true}"#)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "baseline"))
        try await app.runService()
    }
}
