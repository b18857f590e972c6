/// The 40-byte header at the start of every segment file.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `TALLYLOG` |
/// | 8 | 2 | format version (1) |
/// | 10 | 6 | reserved (0) |
/// | 16 | 8 | sequence number of the segment's first event |
/// | 24 | 8 | creation time, µs since the epoch |
/// | 32 | 4 | CRC32C of bytes 0..<32 |
/// | 36 | 4 | reserved (0) |
public struct SegmentHeader: Equatable, Sendable {
    public static let size = 40
    public static let magic: [UInt8] = Array("TALLYLOG".utf8)
    public static let version: UInt16 = 1

    public var firstSequence: UInt64
    public var createdAt: Int64

    public init(firstSequence: UInt64, createdAt: Int64) {
        self.firstSequence = firstSequence
        self.createdAt = createdAt
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: SegmentHeader.size)
        bytes.withUnsafeMutableBytes { p in
            for (i, b) in SegmentHeader.magic.enumerated() { p[i] = b }
            p.storeBytes(of: SegmentHeader.version.littleEndian, toByteOffset: 8, as: UInt16.self)
            p.storeBytes(of: firstSequence.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: createdAt.littleEndian, toByteOffset: 24, as: Int64.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<32]))
            p.storeBytes(of: crc.littleEndian, toByteOffset: 32, as: UInt32.self)
        }
        return bytes
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer) -> SegmentHeader? {
        guard bytes.count >= size, Array(bytes[0..<8]) == magic else { return nil }
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        guard crc == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<32])),
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self)) == version
        else { return nil }
        return SegmentHeader(
            firstSequence: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            createdAt: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: Int64.self)))
    }
}

/// Segment files are named by their first sequence number, zero-padded so that names sort in
/// log order: `00000000000000000000.seg`.
public enum SegmentName {
    public static let suffix = ".seg"

    public static func fileName(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    public static func firstSequence(of fileName: String) -> UInt64? {
        guard fileName.hasSuffix(suffix), fileName.utf8.count == 20 + suffix.utf8.count else { return nil }
        return UInt64(fileName.dropLast(suffix.count))
    }

    /// The segment files in `directory`, in log order.
    public static func list(in directory: String) throws -> [(name: String, firstSequence: UInt64)] {
        try FileIO.listDirectory(directory).compactMap { name in
            firstSequence(of: name).map { (name, $0) }
        }.sorted { $0.firstSequence < $1.firstSequence }
    }
}

/// The result of walking the batches of one segment's bytes.
public struct SegmentScan {
    /// Offset just past the last valid batch.
    public var validEnd: Int
    /// The sequence number after the last valid batch.
    public var nextSequence: UInt64
    public var batches: Int = 0
    public var events: UInt64 = 0
    /// The first problem found and its offset; nil when the segment ends cleanly.
    public var problem: (offset: Int, problem: BatchHeader.Problem)?
    /// Zero bytes after the last batch: space the writer filled ahead of its appends (see
    /// `EventLog`). A clean end, not a problem.
    public var zeroTail = 0
}

public enum SegmentScanner {
    /// Walks batches from `offset` checking each, without looking inside payloads.
    public static func scan(_ bytes: UnsafeRawBufferPointer, from offset: Int, expectedSequence: UInt64) -> SegmentScan {
        scan(bytes, from: offset, expectedSequence: expectedSequence) { _, _, _ in }
    }

    /// Walks batches from `offset`, checking framing, checksums and sequence continuity, and
    /// stops at the first problem. `body` sees each valid batch.
    public static func scan(
        _ bytes: UnsafeRawBufferPointer, from offset: Int, expectedSequence: UInt64,
        _ body: (Int, BatchHeader, UnsafeRawBufferPointer) throws -> Void
    ) rethrows -> SegmentScan {
        var scan = SegmentScan(validEnd: offset, nextSequence: expectedSequence)
        var at = offset
        while at < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[at...])
            switch BatchHeader.parseFrame(rest) {
            case .failure(let problem):
                if isZero(rest) {
                    scan.zeroTail = rest.count
                } else {
                    scan.problem = (at, problem)
                }
                return scan
            case .success(let (header, payload)):
                guard header.firstSequence == scan.nextSequence else {
                    scan.problem = (at, .sequenceGap(expected: scan.nextSequence, found: header.firstSequence))
                    return scan
                }
                try body(at, header, payload)
                at += header.frameLength
                scan.validEnd = at
                scan.nextSequence = header.endSequence
                scan.batches += 1
                scan.events += UInt64(header.eventCount)
            }
        }
        return scan
    }

    /// Whether every byte is zero, eight at a time.
    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var at = 0
        var any: UInt64 = 0
        while at + 8 <= bytes.count {
            any |= bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)
            at += 8
            if at & 4095 == 0, any != 0 { return false }
        }
        while at < bytes.count {
            any |= UInt64(bytes[at])
            at += 1
        }
        return any == 0
    }
}
