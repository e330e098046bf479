/* faults_util: the shared write model of the fault campaigns (contract in faults_util.h). */
#include "faults_util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

void fu_model_init(fu_model *m, uint32_t nkeys, uint64_t key_base, uint32_t value_min,
                   uint32_t value_spread, uint32_t fill_mul)
{
    cr_assert_leq(nkeys, FU_MAX_KEYS);
    cr_assert_leq(value_min + value_spread, FU_VALUE_CAP);
    memset(m, 0, sizeof *m);
    m->nkeys = nkeys;
    m->key_base = key_base;
    m->value_min = value_min;
    m->value_spread = value_spread;
    m->fill_mul = fill_mul;
    m->next_id = 1;
}

shale_slice fu_key(const fu_model *m, char *buf, uint32_t k)
{
    return tu_key(buf, m->key_base + k);
}

size_t fu_make_value(const fu_model *m, char *buf, uint64_t id, uint32_t k)
{
    int n = snprintf(buf, FU_VALUE_CAP, "w%" PRIu64 " k%u|", id, k);
    size_t len = m->value_min + (size_t)((id * 2654435761u + k) % m->value_spread);
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (id * m->fill_mul + i) % 26);
    }
    return len;
}

static const shale_write_opts full = {.durability = SHALE_DURABILITY_FULL};

shale_code fu_commit(shale_db *db, fu_model *m, uint32_t first, uint32_t n, shale_error *err)
{
    shale_batch *b = shale_batch_new();
    char kb[17], vb[FU_VALUE_CAP];
    uint64_t ids[64];
    uint32_t keys[64];

    cr_assert_not_null(b);
    cr_assert_leq(n, 64);
    for (uint32_t i = 0; i < n; i++) {
        keys[i] = (first + i * 7) % m->nkeys;
        ids[i] = m->next_id++;
        if (ids[i] % 5 == 0) {
            cr_assert_eq(shale_batch_delete(b, fu_key(m, kb, keys[i]), NULL), SHALE_OK);
        } else {
            size_t vl = fu_make_value(m, vb, ids[i], keys[i]);
            cr_assert_eq(shale_batch_put(b, fu_key(m, kb, keys[i]), (shale_slice){vb, vl}, NULL),
                         SHALE_OK);
        }
    }
    shale_code rc = shale_write(db, &full, b, err);
    shale_batch_free(b);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = ids[i] % 5 == 0 ? 0 : ids[i];
        if (rc == SHALE_OK) {
            m->state[keys[i]] = v;
            m->doubt[keys[i]] = 0;
        } else {
            m->doubt[keys[i]] = v == 0 ? FU_MAYBE_DELETED : v;
        }
    }
    return rc;
}

shale_code fu_put_one(shale_db *db, fu_model *m, uint32_t k, shale_error *err)
{
    char kb[17], vb[FU_VALUE_CAP];
    uint64_t id = m->next_id++;
    size_t vl = fu_make_value(m, vb, id, k);
    shale_code rc = shale_put(db, &full, fu_key(m, kb, k), (shale_slice){vb, vl}, err);
    if (rc == SHALE_OK) {
        m->state[k] = id;
        m->doubt[k] = 0;
    } else {
        m->doubt[k] = id;
    }
    return rc;
}

uint64_t fu_value_id(const fu_model *m, const char *ctx, uint32_t k, const shale_buf *got)
{
    char head[48], vb[FU_VALUE_CAP];
    uint64_t id = 0;
    unsigned vk = 0;
    tu_head(head, sizeof head, got->data, got->len);
    cr_assert(sscanf(head, "w%" SCNu64 " k%u|", &id, &vk) == 2 && vk == k,
              "%s: key %u holds a foreign value '%.30s'", ctx, k, head);
    size_t wl = fu_make_value(m, vb, id, k);
    cr_assert(wl == got->len && memcmp(vb, got->data, wl) == 0,
              "%s: key %u: the value of write %" PRIu64 " is damaged", ctx, k, id);
    return id;
}

bool fu_model_allows(const fu_model *m, uint32_t k, uint64_t id)
{
    uint64_t d = m->doubt[k];
    return id == m->state[k] || (d != 0 && (id == d || (d == FU_MAYBE_DELETED && id == 0)));
}

void fu_check_model(shale_db *db, const fu_model *m, const char *ctx)
{
    char kb[17];
    shale_buf got = {0};
    uint64_t present = 0;

    for (uint32_t k = 0; k < m->nkeys; k++) {
        shale_error err = {0};
        shale_code rc = shale_get(db, NULL, fu_key(m, kb, k), &got, &err);
        cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "%s: get key %u: %s (%s)", ctx, k,
                  shale_strerror(rc), err.msg);
        uint64_t id = rc == SHALE_OK ? fu_value_id(m, ctx, k, &got) : 0;
        present += rc == SHALE_OK;
        cr_assert(fu_model_allows(m, k, id),
                  "%s: key %u holds write %" PRIu64 ", the model says %" PRIu64 " (doubt %" PRIu64
                  ")",
                  ctx, k, id, m->state[k], m->doubt[k]);
    }
    /* A full scan sees the same keys and nothing else. */
    shale_iter *it = NULL;
    shale_error err = {0};
    cr_assert_eq(shale_iter_new(db, NULL, &it, &err), SHALE_OK, "%s: iter: %s", ctx, err.msg);
    uint64_t seen = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice key = shale_iter_key(it);
        cr_assert(key.len == 16 && memcmp(key.data, "key", 3) == 0,
                  "%s: the scan found a foreign key '%.*s'", ctx, (int)key.len,
                  (const char *)key.data);
        seen++;
    }
    shale_code rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: scan: %s (%s)", ctx, shale_strerror(rc), err.msg);
    shale_iter_free(it);
    cr_assert_eq(seen, present, "%s: the scan saw %" PRIu64 " keys, gets found %" PRIu64, ctx, seen,
                 present);
    shale_buf_free(&got);
}

void fu_settle_doubts(shale_db *db, fu_model *m)
{
    char kb[17];
    shale_buf got = {0};
    for (uint32_t k = 0; k < m->nkeys; k++) {
        if (m->doubt[k] == 0) {
            continue;
        }
        shale_code rc = shale_get(db, NULL, fu_key(m, kb, k), &got, NULL);
        m->state[k] = rc == SHALE_OK ? fu_value_id(m, "settle", k, &got) : 0;
        m->doubt[k] = 0;
    }
    shale_buf_free(&got);
}

shale_options fu_base_opts(const shale_env *env, uint32_t l0_trigger)
{
    shale_options o = tu_small_lsm_options(l0_trigger);
    o.create_if_missing = true;
    o.durability = SHALE_DURABILITY_FULL;
    o.env = env;
    o.ttl_sweep_interval_ms = 3600000;
    return o;
}

shale_db *fu_open_ok(const char *dir, const shale_options *o, const char *ctx)
{
    shale_db *db = NULL;
    shale_error err = {0};
    shale_code rc = shale_open(dir, o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: open: %s (%s)", ctx, shale_strerror(rc), err.msg);
    return db;
}
