import EventLog

/// The numbers `tally blocks stats` prints: per day, and per column across the chosen blocks.
public struct BlockStatistics {
    public struct Day {
        public var day: Int32
        public var blocks = 0
        public var rows = 0
        public var bytes = 0
    }

    public struct Column {
        public var name: String
        public var kind: ColumnKind
        public var encodings: [String: Int] = [:]
        public var codecs: [String: Int] = [:]
        public var presentValues = 0
        /// Bytes after the column encoding, before the codec.
        public var encodedBytes = 0
        /// Bytes on disk.
        public var storedBytes = 0
    }

    public var days: [Day] = []
    public var columns: [Column] = []
    public var rows = 0
    public var blockBytes = 0
    public var dictionaryBytes = 0

    public init(snapshot: StoreSnapshot, directory: String, onlyDay: Int32? = nil) {
        var dayIndex: [Int32: Int] = [:]
        var columnIndex: [String: Int] = [:]
        for block in snapshot.blocks {
            let f = block.footer
            if dayIndex[f.day] == nil {
                dayIndex[f.day] = days.count
                days.append(Day(day: f.day))
            }
            days[dayIndex[f.day]!].blocks += 1
            days[dayIndex[f.day]!].rows += Int(f.rows)
            days[dayIndex[f.day]!].bytes += block.fileSize
            rows += Int(f.rows)
            blockBytes += block.fileSize
            if let onlyDay, onlyDay != f.day { continue }
            for c in f.columns {
                let key = (c.isProperty ? "properties." : "") + c.name + " " + c.kind.description
                if columnIndex[key] == nil {
                    columnIndex[key] = columns.count
                    columns.append(Column(name: (c.isProperty ? "properties." : "") + c.name, kind: c.kind))
                }
                let i = columnIndex[key]!
                columns[i].presentValues += Int(c.presentCount)
                columns[i].encodings[c.encoding.description + (c.presence == .all ? "" : "+" + c.presence.description), default: 0] += 1
                for chunk in c.chunks {
                    columns[i].codecs[chunk.codec.description, default: 0] += 1
                    columns[i].encodedBytes += Int(chunk.rawSize)
                    columns[i].storedBytes += Int(chunk.storedSize)
                }
            }
        }
        days.sort { $0.day < $1.day }
        columns.sort { $0.storedBytes > $1.storedBytes }
        for name in [ColumnStore.usersDictionary, ColumnStore.sessionsDictionary] {
            dictionaryBytes += FileIO.fileSize(path: directory + "/" + name) ?? 0
        }
    }

    public func render(perDay: Bool) -> String {
        var lines: [String] = []
        func date(_ day: Int32) -> String {
            String(Timestamp.format(Int64(day) * 86_400_000_000).prefix(10))
        }
        func fixed(_ v: Double, _ digits: Int = 2) -> String {
            let scale = pow10(digits)
            let r = (v * scale).rounded() / scale
            var s = String(r)
            if let dot = s.firstIndex(of: ".") {
                let decimals = s.distance(from: dot, to: s.endIndex) - 1
                if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
            } else {
                s += "." + String(repeating: "0", count: digits)
            }
            return s
        }
        func row(_ cells: [String], _ widths: [Int]) -> String {
            zip(cells, widths).enumerated().map { i, pair in
                let (cell, width) = pair
                let pad = String(repeating: " ", count: max(0, width - cell.count))
                return i == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        if perDay {
            let widths = [10, 6, 10, 12, 9]
            lines.append(row(["day", "blocks", "rows", "bytes", "B/event"], widths))
            for d in days {
                lines.append(row([date(d.day), String(d.blocks), String(d.rows), String(d.bytes), fixed(Double(d.bytes) / Double(max(d.rows, 1)))], widths))
            }
            lines.append("")
        }
        let widths = [34, 9, 22, 10, 12, 12, 8, 9]
        lines.append(row(["column", "kind", "encoding", "codec", "encoded", "stored", "codec ×", "B/event"], widths))
        let shownRows = columns.isEmpty ? 1 : max(1, days.reduce(0) { $0 + $1.rows })
        for c in columns {
            let encoding = c.encodings.max { $0.value < $1.value }?.key ?? "-"
            let codec = c.codecs.keys.sorted().joined(separator: "/")
            lines.append(
                row(
                    [
                        String(c.name.prefix(34)), c.kind.description, encoding, codec, String(c.encodedBytes), String(c.storedBytes),
                        fixed(Double(c.encodedBytes) / Double(max(c.storedBytes, 1)), 1) + "x",
                        fixed(Double(c.storedBytes) / Double(shownRows), 3),
                    ], widths))
        }
        lines.append("")
        let total = blockBytes + dictionaryBytes
        lines.append(
            "\(days.count) days, \(days.reduce(0) { $0 + $1.blocks }) blocks, \(rows) events; "
                + "\(blockBytes) bytes in blocks + \(dictionaryBytes) in id dictionaries = \(total) bytes, "
                + "\(fixed(Double(total) / Double(max(rows, 1)))) bytes/event")
        return lines.joined(separator: "\n")
    }
}
