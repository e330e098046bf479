/*
 * env_test: the POSIX env on real temporary directories, the env.c helpers, and env_fault's
 * counting, fault injection and power-loss simulation.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir("env");
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

TestSuite(posix, .init = setup, .fini = teardown);
TestSuite(fault, .init = setup, .fini = teardown);

/* Opens dir/name through env with flags, asserting success. */
static env_file *open_ok(const shale_env *env, const char *name, int flags)
{
    char *path = tu_path(dir, name);
    env_file *f = NULL;
    shale_error err;

    cr_assert_eq(env->open_file(env, path, flags, &f, &err), SHALE_OK, "%s", err.msg);
    free(path);
    return f;
}

static void append_ok(env_file *f, const char *s)
{
    shale_error err;
    cr_assert_eq(env_file_append(f, s, strlen(s), &err), SHALE_OK, "%s", err.msg);
}

static void close_ok(env_file *f)
{
    shale_error err;
    cr_assert_eq(env_file_close(f, &err), SHALE_OK, "%s", err.msg);
}

/* Writes `s` into a new file dir/name (optionally synced) and closes it. */
static void write_file(const shale_env *env, const char *name, const char *s, bool sync)
{
    env_file *f = open_ok(env, name, ENV_WRITE | ENV_CREATE | ENV_TRUNC);
    append_ok(f, s);
    if (sync) {
        cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    }
    close_ok(f);
}

/* Size of dir/name on disk, -1 if missing. */
static int64_t disk_size(const char *name)
{
    char *path = tu_path(dir, name);
    int64_t n = tu_file_size(path);
    free(path);
    return n;
}

/* Reads dir/name whole into a NUL-terminated malloc'ed string; NULL if missing. */
static char *slurp(const char *name)
{
    char *path = tu_path(dir, name);
    void *data = NULL;
    size_t len = 0;
    char *s = NULL;

    if (env_read_file(env_posix(), path, 1 << 20, &data, &len, NULL) == SHALE_OK) {
        s = malloc(len + 1);
        cr_assert_not_null(s);
        memcpy(s, data, len);
        s[len] = '\0';
    }
    free(data);
    free(path);
    return s;
}

static void assert_content(const char *name, const char *want)
{
    char *got = slurp(name);
    cr_assert_not_null(got, "%s missing", name);
    cr_assert_str_eq(got, want, "%s", name);
    free(got);
}

static bool exists(const char *name)
{
    return disk_size(name) >= 0;
}

/* ---- posix ---- */

Test(posix, create_append_read_size)
{
    const shale_env *env = env_posix();
    env_file *f = open_ok(env, "a", ENV_READ | ENV_WRITE | ENV_CREATE);
    char buf[32] = {0};
    size_t got = 0;
    uint64_t size = 0;

    append_ok(f, "hello ");
    append_ok(f, "world");
    cr_assert_eq(env_file_size(f, &size, NULL), SHALE_OK);
    cr_assert_eq(size, 11);
    cr_assert_eq(env_file_read_at(f, 0, buf, 11, &got, NULL), SHALE_OK);
    cr_assert_eq(got, 11);
    cr_assert_str_eq(buf, "hello world");

    /* Past the end: short, not an error. */
    memset(buf, 0, sizeof buf);
    cr_assert_eq(env_file_read_at(f, 6, buf, sizeof buf, &got, NULL), SHALE_OK);
    cr_assert_eq(got, 5);
    cr_assert_str_eq(buf, "world");
    cr_assert_eq(env_file_read_at(f, 100, buf, 4, &got, NULL), SHALE_OK);
    cr_assert_eq(got, 0);

    /* env_read_exact turns the short read into a corruption naming file and offset. */
    shale_error err;
    cr_assert_eq(env_read_exact(f, 8, buf, 10, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, env_file_name(f)) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "@8") != NULL, "%s", err.msg);
    cr_assert_eq(env_read_exact(f, 6, buf, 5, &err), SHALE_OK);
    cr_assert_eq(env_file_sync(f, false, NULL), SHALE_OK);
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    close_ok(f);
    cr_assert_eq(env_file_close(NULL, NULL), SHALE_OK);
}

Test(posix, truncate_then_append_lands_at_new_end)
{
    const shale_env *env = env_posix();
    env_file *f = open_ok(env, "t", ENV_READ | ENV_WRITE | ENV_CREATE);
    char buf[16] = {0};
    size_t got;
    uint64_t size;

    append_ok(f, "0123456789");
    cr_assert_eq(env_file_truncate(f, 4, NULL), SHALE_OK);
    cr_assert_eq(env_file_size(f, &size, NULL), SHALE_OK);
    cr_assert_eq(size, 4);
    append_ok(f, "xy");
    cr_assert_eq(env_file_read_at(f, 0, buf, sizeof buf, &got, NULL), SHALE_OK);
    cr_assert_eq(got, 6);
    cr_assert_str_eq(buf, "0123xy");
    close_ok(f);

    /* Reopening for write appends after the existing bytes. */
    f = open_ok(env, "t", ENV_WRITE);
    append_ok(f, "z");
    close_ok(f);
    cr_assert_eq(disk_size("t"), 7);

    /* ENV_TRUNC empties it. */
    f = open_ok(env, "t", ENV_WRITE | ENV_TRUNC);
    close_ok(f);
    cr_assert_eq(disk_size("t"), 0);
}

Test(posix, rename_remove_stat_list)
{
    const shale_env *env = env_posix();
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b"), *sub = tu_path(dir, "sub");
    shale_error err;
    bool is_dir = true;
    uint64_t size = 0;
    char **names = NULL;
    size_t count = 0;

    write_file(env, "a", "abc", true);
    cr_assert_eq(env->rename_file(env, a, b, &err), SHALE_OK, "%s", err.msg);
    cr_assert(!exists("a"));
    cr_assert_eq(disk_size("b"), 3);
    cr_assert_eq(env->rename_file(env, a, b, &err), SHALE_NOT_FOUND);

    cr_assert_eq(env->stat_path(env, b, &is_dir, &size, NULL), SHALE_OK);
    cr_assert(!is_dir);
    cr_assert_eq(size, 3);
    cr_assert_eq(env->stat_path(env, a, &is_dir, &size, &err), SHALE_NOT_FOUND);
    cr_assert(strstr(err.msg, a) != NULL, "%s", err.msg);

    cr_assert_eq(env->mkdir(env, sub, NULL), SHALE_OK);
    cr_assert_eq(env->mkdir(env, sub, NULL), SHALE_OK); /* existing directory: fine */
    cr_assert_eq(env->mkdir(env, b, &err), SHALE_IO);   /* existing file: not a directory */
    cr_assert_eq(env->stat_path(env, sub, &is_dir, NULL, NULL), SHALE_OK);
    cr_assert(is_dir);
    cr_assert_eq(env->sync_dir(env, dir, &err), SHALE_OK, "%s", err.msg);

    cr_assert_eq(env->list_dir(env, dir, &names, &count, NULL), SHALE_OK);
    cr_assert_eq(count, 2);
    bool saw_b = false, saw_sub = false;
    for (size_t i = 0; i < count; i++) {
        saw_b |= strcmp(names[i], "b") == 0;
        saw_sub |= strcmp(names[i], "sub") == 0;
    }
    cr_assert(saw_b && saw_sub);
    env_free_names(names, count);
    cr_assert_eq(env->list_dir(env, a, &names, &count, NULL), SHALE_NOT_FOUND);

    cr_assert_eq(env->remove_file(env, b, NULL), SHALE_OK);
    cr_assert_eq(env->remove_file(env, b, &err), SHALE_NOT_FOUND);
    cr_assert(strstr(err.msg, b) != NULL, "%s", err.msg);
    free(a);
    free(b);
    free(sub);
}

Test(posix, open_errors_name_the_path)
{
    const shale_env *env = env_posix();
    char *missing = tu_path(dir, "missing");
    env_file *f = NULL;
    shale_error err;

    cr_assert_neq(env->open_file(env, missing, ENV_READ, &f, &err), SHALE_OK);
    cr_assert_eq(err.sys_errno, ENOENT);
    cr_assert(strstr(err.msg, missing) != NULL, "%s", err.msg);
    cr_assert(!exists("missing"));

    write_file(env, "x", "1", false);
    char *x = tu_path(dir, "x");
    cr_assert_eq(env->open_file(env, x, ENV_WRITE | ENV_CREATE | ENV_EXCL, &f, &err),
                 SHALE_INVALID);
    cr_assert(strstr(err.msg, x) != NULL, "%s", err.msg);
    cr_assert_eq(disk_size("x"), 1); /* untouched */

    /* A directory cannot be opened for writing. */
    cr_assert_eq(env->open_file(env, dir, ENV_WRITE, &f, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, EISDIR);
    free(missing);
    free(x);
}

Test(posix, failed_write_names_file_offset_and_errno)
{
    const shale_env *env = env_posix();
    env_file *f = NULL;
    shale_error err;

    if (access("/dev/full", W_OK) != 0) {
        cr_skip_test("no /dev/full");
    }
    cr_assert_eq(env->open_file(env, "/dev/full", ENV_WRITE, &f, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(env_file_append(f, "abcd", 4, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, ENOSPC);
    cr_assert_str_eq(err.msg, "/dev/full: write of 4 bytes @0: No space left on device");
    close_ok(f);
}

Test(posix, modes_are_0600_and_0700)
{
    const shale_env *env = env_posix();
    char *file = tu_path(dir, "f"), *sub = tu_path(dir, "d"), *lock = tu_path(dir, "LOCK");
    struct stat st;
    env_lock *lk = NULL;

    umask(022);
    write_file(env, "f", "x", false);
    cr_assert_eq(env->mkdir(env, sub, NULL), SHALE_OK);
    cr_assert_eq(env->lock_file(env, lock, &lk, NULL), SHALE_OK);
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(stat(lock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(stat(sub, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(env->unlock_file(env, lk, NULL), SHALE_OK);
    free(file);
    free(sub);
    free(lock);
}

Test(posix, lock_twice_in_one_process_is_busy)
{
    const shale_env *env = env_posix();
    char *path = tu_path(dir, "LOCK");
    env_lock *a = NULL, *b = NULL;
    shale_error err;

    cr_assert_eq(env->lock_file(env, path, &a, NULL), SHALE_OK);
    cr_assert_eq(env->lock_file(env, path, &b, &err), SHALE_BUSY);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "in use") != NULL, "%s", err.msg);
    cr_assert_eq(env->unlock_file(env, a, NULL), SHALE_OK);
    cr_assert_eq(env->lock_file(env, path, &b, NULL), SHALE_OK);
    cr_assert_eq(env->unlock_file(env, b, NULL), SHALE_OK);
    free(path);
}

Test(posix, lock_held_by_child_process_is_busy)
{
    const shale_env *env = env_posix();
    char *path = tu_path(dir, "LOCK");
    int ready[2], done[2];
    env_lock *lk = NULL;
    char c = 0;
    int status;

    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(done), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        env_lock *child = NULL;
        char ok = env->lock_file(env, path, &child, NULL) == SHALE_OK ? 'y' : 'n';
        if (write(ready[1], &ok, 1) != 1 || read(done[0], &c, 1) != 1) {
            _exit(2);
        }
        _exit(0); /* the lock dies with the process */
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(c, 'y');
    cr_assert_eq(env->lock_file(env, path, &lk, NULL), SHALE_BUSY);
    cr_assert_eq(write(done[1], "x", 1), 1);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(env->lock_file(env, path, &lk, NULL), SHALE_OK);
    cr_assert_eq(env->unlock_file(env, lk, NULL), SHALE_OK);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    free(path);
}

Test(posix, write_file_atomic_and_read_file)
{
    const shale_env *env = env_posix();
    char *path = tu_path(dir, "CURRENT");
    void *data = NULL;
    size_t len = 0;
    shale_error err;

    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "first\n", 6, &err), SHALE_OK, "%s",
                 err.msg);
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "second\n", 7, &err), SHALE_OK, "%s",
                 err.msg);
    cr_assert(!exists("CURRENT.tmp"));
    cr_assert_eq(env_read_file(env, path, 64, &data, &len, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(len, 7);
    cr_assert_eq(memcmp(data, "second\n", 7), 0);
    free(data);

    /* Empty file round trip. */
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "", 0, NULL), SHALE_OK);
    cr_assert_eq(env_read_file(env, path, 64, &data, &len, NULL), SHALE_OK);
    cr_assert_eq(len, 0);
    free(data);

    /* Over the limit: refused before allocating. */
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "0123456789", 10, NULL), SHALE_OK);
    data = NULL;
    cr_assert_eq(env_read_file(env, path, 9, &data, &len, &err), SHALE_CORRUPTION);
    cr_assert_null(data);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert_eq(env_read_file(env, path, 10, &data, &len, NULL), SHALE_OK);
    free(data);

    char *missing = tu_path(dir, "nope");
    cr_assert_eq(env_read_file(env, missing, 10, &data, &len, NULL), SHALE_NOT_FOUND);
    free(missing);
    free(path);
}

Test(posix, clocks_move)
{
    const shale_env *env = env_posix();
    uint64_t m1 = env->mono_us(env);
    uint64_t m2 = env->mono_us(env);

    cr_assert_geq(m2, m1);
    cr_assert_gt(env->now_ms(env), 1600000000000ull); /* after September 2020 */
}

/* ---- fault ---- */

Test(fault, counts_each_kind)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b"), *sub = tu_path(dir, "sub");
    char buf[4];
    size_t got;
    env_lock *lk = NULL;

    env_file *f = open_ok(env, "a", ENV_READ | ENV_WRITE | ENV_CREATE);
    append_ok(f, "ab");
    append_ok(f, "cd");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    cr_assert_eq(env_file_read_at(f, 0, buf, 4, &got, NULL), SHALE_OK);
    cr_assert_eq(env_file_truncate(f, 1, NULL), SHALE_OK);
    close_ok(f);
    cr_assert_eq(env->rename_file(env, a, b, NULL), SHALE_OK);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK);
    cr_assert_eq(env->mkdir(env, sub, NULL), SHALE_OK);
    cr_assert_eq(env->remove_file(env, b, NULL), SHALE_OK);
    cr_assert_eq(env->lock_file(env, a, &lk, NULL), SHALE_OK);
    cr_assert_eq(env->unlock_file(env, lk, NULL), SHALE_OK);

    cr_assert_eq(env_fault_count(fe, ENV_OP_OPEN), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_WRITE), 2);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_READ), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_TRUNCATE), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_RENAME), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC_DIR), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_MKDIR), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_REMOVE), 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_LOCK), 1);
    cr_assert_eq(env->now_ms(env) / 1000, env_posix()->now_ms(env_posix()) / 1000);
    env_fault_free(fe);
    free(a);
    free(b);
    free(sub);
}

typedef shale_code (*two_path_fn)(const shale_env *env, const char *from, const char *to,
                                  shale_error *err);

/* Makes file `from`<i> and runs fn (link or rename) from it to `to`<i>, through env. */
static shale_code two_path_op(const shale_env *env, two_path_fn fn, char from, char to, int i,
                              shale_error *err)
{
    char name[16];
    const char content[2] = {from, '\0'};

    snprintf(name, sizeof name, "%c%d", from, i);
    write_file(env_posix(), name, content, false);
    char *p = tu_path(dir, name);
    name[0] = to;
    char *q = tu_path(dir, name);
    shale_code rc = fn(env, p, q, err);
    free(p);
    free(q);
    return rc;
}

/* Performs one operation of `kind` (the i-th of the test) through env or on f. */
static shale_code run_op(const shale_env *env, env_op kind, int i, env_file *f, shale_error *err)
{
    char name[16];
    char buf[2];
    size_t got;
    env_file *g = NULL;
    char *p;
    shale_code rc;

    switch (kind) {
    case ENV_OP_WRITE:
        return env_file_append(f, "xy", 2, err);
    case ENV_OP_SYNC:
        return env_file_sync(f, false, err);
    case ENV_OP_READ:
        return env_file_read_at(f, 0, buf, 2, &got, err);
    case ENV_OP_OPEN:
        snprintf(name, sizeof name, "o%d", i);
        p = tu_path(dir, name);
        rc = env->open_file(env, p, ENV_WRITE | ENV_CREATE, &g, err);
        free(p);
        if (rc == SHALE_OK) {
            close_ok(g);
        }
        return rc;
    case ENV_OP_LINK:
        return two_path_op(env, env->link_file, 'l', 'm', i, err);
    case ENV_OP_RENAME:
        return two_path_op(env, env->rename_file, 'r', 's', i, err);
    default:
        cr_assert_fail("kind %d not handled", kind);
        return SHALE_INVALID;
    }
}

Test(fault, fail_nth_fires_once_on_the_nth_op)
{
    const env_op kinds[] = {ENV_OP_WRITE, ENV_OP_SYNC, ENV_OP_RENAME,
                            ENV_OP_OPEN,  ENV_OP_READ, ENV_OP_LINK};

    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        env_fault *fe = env_fault_new(env_posix());
        const shale_env *env = env_fault_env(fe);
        env_file *f = open_ok(env, "data", ENV_READ | ENV_WRITE | ENV_CREATE);
        env_op kind = kinds[k];
        uint64_t before;
        shale_error err;

        append_ok(f, "base");
        before = env_fault_count(fe, kind);
        env_fault_fail_nth(fe, kind, 3, ENOSPC, false);
        for (int i = 1; i <= 6; i++) {
            shale_code rc = run_op(env, kind, i, f, &err);
            if (i == 3) {
                cr_assert_eq(rc, SHALE_IO, "kind %d op %d", kind, i);
                cr_assert_eq(err.sys_errno, ENOSPC);
                cr_assert(strstr(err.msg, dir) != NULL, "%s", err.msg);
            } else {
                cr_assert_eq(rc, SHALE_OK, "kind %d op %d: %s", kind, i, err.msg);
            }
        }
        cr_assert_eq(env_fault_count(fe, kind) - before, 6); /* the failed one included */

        /* Cleared faults do not fire. */
        env_fault_fail_nth(fe, kind, 1, EIO, false);
        env_fault_clear(fe);
        cr_assert_eq(run_op(env, kind, 7, f, &err), SHALE_OK, "%s", err.msg);
        close_ok(f);
        env_fault_free(fe);
    }
}

Test(fault, failed_write_does_not_reach_the_file)
{
    env_fault *fe = env_fault_new(env_posix());
    env_file *f = open_ok(env_fault_env(fe), "w", ENV_WRITE | ENV_CREATE);
    shale_error err;

    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, EIO, false);
    cr_assert_eq(env_file_append(f, "abcd", 4, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, EIO);
    cr_assert_eq(disk_size("w"), 0);
    append_ok(f, "ef");
    cr_assert_eq(disk_size("w"), 2);
    close_ok(f);
    env_fault_free(fe);
}

Test(fault, short_write_leaves_half)
{
    env_fault *fe = env_fault_new(env_posix());
    env_file *f = open_ok(env_fault_env(fe), "w", ENV_WRITE | ENV_CREATE);
    shale_error err;

    append_ok(f, "12");
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, ENOSPC, true);
    cr_assert_eq(env_file_append(f, "abcdefgh", 8, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, ENOSPC);
    cr_assert_eq(disk_size("w"), 6);
    append_ok(f, "z");
    cr_assert_eq(disk_size("w"), 7);
    close_ok(f);
    assert_content("w", "12abcdz");
    env_fault_free(fe);
}

Test(fault, crash_fails_everything_with_eio)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b"), *lockp = tu_path(dir, "LOCK");
    env_file *f = open_ok(env, "a", ENV_READ | ENV_WRITE | ENV_CREATE);
    env_lock *lk = NULL;
    env_file *g = NULL;
    char buf[4];
    size_t got;
    uint64_t size;
    char **names;
    size_t count;
    shale_error err;

    cr_assert_eq(env->lock_file(env, lockp, &lk, NULL), SHALE_OK);
    append_ok(f, "abc");
    env_fault_crash(fe);

    cr_assert_eq(env_file_append(f, "d", 1, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, EIO);
    cr_assert_eq(disk_size("a"), 3); /* nothing more reached the disk */
    cr_assert_eq(env_file_sync(f, true, &err), SHALE_IO);
    cr_assert_eq(env_file_read_at(f, 0, buf, 3, &got, &err), SHALE_IO);
    cr_assert_eq(env_file_truncate(f, 0, &err), SHALE_IO);
    cr_assert_eq(env_file_size(f, &size, &err), SHALE_IO);
    cr_assert_eq(env->open_file(env, b, ENV_WRITE | ENV_CREATE, &g, &err), SHALE_IO);
    cr_assert(!exists("b"));
    cr_assert_eq(env->rename_file(env, a, b, &err), SHALE_IO);
    cr_assert_eq(env->remove_file(env, a, &err), SHALE_IO);
    cr_assert_eq(env->mkdir(env, b, &err), SHALE_IO);
    cr_assert_eq(env->sync_dir(env, dir, &err), SHALE_IO);
    cr_assert_eq(env->list_dir(env, dir, &names, &count, &err), SHALE_IO);
    cr_assert_eq(env->stat_path(env, a, NULL, NULL, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, EIO);
    cr_assert_eq(disk_size("a"), 3);

    /* Close and unlock still release everything (ASan checks the leaks), but report EIO. */
    cr_assert_eq(env_file_close(f, &err), SHALE_IO);
    cr_assert_eq(env->unlock_file(env, lk, &err), SHALE_IO);
    cr_assert_eq(env_posix()->lock_file(env_posix(), lockp, &lk, NULL), SHALE_OK);
    cr_assert_eq(env_posix()->unlock_file(env_posix(), lk, NULL), SHALE_OK);

    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, &err), SHALE_OK, "%s", err.msg);
    /* a was created but its directory never synced: gone. The env works again. */
    cr_assert(!exists("a"));
    write_file(env, "c", "ok", true);
    cr_assert_eq(disk_size("c"), 2);
    env_fault_free(fe);
    free(a);
    free(b);
    free(lockp);
}

Test(fault, drop_all_cuts_to_synced_length)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    env_file *f;

    /* A file that existed before the env saw it counts as synced up to its size at open. */
    write_file(env_posix(), "old", "0123456789", true);
    f = open_ok(env, "old", ENV_WRITE);
    append_ok(f, "unsynced");
    close_ok(f);

    f = open_ok(env, "new", ENV_WRITE | ENV_CREATE);
    append_ok(f, "abc");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    append_ok(f, "def");
    cr_assert_eq(env_file_sync(f, false, NULL), SHALE_OK);
    append_ok(f, "ghi");
    close_ok(f);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK);

    /* Truncated then synced: the new length is the synced one. */
    f = open_ok(env, "old", ENV_WRITE);
    cr_assert_eq(env_file_truncate(f, 4, NULL), SHALE_OK);
    append_ok(f, "XY");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    append_ok(f, "lost");
    close_ok(f);

    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 7, NULL), SHALE_OK);
    cr_assert_eq(disk_size("new"), 6);
    cr_assert_eq(disk_size("old"), 6);
    assert_content("old", "0123XY");
    env_fault_free(fe);
}

Test(fault, drop_all_of_a_never_synced_existing_file_keeps_its_old_length)
{
    env_fault *fe = env_fault_new(env_posix());
    env_file *f;

    write_file(env_posix(), "old", "01234", true);
    f = open_ok(env_fault_env(fe), "old", ENV_WRITE);
    append_ok(f, "56789");
    cr_assert_eq(env_file_truncate(f, 2, NULL), SHALE_OK); /* below the synced length */
    append_ok(f, "ab");
    close_ok(f);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 7, NULL), SHALE_OK);
    cr_assert_eq(disk_size("old"), 2); /* cut bytes cannot come back */
    env_fault_free(fe);
}

Test(fault, keep_random_keeps_between_synced_and_current)
{
    bool saw_partial = false;

    for (uint64_t seed = 1; seed <= 20; seed++) {
        env_fault *fe = env_fault_new(env_posix());
        const shale_env *env = env_fault_env(fe);
        env_file *f = open_ok(env, "k", ENV_WRITE | ENV_CREATE | ENV_TRUNC);

        append_ok(f, "0123456789");
        cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
        cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK);
        append_ok(f, "abcdefghijklmnopqrst");
        close_ok(f);
        env_fault_crash(fe);
        cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_KEEP_RANDOM, seed, NULL), SHALE_OK);
        int64_t n = disk_size("k");
        cr_assert(n >= 10 && n <= 30, "seed %llu: %lld", (unsigned long long)seed, (long long)n);
        saw_partial |= n > 10 && n < 30;
        env_fault_free(fe);
    }
    cr_assert(saw_partial);
}

Test(fault, created_file_needs_a_dir_sync)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *sub = tu_path(dir, "sub");

    cr_assert_eq(env->mkdir(env, sub, NULL), SHALE_OK);
    write_file(env, "durable", "d", true);
    write_file(env, "sub/elsewhere", "e", true);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK); /* not sub's directory */
    write_file(env, "late", "l", true);                    /* after the dir sync */

    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    cr_assert_eq(disk_size("durable"), 1);
    cr_assert(!exists("late"));
    cr_assert(!exists("sub/elsewhere"));
    cr_assert(exists("sub")); /* directories are not tracked */
    env_fault_free(fe);
    free(sub);
}

Test(fault, rename_needs_a_dir_sync)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b"), *c = tu_path(dir, "c");
    char *d = tu_path(dir, "d");

    write_file(env, "a", "aa", true);
    write_file(env, "c", "cc", true);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK);
    cr_assert_eq(env->rename_file(env, c, d, NULL), SHALE_OK);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK); /* c -> d is durable */
    cr_assert_eq(env->rename_file(env, a, b, NULL), SHALE_OK);

    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    cr_assert_eq(disk_size("a"), 2);
    cr_assert(!exists("b"));
    cr_assert(!exists("c"));
    cr_assert_eq(disk_size("d"), 2);
    env_fault_free(fe);
    free(a);
    free(b);
    free(c);
    free(d);
}

Test(fault, atomic_pointer_file_survives_or_reverts)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *path = tu_path(dir, "CURRENT");
    void *data;
    size_t len;

    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "one", 3, NULL), SHALE_OK);
    /* The directory sync (the last step) fails: the rename is undone at the crash. */
    env_fault_fail_nth(fe, ENV_OP_SYNC_DIR, 1, EIO, false);
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "two!", 4, NULL), SHALE_IO);
    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    /* The rename is undone and the old CURRENT comes back; the tmp file was created without a
     * dir sync, so it is removed too. */
    cr_assert_eq(env_read_file(env, path, 64, &data, &len, NULL), SHALE_OK);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(data, "one", 3), 0);
    free(data);
    cr_assert(!exists("CURRENT.tmp"));

    /* A failed write cleans up its tmp file. */
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "three", 5, NULL), SHALE_OK);
    env_fault_fail_nth(fe, ENV_OP_SYNC, 1, EIO, false);
    cr_assert_eq(env_write_file_atomic(env, dir, "CURRENT", "four", 4, NULL), SHALE_IO);
    cr_assert(!exists("CURRENT.tmp"));
    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    cr_assert_eq(env_read_file(env, path, 64, &data, &len, NULL), SHALE_OK);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(data, "three", 5), 0);
    free(data);
    free(path);
    env_fault_free(fe);
}

Test(fault, drop_resets_bookkeeping_and_faults)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    env_file *f;

    write_file(env, "a", "aaaa", true);
    cr_assert_eq(env->sync_dir(env, dir, NULL), SHALE_OK);
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, EIO, false);
    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);

    /* The pending fault is gone, and surviving files are the new baseline. */
    f = open_ok(env, "a", ENV_WRITE);
    append_ok(f, "bb");
    close_ok(f);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    cr_assert_eq(disk_size("a"), 4);

    /* A file left open across a drop is detached but still usable and closable. */
    f = open_ok(env, "a", ENV_WRITE);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    append_ok(f, "c");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    close_ok(f);
    cr_assert_eq(disk_size("a"), 5);
    env_fault_free(fe);
}

static void rename_ok(const shale_env *env, const char *from, const char *to)
{
    char *p = tu_path(dir, from), *q = tu_path(dir, to);
    shale_error err;
    cr_assert_eq(env->rename_file(env, p, q, &err), SHALE_OK, "%s", err.msg);
    free(p);
    free(q);
}

static void sync_dir_ok(const shale_env *env)
{
    shale_error err;
    cr_assert_eq(env->sync_dir(env, dir, &err), SHALE_OK, "%s", err.msg);
}

static void crash_and_drop(env_fault *fe, env_fault_drop_mode mode)
{
    shale_error err;
    env_fault_crash(fe);
    cr_assert_eq(env_fault_drop_unsynced(fe, mode, 3, &err), SHALE_OK, "%s", err.msg);
}

Test(fault, unsynced_rename_over_a_file_restores_the_old_file)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);

    /* A file the env never wrote counts as durable; one written through it, up to its sync. */
    write_file(env_posix(), "outside", "old-outside", true);
    write_file(env, "inside", "synced", true);
    sync_dir_ok(env);
    env_file *f = open_ok(env, "inside", ENV_WRITE);
    append_ok(f, "+unsynced");
    close_ok(f);

    write_file(env, "new1", "NEW1", true);
    write_file(env, "new2", "NEW2", true);
    sync_dir_ok(env);
    rename_ok(env, "new1", "outside");
    rename_ok(env, "new2", "inside");
    assert_content("outside", "NEW1");
    assert_content("inside", "NEW2");

    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    assert_content("outside", "old-outside");
    assert_content("inside", "synced");
    assert_content("new1", "NEW1"); /* the renamed files go back to their durable names */
    assert_content("new2", "NEW2");
    env_fault_free(fe);
}

Test(fault, durable_rename_over_a_file_is_kept)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);

    write_file(env_posix(), "target", "old", true);
    write_file(env, "src", "new", true);
    sync_dir_ok(env);
    rename_ok(env, "src", "target");
    sync_dir_ok(env);
    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    assert_content("target", "new");
    cr_assert(!exists("src"));
    env_fault_free(fe);
}

Test(fault, replaced_file_whose_name_was_never_durable_does_not_come_back)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);

    write_file(env, "a", "aaa", true); /* created, no dir sync: its name is not durable */
    write_file(env_posix(), "b", "bbb", true);
    rename_ok(env, "b", "a");
    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    cr_assert(!exists("a"));
    assert_content("b", "bbb");
    env_fault_free(fe);
}

Test(fault, pointer_file_replaced_twice_without_dir_sync_reverts_to_the_first)
{
    for (int mode = ENV_FAULT_DROP_ALL; mode <= ENV_FAULT_KEEP_RANDOM; mode++) {
        env_fault *fe = env_fault_new(env_posix());
        const shale_env *env = env_fault_env(fe);
        shale_error err;

        cr_assert_eq(env_write_file_atomic(env, dir, "PTR", "v1", 2, &err), SHALE_OK, "%s",
                     err.msg);
        env_fault_fail_nth(fe, ENV_OP_SYNC_DIR, 1, EIO, false);
        cr_assert_eq(env_write_file_atomic(env, dir, "PTR", "v2", 2, &err), SHALE_IO);
        env_fault_fail_nth(fe, ENV_OP_SYNC_DIR, 1, EIO, false);
        cr_assert_eq(env_write_file_atomic(env, dir, "PTR", "v3", 2, &err), SHALE_IO);
        assert_content("PTR", "v3");
        crash_and_drop(fe, (env_fault_drop_mode)mode);
        assert_content("PTR", "v1");
        cr_assert(!exists("PTR.tmp"));
        env_fault_free(fe);
    }
}

Test(fault, replaced_file_loses_its_own_unsynced_tail)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    env_file *f;

    f = open_ok(env, "log", ENV_WRITE | ENV_CREATE);
    append_ok(f, "durable");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    append_ok(f, "-lost");
    close_ok(f);
    sync_dir_ok(env);
    write_file(env, "repl", "R", true);
    sync_dir_ok(env);
    rename_ok(env, "repl", "log");
    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    assert_content("log", "durable");
    assert_content("repl", "R");
    env_fault_free(fe);
}

Test(fault, link_is_counted_and_needs_a_dir_sync)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *src = tu_path(dir, "src"), *l1 = tu_path(dir, "l1"), *l2 = tu_path(dir, "l2");
    char *missing = tu_path(dir, "missing"), *l3 = tu_path(dir, "l3");
    shale_error err;

    write_file(env, "src", "payload", true);
    sync_dir_ok(env);
    cr_assert_eq(env->link_file(env, src, l1, &err), SHALE_OK, "%s", err.msg);
    sync_dir_ok(env); /* l1 is durable */
    cr_assert_eq(env->link_file(env, src, l2, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(env->link_file(env, missing, l3, &err), SHALE_NOT_FOUND);
    cr_assert_eq(env->link_file(env, src, l1, &err), SHALE_IO); /* EEXIST */
    cr_assert_eq(err.sys_errno, EEXIST);
    cr_assert_eq(env_fault_count(fe, ENV_OP_LINK), 4);
    assert_content("l2", "payload");

    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    assert_content("src", "payload");
    assert_content("l1", "payload");
    cr_assert(!exists("l2"));
    cr_assert(!exists("l3"));
    env_fault_free(fe);
    free(src);
    free(l1);
    free(l2);
    free(missing);
    free(l3);
}

Test(fault, link_of_a_file_with_an_unsynced_tail_keeps_only_the_synced_part)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *src = tu_path(dir, "src"), *lnk = tu_path(dir, "lnk");
    env_file *f;

    f = open_ok(env, "src", ENV_WRITE | ENV_CREATE);
    append_ok(f, "12345");
    cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
    append_ok(f, "678");
    close_ok(f);
    cr_assert_eq(env->link_file(env, src, lnk, NULL), SHALE_OK);
    sync_dir_ok(env);
    crash_and_drop(fe, ENV_FAULT_DROP_ALL);
    assert_content("src", "12345");
    assert_content("lnk", "12345");
    env_fault_free(fe);
    free(src);
    free(lnk);
}

Test(fault, link_failure_after_crash_and_injected)
{
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    char *src = tu_path(dir, "src"), *lnk = tu_path(dir, "lnk");
    shale_error err;

    write_file(env, "src", "x", true);
    env_fault_fail_nth(fe, ENV_OP_LINK, 1, ENOSPC, false);
    cr_assert_eq(env->link_file(env, src, lnk, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, ENOSPC);
    cr_assert(strstr(err.msg, "link") != NULL, "%s", err.msg);
    cr_assert(!exists("lnk"));
    env_fault_crash(fe);
    cr_assert_eq(env->link_file(env, src, lnk, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, EIO);
    cr_assert(!exists("lnk"));
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, NULL), SHALE_OK);
    env_fault_free(fe);
    free(src);
    free(lnk);
}
