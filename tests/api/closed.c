/* Calls on a closed handle return SHALE_CLOSED; they never touch freed memory (run under ASan). */
#include <criterion/criterion.h>

#include "api.h"

TestSuite(closed);

Test(closed, every_call_on_a_closed_handle_returns_closed)
{
    tu_fx fx = {0};
    shale_buf v = {0};
    shale_entry_info info;
    shale_batch *b = shale_batch_new();
    shale_slice keys[1] = {TU_SL("k")};
    shale_code codes[1];
    shale_iter *it = NULL;
    shale_stats st;
    bool exists = true;

    tu_fx_begin(&fx, "api-closed", NULL);
    tu_put(fx.db, "k", "v");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_db *db = fx.db;
    TU_OK(shale_close(db, &ERR));
    fx.db = NULL;

    TU_CODE(SHALE_CLOSED, shale_put(db, NULL, TU_SL("k"), TU_SL("v"), &ERR));
    TU_CODE(SHALE_CLOSED, shale_put_ttl(db, NULL, TU_SL("k"), TU_SL("v"), 1, &ERR));
    TU_CODE(SHALE_CLOSED, shale_delete(db, NULL, TU_SL("k"), &ERR));
    TU_CODE(SHALE_CLOSED, shale_get(db, NULL, TU_SL("k"), &v, &ERR));
    TU_CODE(SHALE_CLOSED, shale_get_info(db, NULL, TU_SL("k"), &v, &info, &ERR));
    TU_CODE(SHALE_CLOSED, shale_exists(db, NULL, TU_SL("k"), &exists, &ERR));
    cr_assert_not(exists);
    TU_CODE(SHALE_CLOSED, shale_multi_get(db, NULL, 1, keys, &v, codes, &ERR));
    cr_assert_eq(shale_batch_put(b, TU_SL("k"), TU_SL("v"), NULL), SHALE_OK);
    TU_CODE(SHALE_CLOSED, shale_write(db, NULL, b, &ERR));
    shale_iter *it2 = NULL;
    TU_CODE(SHALE_CLOSED, shale_iter_new(db, NULL, &it2, &ERR));
    cr_assert_null(it2);
    TU_CODE(SHALE_CLOSED, shale_stats_get(db, &st, &ERR));
    TU_CODE(SHALE_CLOSED, shale_close(db, &ERR));

    /* The iterator created before the close still reads its view. */
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(shale_iter_key(it).len, 1);
    shale_iter_free(it);

    /* The directory is released: it opens again. */
    fx.db = tu_open(fx.path, NULL);
    tu_expect(fx.db, "k", "v");
    shale_batch_free(b);
    shale_buf_free(&v);
    tu_fx_end(&fx);
}
