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
/// | 4 | byte length of the strings |
/// | 4 | CRC32C of the frame header's first 16 bytes and everything after the CRC |
/// | 4 × n | end offset of each string, relative to the strings |
/// | … | the strings' UTF-8 bytes back to back |
///
/// Frames are fsynced before any block that uses their ids is published, so a torn last
/// frame only ever holds ids no published block refers to; opening truncates it.
public struct GlobalDictionary {
    public static let magic: [UInt8] = Array("TALLYDIC".utf8)
    static let frameMagic: UInt32 = 0x5246_4454  // "TDFR" little-endian
    static let headerSize = 16
    static let frameHeaderSize = 20

    public let path: String
    public private(set) var table: ByteStringTable
    /// Strings below this id are durable in the file.
    public private(set) var persistedCount: Int
    var fileSize: Int

    public var count: Int { table.count }

    /// Opens (or creates) the dictionary at `path`, dropping a torn or corrupt tail.
    public static func open(path: String) throws -> GlobalDictionary {
        if !FileIO.exists(path) {
            var header = magic
            header += [1, 0, 0, 0, 0, 0, 0, 0]
            try FileIO.writeAtomically(header, to: path)
        }
        let bytes = try FileIO.readFile(path)
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == magic else {
            throw BlockFormatError.notABlock("\(path) is not a dictionary file")
        }
        let (table, offset) = parse(bytes)
        if offset < bytes.count {
            let fd = try FileIO.open(path, flags: O_WRONLY)
            defer { FileIO.close(fd) }
            try FileIO.truncate(fd, to: offset, path: path)
            try FileIO.fsync(fd, path: path)
        }
        return GlobalDictionary(path: path, table: table, persistedCount: table.count, fileSize: offset)
    }


    /// The strings of every intact frame, and the offset after the last one.
    static func parse(_ bytes: [UInt8]) -> (ByteStringTable, Int) {
        var table = ByteStringTable(capacity: 1024)
        var offset = headerSize
        bytes.withUnsafeBytes { raw in
            while offset + frameHeaderSize <= raw.count {
                var r = ByteReader(raw, offset: offset)
                guard r.read(UInt32.self) == frameMagic, let first = r.read(UInt32.self), let count = r.read(UInt32.self),
                    let blobLength = r.read(UInt32.self), let crc = r.read(UInt32.self),
                    Int(first) == table.count, count <= 1 << 28,
                    let lengths = r.readBytes(Int(count) * 4), let blob = r.readBytes(Int(blobLength))
                else { break }
                var check = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + 16]))
                check = CRC32C.checksum(lengths, continuing: check)
                check = CRC32C.checksum(blob, continuing: check)
                guard check == crc else { break }
                var start = 0
                var valid = true
                for i in 0..<Int(count) {
                    let end = Int(UInt32(littleEndian: lengths.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                    guard end >= start, end <= blob.count else {
                        valid = false
                        break
                    }
                    _ = table.intern(UnsafeRawBufferPointer(rebasing: blob[start..<end]))
                    start = end
                }
                guard valid else { break }
                offset = r.offset
            }
        }
        return (table, offset)
    }

    @inline(__always)
    public mutating func intern(_ bytes: UnsafeRawBufferPointer) -> UInt32 { table.intern(bytes) }

    public func find(_ string: String) -> UInt32? { table.find(string) }

    public func string(_ id: Int) -> String { table.string(id) }

    /// Appends the strings added since the last call as one frame and fsyncs it.
    public mutating func persist() throws {
        let first = persistedCount
        let count = table.count - first
        guard count > 0 else { return }
        let base = Int(table.offsets[first])
        let out = OutputBuffer(capacity: 20 + count * 4 + (table.blob.count - base))
        out.append(littleEndian: Self.frameMagic)
        out.append(littleEndian: UInt32(first))
        out.append(littleEndian: UInt32(count))
        out.append(littleEndian: UInt32(table.blob.count - base))
        out.append(littleEndian: UInt32(0))
        for i in (first + 1)...(first + count) { out.append(littleEndian: table.offsets[i] - UInt32(base)) }
        table.blob.withUnsafeBytes { out.append(UnsafeRawBufferPointer(rebasing: $0[base...])) }
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(start: out.base, count: 16))
        crc = CRC32C.checksum(UnsafeRawBufferPointer(start: out.base + 20, count: out.count - 20), continuing: crc)
        (out.base + 16).storeBytes(of: crc.littleEndian, as: UInt32.self)
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
