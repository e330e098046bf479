/*
 * testutil: helpers shared by every test binary: fresh temporary directories, recursive removal,
 * deterministic key generation and a small PRNG. Test-only; not part of libshale.
 */
#ifndef SHALE_TESTS_TESTUTIL_H
#define SHALE_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "shale.h"

/* Creates a new empty directory under $SHALE_TEST_TMP (or /tmp) whose name starts with `tag`, and
 * returns its path (static storage per call site is not used: the string is malloc'ed; free it).
 * Aborts the test (cr_assert) on failure. */
char *tu_tmpdir(const char *tag);

/* rm -rf path. Returns 0 on success. */
int tu_rm_rf(const char *path);

/* path + "/" + name into a malloc'ed string. */
char *tu_path(const char *dir, const char *name);

/* Writes "key%012llu" (16 bytes) into buf (room for 17) and returns a slice over it. */
shale_slice tu_key(char *buf, uint64_t i);

/* xorshift64*: deterministic, seedable. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
void tu_rng_seed(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [0, n). n > 0. */
uint64_t tu_rng_below(tu_rng *r, uint64_t n);

/* File helpers for corruption tests: size, read whole, write whole, flip one bit, truncate. */
int64_t tu_file_size(const char *path);
int tu_flip_bit(const char *path, uint64_t offset, int bit);
int tu_truncate(const char *path, uint64_t size);

/* Copies the regular files of directory `from` into a new directory `to` (cr_assert on failure). */
void tu_copy_dir(const char *from, const char *to);

/* Under ASan, fails the test if memory leaked so far. Criterion passes a test whose process
 * leaks (LeakSanitizer only reports at exit), so leak-sensitive tests end with this. No-op
 * without ASan. */
void tu_assert_no_leaks(void);

#endif
