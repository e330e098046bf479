/*
 * compaction: the table writer shared with flush, the background compaction threads and manual
 * compaction (shale_compact).
 *
 * What may be dropped (compaction_write_tables), with the snapshots s1 < s2 < ... < sk live when
 * the job starts: the entries of one user key arrive newest first; each falls in the stripe of
 * the oldest snapshot that can see it (the first si >= its seq; past sk, the "now" stripe). A
 * reader at any snapshot sees only the newest entry of its stripe, so every later entry of the
 * same key in the same stripe is dropped. A PUT whose deadline has passed is written as a
 * tombstone (no reader can see its value again: deadlines only pass once). A tombstone in the
 * oldest stripe is dropped when no table below the output can hold the key (older versions of
 * the key, if any, are in this job and are dropped with it). A snapshot taken after the job
 * started has a seq at least the newest in the job's input, so it reads the "now" stripe, which
 * is kept.
 *
 * Threads: compaction_threads threads pick compactions under bg_mu (version_set marks inputs
 * busy, so they never share a table) and run them without locks. A failed compaction leaves its
 * inputs in place (its outputs are deleted as obsolete) and is retried after a pause; damage found
 * in a table (SHALE_CORRUPTION) halts compactions until reopen, so that reads report it and
 * nothing is built on it. A failed manifest write stops writes.
 *
 * Reporting (flush.c's top comment has the whole contract): a failed background compaction counts
 * in compaction_failures, is a LOG line and becomes the background error (db->bg_err) until a
 * later compaction succeeds; a failed shale_compact counts and is logged too, but its error goes
 * to its caller. Halting on damage sets db->bg_error and keeps its error for good.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/compress.h"
#include "base/error.h"
#include "lsm/db_impl.h"
#include "lsm/merge_iter.h"
#include "sst/sst_builder.h"

/* ---- dropping ---- */

typedef struct dropper {
    uint64_t *snaps; /* ascending */
    size_t nsnaps;
    uint64_t now_ms;
    shale_buf key; /* the user key being walked */
    bool have_key;
    size_t stripe; /* the stripe of the last entry kept for it */
    bool kept_any; /* an entry of this key was kept, or a tombstone for it dropped */
    bool bottom;   /* no table below the output can hold the key */
} dropper;

static size_t stripe_of(const dropper *d, uint64_t seq)
{
    size_t lo = 0, hi = d->nsnaps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->snaps[mid] >= seq) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

static shale_code snapshot_copy(shale_db *db, dropper *d, shale_error *err)
{
    pthread_mutex_lock(&db->bg_mu);
    d->nsnaps = 0;
    if (db->nsnapshots > 0) {
        d->snaps = malloc(db->nsnapshots * sizeof *d->snaps);
        if (d->snaps == NULL) {
            pthread_mutex_unlock(&db->bg_mu);
            return err_nomem(err);
        }
        for (shale_snapshot *s = db->snap_head; s != NULL; s = s->next) {
            d->snaps[d->nsnaps++] = s->seq; /* the list is oldest first */
        }
    }
    pthread_mutex_unlock(&db->bg_mu);
    return SHALE_OK;
}

/* Could a table of `v` hold `key`? (For a flush: no table means the flush output is the bottom.) */
static bool version_may_hold(const version *v, shale_slice key)
{
    for (int level = 0; level < VERSION_LEVELS; level++) {
        file_meta **f = v->files[level];
        size_t n = v->nfiles[level];
        if (level == 0) {
            for (size_t i = 0; i < n; i++) {
                if (slice_cmp(key, (shale_slice){f[i]->smallest.data, f[i]->smallest.len}) >= 0 &&
                    slice_cmp(key, (shale_slice){f[i]->largest.data, f[i]->largest.len}) <= 0) {
                    return true;
                }
            }
            continue;
        }
        size_t lo = 0, hi = n; /* first table whose largest >= key */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (slice_cmp((shale_slice){f[mid]->largest.data, f[mid]->largest.len}, key) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < n &&
            slice_cmp(key, (shale_slice){f[lo]->smallest.data, f[lo]->smallest.len}) >= 0) {
            return true;
        }
    }
    return false;
}

/* ---- the table writer ---- */

typedef struct writer {
    shale_db *db;
    int level;
    version_edit *edit;
    table_writer_stats *st;
    sst_builder *b;
    uint64_t number;
    size_t numbers_cap;
} writer;

static shale_code open_output(writer *w, shale_error *err)
{
    shale_db *db = w->db;
    char path[4096];
    shale_code rc;

    if (w->st->tables == w->numbers_cap) {
        size_t cap = w->numbers_cap ? w->numbers_cap * 2 : 8;
        uint64_t *p = realloc(w->st->numbers, cap * sizeof *p);
        if (p == NULL) {
            return err_nomem(err);
        }
        w->st->numbers = p;
        w->numbers_cap = cap;
    }
    pthread_mutex_lock(&db->bg_mu);
    w->number = version_set_new_file_number(db->vs);
    rc = db_pending_add(db, w->number, err);
    pthread_mutex_unlock(&db->bg_mu);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Counted as an output from now on, so the caller un-pends it whatever happens. */
    w->st->numbers[w->st->tables++] = w->number;
    version_table_name(path, sizeof path, db->path, w->number);
    sst_builder_options o = sst_builder_default_options();
    o.compression = db->opts.compression;
    return sst_builder_new(db->env, path, w->number, &o, &w->b, err);
}

static shale_code finish_output(writer *w, shale_error *err)
{
    sst_props p;
    shale_code rc;

    memset(&p, 0, sizeof p);
    sst_builder *b = w->b;
    w->b = NULL;
    rc = sst_builder_finish(b, &p, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = version_edit_add_file(w->edit, w->level, w->number, p.file_size,
                               (shale_slice){p.smallest_key.data, p.smallest_key.len},
                               p.smallest_seq, (shale_slice){p.largest_key.data, p.largest_key.len},
                               p.largest_seq, p.min_seq, p.max_seq, p.entries, p.deletions, err);
    w->st->bytes += p.file_size;
    sst_props_free(&p);
    return rc;
}

shale_code compaction_write_tables(shale_db *db, iter *in, int level, compaction *c, version *base,
                                   uint64_t max_table_bytes, version_edit *edit,
                                   table_writer_stats *out, shale_error *err)
{
    dropper d = {.now_ms = db->env->now_ms(db->env)};
    writer w = {.db = db, .level = level, .edit = edit, .st = out};
    shale_code rc;

    rc = snapshot_copy(db, &d, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    for (iter_seek_first(in); iter_valid(in); iter_next(in)) {
        ikey_entry e;
        iter_entry(in, &e);
        out->entries_in++;
        bool new_key = !d.have_key || !slice_eq(e.key, (shale_slice){d.key.data, d.key.len});
        if (new_key) {
            rc = buf_set(&d.key, e.key.data, e.key.len, err);
            if (rc != SHALE_OK) {
                goto fail;
            }
            d.have_key = true;
            d.kept_any = false;
            d.bottom =
                c != NULL ? compaction_is_bottom_for_key(c, e.key) : !version_may_hold(base, e.key);
            /* Split only between user keys, so a key's versions never straddle two tables of
             * one level. */
            bool split = c != NULL && compaction_should_stop_before(c, e.key);
            if (w.b != NULL &&
                (split || (max_table_bytes > 0 && sst_builder_file_size(w.b) >= max_table_bytes))) {
                rc = finish_output(&w, err);
                if (rc != SHALE_OK) {
                    goto fail;
                }
            }
        }
        size_t s = stripe_of(&d, e.seq);
        if (d.kept_any && d.stripe == s) {
            continue; /* shadowed by a newer entry every reader of this stripe sees */
        }
        d.kept_any = true;
        d.stripe = s;
        if (e.type == IKEY_PUT && e.expire_at_ms != 0 && e.expire_at_ms <= d.now_ms) {
            e.type = IKEY_DEL;
            e.value = (shale_slice){NULL, 0};
            e.expire_at_ms = 0;
        }
        if (e.type == IKEY_DEL && s == 0 && d.bottom) {
            continue; /* nothing below to hide, no snapshot that could see an older value */
        }
        if (w.b == NULL) {
            rc = open_output(&w, err);
            if (rc != SHALE_OK) {
                goto fail;
            }
        }
        rc = sst_builder_add(w.b, &e, err);
        if (rc != SHALE_OK) {
            goto fail;
        }
        out->entries_out++;
    }
    rc = iter_status(in, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    if (w.b != NULL) {
        rc = finish_output(&w, err);
        if (rc != SHALE_OK) {
            goto fail;
        }
    }
    if (out->tables > 0) {
        /* The tables' directory entries must be durable before the manifest names them. */
        rc = db->env->sync_dir(db->env, db->path, err);
    }
    goto done;
fail:
    sst_builder_abandon(w.b);
done:
    buf_free(&d.key);
    free(d.snaps);
    return rc;
}

/* ---- running one compaction ---- */

static shale_code run_compaction(shale_db *db, compaction *c, shale_error *err)
{
    version_edit edit;
    table_writer_stats st = {0};
    uint64_t read_bytes = 0;
    shale_code rc;
    size_t n = c->ninputs[0] + c->ninputs[1];

    version_edit_init(&edit);
    rc = compaction_add_input_deletions(c, &edit, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    uint64_t gp_bytes = 0;
    for (size_t i = 0; i < c->ngrandparents; i++) {
        gp_bytes += c->grandparents[i]->size;
    }
    /* A trivial move (LevelDB's): one table, nothing to merge with in the next level, and not
     * so much overlap below that a later compaction of it would be huge. */
    if (!c->manual && c->ninputs[0] == 1 && c->ninputs[1] == 0 &&
        gp_bytes <= 10 * c->max_output_bytes) {
        file_meta *f = c->inputs[0][0];
        rc =
            version_edit_add_file(&edit, c->output_level, f->number, f->size,
                                  (shale_slice){f->smallest.data, f->smallest.len}, f->smallest_seq,
                                  (shale_slice){f->largest.data, f->largest.len}, f->largest_seq,
                                  f->min_seq, f->max_seq, f->entries, f->deletions, err);
    } else {
        iter **children = calloc(n ? n : 1, sizeof *children);
        if (children == NULL) {
            rc = err_nomem(err);
            goto out;
        }
        size_t k = 0;
        for (int which = 0; which < 2; which++) {
            for (size_t i = 0; i < c->ninputs[which]; i++) {
                file_meta *f = c->inputs[which][i];
                read_bytes += f->size;
                children[k] = table_cache_iter(db->tables, f->number, f->size, false);
                if (children[k] == NULL) {
                    for (size_t j = 0; j < k; j++) {
                        iter_destroy(children[j]);
                    }
                    free(children);
                    rc = err_nomem(err);
                    goto out;
                }
                k++;
            }
        }
        iter *in = merge_iter_new(children, k);
        free(children);
        if (in == NULL) {
            rc = err_nomem(err);
            goto out;
        }
        rc = compaction_write_tables(db, in, c->output_level, c, NULL, c->max_output_bytes, &edit,
                                     &st, err);
        iter_destroy(in);
        if (rc != SHALE_OK) {
            goto out_pending;
        }
    }
    if (rc != SHALE_OK) {
        goto out;
    }
    pthread_mutex_lock(&db->bg_mu);
    rc = version_set_apply(db->vs, &edit, err);
    if (rc == SHALE_OK) {
        db->compactions++;
        db->compaction_read += read_bytes;
        db->compaction_written += st.bytes;
    }
    pthread_mutex_unlock(&db->bg_mu);
    if (rc != SHALE_OK) {
        db_log(db, "compaction: manifest write failed, stopping writes: %s", err->msg);
        pthread_mutex_lock(&db->mu);
        commit_stop_writes_locked(db, err);
        pthread_cond_broadcast(&db->mu_cv);
        pthread_mutex_unlock(&db->mu);
        goto out_pending;
    }
    db_log(db,
           "compaction: L%d %zu + L%d %zu tables -> %" PRIu64 " tables, %" PRIu64 " bytes (%" PRIu64
           " of %" PRIu64 " entries kept)",
           c->level, c->ninputs[0], c->output_level, c->ninputs[1], st.tables, st.bytes,
           st.entries_out, st.entries_in);
    pthread_mutex_lock(&db->mu);
    shale_error verr;
    if (db_view_install_locked(db, &verr) != SHALE_OK) {
        db_log(db, "compaction: %s", verr.msg);
    }
    pthread_cond_broadcast(&db->mu_cv);
    pthread_mutex_unlock(&db->mu);
out_pending:
    pthread_mutex_lock(&db->bg_mu);
    for (uint64_t i = 0; i < st.tables; i++) {
        db_pending_remove(db, st.numbers[i]);
    }
    pthread_mutex_unlock(&db->bg_mu);
out:
    free(st.numbers);
    version_edit_free(&edit);
    return rc;
}

/* ---- background threads ---- */

void compaction_wake_locked(shale_db *db)
{
    pthread_cond_broadcast(&db->bg_cv);
}

/* Corruption halts compactions until reopen; its error stays the background error. REQUIRES:
 * bg_mu held. */
static void halt_locked(shale_db *db, const shale_error *err)
{
    if (!db->bg_error) {
        db->bg_error = true;
        db->bg_err = *err;
        db_log(db, "compaction halted until reopen: %s", err->msg);
    }
}

/* After a job succeeded: a compaction error still on record is resolved, unless a flush is
 * failing (its error stays until a flush succeeds) or damage halted compactions. REQUIRES: bg_mu
 * held. */
static void after_success_locked(shale_db *db)
{
    if (!db->bg_error && db->flush_failures == 0 && db->bg_err.code != SHALE_OK) {
        db->bg_err.code = SHALE_OK;
        db_log(db, "compaction succeeded: background error resolved");
    }
}

/* After a background job failed: corruption halts compactions, anything else is the background
 * error and pauses this thread. */
static void after_failure_locked(shale_db *db, const shale_error *err)
{
    if (err->code == SHALE_CORRUPTION) {
        halt_locked(db, err);
        return;
    }
    db->compaction_failures++;
    if (!db->bg_error) {
        db->bg_err = *err;
    }
    db_log(db, "compaction failed (%" PRIu64 " failures since open; retrying in 1 s): %s",
           db->compaction_failures, err->msg);
    if (!db->bg_stop) {
        db_wait_ms(&db->bg_cv, &db->bg_mu, 1000);
    }
}

static void *compact_main(void *arg)
{
    shale_db *db = arg;

    pthread_mutex_lock(&db->bg_mu);
    while (!db->bg_stop) {
        compaction *c = NULL;
        if (!db->bg_error && db->manual_waiting == 0) {
            c = version_set_pick_compaction(db->vs);
        }
        if (c == NULL) {
            db_wait_ms(&db->bg_cv, &db->bg_mu, 1000);
            continue;
        }
        db->compactions_running++;
        pthread_mutex_unlock(&db->bg_mu);
        shale_error err;
        shale_code rc = run_compaction(db, c, &err);
        pthread_mutex_lock(&db->bg_mu);
        compaction_free(c);
        if (rc == SHALE_OK) {
            /* After compaction_free (its input version no longer keeps the inputs alive) and
             * before the job counts as finished (shale_compact waits for settled files). */
            pthread_mutex_unlock(&db->bg_mu);
            flush_delete_obsolete(db);
            pthread_mutex_lock(&db->bg_mu);
        }
        db->compactions_running--;
        if (rc != SHALE_OK) {
            after_failure_locked(db, &err);
        } else {
            after_success_locked(db);
        }
        pthread_cond_broadcast(&db->bg_done);
    }
    pthread_mutex_unlock(&db->bg_mu);
    return NULL;
}

shale_code compaction_start(shale_db *db, shale_error *err)
{
    db->compact_threads = calloc(db->opts.compaction_threads, sizeof *db->compact_threads);
    if (db->compact_threads == NULL) {
        return err_nomem(err);
    }
    for (uint32_t i = 0; i < db->opts.compaction_threads; i++) {
        if (pthread_create(&db->compact_threads[i], NULL, compact_main, db) != 0) {
            return err_set(err, SHALE_NOMEM, errno, "%s: cannot start a compaction thread",
                           db->path);
        }
        pthread_setname_np(db->compact_threads[i], "shale-compact");
        db->compact_threads_running++;
    }
    return SHALE_OK;
}

void compaction_stop(shale_db *db)
{
    pthread_mutex_lock(&db->bg_mu);
    db->bg_stop = true;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->bg_mu);
    for (uint32_t i = 0; i < db->compact_threads_running; i++) {
        pthread_join(db->compact_threads[i], NULL);
    }
    db->compact_threads_running = 0;
    free(db->compact_threads);
    db->compact_threads = NULL;
}

/* ---- manual compaction ---- */

shale_code compaction_manual(shale_db *db, shale_error *err)
{
    shale_code rc = flush_now(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    pthread_mutex_lock(&db->bg_mu);
    if (db->bg_error) {
        rc = err_copy(err, &db->bg_err);
        pthread_mutex_unlock(&db->bg_mu);
        return rc;
    }
    db->manual_waiting++;
    while (db->compactions_running > 0) {
        pthread_cond_wait(&db->bg_done, &db->bg_mu);
    }
    for (int level = 0; level < VERSION_LEVELS - 1 && rc == SHALE_OK; level++) {
        version *v = version_set_current(db->vs);
        int bottom = 0;
        for (int l = 0; l < VERSION_LEVELS; l++) {
            if (v->nfiles[l] > 0) {
                bottom = l;
            }
        }
        /* The bottom level is rewritten one level down too when its tables still hold
         * tombstones (kept for a snapshot since released, say): that is what drops them; and
         * when it holds its static target or more, which would make the background push part of
         * it down right after: the data ends in one level with nothing left to do. */
        uint64_t deletions = 0;
        for (size_t i = 0; i < v->nfiles[level]; i++) {
            deletions += v->files[level][i]->deletions;
        }
        bool full = level == bottom && level > 0 &&
                    v->level_bytes[level] >= version_set_static_target(db->vs, level);
        bool work =
            v->nfiles[level] > 0 && (level < bottom || level == 0 || full ||
                                     (level == bottom && deletions > 0 && db->nsnapshots == 0));
        version_unref(v);
        if (!work) {
            if (level >= bottom) {
                break;
            }
            continue;
        }
        compaction *c = version_set_compact_range(db->vs, level, (shale_slice){NULL, 0},
                                                  (shale_slice){NULL, 0});
        if (c == NULL) {
            continue;
        }
        c->manual = true;
        db->compactions_running++;
        pthread_mutex_unlock(&db->bg_mu);
        shale_error jerr; /* err may be NULL; the failure is recorded either way */
        rc = run_compaction(db, c, &jerr);
        pthread_mutex_lock(&db->bg_mu);
        compaction_free(c);
        db->compactions_running--;
        if (rc != SHALE_OK && jerr.code == SHALE_CORRUPTION) {
            halt_locked(db, &jerr);
        } else if (rc != SHALE_OK) {
            db->compaction_failures++;
            db_log(db, "manual compaction failed (%" PRIu64 " failures since open): %s",
                   db->compaction_failures, jerr.msg);
        }
        if (rc != SHALE_OK) {
            (void)err_copy(err, &jerr);
        }
        if (rc == SHALE_OK) {
            after_success_locked(db);
            pthread_mutex_unlock(&db->bg_mu);
            flush_delete_obsolete(db);
            pthread_mutex_lock(&db->bg_mu);
        }
    }
    db->manual_waiting--;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_cond_broadcast(&db->bg_done);
    pthread_mutex_unlock(&db->bg_mu);
    return rc;
}
