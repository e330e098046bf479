/*
 * cli_harness: what the `shale` program's tests (cli_test.c, doc_cli_test.c) share to run the
 * real binary in a child process and check what it did.
 *
 * Contract:
 * - The binary is $SHALE_BIN (ctest sets it). ch_shale_bin() skips the calling test when it is
 *   unset, so every helper that runs the binary skips too; call it before forking by hand.
 * - ch_setup(prefix) makes a fresh temporary directory ch_dir (named after `prefix`) and sets
 *   ch_db to ch_dir/db, which is NOT created; ch_teardown() removes ch_dir and frees both. Use
 *   them from a suite's .init / .fini (each test runs in its own process, so the globals are
 *   per test).
 * - ch_run() runs `shale args...` (args ends with NULL, at most 62 of them) and waits for it:
 *   stdin is `in_path` (NULL: /dev/null), stdout goes to the file `out_path` (created or
 *   truncated, 0600) or, when it is NULL, is captured in r.out; stderr is always captured. Any
 *   failure to start or wait for the child fails the test. Free the result with ch_free().
 * - ch_expect_exit() asserts the exit code, that stdout is exactly `out` (NULL: not checked) and
 *   that stderr contains `err_part` (NULL: not checked); it does not free the result. What a
 *   test demands of stderr beyond that (silence on success, the shape of an error line) is the
 *   test file's policy, built from ch_expect_quiet() and ch_expect_error_line().
 * Failures are reported with Criterion assertions, which end the calling test.
 */
#ifndef SHALE_CLI_CLI_HARNESS_H
#define SHALE_CLI_CLI_HARNESS_H

#include <stddef.h>

/* One finished run of the binary. */
typedef struct ch_result {
    int code;  /* exit status, or 128 + signal */
    char *out; /* stdout, NUL-terminated (may also hold NULs; empty when it went to a file) */
    size_t out_len;
    char *err;     /* stderr, NUL-terminated */
    char cmd[512]; /* the command line, for failure messages */
} ch_result;

extern char *ch_dir; /* this test's temporary directory */
extern char *ch_db;  /* ch_dir/db: the database directory (not created up front) */

void ch_setup(const char *prefix);
void ch_teardown(void);

/* The path of the binary; skips the test when $SHALE_BIN is not set. */
const char *ch_shale_bin(void);

ch_result ch_run(const char *in_path, const char *out_path, const char *const *args);
void ch_free(ch_result *r);

void ch_expect_exit(const ch_result *r, int code, const char *out, const char *err_part);
/* Asserts that stderr is empty. */
void ch_expect_quiet(const ch_result *r);
/* Asserts that stderr is an error message: it starts with "shale" and holds a whole line. */
void ch_expect_error_line(const ch_result *r);

/* `shale ...` with stdin from /dev/null and stdout captured; _IN reads stdin from a file, _OUT
 * writes stdout to one. */
#define RUN(...)          ch_run(NULL, NULL, (const char *const[]){__VA_ARGS__, NULL})
#define RUN_IN(in, ...)   ch_run((in), NULL, (const char *const[]){__VA_ARGS__, NULL})
#define RUN_OUT(out, ...) ch_run(NULL, (out), (const char *const[]){__VA_ARGS__, NULL})

#endif
