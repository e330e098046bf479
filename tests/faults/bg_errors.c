/*
 * bg_errors: background failures through the public API (docs/DURABILITY.md, "When the disk
 * fails"). The env below refuses every file one background thread (by its name) tries to
 * create, with ENOSPC, while a switch is on.
 *
 * A flush that keeps failing: every write is refused with its error ("background flush
 * failing"), stats say so, reads go on, and once the disk takes files again the flush thread's
 * retry succeeds and writes go on by themselves, losing nothing.
 *
 * A compaction that keeps failing: flushes go on filling level 0 until it reaches its stop
 * (three times l0_compaction_trigger). Then:
 *   - writers are refused with the compaction's error instead of stalling for ever;
 *   - stats say so (background_error, compaction_failures, the message), and reads go on;
 *   - once the disk takes files again, compaction catches up by itself, writes go on, the error
 *     is resolved, and every acknowledged write is there after a reopen.
 * The waits poll stats with a generous deadline; nothing here measures time.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/error.h"
#include "env/env.h"
#include "testutil.h"

/* The thread whose file creations fail (NULL: none). */
static _Atomic(const char *) refuse_thread;
static shale_env refusing_env;

static shale_code refusing_open(const shale_env *env, const char *path, int flags, env_file **out,
                                shale_error *err)
{
    char name[16] = "";
    (void)env;
    pthread_getname_np(pthread_self(), name, sizeof name);
    const char *refused = atomic_load(&refuse_thread);
    if ((flags & ENV_CREATE) && refused != NULL && strcmp(name, refused) == 0) {
        return err_set(err, SHALE_IO, ENOSPC, "%s: injected: no space left on device", path);
    }
    return env_posix()->open_file(env_posix(), path, flags, out, err);
}

static const shale_env *make_env(void)
{
    refusing_env = *env_posix();
    refusing_env.name = "refuse-thread-files";
    refusing_env.open_file = refusing_open;
    return &refusing_env;
}

static shale_stats stats_of(shale_db *db)
{
    shale_stats st;
    shale_error err;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    return st;
}

#define VALUE_LEN 200u
#define KEYS      100003u /* prime: put i writes key (i * 7919) mod KEYS, each key once */
#define MAX_PUTS  100000u

/* Scattered keys, so level-0 tables overlap and compaction must write (a trivial move of a
 * table to the next level creates no file). */
static shale_slice key_of(char *kb, uint64_t i)
{
    return tu_key(kb, i * 7919u % KEYS);
}

static shale_code put_n(shale_db *db, uint64_t i, shale_error *err)
{
    char kb[32], val[VALUE_LEN];
    memset(val, 'a' + (int)(i % 26), sizeof val);
    return shale_put(db, NULL, key_of(kb, i), (shale_slice){val, sizeof val}, err);
}

/* A database in dir on the refusing env, with small tables so flushes and compactions run. */
static shale_db *open_refusing(const char *dir, shale_options *o)
{
    *o = tu_small_lsm_options(2);
    o->create_if_missing = true;
    o->durability = SHALE_DURABILITY_OS;
    o->env = make_env();
    return tu_open(dir, o);
}

/* Space again: puts are retried until the background work catching up lets one through. */
static void resume_writes(shale_db *db, uint64_t *acked)
{
    shale_error err = {0};
    shale_code rc;

    atomic_store(&refuse_thread, NULL);
    for (int tries = 0; tries < 600 && (rc = put_n(db, *acked, &err)) != SHALE_OK; tries++) {
        cr_assert_eq(rc, SHALE_IO, "%s", err.msg);
        tu_sleep_us(100000);
    }
    cr_assert_eq(rc, SHALE_OK, "writes never resumed: %s", err.msg);
    ++*acked;
}

/* Reopens dir on the real env: puts 0 .. acked-1 are all there with their values. */
static void verify_reopened(const char *dir, shale_options *o, uint64_t acked)
{
    shale_error err = {0};
    shale_buf v = {0};
    char kb[32];

    o->env = NULL;
    shale_db *db = tu_open(dir, o);
    for (uint64_t i = 0; i < acked; i++) {
        cr_assert_eq(shale_get(db, NULL, key_of(kb, i), &v, &err), SHALE_OK, "put %" PRIu64, i);
        cr_assert_eq(v.len, VALUE_LEN);
        cr_assert_eq(((char *)v.data)[0], 'a' + (int)(i % 26));
    }
    shale_buf_free(&v);
    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
}

Test(bg_errors, failing_compaction_refuses_writers_at_level0_stop_then_recovers)
{
    char *dir = tu_tmpdir("bgerr");
    shale_options o;
    shale_db *db = open_refusing(dir, &o);
    shale_error err = {0};
    uint64_t acked = 0;

    atomic_store(&refuse_thread, "shale-compact");
    shale_code rc = SHALE_OK;
    while (acked < MAX_PUTS && (rc = put_n(db, acked, &err)) == SHALE_OK) {
        acked++;
    }
    cr_assert_neq(rc, SHALE_OK, "level 0 never filled up in %" PRIu64 " puts", acked);
    cr_assert_eq(rc, SHALE_IO, "%s", err.msg);
    cr_assert_eq(err.sys_errno, ENOSPC, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "compaction keeps failing"), "%s", err.msg);
    shale_stats st = stats_of(db);
    cr_assert(st.background_error);
    cr_assert_gt(st.compaction_failures, 0);
    cr_assert_not_null(strstr(st.background_error_msg, "no space left"), "%s",
                       st.background_error_msg);
    cr_assert_not(st.writes_stopped, "a failing compaction is not a failed sync");
    tu_expect(db, "absent", NULL); /* reads go on */
    char kb[32];
    shale_buf v = {0};
    cr_assert_eq(shale_get(db, NULL, key_of(kb, 0), &v, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(v.len, VALUE_LEN);
    shale_buf_free(&v);

    /* Space again: compaction catches up on its own and writes go on. */
    resume_writes(db, &acked);
    for (int tries = 0; tries < 600 && stats_of(db).background_error; tries++) {
        tu_sleep_us(100000);
    }
    cr_assert_not(stats_of(db).background_error, "%s", stats_of(db).background_error_msg);
    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
    verify_reopened(dir, &o, acked);
    tu_rm_rf(dir);
    free(dir);
}

Test(bg_errors, failing_flush_refuses_writes_until_a_retry_succeeds)
{
    char *dir = tu_tmpdir("bgerr");
    shale_options o;
    shale_db *db = open_refusing(dir, &o);
    shale_error err = {0};
    uint64_t acked = 0;
    char kb[32];
    shale_buf v = {0};

    for (; acked < 100; acked++) {
        cr_assert_eq(put_n(db, acked, &err), SHALE_OK, "%s", err.msg);
    }
    atomic_store(&refuse_thread, "shale-flush");
    cr_assert_eq(shale_flush(db, &err), SHALE_IO, "the flush cannot make its table: %s", err.msg);
    cr_assert_eq(err.sys_errno, ENOSPC, "%s", err.msg);
    shale_stats st = stats_of(db);
    cr_assert(st.background_error);
    cr_assert_geq(st.flush_failures, 1);
    cr_assert_not_null(strstr(st.background_error_msg, "no space left"), "%s",
                       st.background_error_msg);
    cr_assert_eq(put_n(db, acked, &err), SHALE_IO, "writes are refused while the flush fails");
    cr_assert_not_null(strstr(err.msg, "background flush failing"), "%s", err.msg);
    cr_assert_eq(err.sys_errno, ENOSPC, "%s", err.msg);
    cr_assert_eq(shale_get(db, NULL, key_of(kb, 0), &v, &err), SHALE_OK, "reads go on: %s",
                 err.msg);
    shale_buf_free(&v);

    resume_writes(db, &acked);
    st = stats_of(db);
    cr_assert_not(st.background_error, "%s", st.background_error_msg);
    cr_assert_eq(st.flush_failures, 0);
    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
    verify_reopened(dir, &o, acked);
    tu_rm_rf(dir);
    free(dir);
}
