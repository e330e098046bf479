/* memtable: a refcounted skiplist in an arena; see memtable.h for the contract. */
#include "mem/memtable.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/slice.h"
#include "mem/skiplist.h"

struct memtable {
    _Atomic uint32_t refs;
    _Atomic uint64_t entry_count; /* written by the single writer, read by anyone */
    arena arena;
    skiplist list;
};

memtable *memtable_new(void)
{
    memtable *m = malloc(sizeof *m);

    if (m == NULL) {
        return NULL;
    }
    atomic_init(&m->refs, 1);
    atomic_init(&m->entry_count, 0);
    arena_init(&m->arena);
    if (skiplist_init(&m->list, &m->arena, NULL) != SHALE_OK) {
        arena_destroy(&m->arena);
        free(m);
        return NULL;
    }
    return m;
}

void memtable_ref(memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void memtable_unref(memtable *m)
{
    if (m == NULL) {
        return;
    }
    /* acq_rel: every reader's last access happens before the free (the shared_ptr pattern). */
    uint32_t old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old == 1) {
        arena_destroy(&m->arena);
        free(m);
    }
}

static void fill_entry(const skiplist_node *n, memtable_entry *out)
{
    out->key = slice_make(skiplist_node_key(n), n->key_len);
    out->value = slice_make(skiplist_node_value(n), n->val_len);
    out->seq = skiplist_node_seq(n);
    out->expire_at_ms = skiplist_node_expire_at_ms(n);
    out->type = skiplist_node_type(n);
}

shale_code memtable_add(memtable *m, uint64_t seq, uint8_t type, shale_slice key, shale_slice value,
                        uint64_t expire_at_ms, bool *prev_found, memtable_entry *prev,
                        shale_error *err)
{
    const skiplist_node *older = NULL;
    shale_code rc =
        skiplist_insert(&m->list, seq, type, key.data, key.len, value.data, value.len, expire_at_ms,
                        (prev != NULL || prev_found != NULL) ? &older : NULL, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    atomic_store_explicit(&m->entry_count,
                          atomic_load_explicit(&m->entry_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (prev_found != NULL) {
        *prev_found = older != NULL;
    }
    if (prev != NULL && older != NULL) {
        fill_entry(older, prev);
    }
    return SHALE_OK;
}

bool memtable_get(memtable *m, shale_slice key, uint64_t snapshot_seq, memtable_entry *out)
{
    const skiplist_node *n = skiplist_seek(&m->list, key.data, key.len, snapshot_seq);

    if (n == NULL || !slice_eq(slice_make(skiplist_node_key(n), n->key_len), key)) {
        return false;
    }
    fill_entry(n, out);
    return true;
}

size_t memtable_memory_bytes(const memtable *m)
{
    return arena_memory_bytes(&m->arena);
}

uint64_t memtable_entry_count(const memtable *m)
{
    return atomic_load_explicit(&((memtable *)m)->entry_count, memory_order_relaxed);
}

void memtable_iter_init(memtable_iter *it, memtable *m)
{
    memtable_ref(m);
    it->m = m;
    it->node = NULL;
}

void memtable_iter_destroy(memtable_iter *it)
{
    memtable_unref(it->m);
    it->m = NULL;
    it->node = NULL;
}

bool memtable_iter_valid(const memtable_iter *it)
{
    return it->node != NULL;
}

void memtable_iter_seek(memtable_iter *it, shale_slice key, uint64_t seq)
{
    it->node = skiplist_seek(&it->m->list, key.data, key.len, seq);
}

void memtable_iter_seek_first(memtable_iter *it)
{
    it->node = skiplist_first(&it->m->list);
}

void memtable_iter_seek_last(memtable_iter *it)
{
    it->node = skiplist_last(&it->m->list);
}

/* next and prev leave an invalid iterator invalid rather than trusting the caller. */
void memtable_iter_next(memtable_iter *it)
{
    if (it->node != NULL) {
        it->node = skiplist_next(it->node);
    }
}

void memtable_iter_prev(memtable_iter *it)
{
    const skiplist_node *n = it->node;

    if (n == NULL) {
        return;
    }
    it->node = skiplist_find_less_than(&it->m->list, skiplist_node_key(n), n->key_len,
                                       skiplist_node_seq(n));
}

void memtable_iter_entry(const memtable_iter *it, memtable_entry *out)
{
    assert(it->node != NULL);
    fill_entry(it->node, out);
}
