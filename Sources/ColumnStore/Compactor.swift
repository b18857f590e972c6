#if canImport(Glibc)
import Glibc
#endif
import Foundation
public import EventLog
import Logging
import Synchronization

public struct CompactionOptions: Sendable {
    /// Events read from the log per round; bounds the compactor's memory.
    public var maxEventsPerRound = 2_000_000
    /// Codec for recent days, and for days older than `coldAfterDays` (recompressed).
    public var codec: Codec = .lz4
    public var coldCodec: Codec = .zstd
    public var coldAfterDays = 7
    public var lz4Level: Int32 = 1
    /// Level 3 rather than 6: on 10 M generated events, blocks written straight in Zstd (a
    /// backlog of days already cold) came out 0.7% larger (8.81 against 8.75 bytes per
    /// event with the dictionaries) and compacted 13–29% faster in three alternating pairs.
    public var zstdLevel: Int32 = 3
    /// A day's blocks smaller than this may be merged with its new events.
    public var mergeBelowRows = 1_000_000
    /// Size-tiered merging: an existing block joins the new events of its day only if it
    /// holds at most this many times the rows gathered so far (the new events, and the
    /// smaller blocks already merged). A few late events thus never rewrite a whole day; they
    /// make a small block, which the next late events of that day merge with.
    public var mergeRatio = 2
    /// A day with this many blocks merges all of its small ones whatever their sizes.
    public var maxBlocksPerDay = 8
    /// A merge never makes a block larger than this.
    public var maxBlockRows = 8_000_000
    /// A round of fewer days than twice its threads is read in stretches of the log, one per
    /// thread, rather than day by day, once each stretch would hold at least this many
    /// events: see `RoundPartition`.
    public var minEventsPerStretch = 250_000
    /// Cold blocks recompressed per round, so one round never stalls on a backlog.
    public var recompressPerRound = 16
    /// Threads reading and encoding a round. The server uses one, at lowered priority, so
    /// that ingest keeps its cores; `tally compact` uses every core.
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// Holds every compaction thread back between units of work; see `CompactionPacer`.
    public var pacer: (any CompactionPacer)?

    public init() {}

    func codec(forDay day: Int32, today: Int32) -> Codec {
        Int(today) - Int(day) > coldAfterDays ? coldCodec : codec
    }

    func level(_ codec: Codec) -> Int32 { codec == .zstd ? zstdLevel : lz4Level }
}

/// What one compaction round did.
public struct CompactionRound: Sendable {
    public var events = 0
    public var from: UInt64 = 0
    public var through: UInt64 = 0
    public var blocksWritten = 0
    public var blocksReplaced = 0
    public var bytesWritten = 0
    public var segmentsRemoved = 0
    /// Where the time went, in nanoseconds: reading and sorting the log into day builders,
    /// merging small blocks back in, encoding, and writing and publishing.
    public var readNanos: UInt64 = 0
    public var mergeNanos: UInt64 = 0
    public var encodeNanos: UInt64 = 0
    public var writeNanos: UInt64 = 0

    public init() {}

    init(from: UInt64, through: UInt64) {
        self.from = from
        self.through = through
    }
}

extension ColumnStore {
    /// Moves the next stretch of the log into blocks, then recompresses a few cold blocks.
    /// Returns nil when there was nothing to do.
    ///
    /// The protocol, each step durable before the next:
    /// 1. write each new block to a temporary file, fsync it, rename it, fsync the directory;
    /// 2. append the new dictionary ids and fsync them;
    /// 3. write the new manifest (blocks replaced by merges removed, new ones added, and
    ///    "compacted through" advanced) to a temporary file, fsync, rename, fsync the directory;
    /// 4. delete the replaced block files, then the log segments now wholly in blocks.
    ///
    /// A crash before step 3 leaves the old manifest, and the new files are removed as
    /// unpublished at the next open; after it, the new manifest holds. Either way every
    /// acknowledged event is visible exactly once: in a listed block if its sequence is
    /// below "compacted through", in the log otherwise.
    @discardableResult
    public func compact(log: EventLog, options: CompactionOptions = .init(), faults: FaultInjector? = nil) throws -> CompactionRound? {
        compactionLock.lock()
        defer { compactionLock.unlock() }
        do {
            var round = try compactLogLocked(log: log, options: options, faults: faults)
            let recompressed = try recompressColdLocked(options: options, faults: faults)
            if round == nil && recompressed > 0 { round = CompactionRound() }
            if var r = round {
                r.blocksReplaced += recompressed
                r.blocksWritten += recompressed
                try log.persistIdempotency()
                try faults?.check("remove log segments")
                r.segmentsRemoved = try log.removeSegments(before: manifest.compactedThrough).count
                return r
            }
            return nil
        } catch {
            try? dictionaries.users.rollBack()
            try? dictionaries.sessions.rollBack()
            for name in (try? FileIO.listDirectory(directory)) ?? [] where name.hasSuffix(".tmp") {
                try? FileIO.unlink(directory + "/" + name)
            }
            throw error
        }
    }

    private func compactLogLocked(log: EventLog, options: CompactionOptions, faults: FaultInjector?) throws -> CompactionRound? {
        let current = manifest
        let snapshot = log.snapshot()
        let from = current.compactedThrough
        guard snapshot.durableSequence > from else { return nil }
        var round = CompactionRound(from: from, through: from)
        var phaseStart = monotonicNanos()
        func phase(_ field: WritableKeyPath<CompactionRound, UInt64>) {
            let now = monotonicNanos()
            round[keyPath: field] += now - phaseStart
            phaseStart = now
        }
        // Read in parallel: the builders intern ids in tables of their own, so workers share
        // nothing but the log.
        let through = try Self.roundEnd(snapshot: snapshot, from: from, options: options)
        let workers = max(1, min(options.threads, 16))
        let open = blockFiles(of: current)
        let partition = try RoundPartition(snapshot: snapshot, from: from, through: through, workers: workers, options: options)
        let results = parallelMap(workers, threads: workers) { worker in
            try self.readRoundPart(
                snapshot: snapshot, from: from, through: through, worker: worker, partition: partition, options: options)
        }
        var parts: [(worker: Int, builder: BlockBuilder)] = []
        var readNanos: UInt64 = 0
        for (worker, result) in results.enumerated() {
            let part = try result.get()
            parts += part.builders.map { (worker, $0) }
            round.events += part.events
            readNanos = max(readNanos, part.readNanos)
        }
        guard round.events > 0 else { return nil }
        round.through = through
        // By day, and a day read in stretches by worker, which is log order: blocks and ids
        // do not depend on which worker was faster.
        parts.sort { ($0.builder.day, $0.worker) < ($1.builder.day, $1.worker) }
        var builders = parts.map(\.builder)
        parts = []
        let replaced = try mergeSmallBlocks(into: &builders, current: current, open: open, options: options)
        let elapsed = monotonicNanos() - phaseStart
        round.readNanos += min(readNanos, elapsed)
        round.mergeNanos += elapsed - min(readNanos, elapsed)
        phaseStart = monotonicNanos()
        let generation = current.generation + 1
        let today = BlockBuilder.day(ofMicros: currentMicros())
        let codecs = builders.map { options.codec(forDay: $0.day, today: today) }
        // A day read in stretches has one block per stretch.
        var names: [String] = []
        var part = 0
        for i in builders.indices {
            part = i > 0 && builders[i - 1].day == builders[i].day ? part + 1 : 0
            names.append(Self.blockName(day: builders[i].day, generation: generation, part: part))
        }
        // The rounds left, this one included: the later ones will add sessions at its rate.
        let rounds = min(16, Double(snapshot.durableSequence - from) / Double(max(1, through - from)))
        let written = try finishInParallel(
            &builders, codecs: codecs, names: names, expectedRounds: rounds, options: options, faults: faults)
        phase(\.encodeNanos)
        let added = written.map(\.entry)
        round.bytesWritten = added.reduce(0) { $0 + Int($1.bytes) }
        round.blocksWritten = added.count
        round.blocksReplaced = replaced.count
        try publish(
            replacing: replaced, adding: added, opened: written.map(\.file), compactedThrough: round.through,
            generation: generation, base: current, faults: faults)
        phase(\.writeNanos)
        return round
    }

    /// Where a round that starts at `from` ends: `maxEventsPerRound` later, moved on to the
    /// next day boundary of the log when one comes within a quarter round more, or else back
    /// to the last one in the half round before.
    ///
    /// A round that ends inside a day leaves the rest of the day to the next round, which
    /// then merges the block just written (decoding and re-encoding about half a day of rows
    /// per round, on one worker while the others wait) or leaves the day in two blocks. A
    /// log written in time order has a boundary in every day: the first batch all of whose
    /// events are on a later day than every event of the batches between the plain end and
    /// it. Only batch headers are read. Late events delay a boundary at most until the
    /// batch after theirs; where none comes in time the round ends at the plain end.
    static func roundEnd(snapshot: LogSnapshot, from: UInt64, options: CompactionOptions) throws -> UInt64 {
        let plain = min(snapshot.durableSequence, from + UInt64(options.maxEventsPerRound))
        guard plain < snapshot.durableSequence else { return plain }
        let limit = min(snapshot.durableSequence, plain + UInt64(options.maxEventsPerRound / 4))
        if let after = try dayBoundaries(snapshot: snapshot, from: plain, through: limit).first { return after }
        // Days as large as half a round (100 M events over 90 days) often have no boundary
        // in the quarter round after the plain end; the last one in the half round before it
        // then ends the round, a little short, rather than splitting a day.
        let earliest = from + UInt64(max(1, options.maxEventsPerRound / 2))
        guard earliest < plain else { return plain }
        return try dayBoundaries(snapshot: snapshot, from: earliest, through: plain - 1).last ?? plain
    }

    /// The day boundaries (first sequences of batches) in `from ... through`, reading batch
    /// headers from the one that holds `from`.
    private static func dayBoundaries(snapshot: LogSnapshot, from: UInt64, through: UInt64) throws -> [UInt64] {
        var reader = LogReader(snapshot: snapshot, from: from)
        var latestDay = Int32.min
        var found: [UInt64] = []
        while let (header, _) = try reader.nextBatch(decompressing: { _ in false }) {
            if header.firstSequence > through { break }
            if header.firstSequence >= from && BlockBuilder.day(ofMicros: header.minTimestamp) > latestDay && latestDay != .min {
                found.append(header.firstSequence)
            }
            latestDay = max(latestDay, BlockBuilder.day(ofMicros: header.maxTimestamp))
        }
        return found
    }

    struct RoundPart {
        var builders: [BlockBuilder] = []
        var events = 0
        var readNanos: UInt64 = 0
    }

    /// One worker's share of a round, in day builders: the log's events in `from..<through`
    /// whose day falls to it, or the events of its stretch of the log.
    private func readRoundPart(
        snapshot: LogSnapshot, from: UInt64, through: UInt64, worker: Int, partition: RoundPartition, options: CompactionOptions
    ) throws -> RoundPart {
        let started = monotonicNanos()
        var part = RoundPart()
        let range: Range<UInt64>
        var days: DayBuilders
        switch partition {
        case .days(let claims):
            range = from..<through
            days = DayBuilders { day in claims.claim(day, for: worker) }
        case .stretches(let bounds):
            range = bounds[worker]..<bounds[worker + 1]
            days = DayBuilders()
        }
        var reader = LogReader(snapshot: snapshot, from: range.lowerBound)
        var pacing = PacedWork(options.pacer)
        // A batch none of whose days fall to this worker is not decompressed: in a log
        // written in time order most batches hold one day, so each is read by one worker.
        let owned = { (header: BatchHeader) in days.acceptsSomeDay(from: header.minTimestamp, through: header.maxTimestamp) }
        while let (header, payload) = try reader.nextBatch(decompressing: owned) {
            if header.firstSequence >= range.upperBound { break }
            guard let payload else { continue }
            try days.add(header, payload: payload, range: range)
            pacing.checkpoint()
        }
        part.builders = days.builders
        part.events = days.events
        part.readNanos = monotonicNanos() - started
        return part
    }

    /// Merges the small existing blocks of the builder's day into it, smallest first, while
    /// they are within `mergeRatio` of what is gathered (or the day has too many blocks);
    /// returns the blocks merged.
    private func mergeSmallBlocks(
        into builder: inout BlockBuilder, current: Manifest, open: [BlockFile], options: CompactionOptions
    ) throws -> [BlockEntry] {
        var pacing = PacedWork(options.pacer)
        var merged: [BlockEntry] = []
        var total = builder.rows
        let day = builder.day
        let crowded = current.blocks.count { $0.day == day } + 1 > options.maxBlocksPerDay
        let candidates = current.blocks.enumerated()
            .filter { $0.element.day == day && Int($0.element.rows) < options.mergeBelowRows }
            .sorted { $0.element.rows < $1.element.rows }
        for (index, entry) in candidates where total + Int(entry.rows) <= options.maxBlockRows {
            guard crowded || Int(entry.rows) <= total * options.mergeRatio else { break }
            try builder.append(block: open[index])
            pacing.checkpoint()
            total += Int(entry.rows)
            merged.append(entry)
        }
        return merged
    }

    /// The merges of a round, after the read: each day's small blocks go into its largest
    /// builder (a day read in stretches has one per stretch; the first of equals), the days
    /// in parallel.
    private func mergeSmallBlocks(
        into builders: inout [BlockBuilder], current: Manifest, open: [BlockFile], options: CompactionOptions
    ) throws -> [BlockEntry] {
        var largest: [Int] = []
        for i in builders.indices {
            if let last = largest.last, builders[last].day == builders[i].day {
                if builders[i].rows > builders[last].rows { largest[largest.count - 1] = i }
            } else {
                largest.append(i)
            }
        }
        let targets = largest
        return try builders.withUnsafeMutableBufferPointer { buffer in
            let shared = SharedBuilders(builders: buffer.baseAddress!)
            let results = parallelMap(targets.count, threads: options.threads) { k in
                try self.mergeSmallBlocks(into: &shared.builders[targets[k]], current: current, open: open, options: options)
            }
            return try results.flatMap { try $0.get() }
        }
    }

    /// Resolves, encodes and writes the day builders on `options.threads` threads.
    ///
    /// Project ids are assigned by one resolver thread, in builder order (deterministic ids,
    /// and the dictionaries are only ever touched by one thread). It runs ahead of the
    /// encoders, which take the largest builder resolved so far (`ResolvedIds.take`), and
    /// once all are assigned it persists the dictionaries while the encoders are still busy:
    /// the serial part of a round hides behind the parallel one instead of following it.
    private func finishInParallel(
        _ builders: inout [BlockBuilder], codecs: [Codec], names: [String], expectedRounds: Double, options: CompactionOptions,
        faults: FaultInjector?
    ) throws -> [(entry: BlockEntry, file: BlockFile)] {
        let count = builders.count
        let dictionaries = self.dictionaries
        let resolved = ResolvedIds(rows: builders.map(\.rows))
        return try builders.withUnsafeMutableBufferPointer { buffer in
            let shared = SharedBuilders(builders: buffer.baseAddress!)
            let resolver = Thread {
                var pacing = PacedWork(options.pacer)
                do {
                    // Session ids rarely span days, so nearly every per-block one is new. Room
                    // is made for the backlog's sessions too (up to 16 rounds of them): a
                    // large table grows by half, and growing it a little every round of a long
                    // compaction rehashed millions of sessions each time.
                    let sessions = (0..<count).reduce(0) { $0 + shared.builders[$1].localSessions.count }
                    dictionaries.sessions.reserve(additional: Int(Double(sessions) * max(1, expectedRounds)))
                    for i in 0..<count {
                        try shared.builders[i].resolveGlobalIds(dictionaries)
                        resolved.publish(i, users: UInt32(dictionaries.users.count), sessions: UInt32(dictionaries.sessions.count))
                        pacing.checkpoint()
                    }
                    try faults?.check("persist dictionaries")
                    try dictionaries.users.persist()
                    try dictionaries.sessions.persist()
                    resolved.finish(nil)
                } catch {
                    resolved.finish(error)
                }
            }
            resolver.stackSize = 8 << 20
            resolver.start()
            let written = parallelMap(threads: min(options.threads, count), next: { try resolved.take() }) { i in
                let (users, sessions) = resolved.sizes(of: i)
                let codec = codecs[i]
                let (bytes, footer) = try shared.builders[i].finish(
                    codec: codec, level: options.level(codec), userDictionaryCount: users, sessionDictionaryCount: sessions,
                    pacer: options.pacer)
                try self.writeBlockFile(bytes.bytes, name: names[i], faults: faults)
                // Written: its columns are freed now rather than with the round's, which
                // lowers the round's peak memory.
                shared.builders[i] = BlockBuilder(day: shared.builders[i].day, rows: 0, entries: 0, users: 0, sessions: 0)
                // Opened here, in parallel, for the snapshot `publish` hands to readers: opened
                // there, 20–40 new blocks a round took 5–10 ms with every other core idle.
                let file = try BlockFile(path: self.directory + "/" + names[i])
                return (entry: self.entry(name: names[i], footer: footer, bytes: bytes.count, codec: codec), file: file)
            }
            // The resolver touches the builders and dictionaries until it finishes: wait for
            // it whatever happened to the encoders.
            try resolved.waitUntilFinished()
            return try written.map { try $0.get() }
        }
    }

    /// Rewrites blocks of days past `coldAfterDays` with the cold codec, chunk by chunk.
    private func recompressColdLocked(options: CompactionOptions, faults: FaultInjector?) throws -> Int {
        guard options.coldCodec != options.codec else { return 0 }
        let current = manifest
        let today = BlockBuilder.day(ofMicros: currentMicros())
        let open = blockFiles(of: current)
        var replaced: [BlockEntry] = []
        var added: [BlockEntry] = []
        let generation = current.generation + 1
        for (index, entry) in current.blocks.enumerated()
        where options.codec(forDay: entry.day, today: today) == options.coldCodec && entry.codec != options.coldCodec {
            if replaced.count >= options.recompressPerRound { break }
            let codec = options.coldCodec
            let (bytes, footer) = try open[index].recompressed(codec: codec, level: options.level(codec), pacer: options.pacer)
            // Several blocks of one day recompressed together take parts, as in a round.
            let name = Self.blockName(day: entry.day, generation: generation, part: added.count { $0.day == entry.day })
            try writeBlockFile(bytes.bytes, name: name, faults: faults)
            replaced.append(entry)
            added.append(self.entry(name: name, footer: footer, bytes: bytes.count, codec: codec))
        }
        guard !added.isEmpty else { return 0 }
        try publish(
            replacing: replaced, adding: added, compactedThrough: current.compactedThrough, generation: generation, base: current,
            faults: faults)
        return added.count
    }

    /// The open block files of `manifest`, in its order.
    private func blockFiles(of manifest: Manifest) -> [BlockFile] {
        let s = snapshot()
        precondition(s.manifest == manifest, "the manifest changes only under the compaction lock")
        return s.blocks
    }

    private func entry(name: String, footer: BlockFooter, bytes: Int, codec: Codec) -> BlockEntry {
        BlockEntry(
            name: name, day: footer.day, rows: footer.rows, minTimestamp: footer.minTimestamp, maxTimestamp: footer.maxTimestamp,
            bytes: UInt64(bytes), codec: codec, sequenceRanges: footer.sequenceRanges)
    }

    private func writeBlockFile(_ bytes: UnsafeRawBufferPointer, name: String, faults: FaultInjector?) throws {
        let path = directory + "/" + name
        let tmp = path + ".tmp"
        try faults?.check("write block \(name)")
        let fd = try FileIO.open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try FileIO.writeAllSmoothly(fd, bytes, path: tmp)
            try faults?.check("fsync block \(name)")
            try FileIO.fsync(fd, path: tmp)
            FileIO.close(fd)
        } catch {
            FileIO.close(fd)
            throw error
        }
        try faults?.check("rename block \(name)")
        try FileIO.rename(tmp, path)
    }

    /// `opened`, when given, holds the files of `added` already open, in the same order.
    private func publish(
        replacing replaced: [BlockEntry], adding added: [BlockEntry], opened: [BlockFile] = [], compactedThrough: UInt64,
        generation: UInt64, base: Manifest, faults: FaultInjector?
    ) throws {
        // The dictionaries were persisted by `finishInParallel`.
        try faults?.check("fsync block directory")
        try FileIO.fsyncDirectory(directory)

        var next = base
        let gone = Set(replaced.map(\.name))
        next.blocks.removeAll { gone.contains($0.name) }
        next.blocks += added
        next.blocks.sort { ($0.day, $0.name) < ($1.day, $1.name) }
        next.generation = generation
        next.compactedThrough = compactedThrough
        next.userDictionaryCount = UInt32(dictionaries.users.count)
        next.sessionDictionaryCount = UInt32(dictionaries.sessions.count)
        let path = directory + "/" + Manifest.fileName
        let tmp = path + ".tmp"
        try faults?.check("write manifest")
        let fd = try FileIO.open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try next.encoded().withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tmp) }
            try faults?.check("fsync manifest")
            try FileIO.fsync(fd, path: tmp)
            FileIO.close(fd)
        } catch {
            FileIO.close(fd)
            throw error
        }
        try faults?.check("rename manifest")
        try FileIO.rename(tmp, path)
        try faults?.check("fsync manifest directory")
        try FileIO.fsyncDirectory(directory)

        // Published: readers switch to the new set; files of replaced blocks stay readable
        // through the descriptors of snapshots that still hold them.
        let old = snapshot()
        var files: [String: BlockFile] = [:]
        for (entry, file) in zip(old.manifest.blocks, old.blocks) { files[entry.name] = file }
        for (entry, file) in zip(added, opened) { files[entry.name] = file }
        let blocks = try next.blocks.map { try files[$0.name] ?? BlockFile(path: directory + "/" + $0.name) }
        published.withLock { $0 = StoreSnapshot(manifest: next, blocks: blocks) }
        logger.debug("published manifest", metadata: ["generation": "\(generation)", "blocks": "\(next.blocks.count)"])

        try faults?.check("delete replaced blocks")
        for entry in replaced { try FileIO.unlink(directory + "/" + entry.name) }
    }
}

public enum CompactionError: Error, CustomStringConvertible {
    case malformedBatch(first: UInt64, reason: String)
    case resolverStopped

    public var description: String {
        switch self {
        case .malformedBatch(let first, let reason): "log batch at sequence \(first) is malformed: \(reason)"
        case .resolverStopped: "the id resolver stopped before assigning a block's ids"
        }
    }
}

/// Which read worker builds each day of a round: the first to meet the day in the log.
///
/// The workers all read the round's stretch of the log in order. Dealt by parity, the days
/// left one worker idle for 15–130 ms a round waiting for the other: the round's first and
/// last days are partial, and on this VM one core often runs slower than the other for
/// seconds. Claimed as met, a worker that falls behind finds the days it reaches taken and
/// skips their batches by header, so the faster one builds more of them; the two end
/// within about one day's work of each other.
///
/// Every record of a day is built by its owner: the first worker to look at any batch that
/// may hold the day (by its header's time range) or holds it claims it, and reads every
/// batch after that one in order. Which worker builds a day changes nothing in what is
/// built, so blocks stay the same from run to run.
final class DayClaims: @unchecked Sendable {
    // Unchecked: `owner` is only touched under `lock`.
    private let lock = NSLock()
    private var owner: [Int32: Int] = [:]

    /// Whether `worker` builds `day`: true if it owns the day or is the first to ask.
    func claim(_ day: Int32, for worker: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if let o = owner[day] { return o == worker }
        owner[day] = worker
        return true
    }
}

/// How the workers of a round share its events.
///
/// By day (`days`), each worker builds the days it meets first: every day is one block.
/// That leaves workers idle when a round holds few days: at 100 M events over 90 days a day
/// holds up to 2 M events, as many as a round, and one worker read and encoded each round
/// while the other waited (1.44 of 2 cores busy). Such a round is cut into one stretch of
/// the log per worker instead (`stretches`, the bounds in sequence numbers), each building
/// every day it holds; a day that spans two stretches becomes two blocks, which queries read
/// like any day of several blocks. Small rounds keep to days, so a few events never make
/// two blocks of one day.
enum RoundPartition: Sendable {
    case days(DayClaims)
    case stretches([UInt64])

    init(snapshot: LogSnapshot, from: UInt64, through: UInt64, workers: Int, options: CompactionOptions) throws {
        let events = through - from
        guard workers > 1, events >= UInt64(workers) * UInt64(max(1, options.minEventsPerStretch)),
            try Self.daysHeld(snapshot: snapshot, from: from, through: through, upTo: 2 * workers) < 2 * workers
        else {
            self = .days(DayClaims())
            return
        }
        self = .stretches((0...workers).map { from + events * UInt64($0) / UInt64(workers) })
    }

    /// The distinct days of the batches in `from..<through`, counted up to `limit`. A batch
    /// counts for the day of its latest event, which its header gives: in a log written in
    /// time order that is where its events are, and a late event or two, which stretch the
    /// header's range back by days, hold little work.
    static func daysHeld(snapshot: LogSnapshot, from: UInt64, through: UInt64, upTo limit: Int) throws -> Int {
        var days = Set<Int32>()
        var reader = LogReader(snapshot: snapshot, from: from)
        while let (header, _) = try reader.nextBatch(decompressing: { _ in false }) {
            if header.firstSequence >= through { break }
            days.insert(BlockBuilder.day(ofMicros: header.maxTimestamp))
            if days.count >= limit { return limit }
        }
        return days.count
    }
}

/// The dictionary sizes after each builder's ids were assigned, handed from the resolver
/// thread of `finishInParallel` to the encoders.
private final class ResolvedIds: @unchecked Sendable {
    // Unchecked: every field is only touched under `condition`.
    private let condition = NSCondition()
    private var sizes: [(users: UInt32, sessions: UInt32)?]
    private var finished = false
    private var failure: (any Error)?

    /// Each builder's row count, and whether an encoder has taken it.
    private let rows: [Int]
    private var taken: [Bool]
    private var takenCount = 0

    init(rows: [Int]) {
        self.rows = rows
        sizes = Array(repeating: nil, count: rows.count)
        taken = Array(repeating: false, count: rows.count)
    }

    func publish(_ index: Int, users: UInt32, sessions: UInt32) {
        condition.lock()
        sizes[index] = (users, sessions)
        condition.broadcast()
        condition.unlock()
    }

    /// Marks the resolver done, with the error that stopped it if any.
    func finish(_ error: (any Error)?) {
        condition.lock()
        finished = true
        failure = error
        condition.broadcast()
        condition.unlock()
    }

    /// The builder an encoder takes next: the largest of those resolved and not yet taken,
    /// waiting while there is none; nil once all are taken. Throws the resolver's error if it
    /// stopped first.
    ///
    /// Largest first, so that the round ends on small days: taken in day order, a large day
    /// left for last kept one core busy for up to 30 ms while the other had nothing to do.
    /// Ids are still assigned in day order, so blocks do not depend on which encoder was
    /// faster.
    func take() throws -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if takenCount == rows.count { return nil }
            var best = -1
            for i in rows.indices where !taken[i] && sizes[i] != nil && (best < 0 || rows[i] > rows[best]) { best = i }
            if best >= 0 {
                taken[best] = true
                takenCount += 1
                return best
            }
            if finished { throw failure ?? CompactionError.resolverStopped }
            condition.wait()
        }
    }

    /// The dictionary sizes after the ids of builder `index`, which `take` handed out.
    func sizes(of index: Int) -> (users: UInt32, sessions: UInt32) {
        condition.lock()
        defer { condition.unlock() }
        guard let size = sizes[index] else { preconditionFailure("builder \(index) was taken before its ids were resolved") }
        return size
    }

    func waitUntilFinished() throws {
        condition.lock()
        defer { condition.unlock() }
        while !finished { condition.wait() }
        if let failure { throw failure }
    }
}

/// The builders handed to the workers of `finishInParallel`; each worker touches only its
/// own index, so sharing the pointer is safe.
private struct SharedBuilders: @unchecked Sendable {
    let builders: UnsafeMutablePointer<BlockBuilder>
}

/// Runs `body(0..<count)` on threads of its own and waits for all of them. Threads rather than
/// Dispatch workers, so they inherit nothing and the caller decides priority.
package func runInParallel(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    if count == 1 {
        body(0)
        return
    }
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    group.wait()
}

/// `body(i)` for every `i` in `0..<count` on up to `threads` threads taking indices in turn;
/// the results in index order.
package func parallelMap<T>(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
    let counter = IndexCounter()
    return parallelMap(threads: min(threads, count), next: { counter.next(below: count) }, body)
}

/// `body(i)` for every index `next` hands out (nil once there are none left) on up to
/// `threads` threads; the results in index order. An error `next` throws stops the thread
/// that asked and comes first among the results.
package func parallelMap<T>(
    threads: Int, next: @escaping @Sendable () throws -> Int?, _ body: @escaping @Sendable (Int) throws -> T
) -> [Result<T, any Error>] {
    let results = Collected<(Int, Result<T, any Error>)>()
    runInParallel(max(1, threads)) { _ in
        while true {
            let index: Int?
            do {
                index = try next()
            } catch {
                results.append((-1, .failure(error)))
                return
            }
            guard let i = index else { return }
            results.append((i, Result { try body(i) }))
        }
    }
    return results.items.sorted { $0.0 < $1.0 }.map(\.1)
}

/// Hands out 0, 1, 2, … to the threads of `parallelMap`.
private final class IndexCounter: Sendable {
    private let next = Mutex(0)

    func next(below count: Int) -> Int? {
        next.withLock { n in
            guard n < count else { return nil }
            defer { n += 1 }
            return n
        }
    }
}

/// Results handed back from worker threads. Each worker builds its own value and hands it over
/// whole under the lock; the caller reads only after every worker has finished.
package final class Collected<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [T] = []

    package init() {}

    package func append(_ item: T) {
        lock.lock()
        stored.append(item)
        lock.unlock()
    }

    package var items: [T] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
