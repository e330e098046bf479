/*
 * merge_iter: iterators built from other iterators (base/iter.h).
 *
 * merge_iter_new: the merging iterator. Yields the union of its children in internal order
 * (key ascending, seq descending), forward and reverse, switching direction as LevelDB's
 * MergingIterator does (re-seeking the other children around the current key). Forward uses a
 * binary min-heap, reverse a max-heap, so each step costs O(log n) comparisons. Children never
 * share (key, seq) (sequence numbers are unique), so the order is total.
 * An error in any child makes the merge invalid with that child's status.
 *
 * level_iter_new: the concatenating iterator over one level >= 1 (sorted, disjoint tables): it
 * opens each table through the table cache only when the walk reaches it (binary search on the
 * tables' key ranges for seeks), so a scan holds one table at a time.
 *
 * mem_iter_new: an adapter from a memtable to the interface; holds a memtable reference.
 *
 * seq_window_iter_new: hides the entries above a sequence number and shifts the rest (below).
 *
 * merge_iter_new with n == 1 returns the child itself and with n == 0 an empty iterator: callers
 * must not assume the result is a merge. A NULL child makes it destroy the others and return NULL.
 *
 * Ownership: merge_iter_new takes ownership of the children (also on failure, destroying them);
 * level_iter_new references `v` (the version whose file list it walks) until destroyed.
 * Every constructor returns NULL only when out of memory.
 */
#ifndef SHALE_LSM_MERGE_ITER_H
#define SHALE_LSM_MERGE_ITER_H

#include <stddef.h>

#include "base/iter.h"
#include "lsm/table_cache.h"
#include "lsm/version.h"
#include "mem/memtable.h"

iter *merge_iter_new(iter **children, size_t n);
iter *level_iter_new(table_cache *tc, version *v, int level, bool fill_cache);
iter *mem_iter_new(memtable *m);
/* seq_window_iter_new: the entries of `in` with seq <= max_seq, each shown with seq + shift (a
 * transaction's view: the database as of its snapshot, and its own writes, numbered from 1,
 * shown above that snapshot). Takes ownership of `in`, also on failure. */
iter *seq_window_iter_new(iter *in, uint64_t max_seq, uint64_t shift);

/* merge_iter_step: iter_next (fwd) or iter_prev on ANY internal iterator, then the entry it is
 * on: a pointer to it, valid until `it` next moves or is destroyed, or NULL when `it` became
 * invalid (its status() tells whether by an error). For the iterators made here it goes around
 * the vtable layers (a scan step is then one call instead of next + valid + entry through every
 * layer); `scratch` receives the entry when `it` has none cached to point at.
 * REQUIRES: `it` is valid.
 * merge_iter_current: the entry `it` is on (same pointer rules), or NULL when it is not valid. */
const ikey_entry *merge_iter_step(iter *it, bool fwd, ikey_entry *scratch);
const ikey_entry *merge_iter_current(const iter *it, ikey_entry *scratch);

#endif
