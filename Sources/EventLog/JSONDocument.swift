import CSimdJSON

public struct JSONSyntaxError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { "invalid JSON: \(message)" }
}

/// A reusable simdjson parser whose result is a flat array of tokens.
///
/// Parsers keep their buffers between documents, so each thread or request borrows one from
/// `JSONParserPool` instead of allocating per request. Not thread-safe.
public final class JSONTokenizer {
    let parser: OpaquePointer

    public init() {
        guard let p = tj_parser_create() else { fatalError("out of memory creating a JSON parser") }
        parser = p
    }

    deinit { tj_parser_destroy(parser) }

    /// Parses `bytes`. With `padded`, `TJ_PADDING` readable bytes must follow the input and
    /// no copy is made. The result is valid until the next call.
    public func parse(_ bytes: UnsafeRawBufferPointer, padded: Bool = false) throws(JSONSyntaxError) -> JSONTokens {
        let code = withUnsafePointer(to: 0) { empty in
            let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
                ?? UnsafeRawPointer(empty).assumingMemoryBound(to: CChar.self)
            return tj_parse(parser, base, bytes.count, padded ? 1 : 0)
        }
        guard code == 0 else { throw JSONSyntaxError(message: String(cString: tj_error_message(code))) }
        return JSONTokens(tape: tj_tape(parser), strings: tj_string_buffer(parser))
    }
}

/// The type byte of a tape word.
public enum JSONKind {
    public static let object = UInt8(ascii: "{")
    public static let array = UInt8(ascii: "[")
    public static let string = UInt8(ascii: "\"")
    public static let int64 = UInt8(ascii: "l")
    public static let uint64 = UInt8(ascii: "u")
    public static let double = UInt8(ascii: "d")
    public static let `true` = UInt8(ascii: "t")
    public static let `false` = UInt8(ascii: "f")
    public static let null = UInt8(ascii: "n")
}

/// A parsed document: simdjson's tape, read in place (see CSimdJSON.h for the layout).
///
/// Values are addressed by tape index. `next(i)` is the index after value `i` and all its
/// children, so subtrees are skipped in O(1). An object's fields are key-value pairs of
/// indices from `i + 1` to `end(i)`; an array's elements run from `i + 1` to `end(i)`.
public struct JSONTokens {
    let tape: UnsafePointer<UInt64>
    let strings: UnsafePointer<UInt8>

    /// Index of the document's root value.
    public var root: Int { 1 }

    @inline(__always)
    public func kind(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: tape[i] >> 56) }

    @inline(__always)
    public func next(_ i: Int) -> Int {
        let word = tape[i]
        switch UInt8(truncatingIfNeeded: word >> 56) {
        case JSONKind.object, JSONKind.array: return Int(UInt32(truncatingIfNeeded: word))
        case JSONKind.int64, JSONKind.uint64, JSONKind.double: return i + 2
        default: return i + 1
        }
    }

    /// Index of the closing word of the object or array at `i`.
    @inline(__always)
    public func end(_ i: Int) -> Int { Int(UInt32(truncatingIfNeeded: tape[i])) - 1 }

    /// Number of fields or elements (saturates at 16,777,215).
    @inline(__always)
    public func count(_ i: Int) -> Int { Int((tape[i] >> 32) & 0xFF_FFFF) }

    @inline(__always)
    public func string(_ i: Int) -> UnsafeRawBufferPointer {
        let offset = Int(tape[i] & 0x00FF_FFFF_FFFF_FFFF)
        let length = UnsafeRawPointer(strings + offset).loadUnaligned(as: UInt32.self)
        return UnsafeRawBufferPointer(start: strings + offset + 4, count: Int(length))
    }

    @inline(__always)
    public func int64(_ i: Int) -> Int64 { Int64(bitPattern: tape[i + 1]) }

    @inline(__always)
    public func uint64(_ i: Int) -> UInt64 { tape[i + 1] }

    @inline(__always)
    public func double(_ i: Int) -> Double { Double(bitPattern: tape[i + 1]) }
}
