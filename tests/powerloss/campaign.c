/*
 * campaign: the power-loss campaign (issue 7). Each workload runs through the public API on
 * env_fault over env_posix, and the power goes at a chosen env operation (env_fault_crash_after:
 * the Nth operation that can change the disk finds it gone, so a log append, a table being
 * written, a MANIFEST append, a CURRENT replacement or a checkpoint can be in flight). From the
 * one recorded history, env_fault_make_state then builds many crash states (env_fault.h: synced
 * data survives; any subset of the unsynced writes, whole or per 512 B / 4 KiB sector, survives,
 * lost bytes reading back as zeros; unsynced creates, renames, links and removals survive or are
 * undone independently), exhaustively when the history is small, else sampled. Each state is
 * built from a copy of the crashed directory, opened on the plain OS and verified:
 *   - the open succeeds (a database whose shale_open never returned may also be absent);
 *   - no value is damaged; every FULL-acknowledged write (or write covered by an acknowledged
 *     shale_sync FULL) is present; what is there equals the model after some point P of the
 *     write sequence at or after the last FULL ack (no holes, no partial batch, transaction or
 *     document with its index entries); for concurrent writers, by sequence number: every
 *     acknowledged write numbered below the newest one present is present;
 *   - every checkpoint that shale_checkpoint acknowledged opens and holds exactly the writes
 *     acknowledged before it;
 *   - on a sample of states, `shale check` ($SHALE_BIN) agrees: clean before the open when the
 *     open succeeds, and clean after the recovered database is closed (which also runs the
 *     document/index consistency check).
 * Violations are counted, not asserted one by one, so the report says how many states of which
 * workload fail and why; the test fails at the end if there is any. The states whose open fails
 * with SHALE_CORRUPTION while the state kept a log or manifest write after a lost one (a
 * legitimate power-loss outcome: the unsynced writes persisted out of order) are counted apart
 * as "reorder" (WAL format v1 cannot tell them from corruption).
 *
 * Reproduce one state: SHALE_PL_ONLY="<workload>:<crash point>:<state>" (the numbers a violation
 * message names) runs only that crash point and state, printing what the state lost.
 * SHALE_CAMPAIGN_SCALE multiplies the crash points and states per crash point.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale.h"

#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"

#define NKEYS       64u
#define MAX_KEYS    6u
#define VBUF_CAP    4096u
#define CHECK_EVERY 32u /* run `shale check` on one state in this many */
#define MAX_CKPT    6u

enum wl_kind { WL_LOG, WL_GROUP, WL_LSM, WL_CKPT, WL_DOC };

typedef struct op {
    uint32_t n;
    uint32_t keys[MAX_KEYS];
    bool del[MAX_KEYS];
} op;

typedef struct wl {
    const char *name;
    enum wl_kind kind;
    unsigned nops;   /* operations per run */
    unsigned points; /* crash points (times scale) */
    unsigned states; /* states per crash point (times scale) */
} wl;

/* One run: the ops attempted, what was acknowledged, and the checkpoints taken. */
typedef struct run {
    const wl *w;
    uint64_t seed;
    op *ops; /* ops[1 .. attempted] */
    uint64_t attempted, acked, last_full;
    bool opened; /* shale_open returned SHALE_OK */
    unsigned nckpt;
    uint64_t ckpt_at[MAX_CKPT]; /* the ops acknowledged before checkpoint i was taken */
    /* WL_GROUP: per acknowledged write, its key, seq and level */
    uint64_t *g_key, *g_seq;
    bool *g_full;
    size_t g_n;
    pthread_mutex_t g_mu;
} run;

typedef struct tally {
    uint64_t states, violations, reorder, exhaustive_points, checks, reordered_states;
    char first[3][1600]; /* the first two violations, then the first reorder */
    unsigned nviol;
} tally;

/* ---- files ---- */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    cr_assert(in >= 0, "open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(out >= 0, "create %s: %s", to, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        cr_assert_eq(write(out, buf, (size_t)n), n, "write %s", to);
    }
    cr_assert_eq(n, 0, "read %s", from);
    close(in);
    close(out);
}

/* cp -r from to (regular files and directories). */
static void copy_tree(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;

    cr_assert_not_null(d, "opendir %s: %s", from, strerror(errno));
    cr_assert(mkdir(to, 0700) == 0 || errno == EEXIST, "mkdir %s", to);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *src = tu_path(from, e->d_name);
        char *dst = tu_path(to, e->d_name);
        struct stat st;
        if (lstat(src, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                copy_tree(src, dst);
            } else if (S_ISREG(st.st_mode)) {
                copy_file(src, dst);
            }
        }
        free(src);
        free(dst);
    }
    closedir(d);
}

static bool is_unit(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b != NULL ? b + 1 : path;
    return strcmp(b, "LOG") != 0 && strcmp(b, "LOG.old") != 0 && strcmp(b, "LOCK") != 0;
}

static bool is_log_or_manifest(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b != NULL ? b + 1 : path;
    size_t n = strlen(b);
    return strncmp(b, "MANIFEST-", 9) == 0 || (n > 4 && strcmp(b + n - 4, ".log") == 0);
}

/* ---- a no-sync env for the verifying opens ----
 * Each crash state is a throw-away copy: the opens that verify it need no fsync, which would
 * otherwise dominate the campaign's time. Everything else is the real OS. */

typedef struct ns_file {
    env_file base;
    env_file *inner;
} ns_file;

static shale_code ns_read_at(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                             shale_error *err)
{
    return env_file_read_at(((ns_file *)f)->inner, off, buf, n, out_read, err);
}
static shale_code ns_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    return env_file_append(((ns_file *)f)->inner, data, n, err);
}
static shale_code ns_sync(env_file *f, bool data_only, shale_error *err)
{
    (void)f;
    (void)data_only;
    (void)err;
    return SHALE_OK;
}
static shale_code ns_truncate(env_file *f, uint64_t size, shale_error *err)
{
    return env_file_truncate(((ns_file *)f)->inner, size, err);
}
static shale_code ns_size(env_file *f, uint64_t *out, shale_error *err)
{
    return env_file_size(((ns_file *)f)->inner, out, err);
}
static shale_code ns_close(env_file *f, shale_error *err)
{
    shale_code rc = env_file_close(((ns_file *)f)->inner, err);
    free(f->path);
    free(f);
    return rc;
}
static const env_file_ops ns_ops = {ns_read_at, ns_append, ns_sync, ns_truncate, ns_size, ns_close};

static shale_code ns_open_file(const shale_env *env, const char *path, int flags, env_file **out,
                               shale_error *err)
{
    (void)env;
    ns_file *f = calloc(1, sizeof *f);
    if (f == NULL || (f->base.path = strdup(path)) == NULL) {
        free(f);
        return SHALE_NOMEM;
    }
    f->base.ops = &ns_ops;
    shale_code rc = env_posix()->open_file(env_posix(), path, flags, &f->inner, err);
    if (rc != SHALE_OK) {
        free(f->base.path);
        free(f);
        return rc;
    }
    *out = &f->base;
    return SHALE_OK;
}
static shale_code ns_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    (void)env;
    (void)path;
    (void)err;
    return SHALE_OK;
}

static shale_env ns_env;

static void nosync_init(void)
{
    ns_env = *env_posix();
    ns_env.name = "nosync";
    ns_env.open_file = ns_open_file;
    ns_env.sync_dir = ns_sync_dir;
}

static const shale_env *nosync_env(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, nosync_init);
    return &ns_env;
}

/* ---- values ---- */

static size_t kv_value(char *buf, uint64_t seed, uint64_t id, uint32_t k, bool big)
{
    uint64_t h = tu_mix64(seed ^ tu_mix64(id) ^ k);
    size_t len = big ? 200 + (size_t)(h >> 20) % 1800 : (size_t)(h >> 20) % 120;
    int n = snprintf(buf, 64, "I%" PRIu64 " K%u|", id, k);
    len = len < (size_t)n ? (size_t)n : len;
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (id * 31 + k * 7 + i) % 26);
    }
    return len;
}

static size_t doc_json(char *buf, size_t cap, uint64_t seed, uint64_t id, uint32_t k, bool patch)
{
    uint64_t h = tu_mix64(seed ^ tu_mix64(id) ^ k);
    size_t pad = (size_t)(h >> 20) % 300;
    char p[320];
    memset(p, 'a' + (int)(id % 26), pad);
    p[pad] = '\0';
    int n;
    if (patch) {
        n = snprintf(buf, cap, "{\"v\":%" PRIu64 ",\"g\":%u,\"p\":\"%s\"}", id, (unsigned)(id % 5),
                     p);
    } else {
        n = snprintf(buf, cap, "{\"_id\":\"d%u\",\"v\":%" PRIu64 ",\"g\":%u,\"p\":\"%s\"}", k, id,
                     (unsigned)(id % 5), p);
    }
    return (size_t)n;
}

/* ---- the workloads ---- */

static shale_options db_options(const run *r, const shale_env *env, bool create)
{
    shale_options o = {0};
    if (r->w->kind == WL_LSM || r->w->kind == WL_CKPT) {
        o = tu_small_lsm_options(3);
    }
    o.create_if_missing = create;
    o.env = env;
    o.durability = r->w->kind == WL_DOC ? SHALE_DURABILITY_OS : SHALE_DURABILITY_FULL;
    o.wal_segment_bytes = 64 * 1024;
    o.flush_idle_ms = 10;
    return o;
}

/* Generates op id of a single-threaded KV workload (keys may repeat: overwrites and deletes). */
static void gen_op(const run *r, uint64_t id, op *o, shale_durability *level, tu_rng *g)
{
    uint64_t kind = tu_rng_below(g, 20);
    uint64_t lv = tu_rng_below(g, 20);
    /* FULL is rare, so several unsynced records are usually pending at the crash. */
    *level = lv < 2    ? SHALE_DURABILITY_FULL
             : lv < 14 ? SHALE_DURABILITY_OS
                       : SHALE_DURABILITY_MEMORY;
    o->n = kind < 13 ? 1 : 2 + (uint32_t)tu_rng_below(g, MAX_KEYS - 1);
    for (uint32_t i = 0; i < o->n; i++) {
        bool dup;
        do {
            o->keys[i] = (uint32_t)tu_rng_below(g, NKEYS);
            dup = false;
            for (uint32_t j = 0; j < i; j++) {
                dup = dup || o->keys[j] == o->keys[i];
            }
        } while (dup);
        o->del[i] = tu_rng_below(g, 6) == 0;
    }
    (void)r;
    (void)id;
}

static shale_code do_kv(run *r, shale_db *db, uint64_t id, const op *o, shale_durability level,
                        char *vb)
{
    shale_write_opts w = {.durability = level};
    bool big = r->w->kind != WL_LOG;
    char kb[17];
    shale_code rc = SHALE_OK;

    if (o->n == 1) {
        if (o->del[0]) {
            return shale_delete(db, &w, tu_key(kb, o->keys[0]), NULL);
        }
        size_t n = kv_value(vb, r->seed, id, o->keys[0], big);
        return shale_put(db, &w, tu_key(kb, o->keys[0]), (shale_slice){vb, n}, NULL);
    }
    shale_batch *b = shale_batch_new();
    cr_assert_not_null(b);
    for (uint32_t i = 0; i < o->n && rc == SHALE_OK; i++) {
        if (o->del[i]) {
            rc = shale_batch_delete(b, tu_key(kb, o->keys[i]), NULL);
        } else {
            size_t n = kv_value(vb, r->seed, id, o->keys[i], big);
            rc = shale_batch_put(b, tu_key(kb, o->keys[i]), (shale_slice){vb, n}, NULL);
        }
    }
    cr_assert_eq(rc, SHALE_OK);
    rc = shale_write(db, &w, b, NULL);
    shale_batch_free(b);
    return rc;
}

/* A document transaction over live[] (the model state now): inserts absent documents, updates
 * or deletes present ones. */
static shale_code do_doc(run *r, shale_db *db, uint64_t id, op *o, const uint64_t *live, tu_rng *g,
                         char *vb)
{
    shale_doc_op ops[MAX_KEYS];
    char ids[MAX_KEYS][16];
    char *json[MAX_KEYS];

    o->n = 1 + (uint32_t)tu_rng_below(g, 3);
    for (uint32_t i = 0; i < o->n; i++) {
        bool dup;
        do {
            o->keys[i] = (uint32_t)tu_rng_below(g, NKEYS / 2);
            dup = false;
            for (uint32_t j = 0; j < i; j++) {
                dup = dup || o->keys[j] == o->keys[i];
            }
        } while (dup);
        uint32_t k = o->keys[i];
        bool present = live[k] != 0;
        o->del[i] = present && tu_rng_below(g, 4) == 0;
        snprintf(ids[i], sizeof ids[i], "d%u", k);
        json[i] = vb + i * 640;
        size_t n = doc_json(json[i], 640, r->seed, id, k, present);
        ops[i] =
            (shale_doc_op){.kind = !present    ? SHALE_DOC_INSERT
                                   : o->del[i] ? SHALE_DOC_DELETE
                                               : SHALE_DOC_UPDATE,
                           .coll = "c",
                           .id = tu_str(ids[i]),
                           .json = o->del[i] ? (shale_slice){NULL, 0} : (shale_slice){json[i], n}};
    }
    return shale_doc_apply(db, ops, o->n, NULL, NULL);
}

typedef struct gthread {
    run *r;
    shale_db *db;
    env_fault *f;
    unsigned tid, quota;
} gthread;

static int group_value(char *buf, size_t cap, unsigned tid, unsigned i)
{
    return snprintf(buf, cap, "T%u N%u|%0*u", tid, i, (int)(i % 90), 0u);
}

static void *group_writer(void *arg)
{
    gthread *t = arg;
    char kb[17], vb[160];
    tu_rng g;
    tu_rng_seed(&g, t->r->seed * 131 + t->tid);
    for (unsigned i = 0; i < t->quota && !env_fault_crashed(t->f); i++) {
        uint64_t key = 1000000ull * (t->tid + 1) + i;
        uint64_t lv = tu_rng_below(&g, 3);
        shale_write_opts w = {.durability = lv == 0   ? SHALE_DURABILITY_FULL
                                            : lv == 1 ? SHALE_DURABILITY_OS
                                                      : SHALE_DURABILITY_MEMORY};
        int n = group_value(vb, sizeof vb, t->tid, i);
        if (shale_put(t->db, &w, tu_key(kb, key), (shale_slice){vb, (size_t)n}, NULL) != SHALE_OK) {
            break;
        }
        shale_entry_info info = {0};
        if (shale_get_info(t->db, NULL, tu_key(kb, key), NULL, &info, NULL) != SHALE_OK) {
            break;
        }
        pthread_mutex_lock(&t->r->g_mu);
        t->r->g_key[t->r->g_n] = key;
        t->r->g_seq[t->r->g_n] = info.seq;
        t->r->g_full[t->r->g_n] = w.durability == SHALE_DURABILITY_FULL;
        t->r->g_n++;
        pthread_mutex_unlock(&t->r->g_mu);
    }
    return NULL;
}

#define GROUP_THREADS 4u

/* Runs the workload on f (crashing at its crash_after point, if any, else at the end), then
 * leaves the env crashed and every file closed. */
static void run_workload(run *r, env_fault *f, const char *root)
{
    char *dir = tu_path(root, "db");
    shale_options o = db_options(r, env_fault_env(f), true);
    shale_db *db = NULL;
    char *vb = malloc(VBUF_CAP);
    uint64_t live[NKEYS] = {0};
    tu_rng g;

    cr_assert_not_null(vb);
    tu_rng_seed(&g, r->seed);
    r->ops = calloc(r->w->nops + 2, sizeof *r->ops);
    cr_assert_not_null(r->ops);
    if (shale_open(dir, &o, &db, NULL) != SHALE_OK) {
        goto out;
    }
    r->opened = true;
    if (r->w->kind == WL_DOC && shale_index_create(db, "c", "g", NULL) != SHALE_OK) {
        goto out_close;
    }
    if (r->w->kind == WL_GROUP) {
        pthread_t th[GROUP_THREADS];
        gthread gt[GROUP_THREADS];
        size_t cap = (size_t)GROUP_THREADS * r->w->nops + 1;
        r->g_key = calloc(cap, sizeof *r->g_key);
        r->g_seq = calloc(cap, sizeof *r->g_seq);
        r->g_full = calloc(cap, sizeof *r->g_full);
        cr_assert(r->g_key && r->g_seq && r->g_full);
        for (unsigned t = 0; t < GROUP_THREADS; t++) {
            gt[t] = (gthread){.r = r, .db = db, .f = f, .tid = t, .quota = r->w->nops};
            cr_assert_eq(pthread_create(&th[t], NULL, group_writer, &gt[t]), 0);
        }
        for (unsigned t = 0; t < GROUP_THREADS; t++) {
            pthread_join(th[t], NULL);
        }
        goto out_close;
    }
    for (uint64_t id = 1; id <= r->w->nops && !env_fault_crashed(f); id++) {
        op *cur = &r->ops[id];
        shale_code rc;
        bool full = false;
        r->attempted = id;
        if (r->w->kind == WL_DOC) {
            rc = do_doc(r, db, id, cur, live, &g, vb);
        } else {
            shale_durability level;
            gen_op(r, id, cur, &level, &g);
            rc = do_kv(r, db, id, cur, level, vb);
            full = level == SHALE_DURABILITY_FULL;
        }
        if (rc != SHALE_OK) {
            break;
        }
        r->acked = id;
        for (uint32_t i = 0; i < cur->n; i++) {
            live[cur->keys[i]] = cur->del[i] ? 0 : id;
        }
        if (r->w->kind == WL_DOC && id % 5 == 0) {
            full = shale_sync(db, SHALE_DURABILITY_FULL, NULL) == SHALE_OK;
            if (!full) {
                break;
            }
        }
        if (full) {
            r->last_full = id;
        }
        if (r->w->kind == WL_CKPT && id % 40 == 0 && r->nckpt < MAX_CKPT) {
            char name[16];
            snprintf(name, sizeof name, "cp%u", r->nckpt);
            char *cp = tu_path(root, name);
            rc = shale_checkpoint(db, cp, NULL);
            free(cp);
            if (rc != SHALE_OK) {
                break;
            }
            r->ckpt_at[r->nckpt++] = id;
        }
    }
out_close:
    env_fault_crash(f);
    (void)shale_close(db, NULL);
out:
    env_fault_crash(f);
    free(vb);
    free(dir);
}

/* ---- verification ---- */

/* Reads every key (KV) or document into actual[] (the write id it holds, 0 = absent), checking
 * each value byte for byte. Returns false with a message on damage. */
static bool read_state(const run *r, shale_db *db, uint64_t *actual, char *why, size_t cap)
{
    char kb[17];
    shale_buf got = {0};
    char *vb = malloc(VBUF_CAP);
    bool ok = true;

    cr_assert_not_null(vb);
    for (uint32_t k = 0; k < NKEYS && ok; k++) {
        shale_error err = {0};
        shale_code rc;
        actual[k] = 0;
        if (r->w->kind == WL_DOC) {
            char id[16];
            snprintf(id, sizeof id, "d%u", k);
            rc = shale_doc_get(db, "c", tu_str(id), &got, &err);
        } else {
            rc = shale_get(db, NULL, tu_key(kb, k), &got, &err);
        }
        if (rc == SHALE_NOT_FOUND) {
            continue;
        }
        if (rc != SHALE_OK) {
            snprintf(why, cap, "read key %u: %s (%s)", k, shale_strerror(rc), err.msg);
            ok = false;
            break;
        }
        char head[4096];
        tu_head(head, sizeof head, got.data, got.len);
        uint64_t id = 0;
        if (r->w->kind == WL_DOC) {
            const char *v = strstr(head, "\"v\":");
            const char *gp = strstr(head, "\"g\":");
            unsigned gv = 99;
            if (v == NULL || gp == NULL || sscanf(v + 4, "%" SCNu64, &id) != 1 ||
                sscanf(gp + 4, "%u", &gv) != 1 || gv != id % 5) {
                snprintf(why, cap, "document d%u is damaged: %.80s", k, head);
                ok = false;
            }
        } else {
            unsigned vk = 0;
            if (sscanf(head, "I%" SCNu64 " K%u|", &id, &vk) != 2 || vk != k || id == 0 ||
                id > r->attempted) {
                snprintf(why, cap, "key %u holds a foreign value '%.30s'", k, head);
                ok = false;
            } else {
                size_t n = kv_value(vb, r->seed, id, k, r->w->kind != WL_LOG);
                if (n != got.len || memcmp(vb, got.data, n) != 0) {
                    snprintf(why, cap, "key %u: the value of write %" PRIu64 " is damaged", k, id);
                    ok = false;
                }
            }
        }
        actual[k] = id;
    }
    shale_buf_free(&got);
    free(vb);
    return ok;
}

/* Whether actual[] equals the model after some op P in [lo, hi]; *at gets P. */
static bool match(const run *r, const uint64_t *actual, uint64_t lo, uint64_t hi, uint64_t *at,
                  char *why, size_t cap)
{
    uint64_t state[NKEYS] = {0}, want_lo[NKEYS] = {0};
    uint64_t mismatch = 0;
    for (uint32_t k = 0; k < NKEYS; k++) {
        mismatch += actual[k] != 0;
    }
    for (uint64_t p = 0; p <= hi; p++) {
        if (p > 0) {
            const op *o = &r->ops[p];
            for (uint32_t i = 0; i < o->n; i++) {
                uint32_t k = o->keys[i];
                mismatch -= state[k] != actual[k];
                state[k] = o->del[i] ? 0 : p;
                mismatch += state[k] != actual[k];
            }
        }
        if (p == lo) {
            memcpy(want_lo, state, sizeof state);
        }
        if (p >= lo && mismatch == 0) {
            *at = p;
            return true;
        }
    }
    char d[300];
    tu_diff_keys(d, sizeof d, want_lo, actual, NKEYS);
    snprintf(why, cap,
             "equals the model after no write in %" PRIu64 "..%" PRIu64 "; vs the last FULL ack:%s",
             lo, hi, d);
    return false;
}

static bool group_check(const run *r, shale_db *db, char *why, size_t cap)
{
    char kb[17];
    uint64_t newest = 0;
    shale_stats st;
    if (shale_stats_get(db, &st, NULL) != SHALE_OK) {
        snprintf(why, cap, "stats failed");
        return false;
    }
    /* The newest write present (acknowledged or in flight) bounds the prefix. */
    uint64_t nmax = (uint64_t)r->w->nops;
    for (unsigned t = 0; t < GROUP_THREADS; t++) {
        for (uint64_t i = 0; i < nmax; i++) {
            shale_entry_info info = {0};
            shale_buf got = {0};
            uint64_t key = 1000000ull * (t + 1) + i;
            shale_code rc = shale_get_info(db, NULL, tu_key(kb, key), &got, &info, NULL);
            if (rc == SHALE_OK) {
                char head[64], want[160];
                tu_head(head, sizeof head, got.data, got.len);
                int wn = group_value(want, sizeof want, t, (unsigned)i);
                if (got.len != (size_t)wn || memcmp(got.data, want, (size_t)wn) != 0) {
                    snprintf(why, cap, "thread %u write %" PRIu64 " damaged: '%.40s'", t, i, head);
                    shale_buf_free(&got);
                    return false;
                }
                newest = info.seq > newest ? info.seq : newest;
            }
            shale_buf_free(&got);
        }
    }
    for (size_t i = 0; i < r->g_n; i++) {
        bool exists = false;
        if (shale_exists(db, NULL, tu_key(kb, r->g_key[i]), &exists, NULL) != SHALE_OK) {
            snprintf(why, cap, "exists failed");
            return false;
        }
        if (!exists && (r->g_full[i] || r->g_seq[i] < newest)) {
            snprintf(why, cap,
                     "acknowledged %s write key %" PRIu64 " seq %" PRIu64
                     " lost (newest present seq %" PRIu64 ")",
                     r->g_full[i] ? "FULL" : "unsynced", r->g_key[i], r->g_seq[i], newest);
            return false;
        }
    }
    return true;
}

static int run_check(const char *dir, char **out)
{
    return tu_run_shale((const char *const[]){"check", dir, NULL}, out);
}

typedef enum verdict { V_OK, V_REORDER, V_VIOLATION } verdict;

/* Verifies the state in root; returns the verdict with the reason in why. */
static verdict verify_state(const run *r, const char *root, const env_fault_state_info *info,
                            bool sample, char *why, size_t cap, tally *ty)
{
    char *dir = tu_path(root, "db");
    shale_options o = db_options(r, nosync_env(), !r->opened);
    shale_db *db = NULL;
    shale_error err = {0};
    uint64_t actual[NKEYS];
    verdict v = V_OK;
    int pre = -1;
    char *out = NULL;

    why[0] = '\0';
    if (sample && r->opened) {
        pre = run_check(dir, &out);
        ty->checks++;
    }
    shale_code rc = shale_open(dir, &o, &db, &err);
    if (rc != SHALE_OK) {
        bool reorder =
            rc == SHALE_CORRUPTION && info->reordered && is_log_or_manifest(info->first_hole);
        snprintf(why, cap, "open: %s (%s)", shale_strerror(rc), err.msg);
        v = reorder ? V_REORDER : V_VIOLATION;
        goto out;
    }
    if (pre > 0) {
        snprintf(why, cap, "shale check exited %d before an open that succeeded:\n%.300s", pre,
                 out);
        v = V_VIOLATION;
        goto out_close;
    }
    if (r->w->kind == WL_GROUP) {
        v = group_check(r, db, why, cap) ? V_OK : V_VIOLATION;
        goto out_close;
    }
    if (!read_state(r, db, actual, why, cap)) {
        v = V_VIOLATION;
        goto out_close;
    }
    uint64_t at;
    if (!match(r, actual, r->last_full, r->attempted, &at, why, cap)) {
        v = V_VIOLATION;
        goto out_close;
    }
    for (unsigned c = 0; c < r->nckpt && v == V_OK; c++) {
        char name[16];
        snprintf(name, sizeof name, "cp%u", c);
        char *cp = tu_path(root, name);
        shale_options co = db_options(r, nosync_env(), false);
        shale_db *cdb = NULL;
        rc = shale_open(cp, &co, &cdb, &err);
        if (rc != SHALE_OK) {
            snprintf(why, cap, "checkpoint %s (after op %" PRIu64 ") does not open: %s (%s)", name,
                     r->ckpt_at[c], shale_strerror(rc), err.msg);
            v = V_VIOLATION;
        } else {
            uint64_t cact[NKEYS], cat;
            if (!read_state(r, cdb, cact, why, cap) ||
                !match(r, cact, r->ckpt_at[c], r->ckpt_at[c], &cat, why, cap)) {
                char tmp[600];
                snprintf(tmp, sizeof tmp, "checkpoint %s: %s", name, why);
                size_t n = strlen(tmp) < cap ? strlen(tmp) : cap - 1; /* cap > 0: a buffer */
                memcpy(why, tmp, n);
                why[n] = '\0';
                v = V_VIOLATION;
            }
            (void)shale_close(cdb, NULL);
        }
        free(cp);
    }
out_close:
    rc = shale_close(db, &err);
    if (rc != SHALE_OK && v == V_OK) {
        snprintf(why, cap, "close after recovery: %s (%s)", shale_strerror(rc), err.msg);
        v = V_VIOLATION;
    }
    if (sample && v == V_OK) {
        free(out);
        out = NULL;
        int post = run_check(dir, &out);
        ty->checks++;
        if (post > 0) {
            snprintf(why, cap, "shale check exited %d after recovery:\n%.300s", post, out);
            v = V_VIOLATION;
        }
    }
out:
    free(out);
    free(dir);
    return v;
}

/* ---- the campaign ---- */

static uint64_t count_ops(env_fault *f)
{
    uint64_t n = 0;
    for (int k = 0; k < ENV_OP_COUNT_; k++) {
        if (k != ENV_OP_READ && k != ENV_OP_LOCK) {
            n += env_fault_count(f, (env_op)k);
        }
    }
    return n;
}

static void free_run(run *r)
{
    free(r->ops);
    free(r->g_key);
    free(r->g_seq);
    free(r->g_full);
    pthread_mutex_destroy(&r->g_mu);
}

static void run_init(run *r, const wl *w, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->w = w;
    r->seed = seed;
    pthread_mutex_init(&r->g_mu, NULL);
}

static void campaign(const wl *w)
{
    uint64_t scale = tu_campaign_scale();
    const char *only = getenv("SHALE_PL_ONLY");
    uint64_t only_point = UINT64_MAX, only_state = UINT64_MAX;
    tally ty = {0};
    uint64_t base_seed = 0x9100 + (uint64_t)w->kind * 7919;

    if (only != NULL && *only != '\0') {
        size_t n = strlen(w->name);
        if (strncmp(only, w->name, n) != 0 || only[n] != ':') {
            return;
        }
        cr_assert(sscanf(only + n + 1, "%" SCNu64 ":%" SCNu64, &only_point, &only_state) == 2,
                  "SHALE_PL_ONLY=%s: want workload:point:state", only);
    }

    /* A dry run (no crash) measures how many disk-changing operations the workload makes. */
    uint64_t total;
    {
        char *root = tu_tmpdir("pl-dry");
        env_fault *f = env_fault_new(env_posix());
        run r;
        run_init(&r, w, base_seed);
        run_workload(&r, f, root);
        total = count_ops(f);
        env_fault_free(f);
        free_run(&r);
        tu_rm_rf(root);
        free(root);
    }
    cr_assert_gt(total, 10, "%s: the dry run made %" PRIu64 " operations", w->name, total);

    uint64_t points = w->points * scale;
    uint64_t states = w->states * scale;
    for (uint64_t p = 0; p < points; p++) {
        if (only_point != UINT64_MAX && p != only_point) {
            continue;
        }
        uint64_t seed = base_seed + p;
        tu_rng g;
        tu_rng_seed(&g, tu_mix64(seed));
        /* Spread over the run, jittered; the first points hit the database's creation. */
        uint64_t crash_at =
            1 + (total * (2 * p + 1)) / (2 * points) + tu_rng_below(&g, total / (2 * points) + 1);
        crash_at = crash_at > total ? total : crash_at;
        char *root = tu_tmpdir("pl-camp");
        char *tmpl = tu_path(root, "crashed");
        char *work = tu_path(root, "state");
        cr_assert_eq(mkdir(work, 0700), 0);
        env_fault *f = env_fault_new(env_posix());
        cr_assert_not_null(f);
        env_fault_set_unit_filter(f, is_unit);
        env_fault_crash_after(f, crash_at);
        run r;
        run_init(&r, w, base_seed); /* one op sequence per workload: points differ in crash_at */
        run_workload(&r, f, work);
        copy_tree(work, tmpl);
        env_fault_grain grain = (env_fault_grain)(p % 3);
        uint64_t units = env_fault_units(f, grain);
        uint64_t nstates = states;
        if (units <= ENV_FAULT_EXHAUSTIVE_MAX && ((uint64_t)1 << units) <= states) {
            nstates = (uint64_t)1 << units;
            ty.exhaustive_points++;
        }
        for (uint64_t s = 0; s < nstates; s++) {
            if (only_state != UINT64_MAX && s != only_state) {
                continue;
            }
            env_fault_state_info info;
            shale_error err = {0};
            char why[500];
            tu_rm_rf(work);
            copy_tree(tmpl, work);
            shale_code rc = env_fault_make_state(f, grain, s, seed, &info, &err);
            cr_assert_eq(rc, SHALE_OK, "make_state: %s", err.msg);
            if (only_state != UINT64_MAX || getenv("SHALE_PL_VERBOSE") != NULL) {
                fprintf(stderr,
                        "%s point %" PRIu64 " state %" PRIu64 ": crash_at %" PRIu64
                        ", grain %d, %" PRIu64 " units, lost %" PRIu64 "%s: %s\n",
                        w->name, p, s, crash_at, (int)grain, info.units, info.lost,
                        info.reordered ? " (reordered)" : "", info.detail);
            }
            ty.states++;
            ty.reordered_states += info.reordered;
            verdict v = verify_state(&r, work, &info, s % CHECK_EVERY == 0 || only_state == s, why,
                                     sizeof why, &ty);
            if (v == V_OK) {
                continue;
            }
            ty.violations++;
            ty.reorder += v == V_REORDER;
            char *slot = v == V_REORDER ? (ty.reorder == 1 ? ty.first[2] : NULL)
                                        : (ty.nviol < 2 ? ty.first[ty.nviol++] : NULL);
            if (slot != NULL) {
                snprintf(slot, sizeof ty.first[0],
                         "%s%s SHALE_PL_ONLY=%s:%" PRIu64 ":%" PRIu64 " (crash at op %" PRIu64
                         ", grain %d, %" PRIu64 " units, acked %" PRIu64 ", last FULL %" PRIu64
                         "): %s [%s]",
                         v == V_REORDER ? "[reorder] " : "", w->name, w->name, p, s, crash_at,
                         (int)grain, info.units, r.acked, r.last_full, why, info.detail);
            }
        }
        env_fault_free(f);
        free_run(&r);
        tu_rm_rf(root);
        free(tmpl);
        free(work);
        free(root);
    }
    for (unsigned i = 0; i < 3; i++) {
        if (ty.first[i][0] != '\0') {
            fprintf(stderr, "powerloss violation: %s\n", ty.first[i]);
        }
    }
    tu_campaign_report("powerloss",
                       "%s: %" PRIu64 " states, %" PRIu64 " violations (%" PRIu64
                       " reorder-corruption; %" PRIu64 " states reordered, %" PRIu64
                       " crash points enumerated exhaustively, %" PRIu64 " shale checks)",
                       w->name, ty.states, ty.violations, ty.reorder, ty.reordered_states,
                       ty.exhaustive_points, ty.checks);
    cr_assert_eq(ty.violations, 0,
                 "%s: %" PRIu64 " of %" PRIu64 " crash states violate (%" PRIu64
                 " reorder-corruption); first: %s",
                 w->name, ty.violations, ty.states, ty.reorder,
                 ty.first[0][0] != '\0' ? ty.first[0] : ty.first[2]);
}

static const wl wl_log = {"log", WL_LOG, 80, 24, 48};
static const wl wl_group = {"group", WL_GROUP, 60, 16, 32};
static const wl wl_lsm = {"lsm", WL_LSM, 400, 12, 36};
static const wl wl_ckpt = {"checkpoint", WL_CKPT, 240, 10, 36};
static const wl wl_doc = {"doc", WL_DOC, 120, 10, 36};

Test(powerloss_campaign, log_mixed_durability)
{
    campaign(&wl_log);
}

Test(powerloss_campaign, group_commit_threads)
{
    campaign(&wl_group);
}

Test(powerloss_campaign, flush_and_compaction)
{
    campaign(&wl_lsm);
}

Test(powerloss_campaign, checkpoint_in_flight)
{
    campaign(&wl_ckpt);
}

Test(powerloss_campaign, documents_with_index)
{
    campaign(&wl_doc);
}
