/*
 * resp_cmd_int: what the three files of the resp_cmd module share. Private: included by
 * resp_cmd.c, resp_cmd_string.c and resp_cmd_admin.c only (the contract for everyone else is
 * resp_cmd.h).
 *
 * Why it exists: the module is one unit (one table, one dispatch, one session), split in three
 * files to keep each readable:
 *   resp_cmd.c         dispatch (resp_exec, resp_cmd_name), the command table, transactions
 *                      (MULTI/EXEC/WATCH, and a command's own: resp_cmd_with_txn), the store
 *                      access every handler uses (resp_cmd_kget/kput/kdel), and the key-space
 *                      commands: DEL EXISTS TYPE, TTLs, RENAME, KEYS/SCAN, DBSIZE/RANDOMKEY/FLUSH*.
 *   resp_cmd_string.c  the string commands: GET SET GETSET SETNX SETEX PSETEX GETDEL GETEX MGET
 *                      MSET MSETNX INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE
 *                      SETRANGE.
 *   resp_cmd_admin.c   the server and its sessions (resp_server_new .. resp_session_free), and
 *                      the connection and administrative commands: PING ECHO TIME SELECT QUIT
 *                      AUTH HELLO RESET CLIENT CONFIG INFO COMMAND.
 * Shared here: the server, session and per-command context (cctx) structs, the handler
 * outcomes and command flags, the command table (resp_exec dispatches on it, COMMAND lists it),
 * the reply helpers, and the few functions one file needs from another.
 *
 * Names: the constants and static inline helpers keep the module's short names (CR_OK, F_WRITE,
 * rep_ok, ...): nothing else includes this header, so they cannot collide, and a prefix on every
 * reply would only be noise. Everything with external linkage carries the resp_cmd_ prefix.
 *
 * Threads: as resp_cmd.h says. A session and its cctx are used by one thread at a time; the
 * fields of a session that other sessions read (CLIENT LIST) are atomics or written under
 * resp_server.mu, as their comments say; the server's counters are atomics.
 *
 * Replies: every rep_* and err_* helper appends to c->out. A buffer that cannot grow sets
 * c->oom (sticky; resp_exec then cuts the reply and closes the connection), so handlers never
 * check them. They return a handler outcome (CR_OK; CR_ERR for the error replies), so a
 * handler can end with `return rep_x(c, ...)`.
 */
#ifndef SHALE_SERVER_RESP_CMD_INT_H
#define SHALE_SERVER_RESP_CMD_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shale.h"

#include "base/buf.h"
#include "server/resp.h"
#include "server/resp_cmd.h"

#define SCAN_CURSORS 16 /* SCAN cursors a session keeps (resp_cmd.c) */
#define NCONF        7  /* CONFIG parameters (resp_cmd_admin.c's table, checked there) */

/* What a handler answers: a reply appended; an error reply appended (a transaction of the
 * command's own is rolled back); a commit-time conflict (the caller drops the reply and
 * retries). */
enum { CR_OK = 0, CR_ERR = 1, CR_CONFLICT = 2 };

/* Command flags: COMMAND's (the first F_NFLAGS, in its order) and ours. */
enum {
    F_WRITE = 1u << 0,
    F_READONLY = 1u << 1,
    F_DENYOOM = 1u << 2,
    F_ADMIN = 1u << 3,
    F_NOSCRIPT = 1u << 4,
    F_RANDOM = 1u << 5,
    F_LOADING = 1u << 6,
    F_STALE = 1u << 7,
    F_FAST = 1u << 8,
    F_NOAUTH = 1u << 9,
    F_ALLOWBUSY = 1u << 10,
    F_NFLAGS = 11,
    F_TXN = 1u << 16,  /* runs in a transaction of its own outside EXEC */
    F_CTRL = 1u << 17, /* runs at once inside MULTI (never queued) */
};

typedef struct cctx cctx;
typedef int (*cmd_fn)(cctx *c, const shale_slice *argv, size_t argc);

typedef struct cmd_def {
    const char *name;
    cmd_fn fn;
    int arity; /* > 0: exactly; < 0: at least -arity */
    uint32_t flags;
    int first, last, step; /* key positions; last -1 = the last argument */
    const char *acl;       /* ACL category for COMMAND */
} cmd_def;

struct resp_server {
    shale_db *db;
    shale_write_opts wopts; /* durability: resp_server_opts.durability */
    char *token;
    size_t token_len;
    void (*info)(void *ctx, shale_buf *out);
    void *info_ctx;
    uint64_t start_ms;
    pthread_mutex_t mu; /* the session list, session names, conf values */
    resp_session *head;
    size_t nsessions;
    char conf[NCONF][128];
    atomic_uint_fast64_t next_id;
    atomic_uint_fast64_t connections, commands, hits, misses;
};

typedef struct qcmd {
    size_t argc;
    shale_slice *argv; /* one allocation: the slices, then the bytes */
} qcmd;

typedef struct watched {
    uint64_t seq;
    shale_buf key;
} watched;

typedef struct scan_cursor {
    uint64_t id; /* 0 = free slot */
    uint64_t used;
    shale_buf last;
} scan_cursor;

struct resp_session {
    resp_server *sv;
    resp_session *prev, *next;
    uint64_t id;
    char peer[64];
    uint64_t created_ms;
    /* Read by other sessions' CLIENT LIST: atomics, or written under sv->mu. */
    atomic_int proto;
    atomic_int multi; /* queued commands, -1 outside MULTI */
    atomic_uint_fast64_t last_ms;
    _Atomic(const char *) last_cmd;
    char *name, *lib_name, *lib_ver;
    bool authed;
    bool in_multi, dirty;
    bool wrote; /* resp_session_take_wrote */
    qcmd *queue;
    size_t nqueue, capqueue;
    watched *watch;
    size_t nwatch, capwatch;
    scan_cursor cursors[SCAN_CURSORS];
    uint64_t cursor_seq, cursor_tick;
    shale_buf val, aux, scan_last; /* scratch */
    uint64_t rng;
    /* Deferred SETs and GETs (resp_exec_deferred) wait in `group`, the joined one, else in
     * `own` (made on first use). While gn > 0, gn commands of kind gkind ('S' or 'G') of the
     * session wait there; the SETs' "+OK"s are in *gout from gmark on. */
    resp_group *group, *own;
    shale_buf *gout;
    size_t gmark, gn;
    int gkind;
    bool broken; /* resp_session_broken */
};

/* One command being run: lives on resp_exec's stack. */
struct cctx {
    resp_session *ss;
    resp_server *sv;
    const cmd_def *cmd;
    shale_txn *txn; /* the command's transaction (inside EXEC, or its own), else NULL */
    shale_buf *out;
    bool oom;   /* out could not grow: resp_exec drops the reply and closes */
    bool close; /* QUIT: close after sending the reply */
};

/* ---- resp_cmd.c, for resp_cmd_admin.c and resp_cmd_string.c ---- */

/* The command table, sorted by name (resp_cmd_lookup bisects it). */
extern const cmd_def resp_cmd_table[];
extern const size_t resp_cmd_table_len;
/* The entry of a command name (any case), or NULL. */
const cmd_def *resp_cmd_lookup(shale_slice name);

/* Redis's string2ll: an optional '-', then digits without a leading zero (or just "0"), in
 * range; nothing else (no spaces, no '+'). */
bool resp_cmd_str2ll(shale_slice s, long long *out);
/* Redis's stringmatchlen: glob * ? [abc] [^a] [a-z] \x over bytes. */
bool resp_cmd_glob_match(shale_slice pat, shale_slice s, bool nocase);
/* Counts the plain keys (and those with a deadline): CR_OK, or CR_ERR with the reply. */
int resp_cmd_count_keys(cctx *c, uint64_t *keys, uint64_t *expires);
/* RESET: leaves MULTI and drops the WATCH set and the SCAN cursors. */
void resp_cmd_session_reset(resp_session *ss);
/* Session end: as resp_cmd_session_reset, and frees their memory and the scratch buffers. */
void resp_cmd_session_release(resp_session *ss);

/* The store, through the command's transaction c->txn when it has one, else straight to the
 * database (with the server's write options). kget: the value into val (may be NULL) and the
 * entry's info into info (may be NULL; zeroed first); with upd inside a transaction the key is
 * read for update (validated at commit), else a plain read. SHALE_NOT_FOUND when absent. */
shale_code resp_cmd_kget(cctx *c, shale_slice key, shale_buf *val, shale_entry_info *info, bool upd,
                         shale_error *e) SHALE_MUST_USE;
/* kput: expire_at_ms 0 = no deadline. */
shale_code resp_cmd_kput(cctx *c, shale_slice key, shale_slice val, uint64_t expire_at_ms,
                         shale_error *e) SHALE_MUST_USE;
shale_code resp_cmd_kdel(cctx *c, shale_slice key, shale_error *e) SHALE_MUST_USE;
/* Runs fn in a snapshot transaction of its own with unchecked writes (c->txn while it runs;
 * NULL again after), committed when fn answers CR_OK, rolled back otherwise; a conflict (fn's
 * CR_CONFLICT or the commit's) drops fn's reply and retries. Answers fn's outcome, or an error
 * reply: a store failure at begin or commit, or "ERR conflict, try again" after the last try. */
int resp_cmd_with_txn(cctx *c, cmd_fn fn, const shale_slice *argv, size_t argc);

/* ---- resp_cmd_admin.c, for the table ---- */

int resp_cmd_auth(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_client(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_command(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_config(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_echo(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_hello(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_info(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_ping(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_quit(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_reset(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_select(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_time(cctx *c, const shale_slice *argv, size_t argc);

/* ---- resp_cmd_string.c, for the table ---- */

int resp_cmd_append(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_get(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_getdel(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_getex(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_getrange(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_getset(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_incr(cctx *c, const shale_slice *argv, size_t argc); /* INCR DECR INCRBY DECRBY */
int resp_cmd_incrbyfloat(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_mget(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_mset(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_msetnx(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_set(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_setex(cctx *c, const shale_slice *argv, size_t argc); /* SETEX PSETEX */
int resp_cmd_setnx(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_setrange(cctx *c, const shale_slice *argv, size_t argc);
int resp_cmd_strlen(cctx *c, const shale_slice *argv, size_t argc);

/* ---- small helpers ---- */

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The session's protocol version (2, or 3 after HELLO 3). */
static inline int proto(const cctx *c)
{
    return atomic_load_explicit(&c->ss->proto, memory_order_relaxed);
}

/* Whether s is the keyword lit, in any case. */
static inline bool eq_ci(shale_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.data, lit, n) == 0;
}

static inline shale_slice sl(const shale_buf *b)
{
    return (shale_slice){b->data, b->len};
}

/* ---- replies ---- */

static inline int wr(cctx *c, shale_code rc)
{
    if (rc != SHALE_OK) {
        c->oom = true;
    }
    return CR_OK;
}

static inline int rep_simple(cctx *c, const char *s)
{
    return wr(c, resp_w_simple(c->out, s, NULL));
}

static inline int rep_ok(cctx *c)
{
    return rep_simple(c, "OK");
}

static inline int rep_int(cctx *c, long long v)
{
    return wr(c, resp_w_int(c->out, v, NULL));
}

static inline int rep_bulk(cctx *c, shale_slice s)
{
    return wr(c, resp_w_bulk(c->out, s, NULL));
}

static inline int rep_cstr(cctx *c, const char *s)
{
    return rep_bulk(c, (shale_slice){s, strlen(s)});
}

static inline int rep_null(cctx *c)
{
    return wr(c, resp_w_null(c->out, proto(c), NULL));
}

static inline int rep_arr(cctx *c, size_t n)
{
    return wr(c, resp_w_array(c->out, n, NULL));
}

static inline int rep_map(cctx *c, size_t n)
{
    return wr(c, resp_w_map(c->out, proto(c), n, NULL));
}

static inline int rep_set(cctx *c, size_t n)
{
    return wr(c, resp_w_set(c->out, proto(c), n, NULL));
}

/* Appends bytes already in RESP form. */
static inline int rep_raw(cctx *c, const shale_buf *b)
{
    return wr(c, buf_append(c->out, b->data, b->len, NULL));
}

static inline int rep_err(cctx *c, const char *msg)
{
    wr(c, resp_w_error(c->out, msg, NULL));
    return CR_ERR;
}

static inline int rep_errf(cctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int rep_errf(cctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rep_err(c, msg);
}

static inline int err_int(cctx *c)
{
    return rep_err(c, "ERR value is not an integer or out of range");
}

static inline int err_syntax(cctx *c)
{
    return rep_err(c, "ERR syntax error");
}

static inline int err_arity(cctx *c, const char *name)
{
    return rep_errf(c, "ERR wrong number of arguments for '%s' command", name);
}

static inline int err_subcmd(cctx *c, shale_slice sub, const char *cmd)
{
    return rep_errf(c, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                    (int)(sub.len > 128 ? 128 : sub.len), (const char *)sub.data, cmd);
}

/* A store failure as a reply (or, for a conflict inside a transaction, the signal to retry). */
static inline int store_err(cctx *c, shale_code rc, const shale_error *e)
{
    switch (rc) {
    case SHALE_CONFLICT:
        return c->txn != NULL ? CR_CONFLICT : rep_errf(c, "ERR conflict, try again: %s", e->msg);
    case SHALE_INVALID:
    case SHALE_FULL:
        return rep_errf(c, "ERR %s", e->msg);
    case SHALE_NOMEM:
        return rep_err(c, "ERR out of memory");
    default:
        return rep_errf(c, "ERR internal error: %s", e->msg);
    }
}

#endif
