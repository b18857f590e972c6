public import EventLog

extension BlockFile {
    /// Every row as an `Event`, in the block's row order. For merges, `tally blocks dump` and
    /// tests; queries read columns instead.
    ///
    /// Properties come back in key order (a JSON object has none), and integers of a key
    /// that also had fractional values come back as doubles.
    public func events(users: ByteStringTable, sessions: ByteStringTable) throws -> [Event] {
        let n = rows
        guard let tsColumn = try builtin("timestamp"), case .ints(let ts) = tsColumn.values,
            let recvColumn = try builtin("received_at"), case .ints(let recv) = recvColumn.values,
            let seqColumn = try builtin("sequence"), case .ints(let seq) = seqColumn.values,
            let nameColumn = try builtin("event_name"), case .codes(let nameCodes, let names) = nameColumn.values
        else { throw BlockFormatError.noSuchColumn("timestamp, received_at, sequence or event_name") }
        var events = [Event]()
        events.reserveCapacity(n)
        for i in 0..<n {
            events.append(
                Event(
                    sequence: UInt64(bitPattern: seq[i]), name: names.string(nameCodes[i]), timestamp: ts[i], receivedAt: recv[i]))
        }
        func globalStrings(_ column: String, _ table: ByteStringTable, _ set: (inout Event, String) -> Void) throws {
            guard let c = try builtin(column), case .ints(let ids) = c.values else { return }
            for i in 0..<n where c.isPresent(i) {
                guard ids[i] >= 0, ids[i] < table.count else {
                    throw BlockFormatError.badChunk(column: column, chunk: .values, reason: "id \(ids[i]) past the dictionary's \(table.count)")
                }
                set(&events[i], table.string(Int(ids[i])))
            }
        }
        try globalStrings("user_id", users) { $0.userId = $1 }
        try globalStrings("anonymous_id", users) { $0.anonymousId = $1 }
        try globalStrings("session_id", sessions) { $0.sessionId = $1 }
        if let c = try builtin("bot_id"), case .codes(let codes, let dictionary) = c.values {
            for i in 0..<n where c.isPresent(i) { events[i].botId = dictionary.string(codes[i]) }
        }
        if let c = try builtin("event_id"), case .codes(let codes, let dictionary) = c.values {
            for i in 0..<n where c.isPresent(i) { events[i].clientEventId = dictionary.string(codes[i]) }
        }
        if let c = try builtin("timestamp_clamped") {
            for i in 0..<n where c.isPresent(i) { events[i].timestampClamped = true }
        }
        for d in footer.columns where d.isProperty {
            let c = try decode(d)
            for i in 0..<n where c.isPresent(i) {
                let value: PropertyValue
                switch c.values {
                case .ints(let v): value = .int(v[i])
                case .doubles(let v): value = .double(v[i])
                case .bools(let v): value = .bool(v[i] != 0)
                case .codes(let codes, let dictionary):
                    value = d.kind == .json ? .json(dictionary.string(codes[i])) : .string(dictionary.string(codes[i]))
                case .presenceOnly: value = .null
                }
                events[i].properties.append(Property(d.name, value))
            }
        }
        return events
    }
}

extension BlockFile {
    /// The same block with every chunk recompressed by `codec`: how the compactor moves days
    /// past the cold age from LZ4 to Zstd without decoding a single value.
    public func recompressed(
        codec: Codec, level: Int32, pacer: (any CompactionPacer)? = nil
    ) throws -> (bytes: OutputBuffer, footer: BlockFooter) {
        let writer = BlockWriter(codec: codec, level: level, rows: rows, pacer: pacer)
        var footer = self.footer
        for c in footer.columns.indices {
            for k in footer.columns[c].chunks.indices {
                let old = footer.columns[c].chunks[k]
                let raw = try chunkBytes(old, column: footer.columns[c].name)
                footer.columns[c].chunks[k] = try raw.withUnsafeBytes { try writer.chunk(old.role, $0) }
            }
        }
        return (writer.finish(footer: footer), footer)
    }
}
