/*
 * ttl: the background sweeper that deletes expired keys.
 *
 * Every ttl_sweep_interval_ms it scans the memtable for keys whose newest version is a PUT past
 * its deadline and deletes them with ordinary logged tombstones, so the removal survives a
 * restart like any delete. Expired keys are already invisible to readers; the sweep makes the
 * removal real (live_keys drops, and later compaction can drop the data).
 *
 * Race with writers: the scan runs without locks, so a key may be rewritten between the scan and
 * the delete. The delete is therefore decided inside the commit pipeline (a prepare callback, run
 * by the leader with the memtable to itself): a candidate is deleted only if its newest version is
 * still the very version the scan saw, and still expired.
 *
 * Cost: the sweeper idles (no scan) while no TTL'd put happened since a sweep that found nothing
 * left to expire.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/db_impl.h"

/* Deletes per commit: keeps one sweep commit small next to user commits. */
#define TTL_MAX_PER_COMMIT 1024

typedef struct ttl_candidate {
    shale_buf key;
    uint64_t seq;
} ttl_candidate;

typedef struct ttl_sweep {
    ttl_candidate items[TTL_MAX_PER_COMMIT];
    size_t count;
    uint64_t now_ms;
    uint64_t deleted;
} ttl_sweep;

static shale_code ttl_prepare(shale_db *db, void *arg, uint64_t seq, shale_batch *batch,
                              const commit_group *group, shale_error *err)
{
    ttl_sweep *sw = arg;
    (void)seq, (void)group;

    sw->deleted = 0;
    for (size_t i = 0; i < sw->count; i++) {
        shale_slice key = {sw->items[i].key.data, sw->items[i].key.len};
        memtable_entry e;
        if (!memtable_get(db->mem, key, MEMTABLE_MAX_SEQ, &e) || e.seq != sw->items[i].seq ||
            e.type != MEMTABLE_PUT || e.expire_at_ms == 0 || e.expire_at_ms > sw->now_ms) {
            continue; /* rewritten or deleted since the scan: not ours to delete */
        }
        shale_code rc = shale_batch_delete(batch, key, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        sw->deleted++;
    }
    return SHALE_OK;
}

static void commit_candidates(shale_db *db, ttl_sweep *sw)
{
    shale_error err;

    if (sw->count == 0) {
        return;
    }
    if (commit_write(db, NULL, SHALE_DURABILITY_DEFAULT, ttl_prepare, sw, &err) == SHALE_OK) {
        pthread_mutex_lock(&db->mu);
        db->expired_removed += sw->deleted;
        pthread_mutex_unlock(&db->mu);
    } else if (err.code != SHALE_CLOSED) {
        db_log(db, "ttl sweep: %s", err.msg);
    }
    sw->count = 0;
}

/* One pass over the memtable. Returns false when nothing TTL'd is left to wait for. */
static bool sweep(shale_db *db, ttl_sweep *sw)
{
    memtable_iter it;
    uint64_t snapshot = db_visible_seq(db);
    bool pending = false;
    shale_slice last_key = {NULL, 0};

    sw->now_ms = db->env->now_ms(db->env);
    /* The memtable through the view: a switch may replace db->mem at any time. Keys already in
     * the immutable memtable or in tables are left to compaction, which drops expired values. */
    db_view *view = db_view_acquire(db);
    memtable *mem = view->mem;
    memtable_ref(mem);
    db_view_release(view); /* a view pins tables; the sweep needs only the memtable */
    memtable_iter_init(&it, mem);
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it)) {
        memtable_entry e;
        memtable_iter_entry(&it, &e);
        /* Entries borrow from the arena, which lives while the iterator holds its reference,
         * so last_key can point into it. Only the newest visible version of a key counts. */
        if (e.seq > snapshot || (last_key.data != NULL && slice_eq(last_key, e.key))) {
            continue;
        }
        last_key = e.key;
        if (e.type != MEMTABLE_PUT || e.expire_at_ms == 0) {
            continue;
        }
        if (e.expire_at_ms > sw->now_ms) {
            pending = true;
            continue;
        }
        ttl_candidate *c = &sw->items[sw->count];
        if (buf_set(&c->key, e.key.data, e.key.len, NULL) != SHALE_OK) {
            pending = true; /* out of memory: try again next time */
            break;
        }
        c->seq = e.seq;
        if (++sw->count == TTL_MAX_PER_COMMIT) {
            commit_candidates(db, sw);
        }
    }
    memtable_iter_destroy(&it);
    memtable_unref(mem);
    commit_candidates(db, sw);
    return pending;
}

static void *ttl_main(void *arg)
{
    shale_db *db = arg;
    ttl_sweep *sw = calloc(1, sizeof *sw);
    uint64_t idle_gen = 0;

    pthread_mutex_lock(&db->ttl_mu);
    while (!db->ttl_stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        uint64_t ns =
            (uint64_t)deadline.tv_nsec + (uint64_t)db->opts.ttl_sweep_interval_ms * 1000000u;
        deadline.tv_sec += (time_t)(ns / 1000000000u);
        deadline.tv_nsec = (long)(ns % 1000000000u);
        while (!db->ttl_stop &&
               pthread_cond_timedwait(&db->ttl_cv, &db->ttl_mu, &deadline) != ETIMEDOUT) {
        }
        if (db->ttl_stop || sw == NULL) {
            continue;
        }
        uint64_t gen = atomic_load_explicit(&db->ttl_puts, memory_order_relaxed);
        if (gen == idle_gen) {
            continue;
        }
        pthread_mutex_unlock(&db->ttl_mu);
        bool pending = sweep(db, sw);
        pthread_mutex_lock(&db->ttl_mu);
        if (!pending) {
            idle_gen = gen; /* nothing left until a new TTL'd put arrives */
        }
    }
    pthread_mutex_unlock(&db->ttl_mu);
    if (sw != NULL) {
        for (size_t i = 0; i < TTL_MAX_PER_COMMIT; i++) {
            buf_free(&sw->items[i].key);
        }
        free(sw);
    }
    return NULL;
}

shale_code ttl_start(shale_db *db, shale_error *err)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&db->ttl_cv, &attr);
    pthread_condattr_destroy(&attr);
    db->ttl_stop = false;
    if (pthread_create(&db->ttl_thread, NULL, ttl_main, db) != 0) {
        pthread_cond_destroy(&db->ttl_cv);
        return err_set(err, SHALE_NOMEM, errno, "%s: cannot start the TTL sweeper thread",
                       db->path);
    }
    pthread_setname_np(db->ttl_thread, "shale-ttl");
    db->ttl_running = true;
    db_log(db, "ttl sweeper started (every %u ms)", db->opts.ttl_sweep_interval_ms);
    return SHALE_OK;
}

void ttl_stop(shale_db *db)
{
    if (!db->ttl_running) {
        return;
    }
    pthread_mutex_lock(&db->ttl_mu);
    db->ttl_stop = true;
    pthread_cond_broadcast(&db->ttl_cv);
    pthread_mutex_unlock(&db->ttl_mu);
    pthread_join(db->ttl_thread, NULL);
    pthread_cond_destroy(&db->ttl_cv);
    db->ttl_running = false;
    db_log(db, "ttl sweeper stopped");
}
