/// Writes JSON text into an `OutputBuffer`: responses, `log dump` lines and the text kept for
/// array-valued properties. Strings are escaped per RFC 8259.
public struct JSONWriter {
    public let out: OutputBuffer

    public init(_ out: OutputBuffer) { self.out = out }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public func string(_ raw: UnsafeRawBufferPointer) {
        out.reserve(raw.count + 2)
        out.append(byte: UInt8(ascii: "\""))
        var runStart = 0
        for i in 0..<raw.count {
            let c = raw[i]
            if c >= 0x20 && c != UInt8(ascii: "\"") && c != UInt8(ascii: "\\") { continue }
            out.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<i]))
            runStart = i + 1
            switch c {
            case UInt8(ascii: "\""): out.append(byte: UInt8(ascii: "\\")); out.append(byte: UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(byte: UInt8(ascii: "\\")); out.append(byte: UInt8(ascii: "\\"))
            case 0x0A: out.append(byte: UInt8(ascii: "\\")); out.append(byte: UInt8(ascii: "n"))
            case 0x0D: out.append(byte: UInt8(ascii: "\\")); out.append(byte: UInt8(ascii: "r"))
            case 0x09: out.append(byte: UInt8(ascii: "\\")); out.append(byte: UInt8(ascii: "t"))
            default:
                for b in Array("\\u00".utf8) { out.append(byte: b) }
                out.append(byte: JSONWriter.hexDigits[Int(c >> 4)])
                out.append(byte: JSONWriter.hexDigits[Int(c & 0xF)])
            }
        }
        out.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<raw.count]))
        out.append(byte: UInt8(ascii: "\""))
    }

    public func string(_ s: String) {
        var s = s
        s.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }

    public func raw(_ s: String) { out.append(s) }

    /// Writes a time as a JSON string in `Timestamp.format`'s form, without building a String.
    public func timestamp(_ micros: Int64) {
        out.append(byte: UInt8(ascii: "\""))
        Timestamp.write(micros, into: out)
        out.append(byte: UInt8(ascii: "\""))
    }

    /// Writes an event id as a JSON string; server ids are formatted in place.
    public func eventId(_ id: EventIdentifier) {
        switch id {
        case .client(let s): string(s)
        case .server(let sequence):
            out.reserve(22)
            for b in "\"evt_".utf8 { out.append(byte: b) }
            for shift in stride(from: 60, through: 0, by: -4) {
                out.append(byte: JSONWriter.hexDigits[Int((sequence >> UInt64(shift)) & 0xF)])
            }
            out.append(byte: UInt8(ascii: "\""))
        }
    }

    public func key(_ k: String) {
        string(k)
        out.append(byte: UInt8(ascii: ":"))
    }

    public func int(_ v: Int64) { out.append(String(v)) }

    /// Doubles in the shortest form that round-trips; non-finite values become null.
    public func double(_ v: Double) {
        guard v.isFinite else { return out.append("null") }
        if v == v.rounded(), abs(v) < 1e15 {
            out.append(String(Int64(v)))
            if v == 0 && v.sign == .minus { return }
            return
        }
        out.append("\(v)")
    }

    public func bool(_ v: Bool) { out.append(v ? "true" : "false") }
    public func null() { out.append("null") }

    public func value(_ v: PropertyValue) {
        switch v {
        case .null: null()
        case .bool(let b): bool(b)
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .json(let s): string(s)
        }
    }

    /// Re-serializes the token subtree at `index` as minified JSON.
    func tokens(_ tokens: JSONTokens, at index: Int) {
        var i = index
        writeToken(tokens, &i)
    }

    private func writeToken(_ tokens: JSONTokens, _ i: inout Int) {
        let at = i
        switch tokens.kind(at) {
        case JSONKind.object:
            out.append(byte: UInt8(ascii: "{"))
            let end = tokens.end(at)
            i += 1
            var first = true
            while i < end {
                if !first { out.append(byte: UInt8(ascii: ",")) }
                first = false
                string(tokens.string(i))
                out.append(byte: UInt8(ascii: ":"))
                i += 1
                writeToken(tokens, &i)
            }
            out.append(byte: UInt8(ascii: "}"))
            i = end + 1
        case JSONKind.array:
            out.append(byte: UInt8(ascii: "["))
            let end = tokens.end(at)
            i += 1
            var first = true
            while i < end {
                if !first { out.append(byte: UInt8(ascii: ",")) }
                first = false
                writeToken(tokens, &i)
            }
            out.append(byte: UInt8(ascii: "]"))
            i = end + 1
        case JSONKind.string:
            string(tokens.string(at))
            i += 1
        case JSONKind.int64:
            int(tokens.int64(at))
            i += 2
        case JSONKind.uint64:
            out.append(String(tokens.uint64(at)))
            i += 2
        case JSONKind.double:
            double(tokens.double(at))
            i += 2
        case JSONKind.true:
            bool(true)
            i += 1
        case JSONKind.false:
            bool(false)
            i += 1
        default:
            null()
            i += 1
        }
    }
}
