import Logging
import Synchronization

/// Persistence of the idempotency index as delta files beside the log.
///
/// Each file holds the entries committed for one range of sequence numbers:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `TIDX` |
/// | 4 | 4 | version (1) |
/// | 8 | 8 | first sequence covered |
/// | 16 | 8 | sequence after the last covered |
/// | 24 | 8 | entry count n |
/// | 32 | 4 | newest receive time in the file, seconds |
/// | 36 | 4 | reserved (0) |
/// | 40 | 36·n | entries: key high u64, key low u64, sequence u64, timestamp µs i64, receive second u32 |
/// | 40+36n | 4 | CRC32C of everything before |
///
/// On open the files are loaded and the log is replayed from the end of the newest one, so
/// startup reads the snapshots plus a short tail rather than the whole log.
enum IdempotencySnapshots {
    static let directoryName = "idempotency"
    static let magic: UInt32 = 0x5844_4954  // "TIDX"
    static let headerSize = 40
    static let entrySize = 36

    static func fileName(from: UInt64, through: UInt64) -> String {
        SegmentName.fileName(firstSequence: from).dropLast(4) + "-" + SegmentName.fileName(firstSequence: through).dropLast(4) + ".idx"
    }

    static func encode(_ entries: [(IdempotencyKey, IdempotencyIndex.Entry)], from: UInt64, through: UInt64) -> [UInt8] {
        let out = OutputBuffer(capacity: headerSize + entries.count * entrySize + 4)
        out.append(littleEndian: magic)
        out.append(littleEndian: UInt32(1))
        out.append(littleEndian: from)
        out.append(littleEndian: through)
        out.append(littleEndian: UInt64(entries.count))
        out.append(littleEndian: entries.map(\.1.receivedSecond).max() ?? 0)
        out.append(littleEndian: UInt32(0))
        for (key, entry) in entries {
            out.append(littleEndian: key.high)
            out.append(littleEndian: key.low)
            out.append(littleEndian: entry.sequence)
            out.append(littleEndian: entry.timestamp)
            out.append(littleEndian: entry.receivedSecond)
        }
        out.append(littleEndian: CRC32C.checksum(out.bytes))
        return out.toArray()
    }

    struct Decoded {
        var from: UInt64
        var through: UInt64
        var newestSecond: UInt32
        var entries: [(IdempotencyKey, IdempotencyIndex.Entry)]
    }

    static func decode(_ bytes: [UInt8]) -> Decoded? {
        bytes.withUnsafeBytes { raw -> Decoded? in
            guard raw.count >= headerSize + 4 else { return nil }
            let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self))
            guard stored == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<raw.count - 4])) else { return nil }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: raw[0..<raw.count - 4]))
            guard r.read(UInt32.self) == magic, r.read(UInt32.self) == 1, let from = r.read(UInt64.self),
                let through = r.read(UInt64.self), let count = r.read(UInt64.self), let newest = r.read(UInt32.self),
                r.read(UInt32.self) != nil, UInt64(r.remaining) == count * UInt64(entrySize)
            else { return nil }
            var entries: [(IdempotencyKey, IdempotencyIndex.Entry)] = []
            entries.reserveCapacity(Int(count))
            for _ in 0..<count {
                let key = IdempotencyKey(high: r.read(UInt64.self)!, low: r.read(UInt64.self)!)
                let entry = IdempotencyIndex.Entry(
                    sequence: r.read(UInt64.self)!, timestamp: r.read(Int64.self)!, receivedSecond: r.read(UInt32.self)!)
                entries.append((key, entry))
            }
            return Decoded(from: from, through: through, newestSecond: newest, entries: entries)
        }
    }
}

extension EventLog {
    var idempotencyDirectory: String { directory + "/" + IdempotencySnapshots.directoryName }

    /// Loads the snapshot files and replays the log after them into `idempotency`.
    func loadIdempotency() throws {
        let dir = idempotencyDirectory
        try FileIO.makeDirectories(dir)
        let nowSecond = UInt32(clamping: currentMicros() / 1_000_000)
        let cutoff = nowSecond > UInt32(idempotency.windowSeconds) ? nowSecond - UInt32(idempotency.windowSeconds) : 0
        var replayFrom: UInt64 = 0
        var corruptFrom: UInt64 = .max
        var loadedFiles = 0
        for name in try FileIO.listDirectory(dir) {
            let path = dir + "/" + name
            if name.hasSuffix(".tmp") {
                try FileIO.unlink(path)
                continue
            }
            guard name.hasSuffix(".idx") else { continue }
            guard let decoded = IdempotencySnapshots.decode(try FileIO.readFile(path)) else {
                let from = UInt64(name.prefix(20)) ?? 0
                corruptFrom = min(corruptFrom, from)
                logger.warning("ignoring corrupt idempotency snapshot; replaying the log instead", metadata: ["file": "\(path)"])
                try FileIO.unlink(path)
                continue
            }
            if decoded.newestSecond < cutoff && !decoded.entries.isEmpty {
                try FileIO.unlink(path)
            } else {
                for (key, entry) in decoded.entries where entry.receivedSecond >= cutoff {
                    idempotency.restore(key, entry, persisted: true)
                }
                loadedFiles += 1
            }
            replayFrom = max(replayFrom, decoded.through)
        }
        replayFrom = min(replayFrom, corruptFrom)
        var reader = LogReader(snapshot: snapshot(), from: replayFrom)
        var replayed = 0
        while let event = try reader.next() {
            guard let id = event.clientEventId else { continue }
            let second = UInt32(clamping: event.receivedAt / 1_000_000)
            guard second >= cutoff else { continue }
            idempotency.restore(
                IdempotencyKey(id), .init(sequence: event.sequence, timestamp: event.timestamp, receivedSecond: second),
                persisted: false)
            replayed += 1
        }
        idempotency.markIndexed(through: durableSequence)
        lastPersistedThrough.withLock { $0 = min(replayFrom, durableSequence) }
        logger.info(
            "loaded idempotency index",
            metadata: ["entries": "\(idempotency.count)", "snapshots": "\(loadedFiles)", "replayed_from": "\(replayFrom)", "replayed": "\(replayed)"])
        if loadedFiles > 32 { try compactIdempotencySnapshots() }
    }

    /// Writes the entries committed since the last call to a new snapshot file.
    public func persistIdempotency() throws {
        let (entries, through) = idempotency.takeUnpersisted()
        let dir = idempotencyDirectory
        let from = lastPersistedThrough.withLock { $0 }
        guard through > from else {
            idempotency.putBackUnpersisted(entries)
            return
        }
        do {
            let bytes = IdempotencySnapshots.encode(entries, from: from, through: through)
            try FileIO.writeAtomically(bytes, to: dir + "/" + IdempotencySnapshots.fileName(from: from, through: through))
            lastPersistedThrough.withLock { $0 = through }
        } catch {
            idempotency.putBackUnpersisted(entries)
            throw error
        }
        idempotency.expire(nowSecond: UInt32(clamping: currentMicros() / 1_000_000))
    }

    /// Rewrites all snapshot files as one.
    func compactIdempotencySnapshots() throws {
        let dir = idempotencyDirectory
        let names = try FileIO.listDirectory(dir).filter { $0.hasSuffix(".idx") }
        let entries = idempotency.state.withLock { s in s.committed.map { ($0.key, $0.value) } }
        let through = idempotency.indexedThrough
        try FileIO.writeAtomically(
            IdempotencySnapshots.encode(entries, from: 0, through: through),
            to: dir + "/" + IdempotencySnapshots.fileName(from: 0, through: through))
        idempotency.state.withLock { $0.unpersisted = [] }
        lastPersistedThrough.withLock { $0 = through }
        let kept = IdempotencySnapshots.fileName(from: 0, through: through)
        for name in names where name != kept { try FileIO.unlink(dir + "/" + name) }
    }
}
