/// The running state of one aggregate call in one group.
struct Accumulator {
    var count: Int64 = 0
    var integerSum: Int64 = 0
    var doubleSum = 0.0
    var extreme: SQLValue = .null
    var samples: [Double] = []
    var distinct: Set<SQLValue>?

    mutating func add(_ v: SQLValue, _ call: AggregateCall) throws {
        if v.isNull { return }
        if call.distinct {
            if distinct == nil { distinct = [] }
            distinct!.insert(v)
            return
        }
        try accumulate(v, call)
    }

    mutating func accumulate(_ v: SQLValue, _ call: AggregateCall) throws {
        count += 1
        switch call.function {
        case .countRows, .count: break
        case .sum, .average:
            switch v {
            case .int(let n):
                let (s, overflow) = integerSum.addingReportingOverflow(n)
                if overflow {
                    guard call.resultType == .double else {
                        throw SQLError(.evaluation, "sum overflows the integer range; use sum(CAST(x AS double))")
                    }
                    doubleSum += Double(integerSum) + Double(n)
                    integerSum = 0
                } else {
                    integerSum = s
                }
            case .double(let d): doubleSum += d
            default: break
            }
        case .minimum:
            if extreme.isNull || (SQLValue.compare(v, extreme) ?? 0) < 0 { extreme = v }
        case .maximum:
            if extreme.isNull || (SQLValue.compare(v, extreme) ?? 0) > 0 { extreme = v }
        case .percentile:
            if let d = Evaluator.double(v) { samples.append(d) }
        }
    }

    mutating func merge(_ other: Accumulator, _ call: AggregateCall) throws {
        if let d = other.distinct {
            distinct = (distinct ?? []).union(d)
            return
        }
        count += other.count
        switch call.function {
        case .sum, .average:
            let (s, overflow) = integerSum.addingReportingOverflow(other.integerSum)
            if overflow {
                guard call.resultType == .double else { throw SQLError(.evaluation, "sum overflows the integer range; use sum(CAST(x AS double))") }
                doubleSum += Double(integerSum) + Double(other.integerSum)
                integerSum = 0
            } else {
                integerSum = s
            }
            doubleSum += other.doubleSum
        case .minimum, .maximum:
            if !other.extreme.isNull {
                try accumulate(other.extreme, call)
                count -= 1
            }
        case .percentile:
            samples += other.samples
        case .countRows, .count:
            break
        }
    }

    func result(_ call: AggregateCall) throws -> SQLValue {
        if let distinct {
            var folded = Accumulator()
            for v in distinct { try folded.accumulate(v, call) }
            return try folded.result(call)
        }
        switch call.function {
        case .countRows, .count:
            return .int(count)
        case .sum:
            if count == 0 { return .null }
            return call.resultType == .integer ? .int(integerSum) : .double(Double(integerSum) + doubleSum)
        case .average:
            if count == 0 { return .null }
            return .double((Double(integerSum) + doubleSum) / Double(count))
        case .minimum, .maximum:
            return extreme
        case .percentile(let p):
            if samples.isEmpty { return .null }
            let sorted = samples.sorted()
            let position = p * Double(sorted.count - 1)
            let low = Int(position.rounded(.down))
            let high = min(low + 1, sorted.count - 1)
            return .double(sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low)))
        }
    }
}

/// Groups by their key values, each with one accumulator per aggregate call. Without GROUP BY
/// there is exactly one group, even over no rows (`count(*)` is then 0).
struct AggregateTable {
    let groups: [BoundExpression]
    let aggregates: [AggregateCall]
    var index: [[SQLValue]: Int] = [:]
    var keys: [[SQLValue]] = []
    var states: [Accumulator] = []
    private var key: [SQLValue]

    init(groups: [BoundExpression], aggregates: [AggregateCall]) {
        self.groups = groups
        self.aggregates = aggregates
        key = [SQLValue](repeating: .null, count: groups.count)
        if groups.isEmpty { _ = group([]) }
    }

    mutating func group(_ key: [SQLValue]) -> Int {
        if let g = index[key] { return g }
        index[key] = keys.count
        keys.append(key)
        states.append(contentsOf: repeatElement(Accumulator(), count: aggregates.count))
        return keys.count - 1
    }

    mutating func add(_ row: [SQLValue], _ context: ExecutionContext) throws {
        for i in groups.indices { key[i] = try Evaluator.evaluate(groups[i], row) }
        let before = keys.count
        let g = group(key)
        if keys.count != before, keys.count & 1023 == 0 {
            try context.charge(1024 * (ExecutionContext.size(key) + aggregates.count * 96))
        }
        let base = g * aggregates.count
        for (a, call) in aggregates.enumerated() {
            if call.function == .countRows {
                states[base + a].count += 1
            } else {
                try states[base + a].add(try Evaluator.evaluate(call.argument!, row), call)
            }
        }
    }

    mutating func merge(_ other: AggregateTable) throws {
        for (o, key) in other.keys.enumerated() {
            let g = group(key)
            for a in aggregates.indices {
                try states[g * aggregates.count + a].merge(other.states[o * aggregates.count + a], aggregates[a])
            }
        }
    }

    func finish() throws -> [[SQLValue]] {
        var rows: [[SQLValue]] = []
        rows.reserveCapacity(keys.count)
        for (g, key) in keys.enumerated() {
            var row = key
            for a in aggregates.indices { row.append(try states[g * aggregates.count + a].result(aggregates[a])) }
            rows.append(row)
        }
        return rows
    }
}
