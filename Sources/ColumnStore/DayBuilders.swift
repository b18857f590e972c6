public import EventLog

/// One `BlockBuilder` per UTC day, fed straight from log batches: the one path from the log's
/// binary records into blocks, shared by the compactor and by queries reading the log tail.
public struct DayBuilders {
    public var builders: [BlockBuilder] = []
    public private(set) var events = 0
    private var indexOfDay: [Int32: Int] = [:]
    private var lastDay: Int32 = .min
    private var lastIndex = -1
    private let acceptsDay: (Int32) -> Bool

    /// `acceptsDay` picks the days this set builds (a compaction worker's share).
    public init(acceptsDay: @escaping (Int32) -> Bool = { _ in true }) {
        self.acceptsDay = acceptsDay
    }

    /// Whether a batch whose events lie between these timestamps (its header's) can hold a
    /// day this set builds; when not, its payload need not even be decompressed.
    public func acceptsSomeDay(from minMicros: Int64, through maxMicros: Int64) -> Bool {
        let first = BlockBuilder.day(ofMicros: minMicros)
        let last = BlockBuilder.day(ofMicros: maxMicros)
        guard first <= last, last - first < 64 else { return true }
        return (first...last).contains(where: acceptsDay)
    }

    /// Adds the records of one batch whose sequence numbers lie in `range`.
    ///
    /// Every record's timestamp must lie in the header's range: readers skip batches by
    /// that range (`acceptsSomeDay`), so a header that misstated it would lose events.
    public mutating func add(_ header: BatchHeader, payload: [UInt8], range: Range<UInt64>) throws {
        try payload.withUnsafeBytes { bytes in
            var r = ByteReader(bytes)
            var sequence = header.firstSequence
            while !r.isAtEnd {
                guard let length = r.read(UInt32.self), let body = r.readBytes(Int(length)),
                    let ts = BlockBuilder.timestamp(ofRecordBody: body)
                else { throw CompactionError.malformedBatch(first: header.firstSequence, reason: "record length runs past the payload") }
                defer { sequence += 1 }
                guard ts >= header.minTimestamp && ts <= header.maxTimestamp else {
                    throw CompactionError.malformedBatch(
                        first: header.firstSequence, reason: "an event's timestamp \(ts) lies outside the header's range")
                }
                guard range.contains(sequence) else { continue }
                let day = BlockBuilder.day(ofMicros: ts)
                if day != lastDay {
                    lastDay = day
                    if !acceptsDay(day) {
                        lastIndex = -1
                    } else if let index = indexOfDay[day] {
                        lastIndex = index
                    } else {
                        lastIndex = builders.count
                        indexOfDay[day] = lastIndex
                        builders.append(builders.last.map { BlockBuilder(day: day, sizedLike: $0) } ?? BlockBuilder(day: day))
                    }
                }
                guard lastIndex >= 0 else { continue }
                try builders[lastIndex].append(recordBody: body, sequence: sequence)
                events += 1
            }
            guard sequence == header.endSequence else {
                throw CompactionError.malformedBatch(
                    first: header.firstSequence, reason: "\(sequence - header.firstSequence) records, header says \(header.eventCount)")
            }
        }
    }
}
