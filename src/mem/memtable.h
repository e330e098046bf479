/*
 * memtable: the sorted in-memory buffer that takes every write (a skiplist in an arena).
 *
 * Order: user key ascending (bytewise), then sequence number descending, so a reader meets the
 * newest version of a key first. Each entry is (key, seq, type, expire_at_ms, value); a DEL entry
 * has an empty value, a PUT with expire_at_ms 0 never expires.
 *
 * Threads: one writer at a time (db.c's commit leader); any number of readers concurrently with
 * it, without locks: a node is fully built before it is published with a release store, and
 * readers follow links with acquire loads. Readers must hold a reference (memtable_ref) for as
 * long as they read; the last memtable_unref frees it.
 *
 * Memory: entries live in the memtable's arena and die with its last unref. Every slice returned
 * by memtable_get or an iterator borrows from that arena.
 */
#ifndef SHALE_MEM_MEMTABLE_H
#define SHALE_MEM_MEMTABLE_H

#include "shale.h"

#include <stdbool.h>
#include <stdint.h>

/* Entry types. Values are stored on disk (batch encoding, later tables): never renumber. */
enum memtable_type {
    MEMTABLE_DEL = 0,
    MEMTABLE_PUT = 1,
};

/* Sequence numbers are 56 bits: the tag packs (seq << 8 | type), as in LevelDB. */
#define MEMTABLE_MAX_SEQ (((uint64_t)1 << 56) - 1)

typedef struct memtable_entry {
    shale_slice key;
    shale_slice value;
    uint64_t seq;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t type;          /* enum memtable_type */
} memtable_entry;

typedef struct memtable memtable;

/* Returns a memtable with one reference, or NULL when out of memory. */
memtable *memtable_new(void);
void memtable_ref(memtable *m);
/* Accepts NULL. */
void memtable_unref(memtable *m);

/* Adds an entry; key/value are copied into the arena. If `prev` is non-NULL, *prev_found says
 * whether an older version of the key existed and *prev gets the newest such version (its slices
 * borrowed from the memtable) - found during the insert's own search, at no extra cost; db.c uses
 * it to keep the live-key count. REQUIRES: seq larger than every seq already added for this key.
 * SHALE_NOMEM if the arena cannot grow (nothing is added). Single writer. */
shale_code memtable_add(memtable *m, uint64_t seq, uint8_t type, shale_slice key,
                        shale_slice value, uint64_t expire_at_ms, bool *prev_found,
                        memtable_entry *prev, shale_error *err) SHALE_MUST_USE;

/* Finds the newest version of `key` with seq <= snapshot_seq. Returns true and fills *out (which
 * may be a DEL or an expired PUT: the caller decides visibility) or false if no such version. */
bool memtable_get(memtable *m, shale_slice key, uint64_t snapshot_seq, memtable_entry *out);

size_t memtable_memory_bytes(const memtable *m);
uint64_t memtable_entry_count(const memtable *m);

/* An iterator over all entries in internal order (every version, tombstones included). It holds
 * a reference on the memtable from init until destroy. Caller-provided storage. */
typedef struct memtable_iter {
    memtable *m;
    const void *node;
} memtable_iter;

void memtable_iter_init(memtable_iter *it, memtable *m);
void memtable_iter_destroy(memtable_iter *it);
bool memtable_iter_valid(const memtable_iter *it);
/* Positions at the first entry >= (key, seq) in internal order: the first entry whose key is
 * greater than `key`, or equal to it with a sequence number <= seq. seq = MEMTABLE_MAX_SEQ means
 * "the newest version of key, or the next key". */
void memtable_iter_seek(memtable_iter *it, shale_slice key, uint64_t seq);
void memtable_iter_seek_first(memtable_iter *it);
void memtable_iter_seek_last(memtable_iter *it);
void memtable_iter_next(memtable_iter *it);
/* Moves to the previous entry: O(log n), as the skiplist has no back links. */
void memtable_iter_prev(memtable_iter *it);
/* REQUIRES: valid. */
void memtable_iter_entry(const memtable_iter *it, memtable_entry *out);

#endif
