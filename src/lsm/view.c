/*
 * view: what a read sees - the memtable, the immutable memtable being flushed, and the current
 * version (tables per level) - bundled and reference counted as one (db_impl.h, db_view). A reader
 * takes the view under view_mu for the time of two pointer copies and an increment; writers of
 * the view (memtable switch, flush, compaction) build a new one and swap it in.
 *
 * Point lookup order: memtable, immutable memtable, level-0 tables newest first, then one table
 * per deeper level (binary search on key ranges). The first version found with seq <= the read's
 * seq is the answer, whatever its type: a newer structure always holds newer versions of a key,
 * because data only moves downward (memtable -> L0 -> L1 ...), and a level's tables hold versions
 * older than those of the level above.
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lsm/db_impl.h"
#include "lsm/merge_iter.h"

db_view *db_view_acquire(shale_db *db)
{
    pthread_mutex_lock(&db->view_mu);
    db_view *v = db->view;
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&db->view_mu);
    return v;
}

void db_view_release(db_view *v)
{
    if (v == NULL || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    memtable_unref(v->mem);
    memtable_unref(v->imm);
    version_unref(v->v);
    free(v);
}

shale_code db_view_install_locked(shale_db *db, shale_error *err)
{
    db_view *v = malloc(sizeof *v);
    if (v == NULL) {
        return err_nomem(err);
    }
    atomic_init(&v->refs, 1);
    v->mem = db->mem;
    memtable_ref(v->mem);
    v->imm = db->imm;
    if (v->imm != NULL) {
        memtable_ref(v->imm);
    }
    v->v = version_set_current(db->vs);
    pthread_mutex_lock(&db->view_mu);
    db_view *old = db->view;
    db->view = v;
    pthread_mutex_unlock(&db->view_mu);
    db_view_release(old);
    return SHALE_OK;
}

uint64_t db_read_seq(shale_db *db, const shale_read_opts *ro)
{
    if (ro != NULL && ro->snapshot != NULL) {
        return ro->snapshot->seq;
    }
    return db_visible_seq(db);
}

iter *db_view_iter(shale_db *db, db_view *view, bool fill_cache)
{
    version *v = view->v;
    size_t cap = 2 + v->nfiles[0] + VERSION_LEVELS, n = 0;
    iter **children = calloc(cap, sizeof *children);

    if (children == NULL) {
        return NULL;
    }
    /* An empty memtable adds nothing the iterator's snapshot could see (later writes are newer
     * than it), and every child costs a comparison per step. */
    if (memtable_entry_count(view->mem) > 0) {
        children[n++] = mem_iter_new(view->mem);
    }
    if (view->imm != NULL && memtable_entry_count(view->imm) > 0) {
        children[n++] = mem_iter_new(view->imm);
    }
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        file_meta *f = v->files[0][i];
        children[n++] = table_cache_iter(db->tables, f->number, f->size, fill_cache);
    }
    for (int level = 1; level < VERSION_LEVELS; level++) {
        if (v->nfiles[level] > 0) {
            children[n++] = level_iter_new(db->tables, v, level, fill_cache);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (children[i] == NULL) {
            for (size_t j = 0; j < n; j++) {
                iter_destroy(children[j]);
            }
            free(children);
            return NULL;
        }
    }
    iter *merged = merge_iter_new(children, n);
    free(children);
    return merged;
}

static bool in_range(const file_meta *f, shale_slice key)
{
    return slice_cmp(key, (shale_slice){f->smallest.data, f->smallest.len}) >= 0 &&
           slice_cmp(key, (shale_slice){f->largest.data, f->largest.len}) <= 0;
}

static shale_code table_get(shale_db *db, file_meta *f, shale_slice key, uint64_t hash,
                            uint64_t seq, bool *found, ikey_entry *out, shale_buf *scratch,
                            shale_error *err)
{
    return table_cache_lookup(db->tables, f, key, hash, seq, found, out, scratch, NULL, err);
}

/* The one table of `level` (>= 1) whose range holds key, or NULL. */
static file_meta *level_table(const version *v, int level, shale_slice key)
{
    file_meta **files = v->files[level];
    size_t lo = 0, hi = v->nfiles[level]; /* the first table whose largest key >= key */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (slice_cmp((shale_slice){files[mid]->largest.data, files[mid]->largest.len}, key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < v->nfiles[level] && in_range(files[lo], key) ? files[lo] : NULL;
}

shale_code db_view_get(shale_db *db, db_view *view, shale_slice key, uint64_t seq, bool *found,
                       ikey_entry *out, shale_buf *scratch, shale_error *err)
{
    *found = false;
    if (memtable_get(view->mem, key, seq, out) ||
        (view->imm != NULL && memtable_get(view->imm, key, seq, out))) {
        *found = true;
        return SHALE_OK;
    }
    version *v = view->v;
    uint64_t hash = sst_reader_key_hash(key); /* once, for every table probed */
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        file_meta *f = v->files[0][i];
        if (!in_range(f, key)) {
            continue;
        }
        shale_code rc = table_get(db, f, key, hash, seq, found, out, scratch, err);
        if (rc != SHALE_OK || *found) {
            return rc;
        }
    }
    for (int level = 1; level < VERSION_LEVELS; level++) {
        file_meta *f = level_table(v, level, key);
        if (f == NULL) {
            continue;
        }
        shale_code rc = table_get(db, f, key, hash, seq, found, out, scratch, err);
        if (rc != SHALE_OK || *found) {
            return rc;
        }
    }
    return SHALE_OK;
}

/* The filter line of table f (may be NULL) for key, when f's reader is open. */
static void table_prefetch(file_meta *f, shale_slice key, uint64_t hash)
{
    sst_reader *r = f != NULL ? atomic_load_explicit(&f->reader, memory_order_acquire) : NULL;
    if (r != NULL && in_range(f, key)) {
        sst_reader_prefetch(r, hash);
    }
}

void db_view_prefetch(db_view *view, shale_slice key)
{
    memtable_prefetch_get(view->mem, key);
    if (view->imm != NULL) {
        memtable_prefetch_get(view->imm, key);
    }
    const version *v = view->v;
    uint64_t hash = sst_reader_key_hash(key);
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        table_prefetch(v->files[0][i], key, hash);
    }
    for (int level = 1; level < VERSION_LEVELS; level++) {
        table_prefetch(level_table(v, level, key), key, hash);
    }
}
