/* Unit tests of the batch encoding (src/lsm/batch.h): round trips, limits, malformed input. */
#include <criterion/criterion.h>
#include <string.h>

#include "base/coding.h"
#include "lsm/batch.h"

#define SL(s) ((shale_slice){(s), sizeof(s) - 1})

typedef struct seen {
    int count;
    uint64_t seqs[16];
    batch_op ops[16];
} seen;

static shale_code collect(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    seen *s = arg;
    (void)err;
    if (s->count < 16) {
        s->seqs[s->count] = seq;
        s->ops[s->count] = *op;
    }
    s->count++;
    return SHALE_OK;
}

static shale_code stop_at_second(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    int *calls = arg;
    (void)seq;
    (void)op;
    return ++*calls == 2 ? SHALE_CONFLICT : SHALE_OK;
    (void)err;
}

Test(batch, round_trip_of_every_op_type)
{
    shale_batch *b = shale_batch_new();
    seen s = {0};

    cr_assert_not_null(b);
    cr_assert_eq(shale_batch_put(b, SL("alpha"), SL("one"), NULL), SHALE_OK);
    cr_assert_eq(shale_batch_delete(b, SL("beta"), NULL), SHALE_OK);
    cr_assert_eq(shale_batch_put_ttl(b, SL("gamma"), SL(""), 1234567890123ull, NULL), SHALE_OK);
    cr_assert_eq(shale_batch_put_ttl(b, SL("delta"), SL("x"), 0, NULL), SHALE_OK);
    cr_assert_eq(shale_batch_count(b), 4);
    batch_rep_set_header(b->rep.data, 100, b->count);
    cr_assert_eq(batch_iterate(b->rep.data, b->rep.len, collect, &s, NULL), SHALE_OK);
    cr_assert_eq(s.count, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s.seqs[i], 100u + (uint64_t)i, "ops take consecutive sequence numbers");
    }
    cr_assert_eq(s.ops[0].type, BATCH_PUT);
    cr_assert(s.ops[0].key.len == 5 && memcmp(s.ops[0].key.data, "alpha", 5) == 0);
    cr_assert(s.ops[0].value.len == 3 && memcmp(s.ops[0].value.data, "one", 3) == 0);
    cr_assert_eq(s.ops[0].expire_at_ms, 0);
    cr_assert_eq(s.ops[1].type, BATCH_DEL);
    cr_assert_eq(s.ops[1].value.len, 0);
    cr_assert_eq(s.ops[2].type, BATCH_PUT, "a TTL put decodes as a put with a deadline");
    cr_assert_eq(s.ops[2].expire_at_ms, 1234567890123ull);
    cr_assert_eq(s.ops[2].value.len, 0);
    cr_assert_eq(s.ops[3].expire_at_ms, 0, "a zero deadline is a plain put");
    cr_assert_eq(b->max_key, 5);
    cr_assert_eq(b->max_value, 3);
    shale_batch_free(b);
}

Test(batch, clear_and_reuse)
{
    shale_batch *b = shale_batch_new();
    seen s = {0};

    cr_assert_eq(shale_batch_put(b, SL("k"), SL("v"), NULL), SHALE_OK);
    shale_batch_clear(b);
    cr_assert_eq(shale_batch_count(b), 0);
    cr_assert_eq(b->rep.len, BATCH_HEADER_BYTES);
    cr_assert_eq(batch_ops(b).len, 0);
    cr_assert_eq(shale_batch_put(b, SL("k2"), SL("v2"), NULL), SHALE_OK);
    cr_assert_eq(batch_iterate(b->rep.data, b->rep.len, collect, &s, NULL), SHALE_OK);
    cr_assert_eq(s.count, 1);
    cr_assert(s.ops[0].key.len == 2 && memcmp(s.ops[0].key.data, "k2", 2) == 0);
    shale_batch_free(b);
    shale_batch_free(NULL);
    shale_batch_clear(NULL);
    cr_assert_eq(shale_batch_count(NULL), 0);
}

Test(batch, bad_arguments_get_codes)
{
    shale_batch *b = shale_batch_new();
    shale_error err;

    cr_assert_eq(shale_batch_put(b, SL(""), SL("v"), &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "empty key") != NULL);
    cr_assert_eq(shale_batch_put(b, (shale_slice){NULL, 3}, SL("v"), &err), SHALE_INVALID);
    cr_assert_eq(shale_batch_put(b, SL("k"), (shale_slice){NULL, 3}, &err), SHALE_INVALID);
    cr_assert_eq(shale_batch_delete(b, SL(""), &err), SHALE_INVALID);
    cr_assert_eq(shale_batch_put(NULL, SL("k"), SL("v"), &err), SHALE_INVALID);
    cr_assert_eq(shale_batch_put(b, SL("k"), (shale_slice){"x", (size_t)1 << 31}, &err), SHALE_FULL,
                 "a value past the batch cap is refused before any copy");
    cr_assert_eq(shale_batch_count(b), 0, "failed adds leave the batch unchanged");
    shale_batch_free(b);
}

Test(batch, single_op_encoding_matches_the_heap_batch)
{
    uint8_t mem[256];
    shale_batch single, *heap = shale_batch_new();

    cr_assert(
        batch_init_single(&single, mem, sizeof mem, BATCH_PUT_TTL, SL("key"), SL("value"), 777));
    cr_assert_eq(shale_batch_put_ttl(heap, SL("key"), SL("value"), 777, NULL), SHALE_OK);
    cr_assert_eq(single.rep.len, heap->rep.len);
    cr_assert_eq(memcmp(single.rep.data, heap->rep.data, single.rep.len), 0);
    cr_assert_not(batch_init_single(&single, mem, 16, BATCH_PUT, SL("key"), SL("value"), 0),
                  "too small a buffer is refused, never overrun");
    shale_batch_free(heap);
}

Test(batch, callback_error_stops_iteration)
{
    shale_batch *b = shale_batch_new();
    int calls = 0;

    for (int i = 0; i < 5; i++) {
        cr_assert_eq(shale_batch_put(b, SL("k"), SL("v"), NULL), SHALE_OK);
    }
    cr_assert_eq(batch_iterate(b->rep.data, b->rep.len, stop_at_second, &calls, NULL),
                 SHALE_CONFLICT);
    cr_assert_eq(calls, 2);
    shale_batch_free(b);
}

/* Every truncation and every corrupted count is reported as corruption, never read past. */
Test(batch, malformed_input_is_corruption)
{
    shale_batch *b = shale_batch_new();
    seen s;
    shale_error err;

    cr_assert_eq(shale_batch_put(b, SL("key1"), SL("value1"), NULL), SHALE_OK);
    cr_assert_eq(shale_batch_put_ttl(b, SL("key2"), SL("value2"), 99, NULL), SHALE_OK);
    cr_assert_eq(shale_batch_delete(b, SL("key3"), NULL), SHALE_OK);
    for (size_t len = 0; len < b->rep.len; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, b->rep.data, len);
        memset(&s, 0, sizeof s);
        cr_assert_eq(batch_iterate(copy, len, collect, &s, &err), SHALE_CORRUPTION,
                     "truncated at %zu", len);
        free(copy);
    }
    uint8_t *rep = b->rep.data;
    batch_rep_set_header(rep, 1, 4); /* promises more ops than present */
    cr_assert_eq(batch_iterate(rep, b->rep.len, collect, &s, &err), SHALE_CORRUPTION);
    batch_rep_set_header(rep, 1, 2); /* leaves trailing bytes */
    cr_assert_eq(batch_iterate(rep, b->rep.len, collect, &s, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, "trailing") != NULL);
    batch_rep_set_header(rep, 1, 3);
    rep[BATCH_HEADER_BYTES] = 7; /* unknown op type */
    cr_assert_eq(batch_iterate(rep, b->rep.len, collect, &s, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, "type") != NULL);
    rep[BATCH_HEADER_BYTES] = BATCH_PUT;
    rep[BATCH_HEADER_BYTES + 1] = 0xff; /* key length far past the end */
    cr_assert_eq(batch_iterate(rep, b->rep.len, collect, &s, &err), SHALE_CORRUPTION);
    shale_batch_free(b);
}
