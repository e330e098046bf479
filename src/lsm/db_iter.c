/*
 * db_iter: the public ordered iterator (shale_iter) over a point-in-time view.
 *
 * Under it is one internal iterator (base/iter.h): the merge of the memtables and every level of
 * the version current at creation, yielding every version of every key in internal order (key
 * ascending, seq descending). For each user key it shows the newest version with seq <= the
 * snapshot, skipping tombstones and values expired at the creation time (so one scan is consistent
 * about TTL too).
 *
 * Directions (LevelDB's DBIter): going forward, the internal iterator sits ON the entry shown and
 * the key and value borrow from it. Going backward it sits on the last entry of the key BEFORE the
 * one shown, which was met oldest version first, so the shown key and value are copied into saved
 * buffers. Switching direction re-seeks around the current key.
 *
 * Cost per step (a scan's whole cost above the tables): the internal iterator's next entry comes
 * from merge_iter_step (one call, around the vtable layers) and is looked at once; passing over
 * the older versions of the key just shown compares with a copy of it kept inline (keys up to
 * SKIP_INLINE bytes: no call, no allocation), lengths first.
 *
 * Bounds: the prefix is turned into a range [prefix, successor(prefix)) and intersected with the
 * caller's [lower, upper), so the scan loop checks only two bounds.
 *
 * Lifetime: the iterator holds references on the memtables and the version (through its internal
 * iterators and its view), so every slice it returns stays valid and no table it reads is deleted;
 * it never touches the database handle after creation: an iterator left open past shale_close
 * keeps reading its frozen view and can still be freed safely.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/db_impl.h"
#include "lsm/merge_iter.h"

/* Keys up to this long are saved for skipping in the iterator itself (no call, no allocation). */
#define SKIP_INLINE 64

struct shale_iter {
    iter *in;          /* the merged internal iterator */
    db_view *view;     /* keeps the version's tables alive */
    db_tables *shared; /* keeps the caches and the version set alive, even past shale_close */
    uint64_t snapshot;
    uint64_t now_ms;
    shale_buf lo, hi; /* effective bounds; has_* say whether they apply */
    bool has_lo, has_hi;
    bool valid;
    bool reverse;          /* direction of the last move (see above) */
    ikey_entry cur;        /* forward: borrows from `in`; reverse: from saved_key/saved_value */
    shale_buf saved_key;   /* reverse: the shown key; forward: a long key being skipped */
    shale_buf saved_value; /* reverse: the shown value */
    shale_slice skip;      /* forward: the key whose older versions are being passed over */
    ikey_entry scratch;    /* for merge_iter_step */
    uint8_t skip_inline[SKIP_INLINE]; /* skip's bytes when short */
    uint64_t own_above;   /* entries above this seq are a transaction's own: shown as seq 0 */
    db_iter_track *track; /* a serializable transaction's read range, or NULL */
    shale_code status;
    shale_error err;
};

static bool below_hi(const shale_iter *it, shale_slice key)
{
    return !it->has_hi || slice_cmp(key, (shale_slice){it->hi.data, it->hi.len}) < 0;
}

static bool below_lo(const shale_iter *it, shale_slice key)
{
    return it->has_lo && slice_cmp(key, (shale_slice){it->lo.data, it->lo.len}) < 0;
}

static shale_slice saved(const shale_buf *b)
{
    return (shale_slice){b->data, b->len};
}

/* Records an out-of-memory failure: the iterator becomes invalid with that status. */
static void fail_nomem(shale_iter *it)
{
    it->status = err_nomem(&it->err);
    it->valid = false;
}

/* The internal iterator became invalid: the end, or a failure to report. */
static void at_end(shale_iter *it)
{
    it->valid = false;
    if (it->status == SHALE_OK) {
        it->status = iter_status(it->in, &it->err);
    }
}

/* buf_set when the buffer must grow (out of line: its error buffer would give every caller a
 * big frame). */
static __attribute__((noinline)) bool copy_grow(shale_buf *b, shale_slice s)
{
    shale_error berr;
    return buf_set(b, s.data, s.len, &berr) == SHALE_OK;
}

/* b = a copy of s; false when out of memory. A scan backward copies every key and value it shows,
 * almost always into a buffer already big enough. */
static inline bool copy_to(shale_buf *b, shale_slice s)
{
    if (s.len > b->cap) {
        return copy_grow(b, s);
    }
    if (s.len > 0) {
        memcpy(b->data, s.data, s.len);
    }
    b->len = s.len;
    return true;
}

/* save_skip for a long key (out of line: its error buffer would give every call a big frame). */
static __attribute__((noinline)) bool save_skip_long(shale_iter *it, shale_slice key)
{
    if (!copy_to(&it->saved_key, key)) {
        return false;
    }
    it->skip = saved(&it->saved_key);
    return true;
}

/* Makes `key` (which may borrow from the internal iterator, about to move) the skip key. False
 * when out of memory. */
static inline __attribute__((always_inline)) bool save_skip(shale_iter *it, shale_slice key)
{
    if (key.len <= SKIP_INLINE) {
        slice_copy_short(it->skip_inline, key.data, key.len);
        it->skip = (shale_slice){it->skip_inline, key.len};
        return true;
    }
    return save_skip_long(it, key);
}

/* The internal iterator's entry, and its next one (NULL: invalid). */
static inline const ikey_entry *in_cur(shale_iter *it)
{
    return merge_iter_current(it->in, &it->scratch);
}

static inline const ikey_entry *in_next(shale_iter *it)
{
    return merge_iter_step(it->in, true, &it->scratch);
}

/* From e, the internal iterator's current entry (NULL: not valid), forward to the first live key
 * within bounds. With `skipping`, the versions of it->skip come first and are passed over. Each
 * entry is looked at once. */
static void find_next(shale_iter *it, const ikey_entry *e, bool skipping)
{
    it->reverse = false;
    for (; e != NULL; e = in_next(it)) {
        if (skipping) {
            if (slice_eq(e->key, it->skip)) {
                continue;
            }
            skipping = false;
        }
        if (!below_hi(it, e->key)) {
            it->valid = false;
            return;
        }
        if (e->seq > it->snapshot) {
            continue; /* newer than the view: look at older versions */
        }
        if (ikey_live(e, it->now_ms)) {
            it->cur = *e;
            it->valid = true;
            return;
        }
        /* The newest visible version is a tombstone or expired: skip the key's older versions. */
        if (!save_skip(it, e->key)) {
            fail_nomem(it);
            return;
        }
        skipping = true;
    }
    at_end(it);
}

/* The internal iterator sits on the last (oldest) entry of some key, or is invalid: backward to
 * the last live key within bounds, saving it. Leaves the internal iterator before it. */
static void find_prev(shale_iter *it)
{
    const ikey_entry *e = in_cur(it);

    it->reverse = true;
    while (e != NULL) {
        if (below_lo(it, e->key)) {
            break;
        }
        /* Walk this key's versions, oldest first; the last visible one met is the newest. */
        if (!copy_to(&it->saved_key, e->key)) {
            fail_nomem(it);
            return;
        }
        bool have = false;
        ikey_entry best = {0};
        do {
            if (e->seq <= it->snapshot) {
                have = true;
                best = *e;
                if (!copy_to(&it->saved_value, e->value)) {
                    fail_nomem(it);
                    return;
                }
            }
            e = merge_iter_step(it->in, false, &it->scratch);
        } while (e != NULL && slice_eq(e->key, saved(&it->saved_key)));
        if (have && ikey_live(&best, it->now_ms) && below_hi(it, saved(&it->saved_key))) {
            it->cur = best;
            it->cur.key = saved(&it->saved_key);
            it->cur.value = saved(&it->saved_value);
            it->valid = true;
            return;
        }
    }
    if (e != NULL) {
        it->valid = false; /* below the lower bound */
        return;
    }
    at_end(it);
}

/* Positions the internal iterator at the last entry whose key is < target (or <= with
 * inclusive). */
static void position_before(shale_iter *it, shale_slice target, bool inclusive)
{
    /* (target, 0) sorts after every version of target (sequence numbers start at 1). */
    iter_seek(it->in, target, inclusive ? 0 : IKEY_MAX_SEQ);
    if (iter_valid(it->in)) {
        iter_prev(it->in);
    } else if (iter_status(it->in, NULL) == SHALE_OK) {
        iter_seek_last(it->in);
    }
}

/* ---- read-range tracking (serializable transactions) ---- */

static void track_fail(db_iter_track *t)
{
    t->failed = true;
}

/* Widens the tracked range to include key. */
static void track_key(db_iter_track *t, shale_slice key)
{
    shale_error e;
    if (!t->any) {
        if (buf_set(&t->lo, key.data, key.len, &e) != SHALE_OK ||
            buf_set(&t->hi, key.data, key.len, &e) != SHALE_OK) {
            track_fail(t);
            return;
        }
        t->any = true;
        return;
    }
    if (slice_cmp(key, saved(&t->lo)) < 0 && buf_set(&t->lo, key.data, key.len, &e) != SHALE_OK) {
        track_fail(t);
    }
    if (slice_cmp(key, saved(&t->hi)) > 0 && buf_set(&t->hi, key.data, key.len, &e) != SHALE_OK) {
        track_fail(t);
    }
}

/* After a move: the key shown, or the open side the move ran off (fwd: the back). */
static void track_move(shale_iter *it, bool fwd)
{
    db_iter_track *t = it->track;
    if (t == NULL) {
        return;
    }
    if (it->valid) {
        track_key(t, it->cur.key);
    } else if (fwd) {
        t->hi_open = true;
    } else {
        t->lo_open = true;
    }
}

static void track_target(shale_iter *it, shale_slice target)
{
    if (it->track != NULL) {
        track_key(it->track, target);
    }
}

static void reset(shale_iter *it)
{
    it->status = SHALE_OK;
    it->valid = false;
}

void shale_iter_seek(shale_iter *it, shale_slice target)
{
    if (it == NULL) {
        return;
    }
    reset(it);
    if (below_lo(it, target) || target.data == NULL) {
        target = it->has_lo ? (shale_slice){it->lo.data, it->lo.len} : (shale_slice){"", 0};
    }
    iter_seek(it->in, target, IKEY_MAX_SEQ);
    find_next(it, in_cur(it), false);
    track_target(it, target);
    track_move(it, true);
}

void shale_iter_seek_first(shale_iter *it)
{
    if (it == NULL) {
        return;
    }
    if (it->has_lo) {
        shale_iter_seek(it, (shale_slice){it->lo.data, it->lo.len});
        return;
    }
    reset(it);
    iter_seek_first(it->in);
    find_next(it, in_cur(it), false);
    if (it->track != NULL) {
        it->track->lo_open = true;
    }
    track_move(it, true);
}

void shale_iter_seek_last(shale_iter *it)
{
    if (it == NULL) {
        return;
    }
    reset(it);
    if (it->has_hi) {
        position_before(it, (shale_slice){it->hi.data, it->hi.len}, false);
    } else {
        iter_seek_last(it->in);
    }
    find_prev(it);
    if (it->track != NULL) {
        it->track->hi_open = true;
    }
    track_move(it, false);
}

void shale_iter_seek_for_prev(shale_iter *it, shale_slice target)
{
    if (it == NULL) {
        return;
    }
    reset(it);
    if (target.data == NULL && target.len > 0) {
        return;
    }
    if (!below_hi(it, target)) {
        shale_iter_seek_last(it);
        return;
    }
    position_before(it, target, true);
    find_prev(it);
    track_target(it, target);
    track_move(it, false);
}

void shale_iter_next(shale_iter *it)
{
    if (it == NULL || !it->valid) {
        return;
    }
    if (it->reverse) {
        /* The internal iterator is before the shown key: move past all of its versions. */
        iter_seek(it->in, saved(&it->saved_key), IKEY_MAX_SEQ);
        it->skip = saved(&it->saved_key);
        find_next(it, in_cur(it), true);
        track_move(it, true);
        return;
    }
    /* The internal iterator is on the shown key, which borrows from it: save the key, then pass
     * over its older versions. */
    if (!save_skip(it, it->cur.key)) {
        fail_nomem(it);
        return;
    }
    find_next(it, in_next(it), true);
    track_move(it, true);
}

void shale_iter_prev(shale_iter *it)
{
    if (it == NULL || !it->valid) {
        return;
    }
    if (!it->reverse) {
        /* The internal iterator is on the shown key: go to the entry before its newest version
         * (the key is copied first: it borrows from the iterator that moves). */
        if (!copy_to(&it->saved_key, it->cur.key)) {
            fail_nomem(it);
            return;
        }
        position_before(it, saved(&it->saved_key), false);
    }
    find_prev(it);
    track_move(it, false);
}

/* (Not a call to shale_iter_valid: an exported function is not inlined in a shared library.) */
static inline bool is_valid(const shale_iter *it)
{
    return it != NULL && it->valid;
}

bool shale_iter_valid(const shale_iter *it)
{
    return is_valid(it);
}

shale_slice shale_iter_key(const shale_iter *it)
{
    return is_valid(it) ? it->cur.key : (shale_slice){NULL, 0};
}

shale_slice shale_iter_value(const shale_iter *it)
{
    return is_valid(it) ? it->cur.value : (shale_slice){NULL, 0};
}

shale_entry_info shale_iter_info(const shale_iter *it)
{
    if (!is_valid(it)) {
        return (shale_entry_info){0, 0};
    }
    return (shale_entry_info){it->cur.seq > it->own_above ? 0 : it->cur.seq, it->cur.expire_at_ms};
}

shale_code shale_iter_status(const shale_iter *it, shale_error *err)
{
    if (it == NULL) {
        return err_set(err, SHALE_INVALID, 0, "iterator is NULL");
    }
    if (it->status != SHALE_OK) {
        return err_copy(err, &it->err);
    }
    return SHALE_OK;
}

void shale_iter_free(shale_iter *it)
{
    if (it == NULL) {
        return;
    }
    if (it->track != NULL) {
        it->track->iter = NULL;
    }
    iter_destroy(it->in);
    db_view_release(it->view);
    db_tables_unref(it->shared);
    buf_free(&it->lo);
    buf_free(&it->hi);
    buf_free(&it->saved_key);
    buf_free(&it->saved_value);
    free(it);
}

/* The smallest key greater than every key starting with prefix: drop trailing 0xff bytes and
 * increment the last. False if the prefix is all 0xff (no such key: no upper bound needed). */
static bool prefix_successor(shale_slice prefix, shale_buf *out, shale_error *err, shale_code *rc)
{
    const uint8_t *p = prefix.data;
    size_t n = prefix.len;

    while (n > 0 && p[n - 1] == 0xff) {
        n--;
    }
    if (n == 0) {
        return false;
    }
    *rc = buf_set(out, p, n, err);
    if (*rc == SHALE_OK) {
        ((uint8_t *)out->data)[n - 1]++;
    }
    return true;
}

static bool slice_bad(shale_slice s)
{
    return s.data == NULL && s.len > 0;
}

static shale_code set_bounds(shale_iter *it, const shale_read_opts *ro, shale_error *err)
{
    shale_code rc = SHALE_OK;
    shale_buf succ = {0};

    if (slice_bad(ro->lower_bound) || slice_bad(ro->upper_bound) || slice_bad(ro->prefix)) {
        return err_set(err, SHALE_INVALID, 0, "read options: a bound has NULL data");
    }
    /* lo = max(lower, prefix) */
    shale_slice lo = ro->lower_bound;
    if (ro->prefix.len > 0 && slice_cmp(ro->prefix, lo) > 0) {
        lo = ro->prefix;
    }
    if (lo.len > 0) {
        it->has_lo = true;
        rc = buf_set(&it->lo, lo.data, lo.len, err);
    }
    /* hi = min(upper, successor(prefix)) */
    shale_slice hi = ro->upper_bound;
    if (rc == SHALE_OK && ro->prefix.len > 0 && prefix_successor(ro->prefix, &succ, err, &rc) &&
        rc == SHALE_OK) {
        shale_slice s = {succ.data, succ.len};
        if (hi.len == 0 || slice_cmp(s, hi) < 0) {
            hi = s;
        }
    }
    if (rc == SHALE_OK && hi.len > 0) {
        it->has_hi = true;
        rc = buf_set(&it->hi, hi.data, hi.len, err);
    }
    buf_free(&succ);
    return rc;
}

/* The parts of every iterator: bounds, clock, references. */
static shale_code iter_alloc(shale_db *db, const shale_read_opts *ropts, shale_iter **out,
                             shale_error *err)
{
    shale_read_opts none = {0};
    shale_code rc;

    *out = NULL;
    rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    shale_iter *it = calloc(1, sizeof *it);
    if (it == NULL) {
        return err_nomem(err);
    }
    it->own_above = UINT64_MAX;
    rc = set_bounds(it, ropts ? ropts : &none, err);
    if (rc != SHALE_OK) {
        shale_iter_free(it);
        return rc;
    }
    it->now_ms = db->env->now_ms(db->env);
    it->shared = db->shared;
    atomic_fetch_add_explicit(&it->shared->refs, 1, memory_order_relaxed);
    *out = it;
    return SHALE_OK;
}

shale_code shale_iter_new(shale_db *db, const shale_read_opts *ropts, shale_iter **out,
                          shale_error *err)
{
    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_iter_new: out is NULL");
    }
    *out = NULL;
    shale_iter *it;
    shale_code rc = iter_alloc(db, ropts, &it, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    /* The seq first, then the view: every write up to the seq is in the view (db_impl.h). */
    it->snapshot = db_read_seq(db, ropts);
    it->view = db_view_acquire(db);
    it->in = db_view_iter(db, it->view, true);
    if (it->in == NULL) {
        shale_iter_free(it);
        return err_nomem(err);
    }
    *out = it;
    return SHALE_OK;
}

shale_code db_iter_new_txn(shale_db *db, const shale_read_opts *ropts, uint64_t snapshot,
                           memtable *writes, uint64_t writes_upto, db_iter_track *track,
                           shale_iter **out, shale_error *err)
{
    shale_iter *it;
    shale_code rc = iter_alloc(db, ropts, &it, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    /* The database's versions above the snapshot are hidden below the merge, so the merge can
     * show the transaction's writes above it: db_iter then reads at the top of both. */
    it->snapshot = snapshot + writes_upto;
    it->own_above = snapshot;
    it->view = db_view_acquire(db);
    iter *children[2];
    size_t n = 0;
    children[n++] = seq_window_iter_new(db_view_iter(db, it->view, true), snapshot, 0);
    if (writes != NULL && writes_upto > 0) {
        children[n++] = seq_window_iter_new(mem_iter_new(writes), writes_upto, snapshot);
    }
    it->in = merge_iter_new(children, n);
    if (it->in == NULL) {
        shale_iter_free(it);
        return err_nomem(err);
    }
    if (track != NULL) {
        track->has_bound_lo = it->has_lo;
        track->has_bound_hi = it->has_hi;
        if ((it->has_lo && buf_set(&track->bound_lo, it->lo.data, it->lo.len, err) != SHALE_OK) ||
            (it->has_hi && buf_set(&track->bound_hi, it->hi.data, it->hi.len, err) != SHALE_OK)) {
            shale_iter_free(it);
            return SHALE_NOMEM;
        }
        track->iter = it;
        it->track = track;
    }
    *out = it;
    return SHALE_OK;
}

void db_iter_untrack(db_iter_track *track)
{
    if (track->iter != NULL) {
        track->iter->track = NULL;
        track->iter = NULL;
    }
}
