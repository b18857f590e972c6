import CLZ4
import CZstd

#if canImport(Glibc)
import Glibc
#endif

/// A file read sequentially in chunks, decompressing LZ4 frames (`.lz4`) or Zstandard
/// (`.zst`) on the fly, chosen by the file name.
public final class CompressedInput {
    enum Kind { case plain, lz4, zstd }

    public let path: String
    let fd: Int32
    let kind: Kind
    private var raw = [UInt8](repeating: 0, count: 1 << 20)
    private var rawStart = 0
    private var rawEnd = 0
    private var eof = false
    private var lz4: OpaquePointer?
    private var zstd: OpaquePointer?
    /// Compressed bytes consumed so far, for progress against the file size.
    public private(set) var bytesRead = 0
    public let fileSize: Int

    public init(path: String) throws {
        self.path = path
        fd = try FileIO.open(path, flags: O_RDONLY)
        fileSize = (try? FileIO.fileSize(fd, path: path)) ?? 0
        if path.hasSuffix(".lz4") {
            kind = .lz4
            var ctx: OpaquePointer?
            let rc = LZ4F_createDecompressionContext(&ctx, UInt32(LZ4F_VERSION))
            guard LZ4F_isError(rc) == 0 else { throw CodecError.cannotDecompress(.lz4, reason: "cannot create context") }
            lz4 = ctx
        } else if path.hasSuffix(".zst") || path.hasSuffix(".zstd") {
            kind = .zstd
            zstd = ZSTD_createDStream()
            ZSTD_initDStream(zstd)
        } else {
            kind = .plain
        }
    }

    deinit {
        FileIO.close(fd)
        if let lz4 { LZ4F_freeDecompressionContext(lz4) }
        if let zstd { ZSTD_freeDStream(zstd) }
    }

    private func fillRaw() throws {
        if rawStart > 0 {
            raw.withUnsafeMutableBytes { p in
                if rawEnd > rawStart { memmove(p.baseAddress!, p.baseAddress! + rawStart, rawEnd - rawStart) }
            }
            rawEnd -= rawStart
            rawStart = 0
        }
        guard !eof, rawEnd < raw.count else { return }
        let n = raw.withUnsafeMutableBytes { p in Glibc.read(fd, p.baseAddress! + rawEnd, p.count - rawEnd) }
        if n < 0 { throw FileError("read", path, errno: errno) }
        if n == 0 { eof = true }
        rawEnd += n
        bytesRead += n
    }

    /// Reads up to `buffer.count` decompressed bytes; 0 means end of input.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        switch kind {
        case .plain:
            while true {
                let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileError("read", path, errno: errno)
                }
                bytesRead += n
                return n
            }
        case .lz4:
            var produced = 0
            while produced < buffer.count {
                if rawStart == rawEnd { try fillRaw() }
                if rawStart == rawEnd && eof { break }
                var dstSize = buffer.count - produced
                var srcSize = rawEnd - rawStart
                let rc = raw.withUnsafeBytes { p in
                    LZ4F_decompress(lz4, buffer.baseAddress! + produced, &dstSize, p.baseAddress! + rawStart, &srcSize, nil)
                }
                if LZ4F_isError(rc) != 0 {
                    throw CodecError.cannotDecompress(.lz4, reason: String(cString: LZ4F_getErrorName(rc)))
                }
                rawStart += srcSize
                produced += dstSize
                if dstSize == 0 && srcSize == 0 { try fillRaw(); if eof && rawStart == rawEnd { break } }
            }
            return produced
        case .zstd:
            var produced = 0
            while produced < buffer.count {
                if rawStart == rawEnd { try fillRaw() }
                if rawStart == rawEnd && eof { break }
                let rc = raw.withUnsafeBytes { p -> Int in
                    var input = ZSTD_inBuffer(src: p.baseAddress! + rawStart, size: rawEnd - rawStart, pos: 0)
                    var output = ZSTD_outBuffer(dst: buffer.baseAddress! + produced, size: buffer.count - produced, pos: 0)
                    let rc = ZSTD_decompressStream(zstd, &output, &input)
                    rawStart += input.pos
                    produced += output.pos
                    return rc
                }
                if ZSTD_isError(rc) != 0 {
                    throw CodecError.cannotDecompress(.zstd, reason: String(cString: ZSTD_getErrorName(rc)))
                }
            }
            return produced
        }
    }
}
