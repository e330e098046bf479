/*
 * Unit tests of src/lsm/version.h: edit encoding (round trips, every truncation and bit flip),
 * the manifest (create/recover, roll over, torn tail, corruption, failed sync, power loss during
 * a roll), version reference counting, compaction picking on hand-built versions, and
 * version_set_check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/slice.h"
#include "env/env_fault.h"
#include "lsm/version.h"
#include "testutil.h"
#include "wal/wal_format.h"
#include "wal/wal_writer.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir("version");
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

TestSuite(vedit);
TestSuite(vset, .init = setup, .fini = teardown);
TestSuite(vpick, .init = setup, .fini = teardown);

#define S(s) slice_cstr(s)

/* ---- helpers ---- */

static void add(version_edit *e, int level, uint64_t number, const char *lo, const char *hi,
                uint64_t size, uint64_t seq)
{
    shale_error err;
    cr_assert_eq(version_edit_add_file(e, level, number, size, S(lo), seq, S(hi), seq, seq, seq, 10,
                                       1, &err),
                 SHALE_OK, "%s", err.msg);
}

static void del(version_edit *e, int level, uint64_t number)
{
    shale_error err;
    cr_assert_eq(version_edit_delete_file(e, level, number, &err), SHALE_OK, "%s", err.msg);
}

static void apply_ok(version_set *vs, version_edit *e)
{
    shale_error err;
    cr_assert_eq(version_set_apply(vs, e, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(e->nadded, 0, "apply leaves the edit without added metas");
    version_edit_free(e);
}

static version_set *create_set(const shale_env *env, const char *d, const version_options *o)
{
    shale_error err;
    version_set *vs = version_set_new(env, d, o);
    cr_assert_not_null(vs);
    cr_assert_eq(version_set_create(vs, &err), SHALE_OK, "%s", err.msg);
    return vs;
}

static version_set *recover_set(const shale_env *env, const char *d, const version_options *o)
{
    shale_error err;
    version_set *vs = version_set_new(env, d, o);
    cr_assert_not_null(vs);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_OK, "%s", err.msg);
    return vs;
}

/* A canonical text of the set's state: scalars and every table, level by level, in order. */
static char *describe(version_set *vs)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    version *v = version_set_current(vs);

    cr_assert_not_null(f);
    fprintf(f, "log=%" PRIu64 " flushed=%" PRIu64 " last=%" PRIu64, version_set_log_number(vs),
            version_set_flushed_seq(vs), version_set_last_seq(vs));
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (v->nfiles[l] == 0) {
            continue;
        }
        fprintf(f, " | L%d %" PRIu64 "B:", l, v->level_bytes[l]);
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const file_meta *m = v->files[l][i];
            fprintf(f, " %" PRIu64 "[%.*s..%.*s]s%" PRIu64 "/%" PRIu64 "/%" PRIu64, m->number,
                    (int)m->smallest.len, (const char *)m->smallest.data, (int)m->largest.len,
                    (const char *)m->largest.data, m->size, m->min_seq, m->max_seq);
        }
    }
    version_unref(v);
    fclose(f);
    return out;
}

static int count_manifests(const char *d)
{
    char **names = NULL;
    size_t n = 0;
    int count = 0;
    cr_assert_eq(env_posix()->list_dir(env_posix(), d, &names, &n, NULL), SHALE_OK);
    for (size_t i = 0; i < n; i++) {
        count += strncmp(names[i], "MANIFEST-", 9) == 0;
    }
    env_free_names(names, n);
    return count;
}

static char *manifest_path(const char *d, uint64_t number)
{
    char p[4096];
    version_manifest_name(p, sizeof p, d, number);
    return strdup(p);
}

/* ---- edit encoding ---- */

static void random_key(tu_rng *r, char *buf, size_t *len)
{
    *len = (size_t)tu_rng_below(r, 24);
    for (size_t i = 0; i < *len; i++) {
        buf[i] = (char)tu_rng_below(r, 256);
    }
}

static void random_edit(tu_rng *r, version_edit *e)
{
    version_edit_init(e);
    if (tu_rng_below(r, 2)) {
        e->has_log_number = true;
        e->log_number = tu_rng_next(r);
    }
    if (tu_rng_below(r, 2)) {
        e->has_flushed_seq = true;
        e->flushed_seq = tu_rng_next(r) >> tu_rng_below(r, 64);
    }
    if (tu_rng_below(r, 2)) {
        e->has_next_file = true;
        e->next_file_number = tu_rng_below(r, 1000000);
    }
    if (tu_rng_below(r, 2)) {
        e->has_last_seq = true;
        e->last_seq = tu_rng_next(r);
    }
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (tu_rng_below(r, 4) == 0) {
            char k[32];
            size_t n;
            random_key(r, k, &n);
            e->has_pointer[l] = true;
            cr_assert_eq(buf_set(&e->pointer[l], k, n, NULL), SHALE_OK);
        }
    }
    for (uint64_t i = tu_rng_below(r, 5); i > 0; i--) {
        del(e, (int)tu_rng_below(r, VERSION_LEVELS), tu_rng_next(r) >> tu_rng_below(r, 64));
    }
    for (uint64_t i = tu_rng_below(r, 5); i > 0; i--) {
        char a[32], b[32];
        size_t na, nb;
        random_key(r, a, &na);
        random_key(r, b, &nb);
        shale_slice sa = slice_make(a, na), sb = slice_make(b, nb);
        if (slice_cmp(sa, sb) > 0) {
            shale_slice t = sa;
            sa = sb;
            sb = t;
        }
        uint64_t s1 = tu_rng_next(r) >> 8, s2 = tu_rng_next(r) >> 8;
        cr_assert_eq(version_edit_add_file(
                         e, (int)tu_rng_below(r, VERSION_LEVELS),
                         tu_rng_next(r) >> tu_rng_below(r, 64), tu_rng_next(r) >> 20, sa,
                         tu_rng_next(r) >> 8, sb, tu_rng_next(r) >> 8, s1 < s2 ? s1 : s2,
                         s1 < s2 ? s2 : s1, tu_rng_below(r, 1u << 30), tu_rng_below(r, 1000), NULL),
                     SHALE_OK);
    }
}

static bool buf_eq(const shale_buf *a, const shale_buf *b)
{
    return slice_eq(slice_make(a->data, a->len), slice_make(b->data, b->len));
}

static void assert_edits_equal(const version_edit *a, const version_edit *b)
{
    cr_assert_eq(a->has_log_number, b->has_log_number);
    cr_assert_eq(a->has_log_number ? a->log_number : 0, b->has_log_number ? b->log_number : 0);
    cr_assert_eq(a->has_flushed_seq, b->has_flushed_seq);
    cr_assert_eq(a->has_next_file, b->has_next_file);
    cr_assert_eq(a->has_last_seq, b->has_last_seq);
    if (a->has_flushed_seq) {
        cr_assert_eq(a->flushed_seq, b->flushed_seq);
    }
    if (a->has_next_file) {
        cr_assert_eq(a->next_file_number, b->next_file_number);
    }
    if (a->has_last_seq) {
        cr_assert_eq(a->last_seq, b->last_seq);
    }
    for (int l = 0; l < VERSION_LEVELS; l++) {
        cr_assert_eq(a->has_pointer[l], b->has_pointer[l]);
        if (a->has_pointer[l]) {
            cr_assert(buf_eq(&a->pointer[l], &b->pointer[l]));
        }
    }
    cr_assert_eq(a->ndeleted, b->ndeleted);
    for (size_t i = 0; i < a->ndeleted; i++) {
        cr_assert_eq(a->deleted[i].level, b->deleted[i].level);
        cr_assert_eq(a->deleted[i].number, b->deleted[i].number);
    }
    cr_assert_eq(a->nadded, b->nadded);
    for (size_t i = 0; i < a->nadded; i++) {
        const file_meta *x = a->added[i].meta, *y = b->added[i].meta;
        cr_assert_eq(a->added[i].level, b->added[i].level);
        cr_assert_eq(x->number, y->number);
        cr_assert_eq(x->size, y->size);
        cr_assert(buf_eq(&x->smallest, &y->smallest));
        cr_assert(buf_eq(&x->largest, &y->largest));
        cr_assert_eq(x->smallest_seq, y->smallest_seq);
        cr_assert_eq(x->largest_seq, y->largest_seq);
        cr_assert_eq(x->min_seq, y->min_seq);
        cr_assert_eq(x->max_seq, y->max_seq);
        cr_assert_eq(x->entries, y->entries);
        cr_assert_eq(x->deletions, y->deletions);
    }
}

Test(vedit, randomized_round_trips)
{
    tu_rng r;
    tu_rng_seed(&r, 42);
    for (int i = 0; i < 500; i++) {
        version_edit e, d;
        shale_buf enc = {0}, enc2 = {0};
        shale_error err;

        random_edit(&r, &e);
        cr_assert_eq(version_edit_encode(&e, &enc, &err), SHALE_OK, "%s", err.msg);
        cr_assert_eq(version_edit_decode(enc.data, enc.len, "t", &d, &err), SHALE_OK, "%d: %s", i,
                     err.msg);
        assert_edits_equal(&e, &d);
        cr_assert_eq(version_edit_encode(&d, &enc2, NULL), SHALE_OK);
        cr_assert(buf_eq(&enc, &enc2), "encoding is canonical");
        version_edit_free(&e);
        version_edit_free(&d);
        buf_free(&enc);
        buf_free(&enc2);
    }
}

Test(vedit, empty_edit_is_just_a_trailer)
{
    version_edit e, d;
    shale_buf enc = {0};
    version_edit_init(&e);
    cr_assert_eq(version_edit_encode(&e, &enc, NULL), SHALE_OK);
    cr_assert_eq(enc.len, 8);
    cr_assert_eq(version_edit_decode(enc.data, enc.len, "t", &d, NULL), SHALE_OK);
    assert_edits_equal(&e, &d);
    version_edit_free(&d);
    buf_free(&enc);
}

/* A decoded edit must be usable: levels in range, ordered keys and seqs. */
static void assert_valid(const version_edit *d)
{
    for (size_t i = 0; i < d->nadded; i++) {
        const file_meta *m = d->added[i].meta;
        cr_assert(d->added[i].level >= 0 && d->added[i].level < VERSION_LEVELS);
        cr_assert_leq(slice_cmp(slice_make(m->smallest.data, m->smallest.len),
                                slice_make(m->largest.data, m->largest.len)),
                      0);
        cr_assert_leq(m->min_seq, m->max_seq);
    }
    for (size_t i = 0; i < d->ndeleted; i++) {
        cr_assert(d->deleted[i].level >= 0 && d->deleted[i].level < VERSION_LEVELS);
    }
}

Test(vedit, every_truncation_and_bit_flip_is_rejected_or_valid)
{
    tu_rng r;
    tu_rng_seed(&r, 7);
    for (int round = 0; round < 6; round++) {
        version_edit e, d;
        shale_buf enc = {0};
        shale_error err;
        size_t rejected = 0, flips = 0;

        do {
            random_edit(&r, &e);
            if (e.nadded == 0 && e.ndeleted == 0) {
                version_edit_free(&e);
            }
        } while (e.nadded == 0 && e.ndeleted == 0);
        cr_assert_eq(version_edit_encode(&e, &enc, NULL), SHALE_OK);
        uint8_t *copy = malloc(enc.len);
        cr_assert_not_null(copy);
        for (size_t n = 0; n < enc.len; n++) {
            /* An exact-size copy so ASan sees any read past the end. */
            uint8_t *t = malloc(n ? n : 1);
            memcpy(t, enc.data, n);
            shale_code rc = version_edit_decode(t, n, "MANIFEST-000009 @77", &d, &err);
            cr_assert_eq(rc, SHALE_CORRUPTION, "truncation to %zu of %zu decoded", n, enc.len);
            cr_assert(strstr(err.msg, "MANIFEST-000009 @77") != NULL, "%s", err.msg);
            free(t);
        }
        for (size_t bit = 0; bit < enc.len * 8; bit++) {
            memcpy(copy, enc.data, enc.len);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            shale_code rc = version_edit_decode(copy, enc.len, "w", &d, &err);
            flips++;
            if (rc == SHALE_OK) {
                assert_valid(&d);
                version_edit_free(&d);
            } else {
                cr_assert_eq(rc, SHALE_CORRUPTION, "%s", err.msg);
                rejected++;
            }
        }
        cr_assert_gt(rejected, 0, "of %zu flips", flips);
        free(copy);
        buf_free(&enc);
        version_edit_free(&e);
    }
}

/* Fields, then a trailer with `count` and the magic. */
static size_t craft(uint8_t *out, const uint8_t *fields, size_t n, uint32_t count)
{
    memcpy(out, fields, n);
    coding_put_fixed32(out + n, count);
    coding_put_fixed32(out + n + 4, 0x54444553u);
    return n + 8;
}

Test(vedit, malformed_fields_are_corruption)
{
    static const struct {
        const char *what;
        uint8_t fields[16];
        size_t n;
        uint32_t count;
        const char *msg;
    } cases[] = {
        {"unknown tag", {99, 0}, 2, 1, "unknown field tag"},
        {"tag zero", {0}, 1, 1, "unknown field tag"},
        {"level out of range", {6, VERSION_LEVELS, 1}, 3, 1, "level out of range"},
        {"log number twice", {1, 5, 1, 6}, 4, 2, "twice"},
        {"pointer twice", {5, 1, 1, 'a', 5, 1, 1, 'b'}, 8, 2, "twice"},
        {"overlong varint",
         {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
         12,
         1,
         "log number"},
        {"key past the end", {5, 1, 9, 'a'}, 4, 1, "pointer key"},
        {"count mismatch", {1, 5}, 2, 2, "field count"},
        {"format 2", {8, 2}, 2, 1, "format version 2"},
        {"smallest after largest",
         {7, 1, 5, 1, 1, 'b', 0, 1, 'a', 0, 0, 0, 0, 0},
         14,
         1,
         "smallest key"},
        {"min seq above max", {7, 1, 5, 1, 1, 'a', 0, 1, 'b', 0, 9, 1, 0, 0}, 14, 1, "min_seq"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[32];
        size_t n = craft(buf, cases[i].fields, cases[i].n, cases[i].count);
        version_edit d;
        shale_error err;
        cr_assert_eq(version_edit_decode(buf, n, "M @1", &d, &err), SHALE_CORRUPTION, "%s",
                     cases[i].what);
        cr_assert(strstr(err.msg, cases[i].msg) != NULL, "%s: %s", cases[i].what, err.msg);
        cr_assert(strstr(err.msg, "M @1") != NULL, "%s", err.msg);
        version_edit_free(&d); /* harmless after a failure */
    }
    /* The same crafted table, well formed, decodes. */
    uint8_t ok[] = {7, 1, 5, 1, 1, 'a', 0, 1, 'b', 0, 1, 9, 0, 0};
    uint8_t buf[32];
    version_edit d;
    size_t n = craft(buf, ok, sizeof ok, 1);
    cr_assert_eq(version_edit_decode(buf, n, "M", &d, NULL), SHALE_OK);
    cr_assert_eq(d.nadded, 1);
    cr_assert_eq(d.added[0].meta->number, 5);
    version_edit_free(&d);
    /* A bad magic. */
    buf[n - 1] ^= 1;
    cr_assert_eq(version_edit_decode(buf, n, "M", &d, NULL), SHALE_CORRUPTION);
}

Test(vedit, add_and_delete_validate_their_arguments)
{
    version_edit e;
    shale_error err;
    version_edit_init(&e);
    cr_assert_eq(version_edit_add_file(&e, 1, 5, 1, S("b"), 1, S("a"), 1, 1, 1, 1, 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(
        version_edit_add_file(&e, VERSION_LEVELS, 5, 1, S("a"), 1, S("b"), 1, 1, 1, 1, 0, &err),
        SHALE_INVALID);
    cr_assert_eq(version_edit_add_file(&e, -1, 5, 1, S("a"), 1, S("b"), 1, 1, 1, 1, 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(version_edit_add_file(&e, 1, 5, 1, S("a"), 1, S("b"), 1, 3, 2, 1, 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(version_edit_delete_file(&e, VERSION_LEVELS, 5, &err), SHALE_INVALID);
    cr_assert_eq(e.nadded + e.ndeleted, 0);
    /* One key may be both ends (a table of one user key). */
    cr_assert_eq(version_edit_add_file(&e, 1, 5, 1, S("a"), 9, S("a"), 2, 2, 9, 2, 0, &err),
                 SHALE_OK);
    cr_assert_eq(atomic_load(&e.added[0].meta->refs), 1);
    version_edit_free(&e);
}

Test(vedit, names)
{
    char buf[64];
    version_table_name(buf, sizeof buf, "/d", 12);
    cr_assert_str_eq(buf, "/d/000012.sst");
    version_manifest_name(buf, sizeof buf, "/d", 1234567);
    cr_assert_str_eq(buf, "/d/MANIFEST-1234567");
}

/* ---- create / recover ---- */

Test(vset, create_writes_manifest_1_and_current)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    char *cur = tu_path(dir, "CURRENT");
    void *data;
    size_t len;

    cr_assert_eq(version_set_next_file_number(vs), 2);
    cr_assert_eq(version_set_manifest_number(vs), 1);
    cr_assert_gt(version_set_manifest_bytes(vs), 0);
    cr_assert_eq(env_read_file(env_posix(), cur, 64, &data, &len, NULL), SHALE_OK);
    cr_assert_eq(len, 16);
    cr_assert_eq(memcmp(data, "MANIFEST-000001\n", 16), 0);
    free(data);
    version_set_free(vs);

    vs = recover_set(env_posix(), dir, NULL);
    version *v = version_set_current(vs);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        cr_assert_eq(v->nfiles[l], 0);
    }
    version_unref(v);
    cr_assert_eq(version_set_manifest_number(vs), 1);
    cr_assert_eq(version_set_next_file_number(vs), 2);
    cr_assert_eq(version_set_new_file_number(vs), 2);
    cr_assert_eq(version_set_next_file_number(vs), 3);
    version_set_mark_file_number_used(vs, 10);
    cr_assert_eq(version_set_next_file_number(vs), 10);
    version_set_mark_file_number_used(vs, 4);
    cr_assert_eq(version_set_next_file_number(vs), 10);
    version_set_free(vs);
    free(cur);
    tu_assert_no_leaks();
}

Test(vset, create_refuses_an_existing_database_and_recover_needs_current)
{
    shale_error err;
    version_set *vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_NOT_FOUND);
    version_edit e;
    version_edit_init(&e);
    add(&e, 0, 5, "a", "b", 1, 1);
    cr_assert_eq(version_set_apply(vs, &e, &err), SHALE_INVALID, "apply before create");
    cr_assert_eq(e.nadded, 0);
    version_edit_free(&e);
    version_set_free(vs);

    vs = create_set(env_posix(), dir, NULL);
    version_set_free(vs);
    vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_create(vs, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "CURRENT") != NULL, "%s", err.msg);
    version_set_free(vs);
}

Test(vset, current_naming_no_manifest_is_corruption)
{
    shale_error err;
    cr_assert_eq(env_write_file_atomic(env_posix(), dir, "CURRENT", "MANIFEST-000004\n", 16, NULL),
                 SHALE_OK);
    version_set *vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, "MANIFEST-000004") != NULL, "%s", err.msg);
    version_set_free(vs);

    cr_assert_eq(env_write_file_atomic(env_posix(), dir, "CURRENT", "garbage\n", 8, NULL),
                 SHALE_OK);
    vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, "CURRENT") != NULL, "%s", err.msg);
    version_set_free(vs);
}

/* Random flushes, moves and deletions of tables with disjoint key ranges (any level is legal). */
static void random_apply(version_set *vs, tu_rng *r, uint64_t *seq)
{
    version *v = version_set_current(vs);
    version_edit e;
    char lo[32], hi[32];
    size_t total = 0;

    version_edit_init(&e);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        total += v->nfiles[l];
    }
    uint64_t op = tu_rng_below(r, 4);
    if (op <= 1 || total == 0) {
        uint64_t n = version_set_new_file_number(vs);
        snprintf(lo, sizeof lo, "k%08" PRIu64 "a", n);
        snprintf(hi, sizeof hi, "k%08" PRIu64 "z", n);
        *seq += 1 + tu_rng_below(r, 100);
        add(&e, op == 0 ? 0 : (int)tu_rng_below(r, VERSION_LEVELS), n, lo, hi,
            100 + tu_rng_below(r, 1000), *seq);
        e.has_log_number = true;
        e.log_number = n;
        e.has_flushed_seq = true;
        e.flushed_seq = *seq;
        e.has_last_seq = true;
        e.last_seq = *seq + 5;
    } else {
        size_t pick = (size_t)tu_rng_below(r, total);
        for (int l = 0; l < VERSION_LEVELS; l++) {
            if (pick < v->nfiles[l]) {
                const file_meta *f = v->files[l][pick];
                del(&e, l, f->number);
                if (op == 2) { /* a move, keeping its number */
                    int to = (int)tu_rng_below(r, VERSION_LEVELS);
                    cr_assert_eq(version_edit_add_file(
                                     &e, to, f->number, f->size,
                                     slice_make(f->smallest.data, f->smallest.len), f->smallest_seq,
                                     slice_make(f->largest.data, f->largest.len), f->largest_seq,
                                     f->min_seq, f->max_seq, f->entries, f->deletions, NULL),
                                 SHALE_OK);
                }
                break;
            }
            pick -= v->nfiles[l];
        }
    }
    version_unref(v);
    apply_ok(vs, &e);
}

Test(vset, many_applies_survive_recovery)
{
    version_options o = {.manifest_roll_bytes = 1 << 20};
    version_set *vs = create_set(env_posix(), dir, &o);
    tu_rng r;
    uint64_t seq = 0;

    tu_rng_seed(&r, 99);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 60; i++) {
            random_apply(vs, &r, &seq);
        }
        char *before = describe(vs);
        uint64_t next = version_set_next_file_number(vs);
        uint64_t manifest = version_set_manifest_number(vs);
        version_set_free(vs);
        vs = recover_set(env_posix(), dir, &o);
        char *after = describe(vs);
        cr_assert_str_eq(after, before);
        cr_assert_geq(version_set_next_file_number(vs), next);
        cr_assert_eq(version_set_manifest_number(vs), manifest);
        cr_assert_eq(count_manifests(dir), 1);
        free(before);
        free(after);
    }
    cr_assert_gt(seq, 0);
    version_set_free(vs);
    tu_assert_no_leaks();
}

Test(vset, manifest_rolls_over_and_removes_the_old_one)
{
    version_options o = {.manifest_roll_bytes = 2048};
    version_set *vs = create_set(env_posix(), dir, &o);
    tu_rng r;
    uint64_t seq = 0, rolls = 0, last = version_set_manifest_number(vs);

    tu_rng_seed(&r, 5);
    for (int i = 0; i < 150; i++) {
        random_apply(vs, &r, &seq);
        uint64_t m = version_set_manifest_number(vs);
        if (m != last) {
            rolls++;
            cr_assert_gt(m, last);
            char *old = manifest_path(dir, last);
            cr_assert_lt(tu_file_size(old), 0, "old manifest removed");
            free(old);
            last = m;
        }
        cr_assert_eq(count_manifests(dir), 1);
        cr_assert_lt(version_set_manifest_bytes(vs), 2048 + 4096);
    }
    cr_assert_gt(rolls, 3);
    char *before = describe(vs);
    version_set_free(vs);
    vs = recover_set(env_posix(), dir, &o);
    char *after = describe(vs);
    cr_assert_str_eq(after, before);
    free(before);
    free(after);
    version_set_free(vs);
}

/* A set with `n` applied edits after create; returns the manifest size after each in sizes[]. */
static version_set *set_with_edits(int n, uint64_t *sizes, char **descs)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    char big[600];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < n; i++) {
        version_edit e;
        version_edit_init(&e);
        big[0] = (char)('a' + i); /* long keys: each edit is a sizeable record */
        add(&e, 1, 100 + (uint64_t)i, big, big, 1000, (uint64_t)i + 1);
        e.has_last_seq = true;
        e.last_seq = (uint64_t)i + 1;
        apply_ok(vs, &e);
        sizes[i] = version_set_manifest_bytes(vs);
        descs[i] = describe(vs);
    }
    return vs;
}

Test(vset, torn_last_record_is_ignored)
{
    uint64_t sizes[5];
    char *descs[5];
    version_set *vs = set_with_edits(5, sizes, descs);
    char *path = manifest_path(dir, version_set_manifest_number(vs));
    version_set_free(vs);

    cr_assert_eq((uint64_t)tu_file_size(path), sizes[4]);
    for (uint64_t cut = sizes[3] + 1; cut < sizes[4]; cut += 97) {
        tu_truncate(path, cut);
        vs = recover_set(env_posix(), dir, NULL);
        char *d = describe(vs);
        cr_assert_str_eq(d, descs[3], "cut at %" PRIu64, cut);
        cr_assert_eq(version_set_manifest_bytes(vs), sizes[3]);
        free(d);
        version_set_free(vs);
    }
    for (int i = 0; i < 5; i++) {
        free(descs[i]);
    }
    free(path);
}

Test(vset, corrupted_middle_record_is_corruption_naming_the_file)
{
    uint64_t sizes[5];
    char *descs[5];
    version_set *vs = set_with_edits(5, sizes, descs);
    uint64_t number = version_set_manifest_number(vs);
    char *path = manifest_path(dir, number);
    char name[32];
    shale_error err;
    version_set_free(vs);

    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    cr_assert_eq(tu_flip_bit(path, (sizes[1] + sizes[2]) / 2, 3), 0);
    vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, name) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "@") != NULL, "%s", err.msg);
    version_set_free(vs);
    for (int i = 0; i < 5; i++) {
        free(descs[i]);
    }
    free(path);
}

Test(vset, bad_edits_are_refused_and_change_nothing)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    version_edit e;
    shale_error err;

    version_edit_init(&e);
    add(&e, 1, 10, "c", "d", 100, 1);
    add(&e, 0, 11, "a", "z", 100, 2);
    apply_ok(vs, &e);
    char *before = describe(vs);

    static const char *const why[] = {"not in the version", "another level", "listed twice",
                                      "overlap", "overlap"};
    for (int k = 0; k < 5; k++) {
        version_edit_init(&e);
        switch (k) {
        case 0:
            del(&e, 1, 99);
            break;
        case 1:
            del(&e, 2, 10);
            break;
        case 2:
            add(&e, 3, 11, "x", "y", 1, 1);
            break;
        case 3:
            add(&e, 1, 12, "d", "e", 1, 1); /* touches table 10 at "d" */
            break;
        default:
            add(&e, 2, 13, "a", "m", 1, 1);
            add(&e, 2, 14, "b", "c", 1, 1);
            break;
        }
        cr_assert_eq(version_set_apply(vs, &e, &err), SHALE_INVALID, "case %d", k);
        cr_assert(strstr(err.msg, why[k]) != NULL, "case %d: %s", k, err.msg);
        cr_assert_eq(e.nadded, 0);
        version_edit_free(&e);
        char *now = describe(vs);
        cr_assert_str_eq(now, before);
        free(now);
    }
    /* Not broken: a good edit still applies, and a move in one edit is fine. */
    version_edit_init(&e);
    del(&e, 1, 10);
    add(&e, 2, 10, "c", "d", 100, 1);
    apply_ok(vs, &e);
    version *v = version_set_current(vs);
    cr_assert_eq(v->nfiles[1], 0);
    cr_assert_eq(v->nfiles[2], 1);
    version_unref(v);
    free(before);
    version_set_free(vs);
}

Test(vset, state_fields_are_filled_and_never_go_back)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    version_edit e;

    version_edit_init(&e);
    e.has_log_number = true;
    e.log_number = 7;
    e.has_flushed_seq = true;
    e.flushed_seq = 50;
    e.has_last_seq = true;
    e.last_seq = 60;
    apply_ok(vs, &e);
    version_edit_init(&e);
    e.has_log_number = true;
    e.log_number = 3;
    cr_assert_eq(version_set_apply(vs, &e, NULL), SHALE_OK);
    cr_assert(e.has_next_file && e.has_last_seq, "apply fills in the unset fields");
    cr_assert_eq(e.last_seq, 60);
    cr_assert_eq(e.next_file_number, version_set_next_file_number(vs));
    version_edit_free(&e);
    cr_assert_eq(version_set_log_number(vs), 7);
    cr_assert_eq(version_set_flushed_seq(vs), 50);
    cr_assert_eq(version_set_last_seq(vs), 60);
    version_set_free(vs);
    vs = recover_set(env_posix(), dir, NULL);
    cr_assert_eq(version_set_log_number(vs), 7);
    cr_assert_eq(version_set_flushed_seq(vs), 50);
    cr_assert_eq(version_set_last_seq(vs), 60);
    version_set_free(vs);
}

/* ---- faults ---- */

Test(vset, failed_sync_breaks_the_set_and_recovery_gives_the_durable_state)
{
    for (int mode = ENV_FAULT_DROP_ALL; mode <= ENV_FAULT_KEEP_RANDOM; mode++) {
        char sub[64];
        snprintf(sub, sizeof sub, "m%d", mode);
        char *d = tu_path(dir, sub);
        env_fault *fe = env_fault_new(env_posix());
        const shale_env *env = env_fault_env(fe);
        shale_error err, err2;

        cr_assert_eq(env_posix()->mkdir(env_posix(), d, NULL), SHALE_OK);
        version_set *vs = create_set(env, d, NULL);
        version_edit e;
        version_edit_init(&e);
        add(&e, 0, 10, "a", "b", 1, 1);
        apply_ok(vs, &e); /* a new manifest */
        version_edit_init(&e);
        add(&e, 0, 11, "a", "b", 1, 2);
        apply_ok(vs, &e); /* appended */
        char *durable = describe(vs);

        env_fault_fail_nth(fe, ENV_OP_SYNC, 1, EIO, false);
        version_edit_init(&e);
        add(&e, 0, 12, "a", "b", 1, 3);
        cr_assert_eq(version_set_apply(vs, &e, &err), SHALE_IO);
        version_edit_free(&e);
        char *now = describe(vs);
        cr_assert_str_eq(now, durable, "a failed apply installs nothing");
        free(now);
        version_edit_init(&e);
        add(&e, 0, 13, "a", "b", 1, 4);
        cr_assert_eq(version_set_apply(vs, &e, &err2), SHALE_IO, "broken for good");
        cr_assert_str_eq(err2.msg, err.msg);
        version_edit_free(&e);
        version_set_free(vs);

        env_fault_crash(fe);
        cr_assert_eq(env_fault_drop_unsynced(fe, (env_fault_drop_mode)mode, 11, NULL), SHALE_OK);
        vs = recover_set(env, d, NULL);
        now = describe(vs);
        if (mode == ENV_FAULT_DROP_ALL) {
            cr_assert_str_eq(now, durable);
        } else {
            /* The unsynced edit may or may not have survived; never a torn state. */
            version *v = version_set_current(vs);
            cr_assert(v->nfiles[0] == 2 || v->nfiles[0] == 3, "%s", now);
            version_unref(v);
        }
        free(now);
        free(durable);
        version_set_free(vs);
        env_fault_free(fe);
        free(d);
    }
}

Test(vset, failed_create_leaves_nothing_behind)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    shale_error err;
    char *cur = tu_path(dir, "CURRENT");
    char *m1 = manifest_path(dir, 1);

    /* The opens of a create: MANIFEST-000001, then CURRENT.tmp. */
    for (uint64_t n = 1; n <= 2; n++) {
        version_set *vs = version_set_new(env, dir, NULL);
        env_fault_fail_nth(fe, ENV_OP_OPEN, n, EIO, false);
        cr_assert_eq(version_set_create(vs, &err), SHALE_IO);
        cr_assert_eq(err.sys_errno, EIO);
        version_set_free(vs);
        cr_assert_lt(tu_file_size(cur), 0);
        cr_assert_lt(tu_file_size(m1), 0, "open #%" PRIu64 ": no manifest left behind", n);
    }
    version_set *vs = create_set(env, dir, NULL);
    version_set_free(vs);
    cr_assert_gt(tu_file_size(m1), 0);
    env_fault_free(fe);
    free(cur);
    free(m1);
}

Test(vset, a_current_switch_that_failed_before_its_rename_does_not_break_the_set)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    version_options o = {.manifest_roll_bytes = 1};
    version_set *vs = create_set(env, dir, &o);
    shale_error err;
    version_edit e;

    version_edit_init(&e);
    add(&e, 1, 10, "a", "b", 1, 1);
    apply_ok(vs, &e);
    /* Every apply rolls: the 2nd open is CURRENT.tmp. */
    env_fault_fail_nth(fe, ENV_OP_OPEN, 2, EIO, false);
    version_edit_init(&e);
    add(&e, 1, 11, "c", "d", 1, 1);
    cr_assert_eq(version_set_apply(vs, &e, &err), SHALE_IO);
    version_edit_free(&e);
    cr_assert_eq(count_manifests(dir), 1, "the unused new manifest is removed");
    version_edit_init(&e);
    add(&e, 1, 12, "e", "f", 1, 1);
    apply_ok(vs, &e);

    /* A failed directory sync after the rename leaves CURRENT in doubt: broken. */
    env_fault_fail_nth(fe, ENV_OP_SYNC_DIR, 3, EIO, false);
    version_edit_init(&e);
    add(&e, 1, 13, "g", "h", 1, 1);
    cr_assert_eq(version_set_apply(vs, &e, &err), SHALE_IO);
    version_edit_free(&e);
    version_edit_init(&e);
    add(&e, 1, 14, "i", "j", 1, 1);
    cr_assert_eq(version_set_apply(vs, &e, NULL), SHALE_IO);
    version_edit_free(&e);
    version_set_free(vs);

    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    vs = recover_set(env, dir, &o);
    version *v = version_set_current(vs);
    cr_assert_eq(v->nfiles[1], 2, "10 and 12; 13's CURRENT switch was undone");
    version_unref(v);
    version_set_free(vs);
    env_fault_free(fe);
}

Test(vset, a_version_may_outlive_the_set)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    version_edit e;

    version_edit_init(&e);
    add(&e, 2, 10, "a", "b", 1, 1);
    apply_ok(vs, &e);
    version *v = version_set_current(vs);
    version *older = v;
    version_ref(older);
    version_edit_init(&e);
    del(&e, 2, 10);
    apply_ok(vs, &e);
    version_set_free(vs);
    cr_assert_eq(v->nfiles[2], 1);
    cr_assert_eq(v->files[2][0]->number, 10);
    version_unref(v);
    version_unref(older); /* the last one frees the set */
    tu_assert_no_leaks();
}

typedef struct trial_result {
    shale_code apply_rc;
    char *state;
} trial_result;

/* In a copy of `tmpl` named `name`: recover over a fault env, apply edit A (a new manifest),
 * then edit B, which rolls to another one (roll bytes 1) with the nth op of `kind` failing
 * (n == 0: none); then power loss and recovery. */
static trial_result power_loss_trial(const char *tmpl, const char *name, env_op kind, uint64_t n,
                                     env_fault_drop_mode mode, uint64_t counts[ENV_OP_COUNT_],
                                     char **old_state, char **new_state)
{
    version_options o = {.manifest_roll_bytes = 1};
    char *d = tu_path(dir, name);
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    trial_result res = {0};
    uint64_t before[ENV_OP_COUNT_];
    shale_error err;
    version_edit e;

    tu_copy_dir(tmpl, d);
    version_set *vs = recover_set(env, d, &o);
    version_edit_init(&e);
    add(&e, 0, 50, "m", "n", 77, 100);
    e.has_log_number = true;
    e.log_number = 49;
    apply_ok(vs, &e);
    if (old_state != NULL) {
        *old_state = describe(vs);
    }
    for (int k = 0; k < ENV_OP_COUNT_; k++) {
        before[k] = env_fault_count(fe, (env_op)k);
    }
    if (n > 0) {
        env_fault_fail_nth(fe, kind, n, EIO, false);
    }
    version_edit_init(&e);
    del(&e, 0, 50);
    add(&e, 1, 51, "m", "n", 70, 100);
    e.has_log_number = true;
    e.log_number = 52;
    res.apply_rc = version_set_apply(vs, &e, &err);
    version_edit_free(&e);
    if (new_state != NULL) {
        cr_assert_eq(res.apply_rc, SHALE_OK, "%s", err.msg);
        *new_state = describe(vs);
    }
    if (counts != NULL) {
        for (int k = 0; k < ENV_OP_COUNT_; k++) {
            counts[k] = env_fault_count(fe, (env_op)k) - before[k];
        }
    }
    version_set_free(vs);
    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, mode, n * 31 + (uint64_t)kind, &err), SHALE_OK, "%s",
                 err.msg);

    /* Recovery must work, and the set must go on working (leftover files do not block it). */
    vs = version_set_new(env, d, &o);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_OK, "kind %d n %" PRIu64 ": %s", kind, n,
                 err.msg);
    res.state = describe(vs);
    version_edit_init(&e);
    add(&e, 5, 60, "x", "y", 5, 1);
    apply_ok(vs, &e);
    version_set_free(vs);
    vs = recover_set(env, d, &o);
    version *v = version_set_current(vs);
    cr_assert_eq(v->nfiles[5], 1);
    version_unref(v);
    /* A manifest whose CURRENT switch failed, or an old one whose removal failed, may be left
     * over: sweeping files no version names is the database's job (flush.c), not the set's. */
    cr_assert_leq(count_manifests(d), 2);
    version_set_free(vs);
    env_fault_free(fe);
    free(d);
    return res;
}

Test(vset, power_loss_during_a_roll_gives_the_old_or_the_new_state)
{
    static const env_op kinds[] = {ENV_OP_OPEN,     ENV_OP_WRITE,  ENV_OP_SYNC,
                                   ENV_OP_SYNC_DIR, ENV_OP_RENAME, ENV_OP_REMOVE};
    char *tmpl = tu_path(dir, "template");
    uint64_t counts[ENV_OP_COUNT_];
    char *old_state = NULL, *new_state = NULL;
    int trials = 0, olds = 0, news = 0;

    /* The durable starting point: a few tables. */
    cr_assert_eq(env_posix()->mkdir(env_posix(), tmpl, NULL), SHALE_OK);
    version_set *vs = create_set(env_posix(), tmpl, NULL);
    for (uint64_t i = 0; i < 4; i++) {
        version_edit e;
        char k[8];
        version_edit_init(&e);
        snprintf(k, sizeof k, "%c", (char)('a' + i));
        add(&e, (int)i, 10 + i, k, k, 100 + i, i + 1);
        apply_ok(vs, &e);
    }
    version_set_free(vs);

    trial_result dry = power_loss_trial(tmpl, "dry", ENV_OP_OPEN, 0, ENV_FAULT_DROP_ALL, counts,
                                        &old_state, &new_state);
    cr_assert_str_eq(dry.state, new_state, "no fault: the new state survives");
    cr_assert_str_neq(old_state, new_state);
    free(dry.state);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        cr_assert_gt(counts[kinds[k]], 0, "kind %d is exercised", kinds[k]);
        for (uint64_t n = 1; n <= counts[kinds[k]]; n++) {
            for (int mode = ENV_FAULT_DROP_ALL; mode <= ENV_FAULT_KEEP_RANDOM; mode++) {
                char name[64];
                snprintf(name, sizeof name, "t%d-%" PRIu64 "-%d", kinds[k], n, mode);
                trial_result r = power_loss_trial(tmpl, name, kinds[k], n,
                                                  (env_fault_drop_mode)mode, NULL, NULL, NULL);
                bool is_old = strcmp(r.state, old_state) == 0;
                bool is_new = strcmp(r.state, new_state) == 0;
                cr_assert(is_old || is_new, "kind %d n %" PRIu64 " mode %d: %s", kinds[k], n, mode,
                          r.state);
                if (r.apply_rc == SHALE_OK) {
                    cr_assert(is_new, "kind %d n %" PRIu64 ": acknowledged but lost", kinds[k], n);
                }
                olds += is_old;
                news += is_new;
                trials++;
                free(r.state);
            }
        }
    }
    cr_assert_gt(olds, 0);
    cr_assert_gt(news, 0);
    cr_assert_gt(trials, 20);
    free(old_state);
    free(new_state);
    free(tmpl);
}

/* ---- references ---- */

static void collect(uint64_t number, void *arg)
{
    uint64_t *set = arg; /* set[0] = count */
    set[++set[0]] = number;
}

Test(vset, a_table_stays_live_while_an_old_version_holds_it)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    version_edit e;
    uint64_t live[16];

    version_edit_init(&e);
    add(&e, 0, 5, "a", "b", 1, 1);
    add(&e, 0, 6, "c", "d", 1, 2);
    apply_ok(vs, &e);
    version *old = version_set_current(vs);
    file_meta *shared = NULL;
    for (size_t i = 0; i < old->nfiles[0]; i++) {
        if (old->files[0][i]->number == 6) {
            shared = old->files[0][i];
        }
    }
    cr_assert_not_null(shared);
    cr_assert_eq(old->files[0][0]->number, 6, "L0 is newest first");

    version_edit_init(&e);
    del(&e, 0, 5);
    add(&e, 1, 7, "a", "b", 1, 1);
    apply_ok(vs, &e);
    version *cur = version_set_current(vs);
    cr_assert_eq(cur->nfiles[0], 1);
    cr_assert_eq(cur->files[0][0], shared, "unchanged tables are shared between versions");
    cr_assert_eq(atomic_load(&shared->refs), 2);

    live[0] = 0;
    version_set_live_files(vs, collect, live);
    cr_assert_eq(live[0], 3, "5, 6 and 7, each once");
    cr_assert_eq(live[1], 5);
    cr_assert_eq(live[2], 6);
    cr_assert_eq(live[3], 7);

    version_unref(old);
    live[0] = 0;
    version_set_live_files(vs, collect, live);
    cr_assert_eq(live[0], 3,
                 "5 is kept until the next edit: the state before the last edit "
                 "needs it if that edit is lost");
    cr_assert_eq(live[1], 5);
    cr_assert_eq(live[2], 6);
    cr_assert_eq(live[3], 7);
    cr_assert_eq(atomic_load(&shared->refs), 1);

    cr_assert_eq(version_set_settle(vs, NULL), SHALE_OK);
    live[0] = 0;
    version_set_live_files(vs, collect, live);
    cr_assert_eq(live[0], 2, "a later durable edit lets 5 go");
    cr_assert_eq(live[1], 6);
    cr_assert_eq(live[2], 7);
    uint64_t bytes = version_set_manifest_bytes(vs);
    cr_assert_eq(version_set_settle(vs, NULL), SHALE_OK);
    cr_assert_eq(version_set_manifest_bytes(vs), bytes, "nothing kept: settle writes nothing");
    version_unref(cur);
    version_unref(NULL);
    version_set_free(vs);
    tu_assert_no_leaks();
}

typedef struct reader_arg {
    version_set *vs;
    _Atomic bool *stop;
    uint64_t seen;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    while (!atomic_load(a->stop)) {
        version *v = version_set_current(a->vs);
        version_ref(v);
        for (int l = 0; l < VERSION_LEVELS; l++) {
            for (size_t i = 0; i < v->nfiles[l]; i++) {
                a->seen += v->files[l][i]->number;
            }
        }
        version_unref(v);
        version_unref(v);
    }
    return NULL;
}

Test(vset, readers_on_other_threads_while_applying)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    _Atomic bool stop = false;
    pthread_t th[3];
    reader_arg args[3];

    for (int i = 0; i < 3; i++) {
        args[i] = (reader_arg){.vs = vs, .stop = &stop};
        cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    }
    for (uint64_t i = 0; i < 40; i++) {
        version_edit e;
        char k[16];
        version_edit_init(&e);
        snprintf(k, sizeof k, "k%03" PRIu64, i);
        add(&e, 0, 100 + i, k, k, 1, i + 1);
        if (i > 0) {
            del(&e, 0, 99 + i);
        }
        apply_ok(vs, &e);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    uint64_t live[8] = {0};
    version_set_live_files(vs, collect, live);
    cr_assert_eq(live[0], 2, "139, and 138 which the last edit removed");
    cr_assert_eq(live[1], 138);
    cr_assert_eq(live[2], 139);
    version_set_free(vs);
    tu_assert_no_leaks();
}

/* ---- compaction picking ---- */

static const version_options pick_opts = {
    .l0_compaction_trigger = 4,
    .base_level_bytes = 1000,
    .level_ratio = 10,
    .table_bytes = 100,
};

static version_set *pick_set(void)
{
    return create_set(env_posix(), dir, &pick_opts);
}

/* Applies one edit adding "level:number:lo:hi:size" tables (seq = number). */
static void build(version_set *vs, const char *const *specs)
{
    version_edit e;
    version_edit_init(&e);
    for (; *specs != NULL; specs++) {
        int level;
        unsigned long long number, size;
        char lo[32], hi[32];
        cr_assert_eq(sscanf(*specs, "%d:%llu:%31[^:]:%31[^:]:%llu", &level, &number, lo, hi, &size),
                     5, "%s", *specs);
        add(&e, level, number, lo, hi, size, number);
        version_set_mark_file_number_used(vs, number + 1);
    }
    apply_ok(vs, &e);
}

/* The numbers of inputs[w] as "n n n" in their order. */
static char *inputs(const compaction *c, int w)
{
    static char buf[2][256];
    size_t off = 0;
    buf[w][0] = '\0';
    for (size_t i = 0; i < c->ninputs[w]; i++) {
        off += (size_t)snprintf(buf[w] + off, sizeof buf[w] - off, "%s%" PRIu64, i ? " " : "",
                                c->inputs[w][i]->number);
    }
    return buf[w];
}

/* Applies the compaction's edit: inputs deleted, one output at level n+1 covering their hull
 * (numbered from 1000 up, away from the tables the tests build) holding keep_pct percent of the
 * input bytes (what the merge kept; at least 1 byte). */
static void finish_keeping(version_set *vs, compaction *c, unsigned keep_pct)
{
    static uint64_t next_output = 1000;
    version_edit e;
    shale_slice lo = {0}, hi = {0};
    uint64_t size = 0;
    bool first = true;

    version_edit_init(&e);
    cr_assert_eq(compaction_add_input_deletions(c, &e, NULL), SHALE_OK);
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            const file_meta *f = c->inputs[w][i];
            shale_slice s = slice_make(f->smallest.data, f->smallest.len);
            shale_slice l = slice_make(f->largest.data, f->largest.len);
            if (first || slice_cmp(s, lo) < 0) {
                lo = s;
            }
            if (first || slice_cmp(l, hi) > 0) {
                hi = l;
            }
            first = false;
            size += f->size;
        }
    }
    size = size * keep_pct / 100;
    if (size == 0) {
        size = 1;
    }
    version_set_mark_file_number_used(vs, next_output + 1);
    cr_assert_eq(version_edit_add_file(&e, c->output_level, next_output++, size, lo, 1, hi, 1, 1, 1,
                                       1, 0, NULL),
                 SHALE_OK);
    apply_ok(vs, &e);
    compaction_free(c);
}

static void finish(version_set *vs, compaction *c)
{
    finish_keeping(vs, c, 100);
}

Test(vpick, nothing_to_do_below_the_triggers)
{
    version_set *vs = pick_set();
    cr_assert_null(version_set_pick_compaction(vs));
    build(vs,
          (const char *const[]){"0:10:a:c:10", "0:11:b:d:10", "0:12:x:y:10", "1:20:a:b:900", NULL});
    cr_assert_null(version_set_pick_compaction(vs));
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_eq(p.l0_tables, 3);
    cr_assert_float_eq(p.max_score, 0.9, 1e-9);
    cr_assert_eq(p.pending_bytes, 0);
    version_set_free(vs);
}

Test(vpick, l0_trigger_takes_the_transitive_overlap_and_l1)
{
    version_set *vs = pick_set();
    /* Oldest first by seq: 10 [a,c] overlaps 11 [b,e], whose hull reaches 13 [e,f]; 12 [x,z]
     * overlaps none of them. */
    build(vs, (const char *const[]){"0:10:a:c:10", "0:11:b:e:10", "0:12:x:z:10", "0:13:e:f:10",
                                    "1:20:a:a1:50", "1:21:g:h:50", "1:22:y:z:50", NULL});
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 0);
    cr_assert_eq(c->output_level, 1);
    cr_assert_str_eq(inputs(c, 0), "13 11 10"); /* newest first, as in the version */
    cr_assert_str_eq(inputs(c, 1), "20");
    cr_assert_eq(c->max_output_bytes, 100);
    cr_assert(c->inputs[0][0]->being_compacted);
    cr_assert(!c->manual);

    /* While an L0 compaction runs no other L0 compaction starts, even for new tables. */
    build(vs, (const char *const[]){"0:30:p:q:10", "0:31:p:q:10", "0:32:p:q:10", NULL});
    cr_assert_null(version_set_pick_compaction(vs));
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_eq(p.l0_tables, 7);
    cr_assert_gt(p.pending_bytes, 0);
    finish(vs, c);

    c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 0);
    cr_assert_str_eq(inputs(c, 0), "12", "the oldest table left: 12 [x,z]");
    cr_assert_str_eq(inputs(c, 1), "22");
    compaction_free(c);
    version_set_free(vs);
    tu_assert_no_leaks();
}

Test(vpick, l0_is_skipped_when_an_overlapping_l1_table_is_busy)
{
    version_set *vs = pick_set();
    build(vs, (const char *const[]){"0:10:a:c:10", "0:11:a:c:10", "0:12:a:c:10", "0:13:a:c:10",
                                    "1:20:b:b:10", "2:30:a:z:10", NULL});
    compaction *busy = version_set_compact_range(vs, 1, S("b"), S("b"));
    cr_assert_not_null(busy);
    cr_assert(busy->manual);
    cr_assert_str_eq(inputs(busy, 0), "20");
    cr_assert_str_eq(inputs(busy, 1), "30");
    cr_assert_null(version_set_pick_compaction(vs));
    cr_assert_null(version_set_compact_range(vs, 0, S(""), S("")));
    compaction_free(busy);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_str_eq(inputs(c, 1), "20");
    compaction_free(c);
    version_set_free(vs);
}

Test(vpick, size_score_round_robin_and_its_pointer_survives_recovery)
{
    version_set *vs = pick_set();
    /* L1 at 1500 bytes against a 1000-byte target. */
    build(vs, (const char *const[]){"1:10:a:b:500", "1:11:c:d:500", "1:12:e:f:500", NULL});
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 1.5, 1e-9);
    cr_assert_eq(p.pending_bytes, 0, "nothing below L1 yet to rewrite");

    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 1);
    cr_assert_str_eq(inputs(c, 0), "10");
    cr_assert_eq(c->ninputs[1], 0);
    finish(vs, c); /* pointer -> "b" */
    build(vs, (const char *const[]){"1:13:0a:0b:500", NULL});

    c = version_set_pick_compaction(vs);
    cr_assert_str_eq(inputs(c, 0), "11", "the first table after the pointer");
    finish(vs, c); /* pointer -> "d" */
    build(vs, (const char *const[]){"1:14:x:y:500", NULL});

    version_set_free(vs);
    vs = recover_set(env_posix(), dir, &pick_opts);
    c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_str_eq(inputs(c, 0), "12", "the pointer was recovered");
    finish(vs, c); /* pointer -> "f" */
    c = version_set_pick_compaction(vs);
    cr_assert_str_eq(inputs(c, 0), "14");
    finish(vs, c); /* pointer -> "y"; only 13 [0a,0b] is left at 500 bytes */
    build(vs, (const char *const[]){"1:15:g:h:600", NULL});
    c = version_set_pick_compaction(vs);
    cr_assert_str_eq(inputs(c, 0), "13", "wraps around after the last table");
    compaction_free(c);
    version_set_free(vs);
}

Test(vpick, busy_tables_are_skipped)
{
    version_set *vs = pick_set();
    build(vs, (const char *const[]){"1:10:a:b:500", "1:11:c:d:500", "1:12:e:f:500", "2:20:a:b:10",
                                    "2:21:e:f:10", NULL});
    /* An L2 -> L3 compaction holds 20: 10 cannot go down, 11 can. */
    compaction *l2 = version_set_compact_range(vs, 2, S("a"), S("b"));
    cr_assert_not_null(l2);
    cr_assert_eq(l2->output_level, 3);
    compaction *c1 = version_set_pick_compaction(vs);
    cr_assert_not_null(c1);
    cr_assert_str_eq(inputs(c1, 0), "11");
    compaction *c2 = version_set_pick_compaction(vs);
    cr_assert_not_null(c2);
    cr_assert_str_eq(inputs(c2, 0), "12");
    cr_assert_str_eq(inputs(c2, 1), "21");
    cr_assert_null(version_set_pick_compaction(vs), "everything is busy");
    cr_assert_null(version_set_compact_range(vs, 1, S("c"), S("c")), "busy");
    compaction_free(l2);
    compaction *c3 = version_set_pick_compaction(vs);
    cr_assert_not_null(c3);
    cr_assert_str_eq(inputs(c3, 0), "10");
    cr_assert_str_eq(inputs(c3, 1), "20");
    compaction_free(c1);
    compaction_free(c2);
    compaction_free(c3);
    /* Freed compactions clear the marks. */
    version *v = version_set_current(vs);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            cr_assert(!v->files[l][i]->being_compacted);
        }
    }
    version_unref(v);
    version_set_free(vs);
}

/* In a new set built from `specs`, the picked compaction's inputs are `level` and `next`. */
static void expect_pick(const char *const *specs, const char *level, const char *next)
{
    version_set *vs = pick_set();
    build(vs, specs);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_str_eq(inputs(c, 0), level);
    cr_assert_str_eq(inputs(c, 1), next);
    compaction_free(c);
    version_set_free(vs);
}

Test(vpick, level_inputs_grow_when_the_next_level_does_not)
{
    /* 20 [a,d] covers 10 and 11: taking 11 too is free. 12 would pull in 21. */
    expect_pick((const char *const[]){"1:10:a:b:400", "1:11:c:d:400", "1:12:e:f:400",
                                      "2:20:a:d:100", "2:21:e:g:100", NULL},
                "10 11", "20");
}

Test(vpick, level_inputs_do_not_grow_when_the_next_level_would)
{
    expect_pick((const char *const[]){"1:10:a:b:400", "1:11:c:d:400", "1:12:x:y:400",
                                      "2:20:a:c:100", "2:21:d:e:100", NULL},
                "10", "20");
}

Test(vpick, the_highest_score_wins_and_the_last_level_never_compacts)
{
    version_set *vs = pick_set();
    /* L1: 1.2; L2: 30000 / 10000 = 3.0; L6 enormous but never a source. */
    build(vs, (const char *const[]){"1:10:a:b:1200", "2:20:c:d:30000", "6:60:a:z:999999999", NULL});
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 2);
    compaction *c2 = version_set_pick_compaction(vs);
    cr_assert_not_null(c2);
    cr_assert_eq(c2->level, 1, "L2 busy: the next score");
    cr_assert_null(version_set_pick_compaction(vs));
    cr_assert_null(version_set_compact_range(vs, VERSION_LEVELS - 1, S(""), S("")));
    cr_assert_null(version_set_compact_range(vs, -1, S(""), S("")));
    compaction_free(c);
    compaction_free(c2);
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 3.0, 1e-9);
    /* RocksDB's estimate: L1's 200 excess bytes rewrite L2 (30000 / 1200 + 1 = 26 times);
     * L2's excess moves into an empty L3, which counts nothing. */
    cr_assert_eq(p.pending_bytes, 5200);
    version_set_free(vs);

    char *d2 = tu_path(dir, "b");
    cr_assert_eq(env_posix()->mkdir(env_posix(), d2, NULL), SHALE_OK);
    vs = create_set(env_posix(), d2, &pick_opts);
    build(vs, (const char *const[]){"5:50:a:b:999999999", "6:60:a:z:999999999", NULL});
    c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 5);
    cr_assert_eq(c->output_level, 6);
    cr_assert_str_eq(inputs(c, 1), "60");
    cr_assert_eq(c->ngrandparents, 0);
    cr_assert(compaction_is_bottom_for_key(c, S("m")));
    compaction_free(c);
    version_set_free(vs);
    free(d2);
}

Test(vpick, compact_range_selects_by_key)
{
    version_set *vs = pick_set();
    build(vs, (const char *const[]){"1:10:a:b:10", "1:11:c:d:10", "1:12:e:f:10", "0:13:a:a:1",
                                    "0:14:m:n:1", NULL});
    compaction *c = version_set_compact_range(vs, 1, S("b5"), S("c"));
    cr_assert_not_null(c);
    cr_assert_str_eq(inputs(c, 0), "11");
    cr_assert(c->manual);
    compaction_free(c);
    cr_assert_null(version_set_compact_range(vs, 1, S("g"), S("h")), "nothing there");
    c = version_set_compact_range(vs, 1, S(""), S(""));
    cr_assert_str_eq(inputs(c, 0), "10 11 12");
    compaction_free(c);
    c = version_set_compact_range(vs, 1, S("d"), S(""));
    cr_assert_str_eq(inputs(c, 0), "11 12");
    compaction_free(c);
    c = version_set_compact_range(vs, 0, S(""), S("b"));
    cr_assert_str_eq(inputs(c, 0), "13");
    cr_assert_str_eq(inputs(c, 1), "10");
    compaction_free(c);
    version_set_free(vs);
}

Test(vpick, bottom_for_key_looks_below_the_output_level)
{
    version_set *vs = pick_set();
    build(vs, (const char *const[]){"1:10:a:z:5000", "2:20:a:z:10", "3:30:m:p:10", "5:50:x:y:10",
                                    NULL});
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->output_level, 2);
    cr_assert(compaction_is_bottom_for_key(c, S("a")));
    cr_assert(!compaction_is_bottom_for_key(c, S("m")));
    cr_assert(!compaction_is_bottom_for_key(c, S("n")));
    cr_assert(compaction_is_bottom_for_key(c, S("q")));
    cr_assert(!compaction_is_bottom_for_key(c, S("x")));
    cr_assert(!compaction_is_bottom_for_key(c, S("y")));
    cr_assert(compaction_is_bottom_for_key(c, S("z")));
    compaction_free(c);
    version_set_free(vs);
}

Test(vpick, outputs_stop_before_overlapping_too_many_grandparent_bytes)
{
    version_set *vs = pick_set();
    /* max_output_bytes 100: an output may overlap up to 1000 grandparent bytes. */
    build(vs, (const char *const[]){"1:10:a:z:5000", "3:30:b:c:600", "3:31:d:e:600", "3:32:f:g:600",
                                    NULL});
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->ngrandparents, 3);
    cr_assert(!compaction_should_stop_before(c, S("a")));
    cr_assert(!compaction_should_stop_before(c, S("cc"))); /* past 30: 600 */
    cr_assert(compaction_should_stop_before(c, S("ee")));  /* past 31: 1200 > 1000 */
    cr_assert(!compaction_should_stop_before(c, S("ff")));
    cr_assert(!compaction_should_stop_before(c, S("h"))); /* past 32: 600 */
    compaction_free(c);
    version_set_free(vs);
}

/* ---- dynamic level targets ---- */

/* Adds n tables of `size` bytes to `level`, numbered from `first`, table i covering
 * [<prefix><i>a, <prefix><i><last>]. */
static void build_level(version_set *vs, int level, uint64_t first, int n, const char *prefix,
                        char last, uint64_t size)
{
    version_edit e;
    version_edit_init(&e);
    for (int i = 0; i < n; i++) {
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%s%02da", prefix, i);
        snprintf(hi, sizeof hi, "%s%02d%c", prefix, i, last);
        add(&e, level, first + (uint64_t)i, lo, hi, size, first + (uint64_t)i);
    }
    version_set_mark_file_number_used(vs, first + (uint64_t)n);
    apply_ok(vs, &e);
}

/* A table with its entry and deletion counts. */
static void add_counted(version_edit *e, int level, uint64_t number, const char *lo, const char *hi,
                        uint64_t size, uint64_t entries, uint64_t deletions)
{
    shale_error err;
    cr_assert_eq(version_edit_add_file(e, level, number, size, S(lo), number, S(hi), number, number,
                                       number, entries, deletions, &err),
                 SHALE_OK, "%s", err.msg);
}

static uint64_t level_bytes(version_set *vs, int level)
{
    version *v = version_set_current(vs);
    uint64_t b = v->level_bytes[level];
    version_unref(v);
    return b;
}

/* Runs picked compactions to completion (each keeping keep_pct of its bytes) until nothing is
 * picked; fails if that takes more than `limit`. Returns how many ran. */
static int settle(version_set *vs, unsigned keep_pct, int limit)
{
    int n = 0;
    compaction *c;
    while ((c = version_set_pick_compaction(vs)) != NULL) {
        cr_assert_lt(n, limit, "compaction does not settle (level %d)", c->level);
        finish_keeping(vs, c, keep_pct);
        n++;
    }
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_lt(p.max_score, 1.0, "settled, yet a score is %f", p.max_score);
    return n;
}

Test(vpick, a_level_as_big_as_the_one_below_is_compacted_into_it)
{
    version_set *vs = pick_set();
    /* L2 9000 under its static 10000 target, L3 9000: sized from the bottom, L2's target is
     * max(9000 / 10, base 1000) = 1000. */
    build_level(vs, 1, 10, 1, "k", 'z', 500);
    build_level(vs, 2, 20, 9, "k", 'm', 1000);
    build_level(vs, 3, 40, 9, "k", 'z', 1000);
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 9.0, 1e-9);
    /* L2's excess 8000 moves into L3 (9000 / 9000 + 1 = 2 times). */
    cr_assert_eq(p.pending_bytes, 16000);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 2);
    cr_assert_eq(c->output_level, 3);
    cr_assert_str_eq(inputs(c, 0), "20");
    cr_assert_str_eq(inputs(c, 1), "40");
    compaction_free(c);

    /* Each merge drops the shadowed half: L3 stays at 9000, L2 drains to its target. */
    int n = settle(vs, 50, 20);
    cr_assert_eq(n, 9, "L2 at exactly its target still scores 1 and moves once more");
    cr_assert_eq(level_bytes(vs, 2), 0);
    cr_assert_eq(level_bytes(vs, 3), 9000);
    cr_assert_eq(level_bytes(vs, 1), 500, "L1 (500 of 1000) was left alone");
    version_set_free(vs);
    tu_assert_no_leaks();
}

Test(vpick, pushing_down_without_drops_settles_once_the_level_is_under_its_target)
{
    version_set *vs = pick_set();
    /* Nothing dropped: L3 grows as L2 drains and L2's target grows with it (L3 / 10). */
    build_level(vs, 2, 20, 9, "k", 'm', 1000);
    build_level(vs, 3, 40, 9, "k", 'z', 1000);
    int n = settle(vs, 100, 20);
    cr_assert_eq(n, 8);
    cr_assert_eq(level_bytes(vs, 2), 1000);
    cr_assert_eq(level_bytes(vs, 3), 17000, "1000 / (17000 / 10) < 1");
    version_set_free(vs);
}

Test(vpick, the_deepest_level_keeps_its_static_target_and_growth_adds_a_level)
{
    version_set *vs = pick_set();
    /* L2 is the deepest level: scored on its static 10000 target, it never moves into the
     * empty L3 while under it. */
    build_level(vs, 2, 20, 9, "k", 'z', 1000);
    cr_assert_null(version_set_pick_compaction(vs));
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 0.9, 1e-9);
    cr_assert_eq(p.pending_bytes, 0);

    /* Past it (15000 / 10000): a table moves into L3, which becomes the deepest level; L2's
     * target becomes max(L3 / 10, 1000), so L2 keeps draining into L3 until it holds about a
     * tenth of it (a cascade of moves, not a loop). */
    build_level(vs, 2, 30, 6, "p", 'z', 1000);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 2);
    cr_assert_eq(c->output_level, 3);
    cr_assert_eq(c->ninputs[1], 0);
    finish(vs, c);
    cr_assert_eq(level_bytes(vs, 3), 1000);
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 14.0, 1e-9, "L2 14000 against 1000");

    int n = settle(vs, 100, 20);
    cr_assert_eq(n, 13);
    cr_assert_eq(level_bytes(vs, 2), 1000);
    cr_assert_eq(level_bytes(vs, 3), 14000);
    version_set_free(vs);
}

Test(vpick, with_only_l1_its_target_is_the_base_and_l1_never_shrinks_below_it)
{
    version_set *vs = pick_set();
    build_level(vs, 1, 10, 3, "k", 'z', 300);
    cr_assert_null(version_set_pick_compaction(vs), "L1 900 of 1000");
    build_level(vs, 1, 20, 2, "m", 'z', 300);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 1);
    cr_assert_eq(c->output_level, 2);
    compaction_free(c);
    /* 1500 -> 1200 -> 900: L2 (600) is far under 10 x 1000 yet L1 keeps its 1000 target. */
    cr_assert_eq(settle(vs, 100, 10), 2);
    cr_assert_eq(level_bytes(vs, 1), 900);
    cr_assert_eq(level_bytes(vs, 2), 600);
    version_set_free(vs);
}

Test(vpick, dynamic_targets_are_floored_at_the_base_and_capped_at_the_static_ones)
{
    version_set *vs = pick_set();
    /* A huge L6: every target is the static one (capped): L1 900 of 1000, L2 9000 of 10000,
     * L3 90000 of 100000. */
    build(vs, (const char *const[]){"1:10:a:b:900", "2:20:a:b:9000", "3:30:a:b:90000",
                                    "6:60:a:z:999999999", NULL});
    cr_assert_null(version_set_pick_compaction(vs));
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 0.9, 1e-9);
    version_set_free(vs);

    /* A small L4 (20000): L3's target 2000, L2's and L1's the base 1000. */
    char *d2 = tu_path(dir, "b");
    cr_assert_eq(env_posix()->mkdir(env_posix(), d2, NULL), SHALE_OK);
    vs = create_set(env_posix(), d2, &pick_opts);
    build(vs, (const char *const[]){"1:10:a:b:900", "2:20:a:b:900", "3:30:a:b:5000",
                                    "4:40:a:z:20000", NULL});
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 2.5, 1e-9);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 3);
    cr_assert_null(version_set_pick_compaction(vs), "L1 and L2 are under 1000");
    compaction_free(c);
    version_set_free(vs);
    free(d2);
}

Test(vpick, tombstone_heavy_tables_score_as_the_entries_they_shadow)
{
    version_set *vs = pick_set();
    version_edit e;
    version_edit_init(&e);
    /* L1: 500 bytes of 100 tombstones. L3: 9000 bytes of 90 live entries, so an entry averages
     * 9500 / 90 bytes; the tombstones count (2 * 100 - 100) * 9500 / 90 * 2 = 21111 more. */
    add_counted(&e, 1, 10, "a", "m", 500, 100, 100);
    add_counted(&e, 3, 30, "a", "z", 9000, 90, 0);
    version_set_mark_file_number_used(vs, 31);
    apply_ok(vs, &e);
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, (500.0 + 100.0 * 9500.0 / 90.0 * 2.0) / 1000.0, 1e-9);
    cr_assert_eq(p.pending_bytes, 0, "pending bytes are actual sizes: L1 is under 1000");
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 1);
    finish(vs, c); /* into L2 (as one live entry, as finish writes it) */
    /* In L2 it is compensated no more; L2 (500) is under its target 1000. */
    cr_assert_null(version_set_pick_compaction(vs));
    version_set_free(vs);

    /* Fewer than half tombstones: no compensation (L1 at 900 of 1000). */
    char *d2 = tu_path(dir, "b");
    cr_assert_eq(env_posix()->mkdir(env_posix(), d2, NULL), SHALE_OK);
    vs = create_set(env_posix(), d2, &pick_opts);
    version_edit_init(&e);
    add_counted(&e, 1, 10, "a", "m", 900, 100, 49);
    add_counted(&e, 3, 30, "a", "z", 9000, 90, 0);
    version_set_mark_file_number_used(vs, 31);
    apply_ok(vs, &e);
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 0.9, 1e-9);
    cr_assert_null(version_set_pick_compaction(vs));
    version_set_free(vs);
    free(d2);
}

Test(vpick, tombstones_in_the_deepest_level_are_not_compensated)
{
    version_set *vs = pick_set();
    version_edit e;
    version_edit_init(&e);
    /* Only tombstones (kept for a snapshot, say) in the deepest level, under its static target:
     * moving them into an empty level would drop nothing, so they stay. */
    add_counted(&e, 1, 10, "a", "b", 900, 10, 0);
    add_counted(&e, 2, 20, "a", "z", 5000, 1000, 1000);
    version_set_mark_file_number_used(vs, 21);
    apply_ok(vs, &e);
    version_pressure p;
    version_set_pressure(vs, &p);
    cr_assert_float_eq(p.max_score, 0.9, 1e-9);
    cr_assert_null(version_set_pick_compaction(vs));
    /* With a level below them they shadow what it holds, and are pushed down to it. */
    version_edit_init(&e);
    add_counted(&e, 3, 30, "a", "z", 20000, 100, 0);
    version_set_mark_file_number_used(vs, 31);
    apply_ok(vs, &e);
    compaction *c = version_set_pick_compaction(vs);
    cr_assert_not_null(c);
    cr_assert_eq(c->level, 2);
    cr_assert_str_eq(inputs(c, 1), "30");
    finish(vs, c);
    cr_assert_eq(settle(vs, 100, 10), 0);
    cr_assert_eq(level_bytes(vs, 2), 0);
    cr_assert_eq(level_bytes(vs, 1), 900);
    version_set_free(vs);
}

Test(vpick, random_trees_settle_with_every_score_below_one)
{
    tu_rng r;
    int compactions = 0;
    tu_rng_seed(&r, 0x1e7e15);
    for (int trial = 0; trial < 40; trial++) {
        char *d = tu_path(dir, "t");
        tu_rm_rf(d);
        cr_assert_eq(env_posix()->mkdir(env_posix(), d, NULL), SHALE_OK);
        version_set *vs = create_set(env_posix(), d, &pick_opts);
        version_edit e;
        version_edit_init(&e);
        uint64_t number = 10;
        for (int level = 1; level <= 4; level++) {
            /* Disjoint tables in distinct slots of 100. */
            bool used[100] = {false};
            int n = (int)tu_rng_below(&r, 12);
            for (int i = 0; i < n; i++) {
                int slot = (int)tu_rng_below(&r, 100);
                if (used[slot]) {
                    continue;
                }
                used[slot] = true;
                int a = (int)tu_rng_below(&r, 9);
                int b = a + 1 + (int)tu_rng_below(&r, (uint64_t)(9 - a));
                char lo[16], hi[16];
                snprintf(lo, sizeof lo, "k%02d%d", slot, a);
                snprintf(hi, sizeof hi, "k%02d%d", slot, b);
                uint64_t entries = 1 + tu_rng_below(&r, 100);
                uint64_t deletions = tu_rng_below(&r, 3) == 0 ? tu_rng_below(&r, entries + 1) : 0;
                add_counted(&e, level, number, lo, hi, 100 + tu_rng_below(&r, 4000), entries,
                            deletions);
                number++;
            }
        }
        version_set_mark_file_number_used(vs, number);
        apply_ok(vs, &e);
        unsigned keep = 30 + (unsigned)tu_rng_below(&r, 71);
        compactions += settle(vs, keep, 200);
        /* Settled: every level above the deepest holds at most its target. */
        version *v = version_set_current(vs);
        int lmax = 0;
        for (int l = 1; l < VERSION_LEVELS; l++) {
            if (v->nfiles[l] > 0) {
                lmax = l;
            }
        }
        for (int l = 1; l < lmax; l++) {
            uint64_t t = v->level_bytes[lmax];
            for (int k = lmax - 1; k >= l; k--) {
                uint64_t cap = 1000;
                for (int j = 2; j <= k; j++) {
                    cap *= 10;
                }
                t = t / 10 < 1000 ? 1000 : t / 10;
                t = t < cap ? t : cap;
            }
            cr_assert_lt(v->level_bytes[l], t, "trial %d: L%d %" PRIu64 " of %" PRIu64, trial, l,
                         v->level_bytes[l], t);
        }
        version_unref(v);
        version_set_free(vs);
        tu_rm_rf(d);
        free(d);
    }
    cr_assert_gt(compactions, 40, "the trees needed work");
}

/* ---- check ---- */

static void make_table(const char *d, uint64_t number, size_t size)
{
    char p[4096];
    env_file *f = NULL;
    char *zeros = calloc(1, size + 1);
    version_table_name(p, sizeof p, d, number);
    cr_assert_eq(
        env_posix()->open_file(env_posix(), p, ENV_WRITE | ENV_CREATE | ENV_TRUNC, &f, NULL),
        SHALE_OK);
    cr_assert_eq(env_file_append(f, zeros, size, NULL), SHALE_OK);
    cr_assert_eq(env_file_close(f, NULL), SHALE_OK);
    free(zeros);
}

Test(vset, check_finds_missing_and_wrong_sized_tables)
{
    version_set *vs = create_set(env_posix(), dir, NULL);
    shale_buf report = {0};
    shale_error err;

    build(vs, (const char *const[]){"0:10:a:b:100", "1:11:a:b:200", "2:12:c:d:300", NULL});
    make_table(dir, 10, 100);
    make_table(dir, 11, 200);
    make_table(dir, 12, 300);
    cr_assert_eq(version_set_check(vs, &report, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(report.len, 0);

    char p[4096];
    version_table_name(p, sizeof p, dir, 11);
    cr_assert_eq(remove(p), 0);
    make_table(dir, 12, 299);
    cr_assert_eq(version_set_check(vs, &report, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, "2 problems") != NULL, "%s", err.msg);
    cr_assert(buf_append(&report, "", 1, NULL) == SHALE_OK);
    cr_assert(strstr(report.data, "000011.sst: missing") != NULL, "%s", (char *)report.data);
    cr_assert(strstr(report.data, "000012.sst: 299 bytes, the manifest says 300") != NULL, "%s",
              (char *)report.data);
    buf_free(&report);
    version_set_free(vs);
}

/* Writes a manifest by hand: records are edits; the first gets the FORMAT field (a snapshot). */
static void write_manifest(const char *d, uint64_t number, version_edit *edits, size_t n,
                           bool snapshot_first)
{
    char name[32], line[32];
    wal_writer *w = NULL;
    shale_error err;

    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    cr_assert_eq(wal_writer_create(env_posix(), d, name, number, &w, &err), SHALE_OK, "%s",
                 err.msg);
    for (size_t i = 0; i < n; i++) {
        shale_buf enc = {0}, rec = {0};
        uint8_t head[3] = {WAL_REC_EDIT, 8, 1};
        cr_assert_eq(version_edit_encode(&edits[i], &enc, NULL), SHALE_OK);
        bool snap = i == 0 && snapshot_first;
        cr_assert_eq(buf_append(&rec, head, snap ? 3 : 1, NULL), SHALE_OK);
        cr_assert_eq(buf_append(&rec, enc.data, enc.len, NULL), SHALE_OK);
        if (snap) { /* one more field in the trailer's count */
            uint8_t *t = (uint8_t *)rec.data + rec.len - 8;
            coding_put_fixed32(t, coding_get_fixed32(t) + 1);
        }
        cr_assert_eq(wal_writer_add(w, rec.data, rec.len, NULL), SHALE_OK);
        buf_free(&enc);
        buf_free(&rec);
        version_edit_free(&edits[i]);
    }
    cr_assert_eq(wal_writer_close(w, true, NULL), SHALE_OK);
    int len = snprintf(line, sizeof line, "%s\n", name);
    cr_assert_eq(env_write_file_atomic(env_posix(), d, "CURRENT", line, (size_t)len, NULL),
                 SHALE_OK);
}

static void expect_recover_corruption(const char *want)
{
    shale_error err;
    version_set *vs = version_set_new(env_posix(), dir, NULL);
    cr_assert_eq(version_set_recover(vs, &err), SHALE_CORRUPTION, "want %s", want);
    cr_assert(strstr(err.msg, want) != NULL, "%s", err.msg);
    version_set_free(vs);
}

Test(vset, recovery_refuses_inconsistent_manifests_and_check_reports_them)
{
    version_edit e[2];

    /* Overlapping level-1 tables, and a number not below next_file_number. */
    version_edit_init(&e[0]);
    e[0].has_next_file = true;
    e[0].next_file_number = 12;
    add(&e[0], 1, 10, "a", "m", 5, 1);
    add(&e[0], 1, 11, "k", "z", 5, 1);
    add(&e[0], 2, 40, "a", "b", 5, 1);
    write_manifest(dir, 3, e, 1, true);
    expect_recover_corruption("overlap");
    make_table(dir, 10, 5);
    make_table(dir, 11, 5);
    make_table(dir, 40, 5);
    version_set *vs = version_set_new(env_posix(), dir, NULL);
    shale_buf report = {0};
    shale_error err;
    cr_assert_eq(version_set_check(vs, &report, &err), SHALE_CORRUPTION);
    cr_assert(buf_append(&report, "", 1, NULL) == SHALE_OK);
    cr_assert(strstr(report.data, "000010 and 000011 overlap") != NULL, "%s", (char *)report.data);
    cr_assert(strstr(report.data, "table 000040: number not below") != NULL, "%s",
              (char *)report.data);
    buf_free(&report);
    version_set_free(vs);

    /* A deletion of a table never added. */
    version_edit_init(&e[0]);
    add(&e[0], 1, 10, "a", "b", 5, 1);
    version_edit_init(&e[1]);
    del(&e[1], 1, 99);
    write_manifest(dir, 4, e, 2, true);
    expect_recover_corruption("000099");

    /* A table listed twice. */
    version_edit_init(&e[0]);
    add(&e[0], 1, 10, "a", "b", 5, 1);
    version_edit_init(&e[1]);
    add(&e[1], 2, 10, "a", "b", 5, 1);
    write_manifest(dir, 5, e, 2, true);
    expect_recover_corruption("listed twice");

    /* No snapshot first. */
    version_edit_init(&e[0]);
    add(&e[0], 1, 10, "a", "b", 5, 1);
    write_manifest(dir, 6, e, 1, false);
    expect_recover_corruption("not a snapshot");

    /* A manifest with only its header. */
    write_manifest(dir, 7, e, 0, true);
    expect_recover_corruption("no snapshot");

    /* The wrong file number in the header. */
    version_edit_init(&e[0]);
    write_manifest(dir, 8, e, 1, true);
    char *from = manifest_path(dir, 8), *to = manifest_path(dir, 9);
    cr_assert_eq(rename(from, to), 0);
    cr_assert_eq(env_write_file_atomic(env_posix(), dir, "CURRENT", "MANIFEST-000009\n", 16, NULL),
                 SHALE_OK);
    expect_recover_corruption("file number 8");
    free(from);
    free(to);
}
