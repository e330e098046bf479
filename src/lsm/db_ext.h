/*
 * db_ext: one slot of per-handle state for a layer built on the key-value store (the document
 * layer's catalog cache, doc/docdb.c), so that such a layer needs no table of handles of its own
 * and its state dies with the handle.
 *
 * db_ext_get returns the slot's state, making it with make() on the first call (several threads
 * may race to make it: one wins and the others' states are freed with free_fn). NULL when the
 * handle is closed or make() failed; the caller then does without. shale_close frees the state
 * with the free_fn of the winning call after the background threads stopped. Thread-safe. Only
 * one layer may use the slot (a second make/free pair is never called once the slot is set).
 */
#ifndef SHALE_LSM_DB_EXT_H
#define SHALE_LSM_DB_EXT_H

#include "shale.h"

void *db_ext_get(shale_db *db, void *(*make)(void), void (*free_fn)(void *));

#endif
