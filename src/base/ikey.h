/*
 * ikey: the engine's internal entry, shared by the memtable, sorted tables, iterators and
 * compaction. An entry is one version of one user key:
 *   (key, seq, type, expire_at_ms, value)
 * Internal order: user key ascending (bytewise), then seq DESCENDING, so the newest version of a
 * key comes first. Two entries never share (key, seq).
 * Types are stored on disk (log batches, table tags): never renumber. A DEL has an empty value;
 * a PUT with expire_at_ms 0 never expires.
 * Sequence numbers are 56 bits, so (seq << 8 | type) fits one u64 tag, as in LevelDB.
 * Ownership: an ikey_entry only borrows its slices; who owns the bytes is said by whoever
 * fills it (the memtable's arena, an iterator's current block, a caller's buffer).
 */
#ifndef SHALE_BASE_IKEY_H
#define SHALE_BASE_IKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/slice.h"

enum ikey_type {
    IKEY_DEL = 0,
    IKEY_PUT = 1,
};

#define IKEY_MAX_SEQ (((uint64_t)1 << 56) - 1)

typedef struct ikey_entry {
    shale_slice key;
    shale_slice value;
    uint64_t seq;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t type;          /* enum ikey_type */
} ikey_entry;

/* Internal order of (key a, seq sa) against (key b, seq sb): <0, 0, >0. */
static inline int ikey_cmp(shale_slice a, uint64_t sa, shale_slice b, uint64_t sb)
{
    int c = slice_cmp(a, b);
    if (c != 0)
        return c;
    return sa > sb ? -1 : (sa < sb ? 1 : 0);
}

/* True if the entry holds a value at time now_ms (a PUT not yet expired). */
static inline bool ikey_live(const ikey_entry *e, uint64_t now_ms)
{
    return e->type == IKEY_PUT && (e->expire_at_ms == 0 || e->expire_at_ms > now_ms);
}

#endif
