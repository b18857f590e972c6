import AnalyticsServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore

/// A server on a temporary data directory with the bootstrap tokens at hand.
struct TestServer {
    let directory: String
    let server: TallyServer
    let adminToken: String
    let writeToken: String
    let readToken: String

    init(configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        directory = NSTemporaryDirectory() + "tally-http-" + UUID().uuidString
        var config = ServerConfiguration()
        config.dataDirectory = directory
        config.host = "127.0.0.1"
        config.port = 0
        // Tests run in parallel on a loaded CI machine: the production deadline would turn a
        // slow scheduler into 422s. The test of the deadline itself sets its own.
        config.analyticsTimeoutSeconds = 600
        configure(&config)
        var logger = Logger(label: "test")
        logger.logLevel = .error
        server = try TallyServer(configuration: config, logger: logger)
        let created = try server.metadata.bootstrapIfEmpty()
        adminToken = created.first { $0.key.scope == .admin }!.token
        writeToken = created.first { $0.key.scope == .write }!.token
        readToken = try server.metadata.createKey(project: "default", scope: .read).token
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }

    /// Runs `body` against the router with the server's services running, then removes the
    /// data directory.
    func test(_ mode: TestingSetup = .router, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        defer { cleanUp() }
        try await server.makeApplication().test(mode, body)
    }

    /// Every stored event of a project, read from disk.
    func storedEvents(project: String = "default") throws -> [Event] {
        let log = try server.logs.log(for: project)
        var reader = LogReader(snapshot: log.snapshot())
        var events: [Event] = []
        while let e = try reader.next() { events.append(e) }
        return events
    }
}

func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer " + token, .contentType: "application/json"] }

func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

/// The response body parsed as a JSON object.
func json(_ response: TestResponse) throws -> [String: Any] {
    let data = Data(response.body.readableBytesView)
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TestFailure("response is not a JSON object: \(String(decoding: data, as: UTF8.self))")
    }
    return object
}

/// The `error` object of an error response.
func errorBody(_ response: TestResponse) throws -> (code: String, message: String) {
    let object = try json(response)
    guard let error = object["error"] as? [String: Any], let code = error["code"] as? String, let message = error["message"] as? String else {
        throw TestFailure("not an error body: \(object)")
    }
    return (code, message)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func errorCode(_ response: TestResponse) -> String? { (try? errorBody(response))?.code }
