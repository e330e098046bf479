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
    shale_buf saved_key;   /* reverse: the shown key; forward: scratch for skipping */
    shale_buf saved_value; /* reverse: the shown value */
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

/* Skips every remaining version of `key` (a copy, the iterator moves). */
static void skip_key(shale_iter *it, shale_slice key)
{
    ikey_entry e;

    while (iter_valid(it->in)) {
        iter_entry(it->in, &e);
        if (!slice_eq(e.key, key)) {
            return;
        }
        iter_next(it->in);
    }
}

/* From the current internal position, forward to the first live key within bounds. */
static void find_next(shale_iter *it)
{
    ikey_entry e;

    it->reverse = false;
    while (iter_valid(it->in)) {
        iter_entry(it->in, &e);
        if (!below_hi(it, e.key)) {
            it->valid = false;
            return;
        }
        if (e.seq > it->snapshot) {
            iter_next(it->in); /* newer than the view: look at older versions */
            continue;
        }
        if (ikey_live(&e, it->now_ms)) {
            it->cur = e;
            it->valid = true;
            return;
        }
        /* The newest visible version is a tombstone or expired: skip the key's older versions. */
        shale_error berr;
        if (buf_set(&it->saved_key, e.key.data, e.key.len, &berr) != SHALE_OK) {
            fail_nomem(it);
            return;
        }
        skip_key(it, saved(&it->saved_key));
    }
    at_end(it);
}

/* The internal iterator sits on the last (oldest) entry of some key, or is invalid: backward to
 * the last live key within bounds, saving it. Leaves the internal iterator before it. */
static void find_prev(shale_iter *it)
{
    ikey_entry e;
    shale_error berr;

    it->reverse = true;
    while (iter_valid(it->in)) {
        iter_entry(it->in, &e);
        if (below_lo(it, e.key)) {
            break;
        }
        /* Walk this key's versions, oldest first; the last visible one met is the newest. */
        if (buf_set(&it->saved_key, e.key.data, e.key.len, &berr) != SHALE_OK) {
            fail_nomem(it);
            return;
        }
        bool have = false;
        ikey_entry best = {0};
        do {
            if (e.seq <= it->snapshot) {
                have = true;
                best = e;
                if (buf_set(&it->saved_value, e.value.data, e.value.len, &berr) != SHALE_OK) {
                    fail_nomem(it);
                    return;
                }
            }
            iter_prev(it->in);
            if (!iter_valid(it->in)) {
                break;
            }
            iter_entry(it->in, &e);
        } while (slice_eq(e.key, saved(&it->saved_key)));
        if (have && ikey_live(&best, it->now_ms) && below_hi(it, saved(&it->saved_key))) {
            it->cur = best;
            it->cur.key = saved(&it->saved_key);
            it->cur.value = saved(&it->saved_value);
            it->valid = true;
            return;
        }
    }
    if (iter_valid(it->in)) {
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
    find_next(it);
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
    find_next(it);
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
}

void shale_iter_next(shale_iter *it)
{
    shale_error berr;

    if (it == NULL || !it->valid) {
        return;
    }
    if (it->reverse) {
        /* The internal iterator is before the shown key: move past all of its versions. */
        iter_seek(it->in, saved(&it->saved_key), IKEY_MAX_SEQ);
    } else if (buf_set(&it->saved_key, it->cur.key.data, it->cur.key.len, &berr) != SHALE_OK) {
        fail_nomem(it);
        return;
    }
    skip_key(it, saved(&it->saved_key));
    find_next(it);
}

void shale_iter_prev(shale_iter *it)
{
    if (it == NULL || !it->valid) {
        return;
    }
    if (!it->reverse) {
        /* The internal iterator is on the shown key: go to the entry before its newest version
         * (the key is copied first: it borrows from the iterator that moves). */
        shale_error berr;
        if (buf_set(&it->saved_key, it->cur.key.data, it->cur.key.len, &berr) != SHALE_OK) {
            fail_nomem(it);
            return;
        }
        position_before(it, saved(&it->saved_key), false);
    }
    find_prev(it);
}

bool shale_iter_valid(const shale_iter *it)
{
    return it != NULL && it->valid;
}

shale_slice shale_iter_key(const shale_iter *it)
{
    return shale_iter_valid(it) ? it->cur.key : (shale_slice){NULL, 0};
}

shale_slice shale_iter_value(const shale_iter *it)
{
    return shale_iter_valid(it) ? it->cur.value : (shale_slice){NULL, 0};
}

shale_entry_info shale_iter_info(const shale_iter *it)
{
    if (!shale_iter_valid(it)) {
        return (shale_entry_info){0, 0};
    }
    return (shale_entry_info){it->cur.seq, it->cur.expire_at_ms};
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

shale_code shale_iter_new(shale_db *db, const shale_read_opts *ropts, shale_iter **out,
                          shale_error *err)
{
    shale_read_opts none = {0};
    shale_iter *it;
    shale_code rc;

    if (out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_iter_new: out is NULL");
    }
    rc = db_check_open(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    *out = NULL;
    it = calloc(1, sizeof *it);
    if (it == NULL) {
        return err_nomem(err);
    }
    rc = set_bounds(it, ropts ? ropts : &none, err);
    if (rc != SHALE_OK) {
        shale_iter_free(it);
        return rc;
    }
    /* The seq first, then the view: every write up to the seq is in the view (db_impl.h). */
    it->snapshot = db_read_seq(db, ropts);
    it->now_ms = db->env->now_ms(db->env);
    it->shared = db->shared;
    atomic_fetch_add_explicit(&it->shared->refs, 1, memory_order_relaxed);
    it->view = db_view_acquire(db);
    it->in = db_view_iter(db, it->view, true);
    if (it->in == NULL) {
        shale_iter_free(it);
        return err_nomem(err);
    }
    *out = it;
    return SHALE_OK;
}
