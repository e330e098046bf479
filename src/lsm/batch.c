#include "lsm/batch.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"

uint64_t batch_rep_seq(const uint8_t *rep)
{
    return coding_get_fixed64(rep);
}

uint32_t batch_rep_count(const uint8_t *rep)
{
    return coding_get_fixed32(rep + 8);
}

void batch_rep_set_header(uint8_t *rep, uint64_t seq, uint32_t count)
{
    coding_put_fixed64(rep, seq);
    coding_put_fixed32(rep + 8, count);
}

shale_code batch_ensure_header(shale_batch *b, shale_error *err)
{
    if (b->rep.len >= BATCH_HEADER_BYTES) {
        return SHALE_OK;
    }
    uint8_t zero[BATCH_HEADER_BYTES] = {0};
    return buf_set(&b->rep, zero, sizeof zero, err);
}

/* The most one op's encoding adds beyond its key and value bytes. */
#define BATCH_OP_OVERHEAD (1 + 2 * CODING_MAX_VARINT32 + 8)

/* Encodes one op at p (room for BATCH_OP_OVERHEAD + key + value bytes) and returns its end. */
static uint8_t *encode_op(uint8_t *p, uint8_t type, shale_slice key, shale_slice value,
                          uint64_t expire_at_ms)
{
    *p++ = type;
    p = coding_put_varint32(p, (uint32_t)key.len);
    memcpy(p, key.data, key.len);
    p += key.len;
    if (type != BATCH_DEL) {
        if (type == BATCH_PUT_TTL) {
            coding_put_fixed64(p, expire_at_ms);
            p += 8;
        }
        p = coding_put_varint32(p, (uint32_t)value.len);
        if (value.len > 0) {
            memcpy(p, value.data, value.len);
        }
        p += value.len;
    }
    return p;
}

shale_batch *shale_batch_new(void)
{
    shale_batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return NULL;
    }
    if (batch_ensure_header(b, NULL) != SHALE_OK) {
        free(b);
        return NULL;
    }
    return b;
}

void shale_batch_free(shale_batch *batch)
{
    if (batch == NULL) {
        return;
    }
    buf_free(&batch->rep);
    free(batch);
}

void shale_batch_clear(shale_batch *batch)
{
    if (batch == NULL) {
        return;
    }
    batch->rep.len = batch->rep.len >= BATCH_HEADER_BYTES ? BATCH_HEADER_BYTES : batch->rep.len;
    if (batch->rep.len == BATCH_HEADER_BYTES) {
        memset(batch->rep.data, 0, BATCH_HEADER_BYTES);
    }
    batch->count = 0;
    batch->max_key = 0;
    batch->max_value = 0;
}

size_t shale_batch_count(const shale_batch *batch)
{
    return batch ? batch->count : 0;
}

static shale_code add_op(shale_batch *b, uint8_t type, shale_slice key, shale_slice value,
                         uint64_t expire_at_ms, shale_error *err)
{
    uint8_t *p;
    shale_code rc;

    if (b == NULL) {
        return err_set(err, SHALE_INVALID, 0, "batch is NULL");
    }
    if (key.len == 0 || key.data == NULL) {
        return err_set(err, SHALE_INVALID, 0, "batch: empty key");
    }
    if (value.data == NULL && value.len > 0) {
        return err_set(err, SHALE_INVALID, 0, "batch: value has NULL data and length %zu",
                       value.len);
    }
    /* Hard caps independent of any database's limits: an op must fit the on-disk varints and
     * the whole batch must stay under BATCH_MAX_BYTES. shale_write checks the real limits. */
    if (key.len > UINT32_MAX || value.len > UINT32_MAX || b->count == UINT32_MAX ||
        b->rep.len + key.len + value.len + 32 > BATCH_MAX_BYTES) {
        return err_set(err, SHALE_FULL, 0, "batch: larger than %llu bytes",
                       (unsigned long long)BATCH_MAX_BYTES);
    }
    rc = batch_ensure_header(b, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Encode straight into reserved room: nothing below can fail half-way. */
    rc = buf_reserve(&b->rep, BATCH_OP_OVERHEAD + key.len + value.len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    p = encode_op((uint8_t *)b->rep.data + b->rep.len, type, key, value, expire_at_ms);
    b->rep.len = (size_t)(p - (uint8_t *)b->rep.data);
    b->count++;
    if (key.len > b->max_key) {
        b->max_key = (uint32_t)key.len;
    }
    if (value.len > b->max_value) {
        b->max_value = (uint32_t)value.len;
    }
    batch_rep_set_header(b->rep.data, 0, b->count);
    return SHALE_OK;
}

shale_code shale_batch_put(shale_batch *batch, shale_slice key, shale_slice value, shale_error *err)
{
    return add_op(batch, BATCH_PUT, key, value, 0, err);
}

shale_code shale_batch_put_ttl(shale_batch *batch, shale_slice key, shale_slice value,
                               uint64_t expire_at_ms, shale_error *err)
{
    if (expire_at_ms == 0) {
        return add_op(batch, BATCH_PUT, key, value, 0, err);
    }
    return add_op(batch, BATCH_PUT_TTL, key, value, expire_at_ms, err);
}

shale_code shale_batch_delete(shale_batch *batch, shale_slice key, shale_error *err)
{
    return add_op(batch, BATCH_DEL, key, (shale_slice){NULL, 0}, 0, err);
}

shale_code batch_iterate(const uint8_t *rep, size_t len, batch_op_fn fn, void *arg,
                         shale_error *err)
{
    const uint8_t *p, *limit = rep + len;
    uint64_t seq;
    uint32_t count, i;

    if (len < BATCH_HEADER_BYTES) {
        return err_set(err, SHALE_CORRUPTION, 0, "batch: %zu bytes, shorter than its header", len);
    }
    seq = batch_rep_seq(rep);
    count = batch_rep_count(rep);
    p = rep + BATCH_HEADER_BYTES;
    for (i = 0; i < count; i++) {
        batch_op op = {0};
        uint32_t klen, vlen;
        const uint8_t *data;
        size_t at = (size_t)(p - rep);

        if (p >= limit) {
            return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: %u ops promised, %u present", at,
                           count, i);
        }
        op.type = *p++;
        if (op.type > BATCH_PUT_TTL) {
            return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: unknown op type %u", at, op.type);
        }
        p = coding_get_length_prefixed(p, limit, &data, &klen);
        if (p == NULL) {
            return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: bad key length", at);
        }
        op.key = (shale_slice){data, klen};
        if (op.type == BATCH_PUT_TTL) {
            if (limit - p < 8) {
                return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: truncated expiry", at);
            }
            op.expire_at_ms = coding_get_fixed64(p);
            p += 8;
        }
        if (op.type != BATCH_DEL) {
            p = coding_get_length_prefixed(p, limit, &data, &vlen);
            if (p == NULL) {
                return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: bad value length", at);
            }
            op.value = (shale_slice){data, vlen};
            op.type = BATCH_PUT;
        }
        shale_code rc = fn(arg, seq + i, &op, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    if (p != limit) {
        return err_set(err, SHALE_CORRUPTION, 0, "batch @%zu: %zu trailing bytes",
                       (size_t)(p - rep), (size_t)(limit - p));
    }
    return SHALE_OK;
}

bool batch_init_single(shale_batch *b, uint8_t *mem, size_t cap, uint8_t type, shale_slice key,
                       shale_slice value, uint64_t expire_at_ms)
{
    uint8_t *p = mem + BATCH_HEADER_BYTES;

    if (key.len > UINT32_MAX || value.len > UINT32_MAX ||
        BATCH_HEADER_BYTES + BATCH_OP_OVERHEAD + key.len + value.len > cap) {
        return false;
    }
    p = encode_op(p, type, key, value, expire_at_ms);
    batch_rep_set_header(mem, 0, 1);
    *b = (shale_batch){.rep = {.data = mem, .len = (size_t)(p - mem), .cap = cap},
                       .count = 1,
                       .max_key = (uint32_t)key.len,
                       .max_value = (uint32_t)value.len};
    return true;
}
