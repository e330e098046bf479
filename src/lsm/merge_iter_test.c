/*
 * Unit tests of the merging iterator and the memtable adapter (src/lsm/merge_iter.h) against a
 * model: random entries split over 0..8 children (vector-backed iterators defined here, plus a
 * memtable), walked forward, backward and by random walks of next/prev/seek/seek_first/seek_last
 * compared step by step with the sorted union. Children that fail at a given position check that
 * the first error stops the merge and a seek clears it. The level iterator, over real tables,
 * is tested in table_cache_test.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/iter.h"
#include "lsm/merge_iter.h"
#include "mem/memtable.h"
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

static void setup_make(setup *s, tu_rng *r, size_t n, size_t nchildren, bool with_mem)
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
    for (size_t i = 0; i < n; i++) {
        size_t c = tu_rng_below(r, live);
        s->parts[c][s->nparts[c]++] = s->all[i].e;
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
