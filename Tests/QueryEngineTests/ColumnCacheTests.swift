import QueryEngine
import Testing

@Suite struct ColumnCacheTests {
    static func column(_ n: Int) -> ColumnCache.Value { .persons([UInt32](repeating: 7, count: n)) }

    @Test func queriesHoldingStateMakeTheCacheGiveWay() {
        let cache = ColumnCache(budgetBytes: 1 << 20)
        for k in 0..<3 { cache.put("c\(k)", Self.column(25_000), bytes: 100_000) }
        #expect(cache.bytes == 300_000)
        _ = cache.get("c0")  // c1 is now the least recently used
        cache.hold((1 << 20) - 150_000)
        #expect(cache.bytes <= 135_000, "the cache kept \(cache.bytes) bytes beside a query holding most of its budget")
        #expect(cache.get("c1") == nil)
        #expect(cache.get("c0") != nil || cache.get("c2") != nil)
        cache.release((1 << 20) - 150_000)
        for k in 3..<6 { cache.put("c\(k)", Self.column(25_000), bytes: 100_000) }
        #expect(cache.bytes >= 300_000)
    }

    @Test func aResidentTargetBelowTheProcessEvictsEverything() throws {
        let resident = try #require(ProcessMemory.residentBytes())
        #expect(resident > 1 << 20)
        let cache = ColumnCache(budgetBytes: 64 << 20)
        cache.put("a", Self.column(25_000), bytes: 100_000)
        #expect(cache.bytes == 100_000)
        cache.residentTargetBytes = resident / 2
        #expect(cache.bytes == 0)
        cache.put("b", Self.column(25_000), bytes: 100_000)
        #expect(cache.get("b") == nil)
        // Room above what the process holds: the cache fills again.
        cache.residentTargetBytes = resident + (256 << 20)
        cache.put("c", Self.column(25_000), bytes: 100_000)
        #expect(cache.get("c") != nil)
        cache.residentTargetBytes = nil
        cache.put("d", Self.column(25_000), bytes: 100_000)
        #expect(cache.bytes == 200_000)
    }
}
