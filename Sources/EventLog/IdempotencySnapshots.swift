import Logging
import Synchronization

/// Persistence of the idempotency index as delta files beside the log.
///
/// Each file holds the entries committed for one range of sequence numbers:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `TIDX` |
/// | 4 | 4 | version (2) |
/// | 8 | 8 | first sequence covered |
/// | 16 | 8 | sequence after the last covered |
/// | 24 | 8 | entry count n |
/// | 32 | 4 | newest receive time in the file, seconds |
/// | 36 | 4 | reserved (0) |
/// | 40 | 28·n | entries: key high u64, key low u64, timestamp µs i64, receive second u32 |
/// | 40+28n | 4 | CRC32C of everything before |
///
/// Version 1 files (36-byte entries with the event's sequence number after the key, which
/// nothing read) are still loaded.
///
/// On open the files are loaded and the log is replayed from the end of the newest one, so
/// startup reads the snapshots plus a short tail rather than the whole log.
package enum IdempotencySnapshots {
    static let directoryName = "idempotency"
    static let magic: UInt32 = 0x5844_4954  // "TIDX"
    static let headerSize = 40
    static let version: UInt32 = 2
    static let entrySize = 28
    /// Entry size and timestamp offset of each readable version.
    static func layout(version: UInt32) -> (entrySize: Int, timestampOffset: Int)? {
        switch version {
        case 1: (36, 24)
        case 2: (28, 16)
        default: nil
        }
    }
    /// More snapshot files than this are merged into one.
    static let maxFiles = 16

    static func peekThrough(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= headerSize else { return nil }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
    }

    static func peekCount(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= headerSize else { return nil }
        return bytes.withUnsafeBytes { Int(clamping: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self))) }
    }

    static func peekNewestSecond(_ bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= headerSize else { return nil }
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 32, as: UInt32.self)) }
    }

    static func fileName(from: UInt64, through: UInt64) -> String {
        SegmentName.fileName(firstSequence: from).dropLast(4) + "-" + SegmentName.fileName(firstSequence: through).dropLast(4) + ".idx"
    }

    package static func encode(_ entries: [(IdempotencyKey, IdempotencyIndex.Entry)], from: UInt64, through: UInt64) -> OutputBuffer {
        encode(count: entries.count, from: from, through: through) { append in
            for (key, entry) in entries { append(key, entry) }
        }
    }

    /// A snapshot of the `count` entries `forEach` hands over.
    static func encode(
        count: Int, from: UInt64, through: UInt64, _ forEach: ((IdempotencyKey, IdempotencyIndex.Entry) -> Void) -> Void
    ) -> OutputBuffer {
        let out = OutputBuffer(capacity: headerSize + count * entrySize + 4)
        out.append(littleEndian: magic)
        out.append(littleEndian: version)
        out.append(littleEndian: from)
        out.append(littleEndian: through)
        out.append(littleEndian: UInt64(count))
        out.append(littleEndian: UInt32(0))  // newest receive second, patched below
        out.append(littleEndian: UInt32(0))
        var newest: UInt32 = 0
        var written = 0
        forEach { key, entry in
            out.append(littleEndian: key.high)
            out.append(littleEndian: key.low)
            out.append(littleEndian: entry.timestamp)
            out.append(littleEndian: entry.receivedSecond)
            newest = max(newest, entry.receivedSecond)
            written += 1
        }
        precondition(written == count, "snapshot entry count changed while encoding")
        (out.base + 32).storeBytes(of: newest.littleEndian, as: UInt32.self)
        out.append(littleEndian: CRC32C.checksum(out.bytes))
        return out
    }

    package struct Decoded {
        package var from: UInt64
        package var through: UInt64
        package var newestSecond: UInt32
        package var count: Int
    }

    /// Checks a snapshot file and hands each entry to `restore`. Returns nil, having restored
    /// nothing, when the file is damaged.
    package static func decode(_ bytes: [UInt8], restore: (_ entries: UnsafeRawBufferPointer, _ count: Int, _ layout: (entrySize: Int, timestampOffset: Int)) -> Void) -> Decoded? {
        bytes.withUnsafeBytes { raw -> Decoded? in
            guard raw.count >= headerSize + 4 else { return nil }
            let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self))
            guard stored == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<raw.count - 4])) else { return nil }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: raw[0..<raw.count - 4]))
            guard r.read(UInt32.self) == magic, let version = r.read(UInt32.self), let layout = layout(version: version),
                let from = r.read(UInt64.self), let through = r.read(UInt64.self), let count = r.read(UInt64.self),
                let newest = r.read(UInt32.self), r.read(UInt32.self) != nil,
                count <= UInt64(r.remaining), UInt64(r.remaining) == count * UInt64(layout.entrySize)
            else { return nil }
            restore(UnsafeRawBufferPointer(rebasing: raw[headerSize..<raw.count - 4]), Int(count), layout)
            return Decoded(from: from, through: through, newestSecond: newest, count: Int(count))
        }
    }
}

extension EventLog {
    var idempotencyDirectory: String { directory + "/" + IdempotencySnapshots.directoryName }

    /// Loads the snapshot files and replays the log after them into `idempotency`, up to
    /// `through` (the durable end of the log when it was opened). Batches whose header says
    /// they hold no client ids are skipped without decompression.
    func loadIdempotency(through: UInt64, snapshot logSnapshot: LogSnapshot) throws {
        let started = monotonicNanos()
        let dir = idempotencyDirectory
        try FileIO.makeDirectories(dir)
        let nowSecond = UInt32(clamping: currentMicros() / 1_000_000)
        let cutoff = nowSecond > UInt32(idempotency.windowSeconds) ? nowSecond - UInt32(idempotency.windowSeconds) : 0
        var replayFrom: UInt64 = 0
        var corruptFrom: UInt64 = .max
        var loadedFiles = 0
        let names = try FileIO.listDirectory(dir)
        // Sized once from the headers' entry counts (capped by what the file could hold),
        // rather than grown through every resize while loading millions of entries.
        var total = 0
        for name in names where name.hasSuffix(".idx") {
            let path = dir + "/" + name
            guard let header = try? FileIO.readFile(path, limit: IdempotencySnapshots.headerSize),
                let count = IdempotencySnapshots.peekCount(header)
            else { continue }
            total += min(count, (FileIO.fileSize(path: path) ?? 0) / IdempotencySnapshots.entrySize)
        }
        idempotency.reserveCapacity(total)
        // The file reaching furthest is kept even when expired: it records how far the log
        // has been indexed, so the next start does not replay from the beginning.
        var furthest: UInt64 = 0
        for name in names where name.hasSuffix(".idx") {
            if let through = UInt64(name.dropLast(4).split(separator: "-").last ?? "") { furthest = max(furthest, through) }
        }
        for name in names {
            let path = dir + "/" + name
            if name.hasSuffix(".tmp") {
                try FileIO.unlink(path)
                continue
            }
            guard name.hasSuffix(".idx") else { continue }
            let bytes = try FileIO.readFile(path)
            // Files entirely older than the window are deleted without loading.
            if let newest = IdempotencySnapshots.peekNewestSecond(bytes), newest < cutoff,
                let through = IdempotencySnapshots.peekThrough(bytes), through < furthest
            {
                try FileIO.unlink(path)
                continue
            }
            let decoded = IdempotencySnapshots.decode(bytes) { entries, count, layout in
                idempotency.restoreSnapshot(
                    entries, count: count, entrySize: layout.entrySize, timestampOffset: layout.timestampOffset, cutoff: cutoff)
            }
            guard let decoded else {
                let from = UInt64(name.prefix(20)) ?? 0
                corruptFrom = min(corruptFrom, from)
                logger.warning("ignoring corrupt idempotency snapshot; replaying the log instead", metadata: ["file": "\(path)"])
                try FileIO.unlink(path)
                continue
            }
            loadedFiles += 1
            replayFrom = max(replayFrom, decoded.through)
        }
        replayFrom = min(replayFrom, corruptFrom)
        var reader = LogReader(snapshot: logSnapshot, from: replayFrom)
        var replayed = 0
        var skippedBatches = 0
        while let (header, payload) = try reader.nextBatch(decompressing: { $0.flags & BatchHeader.hasClientEventIds != 0 }) {
            if header.firstSequence >= through { break }
            guard let payload else {
                skippedBatches += 1
                continue
            }
            try payload.withUnsafeBytes { bytes in
                var decoder = try EventRecordDecoder(header: header, payload: bytes)
                while let event = try decoder.next() {
                    guard event.sequence >= replayFrom, event.sequence < through, let id = event.clientEventId else { continue }
                    let second = UInt32(clamping: event.receivedAt / 1_000_000)
                    guard second >= cutoff else { continue }
                    idempotency.restore(
                        IdempotencyKey(id), .init(timestamp: event.timestamp, receivedSecond: second),
                        persisted: false)
                    replayed += 1
                }
            }
        }
        idempotency.markIndexed(through: through)
        lastPersistedThrough.withLock { $0 = min(replayFrom, through) }
        logger.info(
            "loaded idempotency index",
            metadata: [
                "entries": "\(idempotency.count)", "snapshots": "\(loadedFiles)", "replayed_from": "\(replayFrom)",
                "replayed": "\(replayed)", "batches_skipped": "\(skippedBatches)",
                "ms": "\((monotonicNanos() - started) / 1_000_000)",
            ])
        idempotency.markReady()
        // Record what was replayed right away, so a crash loop never replays it again.
        if replayed > 0 || loadedFiles > IdempotencySnapshots.maxFiles { try persistIdempotency() }
    }

    /// Writes the entries committed since the last call to a new snapshot file.
    public func persistIdempotency() throws {
        guard idempotency.isReady else { return }
        try persistLock.withLock { _ in try persistIdempotencyLocked() }
    }

    private func persistIdempotencyLocked() throws {
        let (entries, through) = idempotency.takeUnpersisted()
        let dir = idempotencyDirectory
        let from = lastPersistedThrough.withLock { $0 }
        guard through > from else {
            idempotency.putBackUnpersisted(entries)
            return
        }
        do {
            let bytes = IdempotencySnapshots.encode(entries, from: from, through: through)
            try FileIO.writeAtomically(bytes.bytes, to: dir + "/" + IdempotencySnapshots.fileName(from: from, through: through))
            lastPersistedThrough.withLock { $0 = through }
        } catch {
            idempotency.putBackUnpersisted(entries)
            throw error
        }
        idempotency.expire(nowSecond: UInt32(clamping: currentMicros() / 1_000_000))
        if try FileIO.listDirectory(dir).filter({ $0.hasSuffix(".idx") }).count > IdempotencySnapshots.maxFiles {
            try compactIdempotencySnapshots()
        }
    }

    /// Rewrites all snapshot files as one.
    func compactIdempotencySnapshots() throws {
        let dir = idempotencyDirectory
        let names = try FileIO.listDirectory(dir).filter { $0.hasSuffix(".idx") }
        // Everything committed so far, and the sequence it covers, taken together; encoded
        // straight from the table, since a copy of millions of entries would double the
        // index's memory for a moment.
        let (bytes, through) = idempotency.state.withLock { s in
            defer { s.unpersisted = [] }
            let bytes = IdempotencySnapshots.encode(count: s.committed.count, from: 0, through: s.indexedThrough) { append in
                s.committed.forEach(append)
            }
            return (bytes, s.indexedThrough)
        }
        try FileIO.writeAtomically(bytes.bytes, to: dir + "/" + IdempotencySnapshots.fileName(from: 0, through: through))
        lastPersistedThrough.withLock { $0 = through }
        let kept = IdempotencySnapshots.fileName(from: 0, through: through)
        for name in names where name != kept { try FileIO.unlink(dir + "/" + name) }
    }
}
