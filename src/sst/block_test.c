/*
 * block tests: the builder and iterator against a sorted array (every restart interval from 1
 * to larger than the block, keys longer than the inline key buffer), the restart-array checks
 * of block_parse, and damaged blocks (random bytes, mutated valid blocks) that must end in
 * SHALE_CORRUPTION or a clean end, never a crash or an out-of-bounds read (ASan build).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/coding.h"
#include "sst/block.h"
#include "sst/sst_format.h"
#include "testutil.h"

typedef struct tkey {
    uint8_t k[400];
    size_t ulen;
    uint64_t seq;
    uint8_t type;
    uint8_t v[300];
    size_t vlen;
} tkey;

static int tkey_cmp(const void *a, const void *b)
{
    const tkey *x = a, *y = b;
    size_t n = x->ulen < y->ulen ? x->ulen : y->ulen;
    int c = memcmp(x->k, y->k, n);
    if (c != 0) {
        return c;
    }
    if (x->ulen != y->ulen) {
        return x->ulen < y->ulen ? -1 : 1;
    }
    return x->seq > y->seq ? -1 : (x->seq < y->seq ? 1 : 0);
}

/* n distinct (user key, seq) entries in internal order; user keys share prefixes. */
static tkey *gen_keys(size_t n, size_t max_ulen, uint64_t seed)
{
    tkey *t = calloc(n, sizeof *t);
    tu_rng rng;
    cr_assert_not_null(t);
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        size_t ulen = 1 + tu_rng_below(&rng, max_ulen);
        for (size_t j = 0; j < ulen; j++) {
            t[i].k[j] = (uint8_t)("abc\xff"[tu_rng_below(&rng, 4)]);
        }
        t[i].ulen = ulen;
        t[i].seq = tu_rng_below(&rng, 1000) + 1;
        t[i].type = (uint8_t)tu_rng_below(&rng, 2);
        t[i].vlen = tu_rng_below(&rng, 4) == 0 ? 0 : tu_rng_below(&rng, sizeof t[i].v);
        for (size_t j = 0; j < t[i].vlen; j++) {
            t[i].v[j] = (uint8_t)tu_rng_next(&rng);
        }
    }
    qsort(t, n, sizeof *t, tkey_cmp);
    /* Drop duplicates of (user key, seq). */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m == 0 || tkey_cmp(&t[m - 1], &t[i]) != 0) {
            t[m++] = t[i];
        }
    }
    for (size_t i = m; i < n; i++) {
        t[i].ulen = 0;
    }
    return t;
}

static size_t count_keys(const tkey *t, size_t n)
{
    size_t m = 0;
    while (m < n && t[m].ulen > 0) {
        m++;
    }
    return m;
}

static void build(block_builder *b, const tkey *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t ik[408];
        memcpy(ik, t[i].k, t[i].ulen);
        coding_put_fixed64(ik + t[i].ulen, t[i].seq << 8 | t[i].type);
        cr_assert_eq(block_builder_add(b, ik, t[i].ulen + 8, t[i].v, t[i].vlen / 2,
                                       t[i].v + t[i].vlen / 2, t[i].vlen - t[i].vlen / 2, NULL),
                     SHALE_OK);
    }
    cr_assert_eq(block_builder_finish(b, NULL), SHALE_OK);
}

static void check_at(const block_iter *it, const tkey *t)
{
    cr_assert(block_iter_valid(it));
    cr_assert_eq(block_iter_ukey_len(it), t->ulen);
    cr_assert(memcmp(it->key, t->k, t->ulen) == 0);
    cr_assert_eq(block_iter_tag(it), t->seq << 8 | t->type);
    cr_assert_eq(it->val_len, t->vlen);
    cr_assert(t->vlen == 0 || memcmp(it->val, t->v, t->vlen) == 0);
}

static void check_block(const tkey *t, size_t n, uint32_t interval)
{
    block_builder bb;
    block b;
    block_iter it;

    block_builder_init(&bb, interval);
    build(&bb, t, n);
    cr_assert_null(block_parse(bb.buf.data, bb.buf.len, &b));
    cr_assert_eq(b.num_restarts, (n + interval - 1) / interval);

    block_iter_init(&it, true);
    block_iter_set(&it, &b);
    size_t i = 0;
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
        check_at(&it, &t[i++]);
    }
    cr_assert_eq(i, n);
    cr_assert_eq(it.status, SHALE_OK);
    for (block_iter_seek_last(&it); block_iter_valid(&it); block_iter_prev(&it)) {
        check_at(&it, &t[--i]);
    }
    cr_assert_eq(i, 0);
    cr_assert_eq(it.status, SHALE_OK);

    /* Seek to every entry, and just past it (seq - 1 is the next position in internal order). */
    for (size_t j = 0; j < n; j++) {
        block_iter_seek(&it, t[j].k, t[j].ulen, t[j].seq);
        check_at(&it, &t[j]);
        if (t[j].seq > 0) {
            block_iter_seek(&it, t[j].k, t[j].ulen, t[j].seq - 1);
            if (j + 1 < n) {
                check_at(&it, &t[j + 1]);
                block_iter_prev(&it);
                check_at(&it, &t[j]);
            } else {
                cr_assert_not(block_iter_valid(&it));
            }
        }
    }
    /* Before everything and after everything. */
    block_iter_seek(&it, "", 0, IKEY_MAX_SEQ);
    check_at(&it, &t[0]);
    block_iter_prev(&it);
    cr_assert_not(block_iter_valid(&it));
    uint8_t big[500];
    memset(big, 0xff, sizeof big);
    block_iter_seek(&it, big, sizeof big, 0);
    cr_assert_not(block_iter_valid(&it));
    cr_assert_eq(it.status, SHALE_OK);

    block_iter_destroy(&it);
    block_builder_destroy(&bb);
}

Test(block, round_trip_every_interval)
{
    static const uint32_t intervals[] = {1, 2, 3, 16, 100, 5000};
    for (size_t r = 0; r < sizeof intervals / sizeof intervals[0]; r++) {
        tkey *t = gen_keys(600, 12, 10 + r);
        check_block(t, count_keys(t, 600), intervals[r]);
        free(t);
    }
}

Test(block, long_keys_grow_the_key_buffer)
{
    tkey *t = gen_keys(300, 390, 7);
    check_block(t, count_keys(t, 300), 4);
    free(t);
}

Test(block, single_entry)
{
    tkey *t = gen_keys(1, 5, 3);
    check_block(t, 1, 16);
    free(t);
}

Test(block, builder_reset_reuses)
{
    block_builder bb;
    tkey *t = gen_keys(50, 8, 5);
    size_t n = count_keys(t, 50);
    block_builder_init(&bb, 4);
    build(&bb, t, n);
    block_builder_reset(&bb);
    cr_assert(block_builder_empty(&bb));
    cr_assert_eq(block_builder_size(&bb), 4);
    build(&bb, t, n);
    block b;
    cr_assert_null(block_parse(bb.buf.data, bb.buf.len, &b));
    block_builder_destroy(&bb);
    free(t);
}

Test(block, parse_checks_restart_array)
{
    uint8_t d[64];
    block b;
    memset(d, 0, sizeof d);

    cr_assert_not_null(block_parse(d, 3, &b)); /* shorter than the count */
    coding_put_fixed32(d + 60, 0);
    cr_assert_null(block_parse(d + 60, 4, &b)); /* empty block */
    cr_assert_eq(b.num_restarts, 0);
    cr_assert_not_null(block_parse(d, 64, &b)); /* entries but no restarts */
    coding_put_fixed32(d + 60, 100);            /* more restarts than bytes */
    cr_assert_not_null(block_parse(d, 64, &b));
    coding_put_fixed32(d + 60, 2);
    coding_put_fixed32(d + 52, 0);
    coding_put_fixed32(d + 56, 60); /* restart beyond the entries */
    cr_assert_not_null(block_parse(d, 64, &b));
    coding_put_fixed32(d + 56, 0); /* not increasing */
    cr_assert_not_null(block_parse(d, 64, &b));
    coding_put_fixed32(d + 52, 4); /* first is not 0 */
    coding_put_fixed32(d + 56, 8);
    cr_assert_not_null(block_parse(d, 64, &b));
    coding_put_fixed32(d + 52, 0);
    cr_assert_null(block_parse(d, 64, &b));
    cr_assert_eq(b.restarts, 52);
}

/* Walks a block every way; asserts only that nothing crashes and that an invalid iterator is
 * either at the end or reports corruption. */
static void exercise(const uint8_t *d, size_t n, tu_rng *rng)
{
    block b;
    block_iter it;
    if (block_parse(d, n, &b) != NULL) {
        return;
    }
    block_iter_init(&it, true);
    block_iter_set(&it, &b);
    int steps = 0;
    for (block_iter_seek_first(&it); block_iter_valid(&it) && steps < 2000; steps++) {
        cr_assert_geq(it.key_len, 8);
        block_iter_next(&it);
    }
    cr_assert(it.status == SHALE_OK || it.status == SHALE_CORRUPTION);
    steps = 0;
    for (block_iter_seek_last(&it); block_iter_valid(&it) && steps < 2000; steps++) {
        block_iter_prev(&it);
    }
    cr_assert(it.status == SHALE_OK || it.status == SHALE_CORRUPTION);
    for (int i = 0; i < 5; i++) {
        uint8_t k[4];
        for (int j = 0; j < 4; j++) {
            k[j] = (uint8_t)("abc\xff"[tu_rng_below(rng, 4)]);
        }
        block_iter_seek(&it, k, 1 + tu_rng_below(rng, 4), tu_rng_below(rng, 1000));
        if (block_iter_valid(&it)) {
            block_iter_next(&it);
            if (block_iter_valid(&it)) {
                block_iter_prev(&it);
            }
        }
        cr_assert(it.status == SHALE_OK || it.status == SHALE_CORRUPTION);
    }
    block_iter_destroy(&it);
}

Test(block, damaged_blocks_never_crash)
{
    tu_rng rng;
    tu_rng_seed(&rng, 1234);
    tkey *t = gen_keys(200, 60, 8);
    size_t n = count_keys(t, 200);
    block_builder bb;
    block_builder_init(&bb, 4);
    build(&bb, t, n);
    size_t len = bb.buf.len;
    int caught = 0;

    for (int round = 0; round < 3000; round++) {
        /* A heap copy of exactly the block's size, so any overread is an ASan error. */
        uint8_t *d = malloc(len);
        cr_assert_not_null(d);
        memcpy(d, bb.buf.data, len);
        int flips = 1 + (int)tu_rng_below(&rng, 4);
        for (int f = 0; f < flips; f++) {
            /* Mostly in the entries; sometimes in the restart array. */
            size_t at = tu_rng_below(&rng, 8) == 0 ? len - 1 - tu_rng_below(&rng, 40)
                                                   : tu_rng_below(&rng, len);
            d[at] = (uint8_t)tu_rng_next(&rng);
        }
        block b;
        if (block_parse(d, len, &b) == NULL) {
            block_iter it;
            block_iter_init(&it, true);
            block_iter_set(&it, &b);
            for (block_iter_seek_first(&it); block_iter_valid(&it);) {
                block_iter_next(&it);
            }
            caught += it.status == SHALE_CORRUPTION;
            block_iter_destroy(&it);
        } else {
            caught++;
        }
        exercise(d, len, &rng);
        free(d);
    }
    cr_assert_gt(caught, 500, "only %d of 3000 damaged blocks noticed", caught);

    for (int round = 0; round < 2000; round++) {
        size_t m = 4 + tu_rng_below(&rng, 300);
        uint8_t *d = malloc(m);
        cr_assert_not_null(d);
        for (size_t i = 0; i < m; i++) {
            d[i] = (uint8_t)tu_rng_next(&rng);
        }
        /* Plausible small restart counts, so parsing often succeeds. */
        coding_put_fixed32(d + m - 4, (uint32_t)tu_rng_below(&rng, 3));
        if (m >= 8 && tu_rng_below(&rng, 2)) {
            coding_put_fixed32(d + m - 8, 0);
        }
        exercise(d, m, &rng);
        free(d);
    }
    block_builder_destroy(&bb);
    free(t);
}

Test(block, restart_in_the_middle_of_an_entry_is_corruption)
{
    tkey *t = gen_keys(40, 10, 9);
    size_t n = count_keys(t, 40);
    block_builder bb;
    block b;
    block_iter it;
    block_builder_init(&bb, 8);
    build(&bb, t, n);
    uint8_t *d = bb.buf.data;
    size_t len = bb.buf.len;
    uint32_t num = coding_get_fixed32(d + len - 4);
    cr_assert_geq(num, 2);
    /* Move restart 1 one byte later: inside an entry. */
    size_t r1 = len - 4 - 4 * num + 4;
    coding_put_fixed32(d + r1, coding_get_fixed32(d + r1) + 1);
    cr_assert_null(block_parse(d, len, &b));
    block_iter_init(&it, true);
    block_iter_set(&it, &b);
    for (block_iter_seek_first(&it); block_iter_valid(&it); block_iter_next(&it)) {
    }
    cr_assert_eq(it.status, SHALE_CORRUPTION);
    /* A seek just past entry 8 meets the moved restart (in the binary search or the scan of
     * run 0): damage, not a wrong entry. */
    block_iter_seek(&it, t[8].k, t[8].ulen, 0);
    cr_assert_not(block_iter_valid(&it));
    cr_assert_eq(it.status, SHALE_CORRUPTION);
    block_iter_destroy(&it);
    block_builder_destroy(&bb);
    free(t);
}
