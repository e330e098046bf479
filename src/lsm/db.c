/*
 * db: opening and closing a database, options, point reads and stats. The write path is in
 * commit.c, replay in recovery.c, iterators in db_iter.c, expiry in ttl.c.
 *
 * Identity file SHALE (28 bytes), written once at creation by write-temp, fsync, rename,
 * fsync-directory, and checked at every open:
 *
 *   +----------------+-------------+-----------+------------------+--------------------+
 *   | "SHALEDB\0" (8)| version u32 | flags u32 | created_at_ms u64| masked crc32c u32  |
 *   +----------------+-------------+-----------+------------------+--------------------+
 *   0                8             12          16                 24                   28
 *   crc over bytes [0, 24). flags is 0 in version 1.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/db_impl.h"

#define DB_IDENTITY_NAME    "SHALE"
#define DB_IDENTITY_MAGIC   "SHALEDB\0"
#define DB_IDENTITY_VERSION 1u
#define DB_IDENTITY_BYTES   28u

/* A put's batch is encoded on the stack when it fits: no allocation on the common path. */
#define DB_STACK_BATCH_BYTES 512u

const char *shale_version(void)
{
    return "0.1.0";
}

static const char *const durability_names[] = {"default", "none", "memory", "os", "full"};

const char *shale_durability_name(shale_durability level)
{
    if ((unsigned)level > SHALE_DURABILITY_FULL) {
        return "invalid";
    }
    return durability_names[level];
}

shale_code shale_durability_parse(const char *text, shale_durability *out, shale_error *err)
{
    if (text == NULL || out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "durability: NULL argument");
    }
    for (int i = SHALE_DURABILITY_NONE; i <= SHALE_DURABILITY_FULL; i++) {
        if (strcmp(text, durability_names[i]) == 0) {
            *out = (shale_durability)i;
            return SHALE_OK;
        }
    }
    return err_set(err, SHALE_INVALID, 0, "durability \"%s\": expected none, memory, os or full",
                   text);
}

/* ---- the info log ---- */

void db_log(shale_db *db, const char *fmt, ...)
{
    char line[768];
    struct tm tm;
    time_t secs;
    uint64_t ms;
    int n;
    va_list ap;

    if (db->info_log == NULL) {
        return;
    }
    ms = db->env->now_ms(db->env);
    secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned)(ms % 1000));
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if ((size_t)n > sizeof line - 2) {
        n = (int)sizeof line - 2;
    }
    line[n++] = '\n';
    /* Best effort: the LOG is for people, never for recovery. Several threads log; an env file
     * takes one writer at a time. */
    pthread_mutex_lock(&db->info_mu);
    (void)env_file_append(db->info_log, line, (size_t)n, NULL);
    pthread_mutex_unlock(&db->info_mu);
}

/* ---- options ---- */

static shale_code check_range(const char *name, uint64_t v, uint64_t lo, uint64_t hi,
                              shale_error *err)
{
    if (v < lo || v > hi) {
        return err_set(err, SHALE_INVALID, 0,
                       "option %s = %" PRIu64 " is out of range %" PRIu64 " .. %" PRIu64, name, v,
                       lo, hi);
    }
    return SHALE_OK;
}

#define DEFAULT(v, d) ((v) ? (v) : (d))

static shale_code resolve_options(const shale_options *in, db_options *out, shale_error *err)
{
    shale_options zero = {0};
    shale_code rc;

    if (in == NULL) {
        in = &zero;
    }
    *out = (db_options){
        .create_if_missing = in->create_if_missing,
        .error_if_exists = in->error_if_exists,
        .salvage = in->salvage,
        .durability = DEFAULT(in->durability, SHALE_DURABILITY_OS),
        .max_key_bytes = DEFAULT(in->max_key_bytes, 4096u),
        .max_value_bytes = DEFAULT(in->max_value_bytes, 4u << 20),
        .wal_segment_bytes = DEFAULT(in->wal_segment_bytes, (uint64_t)64 << 20),
        .wal_flush_interval_ms = DEFAULT(in->wal_flush_interval_ms, 5u),
        .ttl_sweep_interval_ms = DEFAULT(in->ttl_sweep_interval_ms, 1000u),
    };
    if ((unsigned)out->durability > SHALE_DURABILITY_FULL) {
        return err_set(err, SHALE_INVALID, 0, "option durability = %d is not a durability level",
                       (int)in->durability);
    }
    if ((rc = check_range("max_key_bytes", out->max_key_bytes, 1, 65536, err)) ||
        (rc = check_range("max_value_bytes", out->max_value_bytes, 1, 256u << 20, err)) ||
        (rc = check_range("wal_segment_bytes", out->wal_segment_bytes, 64u << 10, (uint64_t)4 << 30,
                          err)) ||
        (rc = check_range("wal_flush_interval_ms", out->wal_flush_interval_ms, 1, 10000, err)) ||
        (rc = check_range("ttl_sweep_interval_ms", out->ttl_sweep_interval_ms, 10, 3600000, err))) {
        return rc;
    }
    return SHALE_OK;
}

/* ---- the identity file ---- */

static shale_code identity_create(shale_db *db, shale_error *err)
{
    uint8_t raw[DB_IDENTITY_BYTES];

    memcpy(raw, DB_IDENTITY_MAGIC, 8);
    coding_put_fixed32(raw + 8, DB_IDENTITY_VERSION);
    coding_put_fixed32(raw + 12, 0);
    coding_put_fixed64(raw + 16, db->env->now_ms(db->env));
    coding_put_fixed32(raw + 24, crc32c_mask(crc32c_value(raw, 24)));
    return env_write_file_atomic(db->env, db->path, DB_IDENTITY_NAME, raw, sizeof raw, err);
}

static shale_code identity_check(shale_db *db, const char *path, shale_error *err)
{
    void *data = NULL;
    size_t len = 0;
    shale_code rc;

    rc = env_read_file(db->env, path, 4096, &data, &len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    const uint8_t *raw = data;
    if (len != DB_IDENTITY_BYTES || memcmp(raw, DB_IDENTITY_MAGIC, 8) != 0) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: %zu bytes, not a Shale identity file", path,
                     len);
    } else if (crc32c_unmask(coding_get_fixed32(raw + 24)) != crc32c_value(raw, 24)) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s @24: checksum mismatch", path);
    } else if (coding_get_fixed32(raw + 8) != DB_IDENTITY_VERSION) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s @8: format version %u, this build reads %u",
                     path, coding_get_fixed32(raw + 8), DB_IDENTITY_VERSION);
    }
    free(data);
    return rc;
}

/* Is the directory empty but for files an aborted creation may leave (LOCK, LOG, the identity's
 * temporary file)? */
static shale_code dir_is_fresh(shale_db *db, bool *fresh, bool *has_identity, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    shale_code rc = db->env->list_dir(db->env, db->path, &names, &count, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    *fresh = true;
    *has_identity = false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], DB_IDENTITY_NAME) == 0) {
            *has_identity = true;
        } else if (strcmp(names[i], "LOCK") != 0 && strcmp(names[i], "LOG") != 0 &&
                   strcmp(names[i], DB_IDENTITY_NAME ".tmp") != 0) {
            *fresh = false;
        }
    }
    env_free_names(names, count);
    return SHALE_OK;
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", dir, name);
    }
    return p;
}

static shale_code sync_parent(shale_db *db, shale_error *err)
{
    char *parent = strdup(db->path);
    shale_code rc;

    if (parent == NULL) {
        return err_nomem(err);
    }
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') {
        parent[--n] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        strcpy(parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    rc = db->env->sync_dir(db->env, parent, err);
    free(parent);
    return rc;
}

/* Checks or creates the directory and its identity, and takes the lock. */
static shale_code prepare_dir(shale_db *db, shale_error *err)
{
    bool is_dir = false, fresh = false, has_identity = false;
    uint64_t size = 0;
    char *lock_path = NULL, *id_path = NULL;
    shale_code rc;

    rc = db->env->stat_path(db->env, db->path, &is_dir, &size, err);
    if (rc == SHALE_NOT_FOUND) {
        if (!db->opts.create_if_missing) {
            return err_set(err, SHALE_INVALID, 0,
                           "%s: does not exist (set create_if_missing to create it)", db->path);
        }
        rc = db->env->mkdir(db->env, db->path, err);
        if (rc == SHALE_OK) {
            rc = sync_parent(db, err); /* the new directory's own entry must be durable too */
        }
        is_dir = true;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!is_dir) {
        return err_set(err, SHALE_INVALID, 0, "%s: not a directory", db->path);
    }
    /* Refuse a foreign directory before leaving a LOCK file in it. */
    rc = dir_is_fresh(db, &fresh, &has_identity, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!has_identity && !fresh) {
        return err_set(err, SHALE_INVALID, 0, "%s: not a Shale database (no %s file)", db->path,
                       DB_IDENTITY_NAME);
    }
    lock_path = join_path(db->path, "LOCK");
    id_path = join_path(db->path, DB_IDENTITY_NAME);
    if (lock_path == NULL || id_path == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    rc = db->env->lock_file(db->env, lock_path, &db->lock, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    /* Look again under the lock: another process may have created it meanwhile. */
    rc = db->env->stat_path(db->env, id_path, &is_dir, &size, err);
    if (rc == SHALE_NOT_FOUND) {
        if (!db->opts.create_if_missing) {
            rc = err_set(err, SHALE_INVALID, 0,
                         "%s: not a Shale database (no %s file; set create_if_missing)", db->path,
                         DB_IDENTITY_NAME);
            goto out;
        }
        rc = identity_create(db, err);
    } else if (rc == SHALE_OK) {
        if (db->opts.error_if_exists) {
            rc = err_set(err, SHALE_INVALID, 0, "%s: database exists (error_if_exists)", db->path);
            goto out;
        }
        rc = identity_check(db, id_path, err);
    }
out:
    free(lock_path);
    free(id_path);
    return rc;
}

static void open_info_log(shale_db *db)
{
    char *path = join_path(db->path, "LOG");
    if (path != NULL) {
        if (db->env->open_file(db->env, path, ENV_WRITE | ENV_CREATE, &db->info_log, NULL) !=
            SHALE_OK) {
            db->info_log = NULL;
        }
        free(path);
    }
}

/* Releases everything the database holds except the handle itself. */
static void db_release(shale_db *db)
{
    memtable_unref(db->mem);
    db->mem = NULL;
    if (db->info_log != NULL) {
        (void)env_file_close(db->info_log, NULL);
        db->info_log = NULL;
    }
    if (db->lock != NULL) {
        (void)db->env->unlock_file(db->env, db->lock, NULL);
        db->lock = NULL;
    }
    buf_free(&db->record);
    buf_free(&db->prepare_batch.rep);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->log_mu);
    pthread_mutex_destroy(&db->ttl_mu);
    pthread_mutex_destroy(&db->info_mu);
    free(db->path);
    db->path = NULL;
}

/*
 * Closed handles. A call on a handle after shale_close must not crash (a caller's bug should get
 * an error, not a use-after-free), so shale_close keeps the released handle as an inert shell whose
 * calls all return SHALE_CLOSED. The shells of the last DB_GRAVEYARD_SIZE closes are kept in a ring
 * (reachable, so leak checkers stay quiet); a shell falls out, and is freed, DB_GRAVEYARD_SIZE
 * closes later. That bounds the memory of programs that open and close all day, at the price of no
 * protection for a handle used that long after its close.
 */
#define DB_GRAVEYARD_SIZE 256
static pthread_mutex_t graveyard_mu = PTHREAD_MUTEX_INITIALIZER;
static shale_db *graveyard[DB_GRAVEYARD_SIZE];
static size_t graveyard_next;

static void bury(shale_db *db)
{
    shale_db *old;

    db->closed = true;
    pthread_mutex_lock(&graveyard_mu);
    old = graveyard[graveyard_next];
    graveyard[graveyard_next] = db;
    graveyard_next = (graveyard_next + 1) % DB_GRAVEYARD_SIZE;
    pthread_mutex_unlock(&graveyard_mu);
    free(old);
}

shale_code db_check_open(const shale_db *db, shale_error *err)
{
    if (db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "database handle is NULL");
    }
    if (db->closed) {
        return err_set(err, SHALE_CLOSED, 0, "database handle is closed");
    }
    return SHALE_OK;
}

shale_code shale_open(const char *path, const shale_options *opts, shale_db **out, shale_error *err)
{
    shale_db *db = NULL;
    shale_code rc;

    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_open: out is NULL");
    }
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return err_set(err, SHALE_INVALID, 0, "shale_open: empty path");
    }
    db = calloc(1, sizeof *db);
    if (db == NULL) {
        return err_nomem(err);
    }
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->log_mu, NULL);
    pthread_mutex_init(&db->ttl_mu, NULL);
    pthread_mutex_init(&db->info_mu, NULL);
    db->env = opts && opts->env ? opts->env : env_posix();
    db->path = strdup(path);
    db->mem = memtable_new();
    if (db->path == NULL || db->mem == NULL) {
        rc = err_nomem(err);
        goto fail;
    }
    rc = resolve_options(opts, &db->opts, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    rc = prepare_dir(db, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    open_info_log(db);
    db_log(db,
           "open %s: shale %s, durability %s, max_key_bytes %u, max_value_bytes %u, "
           "wal_segment_bytes %" PRIu64 ", wal_flush_interval_ms %u, ttl_sweep_interval_ms %u%s",
           db->path, shale_version(), shale_durability_name(db->opts.durability),
           db->opts.max_key_bytes, db->opts.max_value_bytes, db->opts.wal_segment_bytes,
           db->opts.wal_flush_interval_ms, db->opts.ttl_sweep_interval_ms,
           db->opts.salvage ? ", salvage" : "");
    rc = recovery_replay(db, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    rc = commit_start(db, err);
    if (rc != SHALE_OK) {
        goto fail_stop;
    }
    rc = ttl_start(db, err);
    if (rc != SHALE_OK) {
        goto fail_stop;
    }
    *out = db;
    return SHALE_OK;

fail_stop:
    ttl_stop(db);
    (void)commit_stop(db, NULL);
fail:
    if (db->info_log != NULL && err != NULL) {
        db_log(db, "open failed: %s", err->msg);
    }
    db_release(db);
    free(db);
    return rc;
}

shale_code shale_close(shale_db *db, shale_error *err)
{
    shale_code rc;

    if (db == NULL) {
        return SHALE_OK;
    }
    if (db->closed) {
        return err_set(err, SHALE_CLOSED, 0, "database handle is already closed");
    }
    ttl_stop(db);
    rc = commit_stop(db, err);
    db_log(db, "close: last sequence %" PRIu64 "%s", db->last_seq,
           rc == SHALE_OK ? "" : " (the log could not be closed cleanly)");
    db_release(db);
    bury(db);
    return rc;
}

/* ---- point reads ---- */

static shale_code check_key(const shale_db *db, shale_slice key, shale_error *err)
{
    if (key.len == 0) {
        return err_set(err, SHALE_INVALID, 0, "empty key");
    }
    if (key.data == NULL) {
        return err_set(err, SHALE_INVALID, 0, "key has NULL data and length %zu", key.len);
    }
    if (key.len > db->opts.max_key_bytes) {
        return err_set(err, SHALE_FULL, 0, "key of %zu bytes exceeds max_key_bytes %u", key.len,
                       db->opts.max_key_bytes);
    }
    return SHALE_OK;
}

/* Finds the live value of key at snapshot seq and time now_ms (0: read the clock only if the
 * entry has a deadline); SHALE_NOT_FOUND if none. */
static shale_code lookup(shale_db *db, shale_slice key, uint64_t snapshot, uint64_t now_ms,
                         memtable_entry *e)
{
    atomic_fetch_add_explicit(&db->reads, 1, memory_order_relaxed);
    if (!memtable_get(db->mem, key, snapshot, e) || e->type != MEMTABLE_PUT) {
        return SHALE_NOT_FOUND;
    }
    if (e->expire_at_ms != 0 && e->expire_at_ms <= (now_ms ? now_ms : db->env->now_ms(db->env))) {
        return SHALE_NOT_FOUND;
    }
    return SHALE_OK;
}

shale_code shale_get_info(shale_db *db, const shale_read_opts *ropts, shale_slice key,
                          shale_buf *value, shale_entry_info *info, shale_error *err)
{
    memtable_entry e;
    shale_code rc;

    (void)ropts;
    rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = check_key(db, key, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = lookup(db, key, db_visible_seq(db), 0, &e);
    if (rc != SHALE_OK) {
        if (value != NULL) {
            value->len = 0;
        }
        return err_set(err, rc, 0, "key not found");
    }
    if (info != NULL) {
        info->seq = e.seq;
        info->expire_at_ms = e.expire_at_ms;
    }
    return value != NULL ? buf_set(value, e.value.data, e.value.len, err) : SHALE_OK;
}

shale_code shale_get(shale_db *db, const shale_read_opts *ropts, shale_slice key, shale_buf *value,
                     shale_error *err)
{
    if (value == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_get: value buffer is NULL");
    }
    return shale_get_info(db, ropts, key, value, NULL, err);
}

shale_code shale_exists(shale_db *db, const shale_read_opts *ropts, shale_slice key, bool *out,
                        shale_error *err)
{
    shale_code rc;

    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_exists: out is NULL");
    }
    *out = false;
    rc = shale_get_info(db, ropts, key, NULL, NULL, err);
    if (rc == SHALE_NOT_FOUND) {
        err_clear(err);
        return SHALE_OK;
    }
    *out = rc == SHALE_OK;
    return rc;
}

shale_code shale_multi_get(shale_db *db, const shale_read_opts *ropts, size_t count,
                           const shale_slice *keys, shale_buf *values, shale_code *codes,
                           shale_error *err)
{
    (void)ropts;
    shale_code orc = db_check_open(db, err);
    if (orc != SHALE_OK) {
        return orc;
    }
    if (count > 0 && (keys == NULL || values == NULL || codes == NULL)) {
        return err_set(err, SHALE_INVALID, 0, "shale_multi_get: NULL array");
    }
    for (size_t i = 0; i < count; i++) {
        shale_error kerr;
        shale_code rc = check_key(db, keys[i], &kerr);
        if (rc != SHALE_OK) {
            return err_set(err, rc, 0, "key %zu: %s", i, kerr.msg);
        }
    }
    /* One snapshot and one clock reading for all keys: the answers agree with each other. */
    uint64_t snapshot = db_visible_seq(db), now_ms = db->env->now_ms(db->env);
    for (size_t i = 0; i < count; i++) {
        memtable_entry e;
        codes[i] = lookup(db, keys[i], snapshot, now_ms, &e);
        values[i].len = 0;
        if (codes[i] == SHALE_OK) {
            shale_code rc = buf_set(&values[i], e.value.data, e.value.len, err);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
    }
    return SHALE_OK;
}

/* ---- writes ---- */

static shale_code check_write(shale_db *db, const shale_write_opts *wopts, shale_error *err)
{
    shale_code rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (wopts != NULL) {
        if ((unsigned)wopts->durability > SHALE_DURABILITY_FULL) {
            return err_set(err, SHALE_INVALID, 0, "write durability %d is not a level",
                           (int)wopts->durability);
        }
        if (db->opts.durability == SHALE_DURABILITY_NONE &&
            wopts->durability > SHALE_DURABILITY_NONE) {
            return err_set(err, SHALE_INVALID, 0,
                           "durability %s asked of a database opened with durability none (it has "
                           "no log)",
                           shale_durability_name(wopts->durability));
        }
    }
    return SHALE_OK;
}

static shale_code write_one(shale_db *db, const shale_write_opts *wopts, uint8_t type,
                            shale_slice key, shale_slice value, uint64_t expire_at_ms,
                            shale_error *err)
{
    uint8_t stack[DB_STACK_BATCH_BYTES];
    shale_batch single, *heap = NULL;
    const shale_batch *b = &single;
    shale_code rc;

    if ((rc = check_write(db, wopts, err)) != SHALE_OK || (rc = check_key(db, key, err))) {
        return rc;
    }
    if (value.data == NULL && value.len > 0) {
        return err_set(err, SHALE_INVALID, 0, "value has NULL data and length %zu", value.len);
    }
    if (value.len > db->opts.max_value_bytes) {
        return err_set(err, SHALE_FULL, 0, "value of %zu bytes exceeds max_value_bytes %u",
                       value.len, db->opts.max_value_bytes);
    }
    if (!batch_init_single(&single, stack, sizeof stack, type, key, value, expire_at_ms)) {
        heap = shale_batch_new();
        if (heap == NULL) {
            return err_nomem(err);
        }
        rc = type == BATCH_DEL ? shale_batch_delete(heap, key, err)
                               : shale_batch_put_ttl(heap, key, value, expire_at_ms, err);
        if (rc != SHALE_OK) {
            shale_batch_free(heap);
            return rc;
        }
        b = heap;
    }
    rc = commit_write(db, b, wopts ? wopts->durability : SHALE_DURABILITY_DEFAULT, NULL, NULL, err);
    shale_batch_free(heap);
    return rc;
}

shale_code shale_put(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                     shale_slice value, shale_error *err)
{
    return write_one(db, wopts, BATCH_PUT, key, value, 0, err);
}

shale_code shale_put_ttl(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                         shale_slice value, uint64_t expire_at_ms, shale_error *err)
{
    return write_one(db, wopts, expire_at_ms ? BATCH_PUT_TTL : BATCH_PUT, key, value, expire_at_ms,
                     err);
}

shale_code shale_delete(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                        shale_error *err)
{
    return write_one(db, wopts, BATCH_DEL, key, (shale_slice){NULL, 0}, 0, err);
}

shale_code shale_write(shale_db *db, const shale_write_opts *wopts, const shale_batch *batch,
                       shale_error *err)
{
    shale_code rc = check_write(db, wopts, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (batch == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_write: batch is NULL");
    }
    if (batch->count == 0) {
        return SHALE_OK;
    }
    if (batch->max_key > db->opts.max_key_bytes) {
        return err_set(err, SHALE_FULL, 0, "batch has a key of %u bytes; max_key_bytes is %u",
                       batch->max_key, db->opts.max_key_bytes);
    }
    if (batch->max_value > db->opts.max_value_bytes) {
        return err_set(err, SHALE_FULL, 0, "batch has a value of %u bytes; max_value_bytes is %u",
                       batch->max_value, db->opts.max_value_bytes);
    }
    return commit_write(db, batch, wopts ? wopts->durability : SHALE_DURABILITY_DEFAULT, NULL, NULL,
                        err);
}

/* ---- stats ---- */

shale_code shale_stats_get(shale_db *db, shale_stats *out, shale_error *err)
{
    uint64_t log_bytes;

    shale_code rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_stats_get: out is NULL");
    }
    memset(out, 0, sizeof *out);
    /* log_mu and mu are taken one after the other, never nested (lock order). */
    pthread_mutex_lock(&db->log_mu);
    log_bytes = db->log_bytes_closed + (db->log ? wal_writer_size(db->log) : 0);
    out->log_segments = db->log_segments;
    pthread_mutex_unlock(&db->log_mu);
    out->log_bytes = log_bytes;

    pthread_mutex_lock(&db->mu);
    out->live_keys = db->live_keys > 0 ? (uint64_t)db->live_keys : 0;
    out->last_sequence = db->last_seq;
    out->writes = db->writes;
    out->batches = db->batches;
    out->group_commits = db->group_commits;
    out->syncs = db->syncs;
    out->expired_removed = db->expired_removed;
    out->recovered_records = db->recovered_records;
    out->salvaged_records = db->salvaged_records;
    out->salvaged_bytes = db->salvaged_bytes;
    out->truncated_bytes = db->truncated_bytes;
    out->writes_stopped = db->writes_stopped;
    if (db->writes_stopped) {
        snprintf(out->stop_reason, sizeof out->stop_reason, "%s", db->stop_err.msg);
    }
    pthread_mutex_unlock(&db->mu);
    out->reads = atomic_load_explicit(&db->reads, memory_order_relaxed);
    out->memory_bytes = memtable_memory_bytes(db->mem);
    return SHALE_OK;
}
