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
 *
 * Read-only opens (shale_options.read_only, RocksDB's OpenForReadOnly). The open takes the LOCK
 * (creating the LOCK file if it is missing, as any open does: that file holds no data), checks
 * the identity, recovers the manifest and replays the live log segments deciding what is valid
 * exactly as a normal open, and then writes nothing: no identity or manifest is created (a
 * directory without CURRENT opens with no tables, as a normal open would before writing its
 * first manifest), a torn log tail is skipped rather than cut, nothing is synced, no leftover is
 * deleted, no LOG is opened, and no background thread (log flusher, flush, compaction, TTL
 * sweeper) is started, so nothing can decide to write later either. Every call that would write
 * checks db_check_writable first; commit_write refuses as well, as the one door of every write.
 * shale_close only releases memory and the LOCK.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/compress.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/db_ext.h"
#include "lsm/db_impl.h"
#include "lsm/identity.h"
#include "lsm/merge_iter.h"

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

shale_code shale_compression_parse(const char *text, shale_compression *out, shale_error *err)
{
    static const struct {
        const char *name;
        shale_compression c;
    } names[] = {{"none", SHALE_COMPRESSION_NONE},
                 {"lz4", SHALE_COMPRESSION_LZ4},
                 {"zstd", SHALE_COMPRESSION_ZSTD}};

    if (text == NULL || out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_compression_parse: NULL argument");
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].c;
            return SHALE_OK;
        }
    }
    return err_set(err, SHALE_INVALID, 0, "unknown compression '%s' (none, lz4 or zstd)", text);
}

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
        .read_only = in->read_only,
        .durability = DEFAULT(in->durability, SHALE_DURABILITY_OS),
        .max_key_bytes = DEFAULT(in->max_key_bytes, 4096u),
        .max_value_bytes = DEFAULT(in->max_value_bytes, 4u << 20),
        .wal_segment_bytes = DEFAULT(in->wal_segment_bytes, (uint64_t)64 << 20),
        .wal_flush_interval_ms = DEFAULT(in->wal_flush_interval_ms, 5u),
        .ttl_sweep_interval_ms = DEFAULT(in->ttl_sweep_interval_ms, 1000u),
        .max_memory_bytes = (uint64_t)DEFAULT(in->max_memory_mb, 256u) << 20,
        .max_log_bytes = DEFAULT(in->max_log_bytes, (uint64_t)64 << 20),
        .flush_idle_ms = DEFAULT(in->flush_idle_ms, 60000u),
        .table_bytes = in->table_bytes,
        .compaction_threads = DEFAULT(in->compaction_threads, 2u),
        .max_open_tables = DEFAULT(in->max_open_tables, 1000u),
        .l0_trigger = DEFAULT(in->l0_compaction_trigger, 4u),
    };
    out->write_buffer_bytes = DEFAULT(in->write_buffer_bytes, out->max_memory_bytes / 8);
    if (out->table_bytes == 0) {
        /* Half a write buffer, within [1 MiB, 16 MiB]: the level-1 target is 4 tables, so a small
         * budget gets a small level 1 and each level-0 compaction rewrites a few MiB of it, not
         * 64 MiB (at max_memory_mb 11 that made random writes 2-3x slower than LevelDB's). */
        uint64_t half = out->write_buffer_bytes / 2;
        out->table_bytes = half < (1u << 20) ? (1u << 20) : half > (16u << 20) ? (16u << 20) : half;
    }
    if (out->read_only && out->create_if_missing) {
        return err_set(err, SHALE_INVALID, 0,
                       "options read_only and create_if_missing exclude each other (a read-only "
                       "open creates nothing)");
    }
    if ((unsigned)out->durability > SHALE_DURABILITY_FULL) {
        return err_set(err, SHALE_INVALID, 0, "option durability = %d is not a durability level",
                       (int)in->durability);
    }
    if ((rc = check_range("max_key_bytes", out->max_key_bytes, 1, 65536, err)) ||
        (rc = check_range("max_value_bytes", out->max_value_bytes, 1, 256u << 20, err)) ||
        (rc = check_range("wal_segment_bytes", out->wal_segment_bytes, 64u << 10, (uint64_t)4 << 30,
                          err)) ||
        (rc = check_range("wal_flush_interval_ms", out->wal_flush_interval_ms, 1, 10000, err)) ||
        (rc = check_range("ttl_sweep_interval_ms", out->ttl_sweep_interval_ms, 10, 3600000, err)) ||
        (rc = check_range("max_memory_mb", out->max_memory_bytes >> 20, 4, 1048576, err)) ||
        (rc = check_range("write_buffer_bytes", out->write_buffer_bytes, 64u << 10,
                          out->max_memory_bytes / 2, err)) ||
        (rc = check_range("max_log_bytes", out->max_log_bytes, 64u << 10, (uint64_t)64 << 30,
                          err)) ||
        (rc = check_range("flush_idle_ms", out->flush_idle_ms, 10, 86400000, err)) ||
        (rc = check_range("table_bytes", out->table_bytes, 64u << 10, (uint64_t)1 << 30, err)) ||
        (rc = check_range("compaction_threads", out->compaction_threads, 1, 32, err)) ||
        (rc = check_range("max_open_tables", out->max_open_tables, 16, 1000000, err)) ||
        (rc = check_range("l0_compaction_trigger", out->l0_trigger, 2, 64, err))) {
        return rc;
    }
    switch (in->compression) {
    case SHALE_COMPRESSION_DEFAULT:
    case SHALE_COMPRESSION_LZ4:
        out->compression = COMPRESS_LZ4;
        break;
    case SHALE_COMPRESSION_NONE:
        out->compression = COMPRESS_NONE;
        break;
    case SHALE_COMPRESSION_ZSTD:
        out->compression = COMPRESS_ZSTD;
        break;
    default:
        return err_set(err, SHALE_INVALID, 0, "option compression = %d is not a compression",
                       (int)in->compression);
    }
    out->block_cache_bytes = out->max_memory_bytes - 2 * out->write_buffer_bytes;
    out->l0_slowdown = out->l0_trigger * 2;
    out->l0_stop = out->l0_trigger * 3;
    return SHALE_OK;
}

/* ---- the identity file ---- */

static shale_code identity_create(shale_db *db, shale_error *err)
{
    uint8_t raw[DB_IDENTITY_BYTES];

    db_identity_make(db->env->now_ms(db->env), raw);
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
    size_t at;
    uint32_t id_version;
    const char *why = db_identity_check(data, len, &at, &id_version);
    if (why != NULL && at == 0) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: %zu bytes, not a Shale identity file (%s)",
                     path, len, why);
    } else if (why != NULL && at == 8) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s @8: format version %u, this build reads %u",
                     path, id_version, DB_IDENTITY_VERSION);
    } else if (why != NULL) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s @%zu: %s", path, at, why);
    }
    free(data);
    return rc;
}

/* What the database directory holds, from one listing. Open lists it more than once (before
 * taking the lock, when CURRENT is missing, after reading the manifest), each time afresh, and
 * each caller takes the facts it needs. */
typedef struct dir_facts {
    bool fresh;           /* nothing but what an aborted creation may leave: LOCK, LOG, the
                             identity's temporary file (the identity itself aside) */
    bool has_identity;    /* DB_IDENTITY_NAME */
    bool has_lsm_files;   /* tables, or a manifest past the first */
    uint64_t next_number; /* one past the largest file number in use (0: none) */
} dir_facts;

static shale_code scan_dir(shale_db *db, dir_facts *out, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    shale_code rc = db->env->list_dir(db->env, db->path, &names, &count, err);

    *out = (dir_facts){.fresh = true};
    if (rc != SHALE_OK) {
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        const char *name = names[i];
        size_t n = strlen(name);
        uint64_t number;
        if (strcmp(name, DB_IDENTITY_NAME) == 0) {
            out->has_identity = true;
        } else if (strcmp(name, "LOCK") != 0 && strcmp(name, "LOG") != 0 &&
                   strcmp(name, DB_IDENTITY_NAME ".tmp") != 0) {
            out->fresh = false;
        }
        /* MANIFEST-000001 alone is a creation cut short before CURRENT: not damage. */
        if ((strncmp(name, "MANIFEST-", 9) == 0 && strcmp(name, "MANIFEST-000001") != 0) ||
            (n > 4 && strcmp(name + n - 4, ".sst") == 0)) {
            out->has_lsm_files = true;
        }
        if (version_parse_file_name(name, &number) != VERSION_FILE_OTHER &&
            number + 1 > out->next_number) {
            out->next_number = number + 1;
        }
    }
    env_free_names(names, count);
    return SHALE_OK;
}

/* Is the directory empty but for files an aborted creation may leave (LOCK, LOG, the identity's
 * temporary file)? */
static shale_code dir_is_fresh(shale_db *db, bool *fresh, bool *has_identity, shale_error *err)
{
    dir_facts f;
    shale_code rc = scan_dir(db, &f, err);

    *fresh = f.fresh;
    *has_identity = f.has_identity;
    return rc;
}

void db_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(cv, mu, &ts);
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
            rc = env_sync_parent(db->env, db->path,
                                 err); /* the new directory's own entry must be durable too */
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
    if (!has_identity && (!fresh || db->opts.read_only)) {
        /* Read-only: an empty directory is no database either, and gets no LOCK file. */
        return err_set(err, SHALE_INVALID, 0, "%s: not a Shale database (no %s file)", db->path,
                       DB_IDENTITY_NAME);
    }
    lock_path = env_join_path(db->path, "LOCK");
    id_path = env_join_path(db->path, DB_IDENTITY_NAME);
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
    char *path = env_join_path(db->path, "LOG");
    if (path != NULL) {
        if (db->env->open_file(db->env, path, ENV_WRITE | ENV_CREATE, &db->info_log, NULL) !=
            SHALE_OK) {
            db->info_log = NULL;
        }
        free(path);
    }
}

void db_tables_unref(db_tables *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* The set first: its tables give back the readers they pinned (table_cache_lookup);
     * then the readers, whose closing releases their cached blocks; then the block cache. */
    version_set_free(t->vs);
    table_cache_free(t->tables);
    cache_free(t->block_cache);
    free(t);
}

/* Releases everything the database holds except the handle itself. REQUIRES: the background
 * threads are stopped. */
static void db_release(shale_db *db)
{
    void *ext = atomic_exchange(&db->ext, NULL);
    if (ext != NULL) {
        void (*free_fn)(void *) = atomic_load(&db->ext_free);
        free_fn(ext);
    }
    if (db->recycler != NULL) {
        /* Memtables still read by iterators past close free their memory when they die. */
        memtable_recycler_set_accepting(db->recycler, false);
    }
    db_view_release(db->view);
    db->view = NULL;
    memtable_unref(db->imm);
    db->imm = NULL;
    memtable_unref(db->mem);
    db->mem = NULL;
    memtable_recycler_unref(db->recycler);
    db->recycler = NULL;
    while (db->snap_head != NULL) {
        shale_snapshot *s = db->snap_head;
        db->snap_head = s->next;
        free(s);
    }
    db->snap_tail = NULL;
    if (db->shared != NULL) {
        db_tables_unref(db->shared);
    } else { /* a failed open before the holder existed */
        version_set_free(db->vs);
        table_cache_free(db->tables);
        cache_free(db->block_cache);
    }
    db->shared = NULL;
    db->tables = NULL;
    db->vs = NULL;
    db->block_cache = NULL;
    free(db->pending);
    db->pending = NULL;
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
    buf_free(&db->group_slots);
    buf_free(&db->group_batches);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->log_mu);
    pthread_mutex_destroy(&db->ttl_mu);
    pthread_mutex_destroy(&db->info_mu);
    pthread_mutex_destroy(&db->bg_mu);
    pthread_mutex_destroy(&db->view_mu);
    pthread_mutex_destroy(&db->txn_mu);
    pthread_cond_destroy(&db->mu_cv);
    pthread_cond_destroy(&db->bg_cv);
    pthread_cond_destroy(&db->bg_done);
    free(db->path);
    db->path = NULL;
}

/* True if the directory holds tables or a manifest past the first (so a missing CURRENT is
 * damage, not a creation cut short or an issue-2 database to upgrade). */
static shale_code has_lsm_files(shale_db *db, bool *out, shale_error *err)
{
    dir_facts f;
    shale_code rc = scan_dir(db, &f, err);

    *out = f.has_lsm_files;
    return rc;
}

/* Every file number in the directory is spent, also those of tables a crash left unrecorded
 * (a flush or compaction whose edit never became durable): they are deleted as obsolete, and
 * their numbers are never handed out again. */
static shale_code mark_numbers_used(shale_db *db, shale_error *err)
{
    dir_facts f;
    shale_code rc = scan_dir(db, &f, err);

    if (rc == SHALE_OK) {
        version_set_mark_file_number_used(db->vs, f.next_number);
    }
    return rc;
}

/* Reads the manifest (or creates one for a new database, or one written by a version without
 * tables), replays the log tail, and installs the first view. */
static shale_code open_tables(shale_db *db, shale_error *err)
{
    version_options vo = {
        .l0_compaction_trigger = db->opts.l0_trigger,
        .base_level_bytes = db->opts.table_bytes * 4,
        .table_bytes = db->opts.table_bytes,
    };
    shale_code rc;

    db->block_cache = cache_new(db->opts.block_cache_bytes, 4);
    db->tables = table_cache_new(db->env, db->path, db->opts.max_open_tables, db->block_cache);
    db->vs = version_set_new(db->env, db->path, &vo);
    db->shared = calloc(1, sizeof *db->shared);
    if (db->shared != NULL) {
        atomic_init(&db->shared->refs, 1);
        db->shared->vs = db->vs;
        db->shared->tables = db->tables;
        db->shared->block_cache = db->block_cache;
    }
    if (db->block_cache == NULL || db->tables == NULL || db->vs == NULL || db->shared == NULL) {
        return err_nomem(err);
    }
    rc = version_set_recover(db->vs, err);
    if (rc == SHALE_NOT_FOUND) {
        bool damaged = false;
        rc = has_lsm_files(db, &damaged, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (damaged) {
            return err_set(err, SHALE_CORRUPTION, 0,
                           "%s: CURRENT is missing but tables or a manifest exist", db->path);
        }
        /* An issue-2 directory has logs: the new manifest takes a number none of them has. A
         * read-only open reads them with no tables (the state a normal open starts from). */
        rc = mark_numbers_used(db, err);
        if (rc == SHALE_OK && !db->opts.read_only) {
            rc = version_set_create(db->vs, err);
        }
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = mark_numbers_used(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = recovery_replay(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    pthread_mutex_lock(&db->log_mu);
    db_log_bytes_note_locked(db); /* the replayed segments are live until the first flush */
    pthread_mutex_unlock(&db->log_mu);
    if (version_set_last_seq(db->vs) > db->last_seq) {
        db->last_seq = version_set_last_seq(db->vs);
        atomic_store_explicit(&db->visible_seq, db->last_seq, memory_order_release);
    }
    pthread_mutex_lock(&db->mu);
    rc = db_view_install_locked(db, err);
    pthread_mutex_unlock(&db->mu);
    if (rc != SHALE_OK || db->opts.read_only) {
        return rc;
    }
    /* Leftovers of a crash: a half-written CURRENT, tables of an unfinished flush or compaction,
     * logs and manifests already superseded. */
    char *tmp = env_join_path(db->path, "CURRENT.tmp");
    if (tmp != NULL) {
        (void)db->env->remove_file(db->env, tmp, NULL);
        free(tmp);
    }
    flush_delete_obsolete(db);
    return SHALE_OK;
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

void *db_ext_get(shale_db *db, void *(*make)(void), void (*free_fn)(void *))
{
    if (db == NULL || db->closed) {
        return NULL;
    }
    void *ext = atomic_load_explicit(&db->ext, memory_order_acquire);
    if (ext != NULL) {
        return ext;
    }
    void *mine = make();
    if (mine == NULL) {
        return NULL;
    }
    /* ext_free is set before ext is published, so whoever sees ext set frees it right. */
    void (*expected)(void *) = NULL;
    atomic_compare_exchange_strong(&db->ext_free, &expected, free_fn);
    if (atomic_compare_exchange_strong(&db->ext, &ext, mine)) {
        return mine;
    }
    free_fn(mine);
    return ext;
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

shale_code db_check_writable(const shale_db *db, shale_error *err)
{
    shale_code rc = db_check_open(db, err);
    if (rc == SHALE_OK && db->opts.read_only) {
        rc = err_set(err, SHALE_INVALID, 0, "database is open read-only");
    }
    return rc;
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
    pthread_mutex_init(&db->bg_mu, NULL);
    pthread_mutex_init(&db->view_mu, NULL);
    pthread_mutex_init(&db->txn_mu, NULL);
    pthread_condattr_t mono;
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&db->mu_cv, &mono);
    pthread_cond_init(&db->bg_cv, &mono);
    pthread_cond_init(&db->bg_done, &mono);
    pthread_condattr_destroy(&mono);
    db->env = opts && opts->env ? opts->env : env_posix();
    db->path = strdup(path);
    if (db->path == NULL) {
        rc = err_nomem(err);
        goto fail;
    }
    rc = resolve_options(opts, &db->opts, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    db->recycler = memtable_recycler_new();
    db->mem = db->recycler != NULL
                  ? memtable_new_recycled((size_t)(db->opts.write_buffer_bytes / 16), db->recycler)
                  : NULL;
    if (db->mem == NULL) {
        rc = err_nomem(err);
        goto fail;
    }
    rc = prepare_dir(db, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    if (!db->opts.read_only) {
        open_info_log(db);
    }
    db_log(db,
           "open %s: shale %s, durability %s, max_key_bytes %u, max_value_bytes %u, "
           "wal_segment_bytes %" PRIu64 ", wal_flush_interval_ms %u, ttl_sweep_interval_ms %u%s",
           db->path, shale_version(), shale_durability_name(db->opts.durability),
           db->opts.max_key_bytes, db->opts.max_value_bytes, db->opts.wal_segment_bytes,
           db->opts.wal_flush_interval_ms, db->opts.ttl_sweep_interval_ms,
           db->opts.salvage ? ", salvage" : "");
    db_log(db,
           "open %s: max_memory_mb %" PRIu64 " (write buffer %" PRIu64 " MiB, block cache %" PRIu64
           " MiB), max_log_bytes %" PRIu64
           ", flush_idle_ms %u, compression %s, table_bytes %" PRIu64
           ", compaction_threads %u, max_open_tables %u, level 0 trigger/slowdown/stop %u/%u/%u",
           db->path, db->opts.max_memory_bytes >> 20, db->opts.write_buffer_bytes >> 20,
           db->opts.block_cache_bytes >> 20, db->opts.max_log_bytes, db->opts.flush_idle_ms,
           compress_name(db->opts.compression), db->opts.table_bytes, db->opts.compaction_threads,
           db->opts.max_open_tables, db->opts.l0_trigger, db->opts.l0_slowdown, db->opts.l0_stop);
    rc = open_tables(db, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    db->last_write_ms = db->env->mono_us(db->env) / 1000;
    if (db->opts.read_only) {
        *out = db; /* no background work: nothing may be written */
        return SHALE_OK;
    }
    if ((rc = commit_start(db, err)) != SHALE_OK || (rc = flush_start(db, err)) != SHALE_OK ||
        (rc = compaction_start(db, err)) != SHALE_OK || (rc = ttl_start(db, err)) != SHALE_OK) {
        goto fail_stop;
    }
    *out = db;
    return SHALE_OK;

fail_stop:
    ttl_stop(db);
    flush_stop(db);
    compaction_stop(db);
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
    txn_close_all(db);
    if (db->opts.read_only) {
        /* Nothing to flush, settle or delete, and no thread to stop (shale_open). */
        db_release(db);
        bury(db);
        return SHALE_OK;
    }
    ttl_stop(db);
    /* Close flushes: a clean reopen replays no log. A failed flush loses nothing (the log
     * keeps the data), except with durability NONE, where the error says so. */
    shale_error ferr;
    shale_code frc = SHALE_OK;
    pthread_mutex_lock(&db->mu);
    bool need = !db->writes_stopped && (memtable_entry_count(db->mem) > 0 || db->imm != NULL);
    pthread_mutex_unlock(&db->mu);
    if (need) {
        frc = flush_now(db, &ferr);
        if (frc != SHALE_OK) {
            db_log(db, "close: flush failed: %s", ferr.msg);
        }
    }
    flush_stop(db);
    compaction_stop(db);
    /* The last edit's files are kept until a later edit is durable (version.h): one empty edit
     * lets them go, so a clean close leaves exactly the live files. Its loss is harmless: the
     * state before it is the one after the close's flush. */
    pthread_mutex_lock(&db->mu);
    bool stopped = db->writes_stopped;
    pthread_mutex_unlock(&db->mu);
    if (!stopped) {
        /* Not after writes stopped: the manifest may be in doubt (CURRENT possibly naming a
         * manifest the set does not know), so nothing may be written or deleted. */
        shale_error serr;
        pthread_mutex_lock(&db->bg_mu);
        shale_code src = version_set_settle(db->vs, &serr);
        pthread_mutex_unlock(&db->bg_mu);
        if (src != SHALE_OK) {
            db_log(db, "close: cannot record the last edit's obsolete files: %s", serr.msg);
        } else {
            flush_delete_obsolete(db);
        }
    }
    rc = commit_stop(db, err);
    if (rc == SHALE_OK && frc != SHALE_OK && db->opts.durability == SHALE_DURABILITY_NONE) {
        rc = err_set(err, frc, ferr.sys_errno, "close: unlogged data could not be flushed: %s",
                     ferr.msg);
    }
    db_log(db, "close: last sequence %" PRIu64 "%s", db->last_seq,
           rc == SHALE_OK ? "" : " (the log could not be closed cleanly)");
    db_release(db);
    bury(db);
    return rc;
}

/* ---- point reads ---- */

shale_code db_check_key(const shale_db *db, shale_slice key, shale_error *err)
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

/* Finds the live value of key at seq and time now_ms (0: read the clock only if the entry has a
 * deadline). SHALE_NOT_FOUND if none; SHALE_CORRUPTION / SHALE_IO from a table. On SHALE_OK the
 * value is in `value` (when not NULL) and *info filled (when not NULL). The caller counts the
 * read in db->reads (a multi_get once for all its keys: the counter's line is shared by every
 * reading thread). */
static shale_code lookup(shale_db *db, db_view *view, shale_slice key, uint64_t seq,
                         uint64_t now_ms, shale_buf *value, shale_entry_info *info,
                         shale_buf *scratch, shale_error *err)
{
    ikey_entry e;
    bool found = false;

    shale_code rc = db_view_get(db, view, key, seq, &found, &e, scratch, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!found || e.type != IKEY_PUT ||
        (e.expire_at_ms != 0 && e.expire_at_ms <= (now_ms ? now_ms : db->env->now_ms(db->env)))) {
        return SHALE_NOT_FOUND;
    }
    if (info != NULL) {
        info->seq = e.seq;
        info->expire_at_ms = e.expire_at_ms;
    }
    if (value == NULL) {
        return SHALE_OK;
    }
    if (value == scratch && e.key.data == value->data) {
        /* A table's answer, already in the caller's buffer as key ++ value (sst_reader_get). */
        memmove(value->data, (const uint8_t *)value->data + e.key.len, e.value.len);
        value->len = e.value.len;
        return SHALE_OK;
    }
    return buf_set(value, e.value.data, e.value.len, err);
}

shale_code shale_get_info(shale_db *db, const shale_read_opts *ropts, shale_slice key,
                          shale_buf *value, shale_entry_info *info, shale_error *err)
{
    shale_buf scratch = {0};
    shale_code rc;

    rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = db_check_key(db, key, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint64_t seq = db_read_seq(db, ropts); /* the seq first, then the view (db_impl.h) */
    db_view *view = db_view_acquire(db);
    atomic_fetch_add_explicit(&db->reads, 1, memory_order_relaxed);
    /* The value buffer doubles as the table's scratch: no allocation per get once it is big
     * enough, and one copy less. */
    rc = lookup(db, view, key, seq, 0, value, info, value != NULL ? value : &scratch, err);
    db_view_release(view);
    buf_free(&scratch);
    if (rc != SHALE_OK && value != NULL) {
        value->len = 0;
    }
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, rc, 0, "key not found");
    }
    return rc;
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

/* How many gets ahead shale_multi_get starts the misses of. */
#define MULTI_GET_AHEAD 8

shale_code shale_multi_get(shale_db *db, const shale_read_opts *ropts, size_t count,
                           const shale_slice *keys, shale_buf *values, shale_code *codes,
                           shale_error *err)
{
    shale_code orc = db_check_open(db, err);
    if (orc != SHALE_OK) {
        return orc;
    }
    if (count > 0 && (keys == NULL || values == NULL || codes == NULL)) {
        return err_set(err, SHALE_INVALID, 0, "shale_multi_get: NULL array");
    }
    for (size_t i = 0; i < count; i++) {
        shale_error kerr;
        shale_code rc = db_check_key(db, keys[i], &kerr);
        if (rc != SHALE_OK) {
            return err_set(err, rc, 0, "key %zu: %s", i, kerr.msg);
        }
    }
    /* One snapshot and one clock reading for all keys: the answers agree with each other. */
    uint64_t seq = db_read_seq(db, ropts), now_ms = db->env->now_ms(db->env);
    db_view *view = db_view_acquire(db);
    atomic_fetch_add_explicit(&db->reads, count, memory_order_relaxed);
    shale_code rc = SHALE_OK;
    /* Each get is a few dependent cache misses (index slot, filter line, block): start the first
     * ones of the gets ahead, to arrive while the gets before them run. One get alone has
     * nothing to overlap. */
    size_t ahead = count > 1 ? MULTI_GET_AHEAD : 0;
    for (size_t j = 0; j < count && j < ahead; j++) {
        db_view_prefetch(view, keys[j]);
    }
    for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
        if (ahead > 0 && i > 0 && i + ahead - 1 < count) {
            db_view_prefetch(view, keys[i + ahead - 1]);
        }
        values[i].len = 0;
        shale_error kerr;
        /* Each value buffer is its key's scratch, as in shale_get_info. */
        codes[i] = lookup(db, view, keys[i], seq, now_ms, &values[i], NULL, &values[i], &kerr);
        if (codes[i] != SHALE_OK) {
            values[i].len = 0;
        }
        if (codes[i] == SHALE_NOMEM) {
            rc = err_copy(err, &kerr);
        }
    }
    db_view_release(view);
    return rc;
}

/* ---- writes ---- */

shale_code db_check_level(const shale_db *db, shale_durability level, shale_error *err)
{
    if ((unsigned)level > SHALE_DURABILITY_FULL) {
        return err_set(err, SHALE_INVALID, 0, "write durability %d is not a level", (int)level);
    }
    if (db->opts.durability == SHALE_DURABILITY_NONE && level > SHALE_DURABILITY_NONE) {
        return err_set(err, SHALE_INVALID, 0,
                       "durability %s asked of a database opened with durability none (it has "
                       "no log)",
                       shale_durability_name(level));
    }
    return SHALE_OK;
}

shale_code db_check_value(const shale_db *db, shale_slice value, shale_error *err)
{
    if (value.data == NULL && value.len > 0) {
        return err_set(err, SHALE_INVALID, 0, "value has NULL data and length %zu", value.len);
    }
    if (value.len > db->opts.max_value_bytes) {
        return err_set(err, SHALE_FULL, 0, "value of %zu bytes exceeds max_value_bytes %u",
                       value.len, db->opts.max_value_bytes);
    }
    return SHALE_OK;
}

static shale_code check_write(shale_db *db, const shale_write_opts *wopts, shale_error *err)
{
    shale_code rc = db_check_writable(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    return wopts != NULL ? db_check_level(db, wopts->durability, err) : SHALE_OK;
}

static shale_code write_one(shale_db *db, const shale_write_opts *wopts, uint8_t type,
                            shale_slice key, shale_slice value, uint64_t expire_at_ms,
                            shale_error *err)
{
    uint8_t stack[DB_STACK_BATCH_BYTES];
    shale_batch single, *heap = NULL;
    const shale_batch *b = &single;
    shale_code rc;

    if ((rc = check_write(db, wopts, err)) != SHALE_OK || (rc = db_check_key(db, key, err)) ||
        (rc = db_check_value(db, value, err))) {
        return rc;
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
    int64_t mem_live = db->live_keys + db->imm_live;
    out->immutable_memtables = db->imm != NULL;
    out->user_bytes_written = db->user_bytes;
    out->stall_us = db->stall_us;
    out->slowdown_us = db->slowdown_us;
    out->stalls = db->stalls;
    pthread_mutex_unlock(&db->mu);
    out->reads = atomic_load_explicit(&db->reads, memory_order_relaxed);

    db_view *view = db_view_acquire(db);
    /* Held, not just used: recycled blocks a memtable has not used yet, and what the recycler
     * keeps for the next memtable, count too. */
    out->memory_bytes = memtable_memory_bytes(view->mem) + memtable_spare_bytes(view->mem) +
                        memtable_recycler_bytes(db->recycler);
    if (view->imm != NULL) {
        out->memory_bytes += memtable_memory_bytes(view->imm) + memtable_spare_bytes(view->imm);
    }
    /* Live keys: exact for the memtables' share; a table adds its puts minus its tombstones
     * (each tombstone is taken to hide one put below it) - an estimate that compaction makes
     * exact as it merges versions. */
    int64_t live = mem_live;
    out->levels = VERSION_LEVELS;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        out->level_tables[l] = view->v->nfiles[l];
        out->level_bytes[l] = view->v->level_bytes[l];
        out->table_bytes_on_disk += view->v->level_bytes[l];
        for (size_t i = 0; i < view->v->nfiles[l]; i++) {
            const file_meta *f = view->v->files[l][i];
            live += (int64_t)f->entries - 2 * (int64_t)f->deletions;
        }
    }
    db_view_release(view);
    out->live_keys = live > 0 ? (uint64_t)live : 0;
    out->estimated_live_keys = out->live_keys;

    pthread_mutex_lock(&db->bg_mu);
    out->flushes = db->flushes;
    out->compactions = db->compactions;
    out->flush_bytes = db->flush_bytes;
    out->compaction_bytes_read = db->compaction_read;
    out->compaction_bytes_written = db->compaction_written;
    out->snapshots = db->nsnapshots;
    version_pressure pr;
    version_set_pressure(db->vs, &pr);
    out->pending_compaction_bytes = pr.pending_bytes;
    out->flush_failures = db->flush_failures;
    out->compaction_failures = db->compaction_failures;
    out->compactions_halted = db->bg_error;
    /* bg_err's code is SHALE_OK once the error is resolved (flush.c, "Background errors"). */
    out->background_error = db->bg_error || db->bg_err.code != SHALE_OK;
    if (out->background_error) {
        snprintf(out->background_error_msg, sizeof out->background_error_msg, "%s", db->bg_err.msg);
    }
    pthread_mutex_unlock(&db->bg_mu);
    pthread_mutex_lock(&db->txn_mu);
    out->txns_open = db->txns_open;
    pthread_mutex_unlock(&db->txn_mu);
    out->txn_commits = atomic_load_explicit(&db->txn_commits, memory_order_relaxed);
    out->txn_conflicts = atomic_load_explicit(&db->txn_conflicts, memory_order_relaxed);
    out->txn_rollbacks = atomic_load_explicit(&db->txn_rollbacks, memory_order_relaxed);
    out->write_amplification = out->user_bytes_written
                                   ? (double)(out->flush_bytes + out->compaction_bytes_written) /
                                         (double)out->user_bytes_written
                                   : 0.0;

    cache_stats cs;
    cache_get_stats(db->block_cache, &cs);
    out->block_cache_bytes = cs.usage_bytes;
    out->block_cache_capacity = cs.capacity_bytes;
    out->block_cache_hits = cs.hits;
    out->block_cache_misses = cs.misses;
    out->block_cache_hit_rate =
        cs.hits + cs.misses ? (double)cs.hits / (double)(cs.hits + cs.misses) : 0.0;
    out->open_tables = table_cache_open_count(db->tables);
    out->memtable_budget_bytes = db->opts.write_buffer_bytes;
    return SHALE_OK;
}

/* ---- flush, compaction, snapshots ---- */

shale_code shale_flush(shale_db *db, shale_error *err)
{
    shale_code rc = db_check_writable(db, err);
    return rc != SHALE_OK ? rc : flush_now(db, err);
}

shale_code shale_compact(shale_db *db, shale_error *err)
{
    shale_code rc = db_check_writable(db, err);
    return rc != SHALE_OK ? rc : compaction_manual(db, err);
}

shale_snapshot *shale_snapshot_get(shale_db *db)
{
    if (db_check_open(db, NULL) != SHALE_OK) {
        return NULL;
    }
    shale_snapshot *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    /* The seq is read under bg_mu: a flush or compaction that copies the list after this has
     * only entries at or below it (compaction.c relies on it). */
    pthread_mutex_lock(&db->bg_mu);
    s->seq = db_visible_seq(db);
    s->prev = db->snap_tail;
    if (db->snap_tail != NULL) {
        db->snap_tail->next = s;
    } else {
        db->snap_head = s;
    }
    db->snap_tail = s;
    db->nsnapshots++;
    pthread_mutex_unlock(&db->bg_mu);
    return s;
}

void shale_snapshot_release(shale_db *db, shale_snapshot *s)
{
    if (s == NULL || db_check_open(db, NULL) != SHALE_OK) {
        return;
    }
    pthread_mutex_lock(&db->bg_mu);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        db->snap_head = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    } else {
        db->snap_tail = s->prev;
    }
    db->nsnapshots--;
    pthread_mutex_unlock(&db->bg_mu);
    free(s);
}

uint64_t shale_snapshot_seq(const shale_snapshot *s)
{
    return s ? s->seq : 0;
}
