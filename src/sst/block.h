/*
 * block: the raw block format of data and index blocks (sst_format.h): a builder that
 * prefix-compresses internal keys with restart points, and an iterator that decodes entries in
 * place.
 *
 * Keys are internal keys (user key | tag fixed64, tag = seq << 8 | type). The iterator never
 * allocates per entry: it keeps the current key in a buffer that only grows (inline for keys up
 * to BLOCK_ITER_INLINE_KEY bytes), and values point into the block.
 *
 * Hash index (data blocks, sst_format.h "Raw block"): a builder made with hash_index appends to
 * each block with at most SST_BLOCK_HASH_MAX_RESTARTS restart points a small table from user
 * key hash to restart point, so a point lookup (block_iter_seek_point) probes one byte instead
 * of binary-searching the restart keys. Index blocks never have one.
 *
 * Search accelerator (block_pindex, index blocks): built in memory when an index block is loaded,
 * it answers block_iter_seek from 8 bytes per entry laid out as an implicit B+-tree of cache
 * lines, with a third of the cache misses and a quarter of the instructions of the binary
 * search over the block.
 *
 * Damage: block_parse checks the restart array and the hash index once (in bounds, increasing,
 * the first at 0; every bucket empty or naming a restart point), so later accesses need no
 * checks; every entry's varints and lengths are checked as it is decoded. A damaged entry makes the
 * iterator invalid with status SHALE_CORRUPTION and `bad_offset` telling where; the caller names
 * the file and block.
 *
 * Ownership: a block borrows its bytes (a cache entry, a reader's buffer); a block_iter borrows
 * its block and owns only its key buffer (block_iter_destroy). Threads: a block is immutable and
 * shared; a builder or iterator is used by one thread.
 */
#ifndef SHALE_SST_BLOCK_H
#define SHALE_SST_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"
#include "base/coding.h"
#include "base/slice.h"

/* ---- builder ------------------------------------------------------------------------------ */

typedef struct block_builder {
    shale_buf buf;      /* entries so far */
    shale_buf restarts; /* fixed32 offsets, appended to buf by finish */
    shale_buf last_key; /* previous internal key (for prefix compression) */
    shale_buf keys;     /* hash index: (hash, restart) per user key of the block (block.c) */
    uint32_t interval;
    uint32_t counter; /* entries since the last restart */
    uint64_t entries;
    bool hash_index; /* data blocks: add the hash index when the block allows it */
} block_builder;

/* hash_index: finish appends the hash index (data blocks; index blocks pass false). */
void block_builder_init(block_builder *b, uint32_t restart_interval, bool hash_index);
void block_builder_destroy(block_builder *b);
/* Empties the builder for the next block (keeps its memory). */
void block_builder_reset(block_builder *b);
/* Appends an entry: key is the internal key (user key ++ tag), the value the concatenation of
 * v1[0, n1) and v2[0, n2) (a TTL deadline and the value, without a copy). REQUIRES: key after
 * the previous one (the caller checks the order). */
shale_code block_builder_add(block_builder *b, const uint8_t *key, size_t key_len, const void *v1,
                             size_t n1, const void *v2, size_t n2, shale_error *err) SHALE_MUST_USE;
/* Size of the block if finished now, exactly (hash index included). */
size_t block_builder_size(const block_builder *b);
static inline bool block_builder_empty(const block_builder *b)
{
    return b->entries == 0;
}
/* Appends the restart array, the hash index if any and the footer; the block is then
 * b->buf.data[0, b->buf.len). */
shale_code block_builder_finish(block_builder *b, shale_error *err) SHALE_MUST_USE;

/* ---- parsed block ------------------------------------------------------------------------- */

typedef struct block {
    const uint8_t *data;
    uint32_t restarts;      /* offset of the restart array = end of the entries */
    uint32_t num_restarts;  /* >= 1 unless the block has no entries */
    const uint8_t *buckets; /* hash index (NULL when absent): restart point or EMPTY */
    uint32_t num_buckets;   /* 0 when absent */
} block;

/* Checks the restart array and hash index of data[0, n) and fills *out. Returns NULL, or what
 * is wrong. */
const char *block_parse(const uint8_t *data, size_t n, block *out);

static inline uint32_t block_restart(const block *b, uint32_t i)
{
    return coding_get_fixed32(b->data + b->restarts + 4 * (size_t)i);
}

/* ---- iterator ----------------------------------------------------------------------------- */

#define BLOCK_ITER_INLINE_KEY 48u

typedef struct block_iter {
    const uint8_t *data;
    uint32_t restarts; /* end of entries; cur == restarts means not valid */
    uint32_t num_restarts;
    uint32_t cur;           /* offset of the current entry */
    uint32_t next;          /* offset just after it */
    uint32_t restart_index; /* the restart run holding cur */
    uint32_t next_restart;  /* offset of restart restart_index + 1 (or restarts) */
    const uint8_t *buckets; /* the block's hash index (NULL when absent) */
    uint32_t num_buckets;
    bool data_block;     /* check entry types and TTL values (data blocks only) */
    shale_code status;   /* SHALE_OK, SHALE_CORRUPTION or SHALE_NOMEM */
    uint32_t bad_offset; /* where the damage is, when status is SHALE_CORRUPTION */
    uint8_t *key;        /* current internal key: inline_key or heap */
    uint32_t key_len;
    uint32_t key_cap;
    const uint8_t *val;
    uint32_t val_len;
    uint8_t inline_key[BLOCK_ITER_INLINE_KEY];
} block_iter;

/* A not-yet-attached iterator (valid() false). */
void block_iter_init(block_iter *it, bool data_block);
void block_iter_destroy(block_iter *it);
/* Attaches to b (not positioned; status cleared). */
void block_iter_set(block_iter *it, const block *b);
/* Detaches (not valid, status kept). */
static inline void block_iter_clear(block_iter *it)
{
    it->data = NULL;
    it->restarts = it->cur = it->next = 0;
    it->num_restarts = 0;
    it->buckets = NULL;
    it->num_buckets = 0;
}

static inline bool block_iter_valid(const block_iter *it)
{
    return it->cur < it->restarts;
}

void block_iter_seek_first(block_iter *it);
void block_iter_seek_last(block_iter *it);
/* First entry >= (ukey, seq) in internal order. */
void block_iter_seek(block_iter *it, const void *ukey, size_t ukey_len, uint64_t seq);
/* For point lookups only; hash is bloom_hash(ukey). Afterwards the iterator is either
 *   - not valid: status OK and the block holds no entry (ukey, s) with s <= seq, or damage
 *     (status set); or
 *   - at an entry >= (ukey, seq) in internal order, which is the first entry (ukey, s) with
 *     s <= seq whenever the block holds one.
 * So the caller checks the user key it lands on, and must not step from there: when ukey is
 * absent, the entry need not be the first >= (ukey, seq), and "not valid" need not mean that
 * every entry is smaller. Without a hash index this is block_iter_seek; with one, a bucket no
 * user key of the block hashes to answers at once, and otherwise the forward scan starts at the
 * bucket's restart point (or a later one, whose restart key is still below the target) instead
 * of after a binary search over the restart keys. */
void block_iter_seek_point(block_iter *it, const void *ukey, size_t ukey_len, uint64_t seq,
                           uint64_t hash);
void block_iter_next(block_iter *it);
void block_iter_prev(block_iter *it);

/* ---- search accelerator for blocks of whole keys ------------------------------------------ */

/* An in-memory helper for seeking in a block whose restart interval is 1 (index blocks): every
 * entry is a restart point, so a seek is a binary search over the restart keys, and each step
 * reads the restart array and then the key bytes at two far offsets (two cache misses per step
 * in a block of thousands of entries). The accelerator keeps, contiguously, 8 bytes per entry
 * that order the entries as their user keys do, so the search runs in one small array, and
 * only the entries those 8 bytes cannot tell apart are decoded and compared whole.
 *
 *   prefix  = c bytes the user keys mostly start with (block.c picks it: the common prefix of
 *             the first or second key and the last or second to last, whichever leaves the
 *             fewest ties);
 *   p[i]    = f(user key i), where f(U) is 0 if U is below every key starting with the prefix,
 *             UINT64_MAX if above them all, and otherwise U's bytes [c, c + 8) read big-endian,
 *             zero past U's end. f keeps bytewise order (U <= V gives f(U) <= f(V); proof in
 *             block.c), so p[] is non-decreasing and a seek compares whole keys only among the
 *             entries whose p equals the target's f (in index blocks, almost never more than
 *             one).
 *   summary = p[] is cut into nodes of 8 keys (one cache line: the allocation is 64-aligned and
 *             padded with UINT64_MAX); above it, levels of nodes holding the last key of each
 *             node below, up to a single node (an implicit B+-tree). The lower bound of a target
 *             reads one line per level, and the top levels, shared by every seek, stay cached.
 *             Measured (callgrind, 1M-key readrandom, index blocks of 1,400 to 8,000 entries):
 *             the lower bound takes 2.8 simulated L1 misses, a binary search over p[] 6.4; a
 *             whole index seek 5.5 misses and 340 instructions, block_iter_seek 15.7 and
 *             1,260. The levels add 1/7 to p[].
 *
 * block_pindex_build checks the whole block once (each restart point starts a whole entry
 * ending exactly at the next restart point or the restart array, internal keys strictly
 * increasing), so a seek through the accelerator lands exactly where block_iter_seek would.
 * It borrows nothing from the block: it is one allocation of about 9.2 bytes per entry plus a
 * header with the prefix (block_pindex_bytes), freed by block_pindex_free. Immutable once built,
 * shared by any number of threads. */
#define BLOCK_PINDEX_FANOUT    8u /* keys per node: one cache line */
#define BLOCK_PINDEX_MAX_DEPTH 9u /* summary levels for 8^10 entries (block_parse allows 2^27) */

/* The header of the accelerator's one allocation (64-aligned); read-only for users. */
typedef struct block_pindex {
    const uint64_t *p;                      /* n keys, padded to whole nodes, then the levels */
    uint32_t bytes;                         /* the allocation's size */
    uint32_t n;                             /* entries = restart points */
    uint32_t c;                             /* prefix length */
    uint32_t depth;                         /* summary levels above p[] */
    uint32_t level[BLOCK_PINDEX_MAX_DEPTH]; /* where level d starts, in keys from p */
    uint8_t prefix[];                       /* c bytes */
} block_pindex;

/* Builds the accelerator of b into *out (NULL on failure). Returns NULL, or what keeps the
 * block from having one: damage, a restart interval above 1, no entries, out of memory. A block
 * that fails is sought with block_iter_seek, which reports the damage, if any, when it meets
 * it. */
const char *block_pindex_build(const block *b, block_pindex **out);
/* Accepts NULL. */
void block_pindex_free(block_pindex *pi);
/* Bytes allocated by block_pindex_build (0 for NULL). */
size_t block_pindex_bytes(const block_pindex *pi);
/* block_iter_seek, with the same result and iterator state (position, status), through pi.
 * REQUIRES: it is attached to the block pi was built from, or pi is NULL (then this is
 * block_iter_seek). */
void block_iter_seek_pindex(block_iter *it, const block_pindex *pi, const void *ukey,
                            size_t ukey_len, uint64_t seq);

/* The current key's user key length, tag, seq and type. REQUIRES valid(). */
static inline uint32_t block_iter_ukey_len(const block_iter *it)
{
    return it->key_len - 8;
}
static inline uint64_t block_iter_tag(const block_iter *it)
{
    return coding_get_fixed64(it->key + it->key_len - 8);
}

/* Internal order of the internal key k[0, n) (n >= 8) against (ukey, seq): <0, 0, >0. */
static inline int block_key_cmp(const uint8_t *k, size_t n, const void *ukey, size_t ukey_len,
                                uint64_t seq)
{
    /* Inline with slice_cmp's word compare: a seek makes a dozen of these per block. */
    int c = slice_cmp(slice_make(k, n - 8), slice_make(ukey, ukey_len));
    if (c != 0) {
        return c;
    }
    uint64_t kseq = coding_get_fixed64(k + n - 8) >> 8;
    return kseq > seq ? -1 : (kseq < seq ? 1 : 0);
}

#endif
