/*
 * sst_reader: reads one sorted table (format: sst_format.h).
 *
 * Opening reads and checks the footer (magic, version, file number, checksum) and the properties
 * block, nothing else: index, filter and data blocks are read on demand through the block cache
 * (base/cache.h) when one is given, so what a table costs in memory is bounded by the cache.
 * The index and filter, once a use has brought them into the cache, stay pinned there (charged
 * to it, within half the cache's capacity for all readers: cache_hold_try) until the reader
 * closes, so later gets take no cache lock for them. Without a cache, index
 * and filter are read once at the first use and kept by the reader, and data blocks are read per
 * access.
 *
 * Every block is checked against its CRC32C when read from the file (not on a cache hit). Every
 * error names the file and the block: "000012.sst: data block @4096+3900: bad checksum",
 * "000012.sst: footer: bad magic". Damaged input never crashes: lengths, offsets, restart arrays
 * and varints are bounds-checked before use; the result is SHALE_CORRUPTION.
 *
 * Threads: a reader is shared by any number of threads (gets and iterators) without locks; the
 * cache synchronises itself. sst_reader_close REQUIRES that no get runs and no iterator from it
 * is alive (the table cache guarantees it with references).
 */
#ifndef SHALE_SST_SST_READER_H
#define SHALE_SST_SST_READER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"
#include "base/cache.h"
#include "base/ikey.h"
#include "base/iter.h"
#include "env/env.h"
#include "sst/sst_builder.h"
#include "sst/sst_format.h"

typedef struct sst_reader sst_reader;

/* Opens `path`; `file_number` must match the footer's (SHALE_CORRUPTION otherwise). file_size 0
 * means "ask the file"; a non-zero one must equal the file's size (SHALE_CORRUPTION otherwise).
 * block_cache may be NULL. SHALE_NOT_FOUND if the file is missing. */
shale_code sst_reader_open(const shale_env *env, const char *path, uint64_t file_number,
                           uint64_t file_size, cache *block_cache, sst_reader **out,
                           shale_error *err) SHALE_MUST_USE;
/* Accepts NULL. */
void sst_reader_close(sst_reader *r);

const sst_props *sst_reader_props(const sst_reader *r);
uint64_t sst_reader_file_number(const sst_reader *r);

/* Finds the newest version of `key` with seq <= snapshot_seq. On SHALE_OK, *found says whether
 * there is one; if so *out is filled (type, seq, expire_at_ms) and out->key / out->value point
 * into `scratch` (overwritten; the caller owns it). The bloom filter is consulted first; a
 * filter that says "absent" costs no data block read. In the one data block the index points
 * to, the block's hash index (format version 2) takes the get straight to the restart run of
 * the key, with the same hash as the filter; blocks without one are binary-searched. stats
 * (may be NULL) counts filter checks. */
typedef struct sst_get_stats {
    uint64_t filter_checked, filter_negative;
} sst_get_stats;
shale_code sst_reader_get(sst_reader *r, shale_slice key, uint64_t snapshot_seq, bool *found,
                          ikey_entry *out, shale_buf *scratch, sst_get_stats *stats,
                          shale_error *err) SHALE_MUST_USE;

/* sst_reader_get with hash = sst_reader_key_hash(key), which the caller computed once for every
 * table it probes (the filter and the data block hash index both use it). */
shale_code sst_reader_get_hashed(sst_reader *r, shale_slice key, uint64_t hash,
                                 uint64_t snapshot_seq, bool *found, ikey_entry *out,
                                 shale_buf *scratch, sst_get_stats *stats,
                                 shale_error *err) SHALE_MUST_USE;
/* The hash sst_reader_get_hashed takes: bloom_hash (sst/bloom.h), the same for every table. */
uint64_t sst_reader_key_hash(shale_slice key);
/* Starts fetching the filter line a get of this hash reads first, when the filter is held in
 * memory (else nothing): a hint for a batch of gets. */
void sst_reader_prefetch(sst_reader *r, uint64_t hash);

/* True unless the filter proves `key` is absent (a filter read error also gives true, so the
 * caller's data read reports it). */
bool sst_reader_may_contain(sst_reader *r, shale_slice key);

/* A new iterator over every entry of the table (base/iter.h). It pins at most one data block at a
 * time plus the index. The reader must outlive it. NULL when out of memory. fill_cache false
 * reads blocks without inserting them into the cache (compaction inputs, checks). */
iter *sst_reader_iter(sst_reader *r, bool fill_cache);

/* Full verification for `shale check`: footer, properties, index, filter and every data block's
 * checksum, entries in strictly increasing internal order, counts matching the properties, and
 * each data block's hash index leading every user key of the block to its entries.
 * Returns SHALE_OK or the first damage found (SHALE_CORRUPTION naming the file and the block);
 * *blocks_checked gets how many blocks were verified. Uses no cache. */
shale_code sst_verify(const shale_env *env, const char *path, uint64_t file_number,
                      uint64_t *blocks_checked, shale_error *err) SHALE_MUST_USE;

/*
 * Salvage: a damaged table read block by block (`shale check --repair`, lsm/repair.c), where
 * damage to one data block costs that block only. A reader's iterator stops at the first damaged
 * block and sst_verify at the first damage; a salvage lists the index once and then loads any
 * data block on its own.
 *
 * sst_salvage_open reads the footer (magic, checksum, version, the index handle in bounds) and
 * the index block, and lists every data block the index names; the footer's file number, the
 * filter and the properties block are not read (a table is salvaged for its entries, whatever
 * else is damaged). SHALE_CORRUPTION (or SHALE_IO, SHALE_NOT_FOUND) from it means the table is
 * lost whole; the message names the file ("000012.sst: footer: bad magic"). SHALE_NOMEM.
 *
 * sst_salvage_load(s, i) reads data block i (0 .. sst_salvage_blocks - 1) in reusable buffers:
 * checksum, expansion, restart array, and every entry decoded and checked (a key of 1 ..
 * SST_MAX_KEY_BYTES bytes, a known type with a valid value, keys in strictly increasing
 * internal order), so a block is taken whole or not at all. SHALE_OK with *entries (may be
 * NULL) its entry count; SHALE_CORRUPTION or SHALE_IO naming the file and the block
 * ("000012.sst: data block @4096+3900: bad checksum"): that block is lost, and any other can
 * still be loaded; SHALE_NOMEM. sst_salvage_next then hands out the loaded block's entries in
 * order (false after the last, or when the last load failed); out's slices stay valid until the
 * next call on s. sst_salvage_block_at gives block i's handle and its index separator (an
 * internal key: user key + 8-byte tag; valid until the close), to describe a lost block by its
 * neighbours' separators. Uses no cache; one thread at a time per salvage.
 */
typedef struct sst_salvage sst_salvage;
shale_code sst_salvage_open(const shale_env *env, const char *path, uint64_t file_number,
                            sst_salvage **out, shale_error *err) SHALE_MUST_USE;
/* Accepts NULL. */
void sst_salvage_close(sst_salvage *s);
size_t sst_salvage_blocks(const sst_salvage *s);
void sst_salvage_block_at(const sst_salvage *s, size_t i, sst_handle *h, shale_slice *index_key);
shale_code sst_salvage_load(sst_salvage *s, size_t i, uint64_t *entries,
                            shale_error *err) SHALE_MUST_USE;
bool sst_salvage_next(sst_salvage *s, ikey_entry *out);

#endif
