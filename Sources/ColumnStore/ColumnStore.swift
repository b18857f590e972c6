#if canImport(Glibc)
import Glibc
#endif
import Foundation
public import EventLog
public import Logging
import Synchronization

/// What queries read: one manifest and its open block files, taken together.
public struct StoreSnapshot: Sendable {
    public let manifest: Manifest
    public let blocks: [BlockFile]
}

/// A project's compacted events: immutable per-day block files, the manifest listing the live
/// ones, and the project-wide id dictionaries.
///
/// The manifest and its open blocks are published together under one lock, so a reader
/// always sees a consistent set; writers (the compactor) are serialized by a second lock.
public final class ColumnStore: @unchecked Sendable {
    // Unchecked: `published` is a Mutex; `dictionaries` is touched only while
    // `compactionLock` is held.
    public let directory: String
    let logger: Logger
    let published: Mutex<StoreSnapshot>
    let compactionLock = NSLock()
    let dictionaries: ProjectDictionaries

    public static let usersDictionary = "users.dict"
    public static let sessionsDictionary = "sessions.dict"

    /// Opens the store in `directory` (creating it), finishing what a crash interrupted:
    /// temporary files and block files the manifest does not list are deleted, since a
    /// block becomes live only when a published manifest names it.
    /// `indexDictionaries: false` opens the id dictionaries without their hash indexes, for a
    /// reader such as `tally query` that maps ids to strings and seldom looks strings up.
    public static func open(
        directory: String, logger: Logger = Logger(label: "tally.blocks"), indexDictionaries: Bool = true
    ) throws -> ColumnStore {
        try FileIO.makeDirectories(directory)
        let manifestPath = directory + "/" + Manifest.fileName
        let manifest = FileIO.exists(manifestPath) ? try Manifest.decode(try FileIO.readFile(manifestPath)) : Manifest()
        let live = Set(manifest.blocks.map(\.name))
        var removed = 0
        for name in try FileIO.listDirectory(directory) {
            if name.hasSuffix(".tmp") || (name.hasSuffix(BlockLayout.fileSuffix) && !live.contains(name)) {
                try FileIO.unlink(directory + "/" + name)
                removed += 1
            }
        }
        if removed > 0 {
            try FileIO.fsyncDirectory(directory)
            logger.info("removed unpublished or replaced block files", metadata: ["files": "\(removed)"])
        }
        let users = try GlobalDictionary.open(path: directory + "/" + usersDictionary, indexed: indexDictionaries)
        let sessions = try GlobalDictionary.open(path: directory + "/" + sessionsDictionary, indexed: indexDictionaries)
        guard users.count >= Int(manifest.userDictionaryCount), sessions.count >= Int(manifest.sessionDictionaryCount) else {
            throw BlockFormatError.badFooter(
                "dictionaries hold \(users.count) users and \(sessions.count) sessions, the manifest needs \(manifest.userDictionaryCount) and \(manifest.sessionDictionaryCount)")
        }
        let blocks = try manifest.blocks.map { try BlockFile(path: directory + "/" + $0.name) }
        return ColumnStore(
            directory: directory, logger: logger, snapshot: StoreSnapshot(manifest: manifest, blocks: blocks),
            dictionaries: ProjectDictionaries(users: users, sessions: sessions))
    }

    init(directory: String, logger: Logger, snapshot: StoreSnapshot, dictionaries: ProjectDictionaries) {
        self.directory = directory
        self.logger = logger
        self.published = Mutex(snapshot)
        self.dictionaries = dictionaries
    }

    public func snapshot() -> StoreSnapshot { published.withLock { $0 } }

    public var manifest: Manifest { published.withLock { $0.manifest } }

    /// Runs `body` with the project dictionaries held still (no compaction can add to them).
    public func withDictionaries<T>(_ body: (ProjectDictionaries) throws -> T) rethrows -> T {
        compactionLock.lock()
        defer { compactionLock.unlock() }
        return try body(dictionaries)
    }

    /// Every event in the blocks, in block order then row order. For tests and tools.
    public func allEvents() throws -> [Event] {
        let snapshot = snapshot()
        return try withDictionaries { d in
            try snapshot.blocks.flatMap { try $0.events(users: d.users.table, sessions: d.sessions.table) }
        }
    }

    /// A block file name: its day and the manifest generation that published it.
    /// `part` tells apart the blocks of one day that one round writes (a day read in
    /// stretches, `RoundPartition`); the first has no suffix.
    static func blockName(day: Int32, generation: UInt64, part: Int = 0) -> String {
        let (y, m, d) = Timestamp.civilFromDays(Int(day))
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let suffix = part == 0 ? "" : "-\(part)"
        return "\(pad(y, 4))\(pad(m, 2))\(pad(d, 2))-\(pad(Int(generation), 8))\(suffix)\(BlockLayout.fileSuffix)"
    }
}

/// Counts durable steps of a compaction and fails the chosen one, so tests can stop the
/// protocol at every write, fsync and rename and check what a restart sees.
public final class FaultInjector: @unchecked Sendable {
    // Unchecked: `steps` is only touched under `lock` (compaction workers write blocks in
    // parallel).
    public let failAt: Int
    private let lock = NSLock()
    private var recorded: [String] = []

    public var steps: [String] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }

    public init(failAt: Int) {
        self.failAt = failAt
    }

    public struct Fault: Error, CustomStringConvertible {
        public let step: String
        public var description: String { "injected failure before \(step)" }
    }

    func check(_ step: String) throws {
        lock.lock()
        recorded.append(step)
        let fail = recorded.count == failAt
        lock.unlock()
        if fail { throw Fault(step: step) }
    }
}
