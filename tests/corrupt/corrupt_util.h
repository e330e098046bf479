/*
 * corrupt_util: small helpers the corruption campaigns in tests/corrupt share.
 *
 * Offered: cu_newest_log (the newest log segment of a database directory, by file number) and
 * cu_fnv / CU_FNV_INIT (64-bit FNV-1a, to compare scans and files by hash).
 */
#ifndef SHALE_TESTS_CORRUPT_UTIL_H
#define SHALE_TESTS_CORRUPT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define CU_FNV_INIT 1469598103934665603ull /* the FNV-1a offset basis */

/* The base name (malloc'ed) of the highest-numbered *.log in dir, or NULL if there is none. */
char *cu_newest_log(const char *dir);

/* Folds n bytes at p into the FNV-1a hash h (start from CU_FNV_INIT). */
uint64_t cu_fnv(uint64_t h, const void *p, size_t n);

#endif
