/*
 * txn: optimistic transactions and conditional writes (the contract is in shale.h).
 *
 * A transaction holds a snapshot (so compaction keeps every version it can read) and buffers its
 * writes in a private memtable, numbered 1, 2, ... in the order made: reads look there first,
 * iterators merge it over the database as of the snapshot (db_iter_new_txn), and commit turns
 * each key's newest buffered op into one batch.
 *
 * Validation runs inside the commit pipeline as the batch's prepare step (commit.c): the leader
 * runs it alone, after every earlier commit is applied and before any later one starts, so
 * "was this key written after my snapshot?" is answered against a state no write can change
 * before the batch is logged. The answer comes from the database itself, not from a list of
 * recent commits kept in memory: the newest version of a key (tombstones included) carries the
 * sequence number that wrote it, so a version newer than the snapshot is a conflict, whoever
 * wrote it (a transaction, a plain put, a batch, the TTL sweeper). Memory therefore stays bounded
 * however long a transaction runs; the price is one point lookup per key at commit (a memtable
 * hit or a bloom-filter miss for most) and, in serializable mode, one per key read plus a scan of
 * every range read.
 *
 * Compaction never hides such a version while the transaction lives: its snapshot keeps the
 * newest version of every key among those written after it (compaction keeps the newest entry of
 * each snapshot stripe, tombstones included), so the newest version a lookup finds is the one
 * that wrote last.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/batch.h"
#include "lsm/db_impl.h"
#include "lsm/merge_iter.h"

/* The private memtable's arena blocks: small, since most transactions write a few keys. */
#define TXN_ARENA_BYTES   ((size_t)16 << 10)
#define TXN_MIN_MAX_BYTES ((uint64_t)64 << 10)
#define TXN_MAX_MAX_BYTES ((uint64_t)1 << 30)
/* Bytes of a key quoted in a conflict message. */
#define TXN_KEY_SHOWN     48

enum txn_state { TXN_OPEN, TXN_COMMITTED, TXN_ROLLED_BACK, TXN_FAILED, TXN_CLOSED };

struct shale_txn {
    shale_db *db; /* NULL once the database closed */
    shale_txn *prev, *next;
    enum txn_state state;
    shale_isolation isolation;
    shale_durability durability;
    uint64_t max_bytes;
    bool unchecked_writes;
    shale_snapshot *snap;
    uint64_t snapshot_seq;
    memtable *writes; /* NULL until the first write */
    uint64_t nwrites; /* ops buffered: the last one's number */
    shale_buf reads;  /* serializable: varint32 len | key, per key read from the database */
    db_iter_track *tracks;
    uint64_t commit_seq;
};

/* ---- messages ---- */

/* key as printable text (other bytes as \xNN), cut to TXN_KEY_SHOWN bytes. */
static void show_key(shale_slice key, char *out, size_t cap)
{
    const uint8_t *p = key.data;
    size_t o = 0, n = key.len < TXN_KEY_SHOWN ? key.len : TXN_KEY_SHOWN;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' && p[i] != '\'') {
            out[o++] = (char)p[i];
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
        }
    }
    if (n < key.len && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* SHALE_CONFLICT "conflict on key '<key>': <detail>", counted in stats. */
static shale_code conflictf(shale_db *db, shale_slice key, shale_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static shale_code conflictf(shale_db *db, shale_slice key, shale_error *err, const char *fmt, ...)
{
    char shown[TXN_KEY_SHOWN * 4 + 8], detail[160];
    va_list ap;
    show_key(key, shown, sizeof shown);
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    atomic_fetch_add_explicit(&db->txn_conflicts, 1, memory_order_relaxed);
    return err_set(err, SHALE_CONFLICT, 0, "conflict on key '%s': %s", shown, detail);
}

/* A write after the snapshot: at seq, or (seq 0) by a member before this one in its group. */
static shale_code conflict(shale_db *db, shale_slice key, uint64_t seq, uint64_t snapshot,
                           shale_error *err)
{
    if (seq == 0 && snapshot == 0) {
        return conflictf(db, key, err, "written by a commit just before this one");
    }
    if (seq == 0) {
        return conflictf(db, key, err,
                         "written by a commit just before this one, after the transaction's "
                         "snapshot at seq %" PRIu64,
                         snapshot);
    }
    return conflictf(db, key, err,
                     "written at seq %" PRIu64 " after the transaction's snapshot at seq %" PRIu64,
                     seq, snapshot);
}

/* ---- state ---- */

static shale_code check_usable(const shale_txn *txn, shale_error *err)
{
    if (txn == NULL) {
        return err_set(err, SHALE_INVALID, 0, "transaction is NULL");
    }
    switch (txn->state) {
    case TXN_OPEN:
        return SHALE_OK;
    case TXN_COMMITTED:
        return err_set(err, SHALE_INVALID, 0, "transaction already committed");
    case TXN_ROLLED_BACK:
        return err_set(err, SHALE_INVALID, 0, "transaction already rolled back");
    case TXN_FAILED:
        return err_set(err, SHALE_INVALID, 0,
                       "transaction already ended: its commit failed; begin a new one");
    case TXN_CLOSED:
        break;
    }
    return err_set(err, SHALE_CLOSED, 0, "transaction ended: its database was closed");
}

/* Releases what ties the transaction to its database (snapshot, registration, iterator
 * tracking) and its buffers, and sets the final state. */
static void finish(shale_txn *txn, enum txn_state state)
{
    shale_db *db = txn->db;
    for (db_iter_track *t = txn->tracks, *next; t != NULL; t = next) {
        next = t->next;
        db_iter_untrack(t);
        buf_free(&t->lo);
        buf_free(&t->hi);
        buf_free(&t->bound_lo);
        buf_free(&t->bound_hi);
        free(t);
    }
    txn->tracks = NULL;
    memtable_unref(txn->writes);
    txn->writes = NULL;
    buf_free(&txn->reads);
    if (db != NULL) {
        shale_snapshot_release(db, txn->snap);
        txn->snap = NULL;
        pthread_mutex_lock(&db->txn_mu);
        if (txn->prev != NULL) {
            txn->prev->next = txn->next;
        } else {
            db->txn_head = txn->next;
        }
        if (txn->next != NULL) {
            txn->next->prev = txn->prev;
        }
        db->txns_open--;
        pthread_mutex_unlock(&db->txn_mu);
        if (state == TXN_ROLLED_BACK || state == TXN_CLOSED) {
            atomic_fetch_add_explicit(&db->txn_rollbacks, 1, memory_order_relaxed);
        } else if (state == TXN_COMMITTED) {
            atomic_fetch_add_explicit(&db->txn_commits, 1, memory_order_relaxed);
        }
    }
    txn->prev = txn->next = NULL;
    txn->state = state;
}

void txn_close_all(shale_db *db)
{
    for (;;) {
        pthread_mutex_lock(&db->txn_mu);
        shale_txn *txn = db->txn_head;
        pthread_mutex_unlock(&db->txn_mu);
        if (txn == NULL) {
            return;
        }
        finish(txn, TXN_CLOSED);
        txn->db = NULL;
    }
}

/* ---- begin, end ---- */

shale_code shale_txn_begin(shale_db *db, const shale_txn_opts *opts, shale_txn **out,
                           shale_error *err)
{
    shale_txn_opts o = opts ? *opts : (shale_txn_opts){0};
    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_txn_begin: out is NULL");
    }
    *out = NULL;
    shale_code rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if ((unsigned)o.isolation > SHALE_ISOLATION_SERIALIZABLE) {
        return err_set(err, SHALE_INVALID, 0, "transaction isolation %d is not a level",
                       (int)o.isolation);
    }
    if ((rc = db_check_level(db, o.durability, err)) != SHALE_OK) {
        return rc;
    }
    if (o.max_bytes == 0) {
        o.max_bytes = db->opts.write_buffer_bytes;
    }
    if (o.max_bytes < TXN_MIN_MAX_BYTES || o.max_bytes > TXN_MAX_MAX_BYTES) {
        return err_set(err, SHALE_INVALID, 0,
                       "transaction max_bytes %" PRIu64 " is outside 64 KiB .. 1 GiB", o.max_bytes);
    }
    shale_txn *txn = calloc(1, sizeof *txn);
    if (txn == NULL) {
        return err_nomem(err);
    }
    txn->snap = shale_snapshot_get(db);
    if (txn->snap == NULL) {
        free(txn);
        return err_nomem(err);
    }
    txn->db = db;
    txn->state = TXN_OPEN;
    txn->isolation =
        o.isolation == SHALE_ISOLATION_DEFAULT ? SHALE_ISOLATION_SNAPSHOT : o.isolation;
    txn->durability = o.durability;
    txn->max_bytes = o.max_bytes;
    txn->unchecked_writes = o.unchecked_writes;
    txn->snapshot_seq = shale_snapshot_seq(txn->snap);
    pthread_mutex_lock(&db->txn_mu);
    txn->next = db->txn_head;
    if (db->txn_head != NULL) {
        db->txn_head->prev = txn;
    }
    db->txn_head = txn;
    db->txns_open++;
    pthread_mutex_unlock(&db->txn_mu);
    *out = txn;
    return SHALE_OK;
}

shale_code shale_txn_rollback(shale_txn *txn, shale_error *err)
{
    shale_code rc = check_usable(txn, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    finish(txn, TXN_ROLLED_BACK);
    return SHALE_OK;
}

void shale_txn_free(shale_txn *txn)
{
    if (txn == NULL) {
        return;
    }
    if (txn->state == TXN_OPEN) {
        finish(txn, TXN_ROLLED_BACK);
    }
    free(txn);
}

uint64_t shale_txn_snapshot_seq(const shale_txn *txn)
{
    return txn != NULL ? txn->snapshot_seq : 0;
}

uint64_t shale_txn_commit_seq(const shale_txn *txn)
{
    return txn != NULL && txn->state == TXN_COMMITTED ? txn->commit_seq : 0;
}

/* ---- reads ---- */

static size_t used_bytes(const shale_txn *txn)
{
    return (txn->writes ? memtable_memory_bytes(txn->writes) : 0) + txn->reads.cap;
}

static shale_code over_limit(const shale_txn *txn, size_t more, shale_error *err)
{
    if (used_bytes(txn) + more > txn->max_bytes) {
        return err_set(err, SHALE_FULL, 0,
                       "transaction would hold more than its max_bytes %" PRIu64
                       " (it holds %zu bytes; the write or read needs %zu more)",
                       txn->max_bytes, used_bytes(txn), more);
    }
    return SHALE_OK;
}

/* Remembers a key read from the database, to be validated at commit: every read when
 * serializable, and reads for update always. */
static shale_code note_read(shale_txn *txn, shale_slice key, bool for_update, shale_error *err)
{
    uint8_t len[5];
    if (txn->isolation != SHALE_ISOLATION_SERIALIZABLE && !for_update) {
        return SHALE_OK;
    }
    shale_code rc = over_limit(txn, key.len + sizeof len, err);
    size_t n = (size_t)(coding_put_varint32(len, (uint32_t)key.len) - len);
    if (rc == SHALE_OK) {
        rc = buf_append(&txn->reads, len, n, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(&txn->reads, key.data, key.len, err);
    }
    return rc;
}

static shale_code txn_read(shale_txn *txn, shale_slice key, shale_buf *value,
                           shale_entry_info *info, bool for_update, shale_error *err)
{
    shale_code rc = check_usable(txn, err);
    if (rc != SHALE_OK || (rc = db_check_key(txn->db, key, err)) != SHALE_OK) {
        return rc;
    }
    memtable_entry e;
    if (txn->writes != NULL && memtable_get(txn->writes, key, MEMTABLE_MAX_SEQ, &e)) {
        if (!db_entry_live(&e, txn->db->env->now_ms(txn->db->env))) {
            if (value != NULL) {
                value->len = 0;
            }
            return err_set(err, SHALE_NOT_FOUND, 0, "key not found");
        }
        if (info != NULL) {
            *info = (shale_entry_info){0, e.expire_at_ms};
        }
        return value != NULL ? buf_set(value, e.value.data, e.value.len, err) : SHALE_OK;
    }
    shale_read_opts ro = {.snapshot = txn->snap};
    rc = shale_get_info(txn->db, &ro, key, value, info, err);
    if (rc == SHALE_OK || rc == SHALE_NOT_FOUND) {
        shale_error nerr;
        shale_code nrc = note_read(txn, key, for_update, &nerr);
        if (nrc != SHALE_OK) {
            return err_copy(err, &nerr);
        }
    }
    return rc;
}

shale_code shale_txn_get_info(shale_txn *txn, shale_slice key, shale_buf *value,
                              shale_entry_info *info, shale_error *err)
{
    return txn_read(txn, key, value, info, false, err);
}

shale_code shale_txn_get_for_update(shale_txn *txn, shale_slice key, shale_buf *value,
                                    shale_error *err)
{
    return txn_read(txn, key, value, NULL, true, err);
}

shale_code shale_txn_get(shale_txn *txn, shale_slice key, shale_buf *value, shale_error *err)
{
    if (value == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_txn_get: value buffer is NULL");
    }
    return shale_txn_get_info(txn, key, value, NULL, err);
}

shale_code shale_txn_exists(shale_txn *txn, shale_slice key, bool *out, shale_error *err)
{
    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_txn_exists: out is NULL");
    }
    *out = false;
    shale_code rc = shale_txn_get_info(txn, key, NULL, NULL, err);
    if (rc == SHALE_NOT_FOUND) {
        return SHALE_OK;
    }
    *out = rc == SHALE_OK;
    return rc;
}

shale_code shale_txn_iter_new(shale_txn *txn, const shale_read_opts *ropts, shale_iter **out,
                              shale_error *err)
{
    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_txn_iter_new: out is NULL");
    }
    *out = NULL;
    shale_code rc = check_usable(txn, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (ropts != NULL && ropts->snapshot != NULL) {
        return err_set(err, SHALE_INVALID, 0,
                       "shale_txn_iter_new: a transaction reads at its own snapshot; "
                       "ropts->snapshot must be NULL");
    }
    db_iter_track *t = NULL;
    if (txn->isolation == SHALE_ISOLATION_SERIALIZABLE) {
        t = calloc(1, sizeof *t);
        if (t == NULL) {
            return err_nomem(err);
        }
    }
    rc = db_iter_new_txn(txn->db, ropts, txn->snapshot_seq, txn->writes, txn->nwrites, t, out, err);
    if (t != NULL) {
        if (rc != SHALE_OK) {
            buf_free(&t->bound_lo);
            buf_free(&t->bound_hi);
            free(t);
        } else {
            t->next = txn->tracks;
            txn->tracks = t;
        }
    }
    return rc;
}

/* ---- writes ---- */

static shale_code buffer_op(shale_txn *txn, uint8_t type, shale_slice key, shale_slice value,
                            uint64_t expire_at_ms, shale_error *err)
{
    shale_code rc = check_usable(txn, err);
    if (rc != SHALE_OK || (rc = db_check_key(txn->db, key, err)) != SHALE_OK ||
        (rc = db_check_value(txn->db, value, err)) != SHALE_OK) {
        return rc;
    }
    /* Node and arena slack on top of the bytes: over-estimates, so the limit holds. */
    if ((rc = over_limit(txn, key.len + value.len + 64, err)) != SHALE_OK) {
        return rc;
    }
    if (txn->writes == NULL) {
        txn->writes = memtable_new_sized(TXN_ARENA_BYTES);
        if (txn->writes == NULL) {
            return err_nomem(err);
        }
    }
    rc = memtable_add(txn->writes, txn->nwrites + 1, type, key, value, expire_at_ms, NULL, NULL,
                      err);
    if (rc == SHALE_OK) {
        txn->nwrites++;
    }
    return rc;
}

shale_code shale_txn_put(shale_txn *txn, shale_slice key, shale_slice value, shale_error *err)
{
    return buffer_op(txn, MEMTABLE_PUT, key, value, 0, err);
}

shale_code shale_txn_put_ttl(shale_txn *txn, shale_slice key, shale_slice value,
                             uint64_t expire_at_ms, shale_error *err)
{
    return buffer_op(txn, MEMTABLE_PUT, key, value, expire_at_ms, err);
}

shale_code shale_txn_delete(shale_txn *txn, shale_slice key, shale_error *err)
{
    return buffer_op(txn, MEMTABLE_DEL, key, (shale_slice){NULL, 0}, 0, err);
}

/* ---- commit ---- */

/* The newest version of key in the whole database, tombstones included: its seq, or 0. */
static shale_code newest_seq(shale_db *db, db_view *view, shale_slice key, uint64_t *seq,
                             ikey_entry *e, shale_buf *scratch, shale_error *err)
{
    bool found = false;
    shale_code rc = db_view_get(db, view, key, IKEY_MAX_SEQ, &found, e, scratch, err);
    *seq = found ? e->seq : 0;
    return rc;
}

typedef struct validation {
    shale_txn *txn;
    const shale_batch *batch;
    const commit_group *group;
    db_view *view;
    shale_buf scratch;
} validation;

/* A conflict if key was written after the snapshot: in the database, or by a member accepted
 * before this one in its commit group. */
static shale_code check_key_since(validation *v, shale_slice key, shale_error *err)
{
    ikey_entry e;
    uint64_t newest;
    if (commit_group_has_key(v->group, key)) {
        return conflict(v->txn->db, key, 0, v->txn->snapshot_seq, err);
    }
    shale_code rc = newest_seq(v->txn->db, v->view, key, &newest, &e, &v->scratch, err);
    if (rc == SHALE_OK && newest > v->txn->snapshot_seq) {
        rc = conflict(v->txn->db, key, newest, v->txn->snapshot_seq, err);
    }
    return rc;
}

static shale_code check_write_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    (void)seq;
    return check_key_since(arg, op->key, err);
}

static shale_code check_reads(validation *v, shale_error *err)
{
    if (v->txn->reads.len == 0) {
        return SHALE_OK; /* nothing read (the buffer may not even exist) */
    }
    const uint8_t *p = v->txn->reads.data, *end = p + v->txn->reads.len;
    while (p < end) {
        uint32_t len;
        p = coding_get_varint32(p, end, &len);
        /* Our own encoding: a bad length would be a bug, not input. */
        if (p == NULL || len > (size_t)(end - p)) {
            return err_set(err, SHALE_CORRUPTION, 0, "transaction read set is damaged");
        }
        shale_code rc = check_key_since(v, (shale_slice){p, len}, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        p += len;
    }
    return SHALE_OK;
}

/* Every version in the range a track covered, newer than the snapshot, is a conflict: a write,
 * a delete or a phantom insert into what the transaction scanned. */
static shale_code check_range(validation *v, const db_iter_track *t, shale_error *err)
{
    if (t->failed) {
        return err_set(err, SHALE_NOMEM, 0,
                       "a transaction iterator ran out of memory recording its range; the "
                       "transaction cannot be validated");
    }
    if (!t->any && !t->lo_open && !t->hi_open) {
        return SHALE_OK; /* never positioned */
    }
    bool has_lo = false, has_hi = false, hi_inclusive = true;
    shale_slice lo = {0}, hi = {0};
    if (t->lo_open || !t->any) {
        if (t->has_bound_lo) {
            has_lo = true;
            lo = (shale_slice){t->bound_lo.data, t->bound_lo.len};
        }
    } else {
        has_lo = true;
        lo = (shale_slice){t->lo.data, t->lo.len};
    }
    if (t->hi_open || !t->any) {
        if (t->has_bound_hi) {
            has_hi = true;
            hi_inclusive = false;
            hi = (shale_slice){t->bound_hi.data, t->bound_hi.len};
        }
    } else {
        has_hi = true;
        hi = (shale_slice){t->hi.data, t->hi.len};
    }
    shale_db *db = v->txn->db;
    shale_slice in_group;
    if (commit_group_key_in(v->group, has_lo ? &lo : NULL, has_hi ? &hi : NULL, hi_inclusive,
                            &in_group)) {
        return conflict(db, in_group, 0, v->txn->snapshot_seq, err);
    }
    iter *it = db_view_iter(db, v->view, true);
    if (it == NULL) {
        return err_nomem(err);
    }
    if (has_lo) {
        iter_seek(it, lo, IKEY_MAX_SEQ);
    } else {
        iter_seek_first(it);
    }
    shale_code rc = SHALE_OK;
    ikey_entry e;
    for (; iter_valid(it); iter_next(it)) {
        iter_entry(it, &e);
        if (has_hi) {
            int c = slice_cmp(e.key, hi);
            if (c > 0 || (c == 0 && !hi_inclusive)) {
                break;
            }
        }
        if (e.seq > v->txn->snapshot_seq) {
            rc = conflict(db, e.key, e.seq, v->txn->snapshot_seq, err);
            break;
        }
    }
    if (rc == SHALE_OK) {
        rc = iter_status(it, err);
    }
    iter_destroy(it);
    return rc;
}

/* The prepare step: runs in the commit pipeline with no other write in flight. */
static shale_code validate(shale_db *db, void *arg, uint64_t seq, shale_batch *fill,
                           const commit_group *group, shale_error *err)
{
    validation *v = arg;
    (void)fill;
    v->group = group;
    v->view = db_view_acquire(db);
    shale_code rc = v->txn->unchecked_writes ? SHALE_OK
                                             : batch_iterate(v->batch->rep.data, v->batch->rep.len,
                                                             check_write_op, v, err);
    if (rc == SHALE_OK) {
        rc = check_reads(v, err); /* empty unless serializable or read for update */
    }
    if (rc == SHALE_OK && v->txn->isolation == SHALE_ISOLATION_SERIALIZABLE) {
        for (const db_iter_track *t = v->txn->tracks; rc == SHALE_OK && t != NULL; t = t->next) {
            rc = check_range(v, t, err);
        }
    }
    db_view_release(v->view);
    v->view = NULL;
    if (rc == SHALE_OK) {
        v->txn->commit_seq = seq + v->batch->count - 1;
    }
    return rc;
}

/* The batch of each key's newest buffered op, in key order. */
static shale_code build_batch(shale_txn *txn, shale_batch *b, shale_error *err)
{
    iter *it = mem_iter_new(txn->writes);
    if (it == NULL) {
        return err_nomem(err);
    }
    shale_code rc = SHALE_OK;
    ikey_entry e;
    shale_buf last = {0};
    bool have_last = false;
    for (iter_seek_first(it); rc == SHALE_OK && iter_valid(it); iter_next(it)) {
        iter_entry(it, &e);
        if (have_last && slice_eq(e.key, (shale_slice){last.data, last.len})) {
            continue; /* an older op on the same key */
        }
        rc = buf_set(&last, e.key.data, e.key.len, err);
        have_last = true;
        if (rc != SHALE_OK) {
            break;
        }
        if (e.type == IKEY_DEL) {
            rc = shale_batch_delete(b, e.key, err);
        } else {
            rc = shale_batch_put_ttl(b, e.key, e.value, e.expire_at_ms, err);
        }
    }
    buf_free(&last);
    iter_destroy(it);
    return rc;
}

shale_code shale_txn_commit(shale_txn *txn, shale_error *err)
{
    shale_code rc = check_usable(txn, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (txn->nwrites == 0) {
        /* Read-only: every read was of the snapshot, a consistent state; nothing to validate. */
        finish(txn, TXN_COMMITTED);
        return SHALE_OK;
    }
    shale_batch batch = {0};
    validation v = {.txn = txn, .batch = &batch};
    rc = build_batch(txn, &batch, err);
    if (rc == SHALE_OK) {
        rc = commit_write(txn->db, &batch, txn->durability, validate, &v, err);
    }
    buf_free(&batch.rep);
    buf_free(&v.scratch);
    finish(txn, rc == SHALE_OK ? TXN_COMMITTED : TXN_FAILED);
    return rc;
}

/* ---- conditional writes ---- */

typedef struct cas {
    shale_slice key;
    uint64_t version;
    bool is_delete;
    uint64_t new_version;
} cas;

static shale_code cas_check(shale_db *db, void *arg, uint64_t seq, shale_batch *fill,
                            const commit_group *group, shale_error *err)
{
    cas *c = arg;
    shale_buf scratch = {0};
    ikey_entry e;
    bool found = false;
    (void)fill;
    if (commit_group_has_key(group, c->key)) {
        /* Its version changes in this very group: whatever was expected is stale. */
        return conflict(db, c->key, 0, 0, err);
    }
    db_view *view = db_view_acquire(db);
    shale_code rc = db_view_get(db, view, c->key, IKEY_MAX_SEQ, &found, &e, &scratch, err);
    bool live = rc == SHALE_OK && found && db_entry_live(&e, db->env->now_ms(db->env));
    uint64_t current = live ? e.seq : 0;
    db_view_release(view);
    buf_free(&scratch);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (c->is_delete && !live) {
        return err_set(err, SHALE_NOT_FOUND, 0, "key not found");
    }
    if (current == 0 && c->version != 0) {
        return conflictf(db, c->key, err, "expected version %" PRIu64 ", the key has none",
                         c->version);
    }
    if (current != c->version) {
        return conflictf(db, c->key, err, "expected version %" PRIu64 ", found %" PRIu64,
                         c->version, current);
    }
    c->new_version = seq;
    return SHALE_OK;
}

static shale_code conditional(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                              const shale_batch *b, cas *c, shale_error *err)
{
    shale_durability level = wopts ? wopts->durability : SHALE_DURABILITY_DEFAULT;
    shale_code rc = db_check_level(db, level, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    c->key = key;
    return commit_write(db, b, level, cas_check, c, err);
}

shale_code shale_put_if_version(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                                shale_slice value, uint64_t expected, uint64_t *new_version,
                                shale_error *err)
{
    shale_code rc = db_check_open(db, err);
    if (rc != SHALE_OK || (rc = db_check_key(db, key, err)) != SHALE_OK ||
        (rc = db_check_value(db, value, err)) != SHALE_OK) {
        return rc;
    }
    shale_batch b = {0};
    cas c = {.version = expected};
    rc = shale_batch_put(&b, key, value, err);
    if (rc == SHALE_OK) {
        rc = conditional(db, wopts, key, &b, &c, err);
    }
    buf_free(&b.rep);
    if (new_version != NULL) {
        *new_version = rc == SHALE_OK ? c.new_version : 0;
    }
    return rc;
}

shale_code shale_delete_if_version(shale_db *db, const shale_write_opts *wopts, shale_slice key,
                                   uint64_t expected, shale_error *err)
{
    shale_code rc = db_check_open(db, err);
    if (rc != SHALE_OK || (rc = db_check_key(db, key, err)) != SHALE_OK) {
        return rc;
    }
    if (expected == 0) {
        return err_set(err, SHALE_INVALID, 0,
                       "shale_delete_if_version: version 0 names no value; pass the version "
                       "shale_get_info reported");
    }
    shale_batch b = {0};
    cas c = {.version = expected, .is_delete = true};
    rc = shale_batch_delete(&b, key, err);
    if (rc == SHALE_OK) {
        rc = conditional(db, wopts, key, &b, &c, err);
    }
    buf_free(&b.rep);
    return rc;
}
