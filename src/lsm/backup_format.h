/*
 * backup_format: the on-disk formats of a backup destination DEST (the operations on it, with
 * how and in which order these files are written, are in backup.c; docs/ARCHITECTURE.md,
 * "Backup destination", summarises both). Pure functions: no I/O; every decoder bounds-checks
 * every length before it allocates or reads, and fails with SHALE_CORRUPTION naming the file and
 * the offset ("DEST/000003/BACKUP @84: 9 files do not fit").
 *
 * Layout of DEST:
 *   DEST/BACKUPS              the destination file (below): magic, the database's identity, the
 *                             next backup id, checksum. Written first, replaced atomically.
 *   DEST/LOCK                 flock'ed while shale_backup, _delete or _purge runs.
 *   DEST/tables/NNNNNN-S.sst  a table of the database (file number NNNNNN, S bytes), written once
 *                             and shared by every backup that lists it. File numbers are never
 *                             reused within one database and BACKUPS pins DEST to one database,
 *                             so number + size names a table's content (backup_stored_name).
 *   DEST/NNNNNN/              backup NNNNNN (backup_parse_id: six or more digits, > 0, no
 *                             leading zero past six): the checkpoint's small files (SHALE,
 *                             CURRENT, MANIFEST-M) and BACKUP, its manifest (below), written last.
 *   A directory NNNNNN/ without BACKUP is a backup cut short.
 *
 * DEST/BACKUPS (56 bytes; every integer little-endian):
 *
 *   0          8             12          16              24                       52          56
 *   +----------+-------------+-----------+---------------+------------------------+-----------+
 *   |"SHALEBKS"| version u32 | flags u32 | next_id u64   | identity (28 bytes)    | crc u32   |
 *   +----------+-------------+-----------+---------------+------------------------+-----------+
 *   version = 1, flags = 0 (written 0, not checked on read). identity = the database's identity
 *   file SHALE, verbatim (its magic, version, flags, created_at_ms and checksum). next_id = the id
 *   the next backup takes; it only grows, so an id is never reused. crc = masked CRC32C of bytes
 *   [0, 52). Checks, in order: exactly 56 bytes and the magic; the checksum; the version.
 *
 * DEST/NNNNNN/BACKUP (88 bytes + the entries + 4; at most BACKUP_MAX_MANIFEST = 16 MiB):
 *
 *   0  "SHALEBAK"          8 bytes
 *   8  version u32         1
 *   12 flags u32           0 (written 0, not checked on read)
 *   16 id u64              equal to the directory's number
 *   24 seq u64             the newest sequence number the backup holds
 *   32 created_at_ms u64   wall clock when the backup was taken
 *   40 new_files u64       files this backup wrote (the rest were in DEST already)
 *   48 new_bytes u64
 *   56 identity            28 bytes, equal to BACKUPS's
 *   84 nfiles u32          then nfiles entries:
 *        where u8          1 = DEST/NNNNNN/<name>, 2 = DEST/tables/<number>-<size>.sst
 *        name_len u8       1 .. 47
 *        name              the file's name in the database ("SHALE", "CURRENT",
 *                          "MANIFEST-000007", "000012.sst"): [A-Za-z0-9._-], not starting with
 *                          '.'; where = 2 exactly for a table name NNNNNN.sst
 *        size u64
 *        sha256            32 bytes, of the file's whole content
 *   end-4  crc u32         masked CRC32C of every byte before it
 *   Checks, in order (backup_manifest_decode): at least 92 bytes and the magic; the checksum; the
 *   version; every entry inside the file (nfiles bounded by the length before anything is
 *   allocated), a valid name in the right place, no name twice, nothing after the last entry;
 *   SHALE and CURRENT present. Then, knowing where it was read (backup_manifest_check): the id
 *   equal to the directory's; the identity equal to BACKUPS's.
 *
 * Why the constants: 16 MiB bounds what a reader allocates for a damaged file while holding
 * ~300,000 entries; 47-byte names hold every name a database writes with room to spare and keep
 * an entry's name in a fixed array; SHA-256 (not the CRC32C of the tables) because a backup must
 * prove the restored bytes are the ones backed up, also against a careless copy.
 *
 * Ownership: backup_manifest owns its files array (backup_manifest_free); decoders borrow their
 * input. Threads: no shared state.
 */
#ifndef SHALE_LSM_BACKUP_FORMAT_H
#define SHALE_LSM_BACKUP_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"
#include "lsm/identity.h"

#define BACKUP_DEST_FILE    "BACKUPS"
#define BACKUP_FILE         "BACKUP"
#define BACKUP_TABLES       "tables"
#define BACKUP_VERSION      1u
#define BACKUP_ID_BYTES     DB_IDENTITY_BYTES /* the identity file, verbatim */
#define BACKUP_DEST_BYTES   56u
#define BACKUP_HEAD_BYTES   88u
#define BACKUP_ENTRY_MIN    42u /* where, name_len, size, sha256: a name adds to it */
#define BACKUP_NAME_MAX     47u
#define BACKUP_MAX_MANIFEST ((size_t)16 << 20)
#define BACKUP_SHA          32u
#define BACKUP_WHERE_DIR    1u
#define BACKUP_WHERE_TABLES 2u
#define BACKUP_STORED_NAME  64u /* room for backup_stored_name's result */

/* One file of a backup. */
typedef struct backup_file {
    uint8_t where; /* BACKUP_WHERE_DIR or BACKUP_WHERE_TABLES */
    char name[BACKUP_NAME_MAX + 1];
    uint64_t size;
    uint8_t sha[BACKUP_SHA];
} backup_file;

/* A decoded BACKUP. files[0, nfiles) in the order of the file; cap is the allocation. */
typedef struct backup_manifest {
    uint64_t id, seq, created_at_ms, new_files, new_bytes;
    uint8_t identity[BACKUP_ID_BYTES];
    backup_file *files;
    size_t nfiles, cap;
} backup_manifest;

/* ---- DEST/BACKUPS ---- */

void backup_dest_encode(uint8_t out[BACKUP_DEST_BYTES], uint64_t next_id,
                        const uint8_t identity[BACKUP_ID_BYTES]);
/* Decodes raw[0, len) read from `path` (for messages). SHALE_OK or SHALE_CORRUPTION. */
shale_code backup_dest_decode(const uint8_t *raw, size_t len, const char *path, uint64_t *next_id,
                              uint8_t identity[BACKUP_ID_BYTES], shale_error *err) SHALE_MUST_USE;

/* ---- DEST/NNNNNN/BACKUP ---- */

/* Replaces out's contents with the encoding of m. SHALE_NOMEM; SHALE_INVALID if a name is not
 * one the decoder accepts or there are more files than the format counts. */
shale_code backup_manifest_encode(const backup_manifest *m, shale_buf *out,
                                  shale_error *err) SHALE_MUST_USE;
/* Decodes raw[0, len) read from `path` into *m (overwritten; owned by the caller on SHALE_OK,
 * left empty otherwise). SHALE_CORRUPTION or SHALE_NOMEM. */
shale_code backup_manifest_decode(const uint8_t *raw, size_t len, const char *path,
                                  backup_manifest *m, shale_error *err) SHALE_MUST_USE;
/* The checks that need to know where m was read: its id is `id` (the directory's) and its
 * identity is BACKUPS's. SHALE_OK or SHALE_CORRUPTION naming `path`. */
shale_code backup_manifest_check(const backup_manifest *m, const char *path, uint64_t id,
                                 const uint8_t identity[BACKUP_ID_BYTES],
                                 shale_error *err) SHALE_MUST_USE;
/* Appends a copy of f (growing files). SHALE_NOMEM. */
shale_code backup_manifest_add(backup_manifest *m, const backup_file *f,
                               shale_error *err) SHALE_MUST_USE;
/* Frees the files; m is left empty. Accepts an empty (zeroed) m. */
void backup_manifest_free(backup_manifest *m);

/* ---- names ---- */

/* "000012-4096.sst": the name in DEST/tables of table file f (where = BACKUP_WHERE_TABLES); out
 * holds BACKUP_STORED_NAME bytes. */
void backup_stored_name(char out[BACKUP_STORED_NAME], const backup_file *f);
/* True if name[0, n) is a valid file name of a manifest entry. */
bool backup_name_ok(const char *name, size_t n);
/* A backup directory's name: six or more decimal digits, > 0, no leading zero past six digits
 * (the one spelling "%06" PRIu64 gives). */
bool backup_parse_id(const char *name, uint64_t *id);

#endif
