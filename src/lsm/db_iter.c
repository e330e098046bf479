/*
 * db_iter: the public ordered iterator (shale_iter) over a point-in-time view.
 *
 * It walks the memtable's internal order (key ascending, seq descending) and shows, for each user
 * key, the newest version with seq <= the snapshot taken at creation, skipping tombstones and
 * values expired at the creation time (so one scan is consistent about TTL too).
 *
 * Bounds: the prefix is turned into a range [prefix, successor(prefix)) and intersected with the
 * caller's [lower, upper), so the scan loop checks only two bounds.
 *
 * Lifetime: the iterator holds a reference on the memtable, whose arena keeps every slice it
 * returns valid, and it never touches the database handle after creation: an iterator left open
 * past shale_close keeps reading its frozen view and can still be freed safely.
 *
 * Reverse steps re-seek (the skiplist has no back links): O(log n) per key.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"
#include "lsm/db_impl.h"

struct shale_iter {
    memtable_iter mi;
    uint64_t snapshot;
    uint64_t now_ms;
    shale_buf lo, hi; /* effective bounds; has_* say whether they apply */
    bool has_lo, has_hi;
    bool valid;
    memtable_entry cur; /* slices borrow from the memtable's arena */
};

static bool below_hi(const shale_iter *it, shale_slice key)
{
    return !it->has_hi || slice_cmp(key, (shale_slice){it->hi.data, it->hi.len}) < 0;
}

static bool below_lo(const shale_iter *it, shale_slice key)
{
    return it->has_lo && slice_cmp(key, (shale_slice){it->lo.data, it->lo.len}) < 0;
}

/* From the current memtable position, forward to the first live key within bounds. */
static void find_next(shale_iter *it)
{
    memtable_entry e;

    while (memtable_iter_valid(&it->mi)) {
        memtable_iter_entry(&it->mi, &e);
        if (!below_hi(it, e.key)) {
            break;
        }
        if (e.seq > it->snapshot) {
            memtable_iter_next(&it->mi); /* newer than the view: look at older versions */
            continue;
        }
        if (db_entry_live(&e, it->now_ms)) {
            it->cur = e;
            it->valid = true;
            return;
        }
        /* The newest visible version is a tombstone or expired: skip the key's older versions. */
        shale_slice dead = e.key;
        do {
            memtable_iter_next(&it->mi);
            if (!memtable_iter_valid(&it->mi)) {
                break;
            }
            memtable_iter_entry(&it->mi, &e);
        } while (slice_eq(e.key, dead));
    }
    it->valid = false;
}

/* The memtable is positioned at the last (oldest) entry of some key, or invalid: backward to the
 * last live key within bounds. */
static void find_prev(shale_iter *it)
{
    memtable_entry e, f;

    while (memtable_iter_valid(&it->mi)) {
        memtable_iter_entry(&it->mi, &e);
        if (below_lo(it, e.key)) {
            break;
        }
        memtable_iter_seek(&it->mi, e.key, it->snapshot);
        if (memtable_iter_valid(&it->mi)) {
            memtable_iter_entry(&it->mi, &f);
            if (slice_eq(f.key, e.key) && db_entry_live(&f, it->now_ms) && below_hi(it, f.key)) {
                it->cur = f;
                it->valid = true;
                return;
            }
        }
        /* To the last entry of the previous key. */
        memtable_iter_seek(&it->mi, e.key, MEMTABLE_MAX_SEQ);
        memtable_iter_prev(&it->mi);
    }
    it->valid = false;
}

/* Positions the memtable at the last entry whose key is < target (or <= with inclusive). */
static void position_before(shale_iter *it, shale_slice target, bool inclusive)
{
    /* (target, 0) sorts after every version of target (sequence numbers start at 1). */
    memtable_iter_seek(&it->mi, target, inclusive ? 0 : MEMTABLE_MAX_SEQ);
    if (memtable_iter_valid(&it->mi)) {
        memtable_iter_prev(&it->mi);
    } else {
        memtable_iter_seek_last(&it->mi);
    }
}

void shale_iter_seek(shale_iter *it, shale_slice target)
{
    if (it == NULL) {
        return;
    }
    if (below_lo(it, target) || target.data == NULL) {
        target = it->has_lo ? (shale_slice){it->lo.data, it->lo.len} : (shale_slice){"", 0};
    }
    memtable_iter_seek(&it->mi, target, MEMTABLE_MAX_SEQ);
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
    memtable_iter_seek_first(&it->mi);
    find_next(it);
}

void shale_iter_seek_last(shale_iter *it)
{
    if (it == NULL) {
        return;
    }
    if (it->has_hi) {
        position_before(it, (shale_slice){it->hi.data, it->hi.len}, false);
    } else {
        memtable_iter_seek_last(&it->mi);
    }
    find_prev(it);
}

void shale_iter_seek_for_prev(shale_iter *it, shale_slice target)
{
    if (it == NULL) {
        return;
    }
    if (target.data == NULL && target.len > 0) {
        it->valid = false;
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
    memtable_entry e;

    if (it == NULL || !it->valid) {
        return;
    }
    shale_slice done = it->cur.key;
    do {
        memtable_iter_next(&it->mi);
        if (!memtable_iter_valid(&it->mi)) {
            break;
        }
        memtable_iter_entry(&it->mi, &e);
    } while (slice_eq(e.key, done));
    find_next(it);
}

void shale_iter_prev(shale_iter *it)
{
    if (it == NULL || !it->valid) {
        return;
    }
    position_before(it, it->cur.key, false);
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
    return SHALE_OK;
}

void shale_iter_free(shale_iter *it)
{
    if (it == NULL) {
        return;
    }
    memtable_iter_destroy(&it->mi);
    buf_free(&it->lo);
    buf_free(&it->hi);
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
        buf_free(&it->lo);
        buf_free(&it->hi);
        free(it);
        return rc;
    }
    it->snapshot = db_visible_seq(db);
    it->now_ms = db->env->now_ms(db->env);
    memtable_iter_init(&it->mi, db->mem);
    *out = it;
    return SHALE_OK;
}
