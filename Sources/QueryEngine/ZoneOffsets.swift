public import Foundation
import Synchronization

/// A time zone's UTC offsets as a table of transitions, for bucketing millions of timestamps
/// by local time.
///
/// `TimeZone.secondsFromGMT(for:)` costs about a microsecond; a scan needs the offset of every
/// row. The table holds every offset change from 1900 to 2100 (a DST zone has two a year), so
/// an offset is a binary search over a few hundred integers, and a caller that remembers the
/// interval of its last answer (`Cursor`) rarely searches at all: a day's block usually lies in
/// one interval.
public struct ZoneOffsets: Sendable, Equatable {
    public let identifier: String
    /// `offsets[i]` (µs) holds from `transitions[i - 1]` (UTC µs) up to `transitions[i]`.
    let transitions: [Int64]
    let offsets: [Int64]

    static let tableStart = Date(timeIntervalSince1970: -2_208_988_800)  // 1900-01-01
    static let tableEnd = 4_102_444_800.0  // 2100-01-01

    public init(_ zone: TimeZone) {
        identifier = zone.identifier
        var transitions: [Int64] = []
        var offsets: [Int64] = [Int64(zone.secondsFromGMT(for: Self.tableStart)) * 1_000_000]
        var at = Self.tableStart
        while let next = zone.nextDaylightSavingTimeTransition(after: at), next.timeIntervalSince1970 < Self.tableEnd, next > at {
            let offset = Int64(zone.secondsFromGMT(for: next)) * 1_000_000
            if offset != offsets[offsets.count - 1] {
                transitions.append(Int64((next.timeIntervalSince1970 * 1_000_000).rounded()))
                offsets.append(offset)
            }
            at = next
        }
        self.transitions = transitions
        self.offsets = offsets
    }

    public static let utc = ZoneOffsets(TimeZone(identifier: "UTC")!)

    private static let cache = Mutex<[String: ZoneOffsets]>([:])

    /// The zone named `identifier` (IANA, e.g. `Europe/Berlin`), built once per process; nil
    /// for a name the system does not know.
    public static func named(_ identifier: String) -> ZoneOffsets? {
        if let cached = cache.withLock({ $0[identifier] }) { return cached }
        guard let zone = TimeZone(identifier: identifier) else { return nil }
        let table = ZoneOffsets(zone)
        cache.withLock { $0[identifier] = table }
        return table
    }

    /// The instants (UTC µs) where the offset changes, 1900 to 2100.
    public var changes: [Int64] { transitions }

    /// The interval holding UTC instant `micros`: its number, its offset and the instants it
    /// spans.
    func interval(_ micros: Int64) -> (index: Int, offset: Int64, from: Int64, to: Int64) {
        var low = 0
        var high = transitions.count
        while low < high {
            let mid = (low + high) / 2
            if transitions[mid] <= micros { low = mid + 1 } else { high = mid }
        }
        return (low, offsets[low], low == 0 ? .min : transitions[low - 1], low == transitions.count ? .max : transitions[low])
    }

    /// The offset (µs) from UTC at UTC instant `micros`.
    public func offset(_ micros: Int64) -> Int64 { interval(micros).offset }

    /// Local wall-clock time (as µs since the local epoch) of UTC instant `micros`.
    public func local(_ micros: Int64) -> Int64 { micros &+ offset(micros) }

    /// The UTC instant of local time `local`. A local time skipped by a DST change maps to the
    /// instant the change happened; one that occurs twice maps to its first occurrence.
    public func utc(ofLocal local: Int64) -> Int64 {
        // Offsets lie within ±14 h, so the instant is within 14 h of `local`: the offsets at
        // both ends of that window are the only candidates.
        let window: Int64 = 50_400_000_000
        let early = offset(local &- window)
        let late = offset(local &+ window)
        var found: Int64?
        for o in [early, late] where offset(local &- o) == o {
            found = min(found ?? .max, local &- o)
        }
        if let found { return found }
        // Skipped by a change to a later offset: the instant of that change.
        return interval(local &- early).from
    }

    /// The start of the local clock unit (`length` µs: an hour, a minute, a second) holding UTC
    /// instant `micros`, under the offset in force at that instant. An hour that a DST change
    /// repeats is two buckets, as a clock on the wall shows it twice.
    ///
    /// As Foundation's calendar has it, the start is where the clock would have shown the whole
    /// unit under the current offset, even if a 30-minute change means it showed something
    /// else then.
    public func startOfLocalUnit(_ micros: Int64, length: Int64) -> Int64 {
        micros &- positiveRemainder(local(micros), length)
    }

    /// Offsets along increasing or clustered instants, searching the table only when an
    /// instant leaves the interval of the previous one.
    public struct Cursor {
        let zone: ZoneOffsets
        /// The interval of the last instant asked about.
        public private(set) var index = 0
        public private(set) var from: Int64 = 0
        var to: Int64 = 0
        var current: Int64 = 0

        public init(_ zone: ZoneOffsets) {
            self.zone = zone
            (index, current, from, to) = zone.interval(0)
        }

        @inline(__always)
        public mutating func local(_ micros: Int64) -> Int64 {
            if micros < from || micros >= to { (index, current, from, to) = zone.interval(micros) }
            return micros &+ current
        }

        /// `startOfLocalUnit` through the cursor.
        @inline(__always)
        public mutating func startOfLocalUnit(_ micros: Int64, length: Int64) -> Int64 {
            micros &- positiveRemainder(local(micros), length)
        }
    }
}

@inline(__always)
func positiveRemainder(_ a: Int64, _ b: Int64) -> Int64 {
    let r = a % b
    return r < 0 ? r + b : r
}
