/* Point operations: put, get, delete, exists, get_info, multi_get, limits and bad arguments. */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"

TestSuite(kv);

Test(kv, put_get_overwrite_delete)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "api-kv", NULL);

    tu_expect(fx.db, "a", NULL);
    tu_put(fx.db, "a", "1");
    tu_expect(fx.db, "a", "1");
    tu_put(fx.db, "a", "22");
    tu_expect(fx.db, "a", "22");
    tu_put(fx.db, "a", "a much longer value than before");
    tu_expect(fx.db, "a", "a much longer value than before");
    tu_put(fx.db, "a", "x");
    tu_expect(fx.db, "a", "x");

    tu_put(fx.db, "b", "2");
    tu_del(fx.db, "a");
    tu_expect(fx.db, "a", NULL);
    tu_expect(fx.db, "b", "2");
    /* Deleting again, or deleting a key that never existed, succeeds. */
    tu_del(fx.db, "a");
    tu_del(fx.db, "never");
    tu_expect(fx.db, "never", NULL);
    /* A deleted key can come back. */
    tu_put(fx.db, "a", "back");
    tu_expect(fx.db, "a", "back");
    tu_fx_end(&fx);
}

Test(kv, not_found_leaves_len_zero_in_a_used_buffer)
{
    tu_fx fx = {0};
    shale_buf buf = {0};

    tu_fx_begin(&fx, "api-kv", NULL);
    tu_put(fx.db, "k", "some value");
    TU_OK(shale_get(fx.db, NULL, TU_SL("k"), &buf, &ERR));
    cr_assert_eq(buf.len, 10);
    tu_del(fx.db, "k");
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, NULL, TU_SL("k"), &buf, &ERR));
    cr_assert_eq(buf.len, 0);
    buf.len = 3; /* stale */
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, NULL, TU_SL("other"), &buf, &ERR));
    cr_assert_eq(buf.len, 0);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, exists_reports_live_keys)
{
    tu_fx fx = {0};
    bool yes = true;

    tu_fx_begin(&fx, "api-kv", NULL);
    TU_OK(shale_exists(fx.db, NULL, TU_SL("k"), &yes, &ERR));
    cr_assert_not(yes);
    tu_put(fx.db, "k", "");
    TU_OK(shale_exists(fx.db, NULL, TU_SL("k"), &yes, &ERR));
    cr_assert(yes);
    tu_del(fx.db, "k");
    TU_OK(shale_exists(fx.db, NULL, TU_SL("k"), &yes, &ERR));
    cr_assert_not(yes);
    tu_fx_end(&fx);
}

Test(kv, get_info_seq_follows_each_write)
{
    tu_fx fx = {0};
    shale_entry_info info;
    shale_buf buf = {0};

    tu_fx_begin(&fx, "api-kv", NULL);
    uint64_t last = tu_stats(fx.db).last_sequence;
    for (int i = 0; i < 20; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        tu_put(fx.db, "k", v);
        memset(&info, 0x5a, sizeof info);
        TU_OK(shale_get_info(fx.db, NULL, TU_SL("k"), &buf, &info, &ERR));
        cr_assert_eq(buf.len, strlen(v));
        cr_assert_eq(memcmp(buf.data, v, buf.len), 0);
        cr_assert_gt(info.seq, last, "write %d: seq %llu not above %llu", i,
                     (unsigned long long)info.seq, (unsigned long long)last);
        cr_assert_eq(info.expire_at_ms, 0);
        cr_assert_eq(info.seq, tu_stats(fx.db).last_sequence);
        last = info.seq;
        /* Deletes of other keys take sequence numbers too. */
        tu_del(fx.db, "other");
        uint64_t after_del = tu_stats(fx.db).last_sequence;
        cr_assert_gt(after_del, last);
        cr_assert_eq(tu_seqn(fx.db, TU_SL("k")), last, "a delete of another key changed k's seq");
        last = after_del;
    }
    /* value NULL skips the copy but still fills info. */
    memset(&info, 0, sizeof info);
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("k"), NULL, &info, &ERR));
    cr_assert_gt(info.seq, 0);
    TU_CODE(SHALE_NOT_FOUND, shale_get_info(fx.db, NULL, TU_SL("other"), NULL, &info, &ERR));
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, empty_values_are_values)
{
    tu_fx fx = {0};
    shale_buf buf = {0};

    tu_fx_begin(&fx, "api-kv", NULL);
    TU_OK(shale_put(fx.db, NULL, TU_SL("e1"), TU_SL(""), &ERR));
    TU_OK(shale_put(fx.db, NULL, TU_SL("e2"), (shale_slice){NULL, 0}, &ERR));
    for (int round = 0; round < 2; round++) {
        TU_OK(shale_get(fx.db, NULL, TU_SL("e1"), &buf, &ERR));
        cr_assert_eq(buf.len, 0);
        TU_OK(shale_get(fx.db, NULL, TU_SL("e2"), &buf, &ERR));
        cr_assert_eq(buf.len, 0);
        tu_expect(fx.db, "e1", "");
        cr_assert_eq(tu_stats(fx.db).live_keys, 2);
        tu_fx_reopen(&fx, NULL);
    }
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, binary_keys_with_nul_bytes_are_distinct)
{
    static const shale_slice keys[] = {
        TU_SL("a"),  TU_SL("a\0"),  TU_SL("a\0b"),     TU_SL("a\0c"),
        TU_SL("\0"), TU_SL("\0\0"), TU_SL("\xff\x00"), TU_SL("\xff"),
    };
    const size_t n = sizeof keys / sizeof keys[0];
    tu_fx fx = {0};
    char vb[256];

    tu_fx_begin(&fx, "api-kv", NULL);
    for (size_t i = 0; i < n; i++) {
        tu_putn(fx.db, keys[i], api_value(vb, i));
    }
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++) {
            shale_slice v = api_value(vb, i);
            tu_expectn(fx.db, keys[i], &v);
        }
        cr_assert_eq(tu_stats(fx.db).live_keys, n);
        tu_fx_reopen(&fx, NULL);
    }
    TU_OK(shale_delete(fx.db, NULL, TU_SL("a\0b"), &ERR));
    tu_expectn(fx.db, TU_SL("a\0b"), NULL);
    shale_slice v = api_value(vb, 1);
    tu_expectn(fx.db, TU_SL("a\0"), &v);
    v = api_value(vb, 3);
    tu_expectn(fx.db, TU_SL("a\0c"), &v);
    tu_fx_end(&fx);
}

Test(kv, size_limits_are_inclusive)
{
    shale_options o = {.max_key_bytes = 16, .max_value_bytes = 100};
    char big[1024];
    tu_fx fx = {0};

    memset(big, 'k', sizeof big);
    tu_fx_begin(&fx, "api-kv", &o);
    shale_slice k16 = {big, 16}, k17 = {big, 17};
    shale_slice v100 = {big, 100}, v101 = {big, 101}, v1k = {big, sizeof big};

    TU_OK(shale_put(fx.db, NULL, k16, v100, &ERR));
    tu_expectn(fx.db, k16, &v100);
    uint64_t seq = tu_stats(fx.db).last_sequence;
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, k17, TU_SL("x"), &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, k16, v101, &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, TU_SL("small"), v1k, &ERR));
    TU_CODE(SHALE_FULL, shale_put_ttl(fx.db, NULL, k17, TU_SL("x"), 0, &ERR));
    TU_CODE(SHALE_FULL, shale_put_ttl(fx.db, NULL, k16, v101, 0, &ERR));
    /* delete documents no code of its own for a long key: FULL (as put) or INVALID. */
    shale_code drc = shale_delete(fx.db, NULL, k17, NULL);
    cr_assert(drc == SHALE_FULL || drc == SHALE_INVALID, "delete of a long key: %d", drc);
    /* The refused writes changed nothing. */
    tu_expectn(fx.db, k16, &v100);
    tu_expect(fx.db, "small", NULL);
    cr_assert_eq(tu_stats(fx.db).last_sequence, seq);
    cr_assert_eq(tu_stats(fx.db).live_keys, 1);
    /* Reads of an oversized key fail or miss; they never find anything. */
    shale_buf buf = {0};
    cr_assert_neq(shale_get(fx.db, NULL, k17, &buf, NULL), SHALE_OK);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, default_size_limits)
{
    const size_t vmax = 4u * 1024 * 1024;
    char *big = malloc(vmax + 1);
    tu_fx fx = {0};

    cr_assert_not_null(big);
    memset(big, 'z', vmax + 1);
    tu_fx_begin(&fx, "api-kv", NULL);
    TU_OK(shale_put(fx.db, NULL, (shale_slice){big, 4096}, TU_SL("k"), &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, (shale_slice){big, 4097}, TU_SL("k"), &ERR));
    TU_OK(shale_put(fx.db, NULL, TU_SL("v"), (shale_slice){big, vmax}, &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, TU_SL("v2"), (shale_slice){big, vmax + 1}, &ERR));
    shale_slice v = {big, vmax};
    tu_expectn(fx.db, TU_SL("v"), &v);
    tu_expect(fx.db, "v2", NULL);
    tu_fx_reopen(&fx, NULL);
    tu_expectn(fx.db, TU_SL("v"), &v);
    tu_fx_end(&fx);
    free(big);
}

Test(kv, one_byte_keys_with_max_key_bytes_1)
{
    shale_options o = {.max_key_bytes = 1, .max_value_bytes = 1};
    tu_fx fx = {0};

    tu_fx_begin(&fx, "api-kv", &o);
    TU_OK(shale_put(fx.db, NULL, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_put(fx.db, NULL, TU_SL("b"), TU_SL(""), &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, TU_SL("ab"), TU_SL("1"), &ERR));
    TU_CODE(SHALE_FULL, shale_put(fx.db, NULL, TU_SL("c"), TU_SL("12"), &ERR));
    tu_expect(fx.db, "a", "1");
    tu_fx_end(&fx);
}

Test(kv, empty_keys_are_invalid)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    shale_entry_info info;
    bool yes;
    const shale_slice empty = {"", 0}, null_empty = {NULL, 0};

    tu_fx_begin(&fx, "api-kv", NULL);
    for (int i = 0; i < 2; i++) {
        shale_slice k = i ? null_empty : empty;
        TU_CODE(SHALE_INVALID, shale_put(fx.db, NULL, k, TU_SL("v"), &ERR));
        TU_CODE(SHALE_INVALID, shale_put_ttl(fx.db, NULL, k, TU_SL("v"), 0, &ERR));
        TU_CODE(SHALE_INVALID, shale_delete(fx.db, NULL, k, &ERR));
        TU_CODE(SHALE_INVALID, shale_get(fx.db, NULL, k, &buf, &ERR));
        TU_CODE(SHALE_INVALID, shale_get_info(fx.db, NULL, k, &buf, &info, &ERR));
        TU_CODE(SHALE_INVALID, shale_exists(fx.db, NULL, k, &yes, &ERR));
    }
    cr_assert_eq(tu_stats(fx.db).writes, 0);
    cr_assert_eq(tu_stats(fx.db).live_keys, 0);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, null_arguments_are_invalid)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    shale_entry_info info;
    bool yes;
    shale_stats st;
    const shale_slice nullkey = {NULL, 3};

    tu_fx_begin(&fx, "api-kv", NULL);
    tu_put(fx.db, "abc", "v");

    TU_CODE(SHALE_INVALID, shale_put(NULL, NULL, TU_SL("k"), TU_SL("v"), &ERR));
    TU_CODE(SHALE_INVALID, shale_put_ttl(NULL, NULL, TU_SL("k"), TU_SL("v"), 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete(NULL, NULL, TU_SL("k"), &ERR));
    TU_CODE(SHALE_INVALID, shale_get(NULL, NULL, TU_SL("k"), &buf, &ERR));
    TU_CODE(SHALE_INVALID, shale_get_info(NULL, NULL, TU_SL("k"), &buf, &info, &ERR));
    TU_CODE(SHALE_INVALID, shale_exists(NULL, NULL, TU_SL("k"), &yes, &ERR));
    TU_CODE(SHALE_INVALID, shale_stats_get(NULL, &st, &ERR));

    TU_CODE(SHALE_INVALID, shale_put(fx.db, NULL, nullkey, TU_SL("v"), &ERR));
    TU_CODE(SHALE_INVALID, shale_put_ttl(fx.db, NULL, nullkey, TU_SL("v"), 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete(fx.db, NULL, nullkey, &ERR));
    TU_CODE(SHALE_INVALID, shale_get(fx.db, NULL, nullkey, &buf, &ERR));
    TU_CODE(SHALE_INVALID, shale_get_info(fx.db, NULL, nullkey, &buf, &info, &ERR));
    TU_CODE(SHALE_INVALID, shale_exists(fx.db, NULL, nullkey, &yes, &ERR));

    TU_CODE(SHALE_INVALID, shale_put(fx.db, NULL, TU_SL("k"), (shale_slice){NULL, 5}, &ERR));
    TU_CODE(SHALE_INVALID, shale_put_ttl(fx.db, NULL, TU_SL("k"), (shale_slice){NULL, 5}, 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_get(fx.db, NULL, TU_SL("abc"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_exists(fx.db, NULL, TU_SL("abc"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_stats_get(fx.db, NULL, &ERR));

    shale_write_opts bad = {.durability = (shale_durability)42};
    TU_CODE(SHALE_INVALID, shale_put(fx.db, &bad, TU_SL("k"), TU_SL("v"), &ERR));
    TU_CODE(SHALE_INVALID, shale_put_ttl(fx.db, &bad, TU_SL("k"), TU_SL("v"), 0, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete(fx.db, &bad, TU_SL("abc"), &ERR));

    /* Nothing above was written. */
    tu_expect(fx.db, "k", NULL);
    tu_expect(fx.db, "abc", "v");
    cr_assert_eq(tu_stats(fx.db).writes, 1);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* Bounds and prefix in read options apply to iterators only. */
Test(kv, read_opts_do_not_filter_point_reads)
{
    tu_fx fx = {0};
    shale_read_opts ro = {
        .lower_bound = TU_SL("m"), .upper_bound = TU_SL("n"), .prefix = TU_SL("zz")};
    shale_buf buf = {0};
    bool yes = false;

    tu_fx_begin(&fx, "api-kv", NULL);
    tu_put(fx.db, "a", "1");
    TU_OK(shale_get(fx.db, &ro, TU_SL("a"), &buf, &ERR));
    cr_assert_eq(buf.len, 1);
    TU_OK(shale_exists(fx.db, &ro, TU_SL("a"), &yes, &ERR));
    cr_assert(yes);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(kv, one_buffer_reused_across_many_gets)
{
    enum { N = 400 };
    tu_fx fx = {0};
    char kb[17];
    char *vals = malloc(N * 8);
    shale_buf buf = {0};

    cr_assert_not_null(vals);
    for (size_t i = 0; i < N * 8; i++) {
        vals[i] = (char)('a' + i % 26);
    }
    tu_fx_begin(&fx, "api-kv", NULL);
    /* Sizes go up and down so the buffer both grows and gets reused with spare room. */
    for (uint64_t i = 0; i < N; i++) {
        size_t len = (i * 7919) % (N * 8);
        tu_putn(fx.db, tu_key(kb, i), (shale_slice){vals + (N * 8 - len), len});
    }
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t i = 0; i < N; i++) {
            size_t len = (i * 7919) % (N * 8);
            TU_OK(shale_get(fx.db, NULL, tu_key(kb, i), &buf, &ERR));
            cr_assert_eq(buf.len, len, "key %llu", (unsigned long long)i);
            cr_assert_geq(buf.cap, buf.len);
            cr_assert(len == 0 || memcmp(buf.data, vals + (N * 8 - len), len) == 0);
        }
    }
    shale_buf_free(&buf);
    free(vals);
    tu_fx_end(&fx);
}

Test(kv, multi_get_mixed_keys)
{
    tu_fx fx = {0};
    shale_slice keys[] = {TU_SL("a"),       TU_SL("missing"), TU_SL("b"),
                          TU_SL("deleted"), TU_SL("a"),       TU_SL("empty")};
    enum { N = sizeof keys / sizeof keys[0] };
    shale_buf vals[N] = {{0}};
    shale_code codes[N];

    tu_fx_begin(&fx, "api-kv", NULL);
    tu_put(fx.db, "a", "1");
    tu_put(fx.db, "b", "22");
    tu_put(fx.db, "deleted", "x");
    tu_del(fx.db, "deleted");
    tu_put(fx.db, "empty", "");
    /* Pre-fill the buffers, so a miss must reset them. */
    for (int i = 0; i < N; i++) {
        shale_buf_free(&vals[i]);
        TU_OK(shale_get(fx.db, NULL, TU_SL("b"), &vals[i], &ERR));
        codes[i] = (shale_code)77;
    }
    uint64_t reads = tu_stats(fx.db).reads;
    TU_OK(shale_multi_get(fx.db, NULL, N, keys, vals, codes, &ERR));
    static const shale_code want[N] = {SHALE_OK,        SHALE_NOT_FOUND, SHALE_OK,
                                       SHALE_NOT_FOUND, SHALE_OK,        SHALE_OK};
    static const char *const wantv[N] = {"1", "", "22", "", "1", ""};
    for (int i = 0; i < N; i++) {
        cr_assert_eq(codes[i], want[i], "key %d: code %d", i, codes[i]);
        cr_assert_eq(vals[i].len, strlen(wantv[i]), "key %d: len %zu", i, vals[i].len);
        cr_assert(vals[i].len == 0 || memcmp(vals[i].data, wantv[i], vals[i].len) == 0);
    }
    cr_assert_eq(tu_stats(fx.db).reads, reads + N, "each key of a multi-get is a read");

    /* count 0 reads nothing and succeeds. */
    codes[0] = (shale_code)77;
    TU_OK(shale_multi_get(fx.db, NULL, 0, keys, vals, codes, &ERR));
    cr_assert_eq(codes[0], (shale_code)77);

    /* Bad arguments. */
    TU_CODE(SHALE_INVALID, shale_multi_get(NULL, NULL, N, keys, vals, codes, &ERR));
    TU_CODE(SHALE_INVALID, shale_multi_get(fx.db, NULL, N, NULL, vals, codes, &ERR));
    TU_CODE(SHALE_INVALID, shale_multi_get(fx.db, NULL, N, keys, NULL, codes, &ERR));
    TU_CODE(SHALE_INVALID, shale_multi_get(fx.db, NULL, N, keys, vals, NULL, &ERR));
    shale_slice with_empty[] = {TU_SL("a"), TU_SL("")};
    TU_CODE(SHALE_INVALID, shale_multi_get(fx.db, NULL, 2, with_empty, vals, codes, &ERR));
    shale_slice with_null[] = {TU_SL("a"), {NULL, 4}};
    TU_CODE(SHALE_INVALID, shale_multi_get(fx.db, NULL, 2, with_null, vals, codes, &ERR));
    for (int i = 0; i < N; i++) {
        shale_buf_free(&vals[i]);
    }
    tu_fx_end(&fx);
}

Test(kv, multi_get_many_keys)
{
    enum { N = 300 };
    tu_fx fx = {0};
    char kb[N][17];
    char vb[256];
    shale_slice keys[N];
    shale_buf vals[N];
    shale_code codes[N];

    memset(vals, 0, sizeof vals);
    tu_fx_begin(&fx, "api-kv", NULL);
    for (uint64_t i = 0; i < N; i++) {
        keys[i] = tu_key(kb[i], i);
        if (i % 3 != 0) {
            tu_putn(fx.db, keys[i], api_value(vb, i));
        }
    }
    TU_OK(shale_multi_get(fx.db, NULL, N, keys, vals, codes, &ERR));
    for (uint64_t i = 0; i < N; i++) {
        if (i % 3 == 0) {
            cr_assert_eq(codes[i], SHALE_NOT_FOUND);
            continue;
        }
        shale_slice v = api_value(vb, i);
        cr_assert_eq(codes[i], SHALE_OK, "key %llu", (unsigned long long)i);
        cr_assert_eq(vals[i].len, v.len);
        cr_assert_eq(memcmp(vals[i].data, v.data, v.len), 0);
    }
    for (int i = 0; i < N; i++) {
        shale_buf_free(&vals[i]);
    }
    tu_fx_end(&fx);
}
