/* buf: growth, append, set (including from its own bytes), overflow checks and freeing. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"

Test(buf, zeroed_is_empty_and_free_is_safe)
{
    shale_buf b = {0};
    cr_assert_eq(b.len, 0u);
    buf_free(&b);
    shale_buf_free(&b);
    shale_buf_free(NULL);
    buf_free(NULL);
    cr_assert_null(b.data);
}

Test(buf, append_grows_geometrically)
{
    shale_buf b = {0};
    int growths = 0;
    size_t last_cap = 0;
    for (size_t i = 0; i < 100000; i++) {
        uint8_t c = (uint8_t)(i * 7);
        cr_assert_eq(buf_append(&b, &c, 1, NULL), SHALE_OK);
        cr_assert_geq(b.cap, b.len);
        if (b.cap != last_cap) {
            growths++;
            last_cap = b.cap;
        }
    }
    cr_assert_eq(b.len, 100000u);
    /* Doubling from a small floor: about log2(100000/64) + 1 growths, never one per append. */
    cr_assert_leq(growths, 20, "%d growths", growths);
    for (size_t i = 0; i < b.len; i++) {
        cr_assert_eq(((uint8_t *)b.data)[i], (uint8_t)(i * 7));
    }
    shale_buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0u);
    cr_assert_eq(b.cap, 0u);
}

Test(buf, append_and_set)
{
    shale_buf b = {0};
    cr_assert_eq(buf_append(&b, "hello", 5, NULL), SHALE_OK);
    cr_assert_eq(buf_append(&b, ", world", 7, NULL), SHALE_OK);
    cr_assert_eq(b.len, 12u);
    cr_assert_eq(memcmp(b.data, "hello, world", 12), 0);
    cr_assert_eq(buf_append(&b, NULL, 0, NULL), SHALE_OK);
    cr_assert_eq(b.len, 12u);

    cr_assert_eq(buf_set(&b, "xy", 2, NULL), SHALE_OK);
    cr_assert_eq(b.len, 2u);
    cr_assert_eq(memcmp(b.data, "xy", 2), 0);
    void *before = b.data;
    cr_assert_eq(buf_set(&b, "abc", 3, NULL), SHALE_OK);
    cr_assert_eq(b.data, before, "a set within capacity does not reallocate");

    char big[5000];
    memset(big, 'z', sizeof big);
    cr_assert_eq(buf_set(&b, big, sizeof big, NULL), SHALE_OK);
    cr_assert_eq(b.len, sizeof big);
    cr_assert_eq(memcmp(b.data, big, sizeof big), 0);

    cr_assert_eq(buf_set(&b, NULL, 0, NULL), SHALE_OK);
    cr_assert_eq(b.len, 0u);

    buf_reset(&b);
    cr_assert_eq(b.len, 0u);
    cr_assert_geq(b.cap, sizeof big, "reset keeps the capacity");
    buf_free(&b);
}

Test(buf, set_on_empty_buffer)
{
    shale_buf b = {0};
    cr_assert_eq(buf_set(&b, "abc", 3, NULL), SHALE_OK);
    cr_assert_eq(b.len, 3u);
    cr_assert_eq(memcmp(b.data, "abc", 3), 0);
    buf_free(&b);
    cr_assert_eq(buf_set(&b, "", 0, NULL), SHALE_OK);
    cr_assert_eq(b.len, 0u);
    buf_free(&b);
}

/* Sources inside the buffer stay valid even when the append reallocates. */
Test(buf, append_and_set_from_itself)
{
    shale_buf b = {0};
    cr_assert_eq(buf_append(&b, "0123456789", 10, NULL), SHALE_OK);
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(buf_append(&b, b.data, b.len, NULL), SHALE_OK);
    }
    cr_assert_eq(b.len, 10u << 12);
    for (size_t i = 0; i < b.len; i++) {
        cr_assert_eq(((char *)b.data)[i], (char)('0' + i % 10));
    }
    cr_assert_eq(buf_set(&b, (char *)b.data + 3, 4, NULL), SHALE_OK);
    cr_assert_eq(b.len, 4u);
    cr_assert_eq(memcmp(b.data, "3456", 4), 0);
    buf_free(&b);
}

Test(buf, reserve)
{
    shale_buf b = {0};
    cr_assert_eq(buf_reserve(&b, 1000, NULL), SHALE_OK);
    cr_assert_geq(b.cap, 1000u);
    cr_assert_not_null(b.data);
    cr_assert_eq(b.len, 0u);
    size_t cap = b.cap;
    cr_assert_eq(buf_reserve(&b, 10, NULL), SHALE_OK);
    cr_assert_eq(b.cap, cap, "no growth when it fits");
    buf_free(&b);
}

/* len + extra overflowing size_t fails with NOMEM and leaves the buffer alone. */
Test(buf, reserve_overflow)
{
    shale_buf b = {0};
    cr_assert_eq(buf_append(&b, "abc", 3, NULL), SHALE_OK);
    void *data = b.data;
    size_t cap = b.cap;
    shale_error err;
    err_clear(&err);
    cr_assert_eq(buf_reserve(&b, SIZE_MAX, &err), SHALE_NOMEM);
    cr_assert_eq(err.code, SHALE_NOMEM);
    cr_assert_neq(err.msg[0], '\0');
    cr_assert_eq(buf_append(&b, "x", SIZE_MAX - 1, NULL), SHALE_NOMEM);
    cr_assert_eq(b.data, data);
    cr_assert_eq(b.cap, cap);
    cr_assert_eq(b.len, 3u);
    cr_assert_eq(memcmp(b.data, "abc", 3), 0);
    buf_free(&b);
}
