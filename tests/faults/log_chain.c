/*
 * log_chain: the log's own evidence at recovery (wal_format.h, version 2), on the cases a second
 * review found:
 *   - bytes made durable by a sync with no record after it (OS level, then shale_sync FULL) are
 *     protected by the sync marker written right after the sync: a bit flip there is corruption,
 *     never a torn tail that silently cuts acknowledged writes;
 *   - a roll that failed after its new segment's file existed (the directory sync failed, and
 *     the removal too) leaves a segment with no record whose previous-segment claim is stale:
 *     recovery ignores it, and every acknowledged write is there.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shale.h"

#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"

#define VALUE_LEN 100u

/* The lowest-numbered log segment of dir (malloc'ed). */
static char *first_log(const char *dir)
{
    size_t n;
    char **names = tu_list_dir(dir, &n);
    char *out = NULL;
    for (size_t i = 0; i < n && out == NULL; i++) {
        if (tu_is_numbered(names[i], "log")) {
            out = tu_path(dir, names[i]);
        }
    }
    tu_free_names(names, n);
    cr_assert_not_null(out, "no log segment in %s", dir);
    return out;
}

static uint64_t count_keys(shale_db *db, uint64_t n, size_t value_len)
{
    shale_buf v = {0};
    uint64_t found = 0;
    for (uint64_t i = 0; i < n; i++) {
        char kb[32];
        if (shale_get(db, NULL, tu_key(kb, i), &v, NULL) == SHALE_OK && v.len == value_len) {
            found++;
        }
    }
    shale_buf_free(&v);
    return found;
}

/* Child: `n` OS-level puts, one shale_sync(FULL), then a process crash. */
static void write_then_sync(const char *dir, uint64_t n)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shale_options o = {.create_if_missing = true, .durability = SHALE_DURABILITY_OS};
        shale_db *db;
        shale_error e;
        char val[VALUE_LEN];
        memset(val, 'v', sizeof val);
        if (shale_open(dir, &o, &db, &e) != SHALE_OK) {
            _exit(2);
        }
        for (uint64_t i = 0; i < n; i++) {
            char kb[32];
            if (shale_put(db, NULL, tu_key(kb, i), (shale_slice){val, sizeof val}, &e) !=
                SHALE_OK) {
                _exit(3);
            }
        }
        _exit(shale_sync(db, SHALE_DURABILITY_FULL, &e) == SHALE_OK ? 0 : 4);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

Test(log_chain, damage_after_a_final_sync_is_corruption)
{
    char *dir = tu_tmpdir("chain");
    write_then_sync(dir, 100);
    char *log = first_log(dir);
    /* A bit in the third record's payload: synced, with no record after the sync. */
    cr_assert_eq(tu_flip_bit(log, 28 + 3 * 140, 3), 0);
    int64_t size = tu_file_size(log);
    shale_options o = {.durability = SHALE_DURABILITY_OS};
    shale_db *db = NULL;
    shale_error e = {0};
    cr_assert_eq(shale_open(dir, &o, &db, &e), SHALE_CORRUPTION, "open: %s", e.msg);
    cr_assert_not_null(strstr(e.msg, strrchr(log, '/') + 1), "%s", e.msg);
    cr_assert_eq(tu_file_size(log), size, "the evidence stays: nothing was cut");
    free(log);
    tu_rm_rf(dir);
    free(dir);
}

Test(log_chain, undamaged_after_a_final_sync_reopens_whole)
{
    char *dir = tu_tmpdir("chain");
    write_then_sync(dir, 100);
    shale_options o = {.durability = SHALE_DURABILITY_OS};
    shale_db *db = tu_open(dir, &o);
    cr_assert_eq(count_keys(db, 100, VALUE_LEN), 100);
    cr_assert_eq(tu_stats(db).truncated_bytes, 0);
    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
    tu_rm_rf(dir);
    free(dir);
}

Test(log_chain, failed_roll_leaves_a_segment_recovery_ignores)
{
    char *dir = tu_tmpdir("chain");
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        env_fault *f = env_fault_new(env_posix());
        shale_options o = {.create_if_missing = true,
                           .durability = SHALE_DURABILITY_FULL,
                           .wal_segment_bytes = 64 << 10,
                           .env = env_fault_env(f)};
        shale_db *db;
        shale_error e;
        char val[1000];
        char kb[32];
        uint64_t i = 0;
        memset(val, 'v', sizeof val);
        if (f == NULL || shale_open(dir, &o, &db, &e) != SHALE_OK) {
            _exit(2);
        }
        if (shale_put(db, NULL, tu_key(kb, i++), (shale_slice){val, sizeof val}, &e) != SHALE_OK) {
            _exit(6); /* the first segment, made by the first write */
        }
        /* The next roll's new segment: its directory sync fails, and so does its removal. */
        uint64_t d0 = env_fault_count(f, ENV_OP_SYNC_DIR);
        env_fault_fail_nth(f, ENV_OP_SYNC_DIR, 1, EIO, false);
        env_fault_fail_nth(f, ENV_OP_REMOVE, 1, EIO, false);
        while (env_fault_count(f, ENV_OP_SYNC_DIR) == d0 && i < 1000) {
            if (shale_put(db, NULL, tu_key(kb, i++), (shale_slice){val, sizeof val}, &e) !=
                SHALE_OK) {
                fprintf(stderr, "put %" PRIu64 ": %s\n", i - 1, e.msg);
                _exit(3);
            }
        }
        env_fault_clear(f);
        for (int k = 0; k < 10; k++) { /* the old segment goes on growing */
            if (shale_put(db, NULL, tu_key(kb, i++), (shale_slice){val, sizeof val}, &e) !=
                SHALE_OK) {
                _exit(4);
            }
        }
        _exit(i > 10 && i < 1000 ? 100 + (int)(i % 100) : 5); /* i, for the parent */
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) >= 100, "child status %d", st);
    size_t logs = tu_count_suffix(dir, ".log");
    cr_assert_geq(logs, 2, "the failed roll's segment is left behind");
    shale_options o = {.durability = SHALE_DURABILITY_FULL};
    shale_db *db = NULL;
    shale_error e = {0};
    cr_assert_eq(shale_open(dir, &o, &db, &e), SHALE_OK, "open: %s", e.msg);
    /* Every acknowledged put: keys 0 .. n-1, n known modulo 100 from the exit status. */
    uint64_t n = count_keys(db, 1000, 1000);
    cr_assert_eq(n % 100, (uint64_t)(WEXITSTATUS(st) - 100), "%" PRIu64 " keys", n);
    cr_assert_eq(count_keys(db, n, 1000), n);
    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
    /* And shale check agrees. */
    const char *args[] = {"check", dir, NULL};
    char *out = NULL;
    int code = tu_run_shale(args, &out);
    cr_assert_eq(code, 0, "shale check: %s", out ? out : "");
    free(out);
    tu_rm_rf(dir);
    free(dir);
}
