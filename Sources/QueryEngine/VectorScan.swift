public import ColumnStore

/// Vectors and selection vectors: how the aggregation scan walks a block.
///
/// A block is taken `vectorSize` rows at a time. A selection vector holds the row numbers of
/// the vector that are still in play; each predicate compacts it in place, so later
/// predicates, group keys and aggregates touch only surviving rows, and no intermediate
/// array as long as the block is ever built. 2,048 row numbers (8 KiB) and the handful of
/// per-vector scratch buffers stay in the L1 and L2 caches.
enum VectorScan {
    static let vectorSize = 2048
}

/// A per-row condition in the form the vector loop tests on the rows it still holds.
enum RowPredicate {
    /// `verdicts[code]` for the row's dictionary code (with an entry for the null code).
    case codes(CodeVector, [Bool])
    /// A verdict per row of the block.
    case mask([Bool])
    /// The rows whose bit is set in a column's presence bitmap.
    case present([UInt64])
    /// The same verdict for every row.
    case constant(Bool)

    /// The rows whose `event_name` is `name`; a block without that name matches nothing.
    static func eventName(_ name: String, in columns: BlockColumns) throws -> RowPredicate {
        guard let column = try columns.builtin("event_name"), case .codes(let codes, let dictionary) = column.values,
            let code = dictionary.code(of: name)
        else { return .constant(false) }
        var verdicts = [Bool](repeating: false, count: dictionary.count + 1)
        verdicts[code] = true
        return .codes(codes, verdicts)
    }

    /// Writes the rows of `start..<end` for which the predicate holds into `selection`, in
    /// order; returns how many.
    func select(_ selection: UnsafeMutablePointer<UInt32>, _ start: Int, _ end: Int) -> Int {
        switch self {
        case .constant(let holds):
            guard holds else { return 0 }
            for r in start..<end { selection[r - start] = UInt32(truncatingIfNeeded: r) }
            return end - start
        case .mask(let mask):
            return mask.withUnsafeBufferPointer { m in pick(selection, start, end) { m[$0] } }
        case .present(let bits):
            return bits.withUnsafeBufferPointer { b in pick(selection, start, end) { b[$0 >> 6] & (1 << UInt64($0 & 63)) != 0 } }
        case .codes(let codes, let verdicts):
            return verdicts.withUnsafeBufferPointer { t in
                switch codes {
                case .u8(let c): c.withUnsafeBufferPointer { c in pick(selection, start, end) { t[Int(c[$0])] } }
                case .u16(let c): c.withUnsafeBufferPointer { c in pick(selection, start, end) { t[Int(c[$0])] } }
                case .u32(let c): c.withUnsafeBufferPointer { c in pick(selection, start, end) { t[Int(c[$0])] } }
                }
            }
        }
    }

    /// Keeps the rows of `selection[0..<count]` for which the predicate holds, in order;
    /// returns how many.
    func refine(_ selection: UnsafeMutablePointer<UInt32>, _ count: Int) -> Int {
        switch self {
        case .constant(let holds):
            return holds ? count : 0
        case .mask(let mask):
            return mask.withUnsafeBufferPointer { m in compact(selection, count) { m[Int($0)] } }
        case .present(let bits):
            return bits.withUnsafeBufferPointer { b in compact(selection, count) { b[Int($0 >> 6)] & (1 << UInt64($0 & 63)) != 0 } }
        case .codes(let codes, let verdicts):
            return verdicts.withUnsafeBufferPointer { t in
                switch codes {
                case .u8(let c): c.withUnsafeBufferPointer { c in compact(selection, count) { t[Int(c[Int($0)])] } }
                case .u16(let c): c.withUnsafeBufferPointer { c in compact(selection, count) { t[Int(c[Int($0)])] } }
                case .u32(let c): c.withUnsafeBufferPointer { c in compact(selection, count) { t[Int(c[Int($0)])] } }
                }
            }
        }
    }
}

/// Compacts `selection[0..<count]` to the rows `keep` accepts, without a branch per row:
/// every row is written, and the write position advances only for kept ones.
@inline(__always)
func compact(_ selection: UnsafeMutablePointer<UInt32>, _ count: Int, _ keep: (UInt32) -> Bool) -> Int {
    var kept = 0
    for i in 0..<count {
        let row = selection[i]
        selection[kept] = row
        kept &+= keep(row) ? 1 : 0
    }
    return kept
}

/// Writes the rows of `start..<end` that `keep` accepts into `selection`, branch-free like
/// `compact`; returns how many.
@inline(__always)
func pick(_ selection: UnsafeMutablePointer<UInt32>, _ start: Int, _ end: Int, _ keep: (Int) -> Bool) -> Int {
    var kept = 0
    for r in start..<end {
        selection[kept] = UInt32(truncatingIfNeeded: r)
        kept &+= keep(r) ? 1 : 0
    }
    return kept
}

/// Fills `selection` with the rows `start..<end` whose timestamp lies in `range` (all of
/// them when `check` is false); returns how many.
@inline(__always)
func selectRows(
    _ selection: UnsafeMutablePointer<UInt32>, _ start: Int, _ end: Int, timestamps: UnsafeBufferPointer<Int64>,
    from: Int64, to: Int64, check: Bool
) -> Int {
    guard check else {
        for r in start..<end { selection[r - start] = UInt32(truncatingIfNeeded: r) }
        return end - start
    }
    var kept = 0
    for r in start..<end {
        selection[kept] = UInt32(truncatingIfNeeded: r)
        let t = timestamps[r]
        kept &+= (t >= from && t < to) ? 1 : 0
    }
    return kept
}
