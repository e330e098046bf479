/*
 * libFuzzer target for raw table blocks in memory (src/sst/block.c) and bloom filters
 * (src/sst/bloom.c). Built and replayed like every target in tests/fuzz (README.md there).
 *
 * Input: a flag byte (bit 0: a data block, whose iterator also checks entry types and TTL
 * values), then the block's bytes, copied to an exact-size buffer. The target parses them as a
 * block (block_parse) and as a filter (bloom_parse), and traps unless:
 *   - every iterator ends valid or not with status SHALE_OK or SHALE_CORRUPTION (bad_offset
 *     inside the entries), and a valid iterator's key and value lie inside the block;
 *   - when the forward scan ends cleanly, the backward scan is its exact mirror;
 *   - when the block is also sorted (internal keys strictly increasing), block_iter_seek lands
 *     on the first entry >= the target, or is not valid with status OK past the last;
 *   - block_iter_seek_point keeps its contract (block.h) whenever the hash index is right for
 *     the block (every user key's bucket names a restart point at or before the run of the key's
 *     first entry; checked here), and without a hash index is block_iter_seek;
 *   - block_pindex_build succeeds only on a block that an index block iterator scans cleanly in
 *     strictly increasing order with every entry a restart point, and then
 *     block_iter_seek_pindex leaves the iterator exactly as block_iter_seek does (position, key,
 *     value, status) for every target;
 *   - a parsed filter answers as the layout in bloom.h says (a reference implementation here),
 *     and a filter built from the block's user keys (bloom_build) contains every one of them.
 * Targets: each entry's user key at several sequence numbers, neighbours of those keys, and
 * slices of the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "fuzz_util.h"
#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/sst_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENTRIES 4096
#define MAX_TARGETS 96

typedef struct ent {
    uint32_t cur, next, ridx;
    uint8_t *key;
    uint32_t klen;
    uint32_t voff, vlen;
} ent;

typedef struct scan {
    ent e[MAX_ENTRIES];
    size_t n;
    shale_code status;
    bool capped;
} scan;

static scan fwd, bwd;

static void scan_free(scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
    }
    s->n = 0;
}

/* The iterator's state is sane: valid means a key of >= 8 bytes and a value inside the
 * entries; not valid means cur at the end. */
static void check_iter(const block_iter *it, const block *b)
{
    FZ_CHECK(it->status == SHALE_OK || it->status == SHALE_CORRUPTION);
    if (it->status == SHALE_CORRUPTION) {
        FZ_CHECK(it->bad_offset <= b->restarts);
    }
    if (!block_iter_valid(it)) {
        FZ_CHECK(it->cur == b->restarts);
        return;
    }
    FZ_CHECK(it->key_len >= SST_TAG_SIZE && it->key_len <= it->key_cap);
    FZ_CHECK(it->val >= b->data + it->cur && it->val_len <= b->restarts);
    FZ_CHECK((size_t)(it->val - b->data) + it->val_len <= b->restarts);
    FZ_CHECK(it->next == (uint32_t)(it->val - b->data) + it->val_len && it->cur < it->next);
    if (it->data_block) {
        uint8_t type = it->key[it->key_len - SST_TAG_SIZE];
        FZ_CHECK(type <= SST_TYPE_PUT_TTL && (type != SST_TYPE_PUT_TTL || it->val_len >= 8));
    }
}

static void ent_add(scan *s, const block_iter *it, const block *b)
{
    if (s->n == MAX_ENTRIES) {
        s->capped = true;
        return;
    }
    ent *e = &s->e[s->n++];
    e->cur = it->cur;
    e->next = it->next;
    e->ridx = it->restart_index;
    e->klen = it->key_len;
    e->key = malloc(it->key_len);
    FZ_CHECK(e->key != NULL);
    memcpy(e->key, it->key, it->key_len);
    e->voff = (uint32_t)(it->val - b->data);
    e->vlen = it->val_len;
}

static bool ent_is(const ent *e, const block_iter *it, const block *b)
{
    return block_iter_valid(it) && it->cur == e->cur && it->next == e->next &&
           it->key_len == e->klen && memcmp(it->key, e->key, e->klen) == 0 &&
           it->val == b->data + e->voff && it->val_len == e->vlen;
}

/* Two iterators in the same state. */
static bool same_iter(const block_iter *a, const block_iter *b)
{
    if (block_iter_valid(a) != block_iter_valid(b) || a->status != b->status) {
        return false;
    }
    if (a->status == SHALE_CORRUPTION && a->bad_offset != b->bad_offset) {
        return false;
    }
    if (!block_iter_valid(a)) {
        return true;
    }
    return a->cur == b->cur && a->next == b->next && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0 && a->val == b->val &&
           a->val_len == b->val_len && a->restart_index == b->restart_index;
}

/* Whether every restart point of b is the start of an entry of the scan. */
static bool restarts_at_entries(const block *b, const scan *s)
{
    size_t j = 0;
    for (uint32_t i = 0; i < b->num_restarts; i++) {
        uint32_t r = block_restart(b, i);
        while (j < s->n && s->e[j].cur < r) {
            j++;
        }
        if (j == s->n || s->e[j].cur != r) {
            return false;
        }
    }
    return true;
}

typedef struct target {
    const uint8_t *ukey;
    size_t len;
    uint64_t seq;
} target;

/* Index of the first entry >= t in a sorted scan. */
static size_t lower_bound(const scan *s, const target *t)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (block_key_cmp(s->e[mid].key, s->e[mid].klen, t->ukey, t->len, t->seq) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool same_ukey(const ent *e, const void *ukey, size_t len)
{
    return e->klen - SST_TAG_SIZE == len && memcmp(e->key, ukey, len) == 0;
}

/* Whether the hash index leads every user key of the (clean, sorted) block to, or before, the
 * restart run of its first entry: what block_iter_seek_point needs to keep its contract. */
static bool hash_index_right(const block *b, const scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const ent *e = &s->e[i];
        if (i > 0 && same_ukey(&s->e[i - 1], e->key, e->klen - SST_TAG_SIZE)) {
            continue;
        }
        uint64_t h = bloom_hash(e->key, e->klen - SST_TAG_SIZE);
        uint8_t r = b->buckets[(uint32_t)(h >> 32) % b->num_buckets];
        if (r == SST_BLOCK_HASH_EMPTY || r > e->ridx) {
            return false;
        }
    }
    return true;
}

/* bloom.h's layout, written out from its description. */
static bool ref_may_contain(const bloom_filter *f, uint64_t hash)
{
    if (f->num_lines == 0) {
        return false;
    }
    uint64_t line = ((hash & 0xffffffffu) * (uint64_t)f->num_lines) >> 32;
    const uint8_t *l = f->lines + line * BLOOM_LINE_BYTES;
    uint32_t h = (uint32_t)(hash >> 32);
    for (uint32_t j = 0; j < f->num_probes; j++) {
        uint32_t bit = h >> 23;
        if ((l[bit / 8] & (1u << (bit % 8))) == 0) {
            return false;
        }
        h *= 0x9e3779b9u;
    }
    return true;
}

static void check_bloom(const uint8_t *blk, size_t n, const target *t, size_t nt)
{
    bloom_filter f;
    if (bloom_parse(blk, n, &f) != NULL) {
        return;
    }
    FZ_CHECK((uint64_t)f.num_lines * BLOOM_LINE_BYTES + BLOOM_META_BYTES == n);
    FZ_CHECK(f.num_probes >= 1 && f.lines == blk);
    uint64_t seed = fz_hash(blk, n);
    for (size_t i = 0; i < nt + 16; i++) {
        uint64_t h = i < nt ? bloom_hash(t[i].ukey, t[i].len) : fz_rnd(&seed);
        FZ_CHECK(bloom_may_contain(&f, h) == ref_may_contain(&f, h));
    }
}

/* A filter built from the scan's user keys holds all of them. */
static void check_bloom_build(const scan *s)
{
    if (s->n == 0) {
        return;
    }
    uint64_t *h = malloc(s->n * sizeof *h);
    FZ_CHECK(h != NULL);
    for (size_t i = 0; i < s->n; i++) {
        h[i] = bloom_hash(s->e[i].key, s->e[i].klen - SST_TAG_SIZE);
    }
    shale_buf out = {0};
    uint32_t bits = (uint32_t)(h[0] % 20) + 1;
    FZ_CHECK(bloom_build(h, s->n, bits, &out, NULL) == SHALE_OK);
    FZ_CHECK(out.len == bloom_filter_bytes(s->n, bits));
    bloom_filter f;
    FZ_CHECK(bloom_parse(out.data, out.len, &f) == NULL);
    for (size_t i = 0; i < s->n; i++) {
        FZ_CHECK(bloom_may_contain(&f, h[i]));
    }
    buf_free(&out);
    free(h);
}

/* Whether an index block's iterator (no entry type checks) scans b cleanly, in strictly
 * increasing order; *n gets the entries. */
static bool clean_and_sorted(const block *b, size_t *n)
{
    block_iter it;
    shale_buf prev = {0};
    bool sorted = true;
    block_iter_init(&it, false);
    block_iter_set(&it, b);
    *n = 0;
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
        size_t ul = it.key_len - SST_TAG_SIZE;
        if (prev.len > 0) {
            sorted = sorted &&
                     block_key_cmp(prev.data, prev.len, it.key, ul, block_iter_tag(&it) >> 8) < 0;
        }
        FZ_CHECK(buf_set(&prev, it.key, it.key_len, NULL) == SHALE_OK);
        (*n)++;
    }
    bool clean = it.status == SHALE_OK;
    buf_free(&prev);
    block_iter_destroy(&it);
    return clean && sorted;
}

static size_t make_targets(const uint8_t *blk, size_t n, const scan *s, target *t, size_t cap)
{
    size_t nt = 0;
    uint64_t seed = fz_hash(blk, n);
    size_t step = s->n / (cap / 8) + 1;
    for (size_t i = 0; i < s->n && nt + 5 <= cap * 3 / 4; i += step) {
        const ent *e = &s->e[i];
        size_t ul = e->klen - SST_TAG_SIZE;
        uint64_t seq = coding_get_fixed64(e->key + ul) >> 8;
        t[nt++] = (target){e->key, ul, seq};
        t[nt++] = (target){e->key, ul, IKEY_MAX_SEQ};
        t[nt++] = (target){e->key, ul, seq > 0 ? seq - 1 : 0};
        t[nt++] = (target){e->key, ul, seq + 1};
        if (ul > 0) {
            t[nt++] = (target){e->key, ul - 1, fz_rnd(&seed) % (seq + 2)};
        }
    }
    while (nt < cap && n > 0) {
        size_t off = (size_t)(fz_rnd(&seed) % n);
        size_t len = (size_t)(fz_rnd(&seed) % 20);
        if (len > n - off) {
            len = n - off;
        }
        t[nt++] = (target){blk + off, len, fz_rnd(&seed) % 3 ? IKEY_MAX_SEQ : fz_rnd(&seed)};
    }
    t[nt++] = (target){blk, 0, 0};
    return nt;
}

static void run(const uint8_t *blk, size_t n, bool data_block)
{
    block b;
    const char *why = block_parse(blk, n, &b);
    target t[MAX_TARGETS + 1];
    if (why != NULL) {
        FZ_CHECK(why[0] != '\0');
        check_bloom(blk, n, t, make_targets(blk, n, &fwd, t, 8));
        return;
    }
    FZ_CHECK(b.data == blk && b.restarts + 4 * (size_t)b.num_restarts <= n - 4);
    FZ_CHECK((b.num_buckets == 0) == (b.buckets == NULL));

    block_iter it, it2;
    block_iter_init(&it, data_block);
    block_iter_init(&it2, data_block);
    block_iter_set(&it, &b);
    block_iter_set(&it2, &b);
    FZ_CHECK(!block_iter_valid(&it));

    /* Forward, then backward. */
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
        check_iter(&it, &b);
        ent_add(&fwd, &it, &b);
        if (fwd.capped) {
            break;
        }
    }
    check_iter(&it, &b);
    fwd.status = it.status;
    for (block_iter_seek_last(&it); block_iter_valid(&it); block_iter_prev(&it)) {
        check_iter(&it, &b);
        ent_add(&bwd, &it, &b);
        if (bwd.capped) {
            break;
        }
    }
    check_iter(&it, &b);
    bwd.status = it.status;

    /* Clean: the forward scan ended without damage and met every restart point at the start of
     * an entry. The scan alone does not check the second part: restart points inside the last
     * entry are never crossed (corpus-crashes/block_fuzz/restart-inside-last-entry), and the
     * backward scan and seeks then read other entries than the forward scan. */
    bool clean = fwd.status == SHALE_OK && !fwd.capped && restarts_at_entries(&b, &fwd);
    bool sorted = clean;
    if (clean) {
        FZ_CHECK(bwd.status == SHALE_OK && bwd.n == fwd.n);
        for (size_t i = 0; i < fwd.n; i++) {
            const ent *a = &fwd.e[i], *z = &bwd.e[fwd.n - 1 - i];
            FZ_CHECK(a->cur == z->cur && a->klen == z->klen && a->voff == z->voff &&
                     a->vlen == z->vlen && memcmp(a->key, z->key, a->klen) == 0);
            if (i > 0) {
                const ent *p = &fwd.e[i - 1];
                size_t ul = a->klen - SST_TAG_SIZE;
                sorted = sorted && block_key_cmp(p->key, p->klen, a->key, ul,
                                                 coding_get_fixed64(a->key + ul) >> 8) < 0;
            }
        }
        FZ_CHECK(fwd.n == 0 || fwd.e[fwd.n - 1].next == b.restarts);
        FZ_CHECK((fwd.n == 0) == (b.num_restarts == 0));
    }

    size_t nt = make_targets(blk, n, &fwd, t, MAX_TARGETS);
    check_bloom(blk, n, t, nt);
    if (clean) {
        check_bloom_build(&fwd);
    }

    block_pindex *pi = NULL;
    const char *pwhy = block_pindex_build(&b, &pi);
    FZ_CHECK((pwhy == NULL) == (pi != NULL));
    if (pi != NULL) {
        /* The accelerator checks what an index block's iterator checks (not data entry types). */
        size_t n_plain = 0;
        FZ_CHECK(clean_and_sorted(&b, &n_plain) && n_plain == b.num_restarts && pi->n == n_plain);
        FZ_CHECK(block_pindex_bytes(pi) >= pi->n * sizeof(uint64_t));
    }
    bool hash_ok = sorted && b.num_buckets > 0 && hash_index_right(&b, &fwd);

    for (size_t i = 0; i < nt; i++) {
        const target *g = &t[i];
        block_iter_seek(&it, g->ukey, g->len, g->seq);
        check_iter(&it, &b);
        if (sorted) {
            size_t lb = lower_bound(&fwd, g);
            FZ_CHECK(it.status == SHALE_OK);
            FZ_CHECK(lb < fwd.n ? ent_is(&fwd.e[lb], &it, &b) : !block_iter_valid(&it));
            if (lb < fwd.n && i % 4 == 0) {
                /* Stepping from a seek agrees with the scan. */
                block_iter_next(&it);
                FZ_CHECK(lb + 1 < fwd.n ? ent_is(&fwd.e[lb + 1], &it, &b)
                                        : !block_iter_valid(&it) && it.status == SHALE_OK);
                block_iter_seek(&it, g->ukey, g->len, g->seq);
                block_iter_prev(&it);
                FZ_CHECK(lb > 0 ? ent_is(&fwd.e[lb - 1], &it, &b)
                                : !block_iter_valid(&it) && it.status == SHALE_OK);
                block_iter_seek(&it, g->ukey, g->len, g->seq);
            }
        }

        /* The accelerator lands exactly where the binary search does. */
        block_iter_seek_pindex(&it2, NULL, g->ukey, g->len, g->seq);
        FZ_CHECK(same_iter(&it, &it2));
        if (pi != NULL) {
            block_iter_set(&it2, &b);
            block_iter_seek_pindex(&it2, pi, g->ukey, g->len, g->seq);
            FZ_CHECK(same_iter(&it, &it2));
        }

        /* Point seeks. */
        uint64_t h = bloom_hash(g->ukey, g->len);
        block_iter_seek_point(&it2, g->ukey, g->len, g->seq, h);
        check_iter(&it2, &b);
        if (b.num_buckets == 0) {
            FZ_CHECK(same_iter(&it, &it2));
        } else if (hash_ok) {
            size_t lb = lower_bound(&fwd, g);
            FZ_CHECK(it2.status == SHALE_OK);
            if (lb < fwd.n && same_ukey(&fwd.e[lb], g->ukey, g->len)) {
                FZ_CHECK(ent_is(&fwd.e[lb], &it2, &b));
            } else if (block_iter_valid(&it2)) {
                FZ_CHECK(block_key_cmp(it2.key, it2.key_len, g->ukey, g->len, g->seq) >= 0);
            }
        }
    }
    block_pindex_free(pi);
    block_iter_destroy(&it);
    block_iter_destroy(&it2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    bool data_block = data[0] & 1;
    size_t n = size - 1;
    uint8_t *blk = malloc(n > 0 ? n : 1);
    FZ_CHECK(blk != NULL);
    if (n > 0) {
        memcpy(blk, data + 1, n);
    }
    fwd.n = bwd.n = 0;
    fwd.capped = bwd.capped = false;
    run(blk, n, data_block);
    scan_free(&fwd);
    scan_free(&bwd);
    free(blk);
    return 0;
}
