#if canImport(Glibc)
import Glibc
#endif

/// A growable buffer of plain values for the compactor's per-row columns.
///
/// Appending to a Swift array that lives inside a struct inside an array (or a class) costs a
/// uniqueness check and an exclusivity check per call; the builder appends a dozen values per
/// event. This buffer is a class with unchecked storage: appends are a capacity compare and a
/// store. It grows with `realloc`, which moves a large buffer by remapping its pages instead
/// of copying them into freshly zeroed ones. It is never shared between threads while being
/// written.
final class ColumnBuffer<Element: BitwiseCopyable>: RandomAccessCollection, MutableCollection {
    @exclusivity(unchecked) private(set) var base: UnsafeMutablePointer<Element>
    @exclusivity(unchecked) private(set) var capacity: Int
    @exclusivity(unchecked) private(set) var count = 0

    init(capacity: Int = 1024) {
        self.capacity = Swift.max(capacity, 16)
        base = Self.reallocate(nil, capacity: self.capacity)
    }

    convenience init(_ values: some Collection<Element>) {
        self.init(capacity: values.count)
        for v in values { append(v) }
    }

    deinit { free(base) }

    private static func reallocate(_ pointer: UnsafeMutablePointer<Element>?, capacity: Int) -> UnsafeMutablePointer<Element> {
        let (bytes, overflow) = capacity.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        precondition(!overflow, "column buffer of \(capacity) values overflows")
        guard let raw = realloc(pointer, bytes) else { fatalError("out of memory growing a column buffer to \(bytes) bytes") }
        return raw.bindMemory(to: Element.self, capacity: capacity)
    }

    var startIndex: Int { 0 }
    var endIndex: Int { count }

    @inline(__always)
    subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "index out of range")
            return base[position]
        }
        set {
            precondition(position >= 0 && position < count, "index out of range")
            base[position] = newValue
        }
    }

    @inline(__always)
    func append(_ value: Element) {
        if count == capacity { grow(count + 1) }
        (base + count).initialize(to: value)
        count += 1
    }

    func append(contentsOf values: some Collection<Element>) {
        if count + values.count > capacity { grow(count + values.count) }
        for v in values {
            (base + count).initialize(to: v)
            count += 1
        }
    }

    func removeAll() { count = 0 }

    var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: base, count: count) }

    @inline(never)
    private func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        base = Self.reallocate(base, capacity: newCapacity)
        capacity = newCapacity
    }
}
