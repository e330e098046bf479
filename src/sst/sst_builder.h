/*
 * sst_builder: writes one sorted table file (format: sst_format.h) from entries added in strictly
 * increasing internal order (base/ikey.h).
 *
 * Durability: sst_builder_finish writes the filter, index, properties and footer, fdatasyncs the
 * file and closes it. It does NOT fsync the directory: the caller (flush, compaction) fsyncs the
 * directory once for all its outputs before the manifest records them.
 * On any failure the builder is broken (every later add fails with the same error); the caller
 * calls sst_builder_abandon, which closes and removes the partial file.
 * Memory: the builder holds the current data block, the index block and the filter's key hashes
 * (8 bytes per distinct user key) until finish; nothing else grows with the table.
 * Threads: one builder is used by one thread.
 */
#ifndef SHALE_SST_SST_BUILDER_H
#define SHALE_SST_SST_BUILDER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"
#include "base/ikey.h"
#include "env/env.h"

typedef struct sst_builder_options {
    uint32_t block_bytes;        /* target uncompressed data block size; 0 = 4096; 256 .. 1 MiB */
    uint32_t restart_interval;   /* keys between restart points; 0 = 4; 1 .. 1024 */
    uint32_t bloom_bits_per_key; /* 0 = 10; 1 .. 32 */
    int compression;             /* enum compress_type; the builder's default is LZ4 only
                                    through sst_builder_default_options() */
    int compression_level;       /* zstd level; 0 = library default */
    bool no_data_block_hash;     /* false (the default, so a zeroed struct has it): data blocks
                                    get a hash index for point lookups (sst_format.h) and the
                                    table format version 2; true: no hash index, version 1,
                                    which builds before the hash index also read */
} sst_builder_options;

/* Defaults: 4096-byte blocks, restarts every 4 keys, 10 bloom bits per key, LZ4, data block
 * hash index. */
sst_builder_options sst_builder_default_options(void);

/* What a finished table holds; also stored in its properties block. */
typedef struct sst_props {
    uint64_t entries;     /* every version, tombstones included */
    uint64_t deletions;   /* of which tombstones */
    uint64_t ttl_entries; /* of which PUTs with a deadline */
    uint64_t min_seq, max_seq;
    uint64_t raw_key_bytes, raw_value_bytes; /* sum of user key / value lengths */
    uint64_t data_bytes;                     /* data blocks on disk, trailers included */
    uint64_t index_bytes, filter_bytes;
    uint64_t data_blocks;
    uint64_t file_size;
    uint64_t created_at_ms;
    uint32_t compression; /* enum compress_type of the data blocks */
    /* The first and last internal keys (user key and seq). Owned by the props: sst_props_free. */
    shale_buf smallest_key, largest_key;
    uint64_t smallest_seq, largest_seq;
} sst_props;

void sst_props_free(sst_props *p);

typedef struct sst_builder sst_builder;

/* Creates `path` (which must not exist; SHALE_INVALID / SHALE_IO otherwise). opts may be NULL
 * (the defaults). file_number is
 * recorded in the footer so a renamed or misplaced file is detected by the reader. */
shale_code sst_builder_new(const shale_env *env, const char *path, uint64_t file_number,
                           const sst_builder_options *opts, sst_builder **out,
                           shale_error *err) SHALE_MUST_USE;
/* Appends one entry (the bytes are copied). SHALE_INVALID if it is not strictly after the previous
 * entry in internal order, if the key is empty or longer than 65536 bytes, the value longer than
 * 256 MiB, the seq above IKEY_MAX_SEQ, the type unknown, or a DEL carries a value or an expiry;
 * SHALE_IO. */
shale_code sst_builder_add(sst_builder *b, const ikey_entry *e, shale_error *err) SHALE_MUST_USE;
/* Bytes the file will have if finished now (written + buffered; a close estimate). */
uint64_t sst_builder_file_size(const sst_builder *b);
uint64_t sst_builder_entries(const sst_builder *b);
/* Finishes, syncs and closes the file and frees the builder (also on failure, in which case the
 * partial file is removed). On success fills *props (may be NULL). A builder with no entries
 * fails with SHALE_INVALID (and removes its file). */
shale_code sst_builder_finish(sst_builder *b, sst_props *props, shale_error *err) SHALE_MUST_USE;
/* Closes and removes the partial file and frees the builder. Accepts NULL. */
void sst_builder_abandon(sst_builder *b);

#endif
