/* txn_util: the shared helpers of the transactions suite (see txn_util.h). */
#include "txn_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

shale_txn *tx_begin(shale_db *db, shale_isolation isolation)
{
    shale_txn_opts o = {.isolation = isolation};
    shale_txn *txn = NULL;
    shale_error err = {0};
    shale_code rc = shale_txn_begin(db, &o, &txn, &err);
    cr_assert_eq(rc, SHALE_OK, "txn_begin: %s (%s)", shale_strerror(rc), err.msg);
    cr_assert_not_null(txn);
    return txn;
}

void tx_tput(shale_txn *txn, const char *key, const char *value)
{
    shale_error err = {0};
    shale_code rc = shale_txn_put(txn, tu_str(key), tu_str(value), &err);
    cr_assert_eq(rc, SHALE_OK, "txn_put %s: %s (%s)", key, shale_strerror(rc), err.msg);
}

void tx_tdel(shale_txn *txn, const char *key)
{
    shale_error err = {0};
    shale_code rc = shale_txn_delete(txn, tu_str(key), &err);
    cr_assert_eq(rc, SHALE_OK, "txn_delete %s: %s (%s)", key, shale_strerror(rc), err.msg);
}

void tx_texpect(shale_txn *txn, const char *key, const char *value)
{
    shale_buf buf = {0};
    shale_error err = {0};
    shale_entry_info info;
    bool exists = value == NULL;
    shale_slice k = tu_str(key);
    shale_slice v = value ? tu_str(value) : (shale_slice){0};
    const shale_slice *want = value ? &v : NULL;

    shale_code rc = shale_txn_get(txn, k, &buf, &err);
    tu_check_read("txn_get", k, rc, &err, &buf, want);
    rc = shale_txn_get_info(txn, k, &buf, &info, &err);
    tu_check_read("txn_get_info", k, rc, &err, &buf, want);
    rc = shale_txn_get_info(txn, k, NULL, &info, &err);
    cr_assert_eq(rc, value ? SHALE_OK : SHALE_NOT_FOUND, "txn_get_info %s (NULL value): %s (%s)",
                 key, shale_strerror(rc), err.msg);
    rc = shale_txn_exists(txn, k, &exists, &err);
    cr_assert_eq(rc, SHALE_OK, "txn_exists %s: %s", key, err.msg);
    cr_assert_eq(exists, value != NULL, "txn_exists %s: %d", key, exists);
    shale_buf_free(&buf);
}

shale_slice tx_u64_value(char *buf, uint64_t v, size_t pad)
{
    snprintf(buf, 22, "%020" PRIu64 ":", v);
    for (size_t i = 0; i < pad; i++) {
        buf[21 + i] = (char)('a' + (v + i) % 26);
    }
    return (shale_slice){buf, 21 + pad};
}

bool tx_parse_u64(const void *data, size_t len, size_t pad, uint64_t *out)
{
    const char *p = data;
    uint64_t v = 0;

    if (len != 21 + pad || p[20] != ':') {
        return false;
    }
    for (int i = 0; i < 20; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    for (size_t i = 0; i < pad; i++) {
        if (p[21 + i] != (char)('a' + (v + i) % 26)) {
            return false;
        }
    }
    *out = v;
    return true;
}

uint64_t tx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
