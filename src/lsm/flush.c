/*
 * flush: memtable switches, the flush thread, and obsolete-file deletion.
 *
 * Switch (the commit leader, under mu): when the memtable reaches write_buffer_bytes, or the live
 * log passes max_log_bytes, or a switch is forced (shale_flush, the idle timer, close), the log
 * segment in use is synced and closed, the memtable becomes the immutable `imm`, and a fresh
 * memtable takes the writes. Every record of imm is in segments numbered below imm_log_number
 * (the next segment is created by the next logged write, with a larger number), and its newest
 * seq is imm_seq.
 *
 * Flush (the flush thread): imm is written as a level-0 table (compaction_write_tables drops what
 * no snapshot can see), the table is synced and its directory too, and one manifest edit records
 * the table, log_number = imm_log_number and flushed_seq = imm_seq. Only after that edit is durable
 * does imm leave the read view. The covered log segments are deleted one edit later: a log
 * segment goes only once every write in it is in a table the manifest records AND a later edit is
 * durable too (version_set_kept_log_number), because recovery takes a damaged final manifest
 * record for a torn one and must then find the logs the state before it needs. Likewise the
 * tables an edit removes stay until the next edit (version_set_live_files lists them). Recovery
 * skips records at or below flushed_seq, so the two agree even if a deletion is lost in a crash.
 *
 * Failures: a failed table write leaves imm in place and is retried with a growing pause; writes
 * are refused with the flush's error meanwhile, and go on by themselves once a retry succeeds
 * (shale_flush gives up after FLUSH_MAX_FAILURES). A failed manifest write is final: writes
 * stop.
 *
 * Background errors (stats.background_error): db->bg_err holds the last flush or background
 * compaction failure while it is unresolved, and its code goes back to SHALE_OK when a later
 * flush (or compaction, while no flush is failing) succeeds; a compaction that keeps failing sets
 * it again at its next retry. Damage found by a compaction (db->bg_error, compactions halted
 * until reopen) is sticky: its message is kept, never overwritten or cleared. Each failure and
 * each resolution is a LOG line. While a flush is failing, every write is refused with its
 * error until a retry succeeds (the memtable it flushes stays readable, and its log stays). A
 * compaction failure refuses writers where it blocks them: level 0 at l0_stop while compactions
 * keep failing (each stalled writer waits for COMPACT_FAILS_BEFORE_REFUSING failed retries,
 * then gets the compaction's error; they go on once a compaction succeeds); with room left, the
 * writes are in the log and tables keep being made, so nothing is refused.
 *
 * Memory: a flushed memtable's arena blocks and index go to db->recycler for the next memtable
 * (memtable.h, recycling), which accepts only while no imm is pending, so the memtables never hold
 * more than two write buffers; the first memtable's successor is prefilled in the background
 * (maybe_prefill_locked).
 *
 * Stalls: writes slow down by 1 ms each while level 0 holds l0_slowdown tables or more, and stop
 * while it holds l0_stop or both memtables are full, until a flush or compaction finishes
 * (mu_cv). Time spent is counted in stall_us / slowdown_us.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "lsm/db_impl.h"
#include "lsm/merge_iter.h"

#define FLUSH_MAX_FAILURES            3
/* Failed compaction retries (about a second apart) a writer stalled at l0_stop sees before it is
 * refused with the compaction's error. */
#define COMPACT_FAILS_BEFORE_REFUSING 2

static uint64_t now_us(const shale_db *db)
{
    return db->env->mono_us(db->env);
}

/* Level 0's table count in the read view. REQUIRES: mu held: the view is only replaced under mu
 * (db_view_install_locked), so with mu it is stable without view_mu. */
static size_t l0_tables_locked(shale_db *db)
{
    return db->view ? db->view->v->nfiles[0] : 0;
}

/* REQUIRES: mu held (imm, imm_log_bytes). */
static uint64_t live_log_bytes_locked(shale_db *db)
{
    /* The segments of a memtable being flushed do not count: they go when its flush is done. */
    return atomic_load_explicit(&db->log_live_bytes, memory_order_relaxed) -
           (db->imm != NULL ? db->imm_log_bytes : 0);
}

static uint64_t consecutive_failures(shale_db *db, shale_error *last)
{
    pthread_mutex_lock(&db->bg_mu);
    uint64_t n = db->flush_failures;
    if (last != NULL && n > 0) {
        if (!db->bg_error) {
            *last = db->bg_err;
        } else {
            /* bg_err keeps the damage that halted compactions; the flush's own error is in the
             * LOG. Still an I/O failure, not corruption, for the writer. */
            last->code = SHALE_IO;
            last->sys_errno = 0;
            snprintf(last->msg, sizeof last->msg, "see the LOG (compactions halted too: %.180s)",
                     db->bg_err.msg);
        }
    }
    pthread_mutex_unlock(&db->bg_mu);
    return n;
}

/* Compaction failures since open, and whether a compaction error is unresolved now (then *last
 * gets it). Damage halting compactions does not count: writes do not wait on level 0 then. */
static uint64_t compaction_failing(shale_db *db, bool *failing, shale_error *last)
{
    pthread_mutex_lock(&db->bg_mu);
    uint64_t n = db->compaction_failures;
    *failing = !db->bg_error && db->flush_failures == 0 && db->bg_err.code != SHALE_OK;
    if (*failing) {
        *last = db->bg_err;
    }
    pthread_mutex_unlock(&db->bg_mu);
    return n;
}

/* Switches to a fresh memtable. REQUIRES: mu held by the leader, imm == NULL. */
static shale_code switch_locked(shale_db *db, shale_error *err)
{
    size_t block = (size_t)(db->opts.write_buffer_bytes / 16);
    memtable *fresh = memtable_new_recycled(block, db->recycler);
    shale_code rc = SHALE_OK;

    if (fresh == NULL) {
        return err_nomem(err);
    }
    if (db->opts.durability != SHALE_DURABILITY_NONE) {
        pthread_mutex_lock(&db->log_mu);
        if (db->log != NULL) {
            uint64_t size = wal_writer_size(db->log);
            /* The old segment is synced whatever the level: after the flush it is deleted, and
             * until then it must not tear in front of the next segment. */
            rc = wal_writer_close(db->log, true, err);
            db->log = NULL;
            db->log_bytes_closed += size;
        }
        db->imm_log_bytes = db->log_bytes_closed;
        db->imm_log_segments = db->log_segments;
        db_log_bytes_note_locked(db);
        pthread_mutex_unlock(&db->log_mu);
        if (rc != SHALE_OK) {
            /* A failed sync is final (durable I/O rules). */
            commit_stop_writes_locked(db, err);
            memtable_unref(fresh);
            return rc;
        }
    }
    memtable *old = db->mem;
    db->imm = old;
    db->mem = fresh;
    db->imm_log_number = version_set_next_file_number(db->vs);
    db->imm_seq = db->last_seq;
    db->imm_live = db->live_keys;
    db->live_keys = 0;
    db->force_switch = false;
    db->prefill_asked = false;
    rc = db_view_install_locked(db, err);
    if (rc != SHALE_OK) {
        /* Back out: the old memtable stays the current one (its log segment is closed; the next
         * write opens a new one, which recovery replays after it). */
        db->mem = old;
        db->imm = NULL;
        db->live_keys = db->imm_live;
        db->imm_live = 0;
        memtable_unref(fresh);
        return rc;
    }
    /* With imm pending, a dying memtable's memory is freed, not kept: active + imm is all the
     * budget allows. */
    memtable_recycler_set_accepting(db->recycler, false);
    pthread_mutex_lock(&db->bg_mu);
    db->flush_requested = true;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->bg_mu);
    return SHALE_OK;
}

/* The first memtables of a database get fresh memory, which the writer faults in page by page
 * (the kernel zeroing each: ~5% of a sequential fill). Once the first one is half full, the
 * flush thread fills the recycler with the next memtable's blocks, faulted in on its own thread.
 * Only while no memtable is being flushed (the recycler accepts only then) and only when neither
 * the recycler nor this memtable has recycled memory already: at most one memtable's memory
 * beside the active one, as recycling. REQUIRES: mu held by the leader. */
static void maybe_prefill_locked(shale_db *db)
{
    if (db->prefill_asked || db->imm != NULL ||
        memtable_memory_bytes(db->mem) < db->opts.write_buffer_bytes / 2) {
        return;
    }
    db->prefill_asked = true;
    if (memtable_spare_bytes(db->mem) > 0 || memtable_recycler_bytes(db->recycler) > 0) {
        return;
    }
    pthread_mutex_lock(&db->bg_mu);
    db->prefill_wanted = true;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->bg_mu);
}

shale_code flush_make_room_locked(shale_db *db, shale_error *err)
{
    bool slowed = false;
    bool l0_waiting = false; /* this writer stalled at l0_stop: cf0 is valid */
    uint64_t cf0 = 0;        /* compaction failures when it started waiting */

    for (;;) {
        if (db->writes_stopped) {
            return SHALE_OK; /* the caller reports it */
        }
        shale_error ferr;
        if (db->imm != NULL && consecutive_failures(db, &ferr) > 0) {
            /* A background error: refused until a flush succeeds (the flush thread retries by
             * itself), so that no write is taken while the database cannot make tables. */
            return err_set(err, ferr.code ? ferr.code : SHALE_IO, ferr.sys_errno,
                           "background flush failing, writes refused until it succeeds: %s",
                           ferr.msg);
        }
        size_t l0 = l0_tables_locked(db);
        bool compacting = !db->bg_error; /* with compactions halted, level 0 never shrinks */
        if (compacting && !slowed && l0 >= db->opts.l0_slowdown && l0 < db->opts.l0_stop) {
            /* Give compaction a millisecond of this writer's time, once per write. */
            slowed = true;
            uint64_t t0 = now_us(db);
            pthread_mutex_unlock(&db->mu);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&db->mu);
            db->slowdown_us += now_us(db) - t0;
            continue;
        }
        bool empty = memtable_entry_count(db->mem) == 0;
        bool full = !empty && (db->force_switch ||
                               memtable_memory_bytes(db->mem) >= db->opts.write_buffer_bytes ||
                               (db->opts.durability != SHALE_DURABILITY_NONE &&
                                live_log_bytes_locked(db) >= db->opts.max_log_bytes));
        if (!full) {
            if (empty) {
                db->force_switch = false;
            }
            maybe_prefill_locked(db);
            return SHALE_OK;
        }
        if (db->imm != NULL || (compacting && l0 >= db->opts.l0_stop)) {
            /* (A failing flush refused the write above: imm here is a flush in progress.) */
            if (db->imm == NULL) {
                /* Stalled on level 0: only a compaction can free it. */
                bool failing;
                uint64_t cf = compaction_failing(db, &failing, &ferr);
                if (!l0_waiting) {
                    l0_waiting = true;
                    cf0 = cf;
                } else if (failing && cf - cf0 >= COMPACT_FAILS_BEFORE_REFUSING) {
                    return err_set(err, ferr.code, ferr.sys_errno,
                                   "level 0 is full and compaction keeps failing: %s", ferr.msg);
                }
            }
            uint64_t t0 = now_us(db);
            db->stalls++;
            db_wait_ms(&db->mu_cv, &db->mu, 100);
            db->stall_us += now_us(db) - t0;
            continue;
        }
        return switch_locked(db, err);
    }
}

/* ---- pending outputs ---- */

shale_code db_pending_add(shale_db *db, uint64_t number, shale_error *err)
{
    if (db->npending == db->pending_cap) {
        size_t cap = db->pending_cap ? db->pending_cap * 2 : 16;
        uint64_t *p = realloc(db->pending, cap * sizeof *p);
        if (p == NULL) {
            return err_nomem(err);
        }
        db->pending = p;
        db->pending_cap = cap;
    }
    db->pending[db->npending++] = number;
    return SHALE_OK;
}

void db_pending_remove(shale_db *db, uint64_t number)
{
    for (size_t i = 0; i < db->npending; i++) {
        if (db->pending[i] == number) {
            db->pending[i] = db->pending[--db->npending];
            return;
        }
    }
}

/* ---- obsolete files ---- */

void flush_delete_obsolete(shale_db *db)
{
    version_numbers live = {0};
    char **names = NULL;
    size_t count = 0;
    shale_error err;

    pthread_mutex_lock(&db->bg_mu);
    if (db->deletions_disabled > 0) {
        pthread_mutex_unlock(&db->bg_mu);
        return;
    }
    version_set_live_files(db->vs, version_numbers_add, &live);
    for (size_t i = 0; i < db->npending; i++) {
        version_numbers_add(db->pending[i], &live);
    }
    /* Files created after this point have numbers >= next: never candidates. */
    uint64_t next = version_set_next_file_number(db->vs);
    /* One edit late (version.h): the logs the state before the last edit replays stay, so a
     * damaged final manifest record, taken for a torn one at open, loses nothing. */
    uint64_t log_number = version_set_kept_log_number(db->vs);
    uint64_t manifest = version_set_manifest_number(db->vs);
    /* Listing under bg_mu: a checkpoint cannot start copying a file we then delete. */
    shale_code rc = db->env->list_dir(db->env, db->path, &names, &count, &err);
    if (rc != SHALE_OK || live.nomem) {
        pthread_mutex_unlock(&db->bg_mu);
        free(live.v);
        env_free_names(names, count);
        return;
    }
    /* Deletions happen under bg_mu too: short (unlink), and it keeps checkpoints simple. */
    if (live.n > 0) {
        qsort(live.v, live.n, sizeof *live.v, version_cmp_u64);
    }
    bool removed = false;
    for (size_t i = 0; i < count; i++) {
        uint64_t number;
        bool drop = false, table = false;
        switch (version_parse_file_name(names[i], &number)) {
        case VERSION_FILE_TABLE:
            table = true;
            drop = number < next && (live.n == 0 || !bsearch(&number, live.v, live.n,
                                                             sizeof *live.v, version_cmp_u64));
            break;
        case VERSION_FILE_LOG:
            drop = number < log_number;
            break;
        case VERSION_FILE_MANIFEST:
            drop = manifest != 0 && number != manifest && number < next;
            break;
        case VERSION_FILE_OTHER:
            break;
        }
        if (!drop) {
            continue;
        }
        char *path = env_join_path(db->path, names[i]);
        if (path == NULL) {
            break;
        }
        if (table) {
            table_cache_evict(db->tables, number);
        }
        rc = db->env->remove_file(db->env, path, &err);
        if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
            db_log(db, "cannot delete obsolete %s: %s", names[i], err.msg);
        } else if (rc == SHALE_OK) {
            db_log(db, "deleted obsolete %s", names[i]);
            removed = true;
        }
        free(path);
    }
    pthread_mutex_unlock(&db->bg_mu);
    /* Deletions need no directory sync for safety (a resurrected obsolete file is deleted again at
     * the next open), but syncing keeps a crash from bringing back gigabytes. */
    if (removed) {
        (void)db->env->sync_dir(db->env, db->path, NULL);
    }
    env_free_names(names, count);
    free(live.v);
}

/* ---- the flush ---- */

/* Writes imm as a level-0 table and records it. */
static shale_code flush_imm(shale_db *db, shale_error *err)
{
    version_edit edit;
    table_writer_stats st = {0};
    shale_code rc;

    pthread_mutex_lock(&db->mu);
    memtable *imm = db->imm;
    uint64_t log_number = db->imm_log_number, seq = db->imm_seq;
    if (imm != NULL) {
        memtable_ref(imm);
    }
    pthread_mutex_unlock(&db->mu);
    if (imm == NULL) {
        return SHALE_OK;
    }
    version *base = version_set_current(db->vs);
    iter *in = mem_iter_new(imm);
    version_edit_init(&edit);
    if (in == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    rc = compaction_write_tables(db, in, 0, NULL, base, 0, &edit, &st, err);
    iter_destroy(in);
    in = NULL;
    if (rc != SHALE_OK) {
        goto out_pending;
    }
    edit.has_log_number = true;
    edit.log_number = log_number;
    edit.has_flushed_seq = true;
    edit.flushed_seq = seq;
    edit.has_last_seq = true;
    edit.last_seq = seq > version_set_last_seq(db->vs) ? seq : version_set_last_seq(db->vs);
    pthread_mutex_lock(&db->bg_mu);
    rc = version_set_apply(db->vs, &edit, err);
    if (rc == SHALE_OK) {
        db->flushes++;
        db->flush_bytes += st.bytes;
        compaction_wake_locked(db);
    }
    pthread_mutex_unlock(&db->bg_mu);
    if (rc != SHALE_OK) {
        /* The manifest is in doubt: nothing more may be built on it. */
        db_log(db, "flush: manifest write failed, stopping writes: %s", err->msg);
        pthread_mutex_lock(&db->mu);
        commit_stop_writes_locked(db, err);
        pthread_cond_broadcast(&db->mu_cv);
        pthread_mutex_unlock(&db->mu);
        goto out_pending;
    }
    db_log(db,
           "flush: %" PRIu64 " entries -> %" PRIu64 " table(s), %" PRIu64 " bytes, seq <= %" PRIu64,
           st.entries_in, st.tables, st.bytes, seq);
    pthread_mutex_lock(&db->mu);
    db->imm = NULL;
    db->imm_live = 0;
    /* imm's memory (freed below, or when its last reader lets go) may now wait for the next
     * memtable. */
    memtable_recycler_set_accepting(db->recycler, true);
    shale_error verr;
    if (db_view_install_locked(db, &verr) != SHALE_OK) {
        /* Out of memory for a new view: the old one still shows imm, which holds the same data
         * as the new table, so reads stay right; the next install catches up. */
        db_log(db, "flush: %s", verr.msg);
    }
    pthread_mutex_lock(&db->log_mu);
    db->log_bytes_closed -= db->imm_log_bytes;
    db->log_segments -= db->imm_log_segments;
    db_log_bytes_note_locked(db);
    pthread_mutex_unlock(&db->log_mu);
    db->imm_log_bytes = db->imm_log_segments = 0;
    pthread_cond_broadcast(&db->mu_cv);
    pthread_mutex_unlock(&db->mu);
    memtable_unref(imm); /* the reference db->imm held */

out_pending:
    pthread_mutex_lock(&db->bg_mu);
    for (uint64_t i = 0; i < st.tables; i++) {
        db_pending_remove(db, st.numbers[i]);
    }
    pthread_mutex_unlock(&db->bg_mu);
out:
    free(st.numbers);
    version_edit_free(&edit);
    version_unref(base);
    memtable_unref(imm);
    if (rc == SHALE_OK) {
        flush_delete_obsolete(db);
    }
    return rc;
}

/* Empty commit whose only effect is to let a leader run flush_make_room_locked. */
static shale_code noop_prepare(shale_db *db, void *arg, uint64_t seq, shale_batch *batch,
                               const commit_group *group, shale_error *err)
{
    (void)db, (void)arg, (void)seq, (void)batch, (void)group, (void)err;
    return SHALE_OK;
}

static shale_code force_switch(shale_db *db, shale_error *err)
{
    pthread_mutex_lock(&db->mu);
    db->force_switch = true;
    pthread_mutex_unlock(&db->mu);
    return commit_write(db, NULL, SHALE_DURABILITY_DEFAULT, noop_prepare, NULL, err);
}

static void *flush_main(void *arg)
{
    shale_db *db = arg;
    uint64_t backoff_ms = 100;

    pthread_mutex_lock(&db->bg_mu);
    while (!db->bg_stop) {
        if (db->prefill_wanted && !db->flush_requested) {
            db->prefill_wanted = false;
            pthread_mutex_unlock(&db->bg_mu);
            memtable_recycler_prefill(db->recycler, (size_t)(db->opts.write_buffer_bytes / 16),
                                      (size_t)db->opts.write_buffer_bytes);
            pthread_mutex_lock(&db->bg_mu);
            continue;
        }
        if (db->flush_requested) {
            db->flush_requested = false;
            db->flush_running = true;
            pthread_mutex_unlock(&db->bg_mu);
            shale_error err;
            shale_code rc = flush_imm(db, &err);
            pthread_mutex_lock(&db->bg_mu);
            db->flush_running = false;
            if (rc == SHALE_OK) {
                if (db->flush_failures > 0) {
                    db_log(db,
                           "flush succeeded after %" PRIu64
                           " failed attempt(s): background error resolved",
                           db->flush_failures);
                }
                db->flush_failures = 0;
                if (!db->bg_error) {
                    db->bg_err.code = SHALE_OK; /* resolved (see the top comment) */
                }
                backoff_ms = 100;
            } else {
                db->flush_failures++;
                if (!db->bg_error) {
                    db->bg_err = err; /* damage halting compactions keeps its message */
                }
                db_log(db, "flush failed (attempt %" PRIu64 ", retrying in %" PRIu64 " ms): %s",
                       db->flush_failures, backoff_ms, err.msg);
                db->flush_requested = true;
                pthread_cond_broadcast(&db->bg_done);
                /* Wake stalled writers: they are refused while the flush fails. */
                pthread_mutex_unlock(&db->bg_mu);
                pthread_mutex_lock(&db->mu);
                pthread_cond_broadcast(&db->mu_cv);
                bool stopped = db->writes_stopped;
                pthread_mutex_unlock(&db->mu);
                pthread_mutex_lock(&db->bg_mu);
                if (stopped) {
                    db->flush_requested = false;
                } else if (!db->bg_stop) {
                    db_wait_ms(&db->bg_cv, &db->bg_mu, backoff_ms);
                }
                backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
            }
            pthread_cond_broadcast(&db->bg_done);
            continue;
        }
        uint64_t period = db->opts.flush_idle_ms < 1000 ? db->opts.flush_idle_ms : 1000;
        db_wait_ms(&db->bg_cv, &db->bg_mu, period);
        if (db->bg_stop || db->flush_requested || db->prefill_wanted) {
            continue;
        }
        /* Idle flush: a memtable nobody wrote to for flush_idle_ms goes to a table. */
        pthread_mutex_unlock(&db->bg_mu);
        pthread_mutex_lock(&db->mu);
        uint64_t now_ms = now_us(db) / 1000;
        if (db->writes != db->idle_writes) {
            /* Writes since the last look: the newest was at most one period ago. (The commit path
             * reads no clock; an idle flush may come up to one period late.) */
            db->idle_writes = db->writes;
            db->last_write_ms = now_ms;
        }
        bool idle = db->imm == NULL && !db->writes_stopped && memtable_entry_count(db->mem) > 0 &&
                    now_ms - db->last_write_ms >= db->opts.flush_idle_ms;
        pthread_mutex_unlock(&db->mu);
        if (idle) {
            shale_error err;
            if (force_switch(db, &err) != SHALE_OK && err.code != SHALE_CLOSED) {
                db_log(db, "idle flush: %s", err.msg);
            }
        }
        pthread_mutex_lock(&db->bg_mu);
    }
    pthread_mutex_unlock(&db->bg_mu);
    return NULL;
}

shale_code flush_start(shale_db *db, shale_error *err)
{
    if (pthread_create(&db->flush_thread, NULL, flush_main, db) != 0) {
        return err_set(err, SHALE_NOMEM, errno, "%s: cannot start the flush thread", db->path);
    }
    pthread_setname_np(db->flush_thread, "shale-flush");
    db->flusher_thread_running = true;
    return SHALE_OK;
}

void flush_stop(shale_db *db)
{
    if (!db->flusher_thread_running) {
        return;
    }
    pthread_mutex_lock(&db->bg_mu);
    db->bg_stop = true;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->bg_mu);
    pthread_join(db->flush_thread, NULL);
    db->flusher_thread_running = false;
}

shale_code flush_now(shale_db *db, shale_error *err)
{
    shale_code rc = force_switch(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Wait for imm to reach a table, or for the flush to give up. */
    pthread_mutex_lock(&db->mu);
    while (db->imm != NULL && !db->writes_stopped) {
        shale_error ferr;
        pthread_mutex_unlock(&db->mu);
        uint64_t failures = consecutive_failures(db, &ferr);
        pthread_mutex_lock(&db->mu);
        if (failures >= FLUSH_MAX_FAILURES) {
            pthread_mutex_unlock(&db->mu);
            return err_set(err, ferr.code ? ferr.code : SHALE_IO, ferr.sys_errno,
                           "flush failed: %s", ferr.msg);
        }
        db_wait_ms(&db->mu_cv, &db->mu, 100);
    }
    if (db->imm != NULL) {
        rc = err_copy(err, &db->stop_err);
    }
    pthread_mutex_unlock(&db->mu);
    /* The flush thread still drops its references and deletes the covered logs after imm left:
     * wait for that too, so the caller finds the directory settled. */
    pthread_mutex_lock(&db->bg_mu);
    while (db->flush_running) {
        pthread_cond_wait(&db->bg_done, &db->bg_mu);
    }
    pthread_mutex_unlock(&db->bg_mu);
    return rc;
}
