public import ColumnStore

/// The columns one query needs from one block, decoded once and shared by its operators.
public final class BlockColumns {
    public let block: BlockFile
    public let rows: Int
    private var cache: [String: DecodedColumn?] = [:]
    private var propertyCache: [String: [DecodedColumn]] = [:]
    private var personCache: [UInt32]?

    let shared: ColumnCache?

    public init(_ block: BlockFile, cache shared: ColumnCache? = .shared) {
        self.block = block
        rows = block.rows
        self.shared = block.isInMemory ? nil : shared
    }

    /// A built-in column (nil when no row of the block has it).
    public func builtin(_ name: String) throws -> DecodedColumn? {
        if let cached = cache[name] { return cached }
        let key = block.path + "#builtin#" + name
        if let shared, case .column(let column) = shared.get(key) {
            cache[name] = column
            return column
        }
        let column = try block.builtin(name)
        cache[name] = column
        shared?.put(key, .column(column), bytes: ColumnCache.size(of: column))
        return column
    }

    public func timestamps() throws -> [Int64] {
        guard let c = try builtin("timestamp"), case .ints(let v) = c.values else { throw BlockFormatError.noSuchColumn("timestamp") }
        return v
    }

    /// Every column of property `key`, one per type it was sent with.
    public func property(_ key: String) throws -> [DecodedColumn] {
        if let cached = propertyCache[key] { return cached }
        var columns: [DecodedColumn] = []
        for d in block.footer.columns where d.isProperty && d.name == key {
            let sharedKey = block.path + "#property#" + key + "#" + d.kind.description
            if let shared, case .column(let column?) = shared.get(sharedKey) {
                columns.append(column)
                continue
            }
            let column = try block.decode(d)
            shared?.put(sharedKey, .column(column), bytes: ColumnCache.size(of: column))
            columns.append(column)
        }
        propertyCache[key] = columns
        return columns
    }

    /// Each row's person: the project id of its `user_id`, else of its `anonymous_id`, else
    /// `noPerson`.
    public func persons() throws -> [UInt32] {
        if let personCache { return personCache }
        let sharedKey = block.path + "#persons"
        if let shared, case .persons(let cached) = shared.get(sharedKey) {
            personCache = cached
            return cached
        }
        var result = [UInt32](repeating: noPerson, count: rows)
        if let anonymous = try builtin("anonymous_id"), case .ints(let ids) = anonymous.values {
            for r in 0..<rows where anonymous.isPresent(r) { result[r] = UInt32(truncatingIfNeeded: ids[r]) }
        }
        if let users = try builtin("user_id"), case .ints(let ids) = users.values {
            for r in 0..<rows where users.isPresent(r) { result[r] = UInt32(truncatingIfNeeded: ids[r]) }
        }
        personCache = result
        shared?.put(sharedKey, .persons(result), bytes: result.count * 4)
        return result
    }

    /// Rows whose `event_name` is `name`.
    public func rows(named name: String) throws -> [Bool] {
        guard let c = try builtin("event_name"), case .codes(let codes, let dictionary) = c.values else {
            return [Bool](repeating: false, count: rows)
        }
        guard let code = dictionary.code(of: name) else { return [Bool](repeating: false, count: rows) }
        return codeMatches(codes, rows: rows) { $0 == code }
    }
}

/// Rows without a person.
public let noPerson = UInt32.max

/// `predicate` of each row's code, evaluated once per distinct code through a table.
func codeMatches(_ codes: CodeVector, rows: Int, _ predicate: (Int) -> Bool) -> [Bool] {
    var result = [Bool](repeating: false, count: rows)
    switch codes {
    case .u8(let c):
        var table = [Bool](repeating: false, count: 256)
        for i in 0..<256 { table[i] = predicate(i) }
        c.withUnsafeBufferPointer { p in
            result.withUnsafeMutableBufferPointer { out in for r in 0..<rows { out[r] = table[Int(p[r])] } }
        }
    case .u16(let c):
        var table = [Bool](repeating: false, count: 65_536)
        var seen = [Bool](repeating: false, count: 65_536)
        for r in 0..<rows {
            let code = Int(c[r])
            if !seen[code] {
                seen[code] = true
                table[code] = predicate(code)
            }
            result[r] = table[code]
        }
    case .u32(let c):
        var memo: [UInt32: Bool] = [:]
        for r in 0..<rows {
            if let m = memo[c[r]] {
                result[r] = m
            } else {
                let m = predicate(Int(c[r]))
                memo[c[r]] = m
                result[r] = m
            }
        }
    }
    return result
}
