/*
 * db_impl: the state of an open database, shared by the modules of src/lsm/ (db.c: open, close,
 * reads, stats; commit.c: the write path; recovery.c: log replay; db_iter.c: iterators; ttl.c: the
 * expiry sweeper). Not part of the public API.
 *
 * Locks, in the order they may be taken:
 *   mu      the commit queue, sequence numbers, counters, the stop state.
 *   log_mu  the log writer (append, flush, sync, roll), shared by the commit leader and the
 *           background log flusher. Never held while waiting for mu.
 * Readers take neither: they read visible_seq (acquire) and the memtable (lock-free).
 *
 * The memtable has one writer at a time: the commit leader, which is unique because only the
 * writer at the head of the queue leads and it leaves the queue only after applying its group.
 */
#ifndef SHALE_LSM_DB_IMPL_H
#define SHALE_LSM_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "env/env.h"
#include "lsm/batch.h"
#include "mem/memtable.h"
#include "wal/wal_writer.h"

/* Effective options after defaults and validation. */
typedef struct db_options {
    bool create_if_missing;
    bool error_if_exists;
    bool salvage;
    shale_durability durability;
    uint32_t max_key_bytes;
    uint32_t max_value_bytes;
    uint64_t wal_segment_bytes;
    uint32_t wal_flush_interval_ms;
    uint32_t ttl_sweep_interval_ms;
} db_options;

/* A writer waiting in (or leading) the commit queue. Lives on its caller's stack. */
typedef struct commit_writer commit_writer;

/* Run by the leader with the memtable to itself, before the batch is logged: lets a caller decide
 * the batch's contents from the current state with no write racing it (the TTL sweeper, later
 * transactions). May fill `batch` (initially the writer's own) or fail the commit. */
typedef shale_code (*commit_prepare_fn)(shale_db *db, void *arg, shale_batch *batch,
                                        shale_error *err);

struct shale_db {
    bool closed; /* a closed shell: every call returns SHALE_CLOSED (db.c, "closed handles") */
    char *path;
    const shale_env *env;
    db_options opts;
    env_lock *lock;
    env_file *info_log;      /* LOG: human-readable, not durable; may be NULL */
    pthread_mutex_t info_mu; /* serialises LOG lines (leaf lock) */

    memtable *mem;

    /* Commit pipeline (commit.c). */
    pthread_mutex_t mu;
    commit_writer *queue_head, *queue_tail;
    uint64_t last_seq;            /* newest assigned and applied seq; under mu */
    _Atomic uint64_t visible_seq; /* readers see seq <= this */
    bool writes_stopped;          /* under mu; final */
    shale_error stop_err;         /* why; under mu */
    shale_buf record;             /* the leader's scratch log record; owned by the leader */
    shale_batch prepare_batch;    /* scratch for prepare callbacks; owned by the leader */

    /* Log (commit.c); NULL with durability NONE. */
    pthread_mutex_t log_mu;
    pthread_cond_t log_cv; /* wakes the flusher: bytes buffered, or closing */
    wal_writer *log;
    uint64_t next_file_number; /* under log_mu after open */
    uint64_t log_bytes_closed; /* bytes in segments no longer written */
    uint64_t log_segments;
    bool bg_log_failed; /* the last background flush failed; under log_mu */
    shale_error bg_log_err;
    bool flusher_running, closing, log_cv_ready;
    pthread_t flusher;

    /* TTL sweeper (ttl.c). */
    pthread_mutex_t ttl_mu;
    pthread_cond_t ttl_cv;
    bool ttl_running, ttl_stop;
    pthread_t ttl_thread;
    _Atomic uint64_t ttl_puts; /* TTL'd puts applied: the sweeper idles while nothing new */

    /* Counters. Under mu unless atomic. */
    int64_t live_keys;
    uint64_t writes, batches, group_commits, syncs, expired_removed;
    _Atomic uint64_t reads;
    uint64_t recovered_records, salvaged_records, salvaged_bytes, truncated_bytes;
};

/* ---- commit.c ---- */

/* Commits `batch` (may be empty when `prepare` builds it) at `level`. Blocks until it is applied
 * and as durable as the level says, or failed. */
shale_code commit_write(shale_db *db, const shale_batch *batch, shale_durability level,
                        commit_prepare_fn prepare, void *prepare_arg,
                        shale_error *err) SHALE_MUST_USE;
/* Starts the log flusher thread. The first segment is created by the first logged write. */
shale_code commit_start(shale_db *db, shale_error *err) SHALE_MUST_USE;
/* Stops the flusher and writes out, syncs and closes the log. */
shale_code commit_stop(shale_db *db, shale_error *err);
/* Applies decoded batches to the memtable (the leader, or recovery), accumulating what the
 * counters need; the caller adds the deltas to the db under mu. */
typedef struct commit_apply {
    shale_db *db;
    int64_t live_delta;
    uint64_t ttl_puts;
    uint64_t ops;
} commit_apply;
shale_code commit_apply_op(void *apply, uint64_t seq, const batch_op *op,
                           shale_error *err) SHALE_MUST_USE;
/* Marks the database as refusing writes (first reason wins). REQUIRES: mu held. */
void commit_stop_writes_locked(shale_db *db, const shale_error *why);

/* ---- recovery.c ---- */

/* Replays every log segment into db->mem, cutting a torn tail; sets last_seq, next_file_number
 * and the recovery counters. */
shale_code recovery_replay(shale_db *db, shale_error *err) SHALE_MUST_USE;
/* "dir/NNNNNN.log" into out (size >= strlen(dir) + 16). */
void recovery_log_name(char *out, size_t cap, uint64_t number);

/* ---- ttl.c ---- */

shale_code ttl_start(shale_db *db, shale_error *err) SHALE_MUST_USE;
void ttl_stop(shale_db *db);

/* ---- db.c ---- */

/* SHALE_CLOSED if db is a closed handle, SHALE_INVALID if NULL; else SHALE_OK. */
shale_code db_check_open(const shale_db *db, shale_error *err) SHALE_MUST_USE;

/* Appends a line to the LOG file (best effort; printf-style). */
void db_log(shale_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if the entry is a live value at time now_ms (not a tombstone, not expired). */
static inline bool db_entry_live(const memtable_entry *e, uint64_t now_ms)
{
    return e->type == MEMTABLE_PUT && (e->expire_at_ms == 0 || e->expire_at_ms > now_ms);
}
static inline uint64_t db_visible_seq(shale_db *db)
{
    return atomic_load_explicit(&db->visible_seq, memory_order_acquire);
}

#endif
