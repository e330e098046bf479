/*
 * Unit tests of the table cache (src/lsm/table_cache.h) and of the level iterator
 * (src/lsm/merge_iter.h) over real tables (sst_builder) listed by a real version (version_set in a
 * temporary directory): walks, seeks across table boundaries and into the gaps between tables,
 * random walks against a model, the bound on open readers, pinned readers outliving eviction, and
 * damage (a missing table, a flipped bit, a truncated file, an I/O error) reaching the caller.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cache.h"
#include "base/error.h"
#include "base/iter.h"
#include "env/env.h"
#include "env/env_fault.h"
#include "lsm/merge_iter.h"
#include "lsm/table_cache.h"
#include "lsm/version.h"
#include "sst/sst_builder.h"
#include "sst/sst_reader.h"
#include "testutil.h"

#define MAX_TABLES 16

typedef struct tent {
    char key[12];
    char val[24];
    ikey_entry e; /* slices into key/val */
} tent;

typedef struct fixture {
    char *dir;
    env_fault *fault; /* wraps env_posix(); faults only when a test asks */
    const shale_env *env;
    version_set *vs;
    version *v;    /* current version, one reference */
    cache *blocks; /* may be NULL */
    table_cache *tc;
    tent *all; /* the model: every entry of every table, sorted */
    size_t n;
    size_t ntables;
    uint64_t number[MAX_TABLES], size[MAX_TABLES];
    size_t first[MAX_TABLES]; /* index in `all` of each table's first entry */
} fixture;

static void key_of(char *out, uint64_t id)
{
    snprintf(out, 12, "k%06" PRIu64, id);
}

/* A sorted stream: key ids advance by 1..4 (so some ids are absent), 1..3 versions each. */
static void make_entries(fixture *f, tu_rng *r, size_t n)
{
    uint64_t id = 10, seq = 1000000;
    f->all = calloc(n, sizeof *f->all);
    cr_assert_not_null(f->all);
    f->n = 0;
    while (f->n < n) {
        size_t versions = 1 + tu_rng_below(r, 3);
        for (size_t v = 0; v < versions && f->n < n; v++) {
            tent *t = &f->all[f->n++];
            key_of(t->key, id);
            t->e.seq = seq - v * 7; /* descending within the key */
            t->e.type = tu_rng_below(r, 5) == 0 ? IKEY_DEL : IKEY_PUT;
            t->e.expire_at_ms = t->e.type == IKEY_PUT && tu_rng_below(r, 4) == 0 ? 5000 + id : 0;
            if (t->e.type == IKEY_PUT) {
                snprintf(t->val, sizeof t->val, "val-%" PRIu64, t->e.seq);
            }
        }
        seq -= 100;
        id += 1 + tu_rng_below(r, 4);
    }
    for (size_t i = 0; i < f->n; i++) {
        f->all[i].e.key = slice_cstr(f->all[i].key);
        f->all[i].e.value = slice_cstr(f->all[i].val);
    }
}

static void build_table(fixture *f, size_t lo, size_t hi, uint64_t number, sst_props *props)
{
    char name[32];
    sst_builder_options o = sst_builder_default_options();
    sst_builder *b;
    shale_error err;

    o.block_bytes = 256; /* many blocks per table: walks cross block boundaries too */
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", number);
    char *path = tu_path(f->dir, name);
    cr_assert_eq(sst_builder_new(f->env, path, number, &o, &b, &err), SHALE_OK, "%s", err.msg);
    for (size_t i = lo; i < hi; i++) {
        cr_assert_eq(sst_builder_add(b, &f->all[i].e, &err), SHALE_OK, "%s", err.msg);
    }
    cr_assert_eq(sst_builder_finish(b, props, &err), SHALE_OK, "%s", err.msg);
    free(path);
}

/* n entries cut into ntables tables at random places between keys, all in level 1. */
static void fixture_make(fixture *f, uint64_t seed, size_t n, size_t ntables, size_t block_cache,
                         uint32_t max_open)
{
    tu_rng r;
    shale_error err;
    version_edit edit;

    memset(f, 0, sizeof *f);
    tu_rng_seed(&r, seed);
    f->dir = tu_tmpdir("table_cache");
    f->fault = env_fault_new(env_posix());
    cr_assert_not_null(f->fault);
    f->env = env_fault_env(f->fault);
    make_entries(f, &r, n);
    f->ntables = ntables;

    f->first[0] = 0;
    for (size_t t = 1; t < ntables; t++) {
        size_t lo = f->first[t - 1] + 1, span = (n - lo) / (ntables - t + 1);
        size_t cut = lo + span / 2 + tu_rng_below(&r, span / 2 + 1);
        /* Tables of a level never share a user key (version.c checks it): cut between keys. */
        while (strcmp(f->all[cut - 1].key, f->all[cut].key) == 0) {
            cut++;
        }
        f->first[t] = cut;
    }

    version_options vo = {0};
    f->vs = version_set_new(f->env, f->dir, &vo);
    cr_assert_not_null(f->vs);
    cr_assert_eq(version_set_create(f->vs, &err), SHALE_OK, "%s", err.msg);
    version_edit_init(&edit);
    for (size_t t = 0; t < ntables; t++) {
        size_t lo = f->first[t], hi = t + 1 < ntables ? f->first[t + 1] : n;
        sst_props p;
        uint64_t number = version_set_new_file_number(f->vs);
        build_table(f, lo, hi, number, &p);
        f->number[t] = number;
        f->size[t] = p.file_size;
        cr_assert_eq(version_edit_add_file(&edit, 1, number, p.file_size, f->all[lo].e.key,
                                           f->all[lo].e.seq, f->all[hi - 1].e.key,
                                           f->all[hi - 1].e.seq, p.min_seq, p.max_seq, p.entries,
                                           p.deletions, &err),
                     SHALE_OK, "%s", err.msg);
        sst_props_free(&p);
    }
    edit.has_last_seq = true;
    edit.last_seq = 2000000;
    cr_assert_eq(version_set_apply(f->vs, &edit, &err), SHALE_OK, "%s", err.msg);
    version_edit_free(&edit);
    f->v = version_set_current(f->vs);
    cr_assert_eq(f->v->nfiles[1], ntables);
    if (block_cache) {
        f->blocks = cache_new(block_cache, 2);
        cr_assert_not_null(f->blocks);
    }
    f->tc = table_cache_new(f->env, f->dir, max_open, f->blocks);
    cr_assert_not_null(f->tc);
}

static void fixture_free(fixture *f)
{
    /* Versions first: their tables give back the readers point reads pinned in them. */
    version_unref(f->v);
    version_set_free(f->vs);
    table_cache_free(f->tc);
    cache_free(f->blocks);
    env_fault_free(f->fault);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->all);
}

static char *table_path(const fixture *f, size_t t)
{
    char name[32];
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", f->number[t]);
    return tu_path(f->dir, name);
}

static void expect_at(iter *it, const fixture *f, size_t pos, const char *what, size_t step)
{
    shale_error err;
    if (pos >= f->n) {
        cr_assert(!iter_valid(it), "%s step %zu: valid, model at end", what, step);
        cr_assert_eq(iter_status(it, &err), SHALE_OK, "%s step %zu: %s", what, step, err.msg);
        return;
    }
    cr_assert(iter_valid(it), "%s step %zu: invalid at model %zu/%zu", what, step, pos, f->n);
    ikey_entry e;
    iter_entry(it, &e);
    const ikey_entry *m = &f->all[pos].e;
    cr_assert(slice_eq(e.key, m->key) && e.seq == m->seq,
              "%s step %zu: got (%.*s,%" PRIu64 ") want (%s,%" PRIu64 ")", what, step,
              (int)e.key.len, (const char *)e.key.data, e.seq, f->all[pos].key, m->seq);
    cr_assert_eq(e.type, m->type);
    cr_assert_eq(e.expire_at_ms, m->expire_at_ms);
    cr_assert(slice_eq(e.value, m->value), "%s step %zu: value", what, step);
}

static size_t model_seek(const fixture *f, shale_slice key, uint64_t seq)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ikey_cmp(f->all[mid].e.key, f->all[mid].e.seq, key, seq) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void check_seek(iter *it, const fixture *f, shale_slice key, uint64_t seq, size_t step)
{
    iter_seek(it, key, seq);
    expect_at(it, f, model_seek(f, key, seq), "seek", step);
}

Test(level_iter, walks_forward_and_back_across_tables)
{
    fixture f;
    fixture_make(&f, 1, 3000, 6, 1 << 20, 0);
    iter *it = level_iter_new(f.tc, f.v, 1, true);
    cr_assert_not_null(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(table_cache_open_count(f.tc), 0); /* lazy: nothing opened before a seek */

    size_t step = 0;
    iter_seek_first(it);
    for (size_t i = 0; i < f.n; i++) {
        expect_at(it, &f, i, "forward", step++);
        iter_next(it);
    }
    expect_at(it, &f, f.n, "forward end", step++);

    iter_seek_last(it);
    for (size_t i = f.n; i-- > 0;) {
        expect_at(it, &f, i, "reverse", step++);
        iter_prev(it);
    }
    expect_at(it, &f, f.n, "reverse end", step++);
    iter_destroy(it);

    /* The same through a merge with an empty level 2 iterator and a table iterator: one child
     * per source, as the database's view builds it. */
    iter *kids[2] = {level_iter_new(f.tc, f.v, 1, false), level_iter_new(f.tc, f.v, 2, true)};
    it = merge_iter_new(kids, 2);
    cr_assert_not_null(it);
    iter_seek_first(it);
    for (size_t i = 0; i < f.n; i++) {
        expect_at(it, &f, i, "merged", step++);
        iter_next(it);
    }
    expect_at(it, &f, f.n, "merged end", step++);
    iter_destroy(it);
    fixture_free(&f);
    tu_assert_no_leaks();
}

Test(level_iter, seeks_at_boundaries_gaps_and_ends)
{
    fixture f;
    size_t step = 0;
    fixture_make(&f, 2, 2000, 5, 0, 0);
    iter *it = level_iter_new(f.tc, f.v, 1, true);
    cr_assert_not_null(it);

    /* Every entry exactly, and its key with the newest and the oldest possible seq. */
    for (size_t i = 0; i < f.n; i++) {
        check_seek(it, &f, f.all[i].e.key, f.all[i].e.seq, step++);
        check_seek(it, &f, f.all[i].e.key, f.all[i].e.seq - 1, step++);
        check_seek(it, &f, f.all[i].e.key, IKEY_MAX_SEQ, step++);
        check_seek(it, &f, f.all[i].e.key, 0, step++);
    }
    /* Around every table boundary: just past a table's last entry, between its last key and the
     * next table's first, and at the next table's first. */
    for (size_t t = 0; t < f.ntables; t++) {
        size_t last = (t + 1 < f.ntables ? f.first[t + 1] : f.n) - 1;
        const tent *e = &f.all[last];
        char between[16];
        snprintf(between, sizeof between, "%s~", e->key); /* after e->key, before the next id */
        check_seek(it, &f, e->e.key, e->e.seq - 1, step++);
        check_seek(it, &f, e->e.key, 0, step++);
        check_seek(it, &f, slice_cstr(between), IKEY_MAX_SEQ, step++);
        if (t + 1 < f.ntables) {
            const tent *n = &f.all[f.first[t + 1]];
            check_seek(it, &f, n->e.key, n->e.seq, step++);
            check_seek(it, &f, n->e.key, n->e.seq + 1, step++);
            /* From there back into the previous table and forth again. */
            iter_prev(it);
            expect_at(it, &f, f.first[t + 1] - 1, "back over boundary", step++);
            iter_next(it);
            expect_at(it, &f, f.first[t + 1], "forth over boundary", step++);
        }
    }
    /* Absent key ids (gaps between and inside tables). */
    for (uint64_t id = 0; id < 20000; id += 3) {
        char k[12];
        key_of(k, id);
        check_seek(it, &f, slice_cstr(k), IKEY_MAX_SEQ, step++);
    }
    /* Before everything and past the end. */
    check_seek(it, &f, SLICE_LIT(""), IKEY_MAX_SEQ, step++);
    check_seek(it, &f, SLICE_LIT("a"), 0, step++);
    check_seek(it, &f, SLICE_LIT("z"), IKEY_MAX_SEQ, step++);
    cr_assert(!iter_valid(it));
    check_seek(it, &f, f.all[f.n - 1].e.key, 0, step++);
    cr_assert(!iter_valid(it));
    /* A walk that ran off the end let go of its table. */
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    iter_destroy(it);
    fixture_free(&f);
}

Test(level_iter, random_walk_matches_model)
{
    fixture f;
    tu_rng r;
    fixture_make(&f, 3, 1500, 7, 1 << 20, 0);
    tu_rng_seed(&r, 33);
    iter *it = level_iter_new(f.tc, f.v, 1, true);
    size_t pos = f.n;

    for (size_t step = 0; step < 20000; step++) {
        uint64_t op = tu_rng_below(&r, 10);
        if (pos < f.n && op < 4) {
            iter_next(it);
            pos++;
        } else if (pos < f.n && op < 8) {
            iter_prev(it);
            pos = pos == 0 ? f.n : pos - 1;
        } else if (op == 8 || pos >= f.n) {
            char k[12];
            key_of(k, tu_rng_below(&r, 8000));
            uint64_t seq = tu_rng_below(&r, 2) ? IKEY_MAX_SEQ : f.all[tu_rng_below(&r, f.n)].e.seq;
            iter_seek(it, slice_cstr(k), seq);
            pos = model_seek(&f, slice_cstr(k), seq);
        } else if (tu_rng_below(&r, 2)) {
            iter_seek_first(it);
            pos = 0;
        } else {
            iter_seek_last(it);
            pos = f.n - 1;
        }
        expect_at(it, &f, pos, "walk", step);
    }
    iter_destroy(it);
    fixture_free(&f);
}

Test(level_iter, empty_level_and_bad_levels)
{
    fixture f;
    shale_error err;
    fixture_make(&f, 4, 50, 1, 0, 0);

    iter *it = level_iter_new(f.tc, f.v, 3, true); /* no tables */
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    iter_seek_last(it);
    cr_assert(!iter_valid(it));
    iter_seek(it, SLICE_LIT("k"), IKEY_MAX_SEQ);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    iter_destroy(it);

    it = level_iter_new(f.tc, f.v, 0, true); /* level 0 tables may overlap */
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_INVALID);
    iter_destroy(it);
    it = level_iter_new(f.tc, f.v, VERSION_LEVELS, true);
    cr_assert_eq(iter_status(it, NULL), SHALE_INVALID);
    iter_destroy(it);
    fixture_free(&f);
}

Test(level_iter, holds_its_version)
{
    fixture f;
    fixture_make(&f, 5, 300, 3, 0, 0);
    iter *it = level_iter_new(f.tc, f.v, 1, true);

    /* Replace the version: the iterator still walks the tables of the one it referenced. */
    version_edit edit;
    shale_error err;
    version_edit_init(&edit);
    cr_assert_eq(version_edit_delete_file(&edit, 1, f.number[1], &err), SHALE_OK);
    cr_assert_eq(version_set_apply(f.vs, &edit, &err), SHALE_OK, "%s", err.msg);
    version_edit_free(&edit);
    version_unref(f.v);
    f.v = version_set_current(f.vs);
    cr_assert_eq(f.v->nfiles[1], 2);

    size_t count = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        count++;
    }
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    cr_assert_eq(count, f.n);
    iter_destroy(it);
    fixture_free(&f);
}

static void flip(const fixture *f, size_t t, uint64_t off)
{
    char *p = table_path(f, t);
    cr_assert_eq(tu_flip_bit(p, off, 3), 0);
    free(p);
}

Test(level_iter, damaged_table_stops_the_walk)
{
    fixture f;
    shale_error err;
    char name[32];
    fixture_make(&f, 6, 2000, 4, 0, 0); /* no block cache: every block is read and checked */
    flip(&f, 2, 40);                    /* inside table 2's first data block */
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", f.number[2]);

    iter *it = level_iter_new(f.tc, f.v, 1, true);
    size_t count = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        count++;
    }
    cr_assert_eq(count, f.first[2], "walked %zu entries, table 2 starts at %zu", count, f.first[2]);
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, name) != NULL, "message '%s' names %s", err.msg, name);
    iter_next(it); /* REQUIRES valid: must neither crash nor revive */
    iter_prev(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);

    /* Backward the walk gets into table 2 (its later blocks are sound) and stops at the bad
     * block; a seek past the table is fine again. */
    count = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        count++;
    }
    cr_assert_geq(count, f.n - f.first[3]);
    cr_assert_lt(count, f.n - f.first[2]);
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);
    /* Table 3's first entry. */
    check_seek(it, &f, f.all[f.first[3]].e.key, f.all[f.first[3]].e.seq, 0);
    iter_destroy(it);
    fixture_free(&f);
}

Test(level_iter, missing_table_is_corruption)
{
    fixture f;
    shale_error err;
    char want[80];
    fixture_make(&f, 7, 1000, 3, 0, 0);
    char *p = table_path(&f, 1);
    cr_assert_eq(unlink(p), 0);
    free(p);
    snprintf(want, sizeof want, "%06" PRIu64 ".sst: missing (listed in the manifest)", f.number[1]);

    iter *it = level_iter_new(f.tc, f.v, 1, true);
    size_t count = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        count++;
    }
    cr_assert_eq(count, f.first[1]);
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    cr_assert_str_eq(err.msg, want);
    iter_seek(it, f.all[f.first[1]].e.key, f.all[f.first[1]].e.seq);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);
    iter_destroy(it);
    fixture_free(&f);
}

Test(level_iter, read_error_is_reported)
{
    fixture f;
    shale_error err;
    fixture_make(&f, 8, 1000, 3, 0, 0);
    iter *it = level_iter_new(f.tc, f.v, 1, true);

    /* Open everything once, then fail the next read: an uncached data block. */
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
    }
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    env_fault_fail_nth(f.fault, ENV_OP_READ, 1, EIO, false);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_IO, "%s", err.msg);
    cr_assert_eq(err.sys_errno, EIO);
    /* The fault was one read: the next seek works. */
    check_seek(it, &f, f.all[0].e.key, IKEY_MAX_SEQ, 0);
    iter_destroy(it);
    fixture_free(&f);
}

/* ---- The table cache itself ---- */

Test(table_cache, bounds_open_readers)
{
    fixture f;
    shale_error err;
    fixture_make(&f, 9, 1600, 16, 0, 4);

    for (int round = 0; round < 3; round++) {
        for (size_t t = 0; t < f.ntables; t++) {
            table_handle *h;
            cr_assert_eq(table_cache_get(f.tc, f.number[t], f.size[t], &h, &err), SHALE_OK, "%s",
                         err.msg);
            cr_assert_eq(sst_reader_file_number(table_handle_reader(h)), f.number[t]);
            table_cache_release(f.tc, h);
            cr_assert_leq(table_cache_open_count(f.tc), 4);
        }
    }
    cr_assert_geq(table_cache_open_count(f.tc), 1);

    /* Pinned readers are never closed: pin 10, all stay open and usable past the bound. */
    table_handle *pins[10];
    for (size_t t = 0; t < 10; t++) {
        cr_assert_eq(table_cache_get(f.tc, f.number[t], f.size[t], &pins[t], &err), SHALE_OK);
    }
    cr_assert_geq(table_cache_open_count(f.tc), 10);
    for (size_t t = 10; t < f.ntables; t++) { /* churn the unpinned ones */
        iter *it = table_cache_iter(f.tc, f.number[t], f.size[t], true);
        iter_seek_first(it);
        cr_assert(iter_valid(it));
        iter_destroy(it);
    }
    for (size_t t = 0; t < 10; t++) {
        bool found;
        ikey_entry e;
        shale_buf scratch = {0};
        const tent *want = &f.all[f.first[t]];
        cr_assert_eq(sst_reader_get(table_handle_reader(pins[t]), want->e.key, IKEY_MAX_SEQ, &found,
                                    &e, &scratch, NULL, &err),
                     SHALE_OK, "%s", err.msg);
        cr_assert(found);
        buf_free(&scratch);
        table_cache_release(f.tc, pins[t]);
    }
    /* Once unpinned, touching tables brings the count back under the bound. */
    for (size_t t = 0; t < f.ntables; t++) {
        table_handle *h;
        cr_assert_eq(table_cache_get(f.tc, f.number[t], f.size[t], &h, &err), SHALE_OK);
        table_cache_release(f.tc, h);
    }
    cr_assert_leq(table_cache_open_count(f.tc), 4);
    fixture_free(&f);
    tu_assert_no_leaks();
}

Test(table_cache, pinned_reader_survives_eviction_and_deletion)
{
    fixture f;
    shale_error err;
    char want[80];
    fixture_make(&f, 10, 800, 2, 1 << 20, 0);

    iter *it = table_cache_iter(f.tc, f.number[0], f.size[0], true);
    table_handle *h;
    cr_assert_eq(table_cache_get(f.tc, f.number[0], f.size[0], &h, &err), SHALE_OK);
    cr_assert_eq(table_cache_open_count(f.tc), 1);

    /* The table is deleted: evicted from the cache and unlinked. */
    table_cache_evict(f.tc, f.number[0]);
    char *p = table_path(&f, 0);
    cr_assert_eq(unlink(p), 0);
    free(p);
    cr_assert_eq(table_cache_open_count(f.tc), 1); /* still pinned, still open */

    size_t count = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        ikey_entry e;
        iter_entry(it, &e);
        cr_assert(slice_eq(e.key, f.all[count].e.key) && e.seq == f.all[count].e.seq);
        count++;
    }
    cr_assert_eq(iter_status(it, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(count, f.first[1]);
    cr_assert_eq(sst_reader_file_number(table_handle_reader(h)), f.number[0]);

    iter_destroy(it);
    cr_assert_eq(table_cache_open_count(f.tc), 1);
    table_cache_release(f.tc, h);
    cr_assert_eq(table_cache_open_count(f.tc), 0); /* last pin gone: closed */

    /* Asking again finds no file although the manifest lists it. */
    snprintf(want, sizeof want, "%06" PRIu64 ".sst: missing (listed in the manifest)", f.number[0]);
    cr_assert_eq(table_cache_get(f.tc, f.number[0], f.size[0], &h, &err), SHALE_CORRUPTION);
    cr_assert_str_eq(err.msg, want);
    it = table_cache_iter(f.tc, f.number[0], f.size[0], true);
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    cr_assert_str_eq(err.msg, want);
    iter_destroy(it);
    bool found;
    ikey_entry e;
    shale_buf scratch = {0};
    cr_assert_eq(table_cache_lookup(f.tc, f.v->files[1][0], f.all[0].e.key,
                                    sst_reader_key_hash(f.all[0].e.key), IKEY_MAX_SEQ, &found, &e,
                                    &scratch, NULL, &err),
                 SHALE_CORRUPTION);
    buf_free(&scratch);
    cr_assert_eq(table_cache_open_count(f.tc), 0);
    fixture_free(&f);
    tu_assert_no_leaks();
}

Test(table_cache, lookup_finds_versions)
{
    fixture f;
    shale_error err;
    shale_buf scratch = {0};
    fixture_make(&f, 11, 600, 2, 1 << 20, 0);
    sst_get_stats st = {0};

    for (size_t i = 0; i < f.first[1]; i++) {
        bool found;
        ikey_entry e;
        const tent *t = &f.all[i];
        cr_assert_eq(table_cache_lookup(f.tc, f.v->files[1][0], t->e.key,
                                        sst_reader_key_hash(t->e.key), t->e.seq, &found, &e,
                                        &scratch, &st, &err),
                     SHALE_OK, "%s", err.msg);
        cr_assert(found);
        cr_assert_eq(e.seq, t->e.seq);
        cr_assert_eq(e.type, t->e.type);
        cr_assert(slice_eq(e.value, t->e.value));
    }
    bool found = true;
    ikey_entry e;
    cr_assert_eq(table_cache_lookup(f.tc, f.v->files[1][0], SLICE_LIT("k9"),
                                    sst_reader_key_hash(SLICE_LIT("k9")), IKEY_MAX_SEQ, &found, &e,
                                    &scratch, &st, &err),
                 SHALE_OK);
    cr_assert(!found);
    cr_assert_eq(table_cache_open_count(f.tc), 1);
    /* The first read pinned the reader in the table's meta; later reads used it. */
    cr_assert_not_null(atomic_load(&f.v->files[1][0]->reader));
    cr_assert_null(atomic_load(&f.v->files[1][1]->reader));
    buf_free(&scratch);
    fixture_free(&f);
}

/* Point reads pin readers in their metas only within half of max_open; past that each read pins
 * and releases through the cache, and the bound on open readers holds. Freeing the versions
 * gives every pin back (fixture_free's table_cache_free requires it; ASan sees the readers). */
Test(table_cache, meta_pins_stay_within_half_of_max_open)
{
    fixture f;
    shale_error err;
    shale_buf scratch = {0};
    fixture_make(&f, 12, 2000, 8, 1 << 20, 4);

    for (int round = 0; round < 2; round++) {
        for (size_t t = 0; t < f.ntables; t++) {
            const tent *e0 = &f.all[f.first[t]];
            bool found;
            ikey_entry e;
            cr_assert_eq(table_cache_lookup(f.tc, f.v->files[1][t], e0->e.key,
                                            sst_reader_key_hash(e0->e.key), e0->e.seq, &found, &e,
                                            &scratch, NULL, &err),
                         SHALE_OK, "%s", err.msg);
            cr_assert(found, "table %zu round %d", t, round);
            cr_assert_eq(e.seq, e0->e.seq);
            cr_assert(slice_eq(e.value, e0->e.value));
        }
    }
    size_t pinned = 0;
    for (size_t t = 0; t < f.ntables; t++) {
        pinned += atomic_load(&f.v->files[1][t]->reader) != NULL;
    }
    cr_assert_eq(pinned, 2, "max_open 4 leaves room for 2 held readers, got %zu", pinned);
    cr_assert_leq(table_cache_open_count(f.tc), 4);
    buf_free(&scratch);
    fixture_free(&f);
}

Test(table_cache, damaged_tables_surface_through_iterator_status)
{
    fixture f;
    shale_error err;
    char name[32];
    fixture_make(&f, 12, 800, 2, 0, 0);

    /* A flipped bit in a data block: the open works, the walk reports it. */
    flip(&f, 0, 20);
    snprintf(name, sizeof name, "%06" PRIu64 ".sst", f.number[0]);
    iter *it = table_cache_iter(f.tc, f.number[0], f.size[0], true);
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, name) != NULL, "message '%s' names %s", err.msg, name);
    iter_destroy(it);

    /* A truncated table: the open fails, the iterator carries the error. */
    char *p = table_path(&f, 1);
    cr_assert_eq(tu_truncate(p, f.size[1] - 3), 0);
    free(p);
    table_cache_evict(f.tc, f.number[1]);
    it = table_cache_iter(f.tc, f.number[1], 0, true); /* 0: ask the file */
    cr_assert_not_null(it);
    iter_seek_first(it);
    cr_assert(!iter_valid(it));
    cr_assert_eq(iter_status(it, &err), SHALE_CORRUPTION, "%s", err.msg);
    iter_destroy(it);
    cr_assert_eq(table_cache_open_count(f.tc), 1); /* table 0 only */

    /* The manifest's size must match the file. */
    table_handle *h;
    cr_assert_neq(table_cache_get(f.tc, f.number[1], f.size[1], &h, &err), SHALE_OK);
    fixture_free(&f);
}
