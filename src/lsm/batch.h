/*
 * batch: the encoded form of an atomic write batch (the public shale_batch) - the payload of one
 * log record, decoded again at recovery.
 *
 *   batch := seq u64 | count u32 | op*count
 *   op    := type u8 | varint32 key_len | key
 *            | [BATCH_PUT_TTL: expire_at_ms u64]
 *            | [BATCH_PUT, BATCH_PUT_TTL: varint32 value_len | value]
 *
 * The ops of a batch take the sequence numbers seq, seq+1, ..., seq+count-1, in order, so a later
 * op on the same key wins. The log's CRC covers the whole batch; batch_iterate still checks every
 * length against the buffer, because salvage can hand it anything.
 *
 * Threads: a batch belongs to one thread at a time. Ownership: the batch owns its buffer; ops
 * passed to callbacks borrow from it.
 */
#ifndef SHALE_LSM_BATCH_H
#define SHALE_LSM_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#define BATCH_HEADER_BYTES 12u
/* Largest encoded batch: bounded so that one log record, and the memory to replay it, stay sane. */
#define BATCH_MAX_BYTES    ((uint64_t)1 << 30)

/* Op types on disk: never renumber. DEL and PUT equal the memtable's types. */
enum batch_op_type {
    BATCH_DEL = 0,
    BATCH_PUT = 1,
    BATCH_PUT_TTL = 2,
};

struct shale_batch {
    shale_buf rep; /* header + ops; rep.len >= BATCH_HEADER_BYTES once initialised */
    uint32_t count;
    uint32_t max_key; /* longest key and value added: shale_write checks limits in O(1) */
    uint32_t max_value;
};

/* One decoded op. Slices borrow from the batch's bytes. */
typedef struct batch_op {
    uint8_t type; /* BATCH_DEL or BATCH_PUT (PUT_TTL is reported as PUT with expire_at_ms) */
    shale_slice key;
    shale_slice value;
    uint64_t expire_at_ms;
} batch_op;

/* Calls fn for each op of the encoded batch rep[0, len), with its sequence number. Stops at the
 * first non-OK return of fn and returns it. Malformed input is SHALE_CORRUPTION ("batch @off:
 * ..."), as are a count that does not match the ops present and trailing bytes. */
typedef shale_code (*batch_op_fn)(void *arg, uint64_t seq, const batch_op *op, shale_error *err);
shale_code batch_iterate(const uint8_t *rep, size_t len, batch_op_fn fn, void *arg,
                         shale_error *err) SHALE_MUST_USE;

/* Header access on an encoded batch (REQUIRES len >= BATCH_HEADER_BYTES). */
uint64_t batch_rep_seq(const uint8_t *rep);
uint32_t batch_rep_count(const uint8_t *rep);
void batch_rep_set_header(uint8_t *rep, uint64_t seq, uint32_t count);

/* Makes sure the batch's buffer holds at least the header (a zeroed or cleared batch may not). */
shale_code batch_ensure_header(shale_batch *b, shale_error *err) SHALE_MUST_USE;

/* Encodes a one-op batch into caller memory `mem` (cap bytes) without allocating: the fast path
 * of shale_put/shale_delete. Returns false if it does not fit (use a heap batch then). The batch
 * must not be passed to any function that grows it. */
bool batch_init_single(shale_batch *b, uint8_t *mem, size_t cap, uint8_t type, shale_slice key,
                       shale_slice value, uint64_t expire_at_ms);

/* The ops part of the encoded batch (everything after the header). */
static inline shale_slice batch_ops(const shale_batch *b)
{
    if (b->rep.len <= BATCH_HEADER_BYTES) {
        return (shale_slice){NULL, 0};
    }
    return (shale_slice){(const uint8_t *)b->rep.data + BATCH_HEADER_BYTES,
                         b->rep.len - BATCH_HEADER_BYTES};
}

#endif
