import AnalyticsServer
import Foundation
import Testing

@Suite struct AuthTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func sha256MatchesNISTVectors() {
        #expect(hex(SHA256.hash("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(SHA256.hash("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(SHA256.hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(hex(SHA256.hash(String(repeating: "a", count: 1000))) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
        // Lengths around the padding boundary.
        #expect(hex(SHA256.hash(String(repeating: "a", count: 55))) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(hex(SHA256.hash(String(repeating: "a", count: 56))) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(hex(SHA256.hash(String(repeating: "a", count: 64))) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    @Test func constantTimeEquality() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
    }

    @Test func scopesNest() {
        #expect(Scope.admin.allows(.write) && Scope.admin.allows(.read) && Scope.admin.allows(.admin))
        #expect(Scope.write.allows(.write) && !Scope.write.allows(.read) && !Scope.write.allows(.admin))
        #expect(Scope.read.allows(.read) && !Scope.read.allows(.write) && !Scope.read.allows(.admin))
    }

    @Test func keysAreCreatedListedAuthenticatedAndRevoked() throws {
        let dir = NSTemporaryDirectory() + "tally-meta-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try MetadataStore(path: dir + "/meta.sqlite")
        let bootstrap = try store.bootstrapIfEmpty()
        #expect(bootstrap.map(\.key.scope) == [.admin, .write])
        #expect(try store.bootstrapIfEmpty().isEmpty)
        for created in bootstrap {
            #expect(created.token.hasPrefix("tly_"))
            #expect(created.token.count == 4 + 12 + 1 + 32)
            #expect(store.authenticate(token: created.token)?.id == created.key.id)
            #expect(!created.key.tokenHash.isEmpty && created.key.tokenHash != Array(created.token.utf8))
        }
        #expect(throws: MetadataError.self) { try store.createKey(project: "missing", scope: .read) }
        #expect(throws: MetadataError.self) { try store.createProject("Bad/Name") }
        // A second process (another store on the same file) sees the revocation after a reload.
        let other = try MetadataStore(path: dir + "/meta.sqlite")
        #expect(try other.revokeKey(id: bootstrap[1].key.id))
        #expect(store.authenticate(token: bootstrap[1].token) != nil)
        try store.reload()
        #expect(store.authenticate(token: bootstrap[1].token) == nil)
        #expect(try store.listKeys(project: "default").count == 2)
        // A key created elsewhere is found on first use without waiting for a reload.
        let late = try other.createKey(project: "default", scope: .read)
        #expect(store.authenticate(token: late.token)?.scope == .read)
        #expect(store.authenticate(token: "tly_" + String(repeating: "x", count: 45)) == nil)
    }

    @Test func rateLimitParsing() {
        #expect(RateLimit(parsing: "1000/minute") == RateLimit(limit: 1000, windowSeconds: 60))
        #expect(RateLimit(parsing: "10/hour") == RateLimit(limit: 10, windowSeconds: 3600))
        #expect(RateLimit(parsing: "5/30s") == RateLimit(limit: 5, windowSeconds: 30))
        #expect(RateLimit(parsing: "x/minute") == nil)
        #expect(RateLimit(parsing: "5/fortnight") == nil)
    }

    @Test func perProjectLimitsAreSharedByTheProjectsTokens() {
        var config = RateLimitConfiguration()
        config.perProject[.export] = RateLimit(limit: 2, windowSeconds: 3600)
        let limiter = RateLimiter(configuration: config)
        #expect(limiter.check(.export, token: "a", project: "p", now: 100)?.allowed == true)
        #expect(limiter.check(.export, token: "b", project: "p", now: 101)?.allowed == true)
        let third = limiter.check(.export, token: "c", project: "p", now: 102)
        #expect(third?.allowed == false)
        #expect(third?.retryAfter == 3598)
        #expect(limiter.check(.export, token: "a", project: "other", now: 102)?.allowed == true)
        #expect(limiter.check(.export, token: "a", project: "p", now: 3700)?.allowed == true)
    }
}
