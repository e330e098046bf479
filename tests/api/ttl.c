/* TTL: deadlines against a fake wall clock, visibility through every read path, restarts and the
 * background sweeper. */
#include <time.h>

#include "api.h"

TestSuite(ttl);

#define T0 1700000000000ull

/* Opens a fresh database on the fake clock, set to T0. No sweeps unless sweep_ms asks for them. */
static void begin(tu_fx *fx, uint32_t sweep_ms)
{
    shale_options o = {.env = api_fake_env(),
                       .ttl_sweep_interval_ms = sweep_ms ? sweep_ms : 3600000};
    atomic_store(&api_now, T0);
    tu_fx_begin(fx, "api-ttl", &o);
}

static void reopen(tu_fx *fx, uint32_t sweep_ms)
{
    shale_options o = {.env = api_fake_env(),
                       .ttl_sweep_interval_ms = sweep_ms ? sweep_ms : 3600000};
    tu_fx_reopen(fx, &o);
}

/* Whether key shows through get, exists, multi_get and an iterator; asserts they all agree. */
static bool visible(shale_db *db, const char *key)
{
    shale_slice k = tu_str(key);
    shale_buf buf = {0};
    bool exists = false;
    shale_code code = SHALE_INVALID;
    shale_code rc = shale_get(db, NULL, k, &buf, NULL);

    cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "get %s: %d", key, rc);
    TU_OK(shale_exists(db, NULL, k, &exists, &ERR));
    TU_OK(shale_multi_get(db, NULL, 1, &k, &buf, &code, &ERR));
    shale_iter *it = NULL;
    TU_OK(shale_iter_new(db, NULL, &it, &ERR));
    shale_iter_seek(it, k);
    bool iter_sees = shale_iter_valid(it) && shale_iter_key(it).len == k.len &&
                     memcmp(shale_iter_key(it).data, k.data, k.len) == 0;
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    shale_buf_free(&buf);

    bool got = rc == SHALE_OK;
    cr_assert_eq(exists, got, "%s: get says %d, exists %d", key, got, exists);
    cr_assert_eq(code == SHALE_OK, got, "%s: get says %d, multi_get code %d", key, got, code);
    cr_assert_eq(iter_sees, got, "%s: get says %d, iterator %d", key, got, iter_sees);
    return got;
}

Test(ttl, invisible_at_and_after_the_deadline)
{
    tu_fx fx = {0};
    shale_entry_info info = {0};

    begin(&fx, 0);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("k"), TU_SL("v"), T0 + 1000, &ERR));
    tu_put(fx.db, "plain", "p");
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("k"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, T0 + 1000);
    cr_assert(visible(fx.db, "k"));
    atomic_store(&api_now, T0 + 999);
    cr_assert(visible(fx.db, "k"));
    atomic_store(&api_now, T0 + 1000);
    cr_assert_not(visible(fx.db, "k"), "visible at its deadline");
    TU_CODE(SHALE_NOT_FOUND, shale_get_info(fx.db, NULL, TU_SL("k"), NULL, &info, &ERR));
    atomic_store(&api_now, T0 + 100000);
    cr_assert_not(visible(fx.db, "k"));
    cr_assert(visible(fx.db, "plain"));

    /* A full scan skips it too. */
    shale_iter *it = NULL;
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    int n = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        n++;
    }
    cr_assert_eq(n, 1);
    for (shale_iter_seek_last(it); shale_iter_valid(it); shale_iter_prev(it)) {
        n--;
    }
    cr_assert_eq(n, 0);
    shale_iter_free(it);

    /* Still expired after a restart, with the clock still past the deadline. */
    reopen(&fx, 0);
    cr_assert_not(visible(fx.db, "k"));
    cr_assert(visible(fx.db, "plain"));
    tu_fx_end(&fx);
}

Test(ttl, deadline_in_the_past_or_now_is_invisible_at_once)
{
    tu_fx fx = {0};

    begin(&fx, 0);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("past"), TU_SL("v"), T0 - 1, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("long-past"), TU_SL("v"), 1, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("now"), TU_SL("v"), T0, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("soon"), TU_SL("v"), T0 + 1, &ERR));
    cr_assert_not(visible(fx.db, "past"));
    cr_assert_not(visible(fx.db, "long-past"));
    cr_assert_not(visible(fx.db, "now"));
    cr_assert(visible(fx.db, "soon"));
    /* Writing over an expired key with a live value brings it back. */
    tu_put(fx.db, "past", "again");
    tu_expect(fx.db, "past", "again");
    tu_fx_end(&fx);
}

Test(ttl, zero_means_never)
{
    tu_fx fx = {0};

    begin(&fx, 0);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("k"), TU_SL("v"), 0, &ERR));
    atomic_store(&api_now, UINT64_MAX - 1);
    cr_assert(visible(fx.db, "k"));
    shale_entry_info info = {0};
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("k"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, 0);
    /* The largest deadline is simply far away. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("max"), TU_SL("v"), UINT64_MAX, &ERR));
    cr_assert(visible(fx.db, "max"));
    reopen(&fx, 0);
    cr_assert(visible(fx.db, "k"));
    cr_assert(visible(fx.db, "max"));
    atomic_store(&api_now, UINT64_MAX);
    cr_assert_not(visible(fx.db, "max"));
    cr_assert(visible(fx.db, "k"));
    tu_fx_end(&fx);
}

Test(ttl, rewrite_changes_the_deadline)
{
    tu_fx fx = {0};
    shale_entry_info info = {0};

    begin(&fx, 0);
    /* TTL then plain: never expires. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("to-plain"), TU_SL("1"), T0 + 100, &ERR));
    tu_put(fx.db, "to-plain", "2");
    /* plain then TTL: expires. */
    tu_put(fx.db, "to-ttl", "1");
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("to-ttl"), TU_SL("2"), T0 + 100, &ERR));
    /* TTL then a later TTL: the later one counts. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("later"), TU_SL("1"), T0 + 100, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("later"), TU_SL("2"), T0 + 10000, &ERR));
    /* TTL then an earlier TTL. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("earlier"), TU_SL("1"), T0 + 10000, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("earlier"), TU_SL("2"), T0 + 100, &ERR));

    atomic_store(&api_now, T0 + 5000);
    for (int round = 0; round < 2; round++) {
        cr_assert(visible(fx.db, "to-plain"));
        TU_OK(shale_get_info(fx.db, NULL, TU_SL("to-plain"), NULL, &info, &ERR));
        cr_assert_eq(info.expire_at_ms, 0);
        cr_assert_not(visible(fx.db, "to-ttl"));
        cr_assert(visible(fx.db, "later"));
        TU_OK(shale_get_info(fx.db, NULL, TU_SL("later"), NULL, &info, &ERR));
        cr_assert_eq(info.expire_at_ms, T0 + 10000);
        cr_assert_not(visible(fx.db, "earlier"));
        reopen(&fx, 0);
    }
    atomic_store(&api_now, T0 + 10000);
    cr_assert_not(visible(fx.db, "later"));
    cr_assert(visible(fx.db, "to-plain"));
    tu_fx_end(&fx);
}

Test(ttl, batch_put_ttl)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    begin(&fx, 0);
    TU_OK(shale_batch_put_ttl(b, TU_SL("expired"), TU_SL("v"), T0 - 5, &ERR));
    TU_OK(shale_batch_put_ttl(b, TU_SL("short"), TU_SL("v"), T0 + 10, &ERR));
    TU_OK(shale_batch_put_ttl(b, TU_SL("never"), TU_SL("v"), 0, &ERR));
    TU_OK(shale_batch_put(b, TU_SL("plain"), TU_SL("v"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_not(visible(fx.db, "expired"));
    cr_assert(visible(fx.db, "short"));
    cr_assert(visible(fx.db, "never"));
    atomic_store(&api_now, T0 + 10);
    cr_assert_not(visible(fx.db, "short"));
    reopen(&fx, 0);
    cr_assert_not(visible(fx.db, "expired"));
    cr_assert_not(visible(fx.db, "short"));
    cr_assert(visible(fx.db, "never"));
    cr_assert(visible(fx.db, "plain"));
    shale_batch_free(b);
    tu_fx_end(&fx);
}

/* Expired keys count as live until the sweeper removes them; without sweeps they stay counted. */
Test(ttl, expired_keys_count_until_swept)
{
    tu_fx fx = {0};

    begin(&fx, 0);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("a"), TU_SL("v"), T0 + 10, &ERR));
    tu_put(fx.db, "b", "v");
    atomic_store(&api_now, T0 + 20);
    cr_assert_not(visible(fx.db, "a"));
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.live_keys, 2);
    cr_assert_eq(st.expired_removed, 0);
    tu_fx_end(&fx);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

Test(ttl, sweeper_removes_expired_keys)
{
    enum { EXPIRING = 20, PLAIN = 10 };
    tu_fx fx = {0};
    char kb[17];

    begin(&fx, 10);
    for (uint64_t i = 0; i < EXPIRING; i++) {
        TU_OK(shale_put_ttl(fx.db, NULL, tu_key(kb, i), TU_SL("t"), T0 + 500, &ERR));
    }
    for (uint64_t i = 0; i < PLAIN; i++) {
        tu_putn(fx.db, tu_key(kb, 1000 + i), TU_SL("p"));
    }
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("rewritten"), TU_SL("1"), T0 + 500, &ERR));
    tu_put(fx.db, "rewritten", "2");
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("renewed"), TU_SL("1"), T0 + 500, &ERR));
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("renewed"), TU_SL("2"), T0 + 1000000, &ERR));
    sleep_ms(50); /* several sweep periods: nothing is due yet */
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.expired_removed, 0);
    cr_assert_eq(st.live_keys, EXPIRING + PLAIN + 2);

    atomic_store(&api_now, T0 + 1000);
    for (int i = 0; i < 2000; i++) { /* at most ~10 s */
        st = tu_stats(fx.db);
        if (st.expired_removed >= EXPIRING && st.live_keys <= PLAIN + 2) {
            break;
        }
        sleep_ms(5);
    }
    cr_assert_eq(st.expired_removed, EXPIRING, "swept %llu of %d",
                 (unsigned long long)st.expired_removed, EXPIRING);
    cr_assert_eq(st.live_keys, PLAIN + 2);
    sleep_ms(50); /* more sweeps remove nothing else */
    st = tu_stats(fx.db);
    cr_assert_eq(st.expired_removed, EXPIRING);
    cr_assert_eq(st.live_keys, PLAIN + 2);
    tu_expect(fx.db, "rewritten", "2");
    tu_expect(fx.db, "renewed", "2");
    tu_expectn(fx.db, tu_key(kb, 0), NULL);
    shale_slice p = TU_SL("p");
    tu_expectn(fx.db, tu_key(kb, 1000), &p);

    /* The removals were logged: after a restart with the clock turned back, the keys stay gone. */
    atomic_store(&api_now, T0);
    reopen(&fx, 0);
    tu_expectn(fx.db, tu_key(kb, EXPIRING - 1), NULL);
    cr_assert_eq(tu_stats(fx.db).live_keys, PLAIN + 2);
    tu_expect(fx.db, "rewritten", "2");
    tu_fx_end(&fx);
}
