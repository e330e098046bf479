/*
 * txn_util: helpers shared by the transactions suite (test_txn). Every test in tests/txn drives
 * libshale only through include/shale.h and checks what its "Conditional writes" and
 * "Transactions" sections promise, bad input included.
 *
 * A test owns one tu_fx (testutil.h): a fresh temp root (removed by tu_fx_end) with the database
 * at root/db; calls are checked with TU_CODE/TU_OK and the tu_put/tu_expect/tu_scan family, and
 * worker threads record their first failure in a tu_failure. Criterion runs each test in its own
 * process. This header adds the transaction-level counterparts.
 */
#ifndef SHALE_TESTS_TXN_TXN_UTIL_H
#define SHALE_TESTS_TXN_TXN_UTIL_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shale.h"

#include "testutil.h"

/* Begins a transaction with `isolation`, asserting SHALE_OK. */
shale_txn *tx_begin(shale_db *db, shale_isolation isolation);
/* Transactional writes asserting SHALE_OK. */
void tx_tput(shale_txn *txn, const char *key, const char *value);
void tx_tdel(shale_txn *txn, const char *key);
/* Asserts the transaction's view: key holds `value` or is absent (NULL); get, get_info and exists
 * agree. */
void tx_texpect(shale_txn *txn, const char *key, const char *value);

/* A u64 value as 20 decimal digits, then ':' and `pad` filler bytes; buf needs 22 + pad bytes. */
shale_slice tx_u64_value(char *buf, uint64_t v, size_t pad);
/* Parses a value made by tx_u64_value with the same pad; false if it is malformed. */
bool tx_parse_u64(const void *data, size_t len, size_t pad, uint64_t *out);

/* Milliseconds since the Unix epoch (wall clock), for TTL deadlines. */
uint64_t tx_now_ms(void);

#endif
