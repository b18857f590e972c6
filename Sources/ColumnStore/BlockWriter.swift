#if canImport(Glibc)
import Glibc
#endif
import EventLog

/// Lays out a block file: each column's chunks are encoded, compressed and appended, and
/// their descriptors collected for the footer.
final class BlockWriter {
    let codec: Codec
    let level: Int32
    let rows: Int
    let out: OutputBuffer
    private(set) var columns: [ColumnDescriptor] = []
    private let scratch = OutputBuffer(capacity: 1 << 16)
    /// Chunks are the unit of work a paced compaction may pause after.
    private var pacing: PacedWork

    init(codec: Codec, level: Int32, rows: Int, pacer: (any CompactionPacer)? = nil) {
        self.codec = codec
        self.level = level
        self.rows = rows
        pacing = PacedWork(pacer)
        out = OutputBuffer(capacity: max(1 << 16, rows * 16))
        BlockLayout.header().withUnsafeBytes { out.append($0) }
    }

    /// Compresses `raw` as one chunk; a chunk that would not shrink is stored plain.
    func chunk(_ role: ChunkRole, _ raw: UnsafeRawBufferPointer) throws -> ChunkDescriptor {
        let offset = out.count
        var used = codec
        if codec != .none && raw.count >= 32 {
            let written = try codec.compress(raw, into: out, level: level)
            if written >= raw.count {
                out.count = offset
                used = .none
            }
        } else {
            used = .none
        }
        if used == .none { out.append(raw) }
        let stored = UnsafeRawBufferPointer(start: out.base + offset, count: out.count - offset)
        let descriptor = ChunkDescriptor(
            role: role, codec: used, offset: UInt64(offset), storedSize: UInt32(stored.count), rawSize: UInt32(raw.count),
            checksum: CRC32C.checksum(stored))
        pacing.checkpoint()
        return descriptor
    }

    /// The presence chunk of a column with values at `presentRows` (ascending), choosing the
    /// smaller of a bitmap and a delta-coded row list.
    func presence(_ presentRows: [UInt32]?) throws -> (PresenceEncoding, ChunkDescriptor?) {
        guard let presentRows, presentRows.count < rows else { return (.all, nil) }
        scratch.removeAll()
        let list = presentRows.map { Int64($0) }
        list.withUnsafeBufferPointer { _ = IntegerEncoding.encode($0, as: .delta, into: scratch) }
        let bitmapBytes = (rows + 7) / 8
        if scratch.count < bitmapBytes {
            return (.rowList, try chunk(.presence, scratch.bytes))
        }
        var bitmap = [UInt8](repeating: 0, count: bitmapBytes)
        for r in presentRows { bitmap[Int(r) >> 3] |= 1 << (r & 7) }
        return (.bitmap, try bitmap.withUnsafeBytes { try chunk(.presence, $0) })
    }

    func addIntColumn(
        _ name: String, kind: ColumnKind, values: [Int64], presentRows: [UInt32]?, property: Bool = false,
        alternative: ([Int64], Int64)? = nil
    ) throws {
        let (presence, presenceChunk) = try presence(presentRows)
        scratch.removeAll()
        // With an alternative, both are measured on samples and only the smaller is encoded.
        let other = alternative?.0 ?? []
        let (column, encoding) = values.withUnsafeBufferPointer { values in
            other.withUnsafeBufferPointer { other in
                IntegerEncoding.encodeBest(alternative == nil ? [values] : [values, other], into: scratch)
            }
        }
        let parameter: Int64 = column == 0 ? 0 : alternative!.1
        let valuesChunk = try chunk(.values, scratch.bytes)
        columns.append(
            ColumnDescriptor(
                name: name, isProperty: property, kind: kind, encoding: ValueEncoding(encoding), parameter: parameter,
                presence: presence, presentCount: UInt32(values.count), minimum: values.min() ?? 0, maximum: values.max() ?? 0,
                chunks: [presenceChunk, valuesChunk].compactMap { $0 }))
    }

    func addDoubleColumn(_ name: String, values: [Double], presentRows: [UInt32]) throws {
        let (presence, presenceChunk) = try presence(presentRows)
        // Exact decimals (prices, ratings) are stored as scaled integers.
        var scale: Int64 = -1
        var scaled: [Int64] = []
        search: for digits in 0...6 {
            let factor = pow10(digits)
            scaled.removeAll(keepingCapacity: true)
            for v in values {
                let s = (v * factor).rounded()
                guard v.isFinite, abs(s) < 9.0e15, s / factor == v, !(v == 0 && v.sign == .minus) else { continue search }
                scaled.append(Int64(s))
            }
            scale = Int64(digits)
            break
        }
        let valuesChunk: ChunkDescriptor
        let encoding: ValueEncoding
        if scale >= 0 {
            scratch.removeAll()
            let integer = scaled.withUnsafeBufferPointer { IntegerEncoding.encodeBest($0, into: scratch) }
            // The integer encoding's id leads the chunk, since `encoding` names the scaling.
            var bytes: [UInt8] = [integer.rawValue]
            bytes += scratch.toArray()
            valuesChunk = try bytes.withUnsafeBytes { try chunk(.values, $0) }
            encoding = .decimal
        } else {
            valuesChunk = try values.withUnsafeBytes { try chunk(.values, $0) }
            encoding = .rawDouble
            scale = 0
        }
        let finite = values.filter { !$0.isNaN }
        columns.append(
            ColumnDescriptor(
                name: name, isProperty: true, kind: .double, encoding: encoding, parameter: scale, presence: presence,
                presentCount: UInt32(values.count),
                minimum: Int64(bitPattern: (finite.min() ?? 0).bitPattern), maximum: Int64(bitPattern: (finite.max() ?? 0).bitPattern),
                chunks: [presenceChunk, valuesChunk].compactMap { $0 }))
    }

    func addBoolColumn(_ name: String, values: [UInt8], presentRows: [UInt32]) throws {
        let (presence, presenceChunk) = try presence(presentRows)
        var bits = [UInt8](repeating: 0, count: (values.count + 7) / 8)
        for (i, v) in values.enumerated() where v != 0 { bits[i >> 3] |= 1 << UInt8(i & 7) }
        let valuesChunk = try bits.withUnsafeBytes { try chunk(.values, $0) }
        columns.append(
            ColumnDescriptor(
                name: name, isProperty: true, kind: .bool, encoding: .bits, parameter: 0, presence: presence,
                presentCount: UInt32(values.count), minimum: Int64(values.min() ?? 0), maximum: Int64(values.max() ?? 0),
                chunks: [presenceChunk, valuesChunk].compactMap { $0 }))
    }

    /// Strings: the dictionary sorted bytewise (so codes order like the strings and `=` finds
    /// its code by binary search), codes at the narrowest width that also fits the null code
    /// `count` that readers use for absent rows.
    func addStringColumn(
        _ name: String, kind: ColumnKind, table: ByteStringTable, codes: [UInt32], presentRows: [UInt32]?, property: Bool = false
    ) throws {
        let (presence, presenceChunk) = try presence(presentRows)
        // Only strings that are still referenced (a repeated key's overwritten value is not).
        var used = [Bool](repeating: false, count: table.count)
        for c in codes { used[Int(c)] = true }
        let live = (0..<table.count).filter { used[$0] }
        var remap = [UInt32](repeating: 0, count: table.count)
        let dictionary = OutputBuffer(capacity: live.count * 4 + table.blob.count + 16)
        table.blob.withUnsafeBytes { blob in
            let tableOffsets = table.offsets
            func bytes(_ id: Int) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: blob[Int(tableOffsets[id])..<Int(tableOffsets[id + 1])])
            }
            // Byte order, compared on a big-endian 8-byte prefix first: plain integer
            // compares for all but strings that share eight leading bytes.
            var keyed = live.map { id in
                let b = bytes(id)
                var prefix: UInt64 = 0
                for j in 0..<Swift.min(8, b.count) { prefix |= UInt64(b[j]) << UInt64(56 - 8 * j) }
                return (prefix, id)
            }
            keyed.sort { a, b in
                if a.0 != b.0 { return a.0 < b.0 }
                let x = bytes(a.1), y = bytes(b.1)
                let common = Swift.min(x.count, y.count)
                let order = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
                return order != 0 ? order < 0 : x.count < y.count
            }
            // The dictionary chunk: end offsets, then the strings.
            var end: UInt32 = 0
            for (newCode, entry) in keyed.enumerated() {
                remap[entry.1] = UInt32(newCode)
                end += UInt32(bytes(entry.1).count)
                dictionary.append(littleEndian: end)
            }
            for entry in keyed { dictionary.append(bytes(entry.1)) }
        }
        let count = live.count
        let dictionaryChunk = try chunk(.dictionary, dictionary.bytes)
        var encoding: ValueEncoding = count < 0xFF ? .codes8 : count < 0xFFFF ? .codes16 : .codes32
        let width: Int64 = encoding == .codes8 ? 1 : encoding == .codes16 ? 2 : 4
        var runs = 0
        for i in codes.indices where i == 0 || codes[i] != codes[i - 1] { runs += 1 }
        // Runs pay when they average three values or more.
        var parameter: Int64 = 0
        if runs * 3 <= codes.count {
            encoding = .codeRuns
            parameter = width
        }
        let valuesChunk: ChunkDescriptor
        switch encoding {
        case .codeRuns:
            scratch.removeAll()
            scratch.append(varint: UInt64(runs))
            var start = 0
            while start < codes.count {
                var end = start + 1
                while end < codes.count && codes[end] == codes[start] { end += 1 }
                scratch.append(varint: UInt64(remap[Int(codes[start])]))
                scratch.append(varint: UInt64(end - start))
                start = end
            }
            valuesChunk = try chunk(.values, scratch.bytes)
        case .codes8: valuesChunk = try codes.map { UInt8(remap[Int($0)]) }.withUnsafeBytes { try chunk(.values, $0) }
        case .codes16: valuesChunk = try codes.map { UInt16(remap[Int($0)]).littleEndian }.withUnsafeBytes { try chunk(.values, $0) }
        default: valuesChunk = try codes.map { remap[Int($0)].littleEndian }.withUnsafeBytes { try chunk(.values, $0) }
        }
        columns.append(
            ColumnDescriptor(
                name: name, isProperty: property, kind: kind, encoding: encoding, parameter: parameter, presence: presence,
                presentCount: UInt32(codes.count), minimum: 0, maximum: Int64(count),
                chunks: [presenceChunk, valuesChunk, dictionaryChunk].compactMap { $0 }))
    }

    func addPresenceOnlyColumn(_ name: String, presentRows: [UInt32], property: Bool) throws {
        let (presence, presenceChunk) = try presence(presentRows)
        columns.append(
            ColumnDescriptor(
                name: name, isProperty: property, kind: .null, encoding: .none, parameter: 0, presence: presence,
                presentCount: UInt32(presentRows.count), minimum: 0, maximum: 0, chunks: [presenceChunk].compactMap { $0 }))
    }

    func finish(footer: BlockFooter) -> OutputBuffer {
        let footerOffset = out.count
        BlockLayout.encodeFooter(footer, into: out)
        let footerBytes = UnsafeRawBufferPointer(start: out.base + footerOffset, count: out.count - footerOffset)
        let trailer = BlockLayout.trailer(
            footerOffset: UInt64(footerOffset), footerLength: UInt32(footerBytes.count), footerChecksum: CRC32C.checksum(footerBytes))
        trailer.withUnsafeBytes { out.append($0) }
        return out
    }
}

func pow10(_ digits: Int) -> Double {
    var f = 1.0
    for _ in 0..<digits { f *= 10 }
    return f
}
