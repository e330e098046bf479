/*
 * resp_cmd_admin: the server and its sessions, and the connection and administrative commands
 * (PING ECHO TIME SELECT QUIT AUTH HELLO RESET CLIENT CONFIG INFO COMMAND) of the resp_cmd
 * module. The contract is resp_cmd.h; what this file shares with resp_cmd.c (dispatch, the
 * table, the data commands) is in resp_cmd_int.h.
 *
 * The server holds what all sessions share: the database, the AUTH token, the info callback,
 * the CONFIG values, the session list (CLIENT LIST, INFO's client count) under `mu`, and the
 * counters INFO reports (atomics). A session is one connection's state: its identity (id,
 * peer, name, library) and protocol here, its MULTI queue, WATCH set and SCAN cursors in
 * resp_cmd.c, which also releases them (resp_cmd_session_release).
 *
 * Choices where the contract leaves room (a Redis user's reading):
 *   - AUTH and HELLO AUTH accept the user "default" only; with no token configured any password
 *     is accepted for it, as Redis's nopass default user does. The comparison with the token
 *     takes the same time whatever the bytes.
 *   - INFO's keyspace line counts the plain key space (resp_cmd_count_keys); an empty key space
 *     prints no db0 line, as in Redis.
 *   - The server's info callback lines go into the Server section, except client counts, which
 *     go into Clients; a fact the callback gives replaces ours of the same name.
 *   - CONFIG SET accepts the cosmetic parameters of CONFIG GET (their values are remembered and
 *     change nothing but what CONFIG GET answers); databases and maxmemory are read-only.
 *   - CLIENT LIST and CLIENT INFO print every field Redis 7 prints; the ones that have no
 *     meaning here (fd, buffers, memory) are 0 or -1.
 */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "shale.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"
#include "server/resp.h"
#include "server/resp_cmd.h"
#include "server/resp_cmd_int.h"

/* A cosmetic CONFIG parameter. */
typedef struct conf_param {
    const char *name;
    const char *def;
    bool readonly;
} conf_param;

static const conf_param conf_params[] = {
    {"appendonly", "no", false},
    {"databases", "1", true},
    {"maxmemory", NULL, true}, /* from the store's stats */
    {"maxmemory-policy", "noeviction", false},
    {"notify-keyspace-events", "", false},
    {"save", "", false},
    {"timeout", "0", false},
};
_Static_assert(sizeof conf_params / sizeof conf_params[0] == NCONF,
               "NCONF (resp_cmd_int.h) must count conf_params");

static const char *const flag_names[F_NFLAGS] = {"write",    "readonly", "denyoom",   "admin",
                                                 "noscript", "random",   "loading",   "stale",
                                                 "fast",     "no_auth",  "allow_busy"};

/* Appends printf output to b, whatever its length (a client name has no bound but the
 * request's); SHALE_NOMEM when b cannot grow. */
static shale_code vappendf(shale_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static shale_code vappendf(shale_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0) {
        return SHALE_OK;
    }
    shale_code rc = buf_reserve(b, (size_t)n + 1, NULL);
    if (rc == SHALE_OK) {
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    return rc;
}

static shale_code appendf(shale_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static shale_code appendf(shale_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shale_code rc = vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- connection ---- */

int resp_cmd_ping(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc > 2) {
        return err_arity(c, "ping");
    }
    return argc == 2 ? rep_bulk(c, argv[1]) : rep_simple(c, "PONG");
}

int resp_cmd_echo(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    return rep_bulk(c, argv[1]);
}

int resp_cmd_time(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    struct timespec ts;
    char s[24], us[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s, sizeof s, "%lld", (long long)ts.tv_sec);
    snprintf(us, sizeof us, "%ld", ts.tv_nsec / 1000);
    rep_arr(c, 2);
    rep_cstr(c, s);
    return rep_cstr(c, us);
}

int resp_cmd_select(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argc;
    long long db;
    if (!resp_cmd_str2ll(argv[1], &db)) {
        return err_int(c);
    }
    return db == 0 ? rep_ok(c) : rep_err(c, "ERR DB index is out of range");
}

int resp_cmd_quit(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    c->close = true;
    return rep_ok(c);
}

/* Constant-time comparison with the server's token. */
static bool token_ok(const resp_server *sv, shale_slice pass)
{
    if (pass.len != sv->token_len) {
        return false;
    }
    unsigned char d = 0;
    const unsigned char *p = pass.data;
    for (size_t i = 0; i < pass.len; i++) {
        d |= (unsigned char)(p[i] ^ (unsigned char)sv->token[i]);
    }
    return d == 0;
}

/* Checks user/pass; CR_OK, or CR_ERR with the WRONGPASS reply written. */
static int check_auth(cctx *c, const shale_slice *user, shale_slice pass)
{
    bool ok = user == NULL || (user->len == 7 && memcmp(user->data, "default", 7) == 0);
    if (ok && c->sv->token != NULL) {
        ok = token_ok(c->sv, pass);
    }
    if (!ok) {
        return rep_err(c, "WRONGPASS invalid username-password pair or user is disabled.");
    }
    c->ss->authed = true;
    return CR_OK;
}

int resp_cmd_auth(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc > 3) {
        return err_syntax(c);
    }
    if (argc == 2 && c->sv->token == NULL) {
        return rep_err(c, "ERR AUTH <password> called without any password configured for the "
                          "default user. Are you sure your configuration is correct?");
    }
    if (check_auth(c, argc == 3 ? &argv[1] : NULL, argv[argc - 1]) != CR_OK) {
        return CR_ERR;
    }
    return rep_ok(c);
}

#define BAD_NAME "ERR Client names cannot contain spaces, newlines or special characters."

/* Redis's CLIENT SETNAME rule: printable, no spaces. */
static bool name_ok(shale_slice s)
{
    const unsigned char *p = s.data;
    for (size_t i = 0; i < s.len; i++) {
        if (p[i] < '!' || p[i] > '~') {
            return false;
        }
    }
    return true;
}

/* Replaces a session string field under the server's lock (CLIENT LIST reads it). */
static bool set_field(cctx *c, char **field, shale_slice v)
{
    char *s = NULL;
    if (v.len > 0) {
        s = strndup(v.data, v.len);
        if (s == NULL) {
            return false;
        }
    }
    pthread_mutex_lock(&c->sv->mu);
    char *old = *field;
    *field = s;
    pthread_mutex_unlock(&c->sv->mu);
    free(old);
    return true;
}

static int set_name(cctx *c, shale_slice name)
{
    if (!name_ok(name)) {
        return rep_err(c, BAD_NAME);
    }
    if (!set_field(c, &c->ss->name, name)) {
        return rep_err(c, "ERR out of memory");
    }
    return CR_OK;
}

int resp_cmd_hello(cctx *c, const shale_slice *argv, size_t argc)
{
    long long ver = proto(c);
    if (argc >= 2) {
        if (!resp_cmd_str2ll(argv[1], &ver)) {
            return rep_err(c, "ERR Protocol version is not an integer or out of range");
        }
        if (ver < 2 || ver > 3) {
            return rep_err(c, "NOPROTO unsupported protocol version");
        }
    }
    const shale_slice *user = NULL, *pass = NULL, *name = NULL;
    for (size_t j = 2; j < argc; j++) {
        if (eq_ci(argv[j], "AUTH") && j + 2 < argc) {
            user = &argv[j + 1];
            pass = &argv[j + 2];
            j += 2;
        } else if (eq_ci(argv[j], "SETNAME") && j + 1 < argc) {
            name = &argv[j + 1];
            j++;
            if (!name_ok(*name)) { /* before AUTH: a failed HELLO changes nothing */
                return rep_err(c, BAD_NAME);
            }
        } else {
            return rep_errf(c, "ERR Syntax error in HELLO option '%.*s'",
                            (int)(argv[j].len > 64 ? 64 : argv[j].len), (const char *)argv[j].data);
        }
    }
    if (user != NULL && check_auth(c, user, *pass) != CR_OK) {
        return CR_ERR;
    }
    if (!c->ss->authed) {
        return rep_err(c, "NOAUTH HELLO must be called with the client already authenticated, "
                          "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                          "authenticate the client and select the RESP protocol version at the "
                          "same time");
    }
    if (name != NULL && set_name(c, *name) != CR_OK) {
        return CR_ERR;
    }
    atomic_store(&c->ss->proto, (int)ver);
    rep_map(c, 7);
    rep_cstr(c, "server");
    rep_cstr(c, "redis");
    rep_cstr(c, "version");
    rep_cstr(c, "7.0.0");
    rep_cstr(c, "proto");
    rep_int(c, ver);
    rep_cstr(c, "id");
    rep_int(c, (long long)c->ss->id);
    rep_cstr(c, "mode");
    rep_cstr(c, "standalone");
    rep_cstr(c, "role");
    rep_cstr(c, "master");
    rep_cstr(c, "modules");
    return rep_arr(c, 0);
}

int resp_cmd_reset(cctx *c, const shale_slice *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    resp_session *ss = c->ss;
    resp_cmd_session_reset(ss);
    set_field(c, &ss->name, (shale_slice){NULL, 0});
    atomic_store(&ss->proto, 2);
    ss->authed = c->sv->token == NULL;
    return rep_simple(c, "RESET");
}

/* ---- CLIENT ---- */

/* One CLIENT LIST line for ss (sv->mu held). */
static shale_code client_line(const resp_session *ss, uint64_t now, shale_buf *out)
{
    int multi = atomic_load(&ss->multi);
    const char *cmd = atomic_load(&ss->last_cmd);
    uint64_t last = atomic_load(&ss->last_ms);
    return appendf(out,
                   "id=%" PRIu64 " addr=%s laddr= fd=-1 name=%s age=%" PRIu64 " idle=%" PRIu64
                   " flags=%s db=0 sub=0 psub=0 ssub=0 multi=%d qbuf=0 qbuf-free=0 argv-mem=0 "
                   "multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s "
                   "user=default redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
                   ss->id, ss->peer, ss->name ? ss->name : "",
                   (now > ss->created_ms ? now - ss->created_ms : 0) / 1000,
                   (now > last ? now - last : 0) / 1000, multi >= 0 ? "x" : "N", multi,
                   cmd ? cmd : "NULL", atomic_load(&ss->proto), ss->lib_name ? ss->lib_name : "",
                   ss->lib_ver ? ss->lib_ver : "");
}

static int client_list(cctx *c, const shale_slice *argv, size_t argc)
{
    /* Filters: TYPE normal (all of ours) or another type (none), ID id... */
    bool none = false;
    size_t ids_from = 0;
    if (argc >= 4 && eq_ci(argv[2], "TYPE")) {
        if (argc != 4) {
            return err_syntax(c);
        }
        none = !eq_ci(argv[3], "normal");
    } else if (argc >= 4 && eq_ci(argv[2], "ID")) {
        for (size_t j = 3; j < argc; j++) {
            long long id;
            if (!resp_cmd_str2ll(argv[j], &id) || id <= 0) {
                return rep_err(c, "ERR Invalid client ID");
            }
        }
        ids_from = 3;
    } else if (argc != 2) {
        return err_syntax(c);
    }
    shale_buf *acc = &c->ss->aux;
    acc->len = 0;
    uint64_t now = now_ms();
    shale_code rc = SHALE_OK;
    pthread_mutex_lock(&c->sv->mu);
    for (resp_session *s = c->sv->head; s != NULL && !none && rc == SHALE_OK; s = s->next) {
        bool want = ids_from == 0;
        for (size_t j = ids_from; j > 0 && j < argc && !want; j++) {
            long long id;
            want = resp_cmd_str2ll(argv[j], &id) && (uint64_t)id == s->id;
        }
        if (want) {
            rc = client_line(s, now, acc);
        }
    }
    pthread_mutex_unlock(&c->sv->mu);
    if (rc != SHALE_OK) {
        return rep_err(c, "ERR out of memory");
    }
    return wr(c, resp_w_verbatim(c->out, proto(c), sl(acc), NULL));
}

int resp_cmd_client(cctx *c, const shale_slice *argv, size_t argc)
{
    shale_slice sub = argv[1];
    if (eq_ci(sub, "ID") && argc == 2) {
        return rep_int(c, (long long)c->ss->id);
    }
    if (eq_ci(sub, "SETNAME") && argc == 3) {
        return set_name(c, argv[2]) != CR_OK ? CR_ERR : rep_ok(c);
    }
    if (eq_ci(sub, "GETNAME") && argc == 2) {
        return c->ss->name ? rep_cstr(c, c->ss->name) : rep_null(c);
    }
    if (eq_ci(sub, "LIST")) {
        return client_list(c, argv, argc);
    }
    if (eq_ci(sub, "INFO") && argc == 2) {
        shale_buf *acc = &c->ss->aux;
        acc->len = 0;
        pthread_mutex_lock(&c->sv->mu);
        shale_code rc = client_line(c->ss, now_ms(), acc);
        pthread_mutex_unlock(&c->sv->mu);
        if (rc != SHALE_OK) {
            return rep_err(c, "ERR out of memory");
        }
        return wr(c, resp_w_verbatim(c->out, proto(c), sl(acc), NULL));
    }
    if (eq_ci(sub, "SETINFO") && argc == 4) {
        bool name = eq_ci(argv[2], "LIB-NAME");
        if (!name && !eq_ci(argv[2], "LIB-VER")) {
            return rep_errf(c, "ERR Unrecognized option '%.*s'",
                            (int)(argv[2].len > 64 ? 64 : argv[2].len), (const char *)argv[2].data);
        }
        if (!name_ok(argv[3])) {
            return rep_errf(c, "ERR %s cannot contain spaces, newlines or special characters.",
                            name ? "lib-name" : "lib-ver");
        }
        if (!set_field(c, name ? &c->ss->lib_name : &c->ss->lib_ver, argv[3])) {
            return rep_err(c, "ERR out of memory");
        }
        return rep_ok(c);
    }
    if ((eq_ci(sub, "NO-EVICT") || eq_ci(sub, "NO-TOUCH")) && argc == 3) {
        if (!eq_ci(argv[2], "ON") && !eq_ci(argv[2], "OFF")) {
            return err_syntax(c);
        }
        return rep_ok(c);
    }
    if (eq_ci(sub, "HELP") && argc == 2) {
        static const char *const help[] = {
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "LIST [TYPE normal|ID <id> ...]",
            "    Return information about client connections.",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "    Set client library name or version.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "HELP",
            "    Print this help."};
        rep_arr(c, sizeof help / sizeof help[0]);
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) {
            rep_simple(c, help[i]);
        }
        return CR_OK;
    }
    static const char *const subs[] = {"ID",      "SETNAME",  "GETNAME",  "INFO",
                                       "SETINFO", "NO-EVICT", "NO-TOUCH", "HELP"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (eq_ci(sub, subs[i])) {
            char full[32];
            snprintf(full, sizeof full, "client|%s", subs[i]);
            for (char *p = full; *p; p++) {
                *p = (char)tolower((unsigned char)*p);
            }
            return err_arity(c, full);
        }
    }
    return err_subcmd(c, sub, "CLIENT");
}

/* ---- CONFIG ---- */

/* The value of CONFIG parameter i. */
static void conf_value(cctx *c, size_t i, char *out, size_t cap)
{
    if (conf_params[i].def == NULL) { /* maxmemory: the budget the store works within */
        shale_stats st;
        uint64_t v = 0;
        if (shale_stats_get(c->sv->db, &st, NULL) == SHALE_OK) {
            v = st.block_cache_capacity + 2 * st.memtable_budget_bytes;
        }
        snprintf(out, cap, "%" PRIu64, v);
        return;
    }
    pthread_mutex_lock(&c->sv->mu);
    snprintf(out, cap, "%s", c->sv->conf[i]);
    pthread_mutex_unlock(&c->sv->mu);
}

int resp_cmd_config(cctx *c, const shale_slice *argv, size_t argc)
{
    shale_slice sub = argv[1];
    if (eq_ci(sub, "GET")) {
        if (argc < 3) {
            return err_arity(c, "config|get");
        }
        bool hit_[NCONF] = {false};
        size_t n = 0;
        for (size_t j = 2; j < argc; j++) {
            for (size_t i = 0; i < NCONF; i++) {
                if (!hit_[i] &&
                    resp_cmd_glob_match(argv[j], slice_cstr(conf_params[i].name), true)) {
                    hit_[i] = true;
                    n++;
                }
            }
        }
        rep_map(c, n);
        for (size_t i = 0; i < NCONF; i++) {
            if (hit_[i]) {
                char v[128];
                conf_value(c, i, v, sizeof v);
                rep_cstr(c, conf_params[i].name);
                rep_cstr(c, v);
            }
        }
        return CR_OK;
    }
    if (eq_ci(sub, "SET")) {
        if (argc < 4 || argc % 2 != 0) {
            return err_arity(c, "config|set");
        }
        size_t idx[64];
        size_t npairs = (argc - 2) / 2;
        if (npairs > 64) {
            return err_syntax(c);
        }
        for (size_t p = 0; p < npairs; p++) {
            shale_slice name = argv[2 + 2 * p], val = argv[3 + 2 * p];
            size_t i = 0;
            while (i < NCONF && !eq_ci(name, conf_params[i].name)) {
                i++;
            }
            if (i == NCONF) {
                return rep_errf(c,
                                "ERR Unknown option or number of arguments for CONFIG SET - "
                                "'%.*s'",
                                (int)(name.len > 64 ? 64 : name.len), (const char *)name.data);
            }
            if (conf_params[i].readonly) {
                return rep_errf(c,
                                "ERR CONFIG SET failed (possibly related to argument '%s') - "
                                "can't set immutable config",
                                conf_params[i].name);
            }
            if (val.len >= sizeof c->sv->conf[0]) {
                return rep_errf(c,
                                "ERR CONFIG SET failed (possibly related to argument '%s') - "
                                "value too long",
                                conf_params[i].name);
            }
            idx[p] = i;
        }
        pthread_mutex_lock(&c->sv->mu);
        for (size_t p = 0; p < npairs; p++) {
            shale_slice val = argv[3 + 2 * p];
            memcpy(c->sv->conf[idx[p]], val.data, val.len);
            c->sv->conf[idx[p]][val.len] = '\0';
        }
        pthread_mutex_unlock(&c->sv->mu);
        return rep_ok(c);
    }
    if (eq_ci(sub, "RESETSTAT") && argc == 2) {
        atomic_store(&c->sv->commands, 0);
        atomic_store(&c->sv->hits, 0);
        atomic_store(&c->sv->misses, 0);
        atomic_store(&c->sv->connections, 0);
        return rep_ok(c);
    }
    if (eq_ci(sub, "REWRITE") && argc == 2) {
        return rep_err(c, "ERR The server is running without a config file");
    }
    if (eq_ci(sub, "RESETSTAT") || eq_ci(sub, "REWRITE")) {
        return err_arity(c, eq_ci(sub, "REWRITE") ? "config|rewrite" : "config|resetstat");
    }
    return err_subcmd(c, sub, "CONFIG");
}

/* ---- INFO ---- */

static void add(shale_buf *b, bool *oom, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add(shale_buf *b, bool *oom, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vappendf(b, fmt, ap) != SHALE_OK) {
        *oom = true;
    }
    va_end(ap);
}

/* Whether the callback's lines (cb) define `key`. */
static bool cb_has(const shale_buf *cb, const char *key)
{
    size_t kl = strlen(key);
    const char *p = cb->data, *end = p + cb->len;
    while (p != NULL && p < end) {
        if ((size_t)(end - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == ':') {
            return true;
        }
        p = memchr(p, '\n', (size_t)(end - p));
        p = p ? p + 1 : NULL;
    }
    return false;
}

static bool line_key(const char *p, size_t n, const char *key)
{
    size_t kl = strlen(key);
    return n > kl && memcmp(p, key, kl) == 0 && p[kl] == ':';
}

/* Appends the callback's lines for the Clients section (clients) or all others. */
static void cb_lines(const shale_buf *cb, shale_buf *b, bool clients, bool *oom)
{
    const char *p = cb->data, *end = p + cb->len;
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
        bool is_client = line_key(p, n, "connected_clients") || line_key(p, n, "blocked_clients") ||
                         line_key(p, n, "maxclients");
        if (is_client == clients && buf_append(b, p, n, NULL) != SHALE_OK) {
            *oom = true;
        }
        p = nl ? nl + 1 : NULL;
    }
}

static void human(char *out, size_t cap, uint64_t v)
{
    if (v >= (1u << 30)) {
        snprintf(out, cap, "%.2fG", (double)v / (1u << 30));
    } else if (v >= (1u << 20)) {
        snprintf(out, cap, "%.2fM", (double)v / (1u << 20));
    } else if (v >= 1024) {
        snprintf(out, cap, "%.2fK", (double)v / 1024);
    } else {
        snprintf(out, cap, "%" PRIu64 "B", v);
    }
}

enum { S_SERVER, S_CLIENTS, S_MEMORY, S_PERSISTENCE, S_STATS, S_REPLICATION, S_KEYSPACE, S_N };
static const char *const sect_names[S_N] = {"server", "clients",     "memory",  "persistence",
                                            "stats",  "replication", "keyspace"};

int resp_cmd_info(cctx *c, const shale_slice *argv, size_t argc)
{
    bool want[S_N] = {false};
    if (argc == 1) {
        memset(want, 1, sizeof want);
    }
    for (size_t j = 1; j < argc; j++) {
        if (eq_ci(argv[j], "all") || eq_ci(argv[j], "everything") || eq_ci(argv[j], "default")) {
            memset(want, 1, sizeof want);
        }
        for (size_t s = 0; s < S_N; s++) {
            if (eq_ci(argv[j], sect_names[s])) {
                want[s] = true;
            }
        }
    }
    resp_server *sv = c->sv;
    bool oom = false;
    shale_buf cb = {0}, b = {0};
    if (sv->info != NULL) {
        sv->info(sv->info_ctx, &cb);
    }
    shale_stats st;
    shale_error e;
    shale_code rc = shale_stats_get(sv->db, &st, &e);
    if (rc != SHALE_OK) {
        shale_buf_free(&cb);
        return store_err(c, rc, &e);
    }
    uint64_t now = now_ms();
    int sections = 0;
    char h1[32], h2[32];
    if (want[S_SERVER]) {
        struct utsname u;
        if (uname(&u) != 0) {
            memset(&u, 0, sizeof u);
        }
        uint64_t up = (now > sv->start_ms ? now - sv->start_ms : 0) / 1000;
        add(&b, &oom, "%s# Server\r\n", sections++ ? "\r\n" : "");
        add(&b, &oom,
            "redis_version:7.0.0\r\nshale_version:%s\r\nredis_mode:standalone\r\n"
            "os:%s %s %s\r\narch_bits:%d\r\nmultiplexing_api:epoll\r\nprocess_id:%ld\r\n",
            shale_version(), u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8),
            (long)getpid());
        if (!cb_has(&cb, "uptime_in_seconds")) {
            add(&b, &oom, "uptime_in_seconds:%" PRIu64 "\r\n", up);
        }
        cb_lines(&cb, &b, false, &oom);
        add(&b, &oom, "uptime_in_days:%" PRIu64 "\r\n", up / 86400);
    }
    if (want[S_CLIENTS]) {
        add(&b, &oom, "%s# Clients\r\n", sections++ ? "\r\n" : "");
        if (!cb_has(&cb, "connected_clients")) {
            pthread_mutex_lock(&sv->mu);
            size_t n = sv->nsessions;
            pthread_mutex_unlock(&sv->mu);
            add(&b, &oom, "connected_clients:%zu\r\n", n);
        }
        cb_lines(&cb, &b, true, &oom);
        if (!cb_has(&cb, "blocked_clients")) {
            add(&b, &oom, "blocked_clients:0\r\n");
        }
    }
    if (want[S_MEMORY]) {
        uint64_t used = st.memory_bytes + st.block_cache_bytes;
        uint64_t max = st.block_cache_capacity + 2 * st.memtable_budget_bytes;
        human(h1, sizeof h1, used);
        human(h2, sizeof h2, max);
        add(&b, &oom, "%s# Memory\r\n", sections++ ? "\r\n" : "");
        add(&b, &oom,
            "used_memory:%" PRIu64 "\r\nused_memory_human:%s\r\nmaxmemory:%" PRIu64
            "\r\nmaxmemory_human:%s\r\nmaxmemory_policy:noeviction\r\n"
            "shale_memtable_bytes:%" PRIu64 "\r\nshale_block_cache_bytes:%" PRIu64 "\r\n",
            used, h1, max, h2, st.memory_bytes, st.block_cache_bytes);
    }
    if (want[S_PERSISTENCE]) {
        add(&b, &oom, "%s# Persistence\r\n", sections++ ? "\r\n" : "");
        add(&b, &oom,
            "loading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\n"
            "rdb_last_save_time:%" PRIu64 "\r\nrdb_last_bgsave_status:ok\r\naof_enabled:0\r\n"
            "shale_log_bytes:%" PRIu64 "\r\nshale_log_segments:%" PRIu64
            "\r\nshale_table_bytes:%" PRIu64 "\r\nshale_writes_stopped:%d\r\n"
            "shale_background_error:%d\r\nshale_compactions_halted:%d\r\n"
            "shale_flush_failures:%" PRIu64 "\r\nshale_compaction_failures:%" PRIu64 "\r\n",
            sv->start_ms / 1000, st.log_bytes, st.log_segments, st.table_bytes_on_disk,
            st.writes_stopped ? 1 : 0, st.background_error ? 1 : 0, st.compactions_halted ? 1 : 0,
            st.flush_failures, st.compaction_failures);
    }
    if (want[S_STATS]) {
        add(&b, &oom, "%s# Stats\r\n", sections++ ? "\r\n" : "");
        add(&b, &oom,
            "total_connections_received:%" PRIu64 "\r\ntotal_commands_processed:%" PRIu64
            "\r\ninstantaneous_ops_per_sec:0\r\nexpired_keys:%" PRIu64
            "\r\nevicted_keys:0\r\nkeyspace_hits:%" PRIu64 "\r\nkeyspace_misses:%" PRIu64
            "\r\nshale_txn_commits:%" PRIu64 "\r\nshale_txn_conflicts:%" PRIu64
            "\r\nshale_flushes:%" PRIu64 "\r\nshale_compactions:%" PRIu64 "\r\n",
            (uint64_t)atomic_load(&sv->connections), (uint64_t)atomic_load(&sv->commands),
            st.expired_removed, (uint64_t)atomic_load(&sv->hits),
            (uint64_t)atomic_load(&sv->misses), st.txn_commits, st.txn_conflicts, st.flushes,
            st.compactions);
    }
    if (want[S_REPLICATION]) {
        add(&b, &oom, "%s# Replication\r\nrole:master\r\nconnected_slaves:0\r\n",
            sections++ ? "\r\n" : "");
    }
    int r = CR_OK;
    if (want[S_KEYSPACE]) {
        uint64_t keys, expires;
        add(&b, &oom, "%s# Keyspace\r\n", sections++ ? "\r\n" : "");
        r = resp_cmd_count_keys(c, &keys, &expires);
        if (r == CR_OK && keys > 0) {
            add(&b, &oom, "db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", keys, expires);
        }
    }
    if (r == CR_OK) {
        r = oom ? rep_err(c, "ERR out of memory")
                : wr(c, resp_w_verbatim(c->out, proto(c), sl(&b), NULL));
    }
    shale_buf_free(&cb);
    shale_buf_free(&b);
    return r;
}

/* ---- COMMAND ---- */

static void command_entry(cctx *c, const cmd_def *d)
{
    size_t nflags = 0;
    for (int i = 0; i < F_NFLAGS; i++) {
        nflags += (d->flags >> i) & 1u;
    }
    rep_arr(c, 10);
    rep_cstr(c, d->name);
    rep_int(c, d->arity);
    rep_set(c, nflags);
    for (int i = 0; i < F_NFLAGS; i++) {
        if (d->flags & (1u << i)) {
            rep_simple(c, flag_names[i]);
        }
    }
    rep_int(c, d->first);
    rep_int(c, d->last);
    rep_int(c, d->step);
    rep_set(c, 1);
    rep_simple(c, d->acl);
    rep_set(c, 0);
    rep_arr(c, 0);
    rep_arr(c, 0);
}

int resp_cmd_command(cctx *c, const shale_slice *argv, size_t argc)
{
    if (argc == 1) {
        rep_arr(c, resp_cmd_table_len);
        for (size_t i = 0; i < resp_cmd_table_len; i++) {
            command_entry(c, &resp_cmd_table[i]);
        }
        return CR_OK;
    }
    shale_slice sub = argv[1];
    if (eq_ci(sub, "COUNT") && argc == 2) {
        return rep_int(c, (long long)resp_cmd_table_len);
    }
    if (eq_ci(sub, "LIST") && argc == 2) {
        rep_arr(c, resp_cmd_table_len);
        for (size_t i = 0; i < resp_cmd_table_len; i++) {
            rep_cstr(c, resp_cmd_table[i].name);
        }
        return CR_OK;
    }
    if (eq_ci(sub, "INFO")) {
        if (argc == 2) {
            return resp_cmd_command(c, argv, 1);
        }
        rep_arr(c, argc - 2);
        for (size_t j = 2; j < argc; j++) {
            const cmd_def *d = resp_cmd_lookup(argv[j]);
            if (d != NULL) {
                command_entry(c, d);
            } else {
                rep_null(c);
            }
        }
        return CR_OK;
    }
    if (eq_ci(sub, "DOCS")) {
        return rep_map(c, 0);
    }
    if (eq_ci(sub, "HELP") && argc == 2) {
        rep_arr(c, 5);
        rep_simple(c, "COMMAND [<subcommand> [<arg> [value] [opt] ...]]. Subcommands are:");
        rep_simple(c, "COUNT | LIST | DOCS [<name> ...]");
        rep_simple(c, "INFO [<name> ...]");
        rep_simple(c, "    Return details about the given commands, or all of them.");
        return rep_simple(c, "HELP");
    }
    if (eq_ci(sub, "COUNT") || eq_ci(sub, "LIST") || eq_ci(sub, "HELP")) {
        return err_arity(c, eq_ci(sub, "COUNT")  ? "command|count"
                            : eq_ci(sub, "LIST") ? "command|list"
                                                 : "command|help");
    }
    return err_subcmd(c, sub, "COMMAND");
}

/* ---- server and sessions ---- */

shale_code resp_server_new(const resp_server_opts *opts, resp_server **out, shale_error *err)
{
    if (out == NULL || opts == NULL || opts->db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "resp_server_new: NULL argument");
    }
    *out = NULL;
    for (size_t i = 1; i < resp_cmd_table_len; i++) {
        assert(strcmp(resp_cmd_table[i - 1].name, resp_cmd_table[i].name) < 0);
    }
    resp_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return err_nomem(err);
    }
    if (opts->auth_token != NULL && opts->auth_token[0] != '\0') {
        s->token = strdup(opts->auth_token);
        if (s->token == NULL) {
            free(s);
            return err_nomem(err);
        }
        s->token_len = strlen(s->token);
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->token);
        free(s);
        return err_nomem(err);
    }
    s->db = opts->db;
    s->wopts.durability = opts->durability;
    s->info = opts->info;
    s->info_ctx = opts->info_ctx;
    s->start_ms = now_ms();
    for (size_t i = 0; i < NCONF; i++) {
        if (conf_params[i].def != NULL) {
            snprintf(s->conf[i], sizeof s->conf[i], "%s", conf_params[i].def);
        }
    }
    atomic_init(&s->next_id, 1);
    *out = s;
    return SHALE_OK;
}

void resp_server_free(resp_server *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_destroy(&s->mu);
    free(s->token);
    free(s);
}

resp_session *resp_session_new(resp_server *s, const char *peer)
{
    resp_session *ss = calloc(1, sizeof *ss);
    if (ss == NULL) {
        return NULL;
    }
    ss->sv = s;
    ss->id = atomic_fetch_add(&s->next_id, 1);
    snprintf(ss->peer, sizeof ss->peer, "%s", peer ? peer : "");
    ss->created_ms = now_ms();
    ss->rng = (ss->id * 0x9E3779B97F4A7C15ULL) ^ ss->created_ms ^ (uintptr_t)ss;
    if (ss->rng == 0) {
        ss->rng = 1;
    }
    atomic_init(&ss->proto, 2);
    atomic_init(&ss->multi, -1);
    atomic_init(&ss->last_ms, ss->created_ms);
    atomic_init(&ss->last_cmd, "NULL");
    ss->authed = s->token == NULL;
    atomic_fetch_add(&s->connections, 1);
    pthread_mutex_lock(&s->mu);
    ss->next = s->head;
    if (s->head != NULL) {
        s->head->prev = ss;
    }
    s->head = ss;
    s->nsessions++;
    pthread_mutex_unlock(&s->mu);
    return ss;
}

void resp_session_free(resp_session *ss)
{
    if (ss == NULL) {
        return;
    }
    resp_server *s = ss->sv;
    pthread_mutex_lock(&s->mu);
    if (ss->prev != NULL) {
        ss->prev->next = ss->next;
    } else {
        s->head = ss->next;
    }
    if (ss->next != NULL) {
        ss->next->prev = ss->prev;
    }
    s->nsessions--;
    pthread_mutex_unlock(&s->mu);
    resp_cmd_session_release(ss);
    free(ss->name);
    free(ss->lib_name);
    free(ss->lib_ver);
    free(ss);
}
