/* catcache: see catcache.h. */
#include "doc/catcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "lsm/db_ext.h"

typedef struct cat_slot {
    pthread_mutex_t mu;
    uint64_t gen;   /* the quiet period the copy was read in; 0 = empty */
    doc_meta *meta; /* sized for its indexes (cap of them) */
    uint16_t cap;
    char name[DOC_NAME_MAX + 1];
} cat_slot;

struct catcache {
    _Atomic uint64_t writing;
    _Atomic uint64_t gen; /* starts at 1, so that 0 marks an empty slot */
    cat_slot slot[CATCACHE_SLOTS];
};

static size_t meta_bytes(uint16_t nindexes)
{
    return offsetof(doc_meta, idx) + (size_t)nindexes * sizeof(doc_index);
}

static void *cat_make(void)
{
    catcache *c = calloc(1, sizeof *c);
    if (c != NULL) {
        atomic_init(&c->gen, 1);
        for (size_t i = 0; i < CATCACHE_SLOTS; i++) {
            pthread_mutex_init(&c->slot[i].mu, NULL);
        }
    }
    return c;
}

static void cat_free(void *p)
{
    catcache *c = p;
    for (size_t i = 0; i < CATCACHE_SLOTS; i++) {
        pthread_mutex_destroy(&c->slot[i].mu);
        free(c->slot[i].meta);
    }
    free(c);
}

catcache *catcache_of(shale_db *db)
{
    return db_ext_get(db, cat_make, cat_free);
}

void catcache_write_begin(catcache *c)
{
    if (c != NULL) {
        atomic_fetch_add(&c->writing, 1);
    }
}

void catcache_write_end(catcache *c)
{
    if (c != NULL) {
        atomic_fetch_add(&c->gen, 1); /* before writing drops: see catcache.h */
        atomic_fetch_sub(&c->writing, 1);
    }
}

bool catcache_begin(catcache *c, uint64_t *gen)
{
    if (c == NULL) {
        return false;
    }
    *gen = atomic_load(&c->gen);
    return atomic_load(&c->writing) == 0;
}

bool catcache_end(catcache *c, uint64_t gen)
{
    if (c == NULL) {
        return false;
    }
    /* The snapshot's read of the visible sequence (an acquire load) must come before these. */
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load(&c->writing) == 0 && atomic_load(&c->gen) == gen;
}

static cat_slot *slot_of(catcache *c, const char *name)
{
    return &c->slot[hash_bytes(name, strlen(name), 0x5a1e) % CATCACHE_SLOTS];
}

bool catcache_get(catcache *c, const char *name, uint64_t gen, doc_meta *m)
{
    if (c == NULL) {
        return false;
    }
    cat_slot *s = slot_of(c, name);
    pthread_mutex_lock(&s->mu);
    bool hit = s->gen == gen && strcmp(s->name, name) == 0;
    if (hit) {
        memcpy(m, s->meta, meta_bytes(s->meta->nindexes));
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

void catcache_put(catcache *c, const char *name, uint64_t gen, const doc_meta *m)
{
    if (c == NULL || strlen(name) > DOC_NAME_MAX) {
        return;
    }
    cat_slot *s = slot_of(c, name);
    pthread_mutex_lock(&s->mu);
    if (gen < s->gen) { /* a slow reader of an older period: keep the newer copy */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (s->meta == NULL || s->cap < m->nindexes) {
        doc_meta *grown = realloc(s->meta, meta_bytes(m->nindexes));
        if (grown == NULL) {
            s->gen = 0; /* keep the old copy's memory, but no longer serve it */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->meta = grown;
        s->cap = m->nindexes;
    }
    memcpy(s->meta, m, meta_bytes(m->nindexes));
    strcpy(s->name, name);
    s->gen = gen;
    pthread_mutex_unlock(&s->mu);
}
