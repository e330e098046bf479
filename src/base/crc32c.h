/*
 * crc32c: CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), as in iSCSI, ext4,
 * LevelDB and RocksDB. Uses the SSE4.2 crc32 instruction on x86-64 when the CPU has it (checked
 * once, at first use), else a portable slicing-by-8 table; both are tested against the same
 * published vectors (RFC 3720 B.4).
 *
 * Stored checksums are masked (crc32c_mask): a CRC computed over data that itself contains CRCs
 * would otherwise be weak (LevelDB's reasoning); the mask rotates and adds a constant.
 * Pure functions; thread-safe.
 */
#ifndef SHALE_BASE_CRC32C_H
#define SHALE_BASE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the CRC-32C of concat(A, data[0,n)) where init_crc is the CRC-32C of A (0 for none). */
uint32_t crc32c_extend(uint32_t init_crc, const void *data, size_t n);

static inline uint32_t crc32c_value(const void *data, size_t n)
{
    return crc32c_extend(0, data, n);
}

/* The two implementations, exposed so tests can check both against the vectors. */
uint32_t crc32c_extend_portable(uint32_t init_crc, const void *data, size_t n);
/* Returns false (and computes nothing) if the CPU lacks SSE4.2 or this is not x86-64. */
bool crc32c_extend_hw(uint32_t init_crc, const void *data, size_t n, uint32_t *out);
bool crc32c_hw_available(void);

#define CRC32C_MASK_DELTA 0xa282ead8u

static inline uint32_t crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + CRC32C_MASK_DELTA;
}

static inline uint32_t crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - CRC32C_MASK_DELTA;
    return (rot >> 17) | (rot << 15);
}

#endif
