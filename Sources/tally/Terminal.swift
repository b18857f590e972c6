#if canImport(Glibc)
import Glibc
#endif

enum FileHandleWriter {
    static func stdout(_ bytes: UnsafeBufferPointer<UInt8>) { write(1, bytes) }
    static func stderr(_ bytes: UnsafeBufferPointer<UInt8>) { write(2, bytes) }

    static func write(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}

func printError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { FileHandleWriter.stderr($0) }
}

var standardErrorIsTerminal: Bool { isatty(2) != 0 }
