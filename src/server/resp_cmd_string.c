/*
 * resp_cmd_string: the string commands of the resp_cmd module: GET SET GETSET SETNX SETEX PSETEX
 * GETDEL GETEX MGET MSET MSETNX INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE
 * SETRANGE. The contract is in resp_cmd.h; dispatch, the command table, transactions and the
 * store access (resp_cmd_kget/kput/kdel, resp_cmd_with_txn) are in resp_cmd.c, and what the files
 * of the module share is in resp_cmd_int.h.
 *
 * Transactions. The read-modify-write commands carry F_TXN in the table, so that outside EXEC
 * resp_cmd.c runs them in a transaction of their own; SET and GETEX need one only with some
 * options, so they start it themselves (resp_cmd_with_txn). Every key such a command's outcome
 * depends on is read for update (resp_cmd_kget's upd).
 *
 * Choices where the contract leaves room (a Redis user's reading):
 *   - SETRANGE and APPEND refuse results over 256 MiB (the largest max_value_bytes) with Redis's
 *     "string exceeds maximum allowed size" before building them; the store's own limit then
 *     answers "ERR value of N bytes exceeds max_value_bytes M".
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/buf.h"
#include "server/resp.h"
#include "server/resp_cmd_int.h"

/* Redis's proto-max-bulk-len is 512 MiB; no store value may pass 256 MiB (shale_options). */
#define MAX_STRING ((uint64_t)256 << 20)
#define LD_CHARS   (5 * 1024) /* Redis's MAX_LONG_DOUBLE_CHARS */

/* ---- small helpers ---- */

/* Redis's string2ld. */
static bool str2ld(shale_slice s, long double *out)
{
    char buf[LD_CHARS];
    char *end;

    if (s.len == 0 || s.len >= sizeof buf) {
        return false;
    }
    memcpy(buf, s.data, s.len);
    buf[s.len] = '\0';
    errno = 0;
    long double v = strtold(buf, &end);
    if (isspace((unsigned char)buf[0]) || *end != '\0' ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) ||
        errno == EINVAL || isnan(v)) {
        return false;
    }
    *out = v;
    return true;
}

/* Redis's ld2string(LD_STR_HUMAN): 17 decimals, trailing zeros and a bare point dropped. */
static size_t ld2str(char *buf, size_t cap, long double v)
{
    int n = snprintf(buf, cap, "%.17Lf", v);
    if (n < 0 || (size_t)n >= cap) {
        return 0;
    }
    size_t l = (size_t)n;
    if (strchr(buf, '.') != NULL) {
        while (l > 0 && buf[l - 1] == '0') {
            l--;
        }
        if (l > 0 && buf[l - 1] == '.') {
            l--;
        }
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    buf[l] = '\0';
    return l;
}

/* INFO's keyspace_hits and keyspace_misses. */
static void hit(cctx *c, bool found)
{
    atomic_fetch_add_explicit(found ? &c->sv->hits : &c->sv->misses, 1, memory_order_relaxed);
}

/* ---- expiry arguments ---- */

enum { EXP_NONE, EXP_EX, EXP_PX, EXP_EXAT, EXP_PXAT, EXP_PERSIST };

/* The deadline of SET/GETEX's EX/PX/EXAT/PXAT `v` (Redis's getExpireMillisecondsOrReply):
 * CR_OK with *deadline, or an error reply. */
static int expire_arg(cctx *c, int kind, shale_slice v, uint64_t *deadline)
{
    long long t;
    if (!resp_cmd_str2ll(v, &t)) {
        return err_int(c);
    }
    if (t <= 0 || ((kind == EXP_EX || kind == EXP_EXAT) && t > LLONG_MAX / 1000)) {
        return rep_errf(c, "ERR invalid expire time in '%s' command", c->cmd->name);
    }
    if (kind == EXP_EX || kind == EXP_EXAT) {
        t *= 1000;
    }
    if (kind == EXP_EX || kind == EXP_PX) {
        long long now = (long long)now_ms();
        if (t > LLONG_MAX - now) {
            return rep_errf(c, "ERR invalid expire time in '%s' command", c->cmd->name);
        }
        t += now;
    }
    *deadline = (uint64_t)t;
    return CR_OK;
}

static int exp_kind(shale_slice a)
{
    if (eq_ci(a, "EX")) {
        return EXP_EX;
    }
    if (eq_ci(a, "PX")) {
        return EXP_PX;
    }
    if (eq_ci(a, "EXAT")) {
        return EXP_EXAT;
    }
    if (eq_ci(a, "PXAT")) {
        return EXP_PXAT;
    }
    return EXP_NONE;
}

/* ---- strings ---- */

int resp_cmd_get(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, NULL, false, &e);
    if (rc == SHALE_NOT_FOUND) {
        hit(c, false);
        return rep_null(c);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    hit(c, true);
    return rep_bulk(c, sl(&c->ss->val));
}

typedef struct set_opts {
    int cond; /* 0, 'N' (NX), 'X' (XX) */
    bool get, keepttl;
    int kind;
    uint64_t deadline;
} set_opts;

/* SET's options from argv[from ..] (Redis's parseExtendedStringArgumentsOrReply). */
static int parse_set(cctx *c, const shale_slice *argv, size_t argc, size_t from, set_opts *o)
{
    *o = (set_opts){0};
    size_t expv = 0;
    for (size_t j = from; j < argc; j++) {
        shale_slice a = argv[j];
        int k = exp_kind(a);
        if (eq_ci(a, "NX") && o->cond != 'X') {
            o->cond = 'N';
        } else if (eq_ci(a, "XX") && o->cond != 'N') {
            o->cond = 'X';
        } else if (eq_ci(a, "GET")) {
            o->get = true;
        } else if (eq_ci(a, "KEEPTTL") && o->kind == EXP_NONE) {
            o->keepttl = true;
        } else if (k != EXP_NONE && o->kind == EXP_NONE && !o->keepttl && j + 1 < argc) {
            o->kind = k;
            expv = ++j;
        } else {
            return err_syntax(c);
        }
    }
    if (o->kind != EXP_NONE) {
        return expire_arg(c, o->kind, argv[expv], &o->deadline);
    }
    return CR_OK;
}

/* SET key value [opts]; also SETNX-like and GETSET callers through argv. */
static int do_set(cctx *c, shale_slice key, shale_slice val, const set_opts *o)
{
    shale_error e;
    shale_code rc;
    if (o->cond == 0 && !o->get && !o->keepttl) {
        rc = resp_cmd_kput(c, key, val, o->deadline, &e);
        return rc != SHALE_OK ? store_err(c, rc, &e) : rep_ok(c);
    }
    shale_entry_info info;
    rc = resp_cmd_kget(c, key, &c->ss->val, &info, true, &e);
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
        return store_err(c, rc, &e);
    }
    bool found = rc == SHALE_OK;
    if ((o->cond == 'N' && found) || (o->cond == 'X' && !found)) {
        if (o->get && found) {
            return rep_bulk(c, sl(&c->ss->val));
        }
        return rep_null(c);
    }
    uint64_t deadline = o->keepttl ? (found ? info.expire_at_ms : 0) : o->deadline;
    rc = resp_cmd_kput(c, key, val, deadline, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    if (o->get) {
        return found ? rep_bulk(c, sl(&c->ss->val)) : rep_null(c);
    }
    return rep_ok(c);
}

int resp_cmd_set(cctx *c, const shale_slice *argv, size_t argc)
{
    set_opts o;
    if (parse_set(c, argv, argc, 3, &o) != CR_OK) {
        return CR_ERR;
    }
    if ((o.cond != 0 || o.get || o.keepttl) && c->txn == NULL) {
        return resp_cmd_with_txn(c, resp_cmd_set, argv, argc);
    }
    return do_set(c, argv[1], argv[2], &o);
}

int resp_cmd_getset(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    set_opts o = {.get = true};
    return do_set(c, argv[1], argv[2], &o);
}

int resp_cmd_setnx(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], NULL, NULL, true, &e);
    if (rc == SHALE_OK) {
        return rep_int(c, 0);
    }
    if (rc != SHALE_NOT_FOUND) {
        return store_err(c, rc, &e);
    }
    rc = resp_cmd_kput(c, argv[1], argv[2], 0, &e);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, 1);
}

/* SETEX key seconds value, PSETEX key ms value. */
int resp_cmd_setex(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    uint64_t deadline = 0;
    int kind = c->cmd->name[0] == 'p' ? EXP_PX : EXP_EX;
    if (expire_arg(c, kind, argv[2], &deadline) != CR_OK) {
        return CR_ERR;
    }
    shale_error e;
    shale_code rc = resp_cmd_kput(c, argv[1], argv[3], deadline, &e);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_ok(c);
}

int resp_cmd_getdel(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, NULL, true, &e);
    if (rc == SHALE_NOT_FOUND) {
        hit(c, false);
        return rep_null(c);
    }
    if (rc == SHALE_OK) {
        rc = resp_cmd_kdel(c, argv[1], &e);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    hit(c, true);
    return rep_bulk(c, sl(&c->ss->val));
}

int resp_cmd_getex(cctx *c, const shale_slice *argv, size_t argc)
{
    int kind = EXP_NONE;
    uint64_t deadline = 0;
    for (size_t j = 2; j < argc; j++) {
        int k = exp_kind(argv[j]);
        if (kind == EXP_NONE && k != EXP_NONE && j + 1 < argc) {
            if (expire_arg(c, k, argv[j + 1], &deadline) != CR_OK) {
                return CR_ERR;
            }
            kind = k;
            j++;
        } else if (kind == EXP_NONE && eq_ci(argv[j], "PERSIST")) {
            kind = EXP_PERSIST;
        } else {
            return err_syntax(c);
        }
    }
    if (kind == EXP_NONE) {
        return resp_cmd_get(c, argv, 2);
    }
    if (c->txn == NULL) {
        return resp_cmd_with_txn(c, resp_cmd_getex, argv, argc);
    }
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, &info, true, &e);
    if (rc == SHALE_NOT_FOUND) {
        hit(c, false);
        return rep_null(c);
    }
    if (rc == SHALE_OK && kind == EXP_PERSIST) {
        if (info.expire_at_ms != 0) {
            rc = resp_cmd_kput(c, argv[1], sl(&c->ss->val), 0, &e);
        }
    } else if (rc == SHALE_OK) {
        rc = deadline <= now_ms() ? resp_cmd_kdel(c, argv[1], &e)
                                  : resp_cmd_kput(c, argv[1], sl(&c->ss->val), deadline, &e);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    hit(c, true);
    return rep_bulk(c, sl(&c->ss->val));
}

int resp_cmd_mget(cctx *c, const shale_slice *argv, size_t argc)
{
    size_t n = argc - 1;
    shale_error e;
    shale_code rc = SHALE_OK;
    shale_buf *vals = calloc(n, sizeof *vals);
    shale_code *codes = calloc(n, sizeof *codes);
    if (vals == NULL || codes == NULL) {
        rc = SHALE_NOMEM;
        e.msg[0] = '\0';
        goto done;
    }
    if (c->txn == NULL) {
        rc = shale_multi_get(c->sv->db, NULL, n, argv + 1, vals, codes, &e);
    } else {
        for (size_t i = 0; i < n && rc == SHALE_OK; i++) {
            codes[i] = shale_txn_get(c->txn, argv[1 + i], &vals[i], &e);
            if (codes[i] != SHALE_OK && codes[i] != SHALE_NOT_FOUND) {
                rc = codes[i];
            }
        }
    }
    for (size_t i = 0; i < n && rc == SHALE_OK; i++) {
        if (codes[i] != SHALE_OK && codes[i] != SHALE_NOT_FOUND) {
            rc = codes[i];
            snprintf(e.msg, sizeof e.msg, "key %zu: %s", i, shale_strerror(rc));
        }
    }
done:;
    int r;
    if (rc != SHALE_OK) {
        r = store_err(c, rc, &e);
    } else {
        r = rep_arr(c, n);
        for (size_t i = 0; i < n; i++) {
            hit(c, codes[i] == SHALE_OK);
            if (codes[i] == SHALE_OK) {
                rep_bulk(c, sl(&vals[i]));
            } else {
                rep_null(c);
            }
        }
    }
    for (size_t i = 0; vals != NULL && i < n; i++) {
        shale_buf_free(&vals[i]);
    }
    free(vals);
    free(codes);
    return r;
}

int resp_cmd_mset(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc % 2 == 0) {
        return err_arity(c, c->cmd->name);
    }
    shale_error e;
    shale_code rc = SHALE_OK;
    if (c->txn != NULL) {
        for (size_t i = 1; i < argc && rc == SHALE_OK; i += 2) {
            rc = resp_cmd_kput(c, argv[i], argv[i + 1], 0, &e);
        }
        return rc != SHALE_OK ? store_err(c, rc, &e) : rep_ok(c);
    }
    /* One atomic batch: no reads, so no transaction is needed. */
    shale_batch *b = shale_batch_new();
    if (b == NULL) {
        return rep_err(c, "ERR out of memory");
    }
    for (size_t i = 1; i < argc && rc == SHALE_OK; i += 2) {
        rc = shale_batch_put(b, argv[i], argv[i + 1], &e);
    }
    if (rc == SHALE_OK) {
        rc = shale_write(c->sv->db, &c->sv->wopts, b, &e);
    }
    shale_batch_free(b);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_ok(c);
}

int resp_cmd_msetnx(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc % 2 == 0) {
        return err_arity(c, c->cmd->name);
    }
    shale_error e;
    shale_code rc;
    for (size_t i = 1; i < argc; i += 2) {
        rc = resp_cmd_kget(c, argv[i], NULL, NULL, true, &e);
        if (rc == SHALE_OK) {
            return rep_int(c, 0);
        }
        if (rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
    }
    for (size_t i = 1; i < argc; i += 2) {
        rc = resp_cmd_kput(c, argv[i], argv[i + 1], 0, &e);
        if (rc != SHALE_OK) {
            return store_err(c, rc, &e);
        }
    }
    return rep_int(c, 1);
}

/* The current value of a counter for update: *found, and its deadline (kept on rewrite). */
static int read_counter(cctx *c, shale_slice key, bool *found, uint64_t *deadline)
{
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, key, &c->ss->val, &info, true, &e);
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
        return store_err(c, rc, &e);
    }
    *found = rc == SHALE_OK;
    *deadline = info.expire_at_ms;
    return CR_OK;
}

static int incr_by(cctx *c, shale_slice key, long long delta)
{
    bool found = false;
    uint64_t deadline = 0;
    long long v = 0;
    if (read_counter(c, key, &found, &deadline) != CR_OK) {
        return CR_ERR;
    }
    if (found && !resp_cmd_str2ll(sl(&c->ss->val), &v)) {
        return err_int(c);
    }
    if ((delta < 0 && v < 0 && delta < LLONG_MIN - v) ||
        (delta > 0 && v > 0 && delta > LLONG_MAX - v)) {
        return rep_err(c, "ERR increment or decrement would overflow");
    }
    v += delta;
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", v);
    shale_error e;
    shale_code rc = resp_cmd_kput(c, key, (shale_slice){num, (size_t)n}, deadline, &e);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, v);
}

/* INCR, DECR, INCRBY, DECRBY. */
int resp_cmd_incr(cctx *c, const shale_slice *argv, size_t argc)
{
    bool decr = c->cmd->name[0] == 'd';
    long long by = 1;
    if (argc == 3 && !resp_cmd_str2ll(argv[2], &by)) {
        return err_int(c);
    }
    if (decr) {
        if (by == LLONG_MIN) {
            return rep_err(c, "ERR decrement would overflow");
        }
        by = -by;
    }
    return incr_by(c, argv[1], by);
}

int resp_cmd_incrbyfloat(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    bool found = false;
    uint64_t deadline = 0;
    long double v = 0, by;
    if (read_counter(c, argv[1], &found, &deadline) != CR_OK) {
        return CR_ERR;
    }
    if ((found && !str2ld(sl(&c->ss->val), &v)) || !str2ld(argv[2], &by)) {
        return rep_err(c, "ERR value is not a valid float");
    }
    v += by;
    if (isnan(v) || isinf(v)) {
        return rep_err(c, "ERR increment would produce NaN or Infinity");
    }
    char num[LD_CHARS];
    size_t n = ld2str(num, sizeof num, v);
    if (n == 0) {
        return rep_err(c, "ERR value is not a valid float");
    }
    shale_error e;
    shale_code rc = resp_cmd_kput(c, argv[1], (shale_slice){num, n}, deadline, &e);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_bulk(c, (shale_slice){num, n});
}

static int too_big(cctx *c, uint64_t len)
{
    if (len > MAX_STRING) {
        return rep_err(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    return CR_OK;
}

int resp_cmd_append(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    bool found = false;
    uint64_t deadline = 0;
    if (read_counter(c, argv[1], &found, &deadline) != CR_OK) {
        return CR_ERR;
    }
    shale_buf *v = &c->ss->val;
    if (too_big(c, (uint64_t)v->len + argv[2].len) != CR_OK) {
        return CR_ERR;
    }
    shale_error e;
    shale_code rc = buf_append(v, argv[2].data, argv[2].len, &e);
    if (rc == SHALE_OK) {
        rc = resp_cmd_kput(c, argv[1], sl(v), deadline, &e);
    }
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, (long long)v->len);
}

int resp_cmd_strlen(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, NULL, false, &e);
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
        return store_err(c, rc, &e);
    }
    return rep_int(c, rc == SHALE_OK ? (long long)c->ss->val.len : 0);
}

int resp_cmd_getrange(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    long long start, end;
    if (!resp_cmd_str2ll(argv[2], &start) || !resp_cmd_str2ll(argv[3], &end)) {
        return err_int(c);
    }
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, NULL, false, &e);
    if (rc == SHALE_NOT_FOUND) {
        return rep_bulk(c, (shale_slice){"", 0});
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    long long len = (long long)c->ss->val.len;
    if (start < 0 && end < 0 && start > end) {
        return rep_bulk(c, (shale_slice){"", 0});
    }
    if (start < 0) {
        start += len;
    }
    if (end < 0) {
        end += len;
    }
    if (start < 0) {
        start = 0;
    }
    if (end < 0) {
        end = 0;
    }
    if (end >= len) {
        end = len - 1;
    }
    if (start > end || len == 0) {
        return rep_bulk(c, (shale_slice){"", 0});
    }
    return rep_bulk(
        c, (shale_slice){(const char *)c->ss->val.data + start, (size_t)(end - start + 1)});
}

int resp_cmd_setrange(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    long long off;
    if (!resp_cmd_str2ll(argv[2], &off)) {
        return err_int(c);
    }
    if (off < 0) {
        return rep_err(c, "ERR offset is out of range");
    }
    bool found = false;
    uint64_t deadline = 0;
    if (read_counter(c, argv[1], &found, &deadline) != CR_OK) {
        return CR_ERR;
    }
    shale_buf *v = &c->ss->val;
    shale_slice add = argv[3];
    if (add.len == 0) {
        return rep_int(c, found ? (long long)v->len : 0);
    }
    if (too_big(c, (uint64_t)off + add.len) != CR_OK) {
        return CR_ERR;
    }
    size_t need = (size_t)off + add.len;
    shale_error e;
    shale_code rc = SHALE_OK;
    if (need > v->len) {
        rc = buf_reserve(v, need - v->len, &e);
        if (rc == SHALE_OK) {
            memset((uint8_t *)v->data + v->len, 0, need - v->len);
            v->len = need;
        }
    }
    if (rc == SHALE_OK) {
        memcpy((uint8_t *)v->data + off, add.data, add.len);
        rc = resp_cmd_kput(c, argv[1], sl(v), deadline, &e);
    }
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, (long long)v->len);
}
