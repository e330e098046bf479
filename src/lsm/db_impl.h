/*
 * db_impl: the state of an open database, shared by the modules of src/lsm/ (db.c: open, close,
 * reads, stats; commit.c: the write path; recovery.c: log replay; db_iter.c: iterators; ttl.c: the
 * expiry sweeper). Not part of the public API.
 *
 * Locks, in the order they may be taken:
 *   mu      the commit queue, sequence numbers, counters, the stop state, the memtable switch
 *           (mem, imm) and the stall waits (mu_cv).
 *   bg_mu   background work: the version set (apply, compaction picking), pending outputs,
 *           flush/compaction requests and counters, snapshots list. Waits on bg_cv.
 *   log_mu  the log writer (append, flush, sync, roll), shared by the commit leader and the
 *           background log flusher. Never held while waiting for mu.
 *   view_mu (leaf) the current read view.
 * A thread holding a later lock never takes an earlier one. (The memtable recycler's own lock,
 * inside src/mem/, is a leaf below all of these.)
 *
 * The uncontended commit takes mu twice and log_mu once, and reads no clock: the max_log_bytes
 * check reads log_live_bytes, the level-0 count is read from the view under mu, and the idle
 * timer is kept by the flush thread (flush.c).
 *
 * Readers take only view_mu, briefly: they read visible_seq (acquire) FIRST and then acquire the
 * view (memtable, immutable memtable, version). Every write with seq <= the value read is in
 * that view: a write is applied to the memtable before visible_seq covers it, and data moves from
 * a memtable to a table only by installing a view that holds the table before dropping the
 * memtable.
 *
 * The memtable has one writer at a time: the commit leader, which is unique because only the
 * writer at the head of the queue leads and it leaves the queue only after applying its group.
 * Only the leader switches memtables (flush.c, flush_make_room_locked).
 */
#ifndef SHALE_LSM_DB_IMPL_H
#define SHALE_LSM_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/cache.h"
#include "base/iter.h"
#include "env/env.h"
#include "lsm/batch.h"
#include "lsm/table_cache.h"
#include "lsm/version.h"
#include "mem/memtable.h"
#include "wal/wal_writer.h"

/* Effective options after defaults and validation. */
typedef struct db_options {
    bool create_if_missing;
    bool error_if_exists;
    bool salvage;
    bool read_only; /* shale_options.read_only: nothing in the directory is written (db.c) */
    shale_durability durability;
    uint32_t max_key_bytes;
    uint32_t max_value_bytes;
    uint64_t wal_segment_bytes;
    uint32_t wal_flush_interval_ms;
    uint32_t ttl_sweep_interval_ms;
    uint64_t max_memory_bytes;
    uint64_t write_buffer_bytes;
    uint64_t block_cache_bytes; /* max_memory - 2 * write_buffer_bytes */
    uint64_t max_log_bytes;
    uint32_t flush_idle_ms;
    int compression; /* enum compress_type */
    uint64_t table_bytes;
    uint32_t compaction_threads;
    uint32_t max_open_tables;
    uint32_t l0_trigger, l0_slowdown, l0_stop;
} db_options;

/* What readers read: the memtables and the version, reference counted as one (db.c). */
typedef struct db_view {
    _Atomic int refs;
    memtable *mem;
    memtable *imm; /* NULL when no flush is pending */
    version *v;
} db_view;

/* The table machinery (version set, table cache, block cache), shared by the database and its
 * iterators: an iterator left open past shale_close keeps reading its view, whose tables need
 * these, so the last of the database and its iterators frees them (db.c). */
typedef struct db_tables {
    _Atomic int refs;
    version_set *vs;
    table_cache *tables;
    cache *block_cache;
} db_tables;

void db_tables_unref(db_tables *t);

struct shale_snapshot {
    uint64_t seq;
    shale_snapshot *prev, *next; /* the db's list, oldest first; under bg_mu */
};

/* A writer waiting in (or leading) the commit queue. Lives on its caller's stack. */
typedef struct commit_writer commit_writer;

/* A prepare step, run by the leader before the batch is logged, when every earlier group is
 * applied and no later one can start: lets a caller decide or check its batch against the
 * current state with no write racing it. `seq` is the sequence number the batch's first op will
 * get. Two kinds:
 *   - a writer with no batch of its own (the TTL sweeper) fills `fill` (empty at the call); it
 *     leads a group of its own (`group` NULL);
 *   - a writer with a batch (a transaction, a conditional write) only checks (`fill` NULL). Such
 *     writers share groups, and so one log write and one fdatasync: each member's step runs in
 *     queue order and must also treat the keys of the members accepted before it in the group
 *     (`group`, possibly NULL: none) as written after its snapshot. A member whose step fails
 *     is left out of the group and gets that failure; the others commit.
 * A failure fails the writer's commit, which then writes nothing. */
typedef struct commit_group commit_group;
typedef shale_code (*commit_prepare_fn)(shale_db *db, void *arg, uint64_t seq, shale_batch *fill,
                                        const commit_group *group, shale_error *err);
/* Whether a member accepted earlier in the group writes `key` (may say yes for a key it does not
 * write, with the odds of a 64-bit hash collision: a refused commit, never a missed conflict). */
bool commit_group_has_key(const commit_group *g, shale_slice key);
/* Whether a member accepted earlier writes a key in [lo, hi] (hi exclusive unless hi_inclusive;
 * NULL: unbounded); *found gets one such key (borrowed from that member's batch). */
bool commit_group_key_in(const commit_group *g, const shale_slice *lo, const shale_slice *hi,
                         bool hi_inclusive, shale_slice *found);

struct shale_db {
    bool closed; /* a closed shell: every call returns SHALE_CLOSED (db.c, "closed handles") */
    /* The state of a layer above (db_ext.h), freed with ext_free by shale_close. */
    _Atomic(void *) ext;
    void (*_Atomic ext_free)(void *);
    char *path;
    const shale_env *env;
    db_options opts;
    env_lock *lock;
    env_file *info_log;      /* LOG: human-readable, not durable; may be NULL */
    pthread_mutex_t info_mu; /* serialises LOG lines (leaf lock) */

    memtable *mem; /* written by the commit leader only; switched under mu */
    memtable *imm; /* the memtable being flushed, or NULL; under mu */
    /* Keeps a flushed memtable's memory for the next one; accepting only while imm is NULL
     * (flush.c), so at most two memtables' memory is ever held. */
    memtable_recycler *recycler;
    /* Under mu: the current memtable asked the flush thread to prefill the recycler (once per
     * memtable; flush.c). prefill_wanted is the request, under bg_mu. */
    bool prefill_asked;
    bool prefill_wanted;
    uint64_t imm_log_number;                  /* the first log segment NOT covered by imm */
    uint64_t imm_seq;                         /* the newest seq in imm */
    uint64_t imm_log_bytes, imm_log_segments; /* the segments imm's flush makes obsolete */
    int64_t imm_live;                         /* imm's share of live_keys (see stats) */
    bool force_switch;    /* under mu: the next leader switches even a small memtable */
    pthread_cond_t mu_cv; /* under mu: a flush or compaction finished (stalled writers) */
    /* The idle-flush clock, kept by the flush thread (not the commit path, which reads no clock):
     * last_write_ms is when it last saw `writes` change (idle_writes is the value it saw); under
     * mu. */
    uint64_t last_write_ms, idle_writes;

    /* Tables (version.h, table_cache.h) and the read view. */
    version_set *vs; /* = shared->vs, and so on: the database's own reference */
    cache *block_cache;
    table_cache *tables;
    db_tables *shared;
    pthread_mutex_t view_mu;
    db_view *view;

    /* Background work (flush.c, compaction.c), under bg_mu. */
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;   /* wakes the background threads */
    pthread_cond_t bg_done; /* a background job finished (shale_flush, shale_compact wait) */
    _Atomic bool bg_stop;
    bool flush_requested;
    bool flush_running, flusher_thread_running;
    pthread_t flush_thread;
    pthread_t *compact_threads;
    uint32_t compact_threads_running;
    uint32_t compactions_running;
    uint32_t manual_waiting;     /* shale_compact callers: background picking pauses */
    uint32_t deletions_disabled; /* checkpoints in progress: no obsolete file is deleted */
    uint64_t *pending;           /* output file numbers being written */
    size_t npending, pending_cap;
    shale_snapshot *snap_head, *snap_tail;
    uint64_t nsnapshots;
    /* Open transactions (txn.c), under txn_mu (a leaf lock), and their counters. */
    pthread_mutex_t txn_mu;
    shale_txn *txn_head;
    uint64_t txns_open;
    _Atomic uint64_t txn_commits, txn_conflicts, txn_rollbacks;
    bool bg_error; /* a compaction met damage: no more compactions until reopen */
    shale_error bg_err;
    uint64_t flushes, compactions, flush_bytes, compaction_read, compaction_written;
    uint64_t flush_failures, compaction_failures;

    /* Commit pipeline (commit.c). */
    pthread_mutex_t mu;
    commit_writer *queue_head, *queue_tail;
    uint64_t last_seq;            /* newest assigned and applied seq; under mu */
    _Atomic uint64_t visible_seq; /* readers see seq <= this */
    bool writes_stopped;          /* under mu; final */
    shale_error stop_err;         /* why; under mu */
    shale_buf record;             /* the leader's scratch log record; owned by the leader */
    shale_batch prepare_batch;    /* scratch for prepare callbacks; owned by the leader */
    struct commit_group {         /* the leader's scratch for validating members (commit.c) */
        uint64_t *slots;          /* key hashes, open addressing; 0 = empty */
        size_t mask;
        const shale_batch **batches; /* accepted members so far */
        size_t nbatches;
    } group;
    shale_buf group_slots, group_batches; /* the memory behind `group` */

    /* Log (commit.c); NULL with durability NONE. */
    pthread_mutex_t log_mu;
    pthread_cond_t log_cv; /* wakes the flusher: bytes buffered, or closing */
    wal_writer *log;
    uint64_t log_bytes_closed; /* bytes in live segments no longer written */
    /* log_bytes_closed + the open segment's size, refreshed under log_mu whenever either changes
     * (db_log_bytes_note_locked), so that the commit leader checks max_log_bytes without log_mu. */
    _Atomic uint64_t log_live_bytes;
    uint64_t log_segments;
    /* The newest segment created (commit.c) or replayed and kept (recovery.c); 0 for none. The
     * next segment names it and its final size in its WAL_REC_PREV record. Under log_mu. */
    uint64_t last_log_number;
    bool bg_log_failed; /* the last background flush failed; under log_mu */
    shale_error bg_log_err;
    bool flusher_running, closing, log_cv_ready;
    bool flusher_idle; /* the flusher sleeps until signalled (commit.c, flusher_main) */
    /* shale_sync's last fdatasync: the segment's file number and its size then (under log_mu). */
    uint64_t synced_file, synced_size;
    pthread_t flusher;

    /* TTL sweeper (ttl.c). */
    pthread_mutex_t ttl_mu;
    pthread_cond_t ttl_cv;
    bool ttl_running, ttl_stop;
    pthread_t ttl_thread;
    _Atomic uint64_t ttl_puts; /* TTL'd puts applied: the sweeper idles while nothing new */

    /* Counters. Under mu unless atomic. live_keys is the current memtable's share of the
     * estimate (stats: tables contribute entries - 2 * deletions, imm its imm_live). */
    int64_t live_keys;
    uint64_t user_bytes;
    uint64_t stall_us, slowdown_us, stalls;
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
    uint64_t bytes; /* key + value bytes */
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

/* ---- flush.c ---- */

/* Makes room in the memtable for the leader's group: switches to a fresh memtable when the
 * current one is full (or the log too long, or a switch was forced), and slows or stops the
 * writer while level 0 is piling up or both memtables are full. REQUIRES: mu held by the commit
 * leader; may release and retake it while waiting. */
shale_code flush_make_room_locked(shale_db *db, shale_error *err) SHALE_MUST_USE;
/* Starts / stops the flush thread. */
shale_code flush_start(shale_db *db, shale_error *err) SHALE_MUST_USE;
void flush_stop(shale_db *db);
/* Switches the memtable (through an empty commit) and waits until it is in a table. */
shale_code flush_now(shale_db *db, shale_error *err) SHALE_MUST_USE;
/* Deletes files no live version, pending output, or live log needs. Best effort; logs failures.
 * REQUIRES: bg_mu NOT held. */
void flush_delete_obsolete(shale_db *db);
/* Pending outputs. REQUIRES: bg_mu held. */
shale_code db_pending_add(shale_db *db, uint64_t number, shale_error *err) SHALE_MUST_USE;
void db_pending_remove(shale_db *db, uint64_t number);

/* ---- compaction.c ---- */

/* Writes the entries of `in` (internal order) as tables of `level`, dropping what no reader can
 * see: versions shadowed within a snapshot stripe, expired values (written as tombstones), and
 * tombstones in the oldest stripe where `c` (or, with c NULL, the version `base`) says no lower
 * table can hold the key. Tables are split at max_table_bytes (0: one table) on user-key
 * boundaries and, with c, where compaction_should_stop_before says. Every output is synced and
 * the directory too; the outputs are added to `edit` and stay in the pending list until the
 * caller applied the edit (then calls db_pending_remove for each). */
typedef struct table_writer_stats {
    uint64_t tables, bytes, entries_in, entries_out;
    uint64_t *numbers; /* the outputs' numbers, malloc'ed; caller frees */
} table_writer_stats;
shale_code compaction_write_tables(shale_db *db, iter *in, int level, compaction *c, version *base,
                                   uint64_t max_table_bytes, version_edit *edit,
                                   table_writer_stats *out, shale_error *err) SHALE_MUST_USE;
shale_code compaction_start(shale_db *db, shale_error *err) SHALE_MUST_USE;
void compaction_stop(shale_db *db);
/* Wakes the compaction threads (something may need compacting). REQUIRES: bg_mu held. */
void compaction_wake_locked(shale_db *db);
/* shale_compact's body. */
shale_code compaction_manual(shale_db *db, shale_error *err) SHALE_MUST_USE;

/* ---- ttl.c ---- */

shale_code ttl_start(shale_db *db, shale_error *err) SHALE_MUST_USE;
void ttl_stop(shale_db *db);

/* ---- db.c ---- */

/* The current view with one more reference. */
db_view *db_view_acquire(shale_db *db);
/* Accepts NULL. */
void db_view_release(db_view *v);
/* Installs a view of db->mem, db->imm and the version set's current version.
 * REQUIRES: mu held (so mem and imm are stable). */
shale_code db_view_install_locked(shale_db *db, shale_error *err) SHALE_MUST_USE;
/* One internal iterator over everything in the view (memtables, level 0 tables, each level).
 * NULL when out of memory. */
iter *db_view_iter(shale_db *db, db_view *view, bool fill_cache);
/* Point lookup in a view: the newest version of key with seq <= `seq` (*found false if none).
 * out's slices borrow from the view's memtables or from `scratch`. */
shale_code db_view_get(shale_db *db, db_view *view, shale_slice key, uint64_t seq, bool *found,
                       ikey_entry *out, shale_buf *scratch, shale_error *err) SHALE_MUST_USE;
/* Starts the cache misses of a db_view_get of key (the memtables' index slots, the filter lines
 * of the tables it would probe), so that a batch of gets overlaps them. A hint. */
void db_view_prefetch(db_view *view, shale_slice key);
/* The seq a read runs at: the snapshot's, or the newest visible. */
uint64_t db_read_seq(shale_db *db, const shale_read_opts *ro);

/* ---- db_iter.c: transaction iterators ---- */

/* The key range a serializable transaction's iterator has looked at, for commit validation: from
 * the smallest key it showed or sought to the largest, widened to its bound (or without limit)
 * on a side where it ran off the end. Owned by the transaction; the iterator updates it while
 * both live (`iter` and the iterator's pointer to it are cleared when either side goes). */
typedef struct db_iter_track {
    shale_iter *iter;
    shale_buf lo, hi; /* valid when `any` */
    bool any;
    bool lo_open, hi_open; /* ran off the front / the back */
    bool failed;           /* out of memory while tracking: the range is unknown */
    shale_buf bound_lo, bound_hi;
    bool has_bound_lo, has_bound_hi; /* the iterator's bounds: bound_hi is exclusive */
    struct db_iter_track *next;
} db_iter_track;

/* An iterator over the database as of `snapshot` merged with `writes` (a transaction's own
 * writes, numbered 1 .. writes_upto and shown above the snapshot; NULL for none): the writes win
 * over the database's versions of the same key. Own entries report seq 0. With `track`, every
 * move updates it (and the track's bounds are set from ropts). */
shale_code db_iter_new_txn(shale_db *db, const shale_read_opts *ropts, uint64_t snapshot,
                           memtable *writes, uint64_t writes_upto, db_iter_track *track,
                           shale_iter **out, shale_error *err) SHALE_MUST_USE;
/* Stops the track's iterator from updating it (the transaction ended). */
void db_iter_untrack(db_iter_track *track);

/* ---- txn.c ---- */

/* Ends every transaction still open on db (shale_close): rolled back, detached from db. */
void txn_close_all(shale_db *db);

/* A timed wait of `ms` on cv, which was made with a CLOCK_MONOTONIC condattr (as all of db's). */
void db_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms);

/* SHALE_CLOSED if db is a closed handle, SHALE_INVALID if NULL; else SHALE_OK. */
shale_code db_check_open(const shale_db *db, shale_error *err) SHALE_MUST_USE;
/* db_check_open, then SHALE_INVALID if the database is open read-only: the first check of every
 * call that writes to the directory (writes, flush, compaction, sync, checkpoint, backup). */
shale_code db_check_writable(const shale_db *db, shale_error *err) SHALE_MUST_USE;
/* Argument checks shared by every write path: a key (not empty, within max_key_bytes), a value
 * (within max_value_bytes) and a per-write durability level (a level, and not more than NONE on
 * a database without a log). */
shale_code db_check_key(const shale_db *db, shale_slice key, shale_error *err) SHALE_MUST_USE;
shale_code db_check_value(const shale_db *db, shale_slice value, shale_error *err) SHALE_MUST_USE;
shale_code db_check_level(const shale_db *db, shale_durability level,
                          shale_error *err) SHALE_MUST_USE;

/* Appends a line to the LOG file (best effort; printf-style). */
void db_log(shale_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if the entry is a live value at time now_ms (not a tombstone, not expired). */
static inline bool db_entry_live(const memtable_entry *e, uint64_t now_ms)
{
    return e->type == MEMTABLE_PUT && (e->expire_at_ms == 0 || e->expire_at_ms > now_ms);
}
/* Refreshes log_live_bytes. REQUIRES: log_mu held. */
static inline void db_log_bytes_note_locked(shale_db *db)
{
    atomic_store_explicit(&db->log_live_bytes,
                          db->log_bytes_closed + (db->log ? wal_writer_size(db->log) : 0),
                          memory_order_relaxed);
}
static inline uint64_t db_visible_seq(shale_db *db)
{
    return atomic_load_explicit(&db->visible_seq, memory_order_acquire);
}

#endif
