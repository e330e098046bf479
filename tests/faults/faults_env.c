/*
 * faults_env: ENOSPC, EIO and short writes at the Nth file operation of each kind, through the
 * env seam (env_fault), for every workload that touches files: plain writes, flush, compaction,
 * checkpoint, backup and reads.
 *
 * A sweep, per workload: a clean run counts the operations of each kind (env_op) the workload
 * performs; then, for each kind it performs and N sampled over 1 .. that count (every N while
 * the count is small, an even stride beyond; SHALE_CAMPAIGN_SCALE multiplies the density), a round
 * starts from a copy of the same template database, opens it on env_fault, arms
 * env_fault_fail_nth(kind, N, errno) (ENOSPC, EIO and, for writes, a short ENOSPC write, in turn)
 * and runs the workload. An observer env stacked on env_fault names the operation that failed
 * (its path), so the verdict knows what the failure hit.
 *
 * What every round checks:
 *   - the workload's calls return SHALE_OK, or SHALE_IO / SHALE_CLOSED (never another code, never
 *     a crash); a read returns the right value or an error, never a wrong value or a lost key;
 *   - a fault on a file the operation depends on (a log segment, a table, the manifest, CURRENT,
 *     the identity file, anything under a checkpoint or backup destination) is reported: the call
 *     returns an error, or, for background work that retries on its own (a flush), a LOG line
 *     says it failed; faults on best-effort operations (the LOG file itself, deleting obsolete
 *     files and the directory sync after it) may pass silently;
 *   - the open handle still serves every read with the model's values, while a write either
 *     works or, if the failure stopped writes (stats.writes_stopped with a stop_reason), returns
 *     SHALE_CLOSED; the stats show no unresolved background error once the retries succeeded;
 *   - with the fault gone, the workload succeeds when tried again (unless writes stopped);
 *   - after a close and a reopen on the plain OS, the database holds exactly the model (every
 *     acknowledged write; a failed commit may or may not be there) and keeps no leaked file; every
 *     few rounds `shale check` ($SHALE_BIN) calls it clean;
 *   - checkpoint: a failed checkpoint's directory does not open, or opens holding the model; a
 *     successful one opens holding the model; backup: a failed backup is never listed, every
 *     listed backup verifies, and the newest one restores to the model.
 * Counted per workload and reported (tu_campaign_report "faults"): faults injected (the armed
 * operation was reached), reported (an error came back to a caller, or the LOG recorded the
 * failure), corruptions (always 0: any is a test failure).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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

#define NKEYS    400u
#define KEY_BASE 9000u

/* ---- the observer env: names the operation env_fault fails --------------------------------- */

typedef struct obs_env {
    shale_env env; /* first */
    const shale_env *inner;
    pthread_mutex_t mu;   /* serialises the armed kind, so both counters see one order */
    _Atomic int armed;    /* env_op + 1; 0 = none */
    uint64_t nth, count;  /* under mu */
    _Atomic uint64_t ops; /* every operation since the env was made (settling) */
    bool fired;
    env_op prev_kind; /* the operation before the failed one */
    char what[300];   /* "kind path" of the failed operation */
} obs_env;

typedef struct obs_file {
    env_file base;
    obs_env *oe;
    env_file *inner;
} obs_file;

static const char *const op_names[ENV_OP_COUNT_] = {
    "open",   "read",   "write", "sync", "sync_dir", "truncate",
    "rename", "remove", "mkdir", "lock", "link",
};

/* The kind of this thread's previous operation: the directory sync that follows deletions runs
 * on the thread that deleted. */
static _Thread_local int last_kind = -1;

static obs_env *oe_of(const shale_env *e)
{
    return (obs_env *)e;
}

/* Counts one operation; returns whether the caller holds oe->mu (release with obs_done). */
static bool obs_begin(obs_env *oe, env_op kind, const char *path)
{
    atomic_fetch_add(&oe->ops, 1);
    size_t pl = strlen(path);
    bool info_log = pl >= 4 && strcmp(path + pl - 4, "/LOG") == 0; /* not an operation of note */
    if (atomic_load(&oe->armed) != (int)kind + 1) {
        if (!info_log) {
            last_kind = (int)kind;
        }
        return false;
    }
    pthread_mutex_lock(&oe->mu);
    if (++oe->count == oe->nth) {
        oe->fired = true;
        oe->prev_kind = (env_op)last_kind;
        snprintf(oe->what, sizeof oe->what, "%s %s", op_names[kind], path);
    }
    if (!info_log) {
        last_kind = (int)kind;
    }
    return true;
}

static void obs_done(obs_env *oe, bool held)
{
    if (held) {
        pthread_mutex_unlock(&oe->mu);
    }
}

/* Counts one operation (obs_begin) around `call`, and returns what the call returned. */
#define OBS_FORWARD(oe, kind, path, call)                                                          \
    do {                                                                                           \
        obs_env *oe_ = (oe);                                                                       \
        bool h_ = obs_begin(oe_, (kind), (path));                                                  \
        shale_code rc_ = (call);                                                                   \
        obs_done(oe_, h_);                                                                         \
        return rc_;                                                                                \
    } while (0)

static obs_file *of_of(env_file *f)
{
    return (obs_file *)f;
}

static shale_code of_read_at(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                             shale_error *err)
{
    OBS_FORWARD(of_of(f)->oe, ENV_OP_READ, f->path,
                env_file_read_at(of_of(f)->inner, off, buf, n, out_read, err));
}

static shale_code of_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    OBS_FORWARD(of_of(f)->oe, ENV_OP_WRITE, f->path,
                env_file_append(of_of(f)->inner, data, n, err));
}

static shale_code of_sync(env_file *f, bool data_only, shale_error *err)
{
    OBS_FORWARD(of_of(f)->oe, ENV_OP_SYNC, f->path, env_file_sync(of_of(f)->inner, data_only, err));
}

static shale_code of_truncate(env_file *f, uint64_t size, shale_error *err)
{
    OBS_FORWARD(of_of(f)->oe, ENV_OP_TRUNCATE, f->path,
                env_file_truncate(of_of(f)->inner, size, err));
}

static shale_code of_size(env_file *f, uint64_t *out, shale_error *err)
{
    return env_file_size(of_of(f)->inner, out, err);
}

static shale_code of_close(env_file *f, shale_error *err)
{
    obs_file *of = (obs_file *)f;
    shale_code rc = env_file_close(of->inner, err);
    free(f->path);
    free(of);
    return rc;
}

static const env_file_ops obs_file_ops = {
    .read_at = of_read_at,
    .append = of_append,
    .sync = of_sync,
    .truncate = of_truncate,
    .size = of_size,
    .close = of_close,
};

static shale_code oe_open_file(const shale_env *env, const char *path, int flags, env_file **out,
                               shale_error *err)
{
    obs_env *oe = oe_of(env);
    obs_file *of = calloc(1, sizeof *of);
    char *p = strdup(path);
    if (of == NULL || p == NULL) {
        free(of);
        free(p);
        return err_set(err, SHALE_NOMEM, ENOMEM, "observer: out of memory");
    }
    bool h = obs_begin(oe, ENV_OP_OPEN, path);
    shale_code rc = oe->inner->open_file(oe->inner, path, flags, &of->inner, err);
    obs_done(oe, h);
    if (rc != SHALE_OK) {
        free(of);
        free(p);
        return rc;
    }
    of->base.ops = &obs_file_ops;
    of->base.path = p;
    of->oe = oe;
    *out = &of->base;
    return SHALE_OK;
}

static shale_code oe_remove_file(const shale_env *env, const char *path, shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_REMOVE, path,
                oe_of(env)->inner->remove_file(oe_of(env)->inner, path, err));
}

static shale_code oe_rename_file(const shale_env *env, const char *from, const char *to,
                                 shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_RENAME, to,
                oe_of(env)->inner->rename_file(oe_of(env)->inner, from, to, err));
}

static shale_code oe_link_file(const shale_env *env, const char *from, const char *to,
                               shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_LINK, to,
                oe_of(env)->inner->link_file(oe_of(env)->inner, from, to, err));
}

static shale_code oe_mkdir(const shale_env *env, const char *path, shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_MKDIR, path,
                oe_of(env)->inner->mkdir(oe_of(env)->inner, path, err));
}

static shale_code oe_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_SYNC_DIR, path,
                oe_of(env)->inner->sync_dir(oe_of(env)->inner, path, err));
}

static shale_code oe_lock_file(const shale_env *env, const char *path, env_lock **out,
                               shale_error *err)
{
    OBS_FORWARD(oe_of(env), ENV_OP_LOCK, path,
                oe_of(env)->inner->lock_file(oe_of(env)->inner, path, out, err));
}

static shale_code oe_list_dir(const shale_env *env, const char *path, char ***out,
                              size_t *out_count, shale_error *err)
{
    return oe_of(env)->inner->list_dir(oe_of(env)->inner, path, out, out_count, err);
}

static shale_code oe_stat_path(const shale_env *env, const char *path, bool *is_dir, uint64_t *size,
                               shale_error *err)
{
    return oe_of(env)->inner->stat_path(oe_of(env)->inner, path, is_dir, size, err);
}

static shale_code oe_unlock_file(const shale_env *env, env_lock *lock, shale_error *err)
{
    return oe_of(env)->inner->unlock_file(oe_of(env)->inner, lock, err);
}

static uint64_t oe_now_ms(const shale_env *env)
{
    return oe_of(env)->inner->now_ms(oe_of(env)->inner);
}

static uint64_t oe_mono_us(const shale_env *env)
{
    return oe_of(env)->inner->mono_us(oe_of(env)->inner);
}

static void obs_init(obs_env *oe, const shale_env *inner)
{
    memset(oe, 0, sizeof *oe);
    pthread_mutex_init(&oe->mu, NULL);
    oe->inner = inner;
    oe->env = (shale_env){
        .name = "observer",
        .open_file = oe_open_file,
        .remove_file = oe_remove_file,
        .rename_file = oe_rename_file,
        .link_file = inner->link_file != NULL ? oe_link_file : NULL,
        .mkdir = oe_mkdir,
        .sync_dir = oe_sync_dir,
        .list_dir = oe_list_dir,
        .stat_path = oe_stat_path,
        .lock_file = oe_lock_file,
        .unlock_file = oe_unlock_file,
        .now_ms = oe_now_ms,
        .mono_us = oe_mono_us,
    };
}

static void obs_arm(obs_env *oe, env_op kind, uint64_t nth)
{
    pthread_mutex_lock(&oe->mu);
    oe->count = 0;
    oe->nth = nth;
    oe->fired = false;
    oe->what[0] = '\0';
    atomic_store(&oe->armed, (int)kind + 1);
    pthread_mutex_unlock(&oe->mu);
}

static void obs_disarm(obs_env *oe)
{
    pthread_mutex_lock(&oe->mu);
    atomic_store(&oe->armed, 0);
    pthread_mutex_unlock(&oe->mu);
}

/* Waits until no operation happened for 15 ms (background work settles). */
static void obs_settle(obs_env *oe)
{
    uint64_t last = atomic_load(&oe->ops);
    for (int i = 0; i < 120; i++) {
        tu_sleep_us(15000);
        uint64_t now = atomic_load(&oe->ops);
        if (now == last) {
            return;
        }
        last = now;
    }
}

/* ---- workloads ------------------------------------------------------------------------------ */

typedef enum workload {
    W_WRITES,
    W_FLUSH,
    W_COMPACT,
    W_CHECKPOINT,
    W_BACKUP,
    W_READS,
    W_COUNT_
} workload;

static const char *const wl_names[W_COUNT_] = {"writes",     "flush",  "compaction",
                                               "checkpoint", "backup", "reads"};

static shale_options base_opts(const shale_env *env)
{
    /* Level-0 trigger 8: the template's level 0 never compacts on its own; the workloads decide. */
    shale_options o = fu_base_opts(env, 8);
    o.flush_idle_ms = 86400000;
    o.max_open_tables = 16; /* reads reopen tables: more open/read operations to fail */
    return o;
}

#define CALL_OK(ctx, call)                                                                         \
    do {                                                                                           \
        shale_error e_ = {0};                                                                      \
        shale_code r_ = (call);                                                                    \
        cr_assert_eq(r_, SHALE_OK, "%s: %s: %s (%s)", (ctx), #call, shale_strerror(r_), e_.msg);   \
    } while (0)

/* Template: a bottom level from a compaction, then three overlapping level-0 tables. */
static void build_template(const char *dir, fu_model *m)
{
    shale_options o = base_opts(NULL);
    shale_db *db = fu_open_ok(dir, &o, "template");
    fu_model_init(m, NKEYS, KEY_BASE, 60, 300, 7);
    for (uint32_t i = 0; i < 10; i++) {
        CALL_OK("template", fu_commit(db, m, i * 37, 60, &e_));
    }
    CALL_OK("template", shale_compact(db, &e_));
    for (uint32_t t = 0; t < 3; t++) {
        for (uint32_t i = 0; i < 3; i++) {
            CALL_OK("template", fu_commit(db, m, t * 13 + i * 53, 50, &e_));
        }
        CALL_OK("template", shale_flush(db, &e_));
    }
    fu_check_model(db, m, "template");
    CALL_OK("template", shale_close(db, &e_));
}

typedef struct round_ctx {
    const char *root, *dir;
    shale_db *db;
    fu_model *m;
    char ctx[1024];
    /* filled by the workload */
    bool any_error;     /* a call returned an error */
    bool strict_missed; /* a call that met the fault on a data file returned SHALE_OK */
    obs_env *oe;
} round_ctx;

static bool acceptable_code(shale_code rc)
{
    return rc == SHALE_OK || rc == SHALE_IO || rc == SHALE_CLOSED;
}

static void note_rc(round_ctx *r, shale_code rc, const shale_error *err, const char *what)
{
    cr_assert(acceptable_code(rc), "%s: %s returned %s (%s): an I/O failure must be SHALE_IO",
              r->ctx, what, shale_strerror(rc), err->msg);
    if (rc != SHALE_OK) {
        cr_assert(err->msg[0] != '\0', "%s: %s failed without a message", r->ctx, what);
        r->any_error = true;
    }
}

/* Reads the whole model through get (ids must be allowed, or the call fails), then scans forward
 * and backward: every call either returns the right data or an error. */
static void reads_workload(round_ctx *r)
{
    char kb[17];
    shale_buf got = {0};
    for (uint32_t k = 0; k < NKEYS; k += 3) {
        shale_error err = {0};
        shale_code rc = shale_get(r->db, NULL, fu_key(r->m, kb, k), &got, &err);
        if (rc == SHALE_NOT_FOUND) {
            cr_assert(fu_model_allows(r->m, k, 0),
                      "%s: get key %u: NOT_FOUND, the model has %" PRIu64, r->ctx, k,
                      r->m->state[k]);
            continue;
        }
        note_rc(r, rc, &err, "get");
        if (rc == SHALE_OK) {
            uint64_t id = fu_value_id(r->m, r->ctx, k, &got);
            cr_assert(fu_model_allows(r->m, k, id),
                      "%s: get key %u: write %" PRIu64 ", want %" PRIu64, r->ctx, k, id,
                      r->m->state[k]);
        }
    }
    for (int dir = 0; dir < 2; dir++) {
        shale_iter *it = NULL;
        shale_error err = {0};
        shale_code rc = shale_iter_new(r->db, NULL, &it, &err);
        note_rc(r, rc, &err, "iter_new");
        if (rc != SHALE_OK) {
            continue;
        }
        /* Walk and compare with the model: keys in order, each with its model value. */
        int64_t expect = dir == 0 ? -1 : (int64_t)NKEYS;
        if (dir == 0) {
            shale_iter_seek_first(it);
        } else {
            shale_iter_seek_last(it);
        }
        for (; shale_iter_valid(it); dir == 0 ? shale_iter_next(it) : shale_iter_prev(it)) {
            shale_slice key = shale_iter_key(it);
            shale_slice val = shale_iter_value(it);
            char kc[17] = {0};
            memcpy(kc, key.data, key.len < 16 ? key.len : 16);
            uint64_t ki = strtoull(kc + 3, NULL, 10);
            cr_assert(ki >= KEY_BASE && ki < KEY_BASE + NKEYS, "%s: scan: foreign key %s", r->ctx,
                      kc);
            uint32_t k = (uint32_t)(ki - KEY_BASE);
            /* No key skipped between the last one and this one. */
            for (int64_t s = expect + (dir == 0 ? 1 : -1); s != (int64_t)k;
                 s += dir == 0 ? 1 : -1) {
                cr_assert(fu_model_allows(r->m, (uint32_t)s, 0),
                          "%s: scan %s skipped key %" PRId64 " (model %" PRIu64 ")", r->ctx,
                          dir == 0 ? "forward" : "backward", s, r->m->state[s]);
            }
            expect = k;
            shale_buf vb = {(void *)val.data, val.len, val.len};
            uint64_t id = fu_value_id(r->m, r->ctx, k, &vb);
            cr_assert(fu_model_allows(r->m, k, id),
                      "%s: scan key %u: write %" PRIu64 ", want %" PRIu64, r->ctx, k, id,
                      r->m->state[k]);
        }
        rc = shale_iter_status(it, &err);
        note_rc(r, rc, &err, "scan");
        if (rc == SHALE_OK) {
            for (int64_t s = expect + (dir == 0 ? 1 : -1); s >= 0 && s < (int64_t)NKEYS;
                 s += dir == 0 ? 1 : -1) {
                cr_assert(fu_model_allows(r->m, (uint32_t)s, 0),
                          "%s: scan ended before key %" PRId64 " (model %" PRIu64 ")", r->ctx, s,
                          r->m->state[s]);
            }
        }
        shale_iter_free(it);
    }
    shale_buf_free(&got);
}

/* Unarmed preparation before the armed part. */
static void prepare(round_ctx *r, workload w)
{
    if (w == W_FLUSH || w == W_CHECKPOINT || w == W_BACKUP) {
        for (uint32_t i = 0; i < 5; i++) {
            CALL_OK(r->ctx, fu_commit(r->db, r->m, 3 + i * 41, 30, &e_));
        }
    }
    if (w == W_BACKUP) {
        /* A first backup, so the armed one is incremental (shares tables). */
        char *dest = tu_path(r->root, "backups");
        CALL_OK(r->ctx, shale_backup(r->db, dest, NULL, &e_));
        CALL_OK(r->ctx, fu_commit(r->db, r->m, 11, 40, &e_));
        free(dest);
    }
}

/* The armed part. `attempt` 0: under the fault; 1: the retry without it. */
static void run_workload(round_ctx *r, workload w, int attempt)
{
    shale_error err = {0};
    shale_code rc;
    char *p;

    switch (w) {
    case W_WRITES:
        for (uint32_t i = 0; i < 12; i++) {
            rc = i % 3 == 2 ? fu_put_one(r->db, r->m, (i * 31 + (uint32_t)attempt) % NKEYS, &err)
                            : fu_commit(r->db, r->m, i * 17 + (uint32_t)attempt * 5, 12, &err);
            note_rc(r, rc, &err, "write");
        }
        break;
    case W_FLUSH:
        rc = shale_flush(r->db, &err);
        note_rc(r, rc, &err, "flush");
        break;
    case W_COMPACT:
        rc = shale_compact(r->db, &err);
        note_rc(r, rc, &err, "compact");
        break;
    case W_CHECKPOINT:
        p = tu_path(r->root, attempt == 0 ? "ckpt" : "ckpt2");
        rc = shale_checkpoint(r->db, p, &err);
        note_rc(r, rc, &err, "checkpoint");
        free(p);
        break;
    case W_BACKUP:
        p = tu_path(r->root, "backups");
        rc = shale_backup(r->db, p, NULL, &err);
        note_rc(r, rc, &err, "backup");
        free(p);
        break;
    case W_READS:
        reads_workload(r);
        break;
    case W_COUNT_:
        break;
    }
}

/* Opens dir (a checkpoint or a restore) on the plain OS and compares it with the model. */
static void check_copy(const char *dir, const fu_model *m, const char *ctx, bool may_fail)
{
    shale_options o = base_opts(NULL);
    o.create_if_missing = false;
    shale_db *db = NULL;
    shale_error err = {0};
    shale_code rc = shale_open(dir, &o, &db, &err);
    if (may_fail && rc != SHALE_OK) {
        return;
    }
    cr_assert_eq(rc, SHALE_OK, "%s: open of the copy %s: %s (%s)", ctx, dir, shale_strerror(rc),
                 err.msg);
    fu_check_model(db, m, ctx);
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: close of the copy: %s", ctx, err.msg);
}

/* Counts the LOG lines that record a failure. */
static uint64_t log_failures(const char *dir)
{
    char *p = tu_path(dir, "LOG");
    FILE *f = fopen(p, "r");
    uint64_t n = 0;
    char line[1024];
    free(p);
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, "failed") != NULL || strstr(line, "stopped") != NULL ||
             strstr(line, "halted") != NULL;
    }
    fclose(f);
    return n;
}

/* Whether a fault on this operation must be reported. Best effort: the LOG file, deleting
 * obsolete files, the directory sync after a deletion. */
static bool must_report(const obs_env *oe, env_op kind)
{
    const char *path = strchr(oe->what, ' ') + 1;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (strcmp(base, "LOG") == 0 || strcmp(base, "LOG.old") == 0) {
        return false;
    }
    if (kind == ENV_OP_REMOVE) {
        return false;
    }
    if (kind == ENV_OP_SYNC_DIR && oe->prev_kind == ENV_OP_REMOVE) {
        return false;
    }
    return true;
}

/* Starts a round (r->ctx set): removes what an earlier round left under root (the database, the
 * checkpoints, the backups, the restore), copies the template to dir, observes f with oe, copies
 * the model tm to m, opens the database on them and prepares workload w. */
static void round_start(round_ctx *r, workload w, const char *root, const char *dir,
                        const char *tmpl, env_fault *f, obs_env *oe, fu_model *m,
                        const fu_model *tm)
{
    static const char *const leftovers[] = {"db", "ckpt", "ckpt2", "backups", "restore"};
    cr_assert_not_null(f);
    for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++) {
        char *p = tu_path(root, leftovers[i]);
        tu_rm_rf(p);
        free(p);
    }
    tu_copy_dir(tmpl, dir);
    obs_init(oe, env_fault_env(f));
    *m = *tm;
    r->root = root;
    r->dir = dir;
    r->m = m;
    r->oe = oe;
    shale_options o = base_opts(&oe->env);
    o.create_if_missing = false;
    r->db = fu_open_ok(dir, &o, r->ctx);
    prepare(r, w);
}

typedef struct sweep_stats {
    uint64_t rounds, injected, reported, silent, stopped, corruptions;
    uint64_t by_kind[ENV_OP_COUNT_];
} sweep_stats;

/* One round; returns whether the fault fired. */
static bool one_round(const char *root, const char *tmpl, const fu_model *tm, workload w,
                      env_op kind, uint64_t n, int e, bool short_write, uint64_t round_no,
                      sweep_stats *ss)
{
    static fu_model m;
    round_ctx r = {0};
    char *dir = tu_path(root, "db");
    env_fault *f = env_fault_new(env_posix());
    static obs_env oe;
    shale_error err = {0};
    char *ck = tu_path(root, "ckpt"), *ck2 = tu_path(root, "ckpt2"), *bk = tu_path(root, "backups");
    char *rs = tu_path(root, "restore");

    snprintf(r.ctx, sizeof r.ctx, "%s: %s #%" PRIu64 " fails with %s%s", wl_names[w],
             op_names[kind], n, e == ENOSPC ? "ENOSPC" : "EIO",
             short_write ? " (short write)" : "");
    round_start(&r, w, root, dir, tmpl, f, &oe, &m, tm);
    uint64_t log0 = log_failures(dir);

    obs_arm(&oe, kind, n);
    env_fault_fail_nth(f, kind, n, e, short_write);
    run_workload(&r, w, 0);
    obs_settle(&oe);
    env_fault_clear(f);
    obs_disarm(&oe);
    static fu_model at_ckpt; /* what the first checkpoint must hold */
    at_ckpt = m;
    bool fired = oe.fired;
    char fctx[sizeof r.ctx];
    snprintf(fctx, sizeof fctx, "%.400s (%.300s)", r.ctx, fired ? oe.what : "not reached");
    memcpy(r.ctx, fctx, sizeof r.ctx);
    if (!fired) {
        cr_assert(!r.any_error, "%s: an error without a fault", r.ctx);
    }

    shale_stats st;
    cr_assert_eq(shale_stats_get(r.db, &st, &err), SHALE_OK, "%s", err.msg);
    bool logged = log_failures(dir) > log0;
    if (fired) {
        ss->injected++;
        ss->by_kind[kind]++;
        if (r.any_error || logged || st.writes_stopped) {
            ss->reported++;
        } else {
            ss->silent++;
            cr_assert(!must_report(&oe, kind),
                      "%s: the fault was not reported (every call returned SHALE_OK, no LOG line)",
                      r.ctx);
        }
        if (st.writes_stopped) {
            ss->stopped++;
            cr_assert(st.stop_reason[0] != '\0', "%s: writes stopped without a reason", r.ctx);
        }
    }
    /* The background retry (if any) has succeeded by now: nothing unresolved. */
    cr_assert(!st.background_error || st.writes_stopped,
              "%s: a background error is still unresolved: %s", r.ctx, st.background_error_msg);
    cr_assert(!st.compactions_halted, "%s: compactions halted: %s", r.ctx, st.background_error_msg);

    /* Reads go on. */
    fu_check_model(r.db, &m, r.ctx);
    /* A write works, or writes stopped. */
    shale_code wrc = fu_commit(r.db, &m, 200, 6, &err);
    cr_assert(wrc == SHALE_OK || (st.writes_stopped && wrc == SHALE_CLOSED),
              "%s: a write after the fault returned %s (%s)", r.ctx, shale_strerror(wrc), err.msg);
    if (!st.writes_stopped) {
        /* The workload works again without the fault. */
        r.any_error = false;
        char rctx[sizeof r.ctx];
        snprintf(rctx, sizeof rctx, "%s", r.ctx);
        snprintf(r.ctx, sizeof r.ctx, "%.800s, retried", rctx);
        run_workload(&r, w, 1);
        cr_assert(!r.any_error, "%s: failed without a fault", r.ctx);
        memcpy(r.ctx, rctx, sizeof r.ctx);
        fu_check_model(r.db, &m, r.ctx);
    }
    if (w == W_CHECKPOINT) {
        check_copy(ck, &at_ckpt, r.ctx, true);
        if (!st.writes_stopped) {
            check_copy(ck2, &m, r.ctx, false);
        }
    }
    if (w == W_BACKUP) {
        shale_backup_info *infos = NULL;
        size_t count = 0;
        shale_code lrc = shale_backup_list(bk, &infos, &count, &err);
        cr_assert_eq(lrc, SHALE_OK, "%s: backup list: %s", r.ctx, err.msg);
        size_t want = st.writes_stopped ? 2 : 3;
        cr_assert(count == want || count == want - 1,
                  "%s: %zu backups listed, want %zu (or %zu if the failed one finished)", r.ctx,
                  count, want - 1, want);
        free(infos);
        lrc = shale_backup_verify(bk, 0, &err);
        cr_assert_eq(lrc, SHALE_OK, "%s: backup verify: %s", r.ctx, err.msg);
        if (!st.writes_stopped) {
            lrc = shale_restore(bk, 0, rs, false, &err);
            cr_assert_eq(lrc, SHALE_OK, "%s: restore: %s", r.ctx, err.msg);
            check_copy(rs, &m, r.ctx, false);
        }
    }
    shale_code crc = shale_close(r.db, &err);
    cr_assert(crc == SHALE_OK || st.writes_stopped, "%s: close: %s (%s)", r.ctx,
              shale_strerror(crc), err.msg);

    /* Every few rounds, the offline checker calls the directory clean. */
    if (round_no % 6 == 0) {
        char *out = NULL;
        int code = tu_run_shale((const char *const[]){"check", dir, NULL}, &out);
        cr_assert(code == -1 || code == 0, "%s: shale check exited %d:\n%s", r.ctx, code, out);
        if (code != -1 && code != 0) {
            ss->corruptions++;
        }
        free(out);
    }

    /* Reopen on the plain OS: exactly the model, no leaked file, and it works. */
    shale_options o = base_opts(NULL);
    o.create_if_missing = false;
    shale_db *db = fu_open_ok(dir, &o, r.ctx);
    fu_check_model(db, &m, r.ctx);
    tu_assert_db_files(db, dir, r.ctx);
    fu_settle_doubts(db, &m);
    CALL_OK(r.ctx, fu_commit(db, &m, 5, 10, &e_));
    if (round_no % 4 == 0) {
        CALL_OK(r.ctx, shale_compact(db, &e_));
    }
    fu_check_model(db, &m, r.ctx);
    CALL_OK(r.ctx, shale_close(db, &e_));

    env_fault_free(f);
    pthread_mutex_destroy(&oe.mu);
    ss->rounds++;
    free(dir);
    free(ck);
    free(ck2);
    free(bk);
    free(rs);
    return fired;
}

/* Counts each kind's operations in a clean run of the armed part of workload w. */
static void clean_counts(const char *root, const char *tmpl, const fu_model *tm, workload w,
                         uint64_t counts[ENV_OP_COUNT_])
{
    static fu_model m;
    round_ctx r = {0};
    char *dir = tu_path(root, "db");
    env_fault *f = env_fault_new(env_posix());
    static obs_env oe;

    snprintf(r.ctx, sizeof r.ctx, "%s: clean run", wl_names[w]);
    round_start(&r, w, root, dir, tmpl, f, &oe, &m, tm);
    uint64_t before[ENV_OP_COUNT_];
    for (int k = 0; k < ENV_OP_COUNT_; k++) {
        before[k] = env_fault_count(f, (env_op)k);
    }
    run_workload(&r, w, 0);
    obs_settle(&oe);
    cr_assert(!r.any_error, "%s: failed without a fault", r.ctx);
    for (int k = 0; k < ENV_OP_COUNT_; k++) {
        counts[k] = env_fault_count(f, (env_op)k) - before[k];
    }
    CALL_OK(r.ctx, shale_close(r.db, &e_));
    env_fault_free(f);
    pthread_mutex_destroy(&oe.mu);
    free(dir);
}

static void sweep(workload w)
{
    char *root = tu_tmpdir("faults-env");
    char *tmpl = tu_path(root, "template");
    static fu_model tm;
    uint64_t counts[ENV_OP_COUNT_];
    sweep_stats ss = {0};
    uint64_t scale = tu_campaign_scale();
    /* Points per kind: all of 1 .. count up to `per_kind`, an even stride beyond. */
    uint64_t per_kind = 7 * scale;
    char kinds[200] = "";

    build_template(tmpl, &tm);
    clean_counts(root, tmpl, &tm, w, counts);
    uint64_t round_no = 0;
    for (int k = 0; k < ENV_OP_COUNT_; k++) {
        if (counts[k] == 0 || k == ENV_OP_LOCK || k == ENV_OP_MKDIR) {
            continue;
        }
        size_t kl = strlen(kinds);
        snprintf(kinds + kl, sizeof kinds - kl, "%s%s %" PRIu64, kl ? ", " : "", op_names[k],
                 counts[k]);
        uint64_t points = counts[k] < per_kind ? counts[k] : per_kind;
        for (uint64_t i = 0; i < points; i++) {
            /* 1, then evenly up to count (the last operation included). */
            uint64_t n = points == 1 ? 1 : 1 + i * (counts[k] - 1) / (points - 1);
            int variant = (int)((i + (uint64_t)k) % (k == ENV_OP_WRITE ? 3 : 2));
            int e = variant == 1 ? EIO : ENOSPC;
            bool short_write = variant == 2;
            one_round(root, tmpl, &tm, w, (env_op)k, n, e, short_write, ++round_no, &ss);
        }
    }
    cr_log_info("%s: %" PRIu64 " rounds over {%s}", wl_names[w], ss.rounds, kinds);
    tu_campaign_report("faults",
                       "env %s: %" PRIu64 " faults injected (%" PRIu64 " rounds; ops %s), %" PRIu64
                       " reported, %" PRIu64 " silent on best-effort ops, %" PRIu64
                       " stopped writes, %" PRIu64 " corruptions",
                       wl_names[w], ss.injected, ss.rounds, kinds, ss.reported, ss.silent,
                       ss.stopped, ss.corruptions);
    cr_assert_eq(ss.corruptions, 0);
    cr_assert_gt(ss.injected, 0, "%s: no fault was reached", wl_names[w]);
    cr_assert_gt(ss.reported, 0, "%s: no fault was reported", wl_names[w]);
    tu_rm_rf(root);
    free(root);
    free(tmpl);
    tu_assert_no_leaks();
}

/* One test per workload: a sweep over its operations. */
#define SWEEP_TEST(name, w)                                                                        \
    Test(faults_env, name, .timeout = 600)                                                         \
    {                                                                                              \
        sweep(w);                                                                                  \
    }

SWEEP_TEST(writes, W_WRITES)
SWEEP_TEST(flush, W_FLUSH)
SWEEP_TEST(compaction, W_COMPACT)
SWEEP_TEST(checkpoint, W_CHECKPOINT)
SWEEP_TEST(backup, W_BACKUP)
SWEEP_TEST(reads, W_READS)
