/*
 * env_fault_test: the crash-state generator of env_fault (env_fault_make_state,
 * env_fault_crash_after): exhaustive enumeration of unsynced writes, sector pieces, and the
 * undo of unsynced directory operations.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"

static void put_file(const shale_env *e, const char *path, const char *parts[], size_t n,
                     size_t synced)
{
    env_file *f = NULL;
    cr_assert_eq(e->open_file(e, path, ENV_WRITE | ENV_CREATE, &f, NULL), SHALE_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(env_file_append(f, parts[i], strlen(parts[i]), NULL), SHALE_OK);
        if (i + 1 == synced) {
            cr_assert_eq(env_file_sync(f, true, NULL), SHALE_OK);
        }
    }
    cr_assert_eq(env_file_close(f, NULL), SHALE_OK);
}

static char *slurp(const char *path, size_t *len)
{
    void *data = NULL;
    if (env_read_file(env_posix(), path, 1 << 20, &data, len, NULL) != SHALE_OK) {
        return NULL;
    }
    return data;
}

Test(env_fault_states, every_subset_of_unsynced_writes)
{
    char *dir = tu_tmpdir("ef-subsets");
    char *path = tu_path(dir, "f");
    env_fault *f = env_fault_new(env_posix());
    const shale_env *e = env_fault_env(f);
    const char *parts[] = {"SYNCED", "aaaa", "bbbb", "cccc"};

    cr_assert_eq(e->sync_dir(e, dir, NULL), SHALE_OK);
    put_file(e, path, parts, 4, 1);
    cr_assert_eq(e->sync_dir(e, dir, NULL), SHALE_OK); /* the name is durable */
    env_fault_crash(f);
    cr_assert_eq(env_fault_units(f, ENV_FAULT_GRAIN_WRITE), 3);
    size_t len;
    char *crashed = slurp(path, &len);
    cr_assert_eq(len, 18);
    for (uint64_t k = 0; k < 8; k++) {
        env_fault_state_info info;
        FILE *w = fopen(path, "wb");
        fwrite(crashed, 1, len, w);
        fclose(w);
        cr_assert_eq(env_fault_make_state(f, ENV_FAULT_GRAIN_WRITE, k, 1, &info, NULL), SHALE_OK);
        cr_assert(info.exhaustive);
        char want[32] = "SYNCED";
        size_t wlen = 6;
        for (int i = 0; i < 3; i++) {
            memcpy(want + 6 + 4 * i, (k >> i) & 1 ? parts[1 + i] : "\0\0\0\0", 4);
            if ((k >> i) & 1) {
                wlen = 10 + 4 * (size_t)i;
            }
        }
        size_t glen;
        char *got = slurp(path, &glen);
        cr_assert_eq(glen, wlen, "state %llu: size %zu, want %zu", (unsigned long long)k, glen,
                     wlen);
        cr_assert(memcmp(got, want, wlen) == 0, "state %llu: wrong bytes", (unsigned long long)k);
        /* A kept write after a lost one is a reordering. */
        bool reordered = (k == 2 || k == 4 || k == 5 || k == 6);
        cr_assert_eq(info.reordered, reordered, "state %llu", (unsigned long long)k);
        free(got);
    }
    free(crashed);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

Test(env_fault_states, sector_pieces)
{
    char *dir = tu_tmpdir("ef-sectors");
    char *path = tu_path(dir, "f");
    env_fault *f = env_fault_new(env_posix());
    const shale_env *e = env_fault_env(f);
    char *big = malloc(1301);
    memset(big, 'x', 1300);
    big[1300] = '\0';

    put_file(e, path, (const char *[]){big}, 1, 0);
    env_fault_crash(f);
    /* 1300 bytes from offset 0: 512 + 512 + 276; plus the unsynced creation. */
    cr_assert_eq(env_fault_units(f, ENV_FAULT_GRAIN_512), 4);
    cr_assert_eq(env_fault_units(f, ENV_FAULT_GRAIN_4K), 2);
    cr_assert_eq(env_fault_units(f, ENV_FAULT_GRAIN_WRITE), 2);
    /* Keep only the middle sector (bit 1) and the creation (bit 3): zeros, 512 x, ends at 1024. */
    env_fault_state_info info;
    cr_assert_eq(env_fault_make_state(f, ENV_FAULT_GRAIN_512, 2 | 8, 1, &info, NULL), SHALE_OK);
    size_t len;
    char *got = slurp(path, &len);
    cr_assert_not_null(got);
    cr_assert_eq(len, 1024);
    cr_assert(got[0] == 0 && got[511] == 0 && got[512] == 'x' && got[1023] == 'x');
    cr_assert(info.reordered);
    free(got);
    free(big);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

Test(env_fault_states, directory_operations_undo)
{
    char *dir = tu_tmpdir("ef-dirops");
    char *a = tu_path(dir, "a");
    char *b = tu_path(dir, "b");
    char *gone = tu_path(dir, "gone");
    env_fault *f = env_fault_new(env_posix());
    const shale_env *e = env_fault_env(f);

    put_file(e, b, (const char *[]){"old-b"}, 1, 1);
    put_file(e, gone, (const char *[]){"kept"}, 1, 1);
    cr_assert_eq(e->sync_dir(e, dir, NULL), SHALE_OK);
    put_file(e, a, (const char *[]){"new-a"}, 1, 1);       /* create a (unsynced) */
    cr_assert_eq(e->rename_file(e, a, b, NULL), SHALE_OK); /* rename a -> b */
    cr_assert_eq(e->remove_file(e, gone, NULL), SHALE_OK); /* remove gone */
    env_fault_crash(f);
    /* Units, newest first: remove gone, rename a->b, create a. */
    cr_assert_eq(env_fault_units(f, ENV_FAULT_GRAIN_WRITE), 3);
    /* Everything undone: b is old again, a never existed, gone is back. */
    env_fault_state_info info;
    cr_assert_eq(env_fault_make_state(f, ENV_FAULT_GRAIN_WRITE, 0, 1, &info, NULL), SHALE_OK);
    size_t len;
    char *got = slurp(b, &len);
    cr_assert(got != NULL && len == 5 && memcmp(got, "old-b", 5) == 0);
    free(got);
    cr_assert_null(slurp(a, &len));
    got = slurp(gone, &len);
    cr_assert(got != NULL && len == 4 && memcmp(got, "kept", 4) == 0);
    free(got);
    cr_assert_eq(info.dirops_undone, 3);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(a);
    free(b);
    free(gone);
    free(dir);
}

Test(env_fault_states, crash_after_counts_disk_operations)
{
    char *dir = tu_tmpdir("ef-after");
    char *p = tu_path(dir, "f");
    env_fault *f = env_fault_new(env_posix());
    const shale_env *e = env_fault_env(f);
    env_file *fl = NULL;

    env_fault_crash_after(f, 3); /* open, write, then the sync finds the power gone */
    cr_assert_eq(e->open_file(e, p, ENV_WRITE | ENV_CREATE, &fl, NULL), SHALE_OK);
    cr_assert_eq(env_file_append(fl, "x", 1, NULL), SHALE_OK);
    cr_assert_not(env_fault_crashed(f));
    cr_assert_eq(env_file_sync(fl, true, NULL), SHALE_IO);
    cr_assert(env_fault_crashed(f));
    (void)env_file_close(fl, NULL);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(p);
    free(dir);
}
