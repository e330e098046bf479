/*
 * catcache: the document layer's cache of collection metas (catalog entries, docdb.h), so that a
 * read (get by id, find, a cursor) costs one key-value lookup: the document's, not also the
 * meta's. One per database handle, in the handle's extension slot (lsm/db_ext.h).
 *
 * A read takes a snapshot and needs the meta AT that snapshot. The cache serves it only when no
 * catalog entry can have changed between the snapshot the cached copy was read at and the
 * reader's, which two counters tell:
 *   writing  catalog-writing commits in flight: raised before such a commit, lowered after it
 *            returned;
 *   gen      bumped after every such commit returned, before `writing` is lowered.
 * A reader reads both, takes its snapshot, and reads both again (catcache_begin, catcache_end).
 * If writing was 0 both times and gen did not move, no catalog commit became visible in between
 * (one that did would have held `writing` up at the second read, or bumped gen before it), so
 * the catalog at the snapshot is that of the whole quiet period `gen`: a copy stored under the
 * same gen, read at a snapshot of that period, is exact. Otherwise the reader reads the meta from
 * the store as before. A catalog write thus costs readers one store read each until the next
 * quiet read refills the slot.
 *
 * Every catalog write of the document layer goes through docdb.c's transactions, which bracket
 * their commit with catcache_write_begin / _end. A key-value write into the reserved prefix by
 * hand bypasses this (as it bypasses everything else the document layer keeps consistent).
 *
 * The cache is CATCACHE_SLOTS slots mapped by the name's hash, each holding one collection (a
 * colliding name replaces it): bounded memory with thousands of collections. Thread-safe; a slot
 * is copied under its own mutex.
 */
#ifndef SHALE_DOC_CATCACHE_H
#define SHALE_DOC_CATCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "doc/docdb.h"

#define CATCACHE_SLOTS 256

typedef struct catcache catcache;

/* The handle's cache, made on first use; NULL when it cannot be had (out of memory, closed
 * handle): then every call below is a no-op that answers "not cached". */
catcache *catcache_of(shale_db *db);

/* Around the commit of a transaction that writes (or may write) a catalog entry. */
void catcache_write_begin(catcache *c);
void catcache_write_end(catcache *c);

/* Before taking the snapshot: false when a catalog write is in flight. */
bool catcache_begin(catcache *c, uint64_t *gen);
/* After taking it: true when the window since catcache_begin was quiet (see above). */
bool catcache_end(catcache *c, uint64_t gen);

/* In a quiet window `gen`: copies the cached meta of name into *m; false when not cached. */
bool catcache_get(catcache *c, const char *name, uint64_t gen, doc_meta *m);
/* In a quiet window `gen`: stores m, read at the window's snapshot. */
void catcache_put(catcache *c, const char *name, uint64_t gen, const doc_meta *m);

#endif
