#if canImport(Glibc)
import Glibc
#endif
import EventLog

/// A project-wide, append-only dictionary giving each distinct string (a user id, a session
/// id) a dense integer, assigned once and never changed.
///
/// Blocks store these integers instead of strings, so distinct counts, funnels and retention
/// work on integers and bitmaps across all blocks. The file is a header and a sequence of
/// frames, each holding the strings added by one compaction:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `TALLYDIC` |
/// | 8 | 2 | version (1) |
/// | 10 | 6 | reserved, zero |
///
/// then per frame:
///
/// | size | field |
/// |---|---|
/// | 4 | magic `TDFR` |
/// | 4 | id of the frame's first string |
/// | 4 | string count `n` |
/// | 4 | stored (compressed) payload length |
/// | 4 | raw payload length |
/// | 1 | codec of the payload (2 = Zstd) |
/// | 3 | reserved, zero |
/// | 4 | CRC32C of the frame header's first 24 bytes and the stored payload |
/// | … | payload: `u32` end offset of each of the `n` strings, then their UTF-8 bytes |
///
/// Frames are fsynced before any block that uses their ids is published, so a torn last
/// frame only ever holds ids no published block refers to; opening truncates it.
public struct GlobalDictionary {
    public static let magic: [UInt8] = Array("TALLYDIC".utf8)
    static let frameMagic: UInt32 = 0x5246_4454  // "TDFR" little-endian
    static let headerSize = 16
    static let frameHeaderSize = 28

    public let path: String
    public private(set) var table: ByteStringTable
    /// Strings below this id are durable in the file.
    public private(set) var persistedCount: Int
    var fileSize: Int

    public var count: Int { table.count }

    /// Opens (or creates) the dictionary at `path`, dropping a torn or corrupt tail.
    /// `indexed: false` skips building the hash index (readers that only map ids to strings);
    /// the first `intern` builds it.
    public static func open(path: String, indexed: Bool = true) throws -> GlobalDictionary {
        if !FileIO.exists(path) {
            var header = magic
            header += [1, 0, 0, 0, 0, 0, 0, 0]
            try FileIO.writeAtomically(header, to: path)
        }
        let bytes = try FileIO.readFile(path)
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == magic else {
            throw BlockFormatError.notABlock("\(path) is not a dictionary file")
        }
        let (table, offset) = parse(bytes, indexed: indexed)
        if offset < bytes.count {
            let fd = try FileIO.open(path, flags: O_WRONLY)
            defer { FileIO.close(fd) }
            try FileIO.truncate(fd, to: offset, path: path)
            try FileIO.fsync(fd, path: path)
        }
        return GlobalDictionary(path: path, table: table, persistedCount: table.count, fileSize: offset)
    }


    /// The strings of every intact frame, and the offset after the last one.
    static func parse(_ bytes: [UInt8], indexed: Bool = true) -> (ByteStringTable, Int) {
        var table = ByteStringTable(capacity: 1024, packsIds: true)
        var offset = headerSize
        bytes.withUnsafeBytes { raw in
            // Size the table once for every frame's strings (a dictionary holds millions),
            // rather than rehashing at each doubling; frames are checked properly below.
            var total = 0
            var blobBytes = 0
            var scan = headerSize
            while scan + frameHeaderSize <= raw.count {
                var r = ByteReader(raw, offset: scan)
                guard r.read(UInt32.self) == frameMagic, r.read(UInt32.self) != nil, let count = r.read(UInt32.self),
                    let storedLength = r.read(UInt32.self), let rawLength = r.read(UInt32.self), count <= 1 << 28,
                    scan + frameHeaderSize + Int(storedLength) <= raw.count
                else { break }
                total += Int(count)
                blobBytes += max(0, Int(rawLength) - Int(count) * 4)
                scan += frameHeaderSize + Int(storedLength)
            }
            if indexed { table.reserve(count: total, bytes: blobBytes) }
            while offset + frameHeaderSize <= raw.count {
                var r = ByteReader(raw, offset: offset)
                guard r.read(UInt32.self) == frameMagic, let first = r.read(UInt32.self), let count = r.read(UInt32.self),
                    let storedLength = r.read(UInt32.self), let rawLength = r.read(UInt32.self), let codecByte = r.readByte(),
                    let codec = Codec(rawValue: codecByte), r.readBytes(3) != nil, let crc = r.read(UInt32.self),
                    Int(first) == table.count, count <= 1 << 28, UInt64(rawLength) >= UInt64(count) * 4,
                    let stored = r.readBytes(Int(storedLength))
                else { break }
                var check = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + 24]))
                check = CRC32C.checksum(stored, continuing: check)
                guard check == crc else { break }
                var payload = [UInt8](repeating: 0, count: Int(rawLength))
                guard (try? payload.withUnsafeMutableBytes { try codec.decompress(stored, into: $0) }) != nil else { break }
                let valid = payload.withUnsafeBytes { p -> Bool in
                    let blob = UnsafeRawBufferPointer(rebasing: p[(Int(count) * 4)...])
                    if !indexed {
                        return table.appendWithoutIndex(count: Int(count), ends: UnsafeRawBufferPointer(rebasing: p[..<(Int(count) * 4)]), blob: blob)
                    }
                    var start = 0
                    for i in 0..<Int(count) {
                        let end = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                        guard end >= start, end <= blob.count else { return false }
                        _ = table.intern(UnsafeRawBufferPointer(rebasing: blob[start..<end]))
                        start = end
                    }
                    return start == blob.count
                }
                guard valid else { break }
                offset = r.offset
            }
        }
        return (table, offset)
    }

    @inline(__always)
    public mutating func intern(_ bytes: UnsafeRawBufferPointer) -> UInt32 { table.intern(bytes) }

    /// The ids of every string of `table`, adding those that are new (see
    /// `ByteStringTable.internAll`).
    public mutating func internAll(of table: ByteStringTable) -> [UInt32] { self.table.internAll(of: table) }

    /// Makes room for `additional` more strings with at most one rehash (a round that adds
    /// millions of session ids would otherwise rehash the whole table several times).
    public mutating func reserve(additional: Int) {
        table.reserve(count: table.count + additional, bytes: 0)
    }

    public func find(_ string: String) -> UInt32? { table.find(string) }

    public func string(_ id: Int) -> String { table.string(id) }

    /// Appends the strings added since the last call as one Zstd-compressed frame, and
    /// fsyncs it.
    public mutating func persist() throws {
        let first = persistedCount
        let count = table.count - first
        guard count > 0 else { return }
        // The table keeps ids packed; the file holds the strings themselves.
        // The payload is the end offsets, then the strings: the strings are written after
        // room for the offsets, which are filled in once known (no second copy of a frame
        // that can be tens of megabytes).
        var ends: [UInt32] = []
        ends.reserveCapacity(count)
        let endsBytes = count * 4
        let payload = OutputBuffer(capacity: endsBytes + 2 * (Int(table.offsets[first + count]) - Int(table.offsets[first])))
        payload.count = endsBytes
        table.appendStrings(first..<(first + count), to: payload, ends: &ends)
        for (i, end) in ends.enumerated() {
            (payload.base + i * 4).storeBytes(of: (end - UInt32(endsBytes)).littleEndian, as: UInt32.self)
        }
        let out = OutputBuffer(capacity: Self.frameHeaderSize + Codec.zstd.maxCompressedSize(payload.count))
        out.append(littleEndian: Self.frameMagic)
        out.append(littleEndian: UInt32(first))
        out.append(littleEndian: UInt32(count))
        out.append(littleEndian: UInt32(0))  // stored length, patched below
        out.append(littleEndian: UInt32(payload.count))
        out.append(byte: Codec.zstd.rawValue)
        out.append(byte: 0)
        out.append(byte: 0)
        out.append(byte: 0)
        out.append(littleEndian: UInt32(0))  // CRC, patched below
        let stored = try Codec.zstd.compress(payload.bytes, into: out, level: 1)
        (out.base + 12).storeBytes(of: UInt32(stored).littleEndian, as: UInt32.self)
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(start: out.base, count: 24))
        crc = CRC32C.checksum(UnsafeRawBufferPointer(start: out.base + Self.frameHeaderSize, count: stored), continuing: crc)
        (out.base + 24).storeBytes(of: crc.littleEndian, as: UInt32.self)
        let fd = try FileIO.open(path, flags: O_WRONLY)
        defer { FileIO.close(fd) }
        try FileIO.pwriteAll(fd, out.bytes, at: fileSize, path: path)
        try FileIO.fsync(fd, path: path)
        fileSize += out.count
        persistedCount = table.count
    }

    /// Forgets strings added since the last `persist` (a compaction that failed): their ids
    /// will be handed out again.
    public mutating func rollBack() throws {
        guard table.count > persistedCount else { return }
        self = try GlobalDictionary.open(path: path)
    }
}
