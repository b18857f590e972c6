public import EventLog

/// What a column holds, as stored. Raw values are on-disk ids: never renumber them.
public enum ColumnKind: UInt8, Sendable, CustomStringConvertible {
    /// 64-bit integers (timestamps, sequence numbers, integer properties).
    case int = 1
    case double = 2
    case bool = 3
    /// Strings as codes into the block's sorted dictionary.
    case string = 4
    /// JSON text of arrays, dictionary-coded like strings but kept apart so they round-trip.
    case json = 5
    /// Presence only: a property sent as JSON `null`, or a flag such as a clamped timestamp.
    case null = 6
    /// Integers that are ids in a project-wide dictionary (user and session ids).
    case globalId = 7

    public var description: String {
        switch self {
        case .int: "int"
        case .double: "double"
        case .bool: "bool"
        case .string: "string"
        case .json: "json"
        case .null: "null"
        case .globalId: "global-id"
        }
    }
}

/// How a column's values chunk is laid out before the general codec.
public enum ValueEncoding: UInt8, Sendable, CustomStringConvertible {
    case none = 0
    case intFrame = 1
    case intDelta = 2
    case intDictionary = 3
    case intRuns = 11
    /// Doubles that are all exact decimals with at most `parameter` digits after the point,
    /// stored as the integers `v × 10^parameter` through the best integer encoding.
    case decimal = 4
    case rawDouble = 5
    /// Dictionary codes, little-endian, one, two or four bytes each.
    case codes8 = 6
    case codes16 = 7
    case codes32 = 8
    /// One bit per present value.
    case bits = 9
    /// Dictionary codes as runs: varint run count, then per run a varint code and a varint
    /// length. Decoded to the width in the parameter (1, 2 or 4 bytes). Chosen when values
    /// repeat in runs, as per-person properties do in a block ordered by person.
    case codeRuns = 10

    public var description: String {
        switch self {
        case .none: "none"
        case .intFrame: "frame"
        case .intDelta: "delta"
        case .intDictionary: "int-dictionary"
        case .intRuns: "runs"
        case .decimal: "decimal"
        case .rawDouble: "raw"
        case .codes8: "dict-u8"
        case .codes16: "dict-u16"
        case .codes32: "dict-u32"
        case .bits: "bits"
        case .codeRuns: "dict-runs"
        }
    }

    init(_ integer: IntegerEncoding) {
        switch integer {
        case .frame: self = .intFrame
        case .delta: self = .intDelta
        case .dictionary: self = .intDictionary
        case .runs: self = .intRuns
        }
    }

    var integerEncoding: IntegerEncoding? {
        switch self {
        case .intFrame: .frame
        case .intDelta: .delta
        case .intDictionary: .dictionary
        case .intRuns: .runs
        default: nil
        }
    }
}

/// How the presence of values is stored.
public enum PresenceEncoding: UInt8, Sendable, CustomStringConvertible {
    /// Every row has a value; no chunk.
    case all = 0
    /// One bit per row, 1 where a value is present.
    case bitmap = 1
    /// The present rows' indices, delta-encoded through the integer mini-blocks: smaller
    /// than a bitmap when values are sparse.
    case rowList = 2

    public var description: String {
        switch self {
        case .all: "all"
        case .bitmap: "bitmap"
        case .rowList: "rows"
        }
    }
}

public enum ChunkRole: UInt8, Sendable, CustomStringConvertible {
    case presence = 0
    case values = 1
    /// A string dictionary: `u32` end offsets, then the UTF-8 bytes back to back.
    case dictionary = 2

    public var description: String {
        switch self {
        case .presence: "presence"
        case .values: "values"
        case .dictionary: "dictionary"
        }
    }
}

/// Where one compressed chunk lives and how to check it.
public struct ChunkDescriptor: Sendable, Equatable {
    public var role: ChunkRole
    public var codec: Codec
    public var offset: UInt64
    public var storedSize: UInt32
    public var rawSize: UInt32
    /// CRC32C of the stored (compressed) bytes.
    public var checksum: UInt32
}

/// A column as the footer describes it, with its zone map.
public struct ColumnDescriptor: Sendable {
    public var name: String
    /// Built-in columns (timestamp, user_id, …) versus event properties.
    public var isProperty: Bool
    public var kind: ColumnKind
    public var encoding: ValueEncoding
    /// Encoding parameter: the decimal scale, or 1 when `received_at` is stored relative to
    /// the timestamp.
    public var parameter: Int64
    public var presence: PresenceEncoding
    public var presentCount: UInt32
    /// Zone map: for int and global-id columns the value range, for doubles the bit
    /// patterns of the range, for strings the dictionary size in `maximum`.
    public var minimum: Int64
    public var maximum: Int64
    public var chunks: [ChunkDescriptor]

    public func chunk(_ role: ChunkRole) -> ChunkDescriptor? { chunks.first { $0.role == role } }
    public var minimumDouble: Double { Double(bitPattern: UInt64(bitPattern: minimum)) }
    public var maximumDouble: Double { Double(bitPattern: UInt64(bitPattern: maximum)) }
}

/// The sequence numbers a block holds, as half-open ranges.
public struct SequenceRange: Sendable, Equatable, Hashable {
    public var start: UInt64
    public var end: UInt64
    public init(_ start: UInt64, _ end: UInt64) {
        self.start = start
        self.end = end
    }
}

/// Everything about a block except its chunks' bytes.
public struct BlockFooter: Sendable {
    public var day: Int32
    public var rows: UInt32
    public var minTimestamp: Int64
    public var maxTimestamp: Int64
    public var createdAt: Int64
    /// Sizes of the project dictionaries when the block was written: every global id in it
    /// is below these.
    public var userDictionaryCount: UInt32
    public var sessionDictionaryCount: UInt32
    public var sequenceRanges: [SequenceRange]
    public var columns: [ColumnDescriptor]

    public func column(_ name: String, property: Bool = false) -> [ColumnDescriptor] {
        columns.filter { $0.name == name && $0.isProperty == property }
    }
}

/// The fixed layout around a block's chunks. See docs/ARCHITECTURE.md for the full table.
public enum BlockLayout {
    public static let magic: [UInt8] = Array("TALLYBLK".utf8)
    public static let trailerMagic: [UInt8] = Array("TBLKFOOT".utf8)
    public static let version: UInt16 = 1
    public static let headerSize = 16
    public static let trailerSize = 32
    public static let fileSuffix = ".blk"

    public static func header() -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: version.littleEndian) { bytes += $0 }
        bytes += [UInt8](repeating: 0, count: 6)
        return bytes
    }

    public static func encodeFooter(_ footer: BlockFooter, into out: OutputBuffer) {
        out.append(littleEndian: footer.day)
        out.append(littleEndian: footer.rows)
        out.append(littleEndian: footer.minTimestamp)
        out.append(littleEndian: footer.maxTimestamp)
        out.append(littleEndian: footer.createdAt)
        out.append(littleEndian: footer.userDictionaryCount)
        out.append(littleEndian: footer.sessionDictionaryCount)
        out.append(varint: UInt64(footer.sequenceRanges.count))
        for r in footer.sequenceRanges {
            out.append(varint: r.start)
            out.append(varint: r.end - r.start)
        }
        out.append(varint: UInt64(footer.columns.count))
        for c in footer.columns {
            var name = c.name
            name.withUTF8 { out.append(lengthPrefixed: UnsafeRawBufferPointer($0)) }
            out.append(byte: c.isProperty ? 1 : 0)
            out.append(byte: c.kind.rawValue)
            out.append(byte: c.encoding.rawValue)
            out.append(varint: zigzagEncode(c.parameter))
            out.append(byte: c.presence.rawValue)
            out.append(littleEndian: c.presentCount)
            out.append(littleEndian: c.minimum)
            out.append(littleEndian: c.maximum)
            out.append(byte: UInt8(c.chunks.count))
            for k in c.chunks {
                out.append(byte: k.role.rawValue)
                out.append(byte: k.codec.rawValue)
                out.append(littleEndian: k.offset)
                out.append(littleEndian: k.storedSize)
                out.append(littleEndian: k.rawSize)
                out.append(littleEndian: k.checksum)
            }
        }
    }

    public static func decodeFooter(_ bytes: UnsafeRawBufferPointer) throws(BlockFormatError) -> BlockFooter {
        var r = ByteReader(bytes)
        func fail(_ what: String) -> BlockFormatError { .badFooter("\(what) at footer offset \(r.offset)") }
        guard let day = r.read(Int32.self), let rows = r.read(UInt32.self), let minTs = r.read(Int64.self),
            let maxTs = r.read(Int64.self), let createdAt = r.read(Int64.self), let users = r.read(UInt32.self),
            let sessions = r.read(UInt32.self), let rangeCount = r.readVarint(), rangeCount <= 1 << 24
        else { throw fail("truncated block fields") }
        var ranges: [SequenceRange] = []
        for _ in 0..<rangeCount {
            guard let start = r.readVarint(), let length = r.readVarint() else { throw fail("truncated sequence range") }
            ranges.append(SequenceRange(start, start &+ length))
        }
        guard let columnCount = r.readVarint(), columnCount <= 1 << 20 else { throw fail("bad column count") }
        var columns: [ColumnDescriptor] = []
        for _ in 0..<columnCount {
            guard let name = r.readLengthPrefixed(max: 1 << 16), let property = r.readByte(),
                let kindByte = r.readByte(), let kind = ColumnKind(rawValue: kindByte),
                let encodingByte = r.readByte(), let encoding = ValueEncoding(rawValue: encodingByte),
                let parameter = r.readVarint(), let presenceByte = r.readByte(),
                let presence = PresenceEncoding(rawValue: presenceByte), let present = r.read(UInt32.self),
                let minimum = r.read(Int64.self), let maximum = r.read(Int64.self), let chunkCount = r.readByte()
            else { throw fail("truncated or unknown column descriptor") }
            var chunks: [ChunkDescriptor] = []
            for _ in 0..<chunkCount {
                guard let roleByte = r.readByte(), let role = ChunkRole(rawValue: roleByte), let codecByte = r.readByte(),
                    let codec = Codec(rawValue: codecByte), let offset = r.read(UInt64.self),
                    let stored = r.read(UInt32.self), let raw = r.read(UInt32.self), let checksum = r.read(UInt32.self)
                else { throw fail("truncated or unknown chunk descriptor") }
                chunks.append(
                    ChunkDescriptor(role: role, codec: codec, offset: offset, storedSize: stored, rawSize: raw, checksum: checksum))
            }
            columns.append(
                ColumnDescriptor(
                    name: String(decoding: name, as: UTF8.self), isProperty: property != 0, kind: kind, encoding: encoding,
                    parameter: zigzagDecode(parameter), presence: presence, presentCount: present, minimum: minimum,
                    maximum: maximum, chunks: chunks))
        }
        guard r.isAtEnd else { throw fail("trailing bytes") }
        return BlockFooter(
            day: day, rows: rows, minTimestamp: minTs, maxTimestamp: maxTs, createdAt: createdAt,
            userDictionaryCount: users, sessionDictionaryCount: sessions, sequenceRanges: ranges, columns: columns)
    }

    /// `u64 footer offset, u32 footer length, u32 footer CRC32C, u16 version, 6 reserved,
    /// 8 bytes "TBLKFOOT"`.
    public static func trailer(footerOffset: UInt64, footerLength: UInt32, footerChecksum: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: footerOffset.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: footerLength.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: footerChecksum.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: version.littleEndian) { bytes += $0 }
        bytes += [UInt8](repeating: 0, count: 6)
        bytes += trailerMagic
        return bytes
    }
}

/// A block file that cannot be read as written. Each case names where the problem is.
public enum BlockFormatError: Error, Equatable, CustomStringConvertible {
    case notABlock(String)
    case unsupportedVersion(UInt16)
    case badFooter(String)
    case checksumMismatch(column: String, chunk: ChunkRole)
    case badChunk(column: String, chunk: ChunkRole, reason: String)
    case noSuchColumn(String)

    public var description: String {
        switch self {
        case .notABlock(let why): "not a block file: \(why)"
        case .unsupportedVersion(let v): "unsupported block format version \(v)"
        case .badFooter(let why): "corrupt footer: \(why)"
        case .checksumMismatch(let column, let chunk): "column \(column): \(chunk) chunk checksum mismatch"
        case .badChunk(let column, let chunk, let reason): "column \(column): \(chunk) chunk: \(reason)"
        case .noSuchColumn(let name): "no column \(name)"
        }
    }
}
