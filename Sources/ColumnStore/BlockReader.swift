#if canImport(Glibc)
import Glibc
#endif
public import EventLog

/// A block's sorted string dictionary: `u32` end offsets, then the bytes.
public struct StringDictionary: Sendable {
    public let ends: [UInt32]
    public let blob: [UInt8]

    public var count: Int { ends.count }

    public func bytes(_ code: Int) -> ArraySlice<UInt8> {
        blob[(code == 0 ? 0 : Int(ends[code - 1]))..<Int(ends[code])]
    }

    public func string(_ code: Int) -> String { String(decoding: bytes(code), as: UTF8.self) }

    /// The code of `string`, found by binary search (the dictionary is sorted bytewise).
    public func code(of string: String) -> Int? {
        let target = Array(string.utf8)
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            let candidate = bytes(mid)
            if candidate.elementsEqual(target) { return mid }
            if candidate.lexicographicallyPrecedes(target) { low = mid + 1 } else { high = mid }
        }
        return nil
    }
}

/// Dictionary codes at their stored width, ready for kernels that switch on the width once.
public enum CodeVector: Sendable {
    case u8([UInt8])
    case u16([UInt16])
    case u32([UInt32])

    @inlinable
    public var count: Int {
        switch self {
        case .u8(let c): c.count
        case .u16(let c): c.count
        case .u32(let c): c.count
        }
    }

    @inlinable
    public subscript(row: Int) -> Int {
        switch self {
        case .u8(let c): Int(c[row])
        case .u16(let c): Int(c[row])
        case .u32(let c): Int(c[row])
        }
    }
}

/// One column of one block decoded into plain row-aligned buffers.
///
/// Absent rows hold 0 (numbers, bools) or the null code `dictionary.count` (strings), and
/// `presence` has their bit clear; it is nil when every row has a value.
public struct DecodedColumn: Sendable {
    public enum Values: Sendable {
        case ints([Int64])
        case doubles([Double])
        case bools([UInt8])
        case codes(CodeVector, StringDictionary)
        case presenceOnly
    }

    public let descriptor: ColumnDescriptor
    public let presence: [UInt64]?
    public let values: Values

    /// Calls `body` with every row that has a value, in order, a 64-row word at a time.
    @inlinable
    public func forEachPresentRow(_ rows: Int, _ body: (Int) -> Void) {
        guard let presence else {
            for r in 0..<rows { body(r) }
            return
        }
        for (w, word) in presence.enumerated() {
            var bits = word
            while bits != 0 {
                body(w << 6 | bits.trailingZeroBitCount)
                bits &= bits &- 1
            }
        }
    }

    @inlinable
    public func isPresent(_ row: Int) -> Bool {
        guard let presence else { return true }
        return presence[row >> 6] & (1 << UInt64(row & 63)) != 0
    }
}

/// Where a block's bytes are: an open file, or memory (the log tail a query turns into a
/// block of its own).
enum BlockSource: @unchecked Sendable {
    // Unchecked: the descriptor is only used with pread, which is thread-safe; the bytes are
    // immutable.
    case file(Int32)
    case memory([UInt8])

    /// Reads `buffer.count` bytes at `offset`; the count actually read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws -> Int {
        switch self {
        case .file(let fd): return try FileIO.pread(fd, into: buffer, at: offset, path: path)
        case .memory(let bytes):
            guard offset >= 0, offset <= bytes.count else { return 0 }
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            return n
        }
    }
}

/// An open block file. It keeps its descriptor open, so a block a merge has just replaced
/// stays readable to the queries that already hold it.
public final class BlockFile: @unchecked Sendable {
    // Unchecked: all stored properties are immutable after init; pread is thread-safe.
    public let path: String
    public let footer: BlockFooter
    public let fileSize: Int
    let source: BlockSource

    public convenience init(path: String) throws {
        let fd = try FileIO.open(path, flags: O_RDONLY)
        do {
            try self.init(source: .file(fd), size: try FileIO.fileSize(fd, path: path), path: path)
        } catch {
            FileIO.close(fd)
            throw error
        }
    }

    /// A block held in memory, for data that is not on disk as a block (the log tail).
    public convenience init(bytes: [UInt8], name: String) throws {
        try self.init(source: .memory(bytes), size: bytes.count, path: name)
    }

    init(source: BlockSource, size: Int, path: String) throws {
        self.path = path
        guard size >= BlockLayout.headerSize + BlockLayout.trailerSize else {
            throw BlockFormatError.notABlock("\(size) bytes is too short")
        }
        var head = [UInt8](repeating: 0, count: BlockLayout.headerSize)
        _ = try head.withUnsafeMutableBytes { try source.read(into: $0, at: 0, path: path) }
        guard Array(head[0..<8]) == BlockLayout.magic else { throw BlockFormatError.notABlock("bad magic") }
        let version = UInt16(head[8]) | UInt16(head[9]) << 8
        guard version == BlockLayout.version else { throw BlockFormatError.unsupportedVersion(version) }
        guard head[10..<16].allSatisfy({ $0 == 0 }) else { throw BlockFormatError.notABlock("reserved header bytes are not zero") }
        var trailer = [UInt8](repeating: 0, count: BlockLayout.trailerSize)
        _ = try trailer.withUnsafeMutableBytes { try source.read(into: $0, at: size - BlockLayout.trailerSize, path: path) }
        guard Array(trailer[24..<32]) == BlockLayout.trailerMagic else {
            throw BlockFormatError.notABlock("bad trailer magic (torn or truncated file)")
        }
        guard trailer[16] == UInt8(BlockLayout.version), trailer[17] == 0, trailer[18..<24].allSatisfy({ $0 == 0 }) else {
            throw BlockFormatError.notABlock("bad trailer version or reserved bytes")
        }
        let (footerOffset, footerLength, footerCRC) = trailer.withUnsafeBytes {
            (
                Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))),
                Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self))),
                UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            )
        }
        guard footerOffset >= BlockLayout.headerSize, footerLength >= 0,
            footerOffset + footerLength == size - BlockLayout.trailerSize
        else { throw BlockFormatError.badFooter("footer position \(footerOffset)+\(footerLength) in \(size) bytes") }
        var footerBytes = [UInt8](repeating: 0, count: footerLength)
        _ = try footerBytes.withUnsafeMutableBytes { try source.read(into: $0, at: footerOffset, path: path) }
        guard CRC32C.checksum(footerBytes) == footerCRC else { throw BlockFormatError.badFooter("checksum mismatch") }
        let footer = try footerBytes.withUnsafeBytes { try BlockLayout.decodeFooter($0) }
        for column in footer.columns {
            for chunk in column.chunks where Int(chunk.offset) < BlockLayout.headerSize
                || Int(chunk.offset) + Int(chunk.storedSize) > footerOffset
            {
                throw BlockFormatError.badChunk(column: column.name, chunk: chunk.role, reason: "lies outside the data area")
            }
        }
        self.footer = footer
        self.fileSize = size
        self.source = source
    }

    deinit {
        if case .file(let fd) = source { FileIO.close(fd) }
    }

    /// Held in memory (the log tail of a query), not read from a file.
    public var isInMemory: Bool {
        if case .memory = source { return true }
        return false
    }

    public var rows: Int { Int(footer.rows) }

    /// The stored bytes of a chunk after checking its CRC, decompressed.
    public func chunkBytes(_ chunk: ChunkDescriptor, column: String) throws -> [UInt8] {
        var stored = [UInt8](repeating: 0, count: Int(chunk.storedSize))
        let n = try stored.withUnsafeMutableBytes { try source.read(into: $0, at: Int(chunk.offset), path: path) }
        guard n == stored.count else { throw BlockFormatError.badChunk(column: column, chunk: chunk.role, reason: "short read") }
        guard CRC32C.checksum(stored) == chunk.checksum else { throw BlockFormatError.checksumMismatch(column: column, chunk: chunk.role) }
        if chunk.codec == .none {
            guard chunk.rawSize == chunk.storedSize else {
                throw BlockFormatError.badChunk(column: column, chunk: chunk.role, reason: "plain chunk sizes differ")
            }
            return stored
        }
        var raw = [UInt8](repeating: 0, count: Int(chunk.rawSize))
        do {
            try stored.withUnsafeBytes { s in try raw.withUnsafeMutableBytes { try chunk.codec.decompress(s, into: $0) } }
        } catch {
            throw BlockFormatError.badChunk(column: column, chunk: chunk.role, reason: "\(error)")
        }
        return raw
    }

    /// The built-in column `name` (timestamp, event_name, user_id, …), nil if no row has it.
    public func builtin(_ name: String) throws -> DecodedColumn? {
        guard let d = footer.columns.first(where: { !$0.isProperty && $0.name == name }) else { return nil }
        return try decode(d)
    }

    /// Decodes one column into row-aligned buffers, checking every chunk's CRC on the way.
    public func decode(_ d: ColumnDescriptor) throws -> DecodedColumn {
        let rows = self.rows
        func bad(_ role: ChunkRole, _ reason: String) -> BlockFormatError {
            .badChunk(column: d.name, chunk: role, reason: reason)
        }
        // Presence, as a bitmap and as the list of present rows.
        var presence: [UInt64]? = nil
        var presentRows: [Int] = []
        let present = Int(d.presentCount)
        guard present <= rows else { throw bad(.presence, "\(present) values in \(rows) rows") }
        switch d.presence {
        case .all:
            guard present == rows else { throw bad(.presence, "all rows present but \(present) values") }
        case .bitmap, .rowList:
            guard let chunk = d.chunk(.presence) else { throw bad(.presence, "missing") }
            let bytes = try chunkBytes(chunk, column: d.name)
            var words = [UInt64](repeating: 0, count: (rows + 63) / 64)
            presentRows.reserveCapacity(present)
            if d.presence == .bitmap {
                guard bytes.count == (rows + 7) / 8 else { throw bad(.presence, "bitmap of \(bytes.count) bytes for \(rows) rows") }
                for (i, b) in bytes.enumerated() where b != 0 { words[i >> 3] |= UInt64(b) << UInt64((i & 7) * 8) }
                // Bits past the last row must be clear, or the bitmap is corrupt.
                if rows % 64 != 0, words[words.count - 1] >> UInt64(rows % 64) != 0 { throw bad(.presence, "bits set past the last row") }
                for (w, word) in words.enumerated() {
                    var bits = word
                    while bits != 0 {
                        presentRows.append(w << 6 | bits.trailingZeroBitCount)
                        bits &= bits &- 1
                    }
                }
            } else {
                var list = [Int64](repeating: 0, count: present)
                do {
                    try bytes.withUnsafeBytes { b in try list.withUnsafeMutableBufferPointer { try IntegerEncoding.decode(b, as: .delta, into: $0) } }
                } catch { throw bad(.presence, "\(error)") }
                var previous = -1
                for v in list {
                    guard v > previous, v < rows else { throw bad(.presence, "row \(v) out of order or range") }
                    previous = Int(v)
                    presentRows.append(Int(v))
                    words[Int(v) >> 6] |= 1 << UInt64(v & 63)
                }
            }
            guard presentRows.count == present else { throw bad(.presence, "\(presentRows.count) rows marked, \(present) values") }
            presence = words
        }
        @inline(__always) func row(_ i: Int) -> Int { presence == nil ? i : presentRows[i] }

        let values: DecodedColumn.Values
        switch d.kind {
        case .null:
            values = .presenceOnly
        case .int, .globalId:
            guard let chunk = d.chunk(.values), let encoding = d.encoding.integerEncoding else { throw bad(.values, "missing or unknown encoding") }
            let bytes = try chunkBytes(chunk, column: d.name)
            var dense = [Int64](repeating: 0, count: present)
            do {
                try bytes.withUnsafeBytes { b in try dense.withUnsafeMutableBufferPointer { try IntegerEncoding.decode(b, as: encoding, into: $0) } }
            } catch { throw bad(.values, "\(error)") }
            if d.parameter == SequencePrediction.parameter {
                guard let ts = try builtin("timestamp"), case .ints(let t) = ts.values, present == rows else {
                    throw bad(.values, "predicted sequences without timestamps")
                }
                var sorted: [Int64] = []
                sorted.reserveCapacity(rows)
                for range in footer.sequenceRanges {
                    guard range.end >= range.start, sorted.count + Int(range.end - range.start) <= rows else {
                        throw bad(.values, "sequence ranges hold more than \(rows) rows")
                    }
                    for s in range.start..<range.end { sorted.append(Int64(bitPattern: s)) }
                }
                guard sorted.count == rows else { throw bad(.values, "sequence ranges hold \(sorted.count) of \(rows) rows") }
                let predicted = SequencePrediction.predict(timestamps: t, sortedSequences: sorted)
                for i in 0..<rows { dense[i] = dense[i] &+ predicted[i] }
            } else if d.parameter == 1 {
                // received_at stored relative to the timestamp.
                guard let ts = try builtin("timestamp"), case .ints(let t) = ts.values, present == rows else {
                    throw bad(.values, "relative column without timestamps")
                }
                for i in 0..<rows { dense[i] = dense[i] &+ t[i] }
            }
            if presence == nil {
                values = .ints(dense)
            } else {
                var full = [Int64](repeating: 0, count: rows)
                for i in 0..<present { full[presentRows[i]] = dense[i] }
                values = .ints(full)
            }
        case .double:
            guard let chunk = d.chunk(.values) else { throw bad(.values, "missing") }
            let bytes = try chunkBytes(chunk, column: d.name)
            var dense = [Double](repeating: 0, count: present)
            if d.encoding == .decimal {
                guard let first = bytes.first, let encoding = IntegerEncoding(rawValue: first), (0...6).contains(d.parameter) else {
                    throw bad(.values, "bad decimal header")
                }
                var ints = [Int64](repeating: 0, count: present)
                do {
                    try bytes.withUnsafeBytes { b in
                        try ints.withUnsafeMutableBufferPointer { try IntegerEncoding.decode(UnsafeRawBufferPointer(rebasing: b[1...]), as: encoding, into: $0) }
                    }
                } catch { throw bad(.values, "\(error)") }
                let factor = pow10(Int(d.parameter))
                for i in 0..<present { dense[i] = Double(ints[i]) / factor }
            } else {
                guard d.encoding == .rawDouble, bytes.count == present * 8 else { throw bad(.values, "\(bytes.count) bytes for \(present) doubles") }
                dense.withUnsafeMutableBytes { d in bytes.withUnsafeBytes { d.copyMemory(from: $0) } }
            }
            if presence == nil {
                values = .doubles(dense)
            } else {
                var full = [Double](repeating: 0, count: rows)
                for i in 0..<present { full[presentRows[i]] = dense[i] }
                values = .doubles(full)
            }
        case .bool:
            guard let chunk = d.chunk(.values) else { throw bad(.values, "missing") }
            let bits = try chunkBytes(chunk, column: d.name)
            guard bits.count == (present + 7) / 8 else { throw bad(.values, "\(bits.count) bytes for \(present) bools") }
            var full = [UInt8](repeating: 0, count: rows)
            for i in 0..<present { full[row(i)] = (bits[i >> 3] >> UInt8(i & 7)) & 1 }
            values = .bools(full)
        case .string, .json:
            guard let valuesChunk = d.chunk(.values), let dictionaryChunk = d.chunk(.dictionary) else { throw bad(.values, "missing") }
            let dictionaryBytes = try chunkBytes(dictionaryChunk, column: d.name)
            let count = Int(d.maximum)
            guard count >= 0, dictionaryBytes.count >= count * 4 else { throw bad(.dictionary, "too short for \(count) strings") }
            var ends = [UInt32](repeating: 0, count: count)
            ends.withUnsafeMutableBytes { d in dictionaryBytes.withUnsafeBytes { d.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<(count * 4)])) } }
            let blob = Array(dictionaryBytes[(count * 4)...])
            var previous: UInt32 = 0
            for e in ends {
                guard e >= previous, Int(e) <= blob.count else { throw bad(.dictionary, "offsets out of order") }
                previous = e
            }
            guard Int(previous) == blob.count else { throw bad(.dictionary, "offsets do not cover the strings") }
            let dictionary = StringDictionary(ends: ends, blob: blob)
            var bytes = try chunkBytes(valuesChunk, column: d.name)
            var encoding = d.encoding
            if encoding == .codeRuns {
                guard [1, 2, 4].contains(d.parameter) else { throw bad(.values, "run width \(d.parameter)") }
                let width = Int(d.parameter)
                var expanded = [UInt8](repeating: 0, count: present * width)
                var filled = 0
                let ok = bytes.withUnsafeBytes { raw in
                    expanded.withUnsafeMutableBytes { out -> Bool in
                        var r = ByteReader(raw)
                        guard let runCount = r.readVarint(), runCount <= UInt64(present) else { return false }
                        for _ in 0..<runCount {
                            guard let code = r.readVarint(), code < UInt64(count), let length = r.readVarint(),
                                length >= 1, length <= UInt64(present - filled)
                            else { return false }
                            let end = filled + Int(length)
                            switch width {
                            case 1: out.baseAddress!.advanced(by: filled).initializeMemory(as: UInt8.self, repeating: UInt8(code), count: Int(length))
                            case 2:
                                let p = out.baseAddress!.assumingMemoryBound(to: UInt16.self)
                                for i in filled..<end { p[i] = UInt16(code).littleEndian }
                            default:
                                let p = out.baseAddress!.assumingMemoryBound(to: UInt32.self)
                                for i in filled..<end { p[i] = UInt32(code).littleEndian }
                            }
                            filled = end
                        }
                        return r.isAtEnd && filled == present
                    }
                }
                guard ok else { throw bad(.values, "malformed code runs") }
                bytes = expanded
                encoding = width == 1 ? .codes8 : width == 2 ? .codes16 : .codes32
            }
            let codes: CodeVector
            switch encoding {
            case .codes8:
                codes = .u8(try Self.codes(bytes, UInt8.self, present: present, rows: rows, count: count, presentRows: presence == nil ? nil : presentRows, bad: bad))
            case .codes16:
                codes = .u16(try Self.codes(bytes, UInt16.self, present: present, rows: rows, count: count, presentRows: presence == nil ? nil : presentRows, bad: bad))
            case .codes32:
                codes = .u32(try Self.codes(bytes, UInt32.self, present: present, rows: rows, count: count, presentRows: presence == nil ? nil : presentRows, bad: bad))
            default: throw bad(.values, "unknown string encoding \(d.encoding)")
            }
            values = .codes(codes, dictionary)
        }
        return DecodedColumn(descriptor: d, presence: presence, values: values)
    }

    /// Codes of one width, checked against the dictionary size and spread to their rows.
    static func codes<T: FixedWidthInteger & UnsignedInteger>(
        _ bytes: [UInt8], _: T.Type, present: Int, rows: Int, count: Int, presentRows: [Int]?,
        bad: (ChunkRole, String) -> BlockFormatError
    ) throws -> [T] {
        guard bytes.count == present * MemoryLayout<T>.size else { throw bad(.values, "\(bytes.count) bytes for \(present) codes") }
        var dense = [T](repeating: 0, count: present)
        dense.withUnsafeMutableBytes { d in bytes.withUnsafeBytes { d.copyMemory(from: $0) } }
        var maxCode: T = 0
        for c in dense { maxCode = max(maxCode, T(littleEndian: c)) }
        guard present == 0 || Int(maxCode) < count else { throw bad(.values, "code \(maxCode) past a dictionary of \(count)") }
        guard let presentRows else { return dense }
        var full = [T](repeating: T(truncatingIfNeeded: count), count: rows)
        for i in 0..<present { full[presentRows[i]] = dense[i] }
        return full
    }
}
