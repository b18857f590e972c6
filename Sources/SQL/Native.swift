import QueryEngine

/// An aggregation over `events` that `AggregationEngine` answers directly on dictionary codes
/// and bitmaps, with no per-row values at all: counts and distinct-user counts, grouped by at
/// most two of event name, bot id, UTC date or a time bucket, filtered only by time bounds
/// and one event name. Each aggregate is one engine scan (every one of them has the same
/// groups: those with a row). The planner lowers a query here when its shape fits exactly;
/// any other query takes the general path with identical results.
struct NativeAggregate {
    enum Key {
        case eventName
        case date
        case bucket(DateUnit)
    }
    var query: AggregateQuery
    /// The aggregate of each output value, in select order.
    var aggregates: [Aggregate]
    var keys: [Key]

    func run(_ context: ExecutionContext) throws -> [[SQLValue]] {
        var results: [AggregateResult] = []
        for aggregate in aggregates {
            var query = query
            query.aggregate = aggregate
            query.deadline = context.deadline
            do {
                results.append(try AggregationEngine.run(query, on: context.snapshot, threads: context.threads))
            } catch QueryError.timeout {
                try context.checkDeadline()
                throw SQLError(.timeout, "the query ran past its timeout and was cancelled")
            } catch let error as QueryError {
                throw SQLError(.memoryBudget, error.description)
            }
            context.scanned(results[results.count - 1].rowsScanned)
        }
        let result = results[0]
        // The other aggregates' values by group.
        let others = results.dropFirst().map { other in Dictionary(other.rows.map { ($0.keys, $0.values[0]) }, uniquingKeysWith: { a, _ in a }) }
        var rows: [[SQLValue]] = []
        rows.reserveCapacity(result.rows.count)
        for r in result.rows {
            var row: [SQLValue] = []
            for (k, key) in keys.enumerated() {
                switch key {
                case .eventName: row.append(.string(r.keys[k]))
                case .date: row.append(.date(Int32(SQLValue.floorDiv(Int64(r.keys[k])!, SQLValue.microsPerDay))))
                case .bucket: row.append(.timestamp(Int64(r.keys[k])!))
                }
            }
            row.append(.int(Int64(r.values[0])))
            for other in others { row.append(.int(Int64(other[r.keys] ?? 0))) }
            rows.append(row)
        }
        if keys.isEmpty && rows.isEmpty { rows.append([SQLValue](repeating: .int(0), count: aggregates.count)) }
        return rows
    }

    /// The native form of `aggregate(scan or filter(scan))`, if there is one.
    static func lower(_ input: Plan, groups: [BoundExpression], aggregates: [AggregateCall]) -> NativeAggregate? {
        var scan: TableScan
        var filter: BoundExpression?
        switch input {
        case .scan(let s): scan = s
        case .filter(.scan(let s), let f):
            scan = s
            filter = f
        default: return nil
        }
        guard scan.table == .events, groups.count <= 2, !aggregates.isEmpty, aggregates.count <= 8 else { return nil }
        let column = { (name: String) in Catalog.eventColumns.firstIndex { $0.name == name }! }
        var lowered: [Aggregate] = []
        for call in aggregates {
            switch (call.function, call.distinct, call.argument) {
            case (.countRows, _, _): lowered.append(.count)
            case (.count, false, .column(let c)?) where [0, 1, 6, 7, 8].contains(c): lowered.append(.count)  // never NULL
            case (.count, true, .column(let c)?) where c == column("user_id"): lowered.append(.distinctUsers)
            default: return nil
            }
        }
        var keys: [Key] = []
        var groupBy: [GroupKey] = []
        var timeZone: String?
        for g in groups {
            switch g {
            case .column(let c) where c == column("event_name"):
                keys.append(.eventName)
                groupBy.append(.eventName)
            case .column(let c) where c == column("date"):
                guard timeZone == nil || timeZone == "UTC" else { return nil }
                timeZone = "UTC"
                keys.append(.date)
                groupBy.append(.period(.day))
            case .function(.dateTrunc, let args):
                guard case .literal(.string(let u)) = args[0], case .column(let c) = args[1], c == column("timestamp") else { return nil }
                // Time keys share the query's one zone.
                var zone = "UTC"
                if args.count == 3 {
                    guard case .literal(.string(let name)) = args[2] else { return nil }
                    zone = name
                }
                guard timeZone == nil || timeZone == zone else { return nil }
                timeZone = zone
                switch DateUnit(rawValue: u) {
                case .hour?: groupBy.append(.hour)
                case .day?: groupBy.append(.period(.day))
                case .week?: groupBy.append(.period(.week))
                case .month?: groupBy.append(.period(.month))
                default: return nil
                }
                keys.append(.bucket(DateUnit(rawValue: u)!))
            default:
                return nil
            }
        }
        // Every WHERE conjunct must be one the scan's push-down already applies exactly.
        var eventName: String?
        if let filter {
            for c in filter.conjuncts {
                switch c {
                case .binary(let op, .column(let i), .literal(let v)) where op.isComparison && op != .notEqual,
                    .binary(let op, .literal(let v), .column(let i)) where op.isComparison && op != .notEqual:
                    if i == column("event_name"), op == .equal, case .string(let s) = v, eventName == nil || eventName == s {
                        eventName = s
                    } else if i == column("timestamp"), case .timestamp = v {
                        continue
                    } else if i == column("date"), case .date = v {
                        continue
                    } else {
                        return nil
                    }
                default:
                    return nil
                }
            }
        }
        var query = AggregateQuery(start: scan.start, end: scan.end, eventName: eventName, groupBy: groupBy, aggregate: lowered[0])
        query.filters = []
        if let timeZone {
            guard let zone = ZoneOffsets.named(timeZone) else { return nil }
            query.timeZone = zone
        }
        return NativeAggregate(query: query, aggregates: lowered, keys: keys)
    }
}
