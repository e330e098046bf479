/*
 * identity: the identity file SHALE that marks a directory as a Shale database, written once at
 * creation (docs/ARCHITECTURE.md, "Identity file SHALE"):
 *
 *   0 magic "SHALEDB\0" | 8 format version u32 (1) | 12 flags u32 (0) | 16 created_at_ms u64 |
 *   24 crc u32 = crc32c_mask(crc32c(bytes 0 .. 23))            28 bytes, little-endian
 *
 * One encoder and one checker for every reader of it: the open path (db.c), `shale check`,
 * repair, and backups (which copy it verbatim). Pure functions; no I/O.
 */
#ifndef SHALE_LSM_IDENTITY_H
#define SHALE_LSM_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define DB_IDENTITY_NAME    "SHALE"
#define DB_IDENTITY_VERSION 1u
#define DB_IDENTITY_BYTES   28u

/* A fresh identity created at created_at_ms. */
void db_identity_make(uint64_t created_at_ms, uint8_t out[DB_IDENTITY_BYTES]);

/* NULL when p[0, n) is a valid identity; otherwise what is wrong, with the byte offset it
 * concerns in *at ("28 bytes expected", "bad magic", "checksum mismatch", "unknown format
 * version"); for a version mismatch *version gets the version found. */
const char *db_identity_check(const uint8_t *p, size_t n, size_t *at, uint32_t *version);

#endif
