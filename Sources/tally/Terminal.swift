import EventLog

#if canImport(Glibc)
import Glibc
#endif

enum FileHandleWriter {
    static func stdout(_ bytes: UnsafeBufferPointer<UInt8>) { write(1, bytes) }
    static func stderr(_ bytes: UnsafeBufferPointer<UInt8>) { write(2, bytes) }

    /// Best effort: a closed pipe (`tally log dump | head`) must not turn into an error.
    static func write(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        try? FileIO.writeAll(fd, UnsafeRawBufferPointer(bytes), path: fd == 1 ? "stdout" : "stderr")
    }
}

func printError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { FileHandleWriter.stderr($0) }
}

var standardErrorIsTerminal: Bool { isatty(2) != 0 }
