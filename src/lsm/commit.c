/*
 * commit: the write path. Writers queue under db->mu; the writer at the head leads a group of
 * the writers behind it (LevelDB's scheme): it assigns their sequence numbers, frames their
 * batches as ONE log record, hands it to the OS in one write (and, if any of them asked for FULL,
 * one fdatasync), applies the ops to the memtable, publishes the new visible sequence number and
 * wakes them. While a leader is in the log, new writers queue up behind it and form the next
 * group: that is what makes concurrent FULL commits share an fdatasync.
 *
 * Acknowledgement order: a group is acknowledged only after its write/sync returned, and groups
 * follow each other in sequence order, so a recovered history never has holes.
 *
 * Failures: a failed append fails its group and leaves nothing of it in the file (wal_writer
 * truncates back). A failed fdatasync is final: writes stop for good (commit_stop_writes_locked),
 * reads go on. A memtable allocation failure after the record is logged also stops writes, since
 * memory and log would disagree.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/slice.h"
#include "lsm/db_impl.h"
#include "wal/wal_format.h"

/* The largest group a leader forms, so one slow giant does not delay small commits behind it and
 * a group's record stays cache-friendly (LevelDB uses the same bound). */
#define COMMIT_MAX_GROUP_BYTES    ((size_t)1 << 20)
/* MEMORY-level bytes buffered beyond this are written inline by the committing thread: bounds
 * memory if the flusher falls behind. */
#define COMMIT_MAX_BUFFERED_BYTES ((uint64_t)4 << 20)

struct commit_writer {
    const shale_batch *batch;
    shale_durability level;
    commit_prepare_fn prepare;
    void *prepare_arg;
    bool refused; /* its prepare step failed (rc, err): left out of its group */
    bool done;
    shale_code rc;
    shale_error err;
    pthread_cond_t cv;
    commit_writer *next;
};

/* The ops of a group's members accepted so far, for the validation of the members after them:
 * their writes take sequence numbers above every member's snapshot, so a later member that
 * touches one of those keys conflicts with them as with any committed write. A hash set of the
 * keys (by hash: a collision can only refuse a commit, never let a conflict through) and the
 * accepted batches themselves for range questions. */

#define GROUP_HASH_SEED 0x47524f5550ull /* "GROUP" */

static uint64_t group_hash(shale_slice key)
{
    return hash_bytes(key.data, key.len, GROUP_HASH_SEED) | 1;
}

bool commit_group_has_key(const commit_group *g, shale_slice key)
{
    if (g == NULL || g->slots == NULL) {
        return false;
    }
    uint64_t h = group_hash(key);
    for (size_t i = h & g->mask;; i = (i + 1) & g->mask) {
        if (g->slots[i] == 0) {
            return false;
        }
        if (g->slots[i] == h) {
            return true;
        }
    }
}

typedef struct range_probe {
    shale_slice lo, hi;
    bool has_lo, has_hi, hi_inclusive;
    shale_slice *found;
} range_probe;

static shale_code probe_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    range_probe *rp = arg;
    (void)seq, (void)err;
    if (rp->has_lo && slice_cmp(op->key, rp->lo) < 0) {
        return SHALE_OK;
    }
    if (rp->has_hi) {
        int c = slice_cmp(op->key, rp->hi);
        if (c > 0 || (c == 0 && !rp->hi_inclusive)) {
            return SHALE_OK;
        }
    }
    *rp->found = op->key;
    return SHALE_CONFLICT; /* ends the walk */
}

bool commit_group_key_in(const commit_group *g, const shale_slice *lo, const shale_slice *hi,
                         bool hi_inclusive, shale_slice *found)
{
    if (g == NULL) {
        return false;
    }
    range_probe rp = {
        .has_lo = lo != NULL, .has_hi = hi != NULL, .hi_inclusive = hi_inclusive, .found = found};
    if (lo != NULL) {
        rp.lo = *lo;
    }
    if (hi != NULL) {
        rp.hi = *hi;
    }
    for (size_t i = 0; i < g->nbatches; i++) {
        const shale_batch *b = g->batches[i];
        if (batch_iterate(b->rep.data, b->rep.len, probe_op, &rp, NULL) == SHALE_CONFLICT) {
            return true;
        }
    }
    return false;
}

static shale_code note_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    commit_group *g = arg;
    uint64_t h = group_hash(op->key);
    (void)seq, (void)err;
    size_t i = h & g->mask;
    while (g->slots[i] != 0 && g->slots[i] != h) {
        i = (i + 1) & g->mask;
    }
    g->slots[i] = h;
    return SHALE_OK;
}

/* Adds an accepted member's batch (the set was sized for every op of the group). */
static void group_note(commit_group *g, const shale_batch *b)
{
    g->batches[g->nbatches++] = b;
    shale_code rc = batch_iterate(b->rep.data, b->rep.len, note_op, g, NULL);
    (void)rc; /* our own encoding, built by shale_batch_*: it decodes */
}

/* What a leader did, for the counters. */
typedef struct group_result {
    uint64_t count;   /* ops applied */
    uint64_t writers; /* commits in the group */
    bool logged, synced;
    bool stop; /* the commit stands, but the log can take nothing more */
    shale_error stop_err;
    commit_apply apply;
} group_result;

void commit_stop_writes_locked(shale_db *db, const shale_error *why)
{
    if (db->writes_stopped) {
        return;
    }
    db->writes_stopped = true;
    db->stop_err = *why;
    db_log(db, "writes stopped: %s", why->msg);
}

static shale_code stopped_error(shale_db *db, shale_error *err)
{
    return err_set(err, SHALE_CLOSED, db->stop_err.sys_errno, "writes stopped: %s",
                   db->stop_err.msg);
}

shale_code commit_apply_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    commit_apply *a = arg;
    bool prev_found = false;
    memtable_entry prev;
    shale_code rc;

    rc = memtable_add(a->db->mem, seq, op->type, op->key, op->value, op->expire_at_ms, &prev_found,
                      &prev, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* live = the newest version is a PUT; expired PUTs count until the sweeper deletes them. */
    bool was_live = prev_found && prev.type == MEMTABLE_PUT;
    bool is_live = op->type == MEMTABLE_PUT;
    a->live_delta += (int64_t)is_live - (int64_t)was_live;
    a->ttl_puts += is_live && op->expire_at_ms != 0;
    a->ops++;
    a->bytes += op->key.len + op->value.len;
    return SHALE_OK;
}

/* The apply runs in chunks: each chunk's search paths are walked in lock step first
 * (memtable_warm), so the chunk's inserts find them in the cache instead of waiting for one
 * dependent miss after another. A batch of one op is applied straight away: warming it costs the
 * misses the insert would. Measured by bench/membench.c (docs/BENCHMARKS.md). */
#define APPLY_CHUNK 32

typedef struct apply_chunk {
    commit_apply *apply;
    size_t n;
    uint64_t seq[APPLY_CHUNK];
    batch_op ops[APPLY_CHUNK];
} apply_chunk;

static shale_code apply_chunk_run(apply_chunk *c, shale_error *err)
{
    size_t n = c->n;
    c->n = 0;
    if (n > 1) {
        shale_slice keys[APPLY_CHUNK];
        for (size_t i = 0; i < n; i++) {
            keys[i] = c->ops[i].key;
        }
        memtable_warm(c->apply->db->mem, keys, n);
    }
    for (size_t i = 0; i < n; i++) {
        shale_code rc = commit_apply_op(c->apply, c->seq[i], &c->ops[i], err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

static shale_code apply_chunk_add(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    apply_chunk *c = arg;
    c->seq[c->n] = seq;
    c->ops[c->n] = *op; /* its slices point into the record, which outlives the apply */
    return ++c->n == APPLY_CHUNK ? apply_chunk_run(c, err) : SHALE_OK;
}

/* Applies a framed batch (rep, len) to the memtable. */
static shale_code apply_record(commit_apply *a, const uint8_t *rep, size_t len, shale_error *err)
{
    apply_chunk c = {.apply = a};
    shale_code rc = batch_iterate(rep, len, apply_chunk_add, &c, err);
    return rc == SHALE_OK ? apply_chunk_run(&c, err) : rc;
}

static shale_durability effective_level(const shale_db *db, shale_durability asked)
{
    if (asked == SHALE_DURABILITY_DEFAULT) {
        return db->opts.durability;
    }
    if (asked == SHALE_DURABILITY_NONE && db->opts.durability != SHALE_DURABILITY_NONE) {
        return SHALE_DURABILITY_MEMORY; /* cannot skip the log without a hole in the history */
    }
    return asked;
}

static void wake_flusher_if_idle(shale_db *db, uint64_t buffered_before)
{
    if (buffered_before == 0 && db->flusher_idle) {
        pthread_cond_signal(&db->log_cv);
    }
}

/* Creates the next segment. Segments are made on the first logged write, not at open, so opening
 * a database to read it writes nothing. Locks: log_mu held. */
static shale_code new_segment_locked(shale_db *db, wal_writer **out, shale_error *err)
{
    char name[32];
    shale_code rc;

    /* The segment before this one, for the new one's WAL_REC_PREV: the open writer when rolling;
     * else the last segment made or recovered, closed and synced at a memtable switch or by
     * recovery, whose size on disk is final. If it is gone (its flush deleted it), the new
     * segment makes no claim: recovery would not read it anyway. */
    uint64_t prev = 0, prev_size = 0;
    if (db->log != NULL) {
        prev = wal_writer_file_number(db->log);
        prev_size = wal_writer_size(db->log);
    } else if (db->last_log_number != 0) {
        recovery_log_name(name, sizeof name, db->last_log_number);
        char *path = env_join_path(db->path, name);
        bool is_dir;
        if (path == NULL) {
            return err_nomem(err);
        }
        if (db->env->stat_path(db->env, path, &is_dir, &prev_size, NULL) == SHALE_OK && !is_dir) {
            prev = db->last_log_number;
        }
        free(path);
    }
    /* The number is spent even if creation fails: file numbers are never reused. */
    uint64_t number = version_set_new_file_number(db->vs);
    recovery_log_name(name, sizeof name, number);
    rc = wal_writer_create_next(db->env, db->path, name, number, prev, prev_size, out, err);
    if (rc == SHALE_OK) {
        db->log_segments++;
        db->last_log_number = number;
    }
    return rc;
}

/* Rolls to a new segment: the old one is synced first, so only the last segment can ever hold a
 * torn tail. A failed sync is final; a failed creation leaves the old segment in use (it is
 * synced and still valid) and the roll is retried at the next commit. Locks: log_mu held. */
static shale_code roll_locked(shale_db *db, bool *synced, shale_error *err)
{
    wal_writer *next = NULL;
    shale_code rc;

    rc = wal_writer_sync(db->log, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    *synced = true;
    shale_error cerr;
    if (new_segment_locked(db, &next, &cerr) != SHALE_OK) {
        db_log(db, "log roll failed, staying on the current segment: %s", cerr.msg);
        return SHALE_OK;
    }
    db->log_bytes_closed += wal_writer_size(db->log);
    (void)wal_writer_close(db->log, false, NULL); /* synced above; nothing left to lose */
    db->log = next;
    return SHALE_OK;
}

/* Logs the group's record at `level`. Locks: takes log_mu. Sets *fatal when the failure must stop
 * all writes (a failed sync, or a writer left broken). */
static shale_code log_record(shale_db *db, const shale_buf *rec, shale_durability level,
                             group_result *res, bool *fatal, shale_error *err)
{
    shale_code rc = SHALE_OK;

    pthread_mutex_lock(&db->log_mu);
    if (db->log == NULL) {
        rc = new_segment_locked(db, &db->log, err);
        if (rc != SHALE_OK) {
            goto out;
        }
    }
    if (wal_writer_broken(db->log, err)) {
        *fatal = true;
        rc = err ? err->code : SHALE_IO;
        goto out;
    }
    uint64_t buffered = wal_writer_buffered_bytes(db->log);
    if (level == SHALE_DURABILITY_MEMORY) {
        if (db->bg_log_failed) {
            rc = err_copy(err, &db->bg_log_err);
            goto out;
        }
        if (buffered >= COMMIT_MAX_BUFFERED_BYTES) {
            rc = wal_writer_flush(db->log, err);
            if (rc != SHALE_OK) {
                goto out; /* nothing of ours was added */
            }
            buffered = 0;
        }
        rc = wal_writer_add(db->log, rec->data, rec->len, err);
        if (rc == SHALE_OK) {
            res->logged = true;
            wake_flusher_if_idle(db, buffered);
        }
        goto roll;
    }
    /* OS and FULL: first write out earlier MEMORY-level records, so that a failure of our own
     * write can drop exactly our record and nothing acknowledged before it. */
    if (buffered > 0) {
        rc = wal_writer_flush(db->log, err);
        if (rc != SHALE_OK) {
            goto out;
        }
    }
    rc = wal_writer_add(db->log, rec->data, rec->len, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    rc = wal_writer_flush(db->log, err);
    if (rc != SHALE_OK) {
        wal_writer_discard_unflushed(db->log);
        *fatal = wal_writer_broken(db->log, NULL);
        goto out;
    }
    res->logged = true;
    if (level == SHALE_DURABILITY_FULL) {
        rc = wal_writer_sync(db->log, err);
        if (rc != SHALE_OK) {
            *fatal = true; /* a failed fsync is final: never retried, never trusted */
            goto out;
        }
        res->synced = true;
    }
roll:
    if (rc == SHALE_OK && wal_writer_size(db->log) >= db->opts.wal_segment_bytes) {
        bool synced = false;
        if (roll_locked(db, &synced, &res->stop_err) != SHALE_OK) {
            /* Our record was written (and synced if asked) before the roll: the commit stands,
             * but the log can take nothing more. */
            res->stop = true;
        }
        res->synced |= synced;
    }
out:
    db_log_bytes_note_locked(db);
    pthread_mutex_unlock(&db->log_mu);
    return rc;
}

/* Starts the memtable's cache misses for the group's first ops, so that they overlap the log
 * write instead of stalling the apply after it. */
#define COMMIT_PREFETCH_OPS 8

typedef struct prefetch_state {
    memtable *mem;
    int left;
} prefetch_state;

static shale_code prefetch_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    prefetch_state *st = arg;
    (void)seq, (void)err;
    memtable_prefetch(st->mem, op->key);
    /* Any code but OK ends the walk; batch_iterate hands it back, and we ignore it. */
    return --st->left > 0 ? SHALE_OK : SHALE_FULL;
}

/* Sizes the group's key set for every op of [w, last] and empties it. False when out of
 * memory (the caller then validates members one group at a time: see lead). */
static bool group_reset(shale_db *db, commit_writer *w, commit_writer *last, size_t *members)
{
    size_t ops = 0, n = 0;
    for (commit_writer *p = w;; p = p->next) {
        ops += p->batch->count;
        n++;
        if (p == last) {
            break;
        }
    }
    size_t slots = 16;
    while (slots < 2 * ops) {
        slots *= 2;
    }
    commit_group *g = &db->group;
    shale_error e;
    if (buf_reserve(&db->group_slots, slots * sizeof(uint64_t), &e) != SHALE_OK ||
        buf_reserve(&db->group_batches, n * sizeof(shale_batch *), &e) != SHALE_OK) {
        return false;
    }
    g->slots = db->group_slots.data;
    memset(g->slots, 0, slots * sizeof(uint64_t));
    g->mask = slots - 1;
    g->batches = db->group_batches.data;
    g->nbatches = 0;
    *members = n;
    return true;
}

/* Leads the group [w, last]: prepare steps, frame, log, apply. Runs without db->mu. A member
 * whose prepare step fails is refused (its own rc and err) and left out; the group goes on
 * without it. With a leader that fills its batch from a prepare step the group is the leader
 * alone, and its failure is the group's. */
static shale_code lead(shale_db *db, commit_writer *w, commit_writer *last, uint64_t seq,
                       group_result *res, bool *fatal, shale_error *err)
{
    shale_buf *rec = &db->record;
    shale_durability level = SHALE_DURABILITY_NONE;
    const shale_batch *single = w->batch;
    shale_code rc;
    uint8_t head[1 + BATCH_HEADER_BYTES];

    if (w->prepare != NULL && w->batch == NULL) {
        shale_batch_clear(&db->prepare_batch);
        single = &db->prepare_batch;
        rc = w->prepare(db, w->prepare_arg, seq, &db->prepare_batch, NULL, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    } else {
        bool any_check = false;
        for (commit_writer *p = w;; p = p->next) {
            any_check |= p->prepare != NULL;
            if (p == last) {
                break;
            }
        }
        size_t members = 0;
        commit_group *g = NULL;
        if (any_check && group_reset(db, w, last, &members)) {
            g = &db->group;
        }
        uint64_t next = seq;
        for (commit_writer *p = w;; p = p->next) {
            if (p->prepare != NULL) {
                /* Without memory for the key set, a member after the first cannot be checked
                 * against the ones before it: it is refused, and retries. */
                shale_code prc = g == NULL && p != w
                                     ? err_set(&p->err, SHALE_NOMEM, 0,
                                               "commit: no memory to validate within a group")
                                     : p->prepare(db, p->prepare_arg, next, NULL, g, &p->err);
                if (prc != SHALE_OK) {
                    p->refused = true;
                    p->rc = prc;
                }
            }
            if (!p->refused) {
                if (g != NULL) {
                    group_note(g, p->batch);
                }
                next += p->batch->count;
            }
            if (p == last) {
                break;
            }
        }
    }
    for (commit_writer *p = w;; p = p->next) {
        const shale_batch *b = p == w ? single : p->batch;
        if (!p->refused) {
            res->count += b->count;
            res->writers++;
            if (effective_level(db, p->level) > level) {
                level = effective_level(db, p->level);
            }
        }
        if (p == last) {
            break;
        }
    }
    if (res->count == 0) {
        return SHALE_OK;
    }
    head[0] = WAL_REC_BATCH;
    batch_rep_set_header(head + 1, seq, (uint32_t)res->count);
    buf_reset(rec);
    rc = buf_append(rec, head, sizeof head, err);
    for (commit_writer *p = w; rc == SHALE_OK; p = p->next) {
        if (!p->refused) {
            shale_slice ops = batch_ops(p == w ? single : p->batch);
            rc = buf_append(rec, ops.data, ops.len, err);
        }
        if (p == last) {
            break;
        }
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (db->opts.durability != SHALE_DURABILITY_NONE) {
        prefetch_state st = {db->mem, COMMIT_PREFETCH_OPS};
        shale_code hint =
            batch_iterate((const uint8_t *)rec->data + 1, rec->len - 1, prefetch_op, &st, NULL);
        (void)hint; /* a hint: the apply below checks the batch for real */
        rc = log_record(db, rec, level, res, fatal, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    res->apply.db = db;
    rc = apply_record(&res->apply, (const uint8_t *)rec->data + 1, rec->len - 1, err);
    if (rc != SHALE_OK) {
        *fatal = true; /* logged but not in memory: the two must not diverge further */
    }
    return rc;
}

/* Picks the writers that join the leader's group. Locks: mu held. */
static commit_writer *form_group(commit_writer *w)
{
    commit_writer *last = w;
    size_t bytes = w->batch ? w->batch->rep.len : 0;
    /* A small leader does not wait for a big follower (LevelDB's reasoning). */
    size_t limit = bytes <= (128u << 10) ? bytes + (128u << 10) : COMMIT_MAX_GROUP_BYTES;

    if (w->prepare != NULL && w->batch == NULL) {
        return w; /* it builds its batch from the memtable: it needs the memtable to itself */
    }
    for (commit_writer *p = w->next; p != NULL && (p->prepare == NULL || p->batch != NULL);
         p = p->next) {
        if (bytes + p->batch->rep.len > limit) {
            break;
        }
        bytes += p->batch->rep.len;
        last = p;
    }
    return last;
}

shale_code commit_write(shale_db *db, const shale_batch *batch, shale_durability level,
                        commit_prepare_fn prepare, void *prepare_arg, shale_error *err)
{
    /* Field by field: the two shale_errors (256-byte messages) are filled only on failure, and
     * zeroing them costs more than the rest of an uncontended commit's bookkeeping. */
    commit_writer w;
    w.batch = batch;
    w.level = level;
    w.prepare = prepare;
    w.prepare_arg = prepare_arg;
    w.refused = false;
    w.done = false;
    w.rc = SHALE_OK;
    err_clear(&w.err);
    w.next = NULL;
    group_result res;
    res.count = res.writers = 0;
    res.logged = res.synced = res.stop = false;
    err_clear(&res.stop_err);
    res.apply = (commit_apply){0};
    bool fatal = false;
    shale_code rc;

    if (db->opts.read_only) {
        /* The door every write passes (puts, batches, transactions, conditional writes, the
         * document layer, flush_now's switch): a read-only database has no log to write. */
        return err_set(err, SHALE_INVALID, 0, "database is open read-only");
    }
    pthread_mutex_lock(&db->mu);
    if (db->writes_stopped) {
        rc = stopped_error(db, err);
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    /* Only a writer that queues behind another ever waits on (or is signalled through) its cv: a
     * writer that finds the queue empty leads at once, and a leader signals only writers queued
     * after it. So the uncontended path skips the condition variable altogether. */
    bool has_cv = db->queue_tail != NULL;
    if (has_cv) {
        pthread_cond_init(&w.cv, NULL);
        db->queue_tail->next = &w;
    } else {
        db->queue_head = &w;
    }
    db->queue_tail = &w;
    while (!w.done && db->queue_head != &w) {
        pthread_cond_wait(&w.cv, &db->mu);
    }
    if (w.done) {
        pthread_mutex_unlock(&db->mu);
        pthread_cond_destroy(&w.cv); /* done: it was a follower, so it has a cv */
        if (w.rc != SHALE_OK) {
            err_copy(err, &w.err);
        }
        return w.rc;
    }

    /* This writer leads. Room first: making it may wait (mu released), and writers arriving
     * meanwhile join the group formed after. The group's outcome goes to gerr; a member refused
     * by its own prepare step keeps its own in its writer. */
    shale_error gerr;
    err_clear(&gerr);
    rc = db->writes_stopped ? stopped_error(db, &gerr) : flush_make_room_locked(db, &gerr);
    if (rc == SHALE_OK && db->writes_stopped) {
        rc = stopped_error(db, &gerr);
    }
    commit_writer *last = rc == SHALE_OK ? form_group(&w) : &w;
    uint64_t seq = db->last_seq + 1;
    if (rc == SHALE_OK) {
        pthread_mutex_unlock(&db->mu);
        rc = lead(db, &w, last, seq, &res, &fatal, &gerr);
        pthread_mutex_lock(&db->mu);
    }
    if (rc == SHALE_OK && res.count > 0) {
        db->last_seq = seq + res.count - 1;
        atomic_store_explicit(&db->visible_seq, db->last_seq, memory_order_release);
        db->writes += res.count;
        db->live_keys += res.apply.live_delta;
        db->user_bytes += res.apply.bytes;
        atomic_fetch_add_explicit(&db->ttl_puts, res.apply.ttl_puts, memory_order_relaxed);
    }
    if (rc == SHALE_OK && res.count > 0) {
        db->batches += res.writers; /* a sweep that found nothing to delete is no commit */
        db->group_commits += res.logged;
    }
    db->syncs += res.synced;
    if (fatal) {
        commit_stop_writes_locked(db, &gerr);
    } else if (res.stop) {
        commit_stop_writes_locked(db, &res.stop_err);
    }

    /* Hand the results out. Read every link before waking its owner: a woken follower returns
     * and its stack frame (the writer) is gone. */
    commit_writer *after = last->next;
    for (commit_writer *p = &w, *next;; p = next) {
        bool is_last = p == last;
        next = p->next;
        if (!p->refused) {
            p->rc = rc;
            if (rc != SHALE_OK) {
                p->err = gerr;
            }
        }
        if (p != &w) {
            p->done = true;
            pthread_cond_signal(&p->cv);
        }
        if (is_last) {
            break;
        }
    }
    db->queue_head = after;
    if (after == NULL) {
        db->queue_tail = NULL;
    } else {
        pthread_cond_signal(&after->cv);
    }
    pthread_mutex_unlock(&db->mu);
    if (has_cv) {
        pthread_cond_destroy(&w.cv);
    }
    if (w.rc != SHALE_OK) {
        err_copy(err, &w.err);
    }
    return w.rc;
}

shale_code shale_sync(shale_db *db, shale_durability level, shale_error *err)
{
    shale_code rc = db_check_writable(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (level == SHALE_DURABILITY_DEFAULT) {
        level = db->opts.durability;
    }
    if (level != SHALE_DURABILITY_OS && level != SHALE_DURABILITY_FULL) {
        return level <= SHALE_DURABILITY_FULL
                   ? SHALE_OK
                   : err_set(err, SHALE_INVALID, 0, "shale_sync: unknown level %d", (int)level);
    }
    bool fatal = false, synced = false, no_log = false;
    pthread_mutex_lock(&db->log_mu);
    if (db->log == NULL) {
        /* Nothing logged yet, or the last segment was closed: synced, unless that close failed
         * (switch_locked), which dropped its buffered records and stopped writes. */
        no_log = true;
        goto out;
    }
    if (wal_writer_broken(db->log, err)) {
        rc = err != NULL ? err->code : SHALE_IO;
        goto out;
    }
    if (wal_writer_buffered_bytes(db->log) > 0) {
        rc = wal_writer_flush(db->log, err);
        if (rc != SHALE_OK) {
            /* As in the background flusher: retried by the next call unless the file is broken;
             * nothing of the buffer was acknowledged at OS level. */
            fatal = wal_writer_broken(db->log, NULL);
            goto out;
        }
    }
    if (level == SHALE_DURABILITY_FULL && (db->synced_file != wal_writer_file_number(db->log) ||
                                           db->synced_size != wal_writer_size(db->log))) {
        rc = wal_writer_sync(db->log, err);
        if (rc != SHALE_OK) {
            fatal = true; /* a failed fsync is final */
            goto out;
        }
        /* An explicit sync may be the last thing this segment sees before a crash: its marker
         * goes out now rather than with the next record, so that damage to what it made
         * durable is told from a torn tail (wal_format.h). Only the proof is lost if that
         * write fails. */
        shale_error merr;
        if (wal_writer_mark(db->log, &merr) != SHALE_OK) {
            db_log(db, "shale_sync: sync marker not written (%s); the data is durable", merr.msg);
        }
        db->synced_file = wal_writer_file_number(db->log); /* numbers are never reused */
        db->synced_size = wal_writer_size(db->log);        /* the marker needs no sync */
        synced = true;
    }
out:
    db_log_bytes_note_locked(db);
    pthread_mutex_unlock(&db->log_mu);
    if (no_log || fatal || synced) { /* mu after log_mu is released: lock order */
        pthread_mutex_lock(&db->mu);
        if (no_log) {
            if (db->writes_stopped) {
                rc = stopped_error(db, err);
            }
        } else if (fatal) {
            shale_error why;
            err_set(&why, rc, err != NULL ? err->sys_errno : 0, "shale_sync: %s",
                    err != NULL ? err->msg : "the log could not be written");
            commit_stop_writes_locked(db, &why);
        } else {
            db->syncs++;
        }
        pthread_mutex_unlock(&db->mu);
    }
    return rc;
}

/* The MEMORY-level flusher: once records are buffered, waits one interval and writes them out. A
 * failed write is kept buffered and retried; meanwhile MEMORY commits fail with its error (an
 * append failure is not a sync failure: retrying a write after truncating back is sound). */
/* While records keep coming (a server syncing them itself each turn, shale_sync), a signal per
 * empty-to-buffered change would cost a wakeup per commit; so after finding the buffer empty the
 * flusher polls once per interval (flushing at once what it finds: it arrived within the
 * interval) and only after FLUSHER_IDLE_POLLS empty polls sleeps until signalled (flusher_idle). */
#define FLUSHER_IDLE_POLLS 200

static void deadline_after(struct timespec *t, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    uint64_t ns = (uint64_t)t->tv_nsec + (uint64_t)ms * 1000000u;
    t->tv_sec += (time_t)(ns / 1000000000u);
    t->tv_nsec = (long)(ns % 1000000000u);
}

static void *flusher_main(void *arg)
{
    shale_db *db = arg;
    uint32_t empty_polls = FLUSHER_IDLE_POLLS;
    bool polled = false; /* the last wait was a poll: what is buffered is at most an interval old */

    pthread_mutex_lock(&db->log_mu);
    while (!db->closing) {
        struct timespec deadline;
        bool empty = db->log == NULL || wal_writer_buffered_bytes(db->log) == 0;
        if (empty && empty_polls < FLUSHER_IDLE_POLLS) {
            empty_polls++;
            deadline_after(&deadline, db->opts.wal_flush_interval_ms);
            (void)pthread_cond_timedwait(&db->log_cv, &db->log_mu, &deadline);
            polled = true;
            continue;
        }
        if (empty) {
            db->flusher_idle = true;
            pthread_cond_wait(&db->log_cv, &db->log_mu);
            db->flusher_idle = false;
            polled = false;
            if (db->closing || db->log == NULL || wal_writer_buffered_bytes(db->log) == 0) {
                continue;
            }
        }
        if (!polled) {
            /* Woken by the first record, found at the start, or arrived during the last write:
             * give it its interval. */
            deadline_after(&deadline, db->opts.wal_flush_interval_ms);
            while (!db->closing &&
                   pthread_cond_timedwait(&db->log_cv, &db->log_mu, &deadline) != ETIMEDOUT) {
            }
        }
        polled = false;
        empty_polls = 0;
        if (db->closing) {
            break;
        }
        if (db->log == NULL) {
            continue; /* a memtable switch closed (and synced) the segment meanwhile */
        }
        if (wal_writer_broken(db->log, NULL)) {
            break;
        }
        shale_error ferr;
        if (wal_writer_flush(db->log, &ferr) == SHALE_OK) {
            db->bg_log_failed = false;
            continue;
        }
        if (!db->bg_log_failed) {
            db_log(db, "background log write failed (will retry): %s", ferr.msg);
        }
        db->bg_log_failed = true;
        db->bg_log_err = ferr;
        if (wal_writer_broken(db->log, NULL)) {
            /* The file could not even be cut back: nothing more can be written. Stop writes
             * (mu is taken after log_mu is released: lock order). */
            pthread_mutex_unlock(&db->log_mu);
            pthread_mutex_lock(&db->mu);
            commit_stop_writes_locked(db, &ferr);
            pthread_mutex_unlock(&db->mu);
            pthread_mutex_lock(&db->log_mu);
            break;
        }
        /* Kept buffered: retried after an interval (the wait above, polled being false). */
    }
    pthread_mutex_unlock(&db->log_mu);
    return NULL;
}

shale_code commit_start(shale_db *db, shale_error *err)
{
    pthread_condattr_t attr;

    if (db->opts.durability == SHALE_DURABILITY_NONE) {
        return SHALE_OK;
    }
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&db->log_cv, &attr);
    pthread_condattr_destroy(&attr);
    db->log_cv_ready = true;
    if (pthread_create(&db->flusher, NULL, flusher_main, db) != 0) {
        return err_set(err, SHALE_NOMEM, errno, "%s: cannot start the log flusher thread",
                       db->path);
    }
    pthread_setname_np(db->flusher, "shale-logflush");
    db->flusher_running = true;
    db_log(db, "log flusher started");
    return SHALE_OK;
}

shale_code commit_stop(shale_db *db, shale_error *err)
{
    shale_code rc = SHALE_OK;

    if (db->flusher_running) {
        pthread_mutex_lock(&db->log_mu);
        db->closing = true;
        pthread_cond_broadcast(&db->log_cv);
        pthread_mutex_unlock(&db->log_mu);
        pthread_join(db->flusher, NULL);
        db->flusher_running = false;
        db_log(db, "log flusher stopped");
    }
    if (db->log != NULL) {
        pthread_mutex_lock(&db->log_mu);
        /* A clean close leaves the log synced whatever the level: it costs one fdatasync and
         * makes a clean shutdown safe against a later power loss. A broken writer is not written
         * again; if it still holds acknowledged MEMORY-level records, close must say they are
         * lost. */
        shale_error berr;
        bool broken = wal_writer_broken(db->log, &berr);
        uint64_t stranded = broken ? wal_writer_buffered_bytes(db->log) : 0;
        rc = wal_writer_close(db->log, !broken, broken ? NULL : err);
        if (broken) {
            rc = stranded == 0 ? SHALE_OK
                               : err_set(err, berr.code, berr.sys_errno,
                                         "%llu buffered log bytes could not be written: %s",
                                         (unsigned long long)stranded, berr.msg);
        }
        db->log = NULL;
        pthread_mutex_unlock(&db->log_mu);
    }
    if (db->log_cv_ready) {
        pthread_cond_destroy(&db->log_cv);
        db->log_cv_ready = false;
    }
    return rc;
}
