#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Hands memory freed by a finished query back to the kernel.
///
/// glibc keeps freed blocks in its per-thread arenas for reuse, so after one query over
/// 100 M events the server's RSS stays near that query's peak (gigabytes) although almost
/// all of it is free. `malloc_trim` releases the free pages of every arena; it takes a few
/// milliseconds, so it runs only after long queries and never twice at once. (Swift's Glibc
/// module leaves out `malloc.h`, so the function is looked up once by name.)
public enum FreedMemory {
    private static let trimming = Atomic<Bool>(false)

    #if canImport(Glibc)
    private typealias Trim = @convention(c) (Int) -> Int32
    nonisolated(unsafe) private static let trim: Trim? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
    }()
    #endif

    public static func giveBack() {
        #if canImport(Glibc)
        guard let trim, trimming.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        defer { trimming.store(false, ordering: .releasing) }
        _ = trim(0)
        #endif
    }
}
