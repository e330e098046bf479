/*
 * api: helpers shared by the public-API suite (test_api). Every test in tests/api drives libshale
 * only through include/shale.h (plus env/env.h for a fake clock) and checks the behaviour the
 * header promises, including every bad-input path.
 *
 * A test owns one tu_fx (testutil.h): a fresh temp root (removed by tu_fx_end) with the database
 * at root/db, which does not exist until the first open with create_if_missing; calls are checked
 * with TU_CODE/TU_OK and the tu_put/tu_expect family. Criterion runs each test in its own process,
 * so the globals here (the fake clock) are private to one test.
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

/* Counts the *.log files in dir (which must exist). */
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
