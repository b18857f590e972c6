#ifndef CPREFETCH_H
#define CPREFETCH_H

/// Asks the CPU to bring the cache line at `address` in for reading, without waiting for it.
/// Swift has no prefetch of its own; this inline function compiles to one `prefetcht0` (or
/// the CPU's equivalent) wherever it is called. A hint only: any address is safe.
static inline void tally_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
