#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct GenEvents {
    static func main() {
        let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
        let file: UnsafeMutablePointer<FILE>?
        if let path = options.out, path != "-" {
            file = fopen(path, "wb")
        } else {
            file = fdopen(1, "wb")
        }
        guard let file else {
            writeStderr("gen-events: cannot open \(options.out ?? "stdout"): \(String(cString: strerror(errno)))\n")
            exit(1)
        }
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let began = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
        let generator = Generator(options: options) { ByteWriter(file: file, arena: $0) }
        generator.run()
        if options.stats {
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let seconds = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9 - began
            var text = "gen-events: \(options.events) events, \(generator.bytesWritten) bytes, "
            text += "\(formatDate(options.firstDay)) .. \(formatDate(options.firstDay + options.days - 1)), "
            text += "\(generator.usersSeen) of \(options.users) users seen, "
            text += "\(generator.userDaysServed) of \(generator.userDaysPlanned) planned user-days, "
            text += "retention scale \((generator.retentionScale * 1000).rounded() / 1000), "
            text += "\(generator.lateCount) late, \(generator.eventIdCount) with event_id, "
            text += "\((seconds * 100).rounded() / 100) s\n"
            for (i, name) in Kind.names.enumerated() { text += "  \(name): \(generator.kindCount[i])\n" }
            writeStderr(text)
        }
    }
}
