/* Checkpoints: a copy of a live database with data in the memtable, in level 0 and deeper levels,
 * taken while another thread writes; the copy opens and equals the model at the checkpoint (every
 * write acknowledged before the call is there, and the copy is one consistent prefix of the
 * concurrent writer's sequence); a target that exists is SHALE_INVALID; the copy and the original
 * are independent afterwards (tables are hard links of immutable files). Worker threads never call
 * cr_assert: they record the first failure, which the main thread reports after joining. */
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "api.h"

TestSuite(checkpoint);

#define NK 600

static shale_options small_opts(void)
{
    return tu_small_lsm_options(4);
}

/* For opening a copy whose files are then listed: no compaction may start at open (level 0 of a
 * copy can be at the trigger already), or its output would be listed half-written. */
static shale_options quiet_opts(void)
{
    shale_options o = small_opts();
    o.l0_compaction_trigger = 64;
    return o;
}

static shale_slice ckey(char *buf, int k)
{
    int n = snprintf(buf, 32, "cp-%05d", k);
    return (shale_slice){buf, (size_t)n};
}

/* The value write `id` stores under key k: 40..240 bytes naming both. */
static shale_slice cval(char *buf, uint64_t id, int k)
{
    int n = snprintf(buf, 300, "id%llu:k%d:", (unsigned long long)id, k);
    size_t len = 40 + (size_t)((id * 7 + (uint64_t)k) % 200);
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('A' + (id + i) % 26);
    }
    return (shale_slice){buf, len};
}

/* ids[k]: the write whose value key k holds; 0 = absent. */
typedef struct cstate {
    uint64_t ids[NK];
} cstate;

static void cput(shale_db *db, cstate *st, uint64_t id, int k)
{
    char kb[32], vb[300];
    tu_putn(db, ckey(kb, k), cval(vb, id, k));
    st->ids[k] = id;
}

static void cdel(shale_db *db, cstate *st, int k)
{
    char kb[32];
    TU_OK(shale_delete(db, NULL, ckey(kb, k), &ERR));
    st->ids[k] = 0;
}

/* Reads every key (gets and a scan) of db into out; checks each value belongs to its key. */
static void read_state(shale_db *db, cstate *out, const char *ctx)
{
    shale_buf buf = {0};
    char kb[32], vb[300];
    uint64_t present = 0;

    for (int k = 0; k < NK; k++) {
        shale_code rc = shale_get(db, NULL, ckey(kb, k), &buf, NULL);
        out->ids[k] = 0;
        if (rc == SHALE_NOT_FOUND) {
            continue;
        }
        cr_assert_eq(rc, SHALE_OK, "%s: get key %d: %s", ctx, k, shale_strerror(rc));
        char head[40];
        tu_head(head, sizeof head, buf.data, buf.len);
        unsigned long long id = 0;
        int vk = -1;
        cr_assert(sscanf(head, "id%llu:k%d:", &id, &vk) == 2 && vk == k && id > 0,
                  "%s: key %d holds '%s'", ctx, k, head);
        shale_slice want = cval(vb, id, k);
        cr_assert(want.len == buf.len && memcmp(want.data, buf.data, buf.len) == 0,
                  "%s: key %d: damaged value", ctx, k);
        out->ids[k] = id;
        present++;
    }
    shale_iter *it = NULL;
    uint64_t seen = 0;
    TU_OK(shale_iter_new(db, NULL, &it, &ERR));
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        seen++;
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    cr_assert_eq(seen, present, "%s: the scan saw %llu keys, the gets %llu", ctx,
                 (unsigned long long)seen, (unsigned long long)present);
    shale_buf_free(&buf);
}

static void expect_equal(const cstate *got, const cstate *want, const char *ctx)
{
    for (int k = 0; k < NK; k++) {
        cr_assert_eq(got->ids[k], want->ids[k], "%s: key %d holds write %llu, want %llu", ctx, k,
                     (unsigned long long)got->ids[k], (unsigned long long)want->ids[k]);
    }
}

/* Reads db (read_state) and asserts it holds exactly `want`. */
static void expect_db(shale_db *db, const cstate *want, const char *ctx)
{
    static cstate got; /* static: large */

    read_state(db, &got, ctx);
    expect_equal(&got, want, ctx);
}

static uint64_t level_tables(shale_db *db, int from, int to)
{
    shale_stats st = tu_stats(db);
    uint64_t n = 0;
    for (int l = from; l <= to; l++) {
        n += st.level_tables[l];
    }
    return n;
}

/* Keys [from, to): data in deeper levels (compacted), in level 0 (flushed) and in the memtable. */
static void fill_layers(shale_db *db, cstate *st, uint64_t *next_id, int from, int to)
{
    for (int k = from; k < to; k++) {
        cput(db, st, (*next_id)++, k);
    }
    TU_OK(shale_compact(db, &ERR));
    for (int k = from; k < to; k += 3) {
        cput(db, st, (*next_id)++, k);
    }
    for (int k = from + 1; k < to; k += 10) {
        cdel(db, st, k);
    }
    TU_OK(shale_flush(db, &ERR));
    for (int k = from + 2; k < to; k += 5) {
        cput(db, st, (*next_id)++, k);
    }
    for (int k = from + 4; k < to; k += 20) {
        cdel(db, st, k);
    }
    cr_assert_gt(level_tables(db, 1, 7), 0, "setup: nothing below level 0");
    cr_assert_gt(level_tables(db, 0, 0), 0, "setup: nothing in level 0");
    cr_assert_gt(tu_stats(db).memory_bytes, 0, "setup: nothing in the memtable");
}

Test(checkpoint, copies_memtable_level0_and_deeper_levels)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static cstate model;
    uint64_t next_id = 1;

    memset(&model, 0, sizeof model);
    tu_fx_begin(&fx, "api-cp", &o);
    fill_layers(fx.db, &model, &next_id, 0, NK);
    char *cp = tu_path(fx.root, "cp");
    TU_OK(shale_checkpoint(fx.db, cp, &ERR));
    static cstate at_cp;
    at_cp = model;
    /* The original goes on as before. */
    expect_db(fx.db, &model, "original after the checkpoint");
    cput(fx.db, &model, next_id++, 0);
    cdel(fx.db, &model, 3);

    /* The copy opens beside the live original, and holds the state at the checkpoint (not the
     * writes after it). */
    shale_options q = quiet_opts();
    shale_db *copy = tu_open(cp, &q);
    expect_db(copy, &at_cp, "checkpoint");
    /* The copy holds only what a database directory holds, and no leftover. */
    tu_assert_db_files(copy, cp, "checkpoint");
    TU_OK(shale_close(copy, &ERR));
    /* Reopened, it still holds the same (its log tail was complete). */
    copy = tu_open(cp, &o);
    expect_db(copy, &at_cp, "checkpoint reopened");
    TU_OK(shale_close(copy, &ERR));
    free(cp);
    tu_fx_end(&fx);
}

/* The copy and the original are independent: rewriting, deleting, flushing and compacting the
 * original (which deletes the tables the copy hard-linked from the original directory) leaves
 * the copy as it was, and writing to the copy leaves the original alone. */
Test(checkpoint, copy_and_original_are_independent)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static cstate model, at_cp;
    uint64_t next_id = 1;

    memset(&model, 0, sizeof model);
    tu_fx_begin(&fx, "api-cp", &o);
    fill_layers(fx.db, &model, &next_id, 0, NK);
    TU_OK(shale_flush(fx.db, &ERR));
    char *cp = tu_path(fx.root, "cp");
    TU_OK(shale_checkpoint(fx.db, cp, &ERR));
    at_cp = model;

    /* Same file system: at least one table of the copy is a hard link (two names). */
    size_t n = 0, linked = 0, ssts = 0;
    char **names = tu_list_dir(cp, &n);
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "sst")) {
            char *p = tu_path(cp, names[i]);
            struct stat sb;
            cr_assert_eq(stat(p, &sb), 0);
            linked += sb.st_nlink >= 2;
            ssts++;
            free(p);
        }
    }
    tu_free_names(names, n);
    cr_assert_gt(ssts, 0, "the checkpoint holds no table");
    cr_assert_gt(linked, 0, "no table of the checkpoint is a hard link of the original's");

    /* Change everything in the original, and compact it so its old tables are deleted. */
    for (int k = 0; k < NK; k++) {
        if (k % 4 == 0) {
            cdel(fx.db, &model, k);
        } else {
            cput(fx.db, &model, next_id++, k);
        }
    }
    TU_OK(shale_compact(fx.db, &ERR));
    expect_db(fx.db, &model, "original after changes");
    tu_fx_close(&fx);

    shale_db *copy = tu_open(cp, &o);
    expect_db(copy, &at_cp, "checkpoint after the original changed");
    /* Now write to the copy, compact it; the original does not see it. */
    static cstate cp_model;
    cp_model = at_cp;
    for (int k = 0; k < NK; k += 2) {
        cput(copy, &cp_model, 1000000 + (uint64_t)k, k);
    }
    TU_OK(shale_compact(copy, &ERR));
    expect_db(copy, &cp_model, "checkpoint after its own changes");
    TU_OK(shale_close(copy, &ERR));

    fx.db = tu_open(fx.path, &o);
    expect_db(fx.db, &model, "original after the copy changed");
    free(cp);
    tu_fx_end(&fx);
}

/* ---- a checkpoint while another thread writes ---------------------------------------------- */

/* Writer op i (i = 1, 2, ...) on keys [0, WK): a put of key i % WK with value id i, every 9th op
 * a delete of key (i * 7) % WK, every 13th a batch of puts (ids i) over keys i, i+1, i+2 (mod
 * WK). Keys [WK, NK) hold data written before the writer started, in every layer. */
#define WK (NK / 2)
typedef struct cp_writer {
    shale_db *db;
    atomic_int stop;
    atomic_int failed;
    _Atomic uint64_t acked; /* every op <= acked returned SHALE_OK */
    char why[320];
} cp_writer;

static void apply_op(cstate *st, uint64_t i)
{
    if (i % 9 == 0) {
        st->ids[(i * 7) % WK] = 0;
    } else if (i % 13 == 0) {
        for (uint64_t j = 0; j < 3; j++) {
            st->ids[(i + j) % WK] = i;
        }
    } else {
        st->ids[i % WK] = i;
    }
}

static shale_code run_writer_op(shale_db *db, uint64_t i, shale_error *err)
{
    char kb[32], vb[300];
    if (i % 9 == 0) {
        return shale_delete(db, NULL, ckey(kb, (int)((i * 7) % WK)), err);
    }
    if (i % 13 == 0) {
        shale_batch *b = shale_batch_new();
        if (b == NULL) {
            return SHALE_NOMEM;
        }
        shale_code rc = SHALE_OK;
        for (uint64_t j = 0; j < 3 && rc == SHALE_OK; j++) {
            int k = (int)((i + j) % WK);
            rc = shale_batch_put(b, ckey(kb, k), cval(vb, i, k), err);
        }
        if (rc == SHALE_OK) {
            rc = shale_write(db, NULL, b, err);
        }
        shale_batch_free(b);
        return rc;
    }
    int k = (int)(i % WK);
    return shale_put(db, NULL, ckey(kb, k), cval(vb, i, k), err);
}

static void *cp_writer_main(void *arg)
{
    cp_writer *w = arg;
    shale_error err = {0};
    for (uint64_t i = 1; !atomic_load(&w->stop) && i < 10000000; i++) {
        shale_code rc = run_writer_op(w->db, i, &err);
        if (rc != SHALE_OK) {
            snprintf(w->why, sizeof w->why, "op %llu: %s", (unsigned long long)i, err.msg);
            atomic_store(&w->failed, 1);
            return NULL;
        }
        atomic_store(&w->acked, i);
    }
    return NULL;
}

/* Finds P in [lo, hi] such that the writer's ops 1..P over `base` give `got`; fails if there is
 * none. */
static uint64_t match_prefix(const cstate *base, const cstate *got, uint64_t lo, uint64_t hi,
                             const char *ctx)
{
    static cstate st;
    st = *base;
    for (uint64_t i = 1; i <= lo; i++) {
        apply_op(&st, i);
    }
    for (uint64_t p = lo;; p++) {
        if (memcmp(&st, got, sizeof st) == 0) {
            return p;
        }
        if (p == hi) {
            break;
        }
        apply_op(&st, p + 1);
    }
    /* Name the first difference from the state at lo, for the message. */
    st = *base;
    for (uint64_t i = 1; i <= lo; i++) {
        apply_op(&st, i);
    }
    for (int k = 0; k < NK; k++) {
        if (st.ids[k] != got->ids[k]) {
            cr_assert_fail("%s: the checkpoint is no prefix of the writer's ops %llu..%llu; "
                           "e.g. key %d holds op %llu, after op %llu it holds %llu",
                           ctx, (unsigned long long)lo, (unsigned long long)hi, k,
                           (unsigned long long)got->ids[k], (unsigned long long)lo,
                           (unsigned long long)st.ids[k]);
        }
    }
    cr_assert_fail("%s: the checkpoint is no prefix of the writer's ops %llu..%llu", ctx,
                   (unsigned long long)lo, (unsigned long long)hi);
    return 0;
}

Test(checkpoint, consistent_prefix_while_a_writer_runs)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static cp_writer w;
    static cstate got, base;
    pthread_t th;
    uint64_t static_id = 100000000; /* ids of the data written before the writer starts */
    uint64_t deep_copies = 0;
    enum { CHECKPOINTS = 5 };

    tu_fx_begin(&fx, "api-cp", &o);
    memset(&base, 0, sizeof base);
    fill_layers(fx.db, &base, &static_id, WK, NK);
    memset(&w, 0, sizeof w);
    w.db = fx.db;
    cr_assert_eq(pthread_create(&th, NULL, cp_writer_main, &w), 0);
    for (int c = 0; c < CHECKPOINTS && !atomic_load(&w.failed); c++) {
        char name[32], ctx[64];
        tu_sleep_us((uint64_t)(40 + c * 30) * 1000);
        if (c == 2) {
            TU_OK(shale_compact(fx.db, &ERR));
        }
        snprintf(name, sizeof name, "cp%d", c);
        snprintf(ctx, sizeof ctx, "checkpoint %d", c);
        char *cp = tu_path(fx.root, name);
        uint64_t before = atomic_load(&w.acked);
        TU_OK(shale_checkpoint(fx.db, cp, &ERR));
        uint64_t after = atomic_load(&w.acked);

        shale_options q = quiet_opts();
        shale_db *copy = tu_open(cp, &q);
        read_state(copy, &got, ctx);
        tu_assert_db_files(copy, cp, ctx);
        deep_copies += level_tables(copy, 1, 7) > 0;
        TU_OK(shale_close(copy, &ERR));
        uint64_t p = match_prefix(&base, &got, before, after + 1, ctx);
        cr_log_info("%s: writer acked %llu before, %llu after; the copy holds ops 1..%llu", ctx,
                    (unsigned long long)before, (unsigned long long)after, (unsigned long long)p);
        tu_rm_rf(cp);
        free(cp);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    cr_assert(!atomic_load(&w.failed), "writer: %s", w.why);
    shale_stats st = tu_stats(fx.db);
    cr_assert_gt(st.flushes, 1, "the writer never filled a memtable");
    cr_assert_gt(deep_copies, 0, "no checkpoint held a table below level 0");
    tu_fx_end(&fx);
}

Test(checkpoint, bad_targets_and_handles)
{
    tu_fx fx = {0};
    char *file = NULL;
    char *dir = NULL;

    TU_CODE(SHALE_INVALID, shale_checkpoint(NULL, "/tmp/nowhere-shale-cp", &ERR));
    tu_fx_begin(&fx, "api-cp", NULL);
    tu_put(fx.db, "a", "1");
    /* An existing directory (empty or not), an existing file, the database itself, NULL, "". */
    dir = tu_path(fx.root, "exists");
    cr_assert_eq(mkdir(dir, 0700), 0);
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, dir, &ERR));
    api_write_file(dir, "x", "x");
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, dir, &ERR));
    file = tu_path(fx.root, "file");
    api_write_file(fx.root, "file", "not a directory");
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, file, &ERR));
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, fx.path, &ERR));
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, "", &ERR));
    cr_assert_eq(shale_checkpoint(fx.db, NULL, NULL), SHALE_INVALID);
    /* Nothing was written into the existing targets. */
    size_t n = 0;
    char **names = tu_list_dir(dir, &n);
    cr_assert_eq(n, 1, "the existing directory now holds %zu entries", n);
    tu_free_names(names, n);
    cr_assert_eq(tu_file_size(file), 15);
    /* The database is fine, and a good target works after the bad ones. */
    tu_expect(fx.db, "a", "1");
    char *good = tu_path(fx.root, "good");
    TU_OK(shale_checkpoint(fx.db, good, &ERR));
    TU_CODE(SHALE_INVALID, shale_checkpoint(fx.db, good, &ERR)); /* now it exists */
    shale_db *copy = tu_open(good, NULL);
    tu_expect(copy, "a", "1");
    TU_OK(shale_close(copy, &ERR));
    /* A closed handle. */
    shale_db *db = fx.db;
    tu_fx_close(&fx);
    char *late = tu_path(fx.root, "late");
    TU_CODE(SHALE_CLOSED, shale_checkpoint(db, late, &ERR));
    cr_assert_not(api_path_exists(late), "a checkpoint of a closed handle created its target");
    free(late);
    free(good);
    free(file);
    free(dir);
    tu_fx_end(&fx);
}

/* A checkpoint of a checkpoint, and of a database that only has a memtable (nothing flushed). */
Test(checkpoint, of_a_fresh_database_and_of_a_checkpoint)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static cstate model;

    memset(&model, 0, sizeof model);
    tu_fx_begin(&fx, "api-cp", &o);
    char *empty_cp = tu_path(fx.root, "empty");
    TU_OK(shale_checkpoint(fx.db, empty_cp, &ERR));
    shale_db *copy = tu_open(empty_cp, &o);
    expect_db(copy, &model, "checkpoint of an empty database");
    TU_OK(shale_close(copy, &ERR));

    for (int k = 0; k < 50; k++) {
        cput(fx.db, &model, (uint64_t)k + 1, k);
    }
    cr_assert_eq(level_tables(fx.db, 0, 7), 0, "setup: a table was written");
    char *mem_cp = tu_path(fx.root, "mem");
    TU_OK(shale_checkpoint(fx.db, mem_cp, &ERR));
    copy = tu_open(mem_cp, &o);
    expect_db(copy, &model, "checkpoint of a memtable-only database");
    char *second = tu_path(fx.root, "second");
    TU_OK(shale_checkpoint(copy, second, &ERR));
    TU_OK(shale_close(copy, &ERR));
    copy = tu_open(second, &o);
    expect_db(copy, &model, "checkpoint of a checkpoint");
    TU_OK(shale_close(copy, &ERR));
    free(second);
    free(mem_cp);
    free(empty_cp);
    tu_fx_end(&fx);
}
