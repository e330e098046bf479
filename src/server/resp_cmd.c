/*
 * resp_cmd: the Redis commands over the key-value store (the contract is in resp_cmd.h). This
 * file holds dispatch, the command table, transactions, the store access every handler uses,
 * and the key-space commands (keys, TTLs, KEYS/SCAN, DBSIZE/RANDOMKEY/FLUSH*); the string
 * commands are in resp_cmd_string.c; the server, its sessions and the connection and
 * administrative commands are in resp_cmd_admin.c; what the three share is in resp_cmd_int.h.
 *
 * Dispatch. A sorted table (name, arity, flags, key positions: what COMMAND reports) drives
 * resp_exec as Redis's processCommand does: lookup (unknown command), arity, authentication,
 * MULTI queueing, then run: the reserved-key check and the handler. Handlers read and write
 * through resp_cmd_kget/kput/kdel and kiter, which go to the command's transaction when there is
 * one (inside EXEC, or a read-modify-write command) and straight to the database otherwise, so
 * one handler serves both. A handler answers CR_OK (a reply appended), CR_ERR (an error reply
 * appended: a transaction of its own is rolled back, not committed) or CR_CONFLICT (a commit-time
 * conflict: the caller discards the reply and retries with a new transaction). A reply buffer that
 * cannot grow sets a sticky flag; resp_exec then cuts `out` back and answers RESP_EXEC_CLOSE.
 *
 * Transactions. An F_TXN command outside EXEC runs in its own snapshot transaction with
 * unchecked writes: every key such a command's outcome depends on is read with
 * shale_txn_get_for_update (validated at commit), and the others are blind writes where the last
 * writer wins, as in Redis. A conflict retries the command (RETRIES times, with a short backoff,
 * then "ERR conflict, try again"); resp_cmd_with_txn does it. EXEC runs its queue in one
 * SERIALIZABLE transaction with checked writes, so the whole queue behaves as if run alone, as
 * Redis runs it; a conflict at commit reruns the whole queue (its replies are rebuilt). Commands
 * inside EXEC answer their own errors in the EXEC array and the others still run (Redis does not
 * roll back either). Because the queue may run more than once, a queued command must leave the
 * session so that a rerun answers the same: UNWATCH inside EXEC changes nothing (EXEC checked the
 * watched keys before the queue, and unwatches after it), and SCAN inside EXEC leaves the cursor it
 * continues valid.
 *
 * Choices where the contract leaves room (a Redis user's reading):
 *   - Empty keys are refused by the store ("ERR empty key"), as is a key over max_key_bytes.
 *   - SCAN cursors: each call that does not finish hands out a new cursor id (1, 2, ...) and
 *     keeps the last key it examined under it; a session keeps SCAN_CURSORS of them, dropping the
 *     least recently used. An unknown id is "ERR invalid cursor" (restarting would make a client
 *     that scans more than SCAN_CURSORS key spaces at once loop forever). COUNT is the number of
 *     keys examined per call, MATCH and TYPE filter them, as Redis does.
 *   - KEYS and SCAN MATCH iterate only the pattern's literal prefix (the bytes before its first
 *     * ? [ or \), so "user:*" does not read the whole store.
 *   - DBSIZE, RANDOMKEY and INFO's keyspace line scan the plain key space (the store's live_keys
 *     counts documents too).
 */
#include "server/resp_cmd.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shale.h"

#include "base/buf.h"
#include "base/error.h"
#include "doc/docdb.h"
#include "server/resp.h"
#include "server/resp_cmd_int.h"

#define RETRIES      64
#define FLUSH_BATCH  1024
#define SCRATCH_KEEP (1u << 20)

static int run_cmd(cctx *c, const cmd_def *d, const shale_slice *argv, size_t argc);
static void group_leave(resp_session *ss);

/* ---- small helpers ---- */

static bool reserved_key(shale_slice k)
{
    const uint8_t *p = k.data;
    return k.len >= 2 && p[0] == DOC_PREFIX0 && p[1] == DOC_PREFIX1;
}

/* Redis's string2ll (the contract is in resp_cmd_int.h). */
bool resp_cmd_str2ll(shale_slice s, long long *out)
{
    const unsigned char *p = s.data;
    size_t n = s.len, i = 0;
    bool neg = false;
    unsigned long long v = 0;

    if (n == 0 || n > 20) {
        return false;
    }
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    if (p[0] == '-') {
        neg = true;
        i = 1;
        if (n == 1) {
            return false;
        }
    }
    if (p[i] < '1' || p[i] > '9') {
        return false;
    }
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        unsigned d = p[i] - '0';
        if (v > (ULLONG_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1) {
            return false;
        }
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > LLONG_MAX) {
            return false;
        }
        *out = (long long)v;
    }
    return true;
}

/* Redis's stringmatchlen (glob: * ? [abc] [^a] [a-z] \x), bounded: the pattern is not
 * NUL-terminated here, and a '*' that failed everywhere stops the longer tries (skip). */
static bool gmatch(const unsigned char *p, size_t plen, const unsigned char *s, size_t slen,
                   bool nocase, bool *skip, int nesting)
{
    if (nesting > 1000) {
        return false;
    }
    while (plen > 0 && slen > 0) {
        int op = p[0];
        if (op == '\\') {
            if (plen >= 2) {
                p++;
                plen--;
            }
            op = 0x100; /* no case: a literal */
        }
        switch (op) {
        case '*':
            while (plen > 1 && p[1] == '*') {
                p++;
                plen--;
            }
            if (plen == 1) {
                return true;
            }
            while (slen > 0) {
                if (gmatch(p + 1, plen - 1, s, slen, nocase, skip, nesting + 1)) {
                    return true;
                }
                if (*skip) {
                    return false;
                }
                s++;
                slen--;
            }
            *skip = true;
            return false;
        case '?':
            s++;
            slen--;
            break;
        case '[': {
            bool neg, match = false;
            p++;
            plen--;
            neg = plen > 0 && p[0] == '^';
            if (neg) {
                p++;
                plen--;
            }
            for (;;) {
                if (plen == 0) {
                    /* An unclosed class: what was read of it decides; step back so the
                     * advance below ends the pattern. */
                    p--;
                    plen++;
                    break;
                }
                if (p[0] == '\\' && plen >= 2) {
                    p++;
                    plen--;
                    if (p[0] == s[0]) {
                        match = true;
                    }
                } else if (p[0] == ']') {
                    break;
                } else if (plen >= 3 && p[1] == '-') {
                    int lo = p[0], hi = p[2], ch = s[0];
                    if (lo > hi) {
                        int t = lo;
                        lo = hi;
                        hi = t;
                    }
                    if (nocase) {
                        lo = tolower(lo);
                        hi = tolower(hi);
                        ch = tolower(ch);
                    }
                    p += 2;
                    plen -= 2;
                    if (ch >= lo && ch <= hi) {
                        match = true;
                    }
                } else if (nocase ? tolower(p[0]) == tolower(s[0]) : p[0] == s[0]) {
                    match = true;
                }
                p++;
                plen--;
            }
            if (neg) {
                match = !match;
            }
            if (!match) {
                return false;
            }
            s++;
            slen--;
            break;
        }
        default: /* a literal byte, or the one after a backslash */
            if (nocase ? tolower(p[0]) != tolower(s[0]) : p[0] != s[0]) {
                return false;
            }
            s++;
            slen--;
            break;
        }
        p++;
        plen--;
        if (slen == 0) {
            while (plen > 0 && p[0] == '*') {
                p++;
                plen--;
            }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

/* Redis's stringmatchlen: the pattern's matches over bytes, optionally ignoring case. */
bool resp_cmd_glob_match(shale_slice pat, shale_slice s, bool nocase)
{
    bool skip = false;
    return gmatch(pat.data, pat.len, s.data, s.len, nocase, &skip, 0);
}

/* The literal bytes a pattern's matches all start with. */
static shale_slice glob_prefix(shale_slice pat)
{
    const char *p = pat.data;
    size_t n = 0;
    while (n < pat.len && p[n] != '*' && p[n] != '?' && p[n] != '[' && p[n] != '\\') {
        n++;
    }
    return (shale_slice){pat.data, n};
}

/* ---- the store, through the command's transaction when it has one ---- */

/* The contracts of resp_cmd_kget/kput/kdel and resp_cmd_with_txn are in resp_cmd_int.h. */

shale_code resp_cmd_kget(cctx *c, shale_slice key, shale_buf *val, shale_entry_info *info, bool upd,
                         shale_error *e)
{
    if (info != NULL) {
        *info = (shale_entry_info){0};
    }
    if (c->txn == NULL) {
        return shale_get_info(c->sv->db, NULL, key, val, info, e);
    }
    if (!upd) {
        return shale_txn_get_info(c->txn, key, val, info, e);
    }
    shale_code rc = shale_txn_get_for_update(c->txn, key, val, e);
    if (rc != SHALE_OK || info == NULL) {
        return rc;
    }
    return shale_txn_get_info(c->txn, key, NULL, info, e);
}

shale_code resp_cmd_kput(cctx *c, shale_slice key, shale_slice val, uint64_t expire_at_ms,
                         shale_error *e)
{
    if (c->txn != NULL) {
        return shale_txn_put_ttl(c->txn, key, val, expire_at_ms, e);
    }
    return shale_put_ttl(c->sv->db, &c->sv->wopts, key, val, expire_at_ms, e);
}

shale_code resp_cmd_kdel(cctx *c, shale_slice key, shale_error *e)
{
    if (c->txn != NULL) {
        return shale_txn_delete(c->txn, key, e);
    }
    return shale_delete(c->sv->db, &c->sv->wopts, key, e);
}

static shale_code kiter(cctx *c, shale_slice prefix, shale_iter **it, shale_error *e)
{
    shale_read_opts ro = {.prefix = prefix};
    if (c->txn != NULL) {
        return shale_txn_iter_new(c->txn, &ro, it, e);
    }
    return shale_iter_new(c->sv->db, &ro, it, e);
}

/* Moves a valid iterator past the document layer's keys. */
static void skip_reserved(shale_iter *it)
{
    static const uint8_t past[2] = {DOC_PREFIX0, DOC_PREFIX1 + 1};
    if (shale_iter_valid(it) && reserved_key(shale_iter_key(it))) {
        shale_iter_seek(it, (shale_slice){past, sizeof past});
    }
}

/* xorshift64*: RANDOMKEY's choice, per session (no shared state between threads). */
static uint64_t rng_next(resp_session *ss)
{
    ss->rng ^= ss->rng >> 12;
    ss->rng ^= ss->rng << 25;
    ss->rng ^= ss->rng >> 27;
    return ss->rng * 0x2545F4914F6CDD1DULL;
}

static void it_first(shale_iter *it)
{
    shale_iter_seek_first(it);
    skip_reserved(it);
}

static void it_next(shale_iter *it)
{
    shale_iter_next(it);
    skip_reserved(it);
}

/* Runs fn in a transaction of its own, retried on conflict. */
int resp_cmd_with_txn(cctx *c, cmd_fn fn, const shale_slice *argv, size_t argc)
{
    size_t mark = c->out->len;
    shale_txn_opts o = {.unchecked_writes = true, .durability = c->sv->wopts.durability};
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        if (attempt >= 2) {
            if (attempt < 8) {
                sched_yield();
            } else {
                struct timespec ts = {0, (long)(attempt * 20000)};
                nanosleep(&ts, NULL);
            }
        }
        shale_error e;
        shale_code rc = shale_txn_begin(c->sv->db, &o, &c->txn, &e);
        if (rc != SHALE_OK) {
            c->txn = NULL;
            return store_err(c, rc, &e);
        }
        int r = fn(c, argv, argc);
        rc = SHALE_OK;
        if (r == CR_OK && !c->oom) {
            rc = shale_txn_commit(c->txn, &e);
        }
        shale_txn_free(c->txn); /* rolls back what was not committed */
        c->txn = NULL;
        if (c->oom) {
            return CR_OK;
        }
        if (r == CR_CONFLICT || rc == SHALE_CONFLICT) {
            c->out->len = mark;
            continue;
        }
        if (rc != SHALE_OK) {
            c->out->len = mark;
            return store_err(c, rc, &e);
        }
        return r;
    }
    return rep_err(c, "ERR conflict, try again");
}

/* ---- keys and their deadlines ---- */

/* A stored deadline as Redis's signed milliseconds. The store takes any uint64_t (a key written
 * through the C API may carry one past LLONG_MAX): such a deadline is the farthest one. */
static long long deadline_ll(uint64_t expire_at_ms)
{
    return expire_at_ms > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)expire_at_ms;
}

/* DEL and UNLINK. */
static int cmd_del(cctx *c, const shale_slice *argv, size_t argc)
{
    long long n = 0;
    shale_error e;
    for (size_t i = 1; i < argc; i++) {
        shale_code rc = resp_cmd_kget(c, argv[i], NULL, NULL, true, &e);
        if (rc == SHALE_OK) {
            rc = resp_cmd_kdel(c, argv[i], &e);
            n++;
        }
        if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
    }
    return rep_int(c, n);
}

/* EXISTS and TOUCH. */
static int cmd_exists(cctx *c, const shale_slice *argv, size_t argc)
{
    long long n = 0;
    shale_error e;
    for (size_t i = 1; i < argc; i++) {
        shale_code rc = resp_cmd_kget(c, argv[i], NULL, NULL, false, &e);
        if (rc == SHALE_OK) {
            n++;
        } else if (rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
    }
    return rep_int(c, n);
}

static int cmd_type(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_code rc = resp_cmd_kget(c, argv[1], NULL, NULL, false, &e);
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
        return store_err(c, rc, &e);
    }
    return rep_simple(c, rc == SHALE_OK ? "string" : "none");
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key t [NX|XX|GT|LT] (Redis's expireGenericCommand). */
static int cmd_expire(cctx *c, const shale_slice *argv, size_t argc)
{
    const char *name = c->cmd->name;
    bool ms = name[0] == 'p', absolute = strstr(name, "at") != NULL;
    bool nx = false, xx = false, gt = false, lt = false;
    long long when;
    for (size_t j = 3; j < argc; j++) {
        if (eq_ci(argv[j], "NX")) {
            nx = true;
        } else if (eq_ci(argv[j], "XX")) {
            xx = true;
        } else if (eq_ci(argv[j], "GT")) {
            gt = true;
        } else if (eq_ci(argv[j], "LT")) {
            lt = true;
        } else {
            return rep_errf(c, "ERR Unsupported option %.*s",
                            (int)(argv[j].len > 64 ? 64 : argv[j].len), (const char *)argv[j].data);
        }
    }
    if (nx && (xx || gt || lt)) {
        return rep_err(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if (gt && lt) {
        return rep_err(c, "ERR GT and LT options at the same time are not compatible");
    }
    if (!resp_cmd_str2ll(argv[2], &when)) {
        return err_int(c);
    }
    long long now = (long long)now_ms();
    if (!ms) {
        if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000) {
            return rep_errf(c, "ERR invalid expire time in '%s' command", name);
        }
        when *= 1000;
    }
    if (!absolute) {
        if (when > LLONG_MAX - now) {
            return rep_errf(c, "ERR invalid expire time in '%s' command", name);
        }
        when += now;
    }
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, &info, true, &e);
    if (rc == SHALE_NOT_FOUND) {
        return rep_int(c, 0);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    long long cur = deadline_ll(info.expire_at_ms); /* 0: none, an infinite TTL for GT/LT */
    if ((nx && cur != 0) || (xx && cur == 0) || (gt && (cur == 0 || when <= cur)) ||
        (lt && cur != 0 && when >= cur)) {
        return rep_int(c, 0);
    }
    rc = when <= now ? resp_cmd_kdel(c, argv[1], &e)
                     : resp_cmd_kput(c, argv[1], sl(&c->ss->val), (uint64_t)when, &e);
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, 1);
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME. */
static int cmd_ttl(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    const char *name = c->cmd->name;
    bool ms = name[0] == 'p', absolute = strstr(name, "time") != NULL;
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, argv[1], NULL, &info, false, &e);
    if (rc == SHALE_NOT_FOUND) {
        return rep_int(c, -2);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    if (info.expire_at_ms == 0) {
        return rep_int(c, -1);
    }
    long long ttl = deadline_ll(info.expire_at_ms);
    if (!absolute) {
        ttl -= (long long)now_ms();
        if (ttl < 0) {
            ttl = 0;
        }
    }
    /* Seconds are rounded to the nearest, EXPIRETIME's too (Redis's ttlGenericCommand). */
    return rep_int(c, ms ? ttl : ttl / 1000 + (ttl % 1000 >= 500));
}

static int cmd_persist(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, &info, true, &e);
    if (rc == SHALE_NOT_FOUND || (rc == SHALE_OK && info.expire_at_ms == 0)) {
        return rep_int(c, 0);
    }
    if (rc == SHALE_OK) {
        rc = resp_cmd_kput(c, argv[1], sl(&c->ss->val), 0, &e);
    }
    return rc != SHALE_OK ? store_err(c, rc, &e) : rep_int(c, 1);
}

/* RENAME and RENAMENX. */
static int cmd_rename(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    bool nx = strcmp(c->cmd->name, "renamenx") == 0;
    shale_error e;
    shale_entry_info info;
    shale_code rc = resp_cmd_kget(c, argv[1], &c->ss->val, &info, true, &e);
    if (rc == SHALE_NOT_FOUND) {
        return rep_err(c, "ERR no such key");
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    bool same = argv[1].len == argv[2].len && memcmp(argv[1].data, argv[2].data, argv[1].len) == 0;
    if (same) {
        return nx ? rep_int(c, 0) : rep_ok(c);
    }
    if (nx) {
        rc = resp_cmd_kget(c, argv[2], NULL, NULL, true, &e);
        if (rc == SHALE_OK) {
            return rep_int(c, 0);
        }
        if (rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
    }
    rc = resp_cmd_kput(c, argv[2], sl(&c->ss->val), info.expire_at_ms, &e);
    if (rc == SHALE_OK) {
        rc = resp_cmd_kdel(c, argv[1], &e);
    }
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    return nx ? rep_int(c, 1) : rep_ok(c);
}

/* ---- the key space ---- */

static int iter_fail(cctx *c, shale_iter *it)
{
    shale_error e;
    shale_code rc = shale_iter_status(it, &e);
    shale_iter_free(it);
    return rc != SHALE_OK ? store_err(c, rc, &e) : CR_OK;
}

static int cmd_keys(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    shale_iter *it;
    shale_error e;
    shale_slice pat = argv[1];
    shale_code rc = kiter(c, glob_prefix(pat), &it, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    shale_buf *acc = &c->ss->aux;
    acc->len = 0;
    size_t n = 0;
    bool all = pat.len == 1 && ((const char *)pat.data)[0] == '*';
    for (it_first(it); shale_iter_valid(it); it_next(it)) {
        shale_slice k = shale_iter_key(it);
        if (all || resp_cmd_glob_match(pat, k, false)) {
            if (resp_w_bulk(acc, k, NULL) != SHALE_OK) {
                c->oom = true;
                break;
            }
            n++;
        }
    }
    if (iter_fail(c, it) != CR_OK) {
        return CR_ERR;
    }
    rep_arr(c, n);
    return rep_raw(c, acc);
}

/* The session's cursor slot with id `id`, or NULL. */
static scan_cursor *cursor_find(resp_session *ss, uint64_t id)
{
    for (size_t i = 0; i < SCAN_CURSORS; i++) {
        if (ss->cursors[i].id == id && id != 0) {
            return &ss->cursors[i];
        }
    }
    return NULL;
}

/* A slot for a new cursor: `cur` when continuing, else a free or the least recently used. */
static scan_cursor *cursor_slot(resp_session *ss, scan_cursor *cur)
{
    if (cur != NULL) {
        return cur;
    }
    scan_cursor *best = &ss->cursors[0];
    for (size_t i = 0; i < SCAN_CURSORS; i++) {
        scan_cursor *x = &ss->cursors[i];
        if (x->id == 0) {
            return x;
        }
        if (x->used < best->used) {
            best = x;
        }
    }
    return best;
}

static int cmd_scan(cctx *c, const shale_slice *argv, size_t argc)
{
    resp_session *ss = c->ss;
    unsigned long long id = 0;
    scan_cursor *cur = NULL;
    const unsigned char *cp = argv[1].data;
    if (argv[1].len == 0 || argv[1].len > 20) {
        return rep_err(c, "ERR invalid cursor");
    }
    for (size_t i = 0; i < argv[1].len; i++) {
        if (cp[i] < '0' || cp[i] > '9' || id > (ULLONG_MAX - (cp[i] - '0')) / 10) {
            return rep_err(c, "ERR invalid cursor");
        }
        id = id * 10 + (cp[i] - '0');
    }
    if (id != 0 && (cur = cursor_find(ss, id)) == NULL) {
        return rep_err(c, "ERR invalid cursor");
    }
    shale_slice pat = {NULL, 0};
    long long count = 10;
    bool none = false, has_pat = false;
    for (size_t j = 2; j < argc; j += 2) {
        if (j + 1 >= argc) {
            return err_syntax(c);
        }
        if (eq_ci(argv[j], "MATCH")) {
            pat = argv[j + 1];
            has_pat = !(pat.len == 1 && ((const char *)pat.data)[0] == '*');
        } else if (eq_ci(argv[j], "COUNT")) {
            if (!resp_cmd_str2ll(argv[j + 1], &count)) {
                return err_int(c);
            }
            if (count < 1) {
                return err_syntax(c);
            }
        } else if (eq_ci(argv[j], "TYPE")) {
            none = !eq_ci(argv[j + 1], "string");
        } else {
            return err_syntax(c);
        }
    }
    shale_iter *it;
    shale_error e;
    shale_code rc = kiter(c, has_pat ? glob_prefix(pat) : (shale_slice){NULL, 0}, &it, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    if (cur == NULL) {
        it_first(it);
    } else {
        shale_iter_seek(it, sl(&cur->last));
        skip_reserved(it);
        if (shale_iter_valid(it)) {
            shale_slice k = shale_iter_key(it);
            if (k.len == cur->last.len && memcmp(k.data, cur->last.data, k.len) == 0) {
                it_next(it);
            }
        }
    }
    shale_buf *acc = &ss->aux, *last = &ss->scan_last;
    acc->len = 0;
    last->len = 0;
    size_t n = 0;
    for (long long seen = 0; seen < count && shale_iter_valid(it) && !c->oom; seen++) {
        shale_slice k = shale_iter_key(it);
        if (buf_set(last, k.data, k.len, NULL) != SHALE_OK) {
            c->oom = true;
        }
        if (!none && (!has_pat || resp_cmd_glob_match(pat, k, false))) {
            if (resp_w_bulk(acc, k, NULL) != SHALE_OK) {
                c->oom = true;
            }
            n++;
        }
        it_next(it);
    }
    /* Remember where this call stopped (the last key examined); "0" when nothing is left. The
     * cursor continued gives its slot to the new one, except inside EXEC (SCAN's only
     * transaction), whose queue runs again after a conflict: there it stays valid, and most
     * recently used so that the new one does not take its slot. */
    bool keep = c->txn != NULL;
    char idtxt[24] = "0";
    if (keep && cur != NULL) {
        cur->used = ++ss->cursor_tick;
    }
    if (shale_iter_valid(it) && last->len > 0) {
        scan_cursor *slot = cursor_slot(ss, keep ? NULL : cur);
        shale_buf t = slot->last;
        slot->last = *last;
        *last = t;
        slot->id = ++ss->cursor_seq;
        slot->used = ++ss->cursor_tick;
        snprintf(idtxt, sizeof idtxt, "%" PRIu64, slot->id);
    } else if (cur != NULL && !keep) {
        cur->id = 0;
        cur->last.len = 0;
    }
    if (iter_fail(c, it) != CR_OK) {
        return CR_ERR;
    }
    rep_arr(c, 2);
    rep_cstr(c, idtxt);
    rep_arr(c, n);
    return rep_raw(c, acc);
}

/* Counts the plain keys (and those with a deadline). */
int resp_cmd_count_keys(cctx *c, uint64_t *keys, uint64_t *expires)
{
    shale_iter *it;
    shale_error e;
    shale_code rc = kiter(c, (shale_slice){NULL, 0}, &it, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    *keys = *expires = 0;
    for (it_first(it); shale_iter_valid(it); it_next(it)) {
        (*keys)++;
        if (shale_iter_info(it).expire_at_ms != 0) {
            (*expires)++;
        }
    }
    return iter_fail(c, it);
}

static int cmd_dbsize(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    uint64_t keys, expires;
    if (resp_cmd_count_keys(c, &keys, &expires) != CR_OK) {
        return CR_ERR;
    }
    return rep_int(c, (long long)keys);
}

static int cmd_randomkey(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    shale_iter *it;
    shale_error e;
    shale_code rc = kiter(c, (shale_slice){NULL, 0}, &it, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    it_first(it);
    if (!shale_iter_valid(it)) {
        iter_fail(c, it);
        return c->oom ? CR_OK : rep_null(c);
    }
    /* A random key between the first and the last: their common prefix, then a random byte
     * between theirs, then random bytes. Keys in dense stretches are picked less often, but
     * every key can be. */
    shale_buf *lo = &c->ss->aux;
    shale_slice f = shale_iter_key(it);
    if (buf_set(lo, f.data, f.len, NULL) != SHALE_OK) {
        shale_iter_free(it);
        return rep_err(c, "ERR out of memory");
    }
    shale_iter_seek_last(it);
    if (shale_iter_valid(it) && reserved_key(shale_iter_key(it))) {
        /* Every plain key sorts below the document layer's: the last one is just before them. */
        static const uint8_t doc[2] = {DOC_PREFIX0, DOC_PREFIX1};
        shale_iter_seek(it, (shale_slice){doc, sizeof doc});
        shale_iter_prev(it);
    }
    if (shale_iter_valid(it)) {
        shale_slice l = shale_iter_key(it);
        const uint8_t *a = lo->data, *b = l.data;
        uint8_t target[40];
        size_t cp = 0;
        while (cp < lo->len && cp < l.len && cp < 16 && a[cp] == b[cp]) {
            cp++;
        }
        memcpy(target, b, cp);
        unsigned lob = cp < lo->len ? a[cp] : 0, hib = cp < l.len ? b[cp] : 255;
        uint64_t r = rng_next(c->ss);
        target[cp] = (uint8_t)(lob + (hib >= lob ? r % (hib - lob + 1) : 0));
        r = rng_next(c->ss);
        for (size_t i = 1; i <= 8; i++) {
            target[cp + i] = (uint8_t)(r >> (8 * (i - 1)));
        }
        shale_iter_seek(it, (shale_slice){target, cp + 9});
        skip_reserved(it);
    }
    if (!shale_iter_valid(it)) {
        it_first(it);
    }
    if (shale_iter_valid(it)) {
        rep_bulk(c, shale_iter_key(it));
    }
    return iter_fail(c, it);
}

/* FLUSHALL and FLUSHDB [ASYNC|SYNC]: deletes the plain key space, in batches (a transaction
 * inside EXEC); the document layer's keys stay. */
static int cmd_flushall(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc > 2 || (argc == 2 && !eq_ci(argv[1], "ASYNC") && !eq_ci(argv[1], "SYNC"))) {
        return err_syntax(c);
    }
    shale_iter *it;
    shale_error e;
    shale_code rc = kiter(c, (shale_slice){NULL, 0}, &it, &e);
    if (rc != SHALE_OK) {
        return store_err(c, rc, &e);
    }
    shale_batch *b = c->txn == NULL ? shale_batch_new() : NULL;
    if (c->txn == NULL && b == NULL) {
        shale_iter_free(it);
        return rep_err(c, "ERR out of memory");
    }
    for (it_first(it); shale_iter_valid(it) && rc == SHALE_OK; it_next(it)) {
        if (b == NULL) {
            rc = resp_cmd_kdel(c, shale_iter_key(it), &e);
            continue;
        }
        rc = shale_batch_delete(b, shale_iter_key(it), &e);
        if (rc == SHALE_OK && shale_batch_count(b) >= FLUSH_BATCH) {
            rc = shale_write(c->sv->db, &c->sv->wopts, b, &e);
            shale_batch_clear(b);
        }
    }
    if (rc == SHALE_OK && b != NULL && shale_batch_count(b) > 0) {
        rc = shale_write(c->sv->db, &c->sv->wopts, b, &e);
    }
    shale_batch_free(b);
    if (rc != SHALE_OK) {
        shale_iter_free(it);
        return store_err(c, rc, &e);
    }
    if (iter_fail(c, it) != CR_OK) {
        return CR_ERR;
    }
    return rep_ok(c);
}

/* ---- MULTI / EXEC / WATCH ---- */

static void queue_clear(resp_session *ss)
{
    for (size_t i = 0; i < ss->nqueue; i++) {
        free(ss->queue[i].argv);
    }
    ss->nqueue = 0;
    ss->in_multi = false;
    ss->dirty = false;
    atomic_store(&ss->multi, -1);
}

static void unwatch(resp_session *ss)
{
    for (size_t i = 0; i < ss->nwatch; i++) {
        shale_buf_free(&ss->watch[i].key);
    }
    ss->nwatch = 0;
}

static bool queue_add(resp_session *ss, const shale_slice *argv, size_t argc)
{
    if (ss->nqueue == ss->capqueue) {
        size_t cap = ss->capqueue ? ss->capqueue * 2 : 8;
        qcmd *q = realloc(ss->queue, cap * sizeof *q);
        if (q == NULL) {
            return false;
        }
        ss->queue = q;
        ss->capqueue = cap;
    }
    size_t bytes = argc * sizeof(shale_slice);
    for (size_t i = 0; i < argc; i++) {
        if (argv[i].len > SIZE_MAX - bytes) {
            return false;
        }
        bytes += argv[i].len;
    }
    shale_slice *v = malloc(bytes ? bytes : 1);
    if (v == NULL) {
        return false;
    }
    char *p = (char *)(v + argc);
    for (size_t i = 0; i < argc; i++) {
        if (argv[i].len > 0) {
            memcpy(p, argv[i].data, argv[i].len);
        }
        v[i] = (shale_slice){p, argv[i].len};
        p += argv[i].len;
    }
    ss->queue[ss->nqueue++] = (qcmd){argc, v};
    atomic_store(&ss->multi, (int)(ss->nqueue > INT_MAX ? INT_MAX : ss->nqueue));
    return true;
}

static int cmd_multi(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    if (c->ss->in_multi) {
        return rep_err(c, "ERR MULTI calls can not be nested");
    }
    c->ss->in_multi = true;
    c->ss->dirty = false;
    atomic_store(&c->ss->multi, 0);
    return rep_ok(c);
}

static int cmd_discard(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    if (!c->ss->in_multi) {
        return rep_err(c, "ERR DISCARD without MULTI");
    }
    queue_clear(c->ss);
    unwatch(c->ss);
    return rep_ok(c);
}

static int cmd_watch(cctx *c, const shale_slice *argv, size_t argc)
{
    resp_session *ss = c->ss;
    if (ss->in_multi) {
        return rep_err(c, "ERR WATCH inside MULTI is not allowed");
    }
    for (size_t i = 1; i < argc; i++) {
        bool dup = false;
        for (size_t j = 0; j < ss->nwatch && !dup; j++) {
            dup = ss->watch[j].key.len == argv[i].len &&
                  memcmp(ss->watch[j].key.data, argv[i].data, argv[i].len) == 0;
        }
        if (dup) {
            continue;
        }
        shale_error e;
        shale_entry_info info;
        shale_code rc = resp_cmd_kget(c, argv[i], NULL, &info, false, &e);
        if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
        if (ss->nwatch == ss->capwatch) {
            size_t cap = ss->capwatch ? ss->capwatch * 2 : 8;
            watched *w = realloc(ss->watch, cap * sizeof *w);
            if (w == NULL) {
                return rep_err(c, "ERR out of memory");
            }
            ss->watch = w;
            ss->capwatch = cap;
        }
        watched *w = &ss->watch[ss->nwatch];
        *w = (watched){.seq = rc == SHALE_OK ? info.seq : 0};
        if (buf_set(&w->key, argv[i].data, argv[i].len, NULL) != SHALE_OK) {
            shale_buf_free(&w->key);
            return rep_err(c, "ERR out of memory");
        }
        ss->nwatch++;
    }
    return rep_ok(c);
}

/* Inside EXEC (the only place UNWATCH has a transaction) it changes nothing: EXEC checked the
 * watched keys before the queue and unwatches after it, and a rerun of the queue after a
 * conflict must check them again. */
static int cmd_unwatch(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    if (c->txn == NULL) {
        unwatch(c->ss);
    }
    return rep_ok(c);
}

/* One run of the queue in transaction c->txn: CR_OK (replies appended, or the null array when
 * a watched key changed: *aborted), CR_CONFLICT, or CR_ERR (a store failure, reply appended). */
static int exec_once(cctx *c, bool *aborted)
{
    resp_session *ss = c->ss;
    for (size_t i = 0; i < ss->nwatch; i++) {
        shale_error e;
        shale_entry_info info;
        shale_code rc = resp_cmd_kget(c, sl(&ss->watch[i].key), NULL, &info, false, &e);
        if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
            return store_err(c, rc, &e);
        }
        if ((rc == SHALE_OK ? info.seq : 0) != ss->watch[i].seq) {
            *aborted = true;
            return wr(c, resp_w_null_array(c->out, proto(c), NULL));
        }
    }
    rep_arr(c, ss->nqueue);
    for (size_t i = 0; i < ss->nqueue && !c->oom; i++) {
        const qcmd *q = &ss->queue[i];
        const cmd_def *d = resp_cmd_lookup(q->argv[0]);
        const cmd_def *saved = c->cmd;
        c->cmd = d;
        int r = run_cmd(c, d, q->argv, q->argc);
        c->cmd = saved;
        if (r == CR_CONFLICT) {
            return CR_CONFLICT;
        }
    }
    return CR_OK;
}

static int cmd_exec(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    resp_session *ss = c->ss;
    if (!ss->in_multi) {
        return rep_err(c, "ERR EXEC without MULTI");
    }
    if (ss->dirty) {
        queue_clear(ss);
        unwatch(ss);
        return rep_err(c, "EXECABORT Transaction discarded because of previous errors.");
    }
    /* The queue runs with the MULTI state off: queued commands run, not queue again. */
    ss->in_multi = false;
    size_t mark = c->out->len;
    shale_txn_opts o = {.isolation = SHALE_ISOLATION_SERIALIZABLE,
                        .durability = c->sv->wopts.durability};
    int r = CR_CONFLICT;
    for (int attempt = 0; attempt < RETRIES && r == CR_CONFLICT; attempt++) {
        if (attempt >= 2) {
            struct timespec ts = {0, (long)(attempt * 20000)};
            nanosleep(&ts, NULL);
        }
        c->out->len = mark;
        shale_error e;
        shale_code rc = shale_txn_begin(c->sv->db, &o, &c->txn, &e);
        if (rc != SHALE_OK) {
            c->txn = NULL;
            r = store_err(c, rc, &e);
            break;
        }
        bool aborted = false;
        r = exec_once(c, &aborted);
        rc = SHALE_OK;
        if (r == CR_OK && !aborted && !c->oom) {
            rc = shale_txn_commit(c->txn, &e);
        }
        shale_txn_free(c->txn);
        c->txn = NULL;
        if (c->oom) {
            break;
        }
        if (rc == SHALE_CONFLICT) {
            r = CR_CONFLICT;
        } else if (rc != SHALE_OK) {
            c->out->len = mark;
            r = store_err(c, rc, &e);
        }
    }
    if (r == CR_CONFLICT) {
        c->out->len = mark;
        r = rep_err(c, "ERR conflict, try again");
    }
    queue_clear(ss);
    unwatch(ss);
    return r;
}

static void cursors_clear(resp_session *ss)
{
    for (size_t i = 0; i < SCAN_CURSORS; i++) {
        ss->cursors[i].id = 0;
        shale_buf_free(&ss->cursors[i].last);
    }
}

void resp_cmd_session_reset(resp_session *ss)
{
    queue_clear(ss);
    unwatch(ss);
    cursors_clear(ss);
}

void resp_cmd_session_release(resp_session *ss)
{
    resp_cmd_session_reset(ss);
    group_leave(ss);
    free(ss->queue);
    ss->queue = NULL;
    ss->capqueue = 0;
    free(ss->watch);
    ss->watch = NULL;
    ss->capwatch = 0;
    shale_buf_free(&ss->val);
    shale_buf_free(&ss->aux);
    shale_buf_free(&ss->scan_last);
}

/* ---- the table ---- */

#define RW  (F_WRITE | F_DENYOOM)
#define CTL (F_NOSCRIPT | F_LOADING | F_STALE | F_FAST | F_ALLOWBUSY)

/* Sorted by name (bsearch; resp_server_new asserts it). The resp_cmd_* handlers are in
 * resp_cmd_string.c (the @string ones) and resp_cmd_admin.c (the others). */
const cmd_def resp_cmd_table[] = {
    {"append", resp_cmd_append, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"auth", resp_cmd_auth, -2, CTL | F_NOAUTH, 0, 0, 0, "@connection"},
    {"client", resp_cmd_client, -2, F_NOSCRIPT | F_LOADING | F_STALE, 0, 0, 0, "@connection"},
    {"command", resp_cmd_command, -1, F_LOADING | F_STALE, 0, 0, 0, "@connection"},
    {"config", resp_cmd_config, -2, F_ADMIN | F_NOSCRIPT | F_LOADING | F_STALE, 0, 0, 0, "@admin"},
    {"dbsize", cmd_dbsize, 1, F_READONLY | F_FAST, 0, 0, 0, "@keyspace"},
    {"decr", resp_cmd_incr, 2, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"decrby", resp_cmd_incr, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"del", cmd_del, -2, F_WRITE | F_TXN, 1, -1, 1, "@keyspace"},
    {"discard", cmd_discard, 1, CTL | F_CTRL, 0, 0, 0, "@transaction"},
    {"echo", resp_cmd_echo, 2, F_FAST, 0, 0, 0, "@connection"},
    {"exec", cmd_exec, 1, F_NOSCRIPT | F_LOADING | F_STALE | F_CTRL, 0, 0, 0, "@transaction"},
    {"exists", cmd_exists, -2, F_READONLY | F_FAST, 1, -1, 1, "@keyspace"},
    {"expire", cmd_expire, -3, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@keyspace"},
    {"expireat", cmd_expire, -3, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@keyspace"},
    {"expiretime", cmd_ttl, 2, F_READONLY | F_FAST, 1, 1, 1, "@keyspace"},
    {"flushall", cmd_flushall, -1, F_WRITE, 0, 0, 0, "@keyspace"},
    {"flushdb", cmd_flushall, -1, F_WRITE, 0, 0, 0, "@keyspace"},
    {"get", resp_cmd_get, 2, F_READONLY | F_FAST, 1, 1, 1, "@string"},
    {"getdel", resp_cmd_getdel, 2, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"getex", resp_cmd_getex, -2, F_WRITE | F_FAST, 1, 1, 1, "@string"},
    {"getrange", resp_cmd_getrange, 4, F_READONLY, 1, 1, 1, "@string"},
    {"getset", resp_cmd_getset, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"hello", resp_cmd_hello, -1, CTL | F_NOAUTH, 0, 0, 0, "@connection"},
    {"incr", resp_cmd_incr, 2, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"incrby", resp_cmd_incr, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"incrbyfloat", resp_cmd_incrbyfloat, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"info", resp_cmd_info, -1, F_LOADING | F_STALE, 0, 0, 0, "@dangerous"},
    {"keys", cmd_keys, 2, F_READONLY, 0, 0, 0, "@keyspace"},
    {"mget", resp_cmd_mget, -2, F_READONLY | F_FAST, 1, -1, 1, "@string"},
    {"mset", resp_cmd_mset, -3, RW, 1, -1, 2, "@string"},
    {"msetnx", resp_cmd_msetnx, -3, RW | F_TXN, 1, -1, 2, "@string"},
    {"multi", cmd_multi, 1, CTL | F_CTRL, 0, 0, 0, "@transaction"},
    {"persist", cmd_persist, 2, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@keyspace"},
    {"pexpire", cmd_expire, -3, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@keyspace"},
    {"pexpireat", cmd_expire, -3, F_WRITE | F_FAST | F_TXN, 1, 1, 1, "@keyspace"},
    {"pexpiretime", cmd_ttl, 2, F_READONLY | F_FAST, 1, 1, 1, "@keyspace"},
    {"ping", resp_cmd_ping, -1, F_FAST, 0, 0, 0, "@connection"},
    {"psetex", resp_cmd_setex, 4, RW, 1, 1, 1, "@string"},
    {"pttl", cmd_ttl, 2, F_READONLY | F_FAST, 1, 1, 1, "@keyspace"},
    {"quit", resp_cmd_quit, -1, CTL | F_NOAUTH | F_CTRL, 0, 0, 0, "@connection"},
    {"randomkey", cmd_randomkey, 1, F_READONLY | F_RANDOM, 0, 0, 0, "@keyspace"},
    {"rename", cmd_rename, 3, F_WRITE | F_TXN, 1, 2, 1, "@keyspace"},
    {"renamenx", cmd_rename, 3, F_WRITE | F_FAST | F_TXN, 1, 2, 1, "@keyspace"},
    {"reset", resp_cmd_reset, 1, CTL | F_NOAUTH | F_CTRL, 0, 0, 0, "@connection"},
    {"scan", cmd_scan, -2, F_READONLY | F_RANDOM, 0, 0, 0, "@keyspace"},
    {"select", resp_cmd_select, 2, F_LOADING | F_STALE | F_FAST, 0, 0, 0, "@connection"},
    {"set", resp_cmd_set, -3, RW, 1, 1, 1, "@string"},
    {"setex", resp_cmd_setex, 4, RW, 1, 1, 1, "@string"},
    {"setnx", resp_cmd_setnx, 3, RW | F_FAST | F_TXN, 1, 1, 1, "@string"},
    {"setrange", resp_cmd_setrange, 4, RW | F_TXN, 1, 1, 1, "@string"},
    {"strlen", resp_cmd_strlen, 2, F_READONLY | F_FAST, 1, 1, 1, "@string"},
    {"time", resp_cmd_time, 1, F_LOADING | F_STALE | F_FAST, 0, 0, 0, "@fast"},
    {"touch", cmd_exists, -2, F_READONLY | F_FAST, 1, -1, 1, "@keyspace"},
    {"ttl", cmd_ttl, 2, F_READONLY | F_FAST, 1, 1, 1, "@keyspace"},
    {"type", cmd_type, 2, F_READONLY | F_FAST, 1, 1, 1, "@keyspace"},
    {"unlink", cmd_del, -2, F_WRITE | F_FAST | F_TXN, 1, -1, 1, "@keyspace"},
    {"unwatch", cmd_unwatch, 1, CTL, 0, 0, 0, "@transaction"},
    {"watch", cmd_watch, -2, CTL | F_CTRL, 1, -1, 1, "@transaction"},
};
const size_t resp_cmd_table_len = sizeof resp_cmd_table / sizeof resp_cmd_table[0];

const cmd_def *resp_cmd_lookup(shale_slice name)
{
    char low[16];
    if (name.len == 0 || name.len >= sizeof low) {
        return NULL;
    }
    for (size_t i = 0; i < name.len; i++) {
        low[i] = (char)tolower(((const unsigned char *)name.data)[i]);
    }
    low[name.len] = '\0';
    size_t lo = 0, hi = resp_cmd_table_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(low, resp_cmd_table[mid].name);
        if (cmp == 0) {
            return &resp_cmd_table[mid];
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const char *resp_cmd_name(shale_slice name)
{
    const cmd_def *d = resp_cmd_lookup(name);
    return d != NULL ? d->name : "unknown";
}

/* ---- dispatch ---- */

/* The reserved-key check, then the handler (in a transaction of its own when it needs one). */
static int run_cmd(cctx *c, const cmd_def *d, const shale_slice *argv, size_t argc)
{
    if (d->first > 0) {
        size_t last = d->last < 0 ? argc - 1 : (size_t)d->last;
        for (size_t i = (size_t)d->first; i <= last && i < argc; i += (size_t)d->step) {
            if (reserved_key(argv[i])) {
                return rep_err(c, "ERR key is in the reserved document space");
            }
        }
    }
    if ((d->flags & F_TXN) && c->txn == NULL) {
        return resp_cmd_with_txn(c, d->fn, argv, argc);
    }
    return d->fn(c, argv, argc);
}

static int unknown_cmd(cctx *c, const shale_slice *argv, size_t argc)
{
    char args[256];
    size_t n = 0;
    args[0] = '\0';
    for (size_t i = 1; i < argc && n < 128; i++) {
        int w = snprintf(args + n, sizeof args - n, "'%.*s' ",
                         (int)(argv[i].len > 128 - n ? 128 - n : argv[i].len),
                         (const char *)argv[i].data);
        if (w < 0 || (size_t)w >= sizeof args - n) {
            break;
        }
        n += (size_t)w;
    }
    return rep_errf(c, "ERR unknown command '%.*s', with args beginning with: %s",
                    (int)(argv[0].len > 128 ? 128 : argv[0].len), (const char *)argv[0].data, args);
}

static void dispatch(cctx *c, const shale_slice *argv, size_t argc)
{
    resp_session *ss = c->ss;
    const cmd_def *d = resp_cmd_lookup(argv[0]);
    atomic_fetch_add_explicit(&c->sv->commands, 1, memory_order_relaxed);
    atomic_store_explicit(&ss->last_ms, now_ms(), memory_order_relaxed);
    atomic_store_explicit(&ss->last_cmd, d ? d->name : "unknown", memory_order_relaxed);
    c->cmd = d;
    if (d == NULL) {
        unknown_cmd(c, argv, argc);
        ss->dirty = ss->in_multi;
        return;
    }
    if ((d->arity > 0 && argc != (size_t)d->arity) || (d->arity < 0 && argc < (size_t)-d->arity)) {
        err_arity(c, d->name);
        ss->dirty = ss->in_multi;
        return;
    }
    if (!ss->authed && !(d->flags & F_NOAUTH)) {
        rep_err(c, "NOAUTH Authentication required.");
        ss->dirty = ss->in_multi;
        return;
    }
    if (ss->in_multi && !(d->flags & F_CTRL)) {
        if (!queue_add(ss, argv, argc)) {
            rep_err(c, "ERR out of memory");
            ss->dirty = true;
            return;
        }
        rep_simple(c, "QUEUED");
        return;
    }
    if ((d->flags & F_WRITE) || d->fn == cmd_exec) {
        ss->wrote = true;
    }
    run_cmd(c, d, argv, argc);
}

const char *resp_session_cmd(const resp_session *ss)
{
    const char *name = atomic_load_explicit(&ss->last_cmd, memory_order_relaxed);
    return name != NULL ? name : "unknown";
}

bool resp_session_take_wrote(resp_session *ss)
{
    bool w = ss->wrote;
    ss->wrote = false;
    return w;
}

/* ---- deferred SETs and GETs (resp_exec_deferred) and their groups (resp_cmd.h) ---- */

/* 'S' or 'G' when the command may be deferred, else 0. */
static int defer_kind(const resp_session *ss, const shale_slice *argv, size_t argc)
{
    if (!ss->authed || ss->in_multi || argc < 2 || argc > 3 || argv[0].len != 3 ||
        argv[1].len == 0 || reserved_key(argv[1])) {
        return 0;
    }
    const char *n = argv[0].data;
    char c0 = (char)(n[0] | 0x20), c1 = (char)(n[1] | 0x20), c2 = (char)(n[2] | 0x20);
    if (c1 != 'e' || c2 != 't') {
        return 0;
    }
    return c0 == 's' && argc == 3 ? 'S' : c0 == 'g' && argc == 2 ? 'G' : 0;
}

/* A group is flushed early at this many commands or bytes of keys and values: one commit stays
 * a bounded log record, a redo bounded, and the GET replies not yet in out few. */
#define GROUP_MAX_OPS   1024
#define GROUP_MAX_BYTES (4u << 20)
/* GETs run in multi_gets of at most this many. With redis-benchmark -P 16 (800 GETs a turn), one
 * multi_get of them all measured 13% below the per-connection runs of before (three runs each),
 * runs of 64 within 3% of them: presumably the values of a short run are still in the cache when
 * they are copied into the replies. */
#define GROUP_MAX_GETS  64

typedef struct group_op {
    resp_session *ss; /* NULL once the session is gone: a SET is committed, a GET not answered */
    int kind;         /* 'S' or 'G' */
    size_t off;       /* key, then value, in bytes */
    size_t klen, vlen;
} group_op;

struct resp_group {
    resp_server *sv;
    shale_batch *batch; /* the SETs */
    shale_buf bytes;    /* copies of the keys and values: the callers' input is theirs */
    group_op *ops;      /* every command, in arrival order */
    size_t n, cap, nsets;
    /* The GETs' multi_get arrays, getcap long; the value buffers are kept between flushes. */
    shale_slice *keys;
    shale_buf *got;
    shale_code *codes;
    size_t getcap;
};

resp_group *resp_group_new(resp_server *sv)
{
    resp_group *g = calloc(1, sizeof *g);
    if (g != NULL && (g->batch = shale_batch_new()) == NULL) {
        free(g);
        g = NULL;
    }
    if (g != NULL) {
        g->sv = sv;
    }
    return g;
}

void resp_group_free(resp_group *g)
{
    if (g == NULL) {
        return;
    }
    resp_group_flush(g);
    shale_batch_free(g->batch);
    buf_free(&g->bytes);
    free(g->ops);
    for (size_t i = 0; i < g->getcap; i++) {
        shale_buf_free(&g->got[i]);
    }
    free(g->keys);
    free(g->got);
    free(g->codes);
    free(g);
}

static shale_slice op_key(const resp_group *g, const group_op *op)
{
    return (shale_slice){(const char *)g->bytes.data + op->off, op->klen};
}

static resp_exec_result run_one(resp_session *ss, const char *name, shale_slice key,
                                shale_slice val, shale_buf *out)
{
    shale_slice argv[3] = {{name, 3}, key, val};
    return resp_exec(ss, argv, name[0] == 'S' ? 3 : 2, out);
}

/* Commits the group's SETs as one batch; if the store refuses it, redoes each one by one into
 * its session's out, rewritten from the session's first grouped SET. */
static void flush_sets(resp_group *g, size_t n)
{
    resp_server *sv = g->sv;
    shale_error e;
    shale_code rc = shale_write(sv->db, &sv->wopts, g->batch, &e);
    shale_batch_clear(g->batch);
    if (rc == SHALE_OK) {
        atomic_fetch_add_explicit(&sv->commands, g->nsets, memory_order_relaxed);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        resp_session *ss = g->ops[i].ss;
        if (ss != NULL && g->ops[i].kind == 'S' && ss->gmark != SIZE_MAX) {
            ss->gout->len = ss->gmark;
            ss->gmark = SIZE_MAX; /* rewritten once */
        }
    }
    for (size_t i = 0; i < n; i++) {
        const group_op *op = &g->ops[i];
        if (op->kind != 'S') {
            continue;
        }
        shale_slice k = op_key(g, op);
        shale_slice v = {(const char *)k.data + op->klen, op->vlen};
        if (op->ss == NULL) {
            /* Its session is gone: committed all the same (resp_cmd.h), with no one to answer. */
            if (shale_put(sv->db, &sv->wopts, k, v, &e) == SHALE_OK) {
                atomic_fetch_add_explicit(&sv->commands, 1, memory_order_relaxed);
            }
        } else if (!op->ss->broken) {
            if (run_one(op->ss, "SET", k, v, op->ss->gout) != RESP_EXEC_OK) {
                op->ss->broken = true;
            }
        }
    }
}

static bool get_room(resp_group *g, size_t need)
{
    if (need <= g->getcap) {
        return true;
    }
    size_t cap = g->getcap ? g->getcap : 64;
    while (cap < need) {
        cap *= 2;
    }
    shale_slice *k = realloc(g->keys, cap * sizeof *k);
    if (k != NULL) {
        g->keys = k;
    }
    shale_buf *b = k ? realloc(g->got, cap * sizeof *b) : NULL;
    if (b != NULL) {
        memset(b + g->getcap, 0, (cap - g->getcap) * sizeof *b);
        g->got = b;
    }
    shale_code *cd = b ? realloc(g->codes, cap * sizeof *cd) : NULL;
    if (cd == NULL) {
        return false; /* the arrays that did grow keep their new size: harmless */
    }
    g->codes = cd;
    g->getcap = cap;
    return true;
}

/* Runs the group's GETs as one shale_multi_get (one by one when it cannot) and appends each
 * answer to its session's out. */
static void flush_gets(resp_group *g, size_t n)
{
    resp_server *sv = g->sv;
    size_t ngets = n - g->nsets;
    shale_error e;
    shale_code rc = SHALE_NOMEM;
    if (get_room(g, ngets)) {
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if (g->ops[i].kind == 'G') {
                g->keys[j++] = op_key(g, &g->ops[i]);
            }
        }
        rc = shale_multi_get(sv->db, NULL, ngets, g->keys, g->got, g->codes, &e);
    }
    uint64_t hits = 0, answered = 0;
    for (size_t i = 0, j = 0; i < n; i++) {
        const group_op *op = &g->ops[i];
        if (op->kind != 'G') {
            continue;
        }
        size_t at = j++;
        resp_session *ss = op->ss;
        if (ss == NULL || ss->broken) {
            continue;
        }
        if (rc != SHALE_OK) {
            if (run_one(ss, "GET", op_key(g, op), (shale_slice){0}, ss->gout) != RESP_EXEC_OK) {
                ss->broken = true;
            }
            continue;
        }
        cctx c = {.ss = ss, .sv = sv, .out = ss->gout};
        answered++;
        if (g->codes[at] == SHALE_OK) {
            hits++;
            rep_bulk(&c, (shale_slice){g->got[at].data, g->got[at].len});
        } else if (g->codes[at] == SHALE_NOT_FOUND) {
            rep_null(&c);
        } else {
            shale_error ke;
            err_set(&ke, g->codes[at], 0, "%s", shale_strerror(g->codes[at]));
            store_err(&c, g->codes[at], &ke);
        }
        ss->broken |= c.oom;
    }
    for (size_t j = 0; rc == SHALE_OK && j < ngets; j++) {
        if (g->got[j].cap > SCRATCH_KEEP) {
            shale_buf_free(&g->got[j]);
        }
        g->got[j].len = 0;
    }
    atomic_fetch_add_explicit(&sv->commands, answered, memory_order_relaxed);
    atomic_fetch_add_explicit(&sv->hits, hits, memory_order_relaxed);
    atomic_fetch_add_explicit(&sv->misses, answered - hits, memory_order_relaxed);
}

void resp_group_flush(resp_group *g)
{
    size_t n = g->n;
    if (n == 0) {
        return;
    }
    /* The sessions leave the group first: a redo goes through resp_exec, which must find
     * nothing of theirs pending. */
    g->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (g->ops[i].ss != NULL) {
            g->ops[i].ss->gn = 0;
        }
    }
    /* A session's commands in one group are all SETs or all GETs, so the two runs are
     * independent; SETs first, so a GET of another client sees the SETs that arrived before. */
    if (g->nsets > 0) {
        flush_sets(g, n);
    }
    if (g->nsets < n) {
        flush_gets(g, n);
    }
    g->nsets = 0;
    g->bytes.len = 0;
    if (g->bytes.cap > GROUP_MAX_BYTES * 2) {
        buf_free(&g->bytes); /* a huge value passed: do not keep its memory */
    }
}

void resp_session_join(resp_session *ss, resp_group *g)
{
    ss->group = g;
}

bool resp_session_broken(const resp_session *ss)
{
    return ss->broken;
}

bool resp_session_waiting(const resp_session *ss)
{
    return ss->gn > 0;
}

/* Session end: its commands still in a group stay there unanswered; its own group goes. */
static void group_leave(resp_session *ss)
{
    resp_group *g = ss->group ? ss->group : ss->own;
    for (size_t i = 0; ss->gn > 0 && g != NULL && i < g->n; i++) {
        if (g->ops[i].ss == ss) {
            g->ops[i].ss = NULL;
        }
    }
    ss->gn = 0;
    ss->group = NULL;
    resp_group_free(ss->own);
    ss->own = NULL;
}

/* Runs the session's deferred commands (and with them the rest of its group). */
static resp_exec_result group_commit(resp_session *ss)
{
    if (ss->gn > 0) {
        resp_group_flush(ss->group ? ss->group : ss->own);
    }
    return ss->broken ? RESP_EXEC_CLOSE : RESP_EXEC_OK;
}

/* Defers a plain SET (its "+OK" now) or GET (its answer at the flush) into the session's group. */
static resp_exec_result group_add(resp_session *ss, int kind, const shale_slice *argv,
                                  shale_buf *out)
{
    resp_group *g = ss->group;
    if (g == NULL && ss->own == NULL) {
        ss->own = resp_group_new(ss->sv);
    }
    g = g ? g : ss->own;
    size_t argc = kind == 'S' ? 3 : 2;
    if (g == NULL) {
        return resp_exec(ss, argv, argc, out); /* no memory for a group: at once */
    }
    shale_slice key = argv[1], val = kind == 'S' ? argv[2] : (shale_slice){0};
    if (g->n == GROUP_MAX_OPS || g->bytes.len + key.len + val.len > GROUP_MAX_BYTES ||
        (kind == 'G' && g->n - g->nsets == GROUP_MAX_GETS)) {
        resp_group_flush(g);
        if (ss->broken) {
            return RESP_EXEC_CLOSE;
        }
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        group_op *ops = realloc(g->ops, cap * sizeof *ops);
        if (ops == NULL) {
            return group_commit(ss) == RESP_EXEC_OK ? resp_exec(ss, argv, argc, out)
                                                    : RESP_EXEC_CLOSE;
        }
        g->ops = ops;
        g->cap = cap;
    }
    size_t at = out->len, off = g->bytes.len;
    shale_error e;
    if ((kind == 'S' && buf_append(out, "+OK\r\n", 5, NULL) != SHALE_OK) ||
        buf_append(&g->bytes, key.data, key.len, NULL) != SHALE_OK ||
        buf_append(&g->bytes, val.data, val.len, NULL) != SHALE_OK ||
        (kind == 'S' && shale_batch_put(g->batch, key, val, &e) != SHALE_OK)) {
        /* Refused by the batch (or out of memory): run the group, then this one alone. */
        out->len = at;
        g->bytes.len = off;
        return group_commit(ss) == RESP_EXEC_OK ? resp_exec(ss, argv, argc, out) : RESP_EXEC_CLOSE;
    }
    g->ops[g->n++] = (group_op){ss, kind, off, key.len, val.len};
    g->nsets += kind == 'S';
    if (ss->gn++ == 0) {
        ss->gkind = kind;
        ss->gmark = at;
        ss->gout = out;
    }
    ss->wrote |= kind == 'S';
    atomic_store_explicit(&ss->last_ms, now_ms(), memory_order_relaxed);
    atomic_store_explicit(&ss->last_cmd, kind == 'S' ? "set" : "get", memory_order_relaxed);
    return RESP_EXEC_OK;
}

resp_exec_result resp_flush(resp_session *ss, shale_buf *out)
{
    (void)out; /* the session's gout, the same buffer (resp_cmd.h) */
    if (ss->group == NULL) {
        return group_commit(ss);
    }
    return ss->broken ? RESP_EXEC_CLOSE : RESP_EXEC_OK;
}

resp_exec_result resp_exec_deferred(resp_session *ss, const shale_slice *argv, size_t argc,
                                    shale_buf *out)
{
    int kind = defer_kind(ss, argv, argc);
    /* A session's commands run in order: what it deferred runs before a command of another
     * kind (a GET must see the session's SETs), and a session defers at most RESP_RUN_MAX, so
     * the GET replies not yet in its out stay few. */
    if (ss->gn > 0 && (kind != ss->gkind || ss->gn == RESP_RUN_MAX) &&
        group_commit(ss) != RESP_EXEC_OK) {
        return RESP_EXEC_CLOSE;
    }
    return kind == 0 ? resp_exec(ss, argv, argc, out) : group_add(ss, kind, argv, out);
}

resp_exec_result resp_exec(resp_session *ss, const shale_slice *argv, size_t argc, shale_buf *out)
{
    if (group_commit(ss) != RESP_EXEC_OK) {
        return RESP_EXEC_CLOSE;
    }
    size_t mark = out->len;
    cctx c = {.ss = ss, .sv = ss->sv, .out = out};
    if (argc == 0) {
        rep_err(&c, "ERR empty command");
    } else {
        dispatch(&c, argv, argc);
    }
    /* A session keeps its scratch between commands, but not the memory of one huge reply. */
    if (ss->aux.cap > SCRATCH_KEEP) {
        shale_buf_free(&ss->aux);
    }
    if (ss->val.cap > SCRATCH_KEEP) {
        shale_buf_free(&ss->val);
    }
    if (c.oom) {
        out->len = mark;
        return RESP_EXEC_CLOSE;
    }
    return c.close ? RESP_EXEC_CLOSE : RESP_EXEC_OK;
}
