public import EventLog

/// One live block as the manifest lists it.
public struct BlockEntry: Sendable, Equatable {
    public var name: String
    public var day: Int32
    public var rows: UInt32
    public var minTimestamp: Int64
    public var maxTimestamp: Int64
    public var bytes: UInt64
    public var codec: Codec
    public var sequenceRanges: [SequenceRange]
}

/// The list of live blocks and how far the log has been compacted. Replaced as a whole, by
/// write-then-rename, so a crash leaves either the old list or the new one.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `TALLYMAN` |
/// | 8 | 2 | version (1) |
/// | 10 | 2 | reserved, zero |
/// | 12 | 4 | CRC32C of every byte from 16 to the end |
/// | 16 | 8 | generation (incremented by every publish) |
/// | 24 | 8 | compacted through: every event with a lower sequence is in a listed block |
/// | 32 | 4 | user dictionary size the blocks rely on |
/// | 36 | 4 | session dictionary size the blocks rely on |
/// | 40 | 4 | block count |
/// | 44 | … | per block: varint name length and name, i32 day, u32 rows, i64 min and max timestamp, u64 file bytes, u8 codec, varint range count, then per range varint start and varint length |
public struct Manifest: Sendable, Equatable {
    public static let fileName = "MANIFEST"
    static let magic: [UInt8] = Array("TALLYMAN".utf8)
    static let version: UInt16 = 1

    public var generation: UInt64 = 0
    public var compactedThrough: UInt64 = 0
    public var userDictionaryCount: UInt32 = 0
    public var sessionDictionaryCount: UInt32 = 0
    public var blocks: [BlockEntry] = []

    public init() {}

    public var rows: UInt64 { blocks.reduce(0) { $0 + UInt64($1.rows) } }

    public func encoded() -> [UInt8] {
        let out = OutputBuffer(capacity: 256 + blocks.count * 64)
        Self.magic.withUnsafeBytes { out.append($0) }
        out.append(littleEndian: Self.version)
        out.append(littleEndian: UInt16(0))
        out.append(littleEndian: UInt32(0))
        out.append(littleEndian: generation)
        out.append(littleEndian: compactedThrough)
        out.append(littleEndian: userDictionaryCount)
        out.append(littleEndian: sessionDictionaryCount)
        out.append(littleEndian: UInt32(blocks.count))
        for b in blocks {
            var name = b.name
            name.withUTF8 { out.append(lengthPrefixed: UnsafeRawBufferPointer($0)) }
            out.append(littleEndian: b.day)
            out.append(littleEndian: b.rows)
            out.append(littleEndian: b.minTimestamp)
            out.append(littleEndian: b.maxTimestamp)
            out.append(littleEndian: b.bytes)
            out.append(byte: b.codec.rawValue)
            out.append(varint: UInt64(b.sequenceRanges.count))
            for r in b.sequenceRanges {
                out.append(varint: r.start)
                out.append(varint: r.end - r.start)
            }
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: out.base + 16, count: out.count - 16))
        (out.base + 12).storeBytes(of: crc.littleEndian, as: UInt32.self)
        return out.toArray()
    }

    public static func decode(_ bytes: [UInt8]) throws(BlockFormatError) -> Manifest {
        guard bytes.count >= 44, Array(bytes[0..<8]) == magic else { throw BlockFormatError.badFooter("manifest: bad magic") }
        do {
        return try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw, offset: 8)
            guard r.read(UInt16.self) == version else { throw BlockFormatError.badFooter("manifest: unsupported version") }
            _ = r.read(UInt16.self)
            guard let crc = r.read(UInt32.self), CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[16...])) == crc else {
                throw BlockFormatError.badFooter("manifest: checksum mismatch")
            }
            var m = Manifest()
            guard let generation = r.read(UInt64.self), let through = r.read(UInt64.self), let users = r.read(UInt32.self),
                let sessions = r.read(UInt32.self), let count = r.read(UInt32.self)
            else { throw BlockFormatError.badFooter("manifest: truncated") }
            m.generation = generation
            m.compactedThrough = through
            m.userDictionaryCount = users
            m.sessionDictionaryCount = sessions
            for _ in 0..<count {
                guard let name = r.readLengthPrefixed(max: 4096), let day = r.read(Int32.self), let rows = r.read(UInt32.self),
                    let minTs = r.read(Int64.self), let maxTs = r.read(Int64.self), let size = r.read(UInt64.self),
                    let codecByte = r.readByte(), let codec = Codec(rawValue: codecByte), let rangeCount = r.readVarint(),
                    rangeCount < 1 << 24
                else { throw BlockFormatError.badFooter("manifest: truncated block entry") }
                var ranges: [SequenceRange] = []
                for _ in 0..<rangeCount {
                    guard let start = r.readVarint(), let length = r.readVarint() else { throw BlockFormatError.badFooter("manifest: truncated range") }
                    ranges.append(SequenceRange(start, start &+ length))
                }
                m.blocks.append(
                    BlockEntry(
                        name: String(decoding: name, as: UTF8.self), day: day, rows: rows, minTimestamp: minTs,
                        maxTimestamp: maxTs, bytes: size, codec: codec, sequenceRanges: ranges))
            }
            guard r.isAtEnd else { throw BlockFormatError.badFooter("manifest: trailing bytes") }
            return m
        }
        } catch let error as BlockFormatError {
            throw error
        } catch {
            throw .badFooter("manifest: \(error)")
        }
    }
}
