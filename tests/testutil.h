/*
 * testutil: helpers shared by every test binary: fresh temporary directories, recursive removal,
 * deterministic key generation and a small PRNG, file damage, database file-set checks, and (for
 * the public-API suites) a database fixture with calls that assert their outcome. Test-only; not
 * part of libshale.
 */
#ifndef SHALE_TESTS_TESTUTIL_H
#define SHALE_TESTS_TESTUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* splitmix64's finalizer: a bijective mix of x, for deriving per-item seeds and lengths. */
uint64_t tu_mix64(uint64_t x);

/* Sleeps `us` microseconds (resumed after a signal). */
void tu_sleep_us(uint64_t us);

/* Copies the start of data[0, len) (at most cap - 1 bytes) into out as a C string, to parse a
 * value's header with sscanf or print it; returns out. */
char *tu_head(char *out, size_t cap, const void *data, size_t len);

/* Writes " key K: want W got G;" for the first keys K where want[K] != got[K] (as many as fit)
 * into msg, NUL-terminated; returns msg. For failure messages of model comparisons. */
char *tu_diff_keys(char *msg, size_t cap, const uint64_t *want, const uint64_t *got, size_t n);

/* Reads the whole file behind `fd` (from offset 0, e.g. a memfd a child wrote to) into a malloc'ed
 * NUL-terminated string (free it), stores its length in *len when len is not NULL, and closes fd.
 * cr_assert on failure. */
char *tu_read_fd(int fd, size_t *len);

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

/* ---- issue 3 additions: directory listings and the file set of a database ---- */

/* The names in directory `dir` (not "." or ".."), sorted bytewise, malloc'ed; *count gets how
 * many. NULL with *count 0 when the directory cannot be read. Free with tu_free_names. */
char **tu_list_dir(const char *dir, size_t *count);
void tu_free_names(char **names, size_t count);

/* How many names in `dir` end with `suffix` (".sst", ".log", ".tmp"). */
size_t tu_count_suffix(const char *dir, const char *suffix);

/* Asserts that the directory of the open database `db` (at `dir`) holds no leaked file: only
 * SHALE, LOCK, LOG, LOG.old, CURRENT, exactly one MANIFEST-NNNNNN, NNNNNN.log files (as many
 * numbered >= the manifest's log_number as stats.log_segments) and NNNNNN.sst files (every table
 * the current version lists, as many as stats.level_tables counts); no *.tmp and nothing else.
 * Also allowed, and only these: the files kept one edit longer for the state before the last
 * manifest edit (logs from version_set_kept_log_number, tables the last edit removed; see
 * testutil.c). `ctx` starts every failure message. */
void tu_assert_db_files(shale_db *db, const char *dir, const char *ctx);

/* Whether `name` is NNNNNN.<ext> (six or more decimal digits, then ".ext"). */
int tu_is_numbered(const char *name, const char *ext);

/* Runs the `shale` program ($SHALE_BIN, which ctest sets) with the NULL-terminated `args` (after
 * the program name), stdin from /dev/null. Returns its exit status (128 + signal if killed) and
 * stores its stdout and stderr, interleaved, in *output (malloc'ed, NUL-terminated; free it).
 * Returns -1 and runs nothing when SHALE_BIN is not set. */
int tu_run_shale(const char *const *args, char **output);

/* Closes the open database `db` (at directory `dir`) and leaves `dir` as a process crash just
 * before the close would have left it: the files are copied while the database is still open,
 * the database is closed (cr_assert: the close must succeed), and the copy replaces `dir`.
 * A clean shale_close flushes the memtable into a table and deletes the log segments it covered;
 * tests about the log (torn tails, damaged records, recovery reads) need the log a crash leaves.
 * Call it right after the writes returned, with OS or FULL durability (their records are in the
 * files), while no flush or compaction runs. Uses the sibling path `dir`.crash (removed). */
void tu_close_as_crash(shale_db *db, const char *dir);

/* Options with tiny budgets (4 MiB of memory, 64 KiB write buffer and tables) and level-0
 * trigger `l0_trigger`, so a few hundred KiB of writes flush and compact; the rest default. */
shale_options tu_small_lsm_options(uint32_t l0_trigger);

/* ---- the public-API suites (tests/api, tests/txn): a database fixture and checked calls ---- */

/* A slice over a string literal, embedded NUL bytes included: TU_SL("a\0b").len == 3. */
#define TU_SL(lit) ((shale_slice){(lit), sizeof(lit) - 1})

/* Asserts `call` returns `want`; inside `call`, ERR names a shale_error to pass. ERR starts filled
 * with garbage, so a failing call is also checked to set err.code and a NUL-terminated message,
 * non-empty but for NOT_FOUND, and sys_errno 0 for the argument, limit and conflict codes
 * (INVALID, FULL, CONFLICT). After the macro, tu_last_msg holds the message. */
#define TU_CODE(want, ...)                                                                         \
    do {                                                                                           \
        shale_error ERR;                                                                           \
        memset(&ERR, 0x5a, sizeof ERR);                                                            \
        shale_code rc_ = (__VA_ARGS__);                                                            \
        tu_check_code(rc_, (want), &ERR, #__VA_ARGS__, __FILE__, __LINE__);                        \
    } while (0)

#define TU_OK(...) TU_CODE(SHALE_OK, __VA_ARGS__)

/* The message of the last failing call checked by TU_CODE (empty after a SHALE_OK). */
extern char tu_last_msg[256];

void tu_check_code(shale_code got, shale_code want, const shale_error *err, const char *what,
                   const char *file, int line);

/* A test's database: a fresh temp root (removed by tu_fx_end) with the database at root/db, which
 * does not exist until the first open with create_if_missing. */
typedef struct tu_fx {
    char *root;   /* temp directory, removed by tu_fx_end */
    char *path;   /* root/db */
    shale_db *db; /* open handle or NULL */
} tu_fx;

/* Creates the temp root and opens root/db with `opts` (create_if_missing is forced on). */
void tu_fx_begin(tu_fx *fx, const char *tag, const shale_options *opts);
/* Closes (asserting SHALE_OK) and opens again with `opts` as given (NULL = defaults). */
void tu_fx_reopen(tu_fx *fx, const shale_options *opts);
void tu_fx_close(tu_fx *fx);
/* Closes if open, removes the temp root, and (under ASan) asserts nothing leaked. */
void tu_fx_end(tu_fx *fx);

/* Opens `path` asserting SHALE_OK. */
shale_db *tu_open(const char *path, const shale_options *opts);

/* A slice over a C string (no NUL). */
shale_slice tu_str(const char *s);

/* Put/delete asserting SHALE_OK with the database's default durability. */
void tu_put(shale_db *db, const char *key, const char *value);
void tu_putn(shale_db *db, shale_slice key, shale_slice value);
void tu_del(shale_db *db, const char *key);

/* Asserts the database's live view: key holds `value`, or is absent when value is NULL. get,
 * get_info (with and without a value buffer; a stored value has a version > 0) and exists
 * agree. */
void tu_expect(shale_db *db, const char *key, const char *value);
void tu_expectn(shale_db *db, shale_slice key, const shale_slice *value);
/* Asserts one read of `key` (a get-like call named `ctx` that returned `rc`, `err` and `buf`) found
 * `value`, or found nothing (NOT_FOUND, empty buf) when value is NULL. */
void tu_check_read(const char *ctx, shale_slice key, shale_code rc, const shale_error *err,
                   const shale_buf *buf, const shale_slice *value);

/* Stats asserting SHALE_OK. */
shale_stats tu_stats(shale_db *db);
/* The version (seq) of key's current value, asserting it exists. */
uint64_t tu_seq(shale_db *db, const char *key);
uint64_t tu_seqn(shale_db *db, shale_slice key);

/* The value of key k in generation g: "g<g>:k<k>:" padded with letters to min_len + [0, 200)
 * bytes (varying with g and k). min_len >= 32; buf needs min_len + 200 bytes. */
shale_slice tu_gen_value(char *buf, int g, int k, size_t min_len);

/* Walks `it` from seek_first (forward) or seek_last (backward) and returns "k=v,k=v" (values cut
 * at 40 bytes), asserting the iterator ends with status SHALE_OK. Static per-call buffer: copy it
 * before the next call. */
const char *tu_scan(shale_iter *it, bool backward);
/* As tu_scan, starting from the iterator's current position, moving `backward` or forward. */
const char *tu_scan_on(shale_iter *it, bool backward);
/* The key under a valid iterator as a C string (static buffer), "<invalid>" when not valid. */
const char *tu_iter_at(const shale_iter *it);

/* A first-failure recorder for worker threads, which never call cr_assert (Criterion's asserts
 * belong to the test's main thread): the main thread reports with tu_failure_check after
 * joining. */
typedef struct tu_failure {
    atomic_int failed;
    pthread_mutex_t mu;
    char why[512];
} tu_failure;

void tu_failure_init(tu_failure *f);
void tu_fail(tu_failure *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool tu_failed(tu_failure *f);
/* cr_assert that no worker failed (main thread only); destroys the mutex. */
void tu_failure_check(tu_failure *f, const char *ctx);

/* ---- test campaigns (tests/crash, tests/powerloss, tests/faults, tests/corrupt) ----
 * Each campaign has a bounded default for CI and a long mode: SHALE_CAMPAIGN_SCALE=N (default 1)
 * multiplies its cycles, states or faults. Each campaign test reports what it did with
 * tu_campaign_report: one line "campaign <name>: <counts>" on stderr and, when
 * SHALE_CAMPAIGN_REPORT names a file, appended to it (O_APPEND, one write per line, so the
 * parallel test processes of one binary do not interleave), which `make crash|powerloss|faults|
 * corrupt` print at the end. */
uint64_t tu_campaign_scale(void);
void tu_campaign_report(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
