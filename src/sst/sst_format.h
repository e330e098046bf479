/*
 * sst_format: the sorted table's on-disk format (after LevelDB's table_format.h, with a blocked
 * bloom filter, a properties block and a checksummed, fixed-size footer).
 *
 * A table is one file NNNNNN.sst (decimal file number, zero-padded to 6, never reused):
 *
 *   +-------------------+ 0
 *   | data block 0      |  entries in internal order (base/ikey.h), ~block_bytes each
 *   | data block 1      |
 *   | ...               |
 *   | filter block      |  bloom filter over the table's user keys (bloom.h)
 *   | index block       |  one entry per data block: separator key -> block handle
 *   | properties block  |  sst_props (sst_builder.h)
 *   | footer            |  SST_FOOTER_SIZE bytes: handles of the three blocks above, magic
 *   +-------------------+ file size
 *
 * Every block is stored as   contents (handle.size bytes) | trailer (SST_TRAILER_SIZE bytes):
 *   contents  type NONE:       the raw block bytes
 *             type LZ4 / ZSTD: varint32 raw_len | compressed bytes (expanding to raw_len bytes)
 *   trailer   type u8 (enum compress_type) | crc u32
 *   crc     = crc32c_mask(crc32c(contents ++ type byte)), little-endian
 * A block is stored compressed only when that saves at least 1/8 of its raw size
 * (SST_MIN_SAVING_SHIFT): below that the CPU spent expanding it on every cache miss is not
 * worth the space. The filter and properties blocks are always stored raw (a bloom filter does
 * not compress; properties are read once per open).
 *
 * Block handle (in index entries): varint64 offset | varint64 size, size excluding the trailer.
 *
 * Raw block (data and index blocks; LevelDB's block format, plus an optional hash index in
 * data blocks after RocksDB's kDataBlockBinaryAndHash):
 *   entry*   shared varint32 | non_shared varint32 | value_len varint32 |
 *            key_delta (non_shared bytes) | value (value_len bytes)
 *   restart  fixed32 * R                offsets of entries whose shared is 0, increasing, the
 *                                        first is 0
 *   [hash index]                         only when the footer's SST_BLOCK_HASH_FLAG is set:
 *     bucket u8 * B                      a restart point (< R), or SST_BLOCK_HASH_EMPTY (0xFF)
 *     B fixed16                          1 .. 65535
 *   footer   fixed32                    R, or R | SST_BLOCK_HASH_FLAG (bit 31) with the index
 * R (num_restarts) is at least 1 in a block with entries. An entry's key is the previous entry's
 * first `shared` bytes followed by key_delta. Every restart_interval-th entry is a restart point
 * (shared = 0), so a seek is a binary search over the restart array followed by a linear scan
 * of at most restart_interval entries.
 *
 * Hash index (format version 2): a point lookup's shortcut past that binary search. Written in
 * a data block (never an index block) that has at least one entry and R <= 253
 * (SST_BLOCK_HASH_MAX_RESTARTS, so a restart point fits a byte next to the EMPTY mark); each
 * block decides alone, and a block without it has the plain layout (flag clear).
 *   n        = the block's distinct user keys; B = min(n + n/2 + 1, 65535) (load <= 2/3)
 *   bucket   of user key U = (uint32_t)(bloom_hash(U) >> 32) % B. bloom_hash (bloom.h) is
 *            fixed forever; a get hashes its key once, for the filter and the bucket.
 *   bucket value = EMPTY if no user key of the block falls there, else the SMALLEST restart
 *            point among those holding the first (newest) entry of a user key falling there.
 * A lookup of (U, seq) reads U's bucket: EMPTY means U is not in the block; otherwise it scans
 * forward from that restart point (across later restart points if need be) to the first entry
 * >= (U, seq). Every entry before U's first is smaller than (U, seq), so starting the scan at
 * or before U's first entry is always correct; a collision only makes the scan longer (the
 * reader hops over a run when the next restart key is still below the target), and needs no
 * fallback. Scans (iterators) ignore the index.
 *
 * Keys in data and index blocks are internal keys:  user key | tag fixed64
 *   tag = seq << 8 | type, type SST_TYPE_DEL (0), SST_TYPE_PUT (1) or SST_TYPE_PUT_TTL (2).
 * Order: user key bytewise ascending, then seq descending (base/ikey.h); the type never takes
 * part (no two entries share (user key, seq)).
 * Data block values: DEL: empty. PUT: the value. PUT_TTL: expire_at_ms fixed64 | the value; an
 * entry is PUT_TTL exactly when its expire_at_ms is not 0.
 *
 * Index block: in the raw block format (compressed on disk like a data block when that pays),
 * with restart_interval 1 (every key whole, so a seek is one binary search; readers search an
 * in-memory accelerator built from the block instead, block.h block_pindex). Entry i's key K_i
 * satisfies  last key of block i <= K_i < first key of block i+1,  and is made short
 * (LevelDB's FindShortestSeparator / FindShortSuccessor on the user key): either the last key
 * of block i itself, or a user key S strictly between the two user keys with tag
 * (IKEY_MAX_SEQ << 8 | 0), the first internal key of S. Index keys always have type 0.
 * Entry i's value is the handle of data block i. Data blocks are contiguous from offset 0.
 *
 * Filter block (bloom.h): lines (num_lines * 64 bytes) | num_lines fixed32 | num_probes u8 |
 *   impl u8 (=1: cache-local bloom over hash_bytes(user key, SST_BLOOM_SEED)) | 2 zero bytes.
 *   Each distinct user key of the table is added once.
 *
 * Properties block (raw): field_count fixed32 | field_count * fixed64 (enum sst_prop_field
 *   order) | varint32 len | smallest user key | varint32 len | largest user key.
 *   Fixed-width fields so file_size, the last thing known, can be patched in after encoding.
 *   Readers require field_count >= SST_PROP_COUNT and ignore fields beyond the ones they know,
 *   so later versions may append fields without a format version change.
 *
 * Footer (SST_FOOTER_SIZE = 72 bytes, at file size - 72), all little-endian:
 *    0 index_off u64    8 index_size u64
 *   16 filter_off u64  24 filter_size u64
 *   32 props_off u64   40 props_size u64
 *   48 file_number u64 56 format_version u32
 *   60 crc u32 = crc32c_mask(crc32c(bytes 0 .. 59))
 *   64 magic u64 = the bytes "SHALESST"
 * Fixed width (no varints) so the reader finds it with one read at a known offset. The magic
 * is last so `tail -c 8` identifies a table and a truncated file fails with "bad magic". The
 * file number catches a table renamed or restored into the wrong slot.
 */
#ifndef SHALE_SST_SST_FORMAT_H
#define SHALE_SST_SST_FORMAT_H

#include <stdint.h>

#include "base/ikey.h"

/* "SHALESST" read as a little-endian u64: the file's last 8 bytes spell the name. */
#define SST_MAGIC              0x545353454c414853ull
/* 2: data blocks may carry a hash index (written unless sst_builder_options.no_data_block_hash).
 * 1: none does (written with no_data_block_hash, so older builds read those tables). A reader
 * accepts SST_FORMAT_VERSION_MIN .. SST_FORMAT_VERSION; a build that reads only 1 refuses a
 * version 2 table in its footer rather than misreading its blocks. */
#define SST_FORMAT_VERSION     2u
#define SST_FORMAT_VERSION_MIN 1u

#define SST_FOOTER_SIZE    72u
/* Footer field offsets. */
#define SST_FOOTER_INDEX   0u
#define SST_FOOTER_FILTER  16u
#define SST_FOOTER_PROPS   32u
#define SST_FOOTER_NUMBER  48u
#define SST_FOOTER_VERSION 56u
#define SST_FOOTER_CRC     60u
#define SST_FOOTER_MAGIC   64u

/* type u8 + masked crc32c u32 after every block's contents. */
#define SST_TRAILER_SIZE 5u

/* Compressed form kept only if it is at most raw - raw/8 (saves 12.5% or more). */
#define SST_MIN_SAVING_SHIFT 3

/* Entry types in tags (ikey_entry.type plus the TTL flag folded in). */
enum sst_entry_type {
    SST_TYPE_DEL = 0,
    SST_TYPE_PUT = 1,
    SST_TYPE_PUT_TTL = 2,
};
#define SST_TAG_SIZE 8u

/* Largest key and value a table holds: the largest shale_options allows (65536-byte keys,
 * 256 MiB values). */
#define SST_MAX_KEY_BYTES   65536u
#define SST_MAX_VALUE_BYTES (256u << 20)
/* Largest raw block a reader accepts, checked before anything is allocated: a block is cut once
 * it reaches block_bytes (at most 1 MiB), so it holds at most 1 MiB of entries plus one more
 * entry of the largest size; 512 MiB bounds that with room to spare. */
#define SST_MAX_BLOCK_BYTES (512u << 20)

/* Index blocks: every key whole (see above). */
#define SST_INDEX_RESTART_INTERVAL 1u

/* Data block hash index (see "Hash index" above). */
#define SST_BLOCK_HASH_FLAG         (1u << 31)
#define SST_BLOCK_HASH_MAX_RESTARTS 253u
#define SST_BLOCK_HASH_EMPTY        0xFFu
#define SST_BLOCK_HASH_MAX_BUCKETS  65535u

/* Seed of hash_bytes for filter keys. Fixed forever: filters store its results. */
#define SST_BLOOM_SEED 0x5368616c65ull /* "Shale" */

/* Properties block fields, in stored order. Never renumber; append only. */
enum sst_prop_field {
    SST_PROP_ENTRIES = 0,
    SST_PROP_DELETIONS,
    SST_PROP_TTL_ENTRIES,
    SST_PROP_MIN_SEQ,
    SST_PROP_MAX_SEQ,
    SST_PROP_RAW_KEY_BYTES,
    SST_PROP_RAW_VALUE_BYTES,
    SST_PROP_DATA_BYTES,
    SST_PROP_INDEX_BYTES,
    SST_PROP_FILTER_BYTES,
    SST_PROP_DATA_BLOCKS,
    SST_PROP_FILE_SIZE,
    SST_PROP_CREATED_AT_MS,
    SST_PROP_COMPRESSION,
    SST_PROP_SMALLEST_SEQ,
    SST_PROP_LARGEST_SEQ,
    SST_PROP_COUNT
};
/* A field count above this is damage, not a newer writer. */
#define SST_PROP_MAX_FIELDS 1024u

/* A block handle: where a block's contents start and how long they are (trailer excluded). */
typedef struct sst_handle {
    uint64_t offset;
    uint64_t size;
} sst_handle;

/* Longest encoded handle: two varint64s. */
#define SST_MAX_HANDLE_BYTES 20u

#endif
