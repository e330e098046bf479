/*
 * wal_reader: reads the logical records of one log segment and tells a torn tail from corruption.
 *
 * Reading goes front to back in large sequential reads. When a fragment is invalid (bad checksum,
 * impossible length or type, a FIRST/MIDDLE/LAST out of order, or the file ends inside a record)
 * at offset X, the reader decides:
 *   - corruption, if X is proven synced: a valid sync marker after X (wal_format.h) announces
 *     synced_to > X. Valid fragments are looked for at the position X's own length implies (when
 *     that length is plausible), at any offset in the rest of X's block, and at any later block
 *     start. In a version 1 segment (no markers) any valid fragment after X is the proof.
 *     Without salvage, wal_reader_next returns SHALE_CORRUPTION naming the file and offset X.
 *     With salvage, it skips to the next valid fragment (proof or not; dropping any partial
 *     logical record), counts what it skipped, and goes on.
 *   - a torn tail otherwise (bytes no sync covered, which a power loss may keep in any subset):
 *     wal_reader_next returns SHALE_NOT_FOUND (the end), and valid_end is the offset just past
 *     the last complete logical record before X, where the caller should truncate the file.
 * Fragment order: a FULL or FIRST met while a record is open is damage at the open record's
 * start, judged by the rule above (salvage drops the partial record and resumes at the FULL or
 * FIRST). A file ending inside block padding is a torn tail. Sync markers are consumed, never
 * returned; a marker that claims bytes beyond its own offset is corruption. A segment's
 * WAL_REC_PREV record (right after the header, nowhere else) is consumed by wal_reader_open and
 * reported in the stats; checking it against the previous segment is the caller's job.
 * EIO on a read is SHALE_IO, never the end. Every length is bounds-checked before allocation.
 *
 * The first logical record must be a WAL_REC_HEADER with the right magic and version; its file
 * number is checked against `expect_file_number`. A file whose header is torn (shorter than a
 * complete header record, all of it invalid, nothing valid after) is reported as an empty torn
 * segment: wal_reader_open succeeds, wal_reader_next returns SHALE_NOT_FOUND at once, and
 * valid_end is 0. A file whose first record is valid but not a Shale header is SHALE_CORRUPTION.
 *
 * Threads: one thread at a time. Ownership: records returned are borrowed until the next call.
 */
#ifndef SHALE_WAL_WAL_READER_H
#define SHALE_WAL_WAL_READER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "env/env.h"

typedef struct wal_reader wal_reader;

typedef struct wal_reader_stats {
    uint64_t records;          /* logical records returned (header included) */
    uint64_t salvaged_records; /* damaged regions skipped (salvage) */
    uint64_t salvaged_bytes;   /* bytes skipped (salvage) */
    bool torn_tail;            /* the file ended in a torn record */
    uint64_t valid_end;        /* offset just after the last complete logical record */
    uint64_t file_size;
    /* The segment's WAL_REC_PREV record, when it has one (read by wal_reader_open). */
    bool has_prev;
    uint64_t prev_number, prev_size;
} wal_reader_stats;

shale_code wal_reader_open(const shale_env *env, const char *path, uint64_t expect_file_number,
                           bool salvage, wal_reader **out, shale_error *err) SHALE_MUST_USE;

/* Returns SHALE_OK with the next logical record after the segment header (kind byte first) in
 * *rec and its starting offset in *offset; SHALE_NOT_FOUND at the end (clean or torn);
 * SHALE_CORRUPTION or SHALE_IO on failure. */
shale_code wal_reader_next(wal_reader *r, shale_slice *rec, uint64_t *offset,
                           shale_error *err) SHALE_MUST_USE;

void wal_reader_get_stats(const wal_reader *r, wal_reader_stats *out);

/* Accepts NULL. */
void wal_reader_close(wal_reader *r);

#endif
