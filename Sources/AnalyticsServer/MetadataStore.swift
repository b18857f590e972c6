import EventLog
import Foundation
public import GRDB
import Synchronization

/// What a token may do. `write` ingests only (safe to ship in a browser or bot), `read` asks
/// every analytics question, `admin` does everything.
public enum Scope: String, Sendable, CaseIterable, Codable {
    case write, read, admin

    /// Whether a token of this scope may perform an operation that needs `required`.
    public func allows(_ required: Scope) -> Bool {
        switch (self, required) {
        case (.admin, _): true
        case (.read, .read), (.write, .write): true
        default: false
        }
    }
}

public struct APIKey: Sendable, Equatable {
    public var id: String
    public var projectId: String
    public var scope: Scope
    public var name: String?
    public var tokenHash: [UInt8]
    public var createdAt: Int64
    public var lastUsedAt: Int64?
    public var revokedAt: Int64?
}

/// A freshly created key and its token, which is shown once and never stored.
public struct CreatedKey: Sendable {
    public var key: APIKey
    public var token: String
}

public struct MetadataError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// Projects and API keys, in SQLite through GRDB (`meta.sqlite` in the data directory).
///
/// Authentication runs on every request, so keys are served from an in-memory snapshot
/// refreshed from the database every few seconds (another process, such as `tally keys
/// revoke`, may have changed it); a token whose key id is not in the snapshot is looked up
/// directly once.
public final class MetadataStore: Sendable {
    public let database: DatabaseQueue
    /// A key and, once a request proved it, the token's bytes (never written anywhere).
    struct CachedKey {
        var key: APIKey
        var verifiedToken: [UInt8]?
        var lastUsedSecond: Int64 = 0
    }
    private let keys = Mutex<[String: CachedKey]>([:])
    // Key ids used since the last reload; guarded by `keys`' lock (only touched inside it).
    nonisolated(unsafe) private var touchedSinceReload = Set<String>()

    static let tokenLength = 4 + 12 + 1 + 32

    public static let tokenPrefix = "tly_"

    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        database = try DatabaseQueue(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE projects (
                        id TEXT PRIMARY KEY NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE TABLE api_keys (
                        id TEXT PRIMARY KEY NOT NULL,
                        project_id TEXT NOT NULL REFERENCES projects(id),
                        scope TEXT NOT NULL CHECK (scope IN ('write', 'read', 'admin')),
                        name TEXT,
                        token_hash BLOB NOT NULL,
                        created_at INTEGER NOT NULL,
                        last_used_at INTEGER,
                        revoked_at INTEGER
                    );
                    CREATE INDEX api_keys_project ON api_keys(project_id);
                    """)
        }
        try migrator.migrate(database)
        try reload()
    }

    /// Project ids name directories, so they are restricted to a safe alphabet.
    public static func validateProjectId(_ id: String) throws {
        let ok = !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 }
            && id.utf8.first != 45
        guard ok else {
            throw MetadataError(message: "project id \"\(id)\" must be 1-64 characters of a-z, 0-9, '_' and '-'")
        }
    }

    public func projects() throws -> [String] {
        try database.read { db in try String.fetchAll(db, sql: "SELECT id FROM projects ORDER BY id") }
    }

    public func projectExists(_ id: String) throws -> Bool {
        try database.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM projects WHERE id = ?", arguments: [id]) ?? false }
    }

    @discardableResult
    public func createProject(_ id: String) throws -> Bool {
        try Self.validateProjectId(id)
        return try database.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO projects (id, created_at) VALUES (?, ?)", arguments: [id, currentMicros()])
            return db.changesCount > 0
        }
    }

    /// On an empty data directory: creates project `default` with one admin and one write key.
    public func bootstrapIfEmpty() throws -> [CreatedKey] {
        let empty = try database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM projects") == 0 }
        guard empty else { return [] }
        try createProject("default")
        return [
            try createKey(project: "default", scope: .admin, name: "bootstrap admin"),
            try createKey(project: "default", scope: .write, name: "bootstrap write"),
        ]
    }

    public func createKey(project: String, scope: Scope, name: String? = nil) throws -> CreatedKey {
        guard try projectExists(project) else { throw MetadataError(message: "project \"\(project)\" does not exist") }
        let id = Self.randomBase62(12)
        let token = Self.tokenPrefix + id + "_" + Self.randomBase62(32)
        let key = APIKey(
            id: id, projectId: project, scope: scope, name: name, tokenHash: SHA256.hash(token), createdAt: currentMicros())
        try database.write { db in
            try db.execute(
                sql: "INSERT INTO api_keys (id, project_id, scope, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [key.id, key.projectId, key.scope.rawValue, key.name, Data(key.tokenHash), key.createdAt])
        }
        keys.withLock { $0[id] = CachedKey(key: key) }
        return CreatedKey(key: key, token: token)
    }

    public func listKeys(project: String? = nil) throws -> [APIKey] {
        try database.read { db in
            let rows =
                if let project {
                    try Row.fetchAll(db, sql: "SELECT * FROM api_keys WHERE project_id = ? ORDER BY created_at", arguments: [project])
                } else {
                    try Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY project_id, created_at")
                }
            return rows.compactMap(Self.key(from:))
        }
    }

    /// Revokes a key by id. Returns false when no such active key exists.
    public func revokeKey(id: String) throws -> Bool {
        let changed = try database.write { db in
            try db.execute(sql: "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [currentMicros(), id])
            return db.changesCount > 0
        }
        if changed { keys.withLock { $0[id]?.key.revokedAt = currentMicros() } }
        return changed
    }

    /// The active key a bearer token belongs to, or nil.
    ///
    /// The first use of a token checks its SHA-256 against the stored hash; after that the
    /// token's bytes are kept with the key (in memory only) and later requests compare against
    /// them. Both comparisons are constant-time, so response timing reveals nothing about how
    /// much of a guessed token was right.
    public func authenticate(token: String) -> APIKey? {
        var token = token
        return token.withUTF8 { authenticate(presented: $0) }
    }

    /// `authenticate(token:)` for a token still inside its header, without copying it out.
    public func authenticate(token: Substring) -> APIKey? {
        token.utf8.withContiguousStorageIfAvailable { authenticate(presented: $0) } ?? authenticate(token: String(token))
    }

    private func authenticate(presented: UnsafeBufferPointer<UInt8>) -> APIKey? {
        let prefix = Self.tokenPrefix.utf8
        guard presented.count == Self.tokenLength, presented.starts(with: prefix) else { return nil }
        let id = String(decoding: presented[prefix.count..<prefix.count + 12], as: UTF8.self)
        let nowSecond = currentMicros() / 1_000_000
        enum Lookup {
            case verified(APIKey)
            case unverified(APIKey)
            case unknown
        }
        let lookup = keys.withLock { keys -> Lookup in
            guard var entry = keys[id] else { return .unknown }
            guard let verified = entry.verifiedToken else { return .unverified(entry.key) }
            guard constantTimeEquals(verified, presented) else { return .unknown }
            if nowSecond - entry.lastUsedSecond >= 10 {
                entry.lastUsedSecond = nowSecond
                keys[id] = entry
                touchedSinceReload.insert(id)
            }
            return .verified(entry.key)
        }
        switch lookup {
        case .verified(let key):
            return key.revokedAt == nil ? key : nil
        case .unknown, .unverified:
            var key: APIKey? = nil
            if case .unverified(let k) = lookup { key = k }
            if key == nil {
                key = try? database.read { db in
                    try Row.fetchOne(db, sql: "SELECT * FROM api_keys WHERE id = ?", arguments: [id]).flatMap(Self.key(from:))
                }
            }
            guard let key, key.revokedAt == nil, constantTimeEquals(SHA256.hash(Array(presented)), key.tokenHash) else { return nil }
            keys.withLock { keys in
                keys[id] = CachedKey(key: key, verifiedToken: Array(presented), lastUsedSecond: nowSecond)
                touchedSinceReload.insert(id)
            }
            return key
        }
    }

    /// Re-reads every key (picking up changes made by other processes) and writes pending
    /// `last_used_at` times.
    public func reload() throws {
        let used = keys.withLock { k -> [(String, Int64)] in
            defer { touchedSinceReload = [] }
            return touchedSinceReload.compactMap { id in k[id].map { (id, $0.lastUsedSecond * 1_000_000) } }
        }
        if !used.isEmpty {
            try database.write { db in
                for (id, at) in used {
                    try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [at, id])
                }
            }
        }
        let all = try listKeys()
        keys.withLock { k in
            var fresh: [String: CachedKey] = [:]
            for key in all {
                var entry = CachedKey(key: key)
                // Keep a proven token only while the stored hash is unchanged.
                if let old = k[key.id], old.key.tokenHash == key.tokenHash {
                    entry.verifiedToken = old.verifiedToken
                    entry.lastUsedSecond = old.lastUsedSecond
                }
                fresh[key.id] = entry
            }
            k = fresh
        }
    }

    static func key(from row: Row) -> APIKey? {
        guard let scope = Scope(rawValue: row["scope"]), let hash: Data = row["token_hash"] else { return nil }
        return APIKey(
            id: row["id"], projectId: row["project_id"], scope: scope, name: row["name"], tokenHash: Array(hash),
            createdAt: row["created_at"], lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"])
    }

    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// Random base62 text from the system CSPRNG (getrandom on Linux).
    static func randomBase62(_ count: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let v = UInt8.random(in: 0...255, using: &rng)
            if v < 248 { bytes.append(alphabet[Int(v % 62)]) }  // 248 = 4·62: no modulo bias
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
