import ColumnStore
import EventLog
import QueryEngine

/// Where one output slot's values come from in one block.
enum SlotSource {
    /// Values per dictionary code (the null code maps to NULL).
    case codes(DecodedColumn, CodeVector, [SQLValue])
    /// Project-wide ids of user, anonymous or session ids.
    case globalIds(DecodedColumn, [Int64], IdTable)
    case eventIds(DecodedColumn?, CodeVector?, [SQLValue], [Int64])
    case timestamps([Int64])
    case dates([Int64])
    /// The columns of one property key that fit the wanted type, each with its values.
    case property([PropertySource])
    case absent
}

struct PropertySource {
    let column: DecodedColumn
    /// Per code, for string and JSON columns.
    let codeValues: [SQLValue]
    let asText: Bool
}

/// What one block's scan hands back: rows, or partial groups.
struct ScanPartial {
    var rows: [[SQLValue]] = []
    var table: AggregateTable?
}

/// What every block task of one scan shares. Unchecked: it is only read while the tasks run
/// (the subquery results the filter may hold were filled in before).
final class ScanWork: @unchecked Sendable {
    let scanner: TableScanner
    let filter: BoundExpression?
    let aggregate: ([BoundExpression], [AggregateCall])?
    init(scanner: TableScanner, filter: BoundExpression?, aggregate: ([BoundExpression], [AggregateCall])?) {
        self.scanner = scanner
        self.filter = filter
        self.aggregate = aggregate
    }
}

/// Scans one base table with the WHERE filter fused in, on every core for events.
struct TableScanner {
    let scan: TableScan
    let context: ExecutionContext

    func rows(filter: BoundExpression?) throws -> [[SQLValue]] {
        var all: [[SQLValue]] = []
        for partial in try partials(filter: filter, aggregate: nil) { all += partial.rows }
        return all
    }

    func aggregate(filter: BoundExpression?, groups: [BoundExpression], aggregates: [AggregateCall]) throws -> AggregateTable {
        var total = AggregateTable(groups: groups, aggregates: aggregates)
        for partial in try partials(filter: filter, aggregate: (groups, aggregates)) {
            try context.checkDeadline()
            try total.merge(partial.table!)
        }
        return total
    }

    func partials(filter: BoundExpression?, aggregate: ([BoundExpression], [AggregateCall])?) throws -> [ScanPartial] {
        switch scan.table {
        case .events:
            let blocks = context.snapshot.blocks.filter { $0.footer.maxTimestamp >= scan.start && $0.footer.minTimestamp < scan.end }
            let work = ScanWork(scanner: self, filter: filter, aggregate: aggregate)
            let results = parallelMap(blocks.count, threads: context.threads) { i in
                try work.scanner.scanEvents(blocks[i], filter: work.filter, aggregate: work.aggregate)
            }
            return try results.map { try $0.get() }
        case .conversations:
            // Rows stream from the fold into the filter and the aggregate; only a query that
            // returns them keeps them, in order of start and session.
            var partial = ScanPartial()
            if let aggregate { partial.table = AggregateTable(groups: aggregate.0, aggregates: aggregate.1) }
            var order: [(first: Int64, session: UInt32)] = []
            try DerivedTables.conversations(scan, context) { row, first, session in
                if let filter, !(try Evaluator.holds(filter, row)) { return }
                try emit(row, into: &partial)
                if aggregate == nil { order.append((first, session)) }
            }
            if aggregate == nil {
                let sorted = order.indices.sorted { order[$0].first != order[$1].first ? order[$0].first < order[$1].first : order[$0].session < order[$1].session }
                partial.rows = sorted.map { partial.rows[$0] }
            }
            return [partial]
        case .users:
            let rows = try DerivedTables.users(scan, context)
            var partial = ScanPartial()
            if let aggregate { partial.table = AggregateTable(groups: aggregate.0, aggregates: aggregate.1) }
            for (i, row) in rows.enumerated() {
                if i & 1023 == 0 { try context.checkDeadline() }
                if let filter, !(try Evaluator.holds(filter, row)) { continue }
                try emit(row, into: &partial)
            }
            return [partial]
        }
    }

    @inline(__always)
    func emit(_ row: [SQLValue], into partial: inout ScanPartial) throws {
        if partial.table != nil {
            try partial.table!.add(row, context)
        } else {
            partial.rows.append(row)
            if partial.rows.count & 4095 == 0 { try context.charge(4096 * ExecutionContext.size(row)) }
        }
    }

    func scanEvents(_ block: BlockFile, filter: BoundExpression?, aggregate: ([BoundExpression], [AggregateCall])?) throws -> ScanPartial {
        var partial = ScanPartial()
        if let aggregate { partial.table = AggregateTable(groups: aggregate.0, aggregates: aggregate.1) }
        let columns = BlockColumns(block)
        let n = columns.rows
        context.scanned(n)
        let ts = try columns.timestamps()

        // Push-down: time bounds, then event names through their codes.
        var keep: [Bool]? = nil
        if block.footer.minTimestamp < scan.start || block.footer.maxTimestamp >= scan.end {
            var k = [Bool](repeating: false, count: n)
            for r in 0..<n where ts[r] >= scan.start && ts[r] < scan.end { k[r] = true }
            keep = k
        }
        if let names = scan.eventNames {
            guard let c = try columns.builtin("event_name"), case .codes(let codes, let dictionary) = c.values else { return partial }
            var table = [Bool](repeating: false, count: dictionary.count + 1)
            var any = false
            for name in names {
                if let code = dictionary.code(of: name) {
                    table[code] = true
                    any = true
                }
            }
            guard any else { return partial }
            var k = keep ?? [Bool](repeating: true, count: n)
            for r in 0..<n where !table[codes[r]] { k[r] = false }
            keep = k
        }

        let sources = try scan.used.sorted().map { ($0, try source(slot: $0, columns, ts)) }
        var row = [SQLValue](repeating: .null, count: scan.width)
        // Single-slot conjuncts on dictionary-coded slots: once per code, then by lookup.
        var appliedByCode = Set<Int>()
        for (slot, conjunct) in scan.singleSlotConjuncts {
            let predicate = scan.conjuncts[conjunct]
            guard let (_, source) = sources.first(where: { $0.0 == slot }) else { continue }
            if case .isNull(.column(slot), let negated) = predicate, let present = presence(of: source, rows: n) {
                // `x IS [NOT] NULL` straight from the presence bitmap.
                var k = keep ?? [Bool](repeating: true, count: n)
                for r in 0..<n where present[r] == negated ? false : true { k[r] = false }
                keep = k
                appliedByCode.insert(conjunct)
                continue
            }
            let codes: CodeVector
            let values: [SQLValue]
            switch source {
            case .codes(_, let c, let v):
                (codes, values) = (c, v)
            case .property(let list) where list.count == 1 && !list[0].asText:
                guard case .codes(let c, _) = list[0].column.values else { continue }
                (codes, values) = (c, list[0].codeValues)
            default:
                continue
            }
            var table = [Bool](repeating: true, count: values.count)
            var applied = true
            for code in values.indices {
                row[slot] = values[code]
                do {
                    table[code] = try Evaluator.holds(predicate, row)
                } catch {
                    // A value the predicate cannot evaluate stays in; its row reports the error.
                    table[code] = true
                    applied = false
                }
            }
            row[slot] = .null
            var k = keep ?? [Bool](repeating: true, count: n)
            k.withUnsafeMutableBufferPointer { k in
                table.withUnsafeBufferPointer { table in
                    switch codes {
                    case .u8(let c): c.withUnsafeBufferPointer { c in for r in 0..<n where !table[Int(c[r])] { k[r] = false } }
                    case .u16(let c): c.withUnsafeBufferPointer { c in for r in 0..<n where !table[Int(c[r])] { k[r] = false } }
                    case .u32(let c): c.withUnsafeBufferPointer { c in for r in 0..<n where !table[Int(c[r])] { k[r] = false } }
                    }
                }
            }
            keep = k
            if applied { appliedByCode.insert(conjunct) }
        }
        // What is left to evaluate per row: the conjuncts no code table decided.
        var rowFilter = filter
        if filter != nil, !appliedByCode.isEmpty, !scan.conjuncts.isEmpty {
            let rest = scan.conjuncts.indices.filter { !appliedByCode.contains($0) }.map { scan.conjuncts[$0] }
            rowFilter = rest.isEmpty ? nil : rest.dropFirst().reduce(rest[0]) { .binary(.and, $0, $1) }
        }

        // Aggregating, a block reads only what the row filter, the groups and the aggregates
        // read: a slot that only a code-decided conjunct needed is not built per row.
        var needed = Set(sources.map(\.0))
        if let aggregate {
            needed = rowFilter?.columnsRead ?? []
            for g in aggregate.0 { needed.formUnion(g.columnsRead) }
            for a in aggregate.1 { needed.formUnion(a.argument?.columnsRead ?? []) }
        }
        let kept = sources.filter { needed.contains($0.0) }
        let slots = kept.map(\.0)
        let readers = kept.map(\.1)
        for r in 0..<n {
            if r & 2047 == 0 { try context.checkDeadline() }
            if let keep, !keep[r] { continue }
            for i in readers.indices { row[slots[i]] = value(readers[i], r) }
            if let rowFilter, !(try Evaluator.holds(rowFilter, row)) { continue }
            try emit(row, into: &partial)
        }
        return partial
    }

    /// Whether each row has a value in `source`, when that is known without the values.
    func presence(of source: SlotSource, rows n: Int) -> [Bool]? {
        func bits(_ columns: [DecodedColumn]) -> [Bool] {
            var present = [Bool](repeating: false, count: n)
            for c in columns { c.forEachPresentRow(n) { present[$0] = true } }
            return present
        }
        switch source {
        case .codes(let c, _, _), .globalIds(let c, _, _): return bits([c])
        case .property(let list)
        where list.allSatisfy({ $0.column.descriptor.kind != .null && !$0.codeValues.dropLast().contains(where: \.isNull) }):
            // Every stored value reads as non-NULL (no timestamp text that fails to parse).
            return bits(list.map(\.column))
        case .timestamps, .dates, .eventIds: return [Bool](repeating: true, count: n)
        case .absent: return [Bool](repeating: false, count: n)
        default: return nil
        }
    }

    func source(slot: Int, _ columns: BlockColumns, _ ts: [Int64]) throws -> SlotSource {
        let snapshot = context.snapshot
        guard slot < scan.columns.count else {
            let (key, want) = scan.property(at: slot)
            var sources: [PropertySource] = []
            for column in try columns.property(key) {
                let kind = column.descriptor.kind
                let fits: Bool
                switch want {
                case .numeric: fits = kind == .int || kind == .double
                case .string: fits = kind == .string || kind == .json
                case .boolean: fits = kind == .bool
                case .timestamp: fits = kind == .string
                case .any: fits = kind != .null
                }
                guard fits else { continue }
                var codeValues: [SQLValue] = []
                if case .codes(_, let dictionary) = column.values {
                    codeValues = (0..<dictionary.count).map { code in
                        let text = dictionary.string(code)
                        if want == .timestamp { return SQLValue.timestamp(parsing: text) ?? .null }
                        return .string(text)
                    }
                    codeValues.append(.null)
                }
                sources.append(PropertySource(column: column, codeValues: codeValues, asText: want == .any))
            }
            return sources.isEmpty ? .absent : .property(sources)
        }
        let name = scan.columns[slot].name
        switch name {
        case "event_name", "bot_id":
            guard let c = try columns.builtin(name), case .codes(let codes, let dictionary) = c.values else { return .absent }
            var values = (0..<dictionary.count).map { SQLValue.string(dictionary.string($0)) }
            values.append(.null)
            return .codes(c, codes, values)
        case "user_id", "anonymous_id", "session_id":
            guard let c = try columns.builtin(name), case .ints(let ids) = c.values else { return .absent }
            return .globalIds(c, ids, name == "session_id" ? snapshot.sessions : snapshot.people)
        case "event_id":
            guard let s = try columns.builtin("sequence"), case .ints(let sequences) = s.values else { return .absent }
            if let c = try columns.builtin("event_id"), case .codes(let codes, let dictionary) = c.values {
                return .eventIds(c, codes, (0..<dictionary.count).map { SQLValue.string(dictionary.string($0)) } + [.null], sequences)
            }
            return .eventIds(nil, nil, [], sequences)
        case "timestamp": return .timestamps(ts)
        case "date": return .dates(ts)
        case "received_at":
            guard let c = try columns.builtin("received_at"), case .ints(let v) = c.values else { return .absent }
            return .timestamps(v)
        default:
            return .absent
        }
    }

    @inline(__always)
    func value(_ source: SlotSource, _ r: Int) -> SQLValue {
        switch source {
        case .codes(let column, let codes, let values):
            return column.isPresent(r) ? values[codes[r]] : .null
        case .globalIds(let column, let ids, let table):
            return column.isPresent(r) ? .string(table.string(Int(ids[r]))) : .null
        case .eventIds(let column, let codes, let values, let sequences):
            if let column, let codes, column.isPresent(r) { return values[codes[r]] }
            return .string(EventID.serverAssigned(UInt64(bitPattern: sequences[r])))
        case .timestamps(let t):
            return .timestamp(t[r])
        case .dates(let t):
            return .date(Int32(SQLValue.floorDiv(t[r], SQLValue.microsPerDay)))
        case .property(let sources):
            for s in sources where s.column.isPresent(r) {
                let v: SQLValue
                switch s.column.values {
                case .ints(let x): v = .int(x[r])
                case .doubles(let x): v = .double(x[r])
                case .bools(let x): v = .bool(x[r] != 0)
                case .codes(let codes, _): v = s.codeValues[codes[r]]
                case .presenceOnly: v = .null
                }
                if s.asText, !v.isNull, v.type != .string { return .string(v.description) }
                return v
            }
            return .null
        case .absent:
            return .null
        }
    }
}
