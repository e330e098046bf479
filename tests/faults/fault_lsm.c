/*
 * fault_lsm: I/O failures and power cuts in the middle of a flush and of a compaction, at every
 * file operation in turn.
 *
 * The database runs on a "tripwire" env (below) stacked on env_fault over env_posix. The tripwire
 * counts every file operation (open, read, write, sync, directory sync, truncate, rename, remove,
 * link, mkdir, lock) from the moment it is armed, and at the Nth one it either
 *   FAIL:  fails that one operation (EIO, or ENOSPC / a short write for appends) and nothing else;
 *   CRASH: cuts the power: env_fault_crash() first, so that operation and every later one fail,
 *          then, once the database is closed, env_fault_drop_unsynced() rolls the directory back
 *          to what was durable (all unsynced bytes dropped, or a random prefix kept: a torn
 *          write), as a real power loss would.
 * For N = 1, 2, 3, ... each round starts from a copy of the same template database, writes some
 * FULL-durability commits (acknowledged, so they must survive anything), arms the tripwire at N
 * and runs the operation under test (shale_flush, or shale_compact over several overlapping
 * tables). The rounds go on until an N the operation no longer reaches (it completed without
 * meeting the fault).
 *
 * After each round the database is reopened on the plain OS and must:
 *   - open (a failed or cut flush/compaction is never corruption);
 *   - hold exactly the model: every acknowledged write, nothing else (a commit that failed
 *     after the fault may or may not be there);
 *   - leak no file: only SHALE, LOCK, LOG*, CURRENT, one MANIFEST, the live logs and exactly the
 *     tables the database uses (tu_assert_db_files), no *.tmp;
 *   - keep working: a write, a flush and a full compaction succeed and the data stays right.
 * Before the reopen (every other round), `shale check` ($SHALE_BIN) must call the directory clean.
 * In FAIL mode the open handle must also keep serving reads after the fault, and, unless the
 * failure stopped writes (a failed sync), a second attempt of the operation must succeed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale.h"

#include "base/error.h"
#include "env/env.h"
#include "env/env_fault.h"
#include "faults_util.h"
#include "testutil.h"

#define NKEYS      300u
#define MAX_ROUNDS 1000u

/* ---- the tripwire env ------------------------------------------------------------------------ */

typedef enum trip_mode { TRIP_FAIL, TRIP_CRASH } trip_mode;

typedef struct trip_env {
    shale_env env; /* first: the shale_env pointer converts back */
    const shale_env *inner;
    env_fault *fault;
    trip_mode mode;
    _Atomic uint64_t count;   /* operations since armed */
    _Atomic uint64_t trip_at; /* N; 0 = disarmed */
    _Atomic bool fired;
    bool trace;     /* SHALE_TRIP_TRACE=1: print every counted operation (debugging aid) */
    char what[200]; /* the operation that tripped (written once, by the thread that tripped) */
} trip_env;

typedef struct trip_file {
    env_file base;
    trip_env *te;
    env_file *inner;
} trip_file;

static trip_env *te_of(const shale_env *env)
{
    return (trip_env *)env;
}

typedef enum trip_action { GO, FAIL, FAIL_SHORT } trip_action;

/* Counts one operation; decides what happens to it. */
static trip_action tick(trip_env *te, const char *op, const char *path, int *sys_errno)
{
    uint64_t at = atomic_load(&te->trip_at);
    if (at == 0) {
        return GO;
    }
    uint64_t n = atomic_fetch_add(&te->count, 1) + 1;
    if (te->trace) {
        fprintf(stderr, "tripwire #%" PRIu64 "%s: %s %s\n", n, n == at ? " (TRIPS)" : "", op, path);
    }
    if (n != at) {
        return GO;
    }
    atomic_store(&te->fired, true);
    snprintf(te->what, sizeof te->what, "%s %s", op, path);
    if (te->mode == TRIP_CRASH) {
        env_fault_crash(te->fault); /* this operation and every later one fail */
        return GO;
    }
    bool append = strcmp(op, "write") == 0;
    *sys_errno = append && n % 2 == 1 ? ENOSPC : EIO;
    return append && n % 4 == 1 ? FAIL_SHORT : FAIL;
}

static shale_code trip_err(shale_error *err, int e, const char *op, const char *path)
{
    return err_set(err, SHALE_IO, e, "%s: tripwire: injected %s failure (errno %d)", path, op, e);
}

/* Counts one operation that either fails whole or goes on: whether it failed (err set). */
static bool tripped(trip_env *te, const char *op, const char *path, shale_error *err)
{
    int e = 0;
    if (tick(te, op, path, &e) == GO) {
        return false;
    }
    trip_err(err, e, op, path);
    return true;
}

static shale_code tf_read_at(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                             shale_error *err)
{
    trip_file *tf = (trip_file *)f;
    if (tripped(tf->te, "read", f->path, err)) {
        *out_read = 0;
        return SHALE_IO;
    }
    return env_file_read_at(tf->inner, off, buf, n, out_read, err);
}

static shale_code tf_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    trip_file *tf = (trip_file *)f;
    int e = 0;
    trip_action a = tick(tf->te, "write", f->path, &e);
    if (a == FAIL_SHORT && n / 2 > 0) {
        (void)env_file_append(tf->inner, data, n / 2, NULL);
    }
    if (a != GO) {
        return trip_err(err, e, "write", f->path);
    }
    return env_file_append(tf->inner, data, n, err);
}

static shale_code tf_sync(env_file *f, bool data_only, shale_error *err)
{
    trip_file *tf = (trip_file *)f;
    return tripped(tf->te, "sync", f->path, err) ? SHALE_IO
                                                 : env_file_sync(tf->inner, data_only, err);
}

static shale_code tf_truncate(env_file *f, uint64_t size, shale_error *err)
{
    trip_file *tf = (trip_file *)f;
    return tripped(tf->te, "truncate", f->path, err) ? SHALE_IO
                                                     : env_file_truncate(tf->inner, size, err);
}

static shale_code tf_size(env_file *f, uint64_t *out, shale_error *err)
{
    return env_file_size(((trip_file *)f)->inner, out, err);
}

static shale_code tf_close(env_file *f, shale_error *err)
{
    trip_file *tf = (trip_file *)f;
    shale_code rc = env_file_close(tf->inner, err);
    free(f->path);
    free(tf);
    return rc;
}

static const env_file_ops trip_file_ops = {
    .read_at = tf_read_at,
    .append = tf_append,
    .sync = tf_sync,
    .truncate = tf_truncate,
    .size = tf_size,
    .close = tf_close,
};

static shale_code te_open_file(const shale_env *env, const char *path, int flags, env_file **out,
                               shale_error *err)
{
    trip_env *te = te_of(env);
    if (tripped(te, "open", path, err)) {
        return SHALE_IO;
    }
    trip_file *tf = calloc(1, sizeof *tf);
    char *p = strdup(path);
    if (tf == NULL || p == NULL) {
        free(tf);
        free(p);
        return err_set(err, SHALE_NOMEM, ENOMEM, "tripwire: out of memory");
    }
    shale_code rc = te->inner->open_file(te->inner, path, flags, &tf->inner, err);
    if (rc != SHALE_OK) {
        free(tf);
        free(p);
        return rc;
    }
    tf->base.ops = &trip_file_ops;
    tf->base.path = p;
    tf->te = te;
    *out = &tf->base;
    return SHALE_OK;
}

static shale_code te_remove_file(const shale_env *env, const char *path, shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "remove", path, err) ? SHALE_IO
                                            : te->inner->remove_file(te->inner, path, err);
}

static shale_code te_rename_file(const shale_env *env, const char *from, const char *to,
                                 shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "rename", from, err) ? SHALE_IO
                                            : te->inner->rename_file(te->inner, from, to, err);
}

static shale_code te_link_file(const shale_env *env, const char *from, const char *to,
                               shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "link", from, err) ? SHALE_IO
                                          : te->inner->link_file(te->inner, from, to, err);
}

static shale_code te_mkdir(const shale_env *env, const char *path, shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "mkdir", path, err) ? SHALE_IO : te->inner->mkdir(te->inner, path, err);
}

static shale_code te_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "sync_dir", path, err) ? SHALE_IO
                                              : te->inner->sync_dir(te->inner, path, err);
}

static shale_code te_list_dir(const shale_env *env, const char *path, char ***out,
                              size_t *out_count, shale_error *err)
{
    return te_of(env)->inner->list_dir(te_of(env)->inner, path, out, out_count, err);
}

static shale_code te_stat_path(const shale_env *env, const char *path, bool *is_dir, uint64_t *size,
                               shale_error *err)
{
    return te_of(env)->inner->stat_path(te_of(env)->inner, path, is_dir, size, err);
}

static shale_code te_lock_file(const shale_env *env, const char *path, env_lock **out,
                               shale_error *err)
{
    trip_env *te = te_of(env);
    return tripped(te, "lock", path, err) ? SHALE_IO
                                          : te->inner->lock_file(te->inner, path, out, err);
}

static shale_code te_unlock_file(const shale_env *env, env_lock *lock, shale_error *err)
{
    return te_of(env)->inner->unlock_file(te_of(env)->inner, lock, err);
}

static uint64_t te_now_ms(const shale_env *env)
{
    return te_of(env)->inner->now_ms(te_of(env)->inner);
}

static uint64_t te_mono_us(const shale_env *env)
{
    return te_of(env)->inner->mono_us(te_of(env)->inner);
}

static void trip_init(trip_env *te, env_fault *f, trip_mode mode)
{
    memset(te, 0, sizeof *te);
    te->inner = env_fault_env(f);
    te->fault = f;
    te->mode = mode;
    te->trace = getenv("SHALE_TRIP_TRACE") != NULL && getenv("SHALE_TRIP_TRACE")[0] == '1';
    te->env = (shale_env){
        .name = "tripwire",
        .open_file = te_open_file,
        .remove_file = te_remove_file,
        .rename_file = te_rename_file,
        .link_file = te->inner->link_file != NULL ? te_link_file : NULL,
        .mkdir = te_mkdir,
        .sync_dir = te_sync_dir,
        .list_dir = te_list_dir,
        .stat_path = te_stat_path,
        .lock_file = te_lock_file,
        .unlock_file = te_unlock_file,
        .now_ms = te_now_ms,
        .mono_us = te_mono_us,
    };
}

static void trip_arm(trip_env *te, uint64_t n)
{
    atomic_store(&te->fired, false);
    atomic_store(&te->count, 0);
    te->what[0] = '\0';
    atomic_store(&te->trip_at, n);
}

/* Waits until no operation has been counted for 30 ms (background work the operation left
 * behind, such as deleting obsolete files, settles), then disarms. Returns whether it fired. */
static bool trip_settle(trip_env *te)
{
    uint64_t last = atomic_load(&te->count);
    for (int i = 0; i < 40; i++) {
        tu_sleep_us(30000);
        uint64_t now = atomic_load(&te->count);
        if (now == last) {
            break;
        }
        last = now;
    }
    atomic_store(&te->trip_at, 0);
    return atomic_load(&te->fired);
}

/* ---- the rounds ----------------------------------------------------------------------------- */

typedef enum scenario {
    SC_FLUSH,   /* commits in the memtable, then shale_flush */
    SC_COMPACT, /* tables in level 0 over a level 1, then shale_compact */
} scenario;

static shale_options base_opts(const shale_env *env)
{
    /* Level-0 trigger 8: no compaction starts on its own, the rounds control when it runs. */
    return fu_base_opts(env, 8);
}

static void close_ok(shale_db *db, const char *ctx)
{
    shale_error err = {0};
    shale_code rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: close: %s (%s)", ctx, shale_strerror(rc), err.msg);
}

static void flush_ok(shale_db *db, const char *ctx)
{
    shale_error err = {0};
    shale_code rc = shale_flush(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: flush: %s (%s)", ctx, shale_strerror(rc), err.msg);
}

static void compact_ok(shale_db *db, const char *ctx)
{
    shale_error err = {0};
    shale_code rc = shale_compact(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: compact: %s (%s)", ctx, shale_strerror(rc), err.msg);
}

static void commit_ok(shale_db *db, fu_model *m, uint32_t first, uint32_t n, const char *ctx)
{
    shale_error err = {0};
    shale_code rc = fu_commit(db, m, first, n, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: commit: %s (%s)", ctx, shale_strerror(rc), err.msg);
}

static uint64_t total_tables(shale_db *db)
{
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, NULL), SHALE_OK);
    uint64_t n = 0;
    for (int l = 0; l < 8; l++) {
        n += st.level_tables[l];
    }
    return n;
}

/* The template: level 1 from a compaction, then (SC_COMPACT) three overlapping level-0 tables
 * with overwrites and deletes, or (SC_FLUSH) one. Cleanly closed. */
static void build_template(const char *dir, scenario sc, fu_model *m)
{
    shale_options o = base_opts(NULL);
    shale_db *db = fu_open_ok(dir, &o, "template");

    fu_model_init(m, NKEYS, 5000, 40, 200, 1);
    for (uint32_t i = 0; i < 8; i++) {
        commit_ok(db, m, i * 37, 60, "template");
    }
    compact_ok(db, "template");
    int l0 = sc == SC_COMPACT ? 3 : 1;
    for (int t = 0; t < l0; t++) {
        for (uint32_t i = 0; i < 3; i++) {
            commit_ok(db, m, (uint32_t)t * 11 + i * 53, 50, "template");
        }
        flush_ok(db, "template");
    }
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, NULL), SHALE_OK);
    cr_assert_eq(st.level_tables[0], (uint64_t)l0, "template: %" PRIu64 " level-0 tables",
                 st.level_tables[0]);
    cr_assert_gt(total_tables(db), (uint64_t)l0, "template: nothing below level 0");
    fu_check_model(db, m, "template");
    close_ok(db, "template");
}

typedef struct round_stats {
    uint64_t rounds, op_failed, stopped, retried_ok, doubts;
} round_stats;

static shale_code run_op(shale_db *db, scenario sc, shale_error *err)
{
    return sc == SC_FLUSH ? shale_flush(db, err) : shale_compact(db, err);
}

/* One round: returns whether the tripwire fired during the operation. */
static bool one_round(const char *tmpl, const char *dir, const fu_model *tm, scenario sc,
                      trip_mode mode, uint64_t n, round_stats *rs)
{
    static fu_model m; /* static: large, and reset each round */
    char ctx[300];
    env_fault *f = env_fault_new(env_posix());
    static trip_env te;
    shale_error err = {0};

    cr_assert_not_null(f);
    trip_init(&te, f, mode);
    m = *tm;
    tu_rm_rf(dir);
    tu_copy_dir(tmpl, dir);
    snprintf(ctx, sizeof ctx, "%s %s, fault at operation #%" PRIu64,
             sc == SC_FLUSH ? "flush" : "compaction", mode == TRIP_FAIL ? "failure" : "power cut",
             n);

    shale_options o = base_opts(&te.env);
    o.create_if_missing = false;
    shale_db *db = fu_open_ok(dir, &o, ctx);
    if (sc == SC_FLUSH) {
        /* Acknowledged FULL commits in the memtable: what the flush writes out. */
        for (uint32_t i = 0; i < 6; i++) {
            commit_ok(db, &m, 3 + i * 41, 25, ctx);
        }
    }

    trip_arm(&te, n);
    shale_code rc = run_op(db, sc, &err);
    bool fired = trip_settle(&te);
    char fctx[sizeof ctx + sizeof te.what + 16];
    snprintf(fctx, sizeof fctx, "%s (%s)", ctx, fired ? te.what : "not reached");
    cr_assert(rc == SHALE_OK || rc == SHALE_IO || rc == SHALE_CLOSED,
              "%s: the operation returned %s (%s): a failed I/O must be SHALE_IO", fctx,
              shale_strerror(rc), err.msg);
    if (!fired) {
        cr_assert_eq(rc, SHALE_OK, "%s: failed without a fault: %s", fctx, err.msg);
    }
    rs->op_failed += rc != SHALE_OK;

    if (mode == TRIP_FAIL) {
        /* Reads go on, whatever happened. */
        fu_check_model(db, &m, fctx);
        shale_stats st;
        cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
        rs->stopped += st.writes_stopped;
        /* A few more commits: acknowledged ones must survive, failed ones are in doubt. */
        for (uint32_t i = 0; i < 3; i++) {
            shale_code wrc = fu_commit(db, &m, 100 + i * 3, 4, &err);
            cr_assert(wrc == SHALE_OK || (st.writes_stopped && wrc == SHALE_CLOSED),
                      "%s: a commit after the fault returned %s (%s)%s", fctx, shale_strerror(wrc),
                      err.msg, st.writes_stopped ? "" : " (writes not stopped)");
            rs->doubts += wrc != SHALE_OK;
        }
        if (!st.writes_stopped) {
            /* The failure was not final: the operation can be done again. */
            rc = run_op(db, sc, &err);
            cr_assert_eq(rc, SHALE_OK, "%s: a second attempt failed: %s (%s)", fctx,
                         shale_strerror(rc), err.msg);
            rs->retried_ok++;
        } else {
            cr_assert(st.stop_reason[0] != '\0', "%s: writes stopped without a reason", fctx);
        }
        fu_check_model(db, &m, fctx);
        rc = shale_close(db, &err);
        if (!st.writes_stopped) {
            cr_assert_eq(rc, SHALE_OK, "%s: close: %s (%s)", fctx, shale_strerror(rc), err.msg);
        }
    } else {
        (void)shale_close(db, NULL);
        rc =
            env_fault_drop_unsynced(f, n % 2 ? ENV_FAULT_KEEP_RANDOM : ENV_FAULT_DROP_ALL, n, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: drop_unsynced: %s", fctx, err.msg);
    }

    /* Every other round: the offline checker calls what is left clean (exit 0: torn tails and
     * leftovers are notes), as the reopen below must then succeed. */
    if (n % 2 == 0) {
        char *out = NULL;
        int code = tu_run_shale((const char *const[]){"check", dir, NULL}, &out);
        cr_assert(code == -1 || code == 0, "%s: shale check exited %d:\n%s", fctx, code, out);
        free(out);
    }

    /* Reopen on the plain OS: the model, no leaked file, and it keeps working. */
    o = base_opts(NULL);
    o.create_if_missing = false;
    db = fu_open_ok(dir, &o, fctx);
    fu_check_model(db, &m, fctx);
    tu_assert_db_files(db, dir, fctx);
    fu_settle_doubts(db, &m);
    if (n % 3 == 1 || !fired) {
        commit_ok(db, &m, 7, 10, fctx);
        flush_ok(db, fctx);
        compact_ok(db, fctx);
        fu_check_model(db, &m, fctx);
        close_ok(db, fctx);
        db = fu_open_ok(dir, &o, fctx);
        fu_check_model(db, &m, fctx);
        tu_assert_db_files(db, dir, fctx);
    }
    close_ok(db, fctx);
    env_fault_free(f);
    rs->rounds++;
    return fired;
}

static void run_rounds(scenario sc, trip_mode mode)
{
    char *root = tu_tmpdir("fault-lsm");
    char *tmpl = tu_path(root, "template");
    char *dir = tu_path(root, "db");
    static fu_model tm;
    round_stats rs = {0};
    uint64_t n;

    build_template(tmpl, sc, &tm);
    for (n = 1; n <= MAX_ROUNDS; n++) {
        if (!one_round(tmpl, dir, &tm, sc, mode, n, &rs)) {
            break;
        }
    }
    cr_log_info("%s/%s: %" PRIu64 " rounds (the operation takes %" PRIu64
                " file operations), %" PRIu64 " failed, %" PRIu64 " stopped writes, %" PRIu64
                " retried fine, %" PRIu64 " commits in doubt",
                sc == SC_FLUSH ? "flush" : "compaction", mode == TRIP_FAIL ? "fail" : "crash",
                rs.rounds, n - 1, rs.op_failed, rs.stopped, rs.retried_ok, rs.doubts);
    cr_assert_leq(n, MAX_ROUNDS, "the operation kept meeting the fault past %u operations",
                  MAX_ROUNDS);
    cr_assert_gt(n, 5, "the operation performed only %" PRIu64 " file operations", n - 1);
    cr_assert_gt(rs.op_failed, 0, "no fault made the operation fail");
    tu_rm_rf(root);
    free(root);
    free(tmpl);
    free(dir);
    tu_assert_no_leaks();
}

Test(fault_lsm, flush_fails_at_every_operation)
{
    run_rounds(SC_FLUSH, TRIP_FAIL);
}

Test(fault_lsm, flush_power_cut_at_every_operation)
{
    run_rounds(SC_FLUSH, TRIP_CRASH);
}

Test(fault_lsm, compaction_fails_at_every_operation)
{
    run_rounds(SC_COMPACT, TRIP_FAIL);
}

Test(fault_lsm, compaction_power_cut_at_every_operation)
{
    run_rounds(SC_COMPACT, TRIP_CRASH);
}
