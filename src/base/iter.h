/*
 * iter: the engine's internal iterator interface, one vtable implemented by the memtable adapter,
 * table iterators, the level (concatenating) iterator and the merging iterator. It yields every
 * version of every key, tombstones included, in internal order (base/ikey.h); the database
 * iterator (src/lsm/db_iter.c) turns that into the user's view.
 *
 * Contract for every implementation:
 *   - A new iterator is not positioned (valid() is false) until a seek.
 *   - seek(key, seq) positions at the first entry >= (key, seq) in internal order; seq =
 *     IKEY_MAX_SEQ means "the newest version of key, or the next key".
 *   - next/prev REQUIRE valid(). prev from the first entry (or next from the last) leaves the
 *     iterator invalid.
 *   - entry() REQUIRES valid(); its slices stay valid until the iterator next moves or is
 *     destroyed.
 *   - On an error (a bad checksum, an I/O failure) the iterator becomes invalid and status()
 *     returns the error, naming the file and block, until the next seek resets it. An invalid
 *     iterator with status SHALE_OK is simply at the end.
 *   - destroy frees everything the iterator holds (pinned blocks, table references, children).
 * Threads: one iterator is used by one thread at a time.
 */
#ifndef SHALE_BASE_ITER_H
#define SHALE_BASE_ITER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/ikey.h"

typedef struct iter iter;

typedef struct iter_ops {
    bool (*valid)(const iter *it);
    void (*seek)(iter *it, shale_slice key, uint64_t seq);
    void (*seek_first)(iter *it);
    void (*seek_last)(iter *it);
    void (*next)(iter *it);
    void (*prev)(iter *it);
    void (*entry)(const iter *it, ikey_entry *out);
    shale_code (*status)(const iter *it, shale_error *err);
    void (*destroy)(iter *it);
} iter_ops;

/* Implementations embed this as their first member. */
struct iter {
    const iter_ops *ops;
};

static inline bool iter_valid(const iter *it)
{
    return it->ops->valid(it);
}
static inline void iter_seek(iter *it, shale_slice key, uint64_t seq)
{
    it->ops->seek(it, key, seq);
}
static inline void iter_seek_first(iter *it)
{
    it->ops->seek_first(it);
}
static inline void iter_seek_last(iter *it)
{
    it->ops->seek_last(it);
}
static inline void iter_next(iter *it)
{
    it->ops->next(it);
}
static inline void iter_prev(iter *it)
{
    it->ops->prev(it);
}
static inline void iter_entry(const iter *it, ikey_entry *out)
{
    it->ops->entry(it, out);
}
static inline shale_code iter_status(const iter *it, shale_error *err)
{
    return it->ops->status(it, err);
}
/* Accepts NULL. */
static inline void iter_destroy(iter *it)
{
    if (it)
        it->ops->destroy(it);
}

/* An iterator with no entries whose status is `code`/`err` (SHALE_OK: simply empty); for a
 * constructor that failed but must hand back something. NULL when out of memory. */
iter *iter_new_error(shale_code code, const shale_error *err);

#endif
