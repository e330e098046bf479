/*
 * txn_util: helpers shared by the transactions suite (test_txn). Every test in tests/txn drives
 * libshale only through include/shale.h and checks what its "Conditional writes" and
 * "Transactions" sections promise, bad input included.
 *
 * A test owns one tx_fx: a fresh temp root (removed by tx_end) with the database at root/db.
 * Criterion runs each test in its own process. Worker threads never call cr_assert (Criterion's
 * asserts belong to the test's main thread): they record the first failure in a tx_failure,
 * which the main thread reports with tx_failure_check after joining.
 */
#ifndef SHALE_TESTS_TXN_TXN_UTIL_H
#define SHALE_TESTS_TXN_TXN_UTIL_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shale.h"

#include "testutil.h"

/* A slice over a string literal, embedded NUL bytes included. */
#define SL(lit) ((shale_slice){(lit), sizeof(lit) - 1})

/* Asserts `call` returns `want`; inside `call`, ERR names a shale_error to pass. ERR starts filled
 * with garbage, so a failing call is also checked to set err.code and a NUL-terminated, non-empty
 * message (sys_errno 0 for INVALID and FULL). After the macro, TX_LAST_MSG holds the message. */
#define TX_CODE(want, ...)                                                                         \
    do {                                                                                           \
        shale_error ERR;                                                                           \
        memset(&ERR, 0x5a, sizeof ERR);                                                            \
        shale_code rc_ = (__VA_ARGS__);                                                            \
        tx_check_code(rc_, (want), &ERR, #__VA_ARGS__, __FILE__, __LINE__);                        \
    } while (0)

#define TX_OK(...) TX_CODE(SHALE_OK, __VA_ARGS__)

/* The message of the last failing call checked by TX_CODE (empty after a SHALE_OK). */
extern char tx_last_msg[256];

void tx_check_code(shale_code got, shale_code want, const shale_error *err, const char *what,
                   const char *file, int line);

typedef struct tx_fx {
    char *root;   /* temp directory, removed by tx_end */
    char *path;   /* root/db */
    shale_db *db; /* open handle or NULL */
} tx_fx;

/* Creates the temp root and opens root/db with `opts` (create_if_missing forced on). */
void tx_fx_begin(tx_fx *fx, const char *tag, const shale_options *opts);
/* Closes (asserting SHALE_OK) and opens again with `opts` (create_if_missing forced off). */
void tx_fx_reopen(tx_fx *fx, const shale_options *opts);
void tx_fx_close(tx_fx *fx);
/* Closes if open, removes the temp root, and (under ASan) asserts nothing leaked. */
void tx_fx_end(tx_fx *fx);

/* A slice over a C string (no NUL). */
shale_slice tx_str(const char *s);

/* Plain writes asserting SHALE_OK. */
void tx_put(shale_db *db, const char *key, const char *value);
void tx_del(shale_db *db, const char *key);
/* Asserts the database's live view: key holds `value`, or is absent when value is NULL (get,
 * exists and get_info agree). */
void tx_expect(shale_db *db, const char *key, const char *value);
/* The version (seq) of key's current value, asserting it exists. */
uint64_t tx_seq(shale_db *db, const char *key);
shale_stats tx_stats(shale_db *db);

/* Begins a transaction with `isolation`, asserting SHALE_OK. */
shale_txn *tx_begin(shale_db *db, shale_isolation isolation);
/* Transactional writes asserting SHALE_OK. */
void tx_tput(shale_txn *txn, const char *key, const char *value);
void tx_tdel(shale_txn *txn, const char *key);
/* Asserts the transaction's view: key holds `value` or is absent (NULL); get, get_info and exists
 * agree. */
void tx_texpect(shale_txn *txn, const char *key, const char *value);

/* Walks `it` from seek_first (forward) or seek_last (backward) and returns "k=v,k=v" (values cut
 * at 40 bytes), asserting the iterator ends with status SHALE_OK. Static per-call buffer: copy it
 * before the next call. */
const char *tx_scan(shale_iter *it, bool backward);
/* As tx_scan, starting from the iterator's current position, moving `backward` or forward. */
const char *tx_scan_on(shale_iter *it, bool backward);
/* The key under a valid iterator as a C string (static buffer), "<invalid>" when not valid. */
const char *tx_iter_at(const shale_iter *it);

/* A u64 value as 20 decimal digits, then ':' and `pad` filler bytes; buf needs 22 + pad bytes. */
shale_slice tx_u64_value(char *buf, uint64_t v, size_t pad);
/* Parses a value made by tx_u64_value with the same pad; false if it is malformed. */
bool tx_parse_u64(const void *data, size_t len, size_t pad, uint64_t *out);

/* A first-failure recorder for worker threads. */
typedef struct tx_failure {
    atomic_int failed;
    pthread_mutex_t mu;
    char why[512];
} tx_failure;

void tx_failure_init(tx_failure *f);
void tx_fail(tx_failure *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool tx_failed(tx_failure *f);
/* cr_assert that no worker failed (main thread only); destroys the mutex. */
void tx_failure_check(tx_failure *f, const char *ctx);

/* Milliseconds since the Unix epoch (wall clock), for TTL deadlines. */
uint64_t tx_now_ms(void);

#endif
