/*
 * cli_harness_test: the child-process helpers of cli_harness.h. Named *_test.c so that CMake
 * builds it into test_cli (with the tests that use it) and not into the `shale` program; it
 * holds no tests itself.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_harness.h"
#include "testutil.h"

extern char **environ;

char *ch_dir;
char *ch_db;

void ch_setup(const char *prefix)
{
    ch_dir = tu_tmpdir(prefix);
    ch_db = tu_path(ch_dir, "db");
}

void ch_teardown(void)
{
    if (ch_dir != NULL) {
        tu_rm_rf(ch_dir);
    }
    free(ch_db);
    free(ch_dir);
    ch_db = NULL;
    ch_dir = NULL;
}

const char *ch_shale_bin(void)
{
    const char *bin = getenv("SHALE_BIN");
    if (bin == NULL || bin[0] == '\0') {
        cr_skip_test("SHALE_BIN is not set (run through ctest)");
    }
    return bin;
}

ch_result ch_run(const char *in_path, const char *out_path, const char *const *args)
{
    const char *argv[64];
    ch_result r;
    size_t n = 0, used = 0;
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status;

    memset(&r, 0, sizeof r);
    argv[n++] = ch_shale_bin();
    for (size_t i = 0; args[i] != NULL; i++) {
        cr_assert_lt(n, 63);
        argv[n++] = args[i];
        int w = snprintf(r.cmd + used, sizeof r.cmd - used, "%s%s", i ? " " : "shale ", args[i]);
        used = w > 0 && (size_t)w < sizeof r.cmd - used ? used + (size_t)w : used;
    }
    argv[n] = NULL;

    int out_fd = memfd_create("stdout", MFD_CLOEXEC);
    int err_fd = memfd_create("stderr", MFD_CLOEXEC);
    cr_assert(out_fd >= 0 && err_fd >= 0, "memfd_create: %s", strerror(errno));
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    if (out_path != NULL) {
        cr_assert_eq(
            posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600),
            0);
    } else {
        cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, out_fd, 1), 0);
    }
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, err_fd, 2), 0);
    cr_assert_eq(
        posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0), 0);
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    posix_spawn_file_actions_destroy(&fa);
    while (waitpid(pid, &status, 0) < 0) {
        cr_assert_eq(errno, EINTR);
    }
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = tu_read_fd(out_fd, &r.out_len);
    r.err = tu_read_fd(err_fd, NULL);
    return r;
}

void ch_free(ch_result *r)
{
    free(r->out);
    free(r->err);
}

void ch_expect_exit(const ch_result *r, int code, const char *out, const char *err_part)
{
    cr_assert_eq(r->code, code, "%s: exit %d, want %d; stderr: %s", r->cmd, r->code, code, r->err);
    if (out != NULL) {
        cr_assert(r->out_len == strlen(out) && memcmp(r->out, out, r->out_len) == 0,
                  "%s: stdout\n[%s]\nwant\n[%s]", r->cmd, r->out, out);
    }
    if (err_part != NULL) {
        cr_assert(strstr(r->err, err_part) != NULL, "%s: stderr [%s] lacks [%s]", r->cmd, r->err,
                  err_part);
    }
}

void ch_expect_quiet(const ch_result *r)
{
    cr_assert_str_empty(r->err, "%s: stderr on success: %s", r->cmd, r->err);
}

void ch_expect_error_line(const ch_result *r)
{
    cr_assert(strncmp(r->err, "shale", 5) == 0 && strchr(r->err, '\n') != NULL,
              "%s: error message [%s]", r->cmd, r->err);
}
