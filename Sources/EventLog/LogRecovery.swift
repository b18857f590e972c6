#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Brings a log directory back to a consistent state after any kind of stop.
///
/// Sealed segments were fsynced before the next one was created, so only the last segment can
/// end in a torn or corrupt batch. Recovery scans it from the checkpoint (or from its header),
/// truncates at the first batch that fails framing, checksum or sequence checks, and logs what
/// it dropped. Anything dropped was never acknowledged: acknowledgements wait for the fsync.
enum LogRecovery {
    struct Result {
        var fd: Int32
        var activePath: String
        var activeFirstSequence: UInt64
        var activeSize: Int
        /// End of the active segment's file: past `activeSize`, zeros filled ahead.
        var fileSize: Int
        var activeCreatedAt: Int64
        var nextSequence: UInt64
        var segments: [(name: String, firstSequence: UInt64)]
    }

    static func createSegment(directory: String, firstSequence: UInt64) throws -> (Int32, String, Int64) {
        let path = directory + "/" + SegmentName.fileName(firstSequence: firstSequence)
        let createdAt = currentMicros()
        // Not O_APPEND: the writer writes at its own offset, into space filled ahead.
        let fd = try FileIO.open(path, flags: O_RDWR | O_CREAT | O_TRUNC)
        do {
            try SegmentHeader(firstSequence: firstSequence, createdAt: createdAt).encoded().withUnsafeBytes {
                try FileIO.writeAll(fd, $0, path: path)
            }
            try FileIO.fsync(fd, path: path)
            try FileIO.fsyncDirectory(directory)
        } catch {
            FileIO.close(fd)
            throw error
        }
        return (fd, path, createdAt)
    }

    static func recover(directory: String, logger: Logger) throws -> Result {
        for name in try FileIO.listDirectory(directory) where name.hasSuffix(".tmp") {
            try FileIO.unlink(directory + "/" + name)
        }
        let checkpoint = (try? FileIO.readFile(directory + "/" + LogCheckpoint.fileName)).flatMap(LogCheckpoint.parse)
        var segments = try SegmentName.list(in: directory)

        while let last = segments.last {
            let path = directory + "/" + last.name
            let fd = try FileIO.open(path, flags: O_RDWR)
            let size = try FileIO.fileSize(fd, path: path)
            var headerBytes = [UInt8](repeating: 0, count: SegmentHeader.size)
            let n = try headerBytes.withUnsafeMutableBytes { try FileIO.pread(fd, into: $0, at: 0, path: path) }
            guard n == SegmentHeader.size,
                let header = headerBytes.withUnsafeBytes({ SegmentHeader.parse($0) }),
                header.firstSequence == last.firstSequence
            else {
                FileIO.close(fd)
                // The header is written and fsynced before any batch, so a segment without a
                // valid header was being created when the process stopped.
                if size <= SegmentHeader.size {
                    logger.warning("removing log segment torn during creation", metadata: ["segment": "\(last.name)", "bytes": "\(size)"])
                    try FileIO.unlink(path)
                } else {
                    logger.error("log segment has a corrupt header; moved aside", metadata: ["segment": "\(last.name)", "bytes": "\(size)"])
                    try FileIO.rename(path, path + ".corrupt")
                }
                try FileIO.fsyncDirectory(directory)
                segments.removeLast()
                if segments.isEmpty {
                    let (newFD, newPath, createdAt) = try createSegment(directory: directory, firstSequence: last.firstSequence)
                    return Result(
                        fd: newFD, activePath: newPath, activeFirstSequence: last.firstSequence, activeSize: SegmentHeader.size,
                        fileSize: SegmentHeader.size, activeCreatedAt: createdAt, nextSequence: last.firstSequence,
                        segments: [(SegmentName.fileName(firstSequence: last.firstSequence), last.firstSequence)])
                }
                continue
            }

            var start = SegmentHeader.size
            var expected = header.firstSequence
            if let checkpoint, checkpoint.segmentFirstSequence == header.firstSequence,
                checkpoint.offset >= UInt64(SegmentHeader.size), checkpoint.offset <= UInt64(size)
            {
                start = Int(checkpoint.offset)
                expected = checkpoint.nextSequence
            }
            var tail = [UInt8](repeating: 0, count: size - start)
            _ = try tail.withUnsafeMutableBytes { try FileIO.pread(fd, into: $0, at: start, path: path) }
            let scan = tail.withUnsafeBytes { SegmentScanner.scan($0, from: 0, expectedSequence: expected) }
            let validEnd = start + scan.validEnd
            var fileSize = size
            if let (offset, problem) = scan.problem {
                logger.warning(
                    "truncating torn or corrupt log tail",
                    metadata: [
                        "segment": "\(last.name)", "offset": "\(start + offset)", "problem": "\(problem)",
                        "dropped_bytes": "\(size - validEnd)",
                    ])
                try FileIO.truncate(fd, to: validEnd, path: path)
                try FileIO.fsync(fd, path: path)
                fileSize = validEnd
            }
            logger.info(
                "recovered event log",
                metadata: [
                    "segments": "\(segments.count)", "next_sequence": "\(scan.nextSequence)",
                    "scanned_bytes": "\(size - start)",
                ])
            return Result(
                fd: fd, activePath: path, activeFirstSequence: header.firstSequence, activeSize: validEnd,
                fileSize: fileSize, activeCreatedAt: header.createdAt, nextSequence: scan.nextSequence, segments: segments)
        }

        let first = checkpoint?.nextSequence ?? 0
        let (fd, path, createdAt) = try createSegment(directory: directory, firstSequence: first)
        return Result(
            fd: fd, activePath: path, activeFirstSequence: first, activeSize: SegmentHeader.size, fileSize: SegmentHeader.size,
            activeCreatedAt: createdAt,
            nextSequence: first, segments: [(SegmentName.fileName(firstSequence: first), first)])
    }
}
