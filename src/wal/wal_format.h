/*
 * wal_format: the write-ahead log's on-disk format (after LevelDB's log_format.h, with a header).
 *
 * A log is a sequence of segment files NNNNNN.log (decimal file number, zero-padded to 6, never
 * reused). A segment is a sequence of 32 KiB blocks; the last block may be partial. A logical
 * record is stored as one or more fragments; a fragment never crosses a block boundary:
 *
 *   fragment:  +---------+---------+------+----------------------+
 *              | crc  u32| len  u16| type | payload (len bytes)  |
 *              +---------+---------+------+----------------------+
 *              0         4         6      7
 *   crc  = crc32c_mask(crc32c(type byte ++ payload)), little-endian
 *   len  = payload length, little-endian, at most WAL_BLOCK_SIZE - WAL_HEADER_SIZE
 *   type = FULL (the whole record) | FIRST | MIDDLE... | LAST
 *
 * When fewer than WAL_HEADER_SIZE bytes remain in a block they are written as zeros and the next
 * fragment starts at the next block. So every block start inside the written part of a file holds
 * a genuine fragment header: a reader can resynchronise there, and a valid fragment at any block
 * start after a damaged one proves the damage is not a torn tail.
 *
 * Logical records begin with a kind byte:
 *   WAL_REC_HEADER  first record of every segment:
 *                   kind(1) "SHALEWAL"(8) version u32 (=2) file_number u64     (21 bytes)
 *   WAL_REC_BATCH   kind(1) followed by a write batch (src/lsm/batch.h)
 *   WAL_REC_EDIT    kind(1) followed by a version edit, in MANIFEST files (src/lsm/version.h)
 *   WAL_REC_PREV    kind(1) prev_number u64 prev_size u64                         (17 bytes)
 *                   (version 2, log segments) the second record of a segment that follows
 *                   another: the previous segment's file number and its final size, which it
 *                   will never change again (it was synced and closed before this one was made).
 *                   Recovery checks the previous segment against it, so a closed segment cut at
 *                   a record boundary, or missing, is corruption rather than a shorter history.
 *   WAL_REC_SYNCED  kind(1) synced_to u64                                          (9 bytes)
 *                   (version 2) a sync marker: every byte before file offset synced_to had been
 *                   made durable by a completed fdatasync when this record was written. The
 *                   writer frames one in front of the first record after a sync that advanced,
 *                   and an explicit shale_sync writes one at once (wal_writer_mark); readers
 *                   consume markers and never return them.
 *
 * Why sync markers: at a power loss the file system may keep any subset of the bytes written
 * since the last sync, in any order (a later record may survive while an earlier one is lost).
 * Damage at offset X followed by valid fragments is therefore corruption only if X had been
 * synced, and a valid marker after X with synced_to > X proves exactly that; without such a
 * proof the damage lies in bytes no sync ever covered and is a torn tail, cut at open like any
 * other. Synced bytes are protected by the marker after them. The exception is the bytes of the
 * newest segment's last sync when no marker followed it (a group commit's sync not followed by
 * another record before a crash, or a marker lost with the power, which is not synced): damage
 * there reads as a torn tail, as a damaged last record does in a version 1 file and in LevelDB.
 * Closed segments need no markers: any torn tail there is corruption (recovery's rule), and the
 * next segment's WAL_REC_PREV gives away a cut at a record boundary. Version 1 segments (no
 * markers) keep the stricter version 1 rule: any valid fragment after damage means corruption.
 *
 * Why 32 KiB blocks: resynchronisation points for salvage and torn-tail detection at a cost of
 * at most 6 padding bytes per block (LevelDB's choice). Why a 16-bit length: fragments are
 * bounded by the block; logical records are unbounded (up to the batch limit).
 */
#ifndef SHALE_WAL_WAL_FORMAT_H
#define SHALE_WAL_WAL_FORMAT_H

#include <stdint.h>

#define WAL_BLOCK_SIZE  32768u
#define WAL_HEADER_SIZE 7u

enum wal_frag_type {
    WAL_FRAG_ZERO = 0, /* padding; never a valid fragment */
    WAL_FRAG_FULL = 1,
    WAL_FRAG_FIRST = 2,
    WAL_FRAG_MIDDLE = 3,
    WAL_FRAG_LAST = 4,
};
#define WAL_FRAG_MAX_TYPE WAL_FRAG_LAST

enum wal_rec_kind {
    WAL_REC_HEADER = 1,
    WAL_REC_BATCH = 2,
    WAL_REC_EDIT = 3,   /* a manifest's version edit (src/lsm/version.h) */
    WAL_REC_SYNCED = 4, /* a sync marker (version 2) */
    WAL_REC_PREV = 5,   /* the previous segment's number and size (version 2) */
};
#define WAL_SYNC_MARK_LEN (1u + 8u)
#define WAL_PREV_LEN      (1u + 8u + 8u)

#define WAL_MAGIC              "SHALEWAL"
#define WAL_MAGIC_LEN          8u
#define WAL_FORMAT_VERSION     2u /* written; version 1 (no sync markers) is still read */
#define WAL_FORMAT_VERSION_MIN 1u
#define WAL_SEGMENT_HEADER_LEN (1u + WAL_MAGIC_LEN + 4u + 8u)

/* Largest logical record the reader accepts: a length read from disk is checked against this
 * before anything is allocated. Batches are limited well below it (db.c). */
#define WAL_MAX_RECORD_BYTES ((uint64_t)1 << 31)

#endif
