import CSimdJSON
import Synchronization

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
    /// no copy is made. The tokens are valid until the next call.
    public func parse(_ bytes: UnsafeRawBufferPointer, padded: Bool = false) throws(JSONSyntaxError) -> JSONTokens {
        let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
        let code = withUnsafePointer(to: 0) { empty in
            tj_parse(parser, base ?? UnsafeRawPointer(empty).assumingMemoryBound(to: CChar.self), bytes.count, padded ? 1 : 0)
        }
        guard code == 0 else { throw JSONSyntaxError(message: String(cString: tj_error_message(code))) }
        return JSONTokens(base: tj_tokens(parser), count: tj_token_count(parser))
    }
}

/// The tokens of one parsed document, as laid out by the C shim: each token's `next` is the
/// index just past its value, so whole subtrees are skipped in O(1).
public struct JSONTokens {
    let base: UnsafePointer<tj_token>?
    public let count: Int

    @inline(__always)
    subscript(_ i: Int) -> tj_token { base![i] }

    @inline(__always)
    public func kind(_ i: Int) -> Int32 { Int32(base![i].kind) }

    @inline(__always)
    public func string(_ i: Int) -> UnsafeRawBufferPointer {
        let t = base![i]
        return UnsafeRawBufferPointer(start: t.v.str, count: Int(t.length))
    }

    @inline(__always)
    public func next(_ i: Int) -> Int { Int(base![i].next) }
}

/// A small pool of tokenizers shared by request handlers.
public final class JSONParserPool: Sendable {
    // @unchecked-free: the non-Sendable tokenizers only move through the mutex, one owner at a time.
    private let free: Mutex<[UnsafeSendableTokenizer]> = Mutex([])

    public init() {}

    public func withTokenizer<R>(_ body: (JSONTokenizer) throws -> R) rethrows -> R {
        let tokenizer = free.withLock { $0.popLast() }?.tokenizer ?? JSONTokenizer()
        defer { free.withLock { if $0.count < 64 { $0.append(UnsafeSendableTokenizer(tokenizer: tokenizer)) } } }
        return try body(tokenizer)
    }
}

/// A tokenizer parked in the pool. Safe to send: only the pool holds it while it is parked.
struct UnsafeSendableTokenizer: @unchecked Sendable {
    let tokenizer: JSONTokenizer
}
