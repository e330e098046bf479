/* Calls on a closed handle return SHALE_CLOSED; they never touch freed memory (run under ASan). */
#include <criterion/criterion.h>

#include "api.h"

TestSuite(closed);

Test(closed, every_call_on_a_closed_handle_returns_closed)
{
    api_fx fx = {0};
    shale_buf v = {0};
    shale_entry_info info;
    shale_batch *b = shale_batch_new();
    shale_slice keys[1] = {SL("k")};
    shale_code codes[1];
    shale_iter *it = NULL;
    shale_stats st;
    bool exists = true;

    api_begin(&fx, "api-closed", NULL);
    api_put(fx.db, "k", "v");
    ASSERT_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_db *db = fx.db;
    ASSERT_OK(shale_close(db, &ERR));
    fx.db = NULL;

    ASSERT_CODE(SHALE_CLOSED, shale_put(db, NULL, SL("k"), SL("v"), &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_put_ttl(db, NULL, SL("k"), SL("v"), 1, &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_delete(db, NULL, SL("k"), &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_get(db, NULL, SL("k"), &v, &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_get_info(db, NULL, SL("k"), &v, &info, &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_exists(db, NULL, SL("k"), &exists, &ERR));
    cr_assert_not(exists);
    ASSERT_CODE(SHALE_CLOSED, shale_multi_get(db, NULL, 1, keys, &v, codes, &ERR));
    cr_assert_eq(shale_batch_put(b, SL("k"), SL("v"), NULL), SHALE_OK);
    ASSERT_CODE(SHALE_CLOSED, shale_write(db, NULL, b, &ERR));
    shale_iter *it2 = NULL;
    ASSERT_CODE(SHALE_CLOSED, shale_iter_new(db, NULL, &it2, &ERR));
    cr_assert_null(it2);
    ASSERT_CODE(SHALE_CLOSED, shale_stats_get(db, &st, &ERR));
    ASSERT_CODE(SHALE_CLOSED, shale_close(db, &ERR));

    /* The iterator created before the close still reads its view. */
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(shale_iter_key(it).len, 1);
    shale_iter_free(it);

    /* The directory is released: it opens again. */
    fx.db = api_open(fx.path, NULL);
    api_expect(fx.db, "k", "v");
    shale_batch_free(b);
    shale_buf_free(&v);
    api_end(&fx);
}
