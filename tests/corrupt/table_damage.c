/*
 * table_damage: damaged sorted tables (NNNNNN.sst), against the public API and `shale check`.
 *
 * A template database holds three tables that never overlap, so every key lives in exactly one:
 * keys 0..199 compacted into level 1, keys 200..299 and 300..399 flushed as two level-0 tables.
 * Each case copies it, damages one table at a place found through the table's own footer and
 * properties (src/sst/sst_format.h; the test reads them byte by byte, as a damaging tool would):
 * a bit in data block 0, in the index block, in the footer's checksummed fields and its magic, in
 * the properties block, in the filter block; or the file cut short, or removed. Then:
 *   - `shale check DIR` ($SHALE_BIN) exits 1 and names the file;
 *   - the database opens (tables are opened lazily);
 *   - a get of an affected key, and full scans both ways, fail with SHALE_CORRUPTION and a message
 *     naming the file ("NNNNNN.sst") and the block kind; nothing crashes, no wrong value is ever
 *     returned; keys of the other tables still read fine (the damage stays contained);
 *   - a compaction over the damaged table fails with SHALE_CORRUPTION (it never writes damaged
 *     data onward) and the database stays readable.
 * A damaged filter is the exception: a filter is only an optimisation, so reads may ignore the
 * damage (answering from the data blocks) or report it, but never answer wrong; `shale check`
 * must still report it.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale.h"

#include "base/coding.h"
#include "sst/sst_format.h"
#include "testutil.h"

#define NKEYS 400

static shale_slice dkey(char *buf, int k)
{
    int n = snprintf(buf, 32, "dmg-%05d", k);
    return (shale_slice){buf, (size_t)n};
}

static shale_slice dval(char *buf, int k)
{
    int n = snprintf(buf, 300, "value-of-%d|", k);
    size_t len = 150 + (size_t)(k * 37 % 100);
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (k * 3 + (int)i) % 26);
    }
    return (shale_slice){buf, len};
}

static shale_options dmg_opts(bool create)
{
    return (shale_options){
        .create_if_missing = create,
        .max_memory_mb = 4,
        .write_buffer_bytes = 64 * 1024,
        .table_bytes = 256 * 1024, /* level 1 in one table */
        .l0_compaction_trigger = 8,
    };
}

/* ---- the template --------------------------------------------------------------------------- */

typedef struct table_info {
    char name[32];
    uint64_t size;
    sst_handle index, filter, props;
    int lo, hi; /* key range, from the properties block */
    int level;  /* 0 for the flushed tables, 1 for the compacted one */
} table_info;

typedef struct tmpl {
    char *root, *src, *work;
    table_info tables[8];
    size_t ntables;
} tmpl;

static void put_range(shale_db *db, int from, int to)
{
    char kb[32], vb[300];
    for (int k = from; k < to; k++) {
        shale_error err = {0};
        cr_assert_eq(shale_put(db, NULL, dkey(kb, k), dval(vb, k), &err), SHALE_OK, "%s", err.msg);
    }
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    int64_t size = tu_file_size(path);
    cr_assert_gt(size, 0);
    uint8_t *buf = malloc((size_t)size);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

/* Reads the footer and properties of one table (format: sst_format.h). */
static void inspect_table(const char *dir, table_info *t)
{
    char *path = tu_path(dir, t->name);
    size_t len = 0;
    uint8_t *b = read_whole(path, &len);
    const uint8_t *ft = b + len - SST_FOOTER_SIZE;

    cr_assert_gt(len, SST_FOOTER_SIZE);
    cr_assert_eq(coding_get_fixed64(ft + SST_FOOTER_MAGIC), SST_MAGIC, "%s: no table magic",
                 t->name);
    t->size = len;
    t->index = (sst_handle){coding_get_fixed64(ft + SST_FOOTER_INDEX),
                            coding_get_fixed64(ft + SST_FOOTER_INDEX + 8)};
    t->filter = (sst_handle){coding_get_fixed64(ft + SST_FOOTER_FILTER),
                             coding_get_fixed64(ft + SST_FOOTER_FILTER + 8)};
    t->props = (sst_handle){coding_get_fixed64(ft + SST_FOOTER_PROPS),
                            coding_get_fixed64(ft + SST_FOOTER_PROPS + 8)};
    cr_assert(t->index.size > 0 && t->index.offset + t->index.size < len, "%s: index handle",
              t->name);
    cr_assert(t->props.size > 0 && t->props.offset + t->props.size < len, "%s: props handle",
              t->name);
    cr_assert(t->filter.size > 0 && t->filter.offset + t->filter.size < len, "%s: filter handle",
              t->name);
    cr_assert_gt(t->filter.offset, 64, "%s: the filter starts at %" PRIu64 ": no data block?",
                 t->name, t->filter.offset);
    /* Properties: field_count fixed32 | fields fixed64... | len-prefixed smallest, largest. */
    const uint8_t *p = b + t->props.offset;
    const uint8_t *end = p + t->props.size;
    uint32_t fields = coding_get_fixed32(p);
    cr_assert(fields >= SST_PROP_COUNT && fields < SST_PROP_MAX_FIELDS, "%s: %u property fields",
              t->name, fields);
    p += 4 + (size_t)fields * 8;
    const uint8_t *key = NULL;
    uint32_t klen = 0;
    int bounds[2];
    for (int i = 0; i < 2; i++) {
        p = coding_get_length_prefixed(p, end, &key, &klen);
        cr_assert_not_null(p, "%s: properties: bad key", t->name);
        char text[32];
        cr_assert(klen < sizeof text);
        memcpy(text, key, klen);
        text[klen] = '\0';
        cr_assert_eq(sscanf(text, "dmg-%d", &bounds[i]), 1, "%s: key '%s'", t->name, text);
    }
    t->lo = bounds[0];
    t->hi = bounds[1];
    t->level = t->lo >= 200 ? 0 : 1;
    free(b);
    free(path);
}

static void build_template(tmpl *t)
{
    shale_options o = dmg_opts(true);
    shale_error err = {0};
    shale_db *db = NULL;

    memset(t, 0, sizeof *t);
    t->root = tu_tmpdir("tdamage");
    t->src = tu_path(t->root, "src");
    t->work = tu_path(t->root, "work");
    cr_assert_eq(shale_open(t->src, &o, &db, &err), SHALE_OK, "%s", err.msg);
    put_range(db, 0, 200);
    cr_assert_eq(shale_compact(db, &err), SHALE_OK, "%s", err.msg);
    put_range(db, 200, 300);
    cr_assert_eq(shale_flush(db, &err), SHALE_OK, "%s", err.msg);
    put_range(db, 300, 400);
    cr_assert_eq(shale_flush(db, &err), SHALE_OK, "%s", err.msg);
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_eq(st.level_tables[0], 2, "template: %" PRIu64 " level-0 tables", st.level_tables[0]);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);

    size_t n = 0;
    char **names = tu_list_dir(t->src, &n);
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "sst")) {
            cr_assert_lt(t->ntables, 8);
            table_info *ti = &t->tables[t->ntables++];
            snprintf(ti->name, sizeof ti->name, "%s", names[i]);
            inspect_table(t->src, ti);
        }
    }
    tu_free_names(names, n);
    cr_assert_eq(t->ntables, 3, "template: %zu tables", t->ntables);
    /* The three tables cover 0..399 without overlap. */
    int covered = 0;
    for (size_t i = 0; i < t->ntables; i++) {
        covered += t->tables[i].hi - t->tables[i].lo + 1;
    }
    cr_assert_eq(covered, NKEYS, "template: the tables overlap or miss keys");
}

static void tmpl_free(tmpl *t)
{
    tu_rm_rf(t->root);
    free(t->root);
    free(t->src);
    free(t->work);
}

/* ---- `shale check` -------------------------------------------------------------------------- */

typedef struct run_out {
    int code;
    char *text; /* stdout + stderr */
} run_out;

/* Runs `$SHALE_BIN check dir`; false (and nothing run) when SHALE_BIN is not set. */
static bool shale_check(const char *dir, run_out *out)
{
    out->code = tu_run_shale((const char *const[]){"check", dir, NULL}, &out->text);
    return out->code >= 0;
}

/* ---- the cases ------------------------------------------------------------------------------ */

typedef enum dmg_kind {
    D_DATA,
    D_INDEX,
    D_FOOTER_FIELD,
    D_FOOTER_MAGIC,
    D_PROPS,
    D_FILTER,
    D_TRUNCATED,
    D_MISSING,
} dmg_kind;

static const struct {
    const char *what;
    const char *needle; /* the block kind the message must name (NULL: any) */
} kinds[] = {
    [D_DATA] = {"a bit of data block 0", "data"},
    [D_INDEX] = {"a bit of the index block", "index"},
    [D_FOOTER_FIELD] = {"a bit of the footer's index handle", "footer"},
    [D_FOOTER_MAGIC] = {"a bit of the footer's magic", "footer"},
    [D_PROPS] = {"a bit of the properties block", "propert"},
    [D_FILTER] = {"a bit of the filter block", "filter"},
    [D_TRUNCATED] = {"the file cut in half", NULL},
    [D_MISSING] = {"the file removed", NULL},
};

static void damage(const char *path, const table_info *t, dmg_kind kind)
{
    uint64_t off = 0;
    switch (kind) {
    case D_DATA:
        off = 20; /* data blocks start at 0; the first is far longer than 20 bytes */
        break;
    case D_INDEX:
        off = t->index.offset + t->index.size / 2;
        break;
    case D_FOOTER_FIELD:
        off = t->size - SST_FOOTER_SIZE + SST_FOOTER_INDEX + 1;
        break;
    case D_FOOTER_MAGIC:
        off = t->size - 1;
        break;
    case D_PROPS:
        off = t->props.offset + 2;
        break;
    case D_FILTER:
        off = t->filter.offset + t->filter.size / 2;
        break;
    case D_TRUNCATED:
        cr_assert_eq(tu_truncate(path, t->size / 2), 0);
        return;
    case D_MISSING:
        cr_assert_eq(unlink(path), 0);
        return;
    }
    cr_assert_eq(tu_flip_bit(path, off, (int)(off % 7)), 0, "flip %s @%" PRIu64, path, off);
}

/* A failed read: the code is CORRUPTION (a missing file may also be IO), the message names the
 * file and, when given, the block kind. */
static void expect_damage_error(shale_code rc, const shale_error *err, const table_info *t,
                                dmg_kind kind, const char *ctx)
{
    if (kind == D_MISSING) {
        cr_assert(rc == SHALE_CORRUPTION || rc == SHALE_IO,
                  "%s: returned %s (%s), want CORRUPTION (or IO) for a missing table", ctx,
                  shale_strerror(rc), err->msg);
    } else {
        cr_assert_eq(rc, SHALE_CORRUPTION, "%s: returned %s (%s), want CORRUPTION", ctx,
                     shale_strerror(rc), err->msg);
    }
    cr_assert_eq(err->code, rc, "%s: err.code %d", ctx, err->code);
    cr_assert(strstr(err->msg, t->name) != NULL, "%s: the message does not name %s: '%s'", ctx,
              t->name, err->msg);
    if (kinds[kind].needle != NULL) {
        cr_assert(strstr(err->msg, kinds[kind].needle) != NULL,
                  "%s: the message does not name the %s block: '%s'", ctx, kinds[kind].needle,
                  err->msg);
    }
}

static void expect_value(shale_db *db, int k, const char *ctx)
{
    char kb[32], vb[300];
    shale_buf got = {0};
    shale_error err = {0};
    shale_code rc = shale_get(db, NULL, dkey(kb, k), &got, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: key %d (in an intact table): %s (%s)", ctx, k,
                 shale_strerror(rc), err.msg);
    shale_slice want = dval(vb, k);
    cr_assert(got.len == want.len && memcmp(got.data, want.data, want.len) == 0,
              "%s: key %d: wrong value", ctx, k);
    shale_buf_free(&got);
}

/* A full scan in one direction: every key it returns is right and in order; returns the final
 * status (and fills err). */
static shale_code scan(shale_db *db, bool backward, int *count, shale_error *err, const char *ctx)
{
    shale_iter *it = NULL;
    char vb[300];
    int k = backward ? NKEYS - 1 : 0;

    cr_assert_eq(shale_iter_new(db, NULL, &it, err), SHALE_OK, "%s: iter_new: %s", ctx, err->msg);
    if (backward) {
        shale_iter_seek_last(it);
    } else {
        shale_iter_seek_first(it);
    }
    *count = 0;
    while (shale_iter_valid(it)) {
        char text[32];
        shale_slice key = shale_iter_key(it);
        int got = -1;
        cr_assert_lt(key.len, sizeof text);
        memcpy(text, key.data, key.len);
        text[key.len] = '\0';
        cr_assert(sscanf(text, "dmg-%d", &got) == 1, "%s: scan returned '%s'", ctx, text);
        /* Keys may be skipped only by failing, never silently: the next key is the expected
         * one. */
        cr_assert_eq(got, k, "%s: the %s scan jumped from key %d to key %d", ctx,
                     backward ? "backward" : "forward", k, got);
        shale_slice v = shale_iter_value(it);
        shale_slice want = dval(vb, k);
        cr_assert(v.len == want.len && memcmp(v.data, want.data, v.len) == 0,
                  "%s: scan: key %d has a wrong value", ctx, k);
        (*count)++;
        k += backward ? -1 : 1;
        if (backward) {
            shale_iter_prev(it);
        } else {
            shale_iter_next(it);
        }
    }
    shale_code rc = shale_iter_status(it, err);
    shale_iter_free(it);
    return rc;
}

static void damage_case(tmpl *tp, size_t ti, dmg_kind kind)
{
    const table_info *t = &tp->tables[ti];
    char ctx[160];
    shale_error err = {0};
    shale_db *db = NULL;
    shale_options o = dmg_opts(false);
    bool lenient = kind == D_FILTER;

    snprintf(ctx, sizeof ctx, "%s (level %d, keys %d..%d): %s", t->name, t->level, t->lo, t->hi,
             kinds[kind].what);
    tu_rm_rf(tp->work);
    tu_copy_dir(tp->src, tp->work);
    char *path = tu_path(tp->work, t->name);
    damage(path, t, kind);

    /* The offline checker finds it first (it changes nothing). */
    run_out ro;
    if (shale_check(tp->work, &ro)) {
        cr_assert_eq(ro.code, 1, "%s: shale check exited %d, want 1 (damage); output:\n%s", ctx,
                     ro.code, ro.text);
        cr_assert(strstr(ro.text, t->name) != NULL, "%s: shale check does not name %s:\n%s", ctx,
                  t->name, ro.text);
        free(ro.text);
    }

    shale_code rc = shale_open(tp->work, &o, &db, &err);
    if (rc != SHALE_OK && (kind == D_MISSING || kind == D_TRUNCATED)) {
        /* An open that checks the tables the manifest lists may refuse here already. */
        expect_damage_error(rc, &err, t, kind, ctx);
        free(path);
        return;
    }
    cr_assert_eq(rc, SHALE_OK, "%s: open: %s (%s): tables are opened lazily", ctx,
                 shale_strerror(rc), err.msg);

    /* Gets of the affected keys: the table's first key (data block 0) and a middle one. */
    int probes[2] = {t->lo, (t->lo + t->hi) / 2};
    for (int i = 0; i < (kind == D_DATA ? 1 : 2); i++) {
        char kb[32], pctx[200];
        shale_buf got = {0};
        snprintf(pctx, sizeof pctx, "%s: get key %d", ctx, probes[i]);
        rc = shale_get(db, NULL, dkey(kb, probes[i]), &got, &err);
        if (lenient && rc == SHALE_OK) {
            char vb[300];
            shale_slice want = dval(vb, probes[i]);
            cr_assert(got.len == want.len && memcmp(got.data, want.data, want.len) == 0,
                      "%s: wrong value", pctx);
        } else {
            expect_damage_error(rc, &err, t, kind, pctx);
            if (i == 0) {
                cr_log_info("%s: %s", pctx, err.msg);
            }
        }
        /* Asking again gives the same answer (no half-cached damaged state). */
        shale_code again = shale_get(db, NULL, dkey(kb, probes[i]), &got, &err);
        cr_assert_eq(again, rc, "%s: a second get returned %s", pctx, shale_strerror(again));
        shale_buf_free(&got);
    }
    /* Keys of the other tables read fine. */
    for (size_t j = 0; j < tp->ntables; j++) {
        if (j != ti) {
            expect_value(db, tp->tables[j].lo, ctx);
            expect_value(db, tp->tables[j].hi, ctx);
        }
    }
    /* Full scans fail (or, for the filter, succeed), never return wrong data. */
    for (int backward = 0; backward < 2; backward++) {
        char sctx[200];
        int count = 0;
        snprintf(sctx, sizeof sctx, "%s: %s scan", ctx, backward ? "backward" : "forward");
        rc = scan(db, backward, &count, &err, sctx);
        if (lenient && rc == SHALE_OK) {
            cr_assert_eq(count, NKEYS, "%s: the scan saw %d keys", sctx, count);
        } else {
            expect_damage_error(rc, &err, t, kind, sctx);
            cr_assert_lt(count, NKEYS, "%s: the scan saw every key yet failed", sctx);
        }
    }
    /* A compaction over the damaged level-0 table must fail (never copying damage onward);
     * the level-1 table is not an input (nothing overlaps it). Either way the database stays
     * readable. */
    rc = shale_compact(db, &err);
    if (t->level == 0 && !lenient) {
        expect_damage_error(rc, &err, t, kind, ctx);
    } else {
        cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION || rc == SHALE_IO,
                  "%s: compact returned %s (%s)", ctx, shale_strerror(rc), err.msg);
    }
    for (size_t j = 0; j < tp->ntables; j++) {
        if (j != ti) {
            expect_value(db, tp->tables[j].lo, ctx);
        }
    }
    (void)shale_close(db, NULL);
    free(path);
}

static void all_tables(dmg_kind kind)
{
    static tmpl tp;
    build_template(&tp);
    for (size_t i = 0; i < tp.ntables; i++) {
        damage_case(&tp, i, kind);
    }
    tmpl_free(&tp);
    tu_assert_no_leaks();
}

Test(table_damage, intact_template_checks_clean)
{
    static tmpl tp;
    run_out ro;
    build_template(&tp);
    if (shale_check(tp.src, &ro)) {
        cr_assert_eq(ro.code, 0, "shale check of an intact database exited %d:\n%s", ro.code,
                     ro.text);
        free(ro.text);
    } else {
        cr_log_warn("SHALE_BIN is not set: shale check not run");
    }
    tmpl_free(&tp);
    tu_assert_no_leaks();
}

Test(table_damage, data_block)
{
    all_tables(D_DATA);
}

Test(table_damage, index_block)
{
    all_tables(D_INDEX);
}

Test(table_damage, footer)
{
    all_tables(D_FOOTER_FIELD);
    all_tables(D_FOOTER_MAGIC);
}

Test(table_damage, properties_block)
{
    all_tables(D_PROPS);
}

Test(table_damage, filter_block)
{
    all_tables(D_FILTER);
}

Test(table_damage, truncated_table)
{
    all_tables(D_TRUNCATED);
}

Test(table_damage, missing_table)
{
    all_tables(D_MISSING);
}
