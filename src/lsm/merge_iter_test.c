/*
 * Unit tests of the merging iterator and the memtable adapter (src/lsm/merge_iter.h) against a
 * model: random entries split over 0..8 children (vector-backed iterators defined here, plus a
 * memtable), walked forward, backward and by random walks of next/prev/seek/seek_first/seek_last
 * compared step by step with the sorted union. Children that fail at a given position check that
 * the first error stops the merge and a seek clears it. The level iterator, over real tables,
 * is tested in table_cache_test.c; here it is tested as a merge child (stepped directly by the
 * merge) and through merge_iter_step.
 * The merge's fast path (the top child compared with the runner-up only; a level child stepped
 * without its vtable) is covered by children dealt long runs of consecutive entries, direction
 * changes right after such a run, one user key with many seqs across children, and a child (a
 * vector, or a level over a damaged table) failing in the middle of its run.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cache.h"
#include "base/error.h"
#include "base/iter.h"
#include "env/env.h"
#include "lsm/merge_iter.h"
#include "lsm/table_cache.h"
#include "lsm/version.h"
#include "mem/memtable.h"
#include "sst/sst_builder.h"
#include "testutil.h"

/* ---- Model entries ---- */

typedef struct ment {
    char key[8];
    char val[24];
    ikey_entry e; /* slices into key/val above (fixed up once the array stops moving) */
} ment;

/* On the key arrays: the slices are fixed up only after sorting moves the entries. */
static int ment_cmp(const void *a, const void *b)
{
    const ment *x = a, *y = b;
    return ikey_cmp(slice_cstr(x->key), x->e.seq, slice_cstr(y->key), y->e.seq);
}

static void fix_slices(ment *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        m[i].e.key = (shale_slice){m[i].key, strlen(m[i].key)};
        m[i].e.value = (shale_slice){m[i].val, strlen(m[i].val)};
    }
}

/* Keys over {a, b} of length 1..4 (30 of them): many prefixes of one another, many versions. */
static void random_key(tu_rng *r, char *out)
{
    size_t len = 1 + tu_rng_below(r, 4);
    for (size_t i = 0; i < len; i++) {
        out[i] = tu_rng_below(r, 2) ? 'b' : 'a';
    }
    out[len] = '\0';
}

/* n entries with distinct seqs (a shuffled 1..n scaled, so gaps exist for seeks), sorted. */
static ment *random_entries(tu_rng *r, size_t n)
{
    ment *m = calloc(n ? n : 1, sizeof *m);
    uint64_t *seqs = malloc((n ? n : 1) * sizeof *seqs);

    cr_assert(m && seqs);
    for (size_t i = 0; i < n; i++) {
        seqs[i] = 3 * (i + 1);
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = tu_rng_below(r, i);
        uint64_t t = seqs[i - 1];
        seqs[i - 1] = seqs[j];
        seqs[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        random_key(r, m[i].key);
        m[i].e.seq = seqs[i];
        m[i].e.type = tu_rng_below(r, 4) == 0 ? IKEY_DEL : IKEY_PUT;
        m[i].e.expire_at_ms = tu_rng_below(r, 3) == 0 ? 1000 + i : 0;
        if (m[i].e.type == IKEY_PUT) {
            snprintf(m[i].val, sizeof m[i].val, "v%llu", (unsigned long long)seqs[i]);
        }
    }
    free(seqs);
    qsort(m, n, sizeof *m, ment_cmp);
    fix_slices(m, n);
    return m;
}

/* ---- A vector-backed iterator: sorted entries, optionally failing at one position ---- */

typedef struct vec_iter {
    iter base;
    const ikey_entry *v; /* borrowed, sorted */
    size_t n;
    size_t pos;     /* == n: invalid */
    size_t fail_at; /* landing here sets the error (SIZE_MAX: never) */
    bool fail_seek; /* every seek(key, seq) fails (a bad index block) */
    bool failed;
    int *destroyed; /* counts destroys when non-NULL */
} vec_iter;

static void vec_land(vec_iter *v, size_t pos)
{
    v->failed = false;
    v->pos = pos;
    if (pos != v->n && pos == v->fail_at) {
        v->failed = true;
        v->pos = v->n;
    }
}

static bool vec_valid(const iter *it)
{
    const vec_iter *v = (const vec_iter *)it;
    return v->pos < v->n;
}

static void vec_seek(iter *it, shale_slice key, uint64_t seq)
{
    vec_iter *v = (vec_iter *)it;
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ikey_cmp(v->v[mid].key, v->v[mid].seq, key, seq) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    vec_land(v, lo);
    if (v->fail_seek) {
        v->failed = true;
        v->pos = v->n;
    }
}

static void vec_seek_first(iter *it)
{
    vec_land((vec_iter *)it, 0);
}

static void vec_seek_last(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    vec_land(v, v->n ? v->n - 1 : 0);
}

static void vec_next(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    cr_assert(v->pos < v->n, "next on an invalid child");
    vec_land(v, v->pos + 1);
}

static void vec_prev(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    cr_assert(v->pos < v->n, "prev on an invalid child");
    vec_land(v, v->pos == 0 ? v->n : v->pos - 1);
}

static void vec_entry(const iter *it, ikey_entry *out)
{
    const vec_iter *v = (const vec_iter *)it;
    cr_assert(v->pos < v->n, "entry on an invalid child");
    *out = v->v[v->pos];
}

static shale_code vec_status(const iter *it, shale_error *err)
{
    const vec_iter *v = (const vec_iter *)it;
    if (v->failed) {
        return err_set(err, SHALE_CORRUPTION, 0, "vec: bad block @%zu", v->fail_at);
    }
    err_clear(err);
    return SHALE_OK;
}

static void vec_destroy(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (v->destroyed) {
        (*v->destroyed)++;
    }
    free(v);
}

static const iter_ops vec_ops = {vec_valid, vec_seek,  vec_seek_first, vec_seek_last, vec_next,
                                 vec_prev,  vec_entry, vec_status,     vec_destroy};

static iter *vec_new(const ikey_entry *v, size_t n, size_t fail_at, int *destroyed)
{
    vec_iter *it = calloc(1, sizeof *it);
    cr_assert_not_null(it);
    it->base.ops = &vec_ops;
    it->v = v;
    it->n = n;
    it->pos = n;
    it->fail_at = fail_at;
    it->destroyed = destroyed;
    return &it->base;
}

/* ---- A merge over random children with its model ---- */

typedef struct setup {
    ment *all; /* the model: sorted union */
    size_t n;
    ikey_entry *parts[9]; /* per child, sorted */
    size_t nparts[9];
    size_t nchildren;
    memtable *mem; /* non-NULL: the last child is a memtable */
    iter *it;
} setup;

/* Children get the model's entries dealt at random one by one (max_run 1) or in runs of 1 ..
 * max_run consecutive entries, so one child supplies many entries in a row. */
static void setup_make_runs(setup *s, tu_rng *r, size_t n, size_t nchildren, bool with_mem,
                            size_t max_run)
{
    memset(s, 0, sizeof *s);
    if (nchildren == 0) {
        n = 0; /* the union of nothing */
    }
    s->all = random_entries(r, n);
    s->n = n;
    s->nchildren = nchildren;
    for (size_t c = 0; c < nchildren; c++) {
        s->parts[c] = calloc(n ? n : 1, sizeof(ikey_entry));
        cr_assert_not_null(s->parts[c]);
    }
    if (with_mem && nchildren > 0) {
        s->mem = memtable_new();
        cr_assert_not_null(s->mem);
    }
    /* Entries are dealt at random, and some children stay empty; walking the model in order keeps
     * each part sorted. */
    size_t live = nchildren ? 1 + tu_rng_below(r, nchildren) : 0;
    for (size_t i = 0; i < n;) {
        size_t c = tu_rng_below(r, live);
        size_t run = max_run > 1 ? 1 + tu_rng_below(r, max_run) : 1;
        for (; run > 0 && i < n; run--, i++) {
            s->parts[c][s->nparts[c]++] = s->all[i].e;
        }
    }
    iter *kids[9];
    for (size_t c = 0; c < nchildren; c++) {
        if (s->mem && c == nchildren - 1) {
            /* Add this part to the memtable in increasing seq order. */
            ikey_entry *p = s->parts[c];
            size_t np = s->nparts[c];
            ikey_entry *byseq = malloc((np ? np : 1) * sizeof *byseq);
            cr_assert_not_null(byseq);
            memcpy(byseq, p, np * sizeof *p);
            for (size_t i = 1; i < np; i++) { /* insertion sort by seq: parts are small */
                ikey_entry t = byseq[i];
                size_t j = i;
                while (j > 0 && byseq[j - 1].seq > t.seq) {
                    byseq[j] = byseq[j - 1];
                    j--;
                }
                byseq[j] = t;
            }
            for (size_t i = 0; i < np; i++) {
                shale_error err;
                cr_assert_eq(memtable_add(s->mem, byseq[i].seq, byseq[i].type, byseq[i].key,
                                          byseq[i].value, byseq[i].expire_at_ms, NULL, NULL, &err),
                             SHALE_OK, "%s", err.msg);
            }
            free(byseq);
            kids[c] = mem_iter_new(s->mem);
        } else {
            kids[c] = vec_new(s->parts[c], s->nparts[c], SIZE_MAX, NULL);
        }
    }
    s->it = merge_iter_new(kids, nchildren);
    cr_assert_not_null(s->it);
}

static void setup_make(setup *s, tu_rng *r, size_t n, size_t nchildren, bool with_mem)
{
    setup_make_runs(s, r, n, nchildren, with_mem, 1);
}

static void setup_free(setup *s)
{
    iter_destroy(s->it);
    memtable_unref(s->mem);
    for (size_t c = 0; c < s->nchildren; c++) {
        free(s->parts[c]);
    }
    free(s->all);
}

static void expect_at(iter *it, const ment *all, size_t n, size_t pos, const char *what,
                      size_t step)
{
    shale_error err;
    if (pos >= n) {
        cr_assert(!iter_valid(it), "%s step %zu: valid, model at end", what, step);
        cr_assert_eq(iter_status(it, &err), SHALE_OK, "%s step %zu: %s", what, step, err.msg);
        return;
    }
    cr_assert(iter_valid(it), "%s step %zu: invalid, model at %zu/%zu", what, step, pos, n);
    ikey_entry e;
    iter_entry(it, &e);
    const ikey_entry *m = &all[pos].e;
    cr_assert(slice_eq(e.key, m->key) && e.seq == m->seq,
              "%s step %zu: got (%.*s,%llu) want (%s,%llu)", what, step, (int)e.key.len,
              (const char *)e.key.data, (unsigned long long)e.seq, all[pos].key,
              (unsigned long long)m->seq);
    cr_assert_eq(e.type, m->type);
    cr_assert_eq(e.expire_at_ms, m->expire_at_ms);
    cr_assert(slice_eq(e.value, m->value), "%s step %zu: value", what, step);
}

/* Lower bound of (key, seq) in the model. */
static size_t model_seek(const ment *all, size_t n, shale_slice key, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ikey_cmp(all[mid].e.key, all[mid].e.seq, key, seq) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void walk_both_ways(setup *s)
{
    size_t step = 0;
    iter_seek_first(s->it);
    for (size_t i = 0; i < s->n; i++) {
        expect_at(s->it, s->all, s->n, i, "forward", step++);
        iter_next(s->it);
    }
    expect_at(s->it, s->all, s->n, s->n, "forward end", step++);

    iter_seek_last(s->it);
    for (size_t i = s->n; i-- > 0;) {
        expect_at(s->it, s->all, s->n, i, "reverse", step++);
        iter_prev(s->it);
    }
    expect_at(s->it, s->all, s->n, s->n, "reverse end", step++);
}

static void random_walk(setup *s, tu_rng *r, size_t steps)
{
    size_t pos = s->n; /* unpositioned */
    char key[8];
    expect_at(s->it, s->all, s->n, pos, "new", 0);
    for (size_t step = 1; step <= steps; step++) {
        uint64_t op = tu_rng_below(r, 10);
        if (pos < s->n && op < 4) {
            iter_next(s->it);
            pos++;
        } else if (pos < s->n && op < 8) {
            iter_prev(s->it);
            pos = pos == 0 ? s->n : pos - 1;
        } else if (op == 8 || pos >= s->n) {
            uint64_t seq;
            switch (tu_rng_below(r, 4)) {
            case 0:
                seq = IKEY_MAX_SEQ;
                break;
            case 1:
                seq = 0;
                break;
            case 2: /* an existing seq: lands exactly on an entry when the key matches */
                seq = s->n ? s->all[tu_rng_below(r, s->n)].e.seq : 1;
                break;
            default:
                seq = tu_rng_below(r, 3 * s->n + 4);
                break;
            }
            if (s->n && tu_rng_below(r, 2)) {
                strcpy(key, s->all[tu_rng_below(r, s->n)].key);
            } else {
                random_key(r, key);
            }
            shale_slice k = {key, strlen(key)};
            if (tu_rng_below(r, 16) == 0) {
                k.len = 0; /* the empty key: before everything */
            }
            iter_seek(s->it, k, seq);
            pos = model_seek(s->all, s->n, k, seq);
        } else if (tu_rng_below(r, 2)) {
            iter_seek_first(s->it);
            pos = 0;
        } else {
            iter_seek_last(s->it);
            pos = s->n ? s->n - 1 : 0;
        }
        expect_at(s->it, s->all, s->n, pos, "walk", step);
    }
}

Test(merge_iter, random_children_equal_sorted_union)
{
    tu_rng r;
    tu_rng_seed(&r, 42);
    for (int round = 0; round < 300; round++) {
        setup s;
        size_t n = round < 20 ? (size_t)round : tu_rng_below(&r, 400);
        size_t nchildren = tu_rng_below(&r, 9);
        setup_make(&s, &r, n, nchildren, round % 3 == 0);
        walk_both_ways(&s);
        random_walk(&s, &r, 400);
        setup_free(&s);
    }
}

Test(merge_iter, many_children_long_walk)
{
    tu_rng r;
    tu_rng_seed(&r, 7);
    setup s;
    setup_make(&s, &r, 3000, 8, true);
    walk_both_ways(&s);
    random_walk(&s, &r, 20000);
    setup_free(&s);
}

Test(merge_iter, zero_one_and_null_children)
{
    int destroyed = 0;
    ment *m;
    tu_rng r;
    tu_rng_seed(&r, 1);
    m = random_entries(&r, 10);
    ikey_entry v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = m[i].e;
    }

    /* No children: an empty iterator with status OK. */
    iter *it = merge_iter_new(NULL, 0);
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    iter_seek_last(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    iter_destroy(it);

    /* One child: returned as is, no layer. */
    iter *one = vec_new(v, 10, SIZE_MAX, &destroyed);
    it = merge_iter_new(&one, 1);
    cr_assert_eq(it, one);
    iter_destroy(it);
    cr_assert_eq(destroyed, 1);

    /* A NULL child (its constructor ran out of memory): NULL, and the others are destroyed. */
    iter *kids[3] = {vec_new(v, 10, SIZE_MAX, &destroyed), NULL,
                     vec_new(v, 10, SIZE_MAX, &destroyed)};
    cr_assert_null(merge_iter_new(kids, 3));
    cr_assert_eq(destroyed, 3);
    free(m);
}

/* Children 0..2 over disjoint thirds interleaved; child `bad` fails at its position `at`. */
typedef struct fail_setup {
    ment *all;
    ikey_entry parts[3][64];
    size_t nparts[3];
    iter *it;
} fail_setup;

static void fail_make(fail_setup *f, size_t bad, size_t at, bool fail_seek)
{
    tu_rng r;
    tu_rng_seed(&r, 99);
    memset(f, 0, sizeof *f);
    f->all = random_entries(&r, 150);
    for (size_t i = 0; i < 150; i++) {
        f->parts[i % 3][f->nparts[i % 3]++] = f->all[i].e;
    }
    iter *kids[3];
    for (size_t c = 0; c < 3; c++) {
        kids[c] = vec_new(f->parts[c], f->nparts[c], c == bad ? at : SIZE_MAX, NULL);
        ((vec_iter *)kids[c])->fail_seek = c == bad && fail_seek;
    }
    f->it = merge_iter_new(kids, 3);
    cr_assert_not_null(f->it);
}

static void fail_free(fail_setup *f)
{
    iter_destroy(f->it);
    free(f->all);
}

static void expect_failed(iter *it)
{
    shale_error err;
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    cr_assert_eq(err.code, SHALE_CORRUPTION);
    cr_assert_str_eq(err.msg, "vec: bad block @20");
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);
}

/* Walks the whole merge forward from the first entry (or backward from the last), checking each
 * entry against f->all, until it stops; returns how many entries it passed. */
static size_t walk(fail_setup *f, bool forward)
{
    size_t passed = 0;

    for (forward ? iter_seek_first(f->it) : iter_seek_last(f->it); iter_valid(f->it);
         forward ? iter_next(f->it) : iter_prev(f->it)) {
        ikey_entry e;
        iter_entry(f->it, &e);
        cr_assert_eq(e.seq, f->all[forward ? passed : 149 - passed].e.seq);
        passed++;
    }
    return passed;
}

Test(merge_iter, child_error_stops_forward_walk)
{
    fail_setup f;
    /* Child 1's entry 20 is merged entry 61; child 1 steps onto it (and fails) when its entry
     * 19, merged entry 58, is consumed: the merge stops at once rather than when 61 is due. */
    fail_make(&f, 1, 20, false);
    cr_assert_eq(walk(&f, true), 59);
    expect_failed(f.it);

    /* A seek resets the error: positions before the bad one work again. */
    iter_seek(f.it, f.all[3].e.key, f.all[3].e.seq);
    cr_assert(iter_valid(f.it));
    cr_assert_eq(iter_status(f.it, NULL), SHALE_OK);
    ikey_entry e;
    iter_entry(f.it, &e);
    cr_assert_eq(e.seq, f.all[3].e.seq);

    /* Seeking right onto the bad position fails at once. */
    iter_seek(f.it, f.all[61].e.key, f.all[61].e.seq);
    expect_failed(f.it);
    fail_free(&f);
}

Test(merge_iter, child_error_stops_reverse_walk)
{
    fail_setup f;
    fail_make(&f, 1, 20, false);
    /* Entries 149..64: child 1 steps back onto 61 as its entry 21, merged 64, goes. */
    cr_assert_eq(walk(&f, false), 150 - 64);
    expect_failed(f.it);
    fail_free(&f);
}

/* With child 1's seeks failing: from one end (the first entry, or the last), 9 steps on (onto
 * merged entry 9, child 0's, or 140, child 2's), then one step back must report the error. */
static void turn_after_nine_steps(fail_setup *f, bool forward)
{
    fail_make(f, 1, 20, true);
    (forward ? iter_seek_first : iter_seek_last)(f->it);
    for (int i = 0; i < 9; i++) {
        (forward ? iter_next : iter_prev)(f->it);
    }
    cr_assert(iter_valid(f->it));
    (forward ? iter_prev : iter_next)(f->it);
    expect_failed(f->it);
}

Test(merge_iter, child_error_while_changing_direction)
{
    fail_setup f;
    /* Child 1's seeks fail (its walk never reaches position 20 here). Changing direction seeks
     * every other child, so the change reports the error. */
    turn_after_nine_steps(&f, true);
    iter_next(f.it); /* REQUIRES valid; must neither crash nor revive */
    iter_prev(f.it);
    cr_assert(!iter_valid(f.it));
    cr_assert_eq(iter_status(f.it, NULL), SHALE_CORRUPTION);
    fail_free(&f);

    turn_after_nine_steps(&f, false);
    /* seek_first resets the error (child 1 fails only seeks to a key). */
    iter_seek_first(f.it);
    cr_assert(iter_valid(f.it));
    cr_assert_eq(iter_status(f.it, NULL), SHALE_OK);
    iter_seek(f.it, f.all[5].e.key, f.all[5].e.seq);
    expect_failed(f.it);
    fail_free(&f);
}

Test(merge_iter, error_iterator)
{
    shale_error in, out;
    (void)err_set(&in, SHALE_IO, 5, "000007.sst: read @4096: Input/output error");
    iter *it = iter_new_error(SHALE_IO, &in);
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &out), SHALE_IO);
    cr_assert_eq(out.sys_errno, 5);
    cr_assert_str_eq(out.msg, "000007.sst: read @4096: Input/output error");
    iter_destroy(it);

    it = iter_new_error(SHALE_CORRUPTION, NULL);
    cr_assert_eq(iter_status(it, &out), SHALE_CORRUPTION);
    cr_assert_eq(out.code, SHALE_CORRUPTION);
    cr_assert(strlen(out.msg) > 0);
    iter_destroy(it);

    it = iter_new_error(SHALE_OK, NULL);
    iter_seek(it, SLICE_LIT("a"), IKEY_MAX_SEQ);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &out), SHALE_OK);
    cr_assert_eq(out.code, SHALE_OK);
    iter_destroy(it);
    iter_destroy(NULL);
}

Test(merge_iter, mem_iter_walks_a_memtable)
{
    memtable *m = memtable_new();
    shale_error err;
    cr_assert_not_null(m);
    /* key "a": seqs 5 (DEL) and 2; key "b": seq 3 (expiring). */
    cr_assert_eq(
        memtable_add(m, 2, IKEY_PUT, SLICE_LIT("a"), SLICE_LIT("old"), 0, NULL, NULL, &err),
        SHALE_OK);
    cr_assert_eq(memtable_add(m, 3, IKEY_PUT, SLICE_LIT("b"), SLICE_LIT("x"), 77, NULL, NULL, &err),
                 SHALE_OK);
    cr_assert_eq(memtable_add(m, 5, IKEY_DEL, SLICE_LIT("a"), SLICE_LIT(""), 0, NULL, NULL, &err),
                 SHALE_OK);
    iter *it = mem_iter_new(m);
    memtable_unref(m); /* the iterator holds its own reference */
    cr_assert_not_null(it);
    cr_assert(!iter_valid(it));

    ikey_entry e;
    iter_seek(it, SLICE_LIT("a"), 4);
    cr_assert(iter_valid(it));
    iter_entry(it, &e);
    cr_assert(e.seq == 2 && e.type == IKEY_PUT && slice_eq(e.value, SLICE_LIT("old")));
    iter_prev(it);
    iter_entry(it, &e);
    cr_assert(e.seq == 5 && e.type == IKEY_DEL);
    iter_prev(it);
    cr_assert(!iter_valid(it));
    iter_seek_last(it);
    iter_entry(it, &e);
    cr_assert(slice_eq(e.key, SLICE_LIT("b")) && e.expire_at_ms == 77);
    iter_next(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_OK);
    iter_destroy(it);

    it = mem_iter_new(NULL);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    iter_destroy(it);
}

/* ---- The fast path: long runs from one child ---- */

static void check_entry(const ikey_entry *e, const ment *m, const char *what, size_t step)
{
    cr_assert_not_null(e, "%s step %zu: NULL, want (%s,%llu)", what, step, m->key,
                       (unsigned long long)m->e.seq);
    cr_assert(slice_eq(e->key, m->e.key) && e->seq == m->e.seq,
              "%s step %zu: got (%.*s,%llu) want (%s,%llu)", what, step, (int)e->key.len,
              (const char *)e->key.data, (unsigned long long)e->seq, m->key,
              (unsigned long long)m->e.seq);
    cr_assert_eq(e->type, m->e.type);
    cr_assert_eq(e->expire_at_ms, m->e.expire_at_ms);
    cr_assert(slice_eq(e->value, m->e.value), "%s step %zu: value", what, step);
}

/* The same walks as walk_both_ways and random_walk's next/prev, through merge_iter_step and
 * merge_iter_current (which go around the vtable for merges and level iterators). */
static void step_walks(setup *s, tu_rng *r)
{
    ikey_entry scratch;
    const ikey_entry *e;

    iter_seek_first(s->it);
    e = merge_iter_current(s->it, &scratch);
    for (size_t i = 0; i < s->n; i++) {
        check_entry(e, &s->all[i], "step forward", i);
        e = merge_iter_step(s->it, true, &scratch);
    }
    cr_assert_null(e);
    cr_assert(!iter_valid(s->it));
    cr_assert_eq(iter_status(s->it, NULL), SHALE_OK);

    iter_seek_last(s->it);
    e = merge_iter_current(s->it, &scratch);
    for (size_t i = s->n; i-- > 0;) {
        check_entry(e, &s->all[i], "step reverse", i);
        e = merge_iter_step(s->it, false, &scratch);
    }
    cr_assert_null(e);
    cr_assert(!iter_valid(s->it));

    /* Random directions, with runs of steps each way. */
    if (s->n == 0) {
        return;
    }
    size_t pos = tu_rng_below(r, s->n);
    iter_seek(s->it, s->all[pos].e.key, s->all[pos].e.seq);
    e = merge_iter_current(s->it, &scratch);
    for (size_t step = 0; step < 300; step++) {
        check_entry(e, &s->all[pos], "step walk", step);
        bool fwd = tu_rng_below(r, 2);
        size_t k = 1 + tu_rng_below(r, 8);
        for (size_t j = 0; j < k; j++) {
            if (fwd ? pos + 1 == s->n : pos == 0) {
                break; /* stay valid: merge_iter_step REQUIRES it */
            }
            e = merge_iter_step(s->it, fwd, &scratch);
            pos = fwd ? pos + 1 : pos - 1;
            check_entry(e, &s->all[pos], "step walk", step);
        }
    }
}

Test(merge_iter, long_runs_from_one_child_match_model)
{
    tu_rng r;
    tu_rng_seed(&r, 7);
    for (int round = 0; round < 200; round++) {
        setup s;
        size_t n = tu_rng_below(&r, 500);
        size_t nchildren = 1 + tu_rng_below(&r, 8);
        size_t max_run = 2 + tu_rng_below(&r, 100);
        setup_make_runs(&s, &r, n, nchildren, round % 4 == 0, max_run);
        walk_both_ways(&s);
        random_walk(&s, &r, 300);
        step_walks(&s, &r);
        setup_free(&s);
    }
}

Test(merge_iter, direction_change_right_after_a_run)
{
    tu_rng r;
    tu_rng_seed(&r, 11);
    for (int round = 0; round < 6; round++) {
        setup s;
        setup_make_runs(&s, &r, 240, 2 + (size_t)round % 3, round == 5, 40);
        /* Forward k steps (mostly within one child's run), then back one, then on again. */
        for (size_t k = 1; k < s.n; k++) {
            iter_seek_first(s.it);
            for (size_t i = 0; i < k; i++) {
                iter_next(s.it);
            }
            expect_at(s.it, s.all, s.n, k, "forward", k);
            iter_prev(s.it);
            expect_at(s.it, s.all, s.n, k - 1, "turned back", k);
            iter_next(s.it);
            expect_at(s.it, s.all, s.n, k, "turned forward", k);
        }
        /* The mirror image from the end. */
        for (size_t k = 1; k < s.n; k++) {
            iter_seek_last(s.it);
            for (size_t i = 0; i < k; i++) {
                iter_prev(s.it);
            }
            expect_at(s.it, s.all, s.n, s.n - 1 - k, "reverse", k);
            iter_next(s.it);
            expect_at(s.it, s.all, s.n, s.n - k, "turned forward", k);
            iter_prev(s.it);
            expect_at(s.it, s.all, s.n, s.n - 1 - k, "turned back", k);
        }
        setup_free(&s);
    }
}

Test(merge_iter, one_key_many_seqs_across_children)
{
    tu_rng r;
    tu_rng_seed(&r, 13);
    for (int round = 0; round < 40; round++) {
        setup s;
        size_t n = 1 + tu_rng_below(&r, 200);
        /* Every entry gets the same user key ("ab"), so only the seqs order them. */
        ment *all = random_entries(&r, n);
        for (size_t i = 0; i < n; i++) {
            strcpy(all[i].key, "ab");
        }
        qsort(all, n, sizeof *all, ment_cmp);
        fix_slices(all, n);
        size_t nchildren = 2 + tu_rng_below(&r, 6);
        ikey_entry *parts[8];
        size_t nparts[8] = {0};
        iter *kids[8];
        for (size_t c = 0; c < nchildren; c++) {
            parts[c] = calloc(n, sizeof(ikey_entry));
            cr_assert_not_null(parts[c]);
        }
        size_t max_run = round % 2 ? 1 : 20;
        for (size_t i = 0; i < n;) {
            size_t c = tu_rng_below(&r, nchildren);
            for (size_t run = 1 + tu_rng_below(&r, max_run); run > 0 && i < n; run--, i++) {
                parts[c][nparts[c]++] = all[i].e;
            }
        }
        for (size_t c = 0; c < nchildren; c++) {
            kids[c] = vec_new(parts[c], nparts[c], SIZE_MAX, NULL);
        }
        memset(&s, 0, sizeof s);
        s.all = all;
        s.n = n;
        s.it = merge_iter_new(kids, nchildren);
        cr_assert_not_null(s.it);
        walk_both_ways(&s);
        random_walk(&s, &r, 300);
        step_walks(&s, &r);
        iter_destroy(s.it);
        free(all);
        for (size_t c = 0; c < nchildren; c++) {
            free(parts[c]);
        }
    }
}

/* Two children: child 0 holds merged entries [0, 50) and [100, 150), child 1 [50, 100) and
 * [150, 200): each supplies runs of 50. Child `bad` fails when it lands on its position `at`. */
typedef struct run_setup {
    ment *all;
    ikey_entry parts[2][100];
    size_t nparts[2];
    iter *it;
} run_setup;

static void run_make(run_setup *f, size_t bad, size_t at)
{
    tu_rng r;
    tu_rng_seed(&r, 5);
    memset(f, 0, sizeof *f);
    f->all = random_entries(&r, 200);
    for (size_t i = 0; i < 200; i++) {
        size_t c = (i / 50) % 2;
        f->parts[c][f->nparts[c]++] = f->all[i].e;
    }
    iter *kids[2];
    for (size_t c = 0; c < 2; c++) {
        kids[c] = vec_new(f->parts[c], f->nparts[c], c == bad ? at : SIZE_MAX, NULL);
    }
    f->it = merge_iter_new(kids, 2);
    cr_assert_not_null(f->it);
}

static void expect_failed_at(iter *it, size_t at)
{
    shale_error err;
    char want[64];
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    snprintf(want, sizeof want, "vec: bad block @%zu", at);
    cr_assert_str_eq(err.msg, want);
}

Test(merge_iter, child_fails_in_the_middle_of_its_run)
{
    run_setup f;
    ikey_entry scratch;

    /* Child 0's position 10 is merged entry 10, in its first run: the walk yields 0..9. */
    run_make(&f, 0, 10);
    size_t passed = 0;
    for (iter_seek_first(f.it); iter_valid(f.it); iter_next(f.it)) {
        expect_at(f.it, f.all, 200, passed, "forward", passed);
        passed++;
    }
    cr_assert_eq(passed, 10);
    expect_failed_at(f.it, 10);
    iter_next(f.it); /* REQUIRES valid: must neither crash nor revive */
    cr_assert(!iter_valid(f.it));

    /* The same through merge_iter_step. */
    iter_seek_first(f.it);
    const ikey_entry *e = merge_iter_current(f.it, &scratch);
    for (passed = 0; e != NULL; passed++) {
        check_entry(e, &f.all[passed], "step", passed);
        e = merge_iter_step(f.it, true, &scratch);
    }
    cr_assert_eq(passed, 10);
    expect_failed_at(f.it, 10);

    /* Backward from the end: child 0's position 10 is reached last (merged entry 10), after 189
     * entries. */
    passed = 0;
    for (iter_seek_last(f.it); iter_valid(f.it); iter_prev(f.it)) {
        expect_at(f.it, f.all, 200, 199 - passed, "reverse", passed);
        passed++;
    }
    cr_assert_eq(passed, 189);
    expect_failed_at(f.it, 10);

    /* A seek clears it: after the bad position, the rest walks to the end. */
    iter_seek(f.it, f.all[11].e.key, f.all[11].e.seq);
    for (passed = 11; iter_valid(f.it); iter_next(f.it)) {
        expect_at(f.it, f.all, 200, passed, "after seek", passed);
        passed++;
    }
    cr_assert_eq(passed, 200);
    cr_assert_eq(iter_status(f.it, NULL), SHALE_OK);
    iter_destroy(f.it);
    free(f.all);

    /* Child 1 (the runner-up during child 0's run) failing in its second run (position 70 is
     * merged entry 170): 170 entries, then the error. Turning right after the run of child 0
     * that precedes it (merged 100..149) works. */
    run_make(&f, 1, 70);
    passed = 0;
    for (iter_seek_first(f.it); iter_valid(f.it); iter_next(f.it)) {
        passed++;
    }
    cr_assert_eq(passed, 170);
    expect_failed_at(f.it, 70);
    iter_seek(f.it, f.all[149].e.key, f.all[149].e.seq);
    iter_prev(f.it);
    expect_at(f.it, f.all, 200, 148, "turned", 0);
    iter_next(f.it);
    iter_next(f.it);
    expect_at(f.it, f.all, 200, 150, "turned back", 0);
    iter_destroy(f.it);
    free(f.all);
}

/* ---- A level iterator as a merge child (real tables) ---- */

typedef struct lvl_fixture {
    char *dir;
    version_set *vs;
    version *v;
    table_cache *tc;
    ment *all; /* the model: the level's and the vector's entries, sorted */
    size_t n;
    ikey_entry *lvl_part, *vec_part;
    size_t nlvl, nvec;
    uint64_t number[4];
    size_t table_last[4]; /* index in lvl_part of each table's last entry */
    iter *it;             /* merge of the level (child 0) and the vector (child 1) */
} lvl_fixture;

/* 1600 entries, dealt in runs of up to 60 to the level (4 tables) and a vector. */
static void lvl_make(lvl_fixture *f)
{
    tu_rng r;
    shale_error err;
    version_edit edit;
    const size_t n = 1600, ntables = 4;

    memset(f, 0, sizeof *f);
    tu_rng_seed(&r, 23);
    f->dir = tu_tmpdir("merge_iter");
    f->n = n;
    f->all = calloc(n, sizeof *f->all);
    f->lvl_part = calloc(n, sizeof(ikey_entry));
    f->vec_part = calloc(n, sizeof(ikey_entry));
    cr_assert(f->all && f->lvl_part && f->vec_part);
    /* Distinct keys k00000.. (one version each) with seqs 1..n: tables of a level never share a
     * user key. */
    for (size_t i = 0; i < n; i++) {
        snprintf(f->all[i].key, sizeof f->all[i].key, "k%05zu", i);
        f->all[i].e.seq = 1 + (i * 7919) % n;
        f->all[i].e.type = tu_rng_below(&r, 5) == 0 ? IKEY_DEL : IKEY_PUT;
        if (f->all[i].e.type == IKEY_PUT) {
            snprintf(f->all[i].val, sizeof f->all[i].val, "v%zu", i);
        }
    }
    fix_slices(f->all, n);
    for (size_t i = 0; i < n;) {
        bool to_lvl = tu_rng_below(&r, 2);
        for (size_t run = 1 + tu_rng_below(&r, 60); run > 0 && i < n; run--, i++) {
            if (to_lvl) {
                f->lvl_part[f->nlvl++] = f->all[i].e;
            } else {
                f->vec_part[f->nvec++] = f->all[i].e;
            }
        }
    }
    version_options vo = {0};
    f->vs = version_set_new(env_posix(), f->dir, &vo);
    cr_assert_not_null(f->vs);
    cr_assert_eq(version_set_create(f->vs, &err), SHALE_OK, "%s", err.msg);
    version_edit_init(&edit);
    for (size_t t = 0; t < ntables; t++) {
        size_t lo = f->nlvl * t / ntables, hi = f->nlvl * (t + 1) / ntables;
        uint64_t number = version_set_new_file_number(f->vs);
        sst_builder_options o = sst_builder_default_options();
        sst_builder *b;
        sst_props p;
        char name[32];
        o.block_bytes = 256; /* many blocks: runs cross block boundaries */
        snprintf(name, sizeof name, "%06" PRIu64 ".sst", number);
        char *path = tu_path(f->dir, name);
        cr_assert_eq(sst_builder_new(env_posix(), path, number, &o, &b, &err), SHALE_OK, "%s",
                     err.msg);
        for (size_t i = lo; i < hi; i++) {
            cr_assert_eq(sst_builder_add(b, &f->lvl_part[i], &err), SHALE_OK, "%s", err.msg);
        }
        cr_assert_eq(sst_builder_finish(b, &p, &err), SHALE_OK, "%s", err.msg);
        free(path);
        f->number[t] = number;
        f->table_last[t] = hi - 1;
        cr_assert_eq(version_edit_add_file(&edit, 1, number, p.file_size, f->lvl_part[lo].key,
                                           f->lvl_part[lo].seq, f->lvl_part[hi - 1].key,
                                           f->lvl_part[hi - 1].seq, p.min_seq, p.max_seq, p.entries,
                                           p.deletions, &err),
                     SHALE_OK, "%s", err.msg);
        sst_props_free(&p);
    }
    edit.has_last_seq = true;
    edit.last_seq = n + 1;
    cr_assert_eq(version_set_apply(f->vs, &edit, &err), SHALE_OK, "%s", err.msg);
    version_edit_free(&edit);
    f->v = version_set_current(f->vs);
    f->tc = table_cache_new(env_posix(), f->dir, 16, NULL); /* no block cache: blocks checked */
    cr_assert_not_null(f->tc);
    iter *kids[2] = {level_iter_new(f->tc, f->v, 1, false),
                     vec_new(f->vec_part, f->nvec, SIZE_MAX, NULL)};
    f->it = merge_iter_new(kids, 2);
    cr_assert_not_null(f->it);
}

static void lvl_free(lvl_fixture *f)
{
    iter_destroy(f->it);
    table_cache_free(f->tc);
    version_unref(f->v);
    version_set_free(f->vs);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->all);
    free(f->lvl_part);
    free(f->vec_part);
}

Test(merge_iter, level_child_runs_turns_and_steps)
{
    lvl_fixture f;
    tu_rng r;
    lvl_make(&f);
    setup s = {.all = f.all, .n = f.n, .it = f.it};
    tu_rng_seed(&r, 3);
    walk_both_ways(&s);
    random_walk(&s, &r, 2000);
    step_walks(&s, &r);
    /* Turns right after each of the level's runs, at table ends too. */
    for (size_t k = 1; k + 1 < f.n; k += 1 + tu_rng_below(&r, 7)) {
        iter_seek(f.it, f.all[k].e.key, f.all[k].e.seq);
        iter_prev(f.it);
        expect_at(f.it, f.all, f.n, k - 1, "back", k);
        iter_next(f.it);
        iter_next(f.it);
        expect_at(f.it, f.all, f.n, k + 1, "on", k);
    }

    /* The level alone (what a merge of one child is) through merge_iter_step. */
    iter *lvl = level_iter_new(f.tc, f.v, 1, false);
    ikey_entry scratch;
    iter_seek_first(lvl);
    const ikey_entry *e = merge_iter_current(lvl, &scratch);
    size_t i = 0;
    for (; e != NULL; i++) {
        cr_assert(slice_eq(e->key, f.lvl_part[i].key) && e->seq == f.lvl_part[i].seq);
        e = merge_iter_step(lvl, true, &scratch);
    }
    cr_assert_eq(i, f.nlvl);
    iter_seek_last(lvl);
    e = merge_iter_current(lvl, &scratch);
    for (i = f.nlvl; e != NULL;) {
        i--;
        cr_assert(slice_eq(e->key, f.lvl_part[i].key) && e->seq == f.lvl_part[i].seq);
        e = merge_iter_step(lvl, false, &scratch);
    }
    cr_assert_eq(i, 0);
    cr_assert_eq(iter_status(lvl, NULL), SHALE_OK);
    iter_destroy(lvl);
    lvl_free(&f);
}

/* Index in the merged model of the level's entry j. */
static size_t merged_index(const lvl_fixture *f, size_t j)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->all[i].e.seq == f->lvl_part[j].seq) {
            return i;
        }
    }
    cr_assert_fail("entry not in the model");
    return 0;
}

Test(merge_iter, level_child_damaged_table_fails_mid_run)
{
    lvl_fixture f;
    shale_error err;
    char name[32];
    ikey_entry scratch;
    lvl_make(&f);
    /* A bit inside table 2's first data block. */
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", f.number[2]);
    char *path = tu_path(f.dir, name);
    cr_assert_eq(tu_flip_bit(path, 40, 3), 0);
    free(path);

    /* The merge yields every entry up to the level's last entry of table 1, then the level
     * steps onto the bad block and the merge fails (it does not skip to the vector's entries). */
    size_t want = merged_index(&f, f.table_last[1]) + 1;
    size_t passed = 0;
    for (iter_seek_first(f.it); iter_valid(f.it); iter_next(f.it)) {
        expect_at(f.it, f.all, f.n, passed, "forward", passed);
        passed++;
    }
    cr_assert_eq(passed, want);
    cr_assert_eq(iter_status(f.it, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, name) != NULL, "message '%s' names %s", err.msg, name);

    /* The same through merge_iter_step. */
    iter_seek_first(f.it);
    const ikey_entry *e = merge_iter_current(f.it, &scratch);
    for (passed = 0; e != NULL; passed++) {
        check_entry(e, &f.all[passed], "step", passed);
        e = merge_iter_step(f.it, true, &scratch);
    }
    cr_assert_eq(passed, want);
    cr_assert_eq(iter_status(f.it, NULL), SHALE_CORRUPTION);

    /* A seek past table 2 is fine again, to the end. */
    size_t from = merged_index(&f, f.table_last[2]) + 1;
    iter_seek(f.it, f.all[from].e.key, f.all[from].e.seq);
    for (passed = from; iter_valid(f.it); iter_next(f.it)) {
        expect_at(f.it, f.all, f.n, passed, "after seek", passed);
        passed++;
    }
    cr_assert_eq(passed, f.n);
    cr_assert_eq(iter_status(f.it, NULL), SHALE_OK);
    lvl_free(&f);
}

/* ---- The database iterator's skipping (db_iter.c) over these merges ---- */

#define DB_KEYS 48

typedef struct dbm {
    char key[DB_KEYS][160];
    size_t klen[DB_KEYS];
    int val[DB_KEYS]; /* current value id, 0 = absent */
} dbm;

/* Keys of lengths 1 .. 150 sharing long prefixes ("p" * len, then a digit), so key comparisons
 * meet every length class of the skip key's copy and compare (inline and out of line). */
static void dbm_keys(dbm *m)
{
    static const size_t lens[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 150};
    size_t n = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int d = 0; d < 3; d++) {
            memset(m->key[n], 'p', lens[i]);
            m->key[n][lens[i] - 1] = (char)('a' + d);
            m->klen[n] = lens[i];
            n++;
        }
    }
    cr_assert_eq(n, DB_KEYS);
    /* Sort bytewise (insertion sort; shorter keys first on a shared prefix). */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0; j--) {
            shale_slice a = {m->key[j - 1], m->klen[j - 1]}, b = {m->key[j], m->klen[j]};
            if (slice_cmp(a, b) <= 0) {
                break;
            }
            char t[160];
            size_t tl = m->klen[j];
            memcpy(t, m->key[j], sizeof t);
            memcpy(m->key[j], m->key[j - 1], sizeof t);
            memcpy(m->key[j - 1], t, sizeof t);
            m->klen[j] = m->klen[j - 1];
            m->klen[j - 1] = tl;
        }
    }
}

static void dbm_value(char *out, size_t cap, size_t k, int id)
{
    snprintf(out, cap, "value-%zu-%d", k, id);
}

/* Checks it's position against the model: on key index k (DB_KEYS: invalid). */
static void dbm_expect(shale_iter *it, const dbm *m, size_t k, const char *what)
{
    if (k >= DB_KEYS) {
        cr_assert(!shale_iter_valid(it), "%s: valid, model at end", what);
        cr_assert_eq(shale_iter_status(it, NULL), SHALE_OK);
        return;
    }
    cr_assert(shale_iter_valid(it), "%s: invalid, model at key %zu", what, k);
    shale_slice key = shale_iter_key(it), val = shale_iter_value(it);
    char want[64];
    dbm_value(want, sizeof want, k, m->val[k]);
    cr_assert(key.len == m->klen[k] && memcmp(key.data, m->key[k], key.len) == 0,
              "%s: key of length %zu, want key %zu (length %zu)", what, key.len, k, m->klen[k]);
    cr_assert(val.len == strlen(want) && memcmp(val.data, want, val.len) == 0, "%s: value", what);
}

static size_t dbm_next(const dbm *m, size_t k)
{
    for (k++; k < DB_KEYS && m->val[k] == 0; k++) {
    }
    return k;
}

static size_t dbm_prev(const dbm *m, size_t k)
{
    while (k-- > 0) {
        if (m->val[k] != 0) {
            return k;
        }
    }
    return DB_KEYS;
}

/* Forward and reverse scans and random next/prev alternations against the model. */
static void dbm_check(shale_db *db, const shale_snapshot *snap, const dbm *m, tu_rng *r)
{
    shale_read_opts ro = {.snapshot = snap};
    shale_iter *it;
    shale_error err;
    cr_assert_eq(shale_iter_new(db, &ro, &it, &err), SHALE_OK, "%s", err.msg);

    size_t k = dbm_next(m, SIZE_MAX);
    for (shale_iter_seek_first(it); k < DB_KEYS; k = dbm_next(m, k)) {
        dbm_expect(it, m, k, "forward");
        shale_iter_next(it);
    }
    dbm_expect(it, m, DB_KEYS, "forward end");
    k = dbm_prev(m, DB_KEYS);
    for (shale_iter_seek_last(it); k < DB_KEYS; k = dbm_prev(m, k)) {
        dbm_expect(it, m, k, "reverse");
        shale_iter_prev(it);
    }
    dbm_expect(it, m, DB_KEYS, "reverse end");

    shale_iter_seek_first(it);
    k = dbm_next(m, SIZE_MAX);
    for (int step = 0; step < 400 && k < DB_KEYS; step++) {
        dbm_expect(it, m, k, "walk");
        size_t to = tu_rng_below(r, 2) ? dbm_next(m, k) : dbm_prev(m, k);
        if (to >= DB_KEYS) {
            shale_iter_seek(it, (shale_slice){m->key[0], m->klen[0]});
            k = dbm_next(m, SIZE_MAX);
            continue;
        }
        if (to > k) {
            shale_iter_next(it);
        } else {
            shale_iter_prev(it);
        }
        k = to;
    }
    shale_iter_free(it);
}

Test(db_iter, skips_versions_of_keys_short_and_long)
{
    shale_options o = {.create_if_missing = true};
    shale_db *db;
    shale_error err;
    dbm m, at_snap;
    tu_rng r;
    char *dir = tu_tmpdir("db_iter");
    char *path = tu_path(dir, "db");
    char v[64];

    memset(&m, 0, sizeof m);
    dbm_keys(&m);
    tu_rng_seed(&r, 17);
    cr_assert_eq(shale_open(path, &o, &db, &err), SHALE_OK, "%s", err.msg);
    /* Rounds of overwrites and deletes, flushed between rounds, so a key's versions sit in
     * several tables and the memtable (one merge child each) as well as in one child. */
    shale_snapshot *snap = NULL;
    int id = 0;
    for (int round = 0; round < 6; round++) {
        for (int op = 0; op < 80; op++) {
            size_t k = tu_rng_below(&r, DB_KEYS);
            shale_slice key = {m.key[k], m.klen[k]};
            if (tu_rng_below(&r, 4) == 0) {
                cr_assert_eq(shale_delete(db, NULL, key, &err), SHALE_OK, "%s", err.msg);
                m.val[k] = 0;
            } else {
                m.val[k] = ++id;
                dbm_value(v, sizeof v, k, id);
                cr_assert_eq(shale_put(db, NULL, key, slice_cstr(v), &err), SHALE_OK, "%s",
                             err.msg);
            }
        }
        if (round == 2) {
            snap = shale_snapshot_get(db);
            cr_assert_not_null(snap);
            at_snap = m;
        }
        if (round % 2 == 0) {
            cr_assert_eq(shale_flush(db, &err), SHALE_OK, "%s", err.msg);
        }
        dbm_check(db, NULL, &m, &r);
    }
    dbm_check(db, snap, &at_snap, &r);
    shale_snapshot_release(db, snap);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}
