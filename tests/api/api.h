/*
 * api: helpers shared by the public-API suite (test_api). Every test in tests/api drives libshale
 * only through include/shale.h (plus env/env.h for a fake clock) and checks the behaviour the
 * header promises, including every bad-input path.
 *
 * A test owns one api_fx: a fresh temp root (removed by api_end) with the database at root/db,
 * which does not exist until the first open with create_if_missing. Criterion runs each test in
 * its own process, so the globals here (the fake clock) are private to one test.
 */
#ifndef SHALE_TESTS_API_API_H
#define SHALE_TESTS_API_API_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shale.h"

#include "testutil.h"

/* A slice over a string literal, embedded NUL bytes included: SL("a\0b").len == 3. */
#define SL(lit) ((shale_slice){(lit), sizeof(lit) - 1})

/* Asserts `call` returns `want`; inside `call`, ERR names a shale_error to pass. ERR starts filled
 * with garbage, so a failing call is also checked to set err.code and a NUL-terminated,
 * non-empty message, and sys_errno 0 for the argument/limit codes (INVALID, FULL). */
#define ASSERT_CODE(want, ...)                                                                     \
    do {                                                                                           \
        shale_error ERR;                                                                           \
        memset(&ERR, 0x5a, sizeof ERR);                                                            \
        shale_code rc_ = (__VA_ARGS__);                                                            \
        api_check_code(rc_, (want), &ERR, #__VA_ARGS__, __FILE__, __LINE__);                       \
    } while (0)

#define ASSERT_OK(...) ASSERT_CODE(SHALE_OK, __VA_ARGS__)

void api_check_code(shale_code got, shale_code want, const shale_error *err, const char *what,
                    const char *file, int line);

typedef struct api_fx {
    char *root;   /* temp directory, removed by api_end */
    char *path;   /* root/db */
    shale_db *db; /* open handle or NULL */
} api_fx;

/* Creates the temp root and opens root/db with `opts` (create_if_missing is forced on). */
void api_begin(api_fx *fx, const char *tag, const shale_options *opts);
/* Closes (asserting SHALE_OK) and opens again with `opts` (NULL = defaults, no create). */
void api_reopen(api_fx *fx, const shale_options *opts);
void api_close(api_fx *fx);
/* Closes if open and removes the temp root. */
void api_end(api_fx *fx);

/* Opens `path` asserting SHALE_OK. */
shale_db *api_open(const char *path, const shale_options *opts);

/* A slice over a C string (no NUL). */
shale_slice api_str(const char *s);

/* Put/delete asserting SHALE_OK with the database's default durability. */
void api_put(shale_db *db, const char *key, const char *value);
void api_putn(shale_db *db, shale_slice key, shale_slice value);
void api_del(shale_db *db, const char *key);

/* Asserts key holds `value`, or is absent when value is NULL (get, exists and get_info agree). */
void api_expect(shale_db *db, const char *key, const char *value);
void api_expectn(shale_db *db, shale_slice key, const shale_slice *value);

shale_stats api_stats(shale_db *db);
/* The sequence number of key's current value (asserting it exists). */
uint64_t api_seq(shale_db *db, shale_slice key);

/* Counts the NNNNNN.log files in dir. */
size_t api_count_logs(const char *dir);
/* Creates a file `name` in dir holding `text`. */
void api_write_file(const char *dir, const char *name, const char *text);
bool api_path_exists(const char *path);

/* A fake wall clock for TTL tests: an env that is the real OS except now_ms reads api_now. */
extern _Atomic uint64_t api_now;
const shale_env *api_fake_env(void);

/* The deterministic value stored under key i by the bulk helpers: "v<i>-" repeated to a length
 * that varies with i. Writes into buf (room for 256) and returns the slice. */
shale_slice api_value(char *buf, uint64_t i);

#endif
