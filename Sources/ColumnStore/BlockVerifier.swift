import EventLog

/// One problem `tally blocks verify` found, naming the file and, where it applies, the column.
public struct BlockProblem: Sendable, CustomStringConvertible {
    public var file: String
    public var column: String?
    public var message: String
    public var description: String {
        if let column { return "\(file): column \(column): \(message)" }
        return "\(file): \(message)"
    }
}

public struct BlockVerification: Sendable {
    public var blocks = 0
    public var rows: UInt64 = 0
    public var bytes: UInt64 = 0
    public var problems: [BlockProblem] = []
}

/// Checks a store without trusting it: the manifest, every listed block's framing, footer
/// and chunk checksums, every column's decoding, and that the blocks agree with the manifest
/// and the dictionaries.
public enum BlockVerifier {
    public static func verify(directory: String) throws -> BlockVerification {
        var result = BlockVerification()
        let manifestPath = directory + "/" + Manifest.fileName
        guard FileIO.exists(manifestPath) else {
            result.problems.append(BlockProblem(file: manifestPath, message: "no manifest: nothing has been compacted here"))
            return result
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.decode(try FileIO.readFile(manifestPath))
        } catch {
            result.problems.append(BlockProblem(file: manifestPath, message: "\(error)"))
            return result
        }
        var users = 0
        var sessions = 0
        for (name, count) in [(ColumnStore.usersDictionary, manifest.userDictionaryCount), (ColumnStore.sessionsDictionary, manifest.sessionDictionaryCount)] {
            // Read-only check: a copy is parsed, the file is never truncated here.
            let path = directory + "/" + name
            let size = GlobalDictionary.validEntries(path: path)
            if size.entries < Int(count) {
                result.problems.append(BlockProblem(file: path, message: "holds \(size.entries) ids, the manifest needs \(count)"))
            }
            if size.tornBytes > 0 {
                result.problems.append(BlockProblem(file: path, message: "\(size.tornBytes) bytes after the last intact frame"))
            }
            if name == ColumnStore.usersDictionary { users = size.entries } else { sessions = size.entries }
        }
        var covered: [SequenceRange] = []
        for entry in manifest.blocks {
            let path = directory + "/" + entry.name
            result.blocks += 1
            result.bytes += UInt64(FileIO.fileSize(path: path) ?? 0)
            let block: BlockFile
            do {
                block = try BlockFile(path: path)
            } catch {
                result.problems.append(BlockProblem(file: path, message: "\(error)"))
                continue
            }
            let f = block.footer
            result.rows += UInt64(f.rows)
            if f.rows != entry.rows || f.day != entry.day || f.sequenceRanges != entry.sequenceRanges {
                result.problems.append(BlockProblem(file: path, message: "footer disagrees with the manifest (rows, day or sequence ranges)"))
            }
            if UInt64(f.rows) != f.sequenceRanges.reduce(0, { $0 + $1.end - $1.start }) {
                result.problems.append(BlockProblem(file: path, message: "sequence ranges do not add up to the row count"))
            }
            covered += f.sequenceRanges
            for d in f.columns {
                do {
                    let column = try block.decode(d)
                    if d.kind == .globalId, case .ints(let ids) = column.values {
                        let limit = d.name == "session_id" ? sessions : users
                        for (row, id) in ids.enumerated() where column.isPresent(row) && (id < 0 || id >= limit) {
                            throw BlockFormatError.badChunk(column: d.name, chunk: .values, reason: "id \(id) past the dictionary's \(limit)")
                        }
                    }
                    if d.name == "timestamp", !d.isProperty, case .ints(let ts) = column.values,
                        ts.contains(where: { BlockBuilder.day(ofMicros: $0) != f.day })
                    {
                        throw BlockFormatError.badChunk(column: d.name, chunk: .values, reason: "timestamp outside the block's day")
                    }
                } catch let error as BlockFormatError {
                    var column: String? = d.name
                    if case .badChunk(let c, _, _) = error { column = c } else if case .checksumMismatch(let c, _) = error { column = c }
                    result.problems.append(BlockProblem(file: path, column: column, message: "\(error)"))
                } catch {
                    result.problems.append(BlockProblem(file: path, column: d.name, message: "\(error)"))
                }
            }
        }
        covered.sort { $0.start < $1.start }
        for (a, b) in zip(covered, covered.dropFirst()) where b.start < a.end {
            result.problems.append(BlockProblem(file: manifestPath, message: "sequences \(b.start)..<\(min(a.end, b.end)) are in two blocks"))
        }
        if let last = covered.last, last.end > manifest.compactedThrough {
            result.problems.append(BlockProblem(file: manifestPath, message: "a block holds sequence \(last.end - 1), past compacted-through \(manifest.compactedThrough)"))
        }
        return result
    }
}

extension GlobalDictionary {
    /// How many ids the file at `path` holds intact, and how many bytes follow them.
    static func validEntries(path: String) -> (entries: Int, tornBytes: Int) {
        guard let bytes = try? FileIO.readFile(path), bytes.count >= headerSize else { return (0, 0) }
        let (table, end) = parse(bytes)
        return (table.count, bytes.count - end)
    }
}
