/*
 * merge_iter: the merging iterator, the level (concatenating) iterator and the memtable adapter
 * (contracts in merge_iter.h, base/iter.h).
 *
 * Merging. Each child's current entry is cached beside it (one entry() call per move of that
 * child), so comparisons never go through the vtable. The children that are valid sit in a binary
 * heap ordered for the current direction: a min-heap on (key, seq) going forward, a max-heap going
 * back; heap[0] is the current child. A step moves heap[0] and compares it with the runner-up
 * (the better of heap[1] and heap[2], remembered in `run`) only: while one child supplies a run of
 * entries, as in most scans, that one comparison is the whole cost of the step; when it falls
 * behind, the runner-up rises and the moved child sinks into the runner-up's subtree. One child is
 * not merged at all (merge_iter_new returns it). A child that is a level iterator is stepped
 * directly (its table iterator moves; level bookkeeping only at table ends), and
 * merge_iter_step gives a caller the next entry in one call. Changing direction follows LevelDB's
 * MergingIterator:
 *   to reverse: every other child is sought to the current (key, seq) and stepped back once (or
 *     put on its last entry if nothing is >= the current one), so all sit before it;
 *   to forward: every other child is sought to the current (key, seq) and stepped past an equal
 *     entry, so all sit after it.
 * Errors: the first child that reports a status makes the merge invalid with that status until
 * the next seek (LevelDB would drop the child and go on, silently skipping its entries).
 *
 * Readings of the contract (merge_iter.h) chosen here:
 *   - merge_iter_new with a NULL child (its constructor ran out of memory) destroys the others
 *     and returns NULL, so callers need not check each constructor.
 *   - merge_iter_new with n == 0 returns an empty iterator; the `children` array itself stays the
 *     caller's (only the iterators are taken).
 *   - level_iter_new for level 0 (tables may overlap) or a level out of range returns an iterator
 *     whose status is SHALE_INVALID: level 0 is merged table by table.
 *   - level_iter opens tables with table_cache_get + sst_reader_iter itself rather than through
 *     table_cache_iter, saving one vtable layer on every step of a scan; the behaviour is the
 *     same (the table stays pinned while the walk is on it). It lets go of the table when the walk
 *     runs off either end of the level.
 *   - mem_iter_new(NULL) returns an empty iterator (a view without an immutable memtable).
 */
#include "lsm/merge_iter.h"

#include <stdlib.h>

#include "base/error.h"

/* What a seek aims at: (key, seq), or one end. */
typedef enum seek_target { SEEK_KEY, SEEK_FIRST, SEEK_LAST } seek_target;

/* Seeks child c to `to` (key and seq count only for SEEK_KEY). */
static void seek_child(iter *c, seek_target to, shale_slice key, uint64_t seq)
{
    switch (to) {
    case SEEK_KEY:
        iter_seek(c, key, seq);
        break;
    case SEEK_FIRST:
        iter_seek_first(c);
        break;
    case SEEK_LAST:
        iter_seek_last(c);
        break;
    }
}

/* ---- Level iterator ---- */

typedef struct level_iter {
    iter base;
    bool valid;
    bool fill_cache;
    table_cache *tc;
    version *v;
    file_meta *const *files; /* v->files[level], sorted and disjoint */
    size_t nfiles;
    size_t idx;      /* the table `table` walks, while table != NULL */
    table_handle *h; /* its pin */
    iter *table;
    shale_error err;
} level_iter;

static void close_table(level_iter *l)
{
    if (l->table != NULL) {
        iter_destroy(l->table);
        table_cache_release(l->tc, l->h);
        l->table = NULL;
        l->h = NULL;
    }
}

/* Puts the walk on table i (reusing the open one if it is i). False on failure, with l->err set
 * and the iterator invalid. */
static bool open_table(level_iter *l, size_t i)
{
    const file_meta *f = l->files[i];
    table_handle *h = NULL;
    shale_code rc;

    if (l->table != NULL && l->idx == i) {
        return true;
    }
    close_table(l);
    rc = table_cache_get(l->tc, f->number, f->size, &h, &l->err);
    if (rc != SHALE_OK) {
        l->valid = false;
        return false;
    }
    l->table = sst_reader_iter(table_handle_reader(h), l->fill_cache);
    if (l->table == NULL) {
        table_cache_release(l->tc, h);
        (void)err_nomem(&l->err);
        l->valid = false;
        return false;
    }
    l->h = h;
    l->idx = i;
    return true;
}

/* The table iterator was just positioned (or moved): if it is at its end, walk on to the next
 * (fwd) or previous table until one has an entry, the level ends, or an error stops the walk. */
static void level_settle(level_iter *l, bool fwd)
{
    while (!iter_valid(l->table)) {
        if (iter_status(l->table, NULL) != SHALE_OK) {
            (void)iter_status(l->table, &l->err);
            close_table(l);
            l->valid = false;
            return;
        }
        if (fwd ? l->idx + 1 >= l->nfiles : l->idx == 0) {
            close_table(l);
            l->valid = false;
            return;
        }
        if (!open_table(l, fwd ? l->idx + 1 : l->idx - 1)) {
            return;
        }
        if (fwd) {
            iter_seek_first(l->table);
        } else {
            iter_seek_last(l->table);
        }
    }
    l->valid = true;
}

static bool level_valid(const iter *it)
{
    return ((const level_iter *)it)->valid;
}

/* Every seek: clears the error, puts the walk on the one table that can hold the target and
 * seeks it there, walking on past tables without a matching entry. */
static void level_seek_to(iter *it, seek_target to, shale_slice key, uint64_t seq)
{
    level_iter *l = (level_iter *)it;
    size_t i = l->nfiles; /* the table, or nfiles for none */

    err_clear(&l->err);
    if (to == SEEK_KEY) {
        /* The first table whose largest entry is >= (key, seq): the only one that can hold it. */
        size_t lo = 0, hi = l->nfiles;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const file_meta *f = l->files[mid];
            shale_slice largest = {f->largest.data, f->largest.len};
            if (ikey_cmp(largest, f->largest_seq, key, seq) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        i = lo;
    } else if (l->nfiles > 0) {
        i = to == SEEK_FIRST ? 0 : l->nfiles - 1;
    }
    if (i == l->nfiles) {
        close_table(l);
        l->valid = false;
        return;
    }
    if (!open_table(l, i)) {
        return;
    }
    seek_child(l->table, to, key, seq);
    level_settle(l, to != SEEK_LAST);
}

static void level_seek(iter *it, shale_slice key, uint64_t seq)
{
    level_seek_to(it, SEEK_KEY, key, seq);
}

static void level_seek_first(iter *it)
{
    level_seek_to(it, SEEK_FIRST, (shale_slice){NULL, 0}, 0);
}

static void level_seek_last(iter *it)
{
    level_seek_to(it, SEEK_LAST, (shale_slice){NULL, 0}, 0);
}

/* next (fwd) or prev. */
static inline __attribute__((always_inline)) void level_step(iter *it, bool fwd)
{
    level_iter *l = (level_iter *)it;

    if (!l->valid) {
        return;
    }
    if (fwd) {
        iter_next(l->table);
    } else {
        iter_prev(l->table);
    }
    if (!iter_valid(l->table)) {
        level_settle(l, fwd);
    }
}

/* A step and the entry there in one, for the callers in this file that know `l` is a level
 * iterator (a merge's children, merge_iter_step): within a table only the table iterator moves,
 * so a step pays no level bookkeeping and no vtable call of its own. True if valid after the
 * step, with the entry in *out. */
static inline __attribute__((always_inline)) bool level_step_entry(level_iter *l, bool fwd,
                                                                   ikey_entry *out)
{
    if (!l->valid) {
        return false;
    }
    if (fwd) {
        iter_next(l->table);
    } else {
        iter_prev(l->table);
    }
    if (!iter_valid(l->table)) {
        level_settle(l, fwd);
        if (!l->valid) {
            return false;
        }
    }
    iter_entry(l->table, out);
    return true;
}

static void level_next(iter *it)
{
    level_step(it, true);
}

static void level_prev(iter *it)
{
    level_step(it, false);
}

static void level_entry(const iter *it, ikey_entry *out)
{
    const level_iter *l = (const level_iter *)it;

    if (NEVER(!l->valid)) {
        *out = (ikey_entry){0};
        return;
    }
    iter_entry(l->table, out);
}

static shale_code level_status(const iter *it, shale_error *err)
{
    return err_copy(err, &((const level_iter *)it)->err);
}

static void level_destroy(iter *it)
{
    level_iter *l = (level_iter *)it;

    close_table(l);
    version_unref(l->v);
    free(l);
}

static const iter_ops level_ops = {
    .valid = level_valid,
    .seek = level_seek,
    .seek_first = level_seek_first,
    .seek_last = level_seek_last,
    .next = level_next,
    .prev = level_prev,
    .entry = level_entry,
    .status = level_status,
    .destroy = level_destroy,
};

iter *level_iter_new(table_cache *tc, version *v, int level, bool fill_cache)
{
    level_iter *l;

    if (level < 1 || level >= VERSION_LEVELS) {
        shale_error e;
        (void)err_set(&e, SHALE_INVALID, 0, "level_iter_new: level %d is not in 1 .. %d", level,
                      VERSION_LEVELS - 1);
        return iter_new_error(SHALE_INVALID, &e);
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        return NULL;
    }
    l->base.ops = &level_ops;
    l->tc = tc;
    l->v = v;
    l->files = v->files[level];
    l->nfiles = v->nfiles[level];
    l->fill_cache = fill_cache;
    version_ref(v);
    return &l->base;
}

/* ---- Merging iterator ---- */

typedef struct merge_child {
    iter *it;
    level_iter *lvl; /* it, when it is a level iterator (stepped directly), else NULL */
    ikey_entry e;    /* its current entry, while it is in the heap */
} merge_child;

typedef struct merge_iter {
    iter base;
    size_t heap_n; /* valid children, in heap[0 .. heap_n); 0 = the merge is invalid */
    size_t run;    /* with heap_n >= 2: the runner-up, heap[1] or heap[2] (whichever is above) */
    bool forward;  /* heap order: min-heap forward, max-heap in reverse */
    size_t n;      /* children */
    merge_child **heap;
    shale_error err; /* first error of a child since the last seek */
    merge_child kids[];
} merge_iter;

/* True if a belongs above b in the heap of direction `fwd`. */
static inline __attribute__((always_inline)) bool above(const merge_child *a, const merge_child *b,
                                                        bool fwd)
{
    int c = ikey_cmp(a->e.key, a->e.seq, b->e.key, b->e.seq);
    return fwd ? c < 0 : c > 0;
}

static inline __attribute__((always_inline)) void sift_down(merge_iter *m, size_t i, bool fwd)
{
    merge_child **h = m->heap;
    size_t n = m->heap_n;
    merge_child *x = h[i];

    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) {
            break;
        }
        if (l + 1 < n && above(h[l + 1], h[l], fwd)) {
            l++;
        }
        if (!above(h[l], x, fwd)) {
            break;
        }
        h[i] = h[l];
        i = l;
    }
    h[i] = x;
}

/* Recomputes the runner-up after heap[1] or heap[2] changed. */
static inline __attribute__((always_inline)) void pick_run(merge_iter *m, bool fwd)
{
    m->run = m->heap_n > 2 && above(m->heap[2], m->heap[1], fwd) ? 2 : 1;
}

/* Records a child's failure; the first one wins. */
static void child_failed(merge_iter *m, const merge_child *c)
{
    if (m->err.code == SHALE_OK) {
        (void)iter_status(c->it, &m->err);
    }
}

/* After moving child c: caches its entry and returns true, or returns false when it is at its
 * end (recording its error, if that is why). */
static inline bool load(merge_iter *m, merge_child *c)
{
    if (iter_valid(c->it)) {
        iter_entry(c->it, &c->e);
        return true;
    }
    if (iter_status(c->it, NULL) != SHALE_OK) {
        child_failed(m, c);
    }
    return false;
}

/* Moves child c one step in direction fwd and load()s it. A level child is stepped directly. */
static inline __attribute__((always_inline)) bool step_child(merge_iter *m, merge_child *c,
                                                             bool fwd)
{
    if (c->lvl != NULL) {
        if (level_step_entry(c->lvl, fwd, &c->e)) {
            return true;
        }
        if (c->lvl->err.code != SHALE_OK) {
            child_failed(m, c);
        }
        return false;
    }
    if (fwd) {
        iter_next(c->it);
    } else {
        iter_prev(c->it);
    }
    return load(m, c);
}

/* Heap of every child that load()s, for direction fwd. */
static void rebuild(merge_iter *m, bool fwd)
{
    m->heap_n = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (load(m, &m->kids[i])) {
            m->heap[m->heap_n++] = &m->kids[i];
        }
    }
    m->forward = fwd;
    if (m->err.code != SHALE_OK) {
        m->heap_n = 0;
        return;
    }
    for (size_t i = m->heap_n / 2; i-- > 0;) {
        sift_down(m, i, fwd);
    }
    pick_run(m, fwd);
}

/* heap[0] moved (`ok`: it is still valid): re-place it, or drop it at its end.
 * The common case of a scan is one child supplying a run of entries: the moved child is compared
 * with the runner-up only, and while it stays ahead that one comparison is the whole cost (a
 * plain sift-down compares heap[1] with heap[2] as well). When it falls behind, the runner-up
 * rises and the moved child sinks into the runner-up's subtree. */
static inline __attribute__((always_inline)) void settle_top(merge_iter *m, bool ok, bool fwd)
{
    merge_child **h = m->heap;

    if (ok) {
        if (m->heap_n < 2) {
            return;
        }
        size_t r = m->run;
        merge_child *x = h[0];
        if (above(x, h[r], fwd)) {
            return;
        }
        h[0] = h[r];
        h[r] = x;
        sift_down(m, r, fwd);
        pick_run(m, fwd);
        return;
    }
    if (m->err.code != SHALE_OK) {
        m->heap_n = 0;
        return;
    }
    h[0] = h[--m->heap_n];
    if (m->heap_n > 1) {
        sift_down(m, 0, fwd);
        pick_run(m, fwd);
    }
}

static bool merge_valid(const iter *it)
{
    return ((const merge_iter *)it)->heap_n != 0;
}

/* Every seek: clears the error, seeks every child and rebuilds the heap for the direction the
 * walk goes from there (forward, except from the last entry). */
static void merge_seek_to(iter *it, seek_target to, shale_slice key, uint64_t seq)
{
    merge_iter *m = (merge_iter *)it;

    err_clear(&m->err);
    for (size_t i = 0; i < m->n; i++) {
        seek_child(m->kids[i].it, to, key, seq);
    }
    rebuild(m, to != SEEK_LAST);
}

static void merge_seek(iter *it, shale_slice key, uint64_t seq)
{
    merge_seek_to(it, SEEK_KEY, key, seq);
}

static void merge_seek_first(iter *it)
{
    merge_seek_to(it, SEEK_FIRST, (shale_slice){NULL, 0}, 0);
}

static void merge_seek_last(iter *it)
{
    merge_seek_to(it, SEEK_LAST, (shale_slice){NULL, 0}, 0);
}

/* Puts every child other than the current one after it (fwd) or before it (see the top of the
 * file), then rebuilds the heap for that direction. */
static void turn(merge_iter *m, bool fwd)
{
    merge_child *cur = m->heap[0];

    for (size_t i = 0; i < m->n; i++) {
        merge_child *c = &m->kids[i];
        if (c == cur) {
            continue;
        }
        iter_seek(c->it, cur->e.key, cur->e.seq);
        if (fwd) {
            if (iter_valid(c->it)) {
                ikey_entry e;
                iter_entry(c->it, &e);
                if (ikey_cmp(e.key, e.seq, cur->e.key, cur->e.seq) == 0) {
                    iter_next(c->it);
                }
            }
        } else if (iter_valid(c->it)) {
            iter_prev(c->it); /* first entry >= current: the one before it is < current */
        } else if (iter_status(c->it, NULL) == SHALE_OK) {
            iter_seek_last(c->it); /* every entry is < current */
        }
    }
    /* The current child is now the first of all in the new direction, so it lands on heap[0]
     * again. */
    rebuild(m, fwd);
}

/* next (fwd) or prev: on the hot path of every scan, so inlined into both. */
static inline __attribute__((always_inline)) void merge_step(merge_iter *m, bool fwd)
{
    if (m->heap_n == 0) {
        return; /* REQUIRES valid; stay invalid rather than crash */
    }
    if (m->forward != fwd) {
        turn(m, fwd);
        if (m->heap_n == 0) {
            return;
        }
    }
    settle_top(m, step_child(m, m->heap[0], fwd), fwd);
}

static void merge_next(iter *it)
{
    merge_step((merge_iter *)it, true);
}

static void merge_prev(iter *it)
{
    merge_step((merge_iter *)it, false);
}

static void merge_entry(const iter *it, ikey_entry *out)
{
    const merge_iter *m = (const merge_iter *)it;

    if (NEVER(m->heap_n == 0)) {
        *out = (ikey_entry){0};
        return;
    }
    *out = m->heap[0]->e;
}

static shale_code merge_status(const iter *it, shale_error *err)
{
    return err_copy(err, &((const merge_iter *)it)->err);
}

static void merge_destroy(iter *it)
{
    merge_iter *m = (merge_iter *)it;

    for (size_t i = 0; i < m->n; i++) {
        iter_destroy(m->kids[i].it);
    }
    free(m->heap);
    free(m);
}

static const iter_ops merge_ops = {
    .valid = merge_valid,
    .seek = merge_seek,
    .seek_first = merge_seek_first,
    .seek_last = merge_seek_last,
    .next = merge_next,
    .prev = merge_prev,
    .entry = merge_entry,
    .status = merge_status,
    .destroy = merge_destroy,
};

static void destroy_all(iter **children, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        iter_destroy(children[i]);
    }
}

iter *merge_iter_new(iter **children, size_t n)
{
    merge_iter *m;

    for (size_t i = 0; i < n; i++) {
        if (children[i] == NULL) {
            destroy_all(children, n);
            return NULL;
        }
    }
    if (n == 0) {
        return iter_new_error(SHALE_OK, NULL);
    }
    if (n == 1) {
        return children[0]; /* nothing to merge: no layer at all on the scan path */
    }
    m = calloc(1, sizeof *m + n * sizeof m->kids[0]);
    if (m == NULL) {
        destroy_all(children, n);
        return NULL;
    }
    m->heap = calloc(n, sizeof(merge_child *));
    if (m->heap == NULL) {
        free(m);
        destroy_all(children, n);
        return NULL;
    }
    m->base.ops = &merge_ops;
    m->n = n;
    m->forward = true;
    for (size_t i = 0; i < n; i++) {
        m->kids[i].it = children[i];
        m->kids[i].lvl = children[i]->ops == &level_ops ? (level_iter *)children[i] : NULL;
    }
    return &m->base;
}

/* merge_iter_step's cases, each its own function (tail-called) so that the common one saves only
 * the registers it needs. */
static __attribute__((noinline)) const ikey_entry *merge_next_entry(merge_iter *m)
{
    merge_step(m, true);
    return m->heap_n != 0 ? &m->heap[0]->e : NULL;
}

static __attribute__((noinline)) const ikey_entry *merge_prev_entry(merge_iter *m)
{
    merge_step(m, false);
    return m->heap_n != 0 ? &m->heap[0]->e : NULL;
}

static __attribute__((noinline)) const ikey_entry *level_next_entry(level_iter *l,
                                                                    ikey_entry *scratch)
{
    return level_step_entry(l, true, scratch) ? scratch : NULL;
}

static __attribute__((noinline)) const ikey_entry *other_step_entry(iter *it, bool fwd,
                                                                    ikey_entry *scratch)
{
    if (it->ops == &level_ops) {
        return level_step_entry((level_iter *)it, fwd, scratch) ? scratch : NULL;
    }
    if (fwd) {
        iter_next(it);
    } else {
        iter_prev(it);
    }
    if (!iter_valid(it)) {
        return NULL;
    }
    iter_entry(it, scratch);
    return scratch;
}

/* One step of any internal iterator and the entry there, going around the vtable layers for the
 * kinds this file makes (see merge_iter.h). */
const ikey_entry *merge_iter_step(iter *it, bool fwd, ikey_entry *scratch)
{
    if (it->ops == &merge_ops) {
        return fwd ? merge_next_entry((merge_iter *)it) : merge_prev_entry((merge_iter *)it);
    }
    if (fwd && it->ops == &level_ops) {
        return level_next_entry((level_iter *)it, scratch);
    }
    return other_step_entry(it, fwd, scratch);
}

const ikey_entry *merge_iter_current(const iter *it, ikey_entry *scratch)
{
    if (it->ops == &merge_ops) {
        const merge_iter *m = (const merge_iter *)it;
        return m->heap_n != 0 ? &m->heap[0]->e : NULL;
    }
    if (!iter_valid(it)) {
        return NULL;
    }
    iter_entry(it, scratch);
    return scratch;
}

/* ---- Memtable adapter ---- */

typedef struct mem_iter {
    iter base;
    memtable_iter mi;
} mem_iter;

static bool mem_valid(const iter *it)
{
    return memtable_iter_valid(&((const mem_iter *)it)->mi);
}

static void mem_seek(iter *it, shale_slice key, uint64_t seq)
{
    memtable_iter_seek(&((mem_iter *)it)->mi, key, seq);
}

static void mem_seek_first(iter *it)
{
    memtable_iter_seek_first(&((mem_iter *)it)->mi);
}

static void mem_seek_last(iter *it)
{
    memtable_iter_seek_last(&((mem_iter *)it)->mi);
}

static void mem_next(iter *it)
{
    memtable_iter_next(&((mem_iter *)it)->mi);
}

static void mem_prev(iter *it)
{
    memtable_iter_prev(&((mem_iter *)it)->mi);
}

static void mem_entry(const iter *it, ikey_entry *out)
{
    memtable_iter_entry(&((const mem_iter *)it)->mi, out);
}

static shale_code mem_status(const iter *it, shale_error *err)
{
    (void)it;
    err_clear(err);
    return SHALE_OK; /* memory cannot fail a walk */
}

static void mem_destroy(iter *it)
{
    mem_iter *mi = (mem_iter *)it;

    memtable_iter_destroy(&mi->mi);
    free(mi);
}

static const iter_ops mem_ops = {
    .valid = mem_valid,
    .seek = mem_seek,
    .seek_first = mem_seek_first,
    .seek_last = mem_seek_last,
    .next = mem_next,
    .prev = mem_prev,
    .entry = mem_entry,
    .status = mem_status,
    .destroy = mem_destroy,
};

iter *mem_iter_new(memtable *m)
{
    mem_iter *mi;

    if (m == NULL) {
        return iter_new_error(SHALE_OK, NULL);
    }
    mi = malloc(sizeof *mi);
    if (mi == NULL) {
        return NULL;
    }
    mi->base.ops = &mem_ops;
    memtable_iter_init(&mi->mi, m);
    return &mi->base;
}

/* ---- seq window ------------------------------------------------------------------------------ */

typedef struct seq_window {
    iter base;
    iter *in;
    uint64_t max;   /* entries of `in` with a larger seq are passed over */
    uint64_t shift; /* added to every seq shown */
} seq_window;

static void window_skip(seq_window *w, bool fwd)
{
    ikey_entry e;
    while (iter_valid(w->in)) {
        iter_entry(w->in, &e);
        if (e.seq <= w->max) {
            return;
        }
        if (fwd) {
            iter_next(w->in);
        } else {
            iter_prev(w->in);
        }
    }
}

static bool window_valid(const iter *base)
{
    return iter_valid(((const seq_window *)base)->in);
}

static void window_seek(iter *base, shale_slice key, uint64_t seq)
{
    seq_window *w = (seq_window *)base;
    /* (key, seq) outside is (key, seq - shift) inside; below the shift no version of key
     * qualifies, and (key, 0) sorts after all of them. */
    uint64_t inner = seq == IKEY_MAX_SEQ ? IKEY_MAX_SEQ : (seq > w->shift ? seq - w->shift : 0);
    iter_seek(w->in, key, inner);
    window_skip(w, true);
}

static void window_seek_first(iter *base)
{
    seq_window *w = (seq_window *)base;
    iter_seek_first(w->in);
    window_skip(w, true);
}

static void window_seek_last(iter *base)
{
    seq_window *w = (seq_window *)base;
    iter_seek_last(w->in);
    window_skip(w, false);
}

static void window_next(iter *base)
{
    seq_window *w = (seq_window *)base;
    iter_next(w->in);
    window_skip(w, true);
}

static void window_prev(iter *base)
{
    seq_window *w = (seq_window *)base;
    iter_prev(w->in);
    window_skip(w, false);
}

static void window_entry(const iter *base, ikey_entry *out)
{
    const seq_window *w = (const seq_window *)base;
    iter_entry(w->in, out);
    out->seq += w->shift;
}

static shale_code window_status(const iter *base, shale_error *err)
{
    return iter_status(((const seq_window *)base)->in, err);
}

static void window_destroy(iter *base)
{
    seq_window *w = (seq_window *)base;
    iter_destroy(w->in);
    free(w);
}

static const iter_ops window_ops = {
    .valid = window_valid,
    .seek = window_seek,
    .seek_first = window_seek_first,
    .seek_last = window_seek_last,
    .next = window_next,
    .prev = window_prev,
    .entry = window_entry,
    .status = window_status,
    .destroy = window_destroy,
};

iter *seq_window_iter_new(iter *in, uint64_t max_seq, uint64_t shift)
{
    if (in == NULL) {
        return NULL;
    }
    seq_window *w = malloc(sizeof *w);
    if (w == NULL) {
        iter_destroy(in);
        return NULL;
    }
    w->base.ops = &window_ops;
    w->in = in;
    w->max = max_seq;
    w->shift = shift;
    return &w->base;
}
