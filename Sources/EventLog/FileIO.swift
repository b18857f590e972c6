#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An I/O failure with the path and the operation that failed, so logs and CLI errors name them.
public struct FileError: Error, CustomStringConvertible, Equatable {
    public var operation: String
    public var path: String
    public var errno: Int32

    public init(_ operation: String, _ path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errno)))"
    }
}

/// Thin, throwing wrappers over POSIX file calls. The log needs exact control of write,
/// fdatasync, ftruncate and rename ordering, which Foundation's file APIs hide.
public enum FileIO {
    public static func open(_ path: String, flags: Int32, mode: UInt32 = 0o644) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode_t(mode))
        if fd < 0 { throw FileError("open", path, errno: errno) }
        return fd
    }

    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("write", path, errno: errno)
            }
            offset += n
        }
    }

    /// Writes `bytes` in pieces of `piece` bytes, starting the kernel's writeback of each
    /// piece as it is written and waiting for the one before (`sync_file_range`), so that a
    /// large file reaches `fsync` with little left to flush.
    ///
    /// A background writer that leaves tens of megabytes dirty and then fsyncs them stalls
    /// every other `fdatasync` on the file system behind that flush (ext4 commits a
    /// transaction only after the data blocks allocated in it are written): the log's group
    /// commits waited for the compactor's block files. Written this way, at most two pieces
    /// are in flight at any moment. Durability still comes from the `fsync` that follows.
    public static func writeAllSmoothly(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String, piece: Int = 1 << 20) throws {
        guard let syncFileRange = syncFileRange, bytes.count > piece else { return try writeAll(fd, bytes, path: path) }
        var offset = 0
        while offset < bytes.count {
            let n = min(piece, bytes.count - offset)
            try writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]), path: path)
            _ = syncFileRange(fd, Int64(offset), Int64(n), syncFileRangeWrite)
            if offset >= piece {
                _ = syncFileRange(fd, Int64(offset - piece), Int64(piece), syncFileRangeWaitBefore | syncFileRangeWrite | syncFileRangeWaitAfter)
            }
            offset += n
        }
    }

    // `sync_file_range` is a GNU extension that Swift's Glibc module leaves out; looked up
    // once. Its flags, from <fcntl.h>:
    private static let syncFileRangeWaitBefore: UInt32 = 1
    private static let syncFileRangeWrite: UInt32 = 2
    private static let syncFileRangeWaitAfter: UInt32 = 4
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    private static let syncFileRange: SyncFileRange? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "sync_file_range") else { return nil }
        return unsafeBitCast(symbol, to: SyncFileRange.self)
    }()

    public static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.pwrite(fd, bytes.baseAddress! + offset, bytes.count - offset, off_t(position + offset))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("pwrite", path, errno: errno)
            }
            offset += n
        }
    }

    /// Reads up to `count` bytes at `position`; fewer only at end of file.
    public static func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int, path: String) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(position + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("pread", path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public static func readFile(_ path: String, limit: Int? = nil) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try readFile(path, limit: limit, into: &bytes)
        return bytes
    }

    /// Reads a whole file into `bytes`, reusing its storage when it is not shared (a reader
    /// going through many segments allocates, and faults in, one buffer).
    public static func readFile(_ path: String, limit: Int? = nil, into bytes: inout [UInt8]) throws {
        let fd = try open(path, flags: O_RDONLY)
        defer { Glibc.close(fd) }
        var size = try fileSize(fd, path: path)
        if let limit { size = min(size, limit) }
        if bytes.count > size {
            bytes.removeLast(bytes.count - size)
        } else if bytes.count < size {
            bytes.append(contentsOf: repeatElement(0, count: size - bytes.count))
        }
        let n = try bytes.withUnsafeMutableBytes { try pread(fd, into: $0, at: 0, path: path) }
        if n < size { bytes.removeLast(size - n) }
    }

    public static func fileSize(_ fd: Int32, path: String) throws -> Int {
        var st = stat()
        if fstat(fd, &st) != 0 { throw FileError("fstat", path, errno: errno) }
        return Int(st.st_size)
    }

    public static func fileSize(path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    public static func fdatasync(_ fd: Int32, path: String) throws {
        if Glibc.fdatasync(fd) != 0 { throw FileError("fdatasync", path, errno: errno) }
    }

    public static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw FileError("fsync", path, errno: errno) }
    }

    public static func truncate(_ fd: Int32, to size: Int, path: String) throws {
        if ftruncate(fd, off_t(size)) != 0 { throw FileError("ftruncate", path, errno: errno) }
    }

    /// Makes a directory entry change (create, rename, unlink) durable.
    public static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        try fsync(fd, path: path)
    }

    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw FileError("rename", from, errno: errno) }
    }

    public static func unlink(_ path: String) throws {
        if Glibc.unlink(path) != 0 && errno != ENOENT { throw FileError("unlink", path, errno: errno) }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and its missing parents.
    public static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if !isDirectory(prefix) && mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw FileError("mkdir", prefix, errno: errno)
            }
        }
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw FileError("opendir", path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, directory fsync.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, durable: Bool = true) throws {
        try bytes.withUnsafeBytes { try writeAtomically($0, to: path, durable: durable) }
    }

    public static func writeAtomically(_ bytes: UnsafeRawBufferPointer, to path: String, durable: Bool = true) throws {
        let tmp = path + ".tmp"
        let fd = try open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try writeAll(fd, bytes, path: tmp)
            if durable { try fsync(fd, path: tmp) }
            Glibc.close(fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        try rename(tmp, path)
        if durable { try fsyncDirectory(parentDirectory(of: path)) }
    }

    public static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }
}

/// Wall-clock time in microseconds since the Unix epoch.
public func currentMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// Monotonic time in nanoseconds, for durations.
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A file mapped read-only into memory, unmapped when released.
///
/// Log readers map segments instead of copying them: the pages are the page cache's own. Only
/// the bytes that existed (and, for an active segment, were durable) when it was mapped are
/// visible; segments are appended to but never truncated while the server runs, so the mapped
/// range stays valid.
public final class MappedFile: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let path: String

    public init(path: String, limit: Int? = nil) throws {
        self.path = path
        let fd = try FileIO.open(path, flags: O_RDONLY)
        defer { close(fd) }
        var size = try FileIO.fileSize(fd, path: path)
        if let limit { size = min(size, limit) }
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else { throw FileError("mmap", path, errno: errno) }
        _ = madvise(address, size, MADV_SEQUENTIAL)
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
