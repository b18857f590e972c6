#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A precomputed piece of JSON text in the `Fragments` arena.
struct Frag {
    let offset: Int32
    let count: Int32
}

/// All fixed JSON text (keys with their quotes, enum values, prefixes) lives in one arena,
/// so writing an event is a series of small memcpys and hand-formatted numbers: no String,
/// no Foundation, no allocation per event.
final class Fragments {
    private(set) var bytes: [UInt8] = []

    func add(_ text: String) -> Frag {
        let f = Frag(offset: Int32(bytes.count), count: Int32(text.utf8.count))
        bytes.append(contentsOf: text.utf8)
        return f
    }

    func add(_ texts: [String], _ make: (String) -> String) -> [Frag] {
        texts.map { add(make($0)) }
    }
}

@inline(__always) func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

@inline(__always) func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
}

/// 0 = Sunday ... 6 = Saturday (1970-01-01 was a Thursday).
@inline(__always) func weekday(_ days: Int) -> Int {
    ((days % 7) + 7 + 4) % 7
}

func formatDate(_ days: Int) -> String {
    let (y, m, d) = civilFromDays(days)
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(y)-\(two(m))-\(two(d))"
}

func writeStderr(_ text: String) {
    writeFD(2, text)
}

func writeFD(_ fd: Int32, _ text: String) {
    var s = text
    s.withUTF8 { buf in
        var p = buf.baseAddress!
        var left = buf.count
        while left > 0 {
            let n = write(fd, p, left)
            if n <= 0 { return }
            p += n
            left -= n
        }
    }
}

/// One large reusable output buffer, flushed with fwrite in big chunks.
final class ByteWriter {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    var pos = 0
    private(set) var flushed = 0
    private let file: UnsafeMutablePointer<FILE>
    private let arena: UnsafeMutablePointer<UInt8>
    private let digits: UnsafeMutablePointer<UInt8>  // "00".."99"
    private let hex: UnsafeMutablePointer<UInt8>  // "00".."ff"
    private let datePrefix: UnsafeMutablePointer<UInt8>  // "YYYY-MM-DDT" of cachedDay
    private var cachedDay = Int.min

    init(file: UnsafeMutablePointer<FILE>, arena source: [UInt8], capacity: Int = 8 << 20) {
        self.file = file
        self.capacity = capacity
        base = .allocate(capacity: capacity)
        let arena = UnsafeMutablePointer<UInt8>.allocate(capacity: max(source.count, 1))
        source.withUnsafeBufferPointer { arena.initialize(from: $0.baseAddress!, count: $0.count) }
        self.arena = arena
        digits = .allocate(capacity: 200)
        hex = .allocate(capacity: 512)
        datePrefix = .allocate(capacity: 16)
        let hexChars = Array("0123456789abcdef".utf8)
        for i in 0..<100 {
            digits[2 * i] = UInt8(48 + i / 10)
            digits[2 * i + 1] = UInt8(48 + i % 10)
        }
        for i in 0..<256 {
            hex[2 * i] = hexChars[i >> 4]
            hex[2 * i + 1] = hexChars[i & 15]
        }
    }

    deinit {
        base.deallocate()
        arena.deallocate()
        digits.deallocate()
        hex.deallocate()
        datePrefix.deallocate()
    }

    var totalBytes: Int { flushed + pos }

    /// Call once per event: no event comes near 4 KiB.
    @inline(__always) func reserve() {
        if pos > capacity - 4096 { flush() }
    }

    func flush() {
        if pos == 0 { return }
        let n = fwrite(base, 1, pos, file)
        if n != pos {
            writeStderr("gen-events: write failed: \(String(cString: strerror(errno)))\n")
            exit(1)
        }
        flushed += pos
        pos = 0
    }

    func close() {
        flush()
        if fflush(file) != 0 || fclose(file) != 0 {
            writeStderr("gen-events: write failed: \(String(cString: strerror(errno)))\n")
            exit(1)
        }
    }

    @inline(__always) func byte(_ b: UInt8) {
        base[pos] = b
        pos &+= 1
    }

    @inline(__always) func frag(_ f: Frag) {
        let n = Int(f.count)
        (base + pos).update(from: arena + Int(f.offset), count: n)
        pos &+= n
    }

    /// Decimal text of a non-negative integer.
    @inline(__always) func dec(_ value: Int) {
        var x = UInt64(truncatingIfNeeded: value)
        if x < 10 {
            base[pos] = UInt8(truncatingIfNeeded: 48 &+ x)
            pos &+= 1
            return
        }
        var n = 1
        var t = x
        while t >= 10 {
            t /= 10
            n &+= 1
        }
        var p = pos &+ n
        while x >= 100 {
            let q = x / 100
            let r = Int(truncatingIfNeeded: x &- q &* 100) &* 2
            p &-= 2
            base[p] = digits[r]
            base[p &+ 1] = digits[r &+ 1]
            x = q
        }
        if x >= 10 {
            let r = Int(truncatingIfNeeded: x) &* 2
            p &-= 2
            base[p] = digits[r]
            base[p &+ 1] = digits[r &+ 1]
        } else {
            p &-= 1
            base[p] = UInt8(truncatingIfNeeded: 48 &+ x)
        }
        pos &+= n
    }

    /// Exactly two digits (0...99).
    @inline(__always) func two(_ v: Int) {
        base[pos] = digits[v &* 2]
        base[pos &+ 1] = digits[v &* 2 &+ 1]
        pos &+= 2
    }

    /// 16 lowercase hex digits.
    @inline(__always) func hex16(_ v: UInt64) {
        var shift = 56
        while shift >= 0 {
            let b = Int(truncatingIfNeeded: (v >> UInt64(shift)) & 0xFF) &* 2
            base[pos] = hex[b]
            base[pos &+ 1] = hex[b &+ 1]
            pos &+= 2
            shift &-= 8
        }
    }

    /// RFC 3339 UTC with milliseconds, `2026-08-03T14:05:09.123Z`, from epoch milliseconds (>= 0).
    @inline(__always) func timestamp(_ ms: Int64) {
        let day = Int(ms / 86_400_000)
        var rest = Int(ms - Int64(day) * 86_400_000)
        if day != cachedDay { setDay(day) }
        (base + pos).update(from: datePrefix, count: 11)
        pos &+= 11
        let h = rest / 3_600_000
        rest -= h * 3_600_000
        let m = rest / 60_000
        rest -= m * 60_000
        let s = rest / 1000
        let milli = rest - s * 1000
        two(h)
        byte(58)
        two(m)
        byte(58)
        two(s)
        byte(46)
        byte(UInt8(truncatingIfNeeded: 48 &+ milli / 100))
        two(milli % 100)
        byte(90)
    }

    @inline(never) private func setDay(_ day: Int) {
        cachedDay = day
        let text = Array(formatDate(day).utf8) + [84]  // "T"
        precondition(text.count == 11, "dates must have four-digit years")
        datePrefix.update(from: text, count: 11)
    }
}
