/* txn_util: the shared helpers of the transactions suite (see txn_util.h). */
#include "txn_util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char tx_last_msg[256];

void tx_check_code(shale_code got, shale_code want, const shale_error *err, const char *what,
                   const char *file, int line)
{
    const char *msg = memchr(err->msg, 0, sizeof err->msg) ? err->msg : "<unterminated>";

    cr_assert_eq(got, want, "%s:%d: %s returned %d (%s), want %d (%s); msg: %s", file, line, what,
                 got, shale_strerror(got), want, shale_strerror(want), msg);
    tx_last_msg[0] = '\0';
    if (want == SHALE_OK) {
        return;
    }
    cr_assert_eq(err->code, want, "%s:%d: %s: err.code %d, want %d", file, line, what, err->code,
                 want);
    cr_assert_not_null(memchr(err->msg, 0, sizeof err->msg),
                       "%s:%d: %s: err.msg not NUL-terminated", file, line, what);
    if (want != SHALE_NOT_FOUND) {
        cr_assert(err->msg[0] != '\0', "%s:%d: %s: empty err.msg", file, line, what);
    }
    if (want == SHALE_INVALID || want == SHALE_FULL || want == SHALE_CONFLICT) {
        cr_assert_eq(err->sys_errno, 0, "%s:%d: %s: sys_errno %d for a %s (%s)", file, line, what,
                     err->sys_errno, shale_strerror(want), err->msg);
    }
    snprintf(tx_last_msg, sizeof tx_last_msg, "%s", err->msg);
}

static shale_db *open_db(const char *path, const shale_options *opts)
{
    shale_db *db = NULL;
    shale_error err = {0};
    shale_code rc = shale_open(path, opts, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "open %s: %s: %s", path, shale_strerror(rc), err.msg);
    cr_assert_not_null(db);
    return db;
}

void tx_fx_begin(tx_fx *fx, const char *tag, const shale_options *opts)
{
    shale_options o = opts ? *opts : (shale_options){0};

    o.create_if_missing = true;
    fx->root = tu_tmpdir(tag);
    fx->path = tu_path(fx->root, "db");
    fx->db = open_db(fx->path, &o);
}

void tx_fx_close(tx_fx *fx)
{
    if (fx->db != NULL) {
        shale_error err = {0};
        shale_code rc = shale_close(fx->db, &err);
        fx->db = NULL;
        cr_assert_eq(rc, SHALE_OK, "close: %s", err.msg);
    }
}

void tx_fx_reopen(tx_fx *fx, const shale_options *opts)
{
    shale_options o = opts ? *opts : (shale_options){0};

    o.create_if_missing = false;
    tx_fx_close(fx);
    fx->db = open_db(fx->path, &o);
}

void tx_fx_end(tx_fx *fx)
{
    tx_fx_close(fx);
    if (fx->root != NULL) {
        tu_rm_rf(fx->root);
    }
    free(fx->path);
    free(fx->root);
    fx->path = NULL;
    fx->root = NULL;
    tu_assert_no_leaks();
}

shale_slice tx_str(const char *s)
{
    return (shale_slice){s, strlen(s)};
}

void tx_put(shale_db *db, const char *key, const char *value)
{
    shale_error err = {0};
    shale_code rc = shale_put(db, NULL, tx_str(key), tx_str(value), &err);
    cr_assert_eq(rc, SHALE_OK, "put %s: %s", key, err.msg);
}

void tx_del(shale_db *db, const char *key)
{
    shale_error err = {0};
    shale_code rc = shale_delete(db, NULL, tx_str(key), &err);
    cr_assert_eq(rc, SHALE_OK, "delete %s: %s", key, err.msg);
}

/* Checks one read's outcome against `value` (NULL = absent). */
static void check_read(const char *ctx, const char *key, shale_code rc, const shale_error *err,
                       const shale_buf *buf, const char *value)
{
    if (value == NULL) {
        cr_assert_eq(rc, SHALE_NOT_FOUND, "%s %s: want NOT_FOUND, got %s (%s); value '%.*s'", ctx,
                     key, shale_strerror(rc), err->msg, rc == SHALE_OK ? (int)buf->len : 0,
                     rc == SHALE_OK ? (const char *)buf->data : "");
        cr_assert_eq(buf->len, 0, "%s %s: NOT_FOUND left len %zu", ctx, key, buf->len);
        return;
    }
    size_t len = strlen(value);
    cr_assert_eq(rc, SHALE_OK, "%s %s: want '%s', got %s (%s)", ctx, key, value, shale_strerror(rc),
                 err->msg);
    cr_assert(buf->len == len && (len == 0 || memcmp(buf->data, value, len) == 0),
              "%s %s: want '%s', got '%.*s'", ctx, key, value, (int)buf->len,
              (const char *)buf->data);
}

void tx_expect(shale_db *db, const char *key, const char *value)
{
    shale_buf buf = {0};
    shale_error err = {0};
    shale_entry_info info;
    bool exists = value == NULL;

    shale_code rc = shale_get(db, NULL, tx_str(key), &buf, &err);
    check_read("get", key, rc, &err, &buf, value);
    rc = shale_get_info(db, NULL, tx_str(key), &buf, &info, &err);
    check_read("get_info", key, rc, &err, &buf, value);
    if (value != NULL) {
        cr_assert_gt(info.seq, 0, "get_info %s: version 0 for a stored value", key);
    }
    rc = shale_exists(db, NULL, tx_str(key), &exists, &err);
    cr_assert_eq(rc, SHALE_OK, "exists %s: %s", key, err.msg);
    cr_assert_eq(exists, value != NULL, "exists %s: %d", key, exists);
    shale_buf_free(&buf);
}

uint64_t tx_seq(shale_db *db, const char *key)
{
    shale_entry_info info = {0};
    shale_error err = {0};
    shale_code rc = shale_get_info(db, NULL, tx_str(key), NULL, &info, &err);
    cr_assert_eq(rc, SHALE_OK, "get_info %s: %s (%s)", key, shale_strerror(rc), err.msg);
    return info.seq;
}

shale_stats tx_stats(shale_db *db)
{
    shale_stats st;
    shale_error err = {0};
    memset(&st, 0x5a, sizeof st);
    shale_code rc = shale_stats_get(db, &st, &err);
    cr_assert_eq(rc, SHALE_OK, "stats: %s", err.msg);
    return st;
}

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
    shale_code rc = shale_txn_put(txn, tx_str(key), tx_str(value), &err);
    cr_assert_eq(rc, SHALE_OK, "txn_put %s: %s (%s)", key, shale_strerror(rc), err.msg);
}

void tx_tdel(shale_txn *txn, const char *key)
{
    shale_error err = {0};
    shale_code rc = shale_txn_delete(txn, tx_str(key), &err);
    cr_assert_eq(rc, SHALE_OK, "txn_delete %s: %s (%s)", key, shale_strerror(rc), err.msg);
}

void tx_texpect(shale_txn *txn, const char *key, const char *value)
{
    shale_buf buf = {0};
    shale_error err = {0};
    shale_entry_info info;
    bool exists = value == NULL;

    shale_code rc = shale_txn_get(txn, tx_str(key), &buf, &err);
    check_read("txn_get", key, rc, &err, &buf, value);
    rc = shale_txn_get_info(txn, tx_str(key), &buf, &info, &err);
    check_read("txn_get_info", key, rc, &err, &buf, value);
    rc = shale_txn_get_info(txn, tx_str(key), NULL, &info, &err);
    cr_assert_eq(rc, value ? SHALE_OK : SHALE_NOT_FOUND, "txn_get_info %s (NULL value): %s (%s)",
                 key, shale_strerror(rc), err.msg);
    rc = shale_txn_exists(txn, tx_str(key), &exists, &err);
    cr_assert_eq(rc, SHALE_OK, "txn_exists %s: %s", key, err.msg);
    cr_assert_eq(exists, value != NULL, "txn_exists %s: %d", key, exists);
    shale_buf_free(&buf);
}

static char scan_buf[8192];

const char *tx_scan_on(shale_iter *it, bool backward)
{
    size_t n = 0;
    shale_error err = {0};

    scan_buf[0] = '\0';
    for (; shale_iter_valid(it); backward ? shale_iter_prev(it) : shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        int w =
            snprintf(scan_buf + n, sizeof scan_buf - n, "%s%.*s=%.*s", n ? "," : "", (int)k.len,
                     (const char *)k.data, (int)(v.len > 40 ? 40 : v.len), (const char *)v.data);
        cr_assert(w > 0 && (size_t)w < sizeof scan_buf - n, "tx_scan: output too long");
        n += (size_t)w;
    }
    shale_code rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, "iterator status %s: %s", shale_strerror(rc), err.msg);
    return scan_buf;
}

const char *tx_scan(shale_iter *it, bool backward)
{
    if (backward) {
        shale_iter_seek_last(it);
    } else {
        shale_iter_seek_first(it);
    }
    return tx_scan_on(it, backward);
}

const char *tx_iter_at(const shale_iter *it)
{
    static char at[512];
    if (!shale_iter_valid(it)) {
        return "<invalid>";
    }
    shale_slice k = shale_iter_key(it);
    snprintf(at, sizeof at, "%.*s", (int)k.len, (const char *)k.data);
    return at;
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

void tx_failure_init(tx_failure *f)
{
    atomic_init(&f->failed, 0);
    pthread_mutex_init(&f->mu, NULL);
    f->why[0] = '\0';
}

void tx_fail(tx_failure *f, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&f->mu);
    if (!atomic_load(&f->failed)) {
        va_start(ap, fmt);
        vsnprintf(f->why, sizeof f->why, fmt, ap);
        va_end(ap);
        atomic_store(&f->failed, 1);
    }
    pthread_mutex_unlock(&f->mu);
}

bool tx_failed(tx_failure *f)
{
    return atomic_load(&f->failed) != 0;
}

void tx_failure_check(tx_failure *f, const char *ctx)
{
    bool failed = tx_failed(f);
    pthread_mutex_destroy(&f->mu);
    cr_assert_not(failed, "%s: %s", ctx, f->why);
}

uint64_t tx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
