/*
 * faults_util: the write model the fault campaigns (fault_lsm.c, faults_env.c) share.
 *
 * A model tracks, for each of its keys, the id of the write whose value the key holds (state, 0
 * for absent) and, after a commit that failed, the value that may be there instead (doubt: the
 * failed commit may or may not have reached the log; FU_MAYBE_DELETED for a delete). Values
 * describe themselves ("w<id> k<key>|" then a filler whose length and letters follow from the id
 * and the key, shaped per campaign by fu_model_init), so a read names the write it came from and
 * any damage shows.
 *
 * Offered: fu_model_init, fu_key, fu_make_value, fu_commit (a FULL batch) and fu_put_one (a FULL
 * put) that apply themselves to the model, fu_value_id and fu_model_allows (one key),
 * fu_check_model (every get and a full scan agree with the model), fu_settle_doubts (after a
 * reopen the state is final), fu_base_opts (the small-LSM options both campaigns start from) and
 * fu_open_ok. A failed check fails the running Criterion test.
 */
#ifndef SHALE_TESTS_FAULTS_UTIL_H
#define SHALE_TESTS_FAULTS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#define FU_MAX_KEYS      400u
#define FU_VALUE_CAP     512u
#define FU_MAYBE_DELETED UINT64_MAX /* a doubt: a failed delete may have happened */

typedef struct fu_model {
    uint32_t nkeys;              /* keys 0 .. nkeys - 1 (at most FU_MAX_KEYS) */
    uint64_t key_base;           /* key k is tu_key(key_base + k) */
    uint32_t value_min;          /* a value is value_min + (hash % value_spread) bytes ... */
    uint32_t value_spread;       /*   (at most FU_VALUE_CAP in all) */
    uint32_t fill_mul;           /* ... its filler letter at i is 'a' + (id * fill_mul + i) % 26 */
    uint64_t state[FU_MAX_KEYS]; /* id of the write whose value the key holds; 0 = absent */
    uint64_t doubt[FU_MAX_KEYS]; /* a failed commit's value that may also be there; 0 = none */
    uint64_t next_id;
} fu_model;

/* Empties m (no key, next id 1) and sets its key and value shape. */
void fu_model_init(fu_model *m, uint32_t nkeys, uint64_t key_base, uint32_t value_min,
                   uint32_t value_spread, uint32_t fill_mul);

/* Key k of the model, in buf (17 bytes). */
shale_slice fu_key(const fu_model *m, char *buf, uint32_t k);

/* The value write `id` puts under key k, in buf (FU_VALUE_CAP bytes); returns its length. */
size_t fu_make_value(const fu_model *m, char *buf, uint64_t id, uint32_t k);

/* One FULL commit: a batch of n (<= 64) operations over the keys first, first + 7, ... (mod
 * nkeys), a delete where the write id % 5 == 0. Applied to the model when acknowledged; when it
 * failed, its effect on each key is recorded as a doubt. */
shale_code fu_commit(shale_db *db, fu_model *m, uint32_t first, uint32_t n, shale_error *err);

/* One FULL shale_put of key k, applied to the model like fu_commit. */
shale_code fu_put_one(shale_db *db, fu_model *m, uint32_t k, shale_error *err);

/* The write id a stored value of key k carries; fails the test on a foreign or damaged value. */
uint64_t fu_value_id(const fu_model *m, const char *ctx, uint32_t k, const shale_buf *got);

/* Whether key k may hold write id (0: absent): its state, or its doubt. */
bool fu_model_allows(const fu_model *m, uint32_t k, uint64_t id);

/* Every key by get, then a full forward scan: all succeed, every key holds its model value or its
 * doubt, and the scan sees exactly the keys the gets found, all of them model keys. */
void fu_check_model(shale_db *db, const fu_model *m, const char *ctx);

/* Settles the doubts with what the database holds (after a reopen, the state is final). */
void fu_settle_doubts(shale_db *db, fu_model *m);

/* FULL durability, create_if_missing, no TTL sweep, on `env` (NULL: the OS), over
 * tu_small_lsm_options(l0_trigger). */
shale_options fu_base_opts(const shale_env *env, uint32_t l0_trigger);

/* shale_open that must succeed. */
shale_db *fu_open_ok(const char *dir, const shale_options *o, const char *ctx);

#endif
