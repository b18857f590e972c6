#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Nonzero when this CPU has a CRC-32C instruction (x86-64 SSE 4.2, or the ARMv8 CRC
/// extension) and `tally_crc32c_hardware` may be called.
int tally_crc32c_hardware_available(void);

/// The CRC-32C of `count` bytes at `bytes`, continuing from `crc` (0 to start), computed with
/// the CPU's CRC instruction. Call only when `tally_crc32c_hardware_available()` is nonzero.
uint32_t tally_crc32c_hardware(uint32_t crc, const void *bytes, size_t count);

#endif
