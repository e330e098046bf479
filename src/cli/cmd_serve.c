/*
 * cmd_serve: `shale serve`, the database as a server (src/server/server.h): flags, an optional
 * config file with the same keys, the signals that stop it, and the "ready" line.
 *
 * Config file: one "key value" or "key = value" per line, keys spelled as the flags without the
 * dashes ("http 0.0.0.0:8080"); '#' starts a comment; a flag given on the command line wins over
 * the file. An unknown key or a bad value is an error naming the file and line.
 *
 * Output: once both listeners are bound, exactly one line on stdout,
 *   shale serve ready: http=HOST:PORT resp=HOST:PORT
 * (the bound ports, so port 0 can be used), flushed; logs go to stderr. SIGINT and SIGTERM stop
 * the server gracefully (exit 0 when the database closed cleanly); SIGPIPE is ignored.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"

/* SIGINT and SIGTERM are blocked in every thread (the mask is set before any thread starts)
 * and taken by this one with sigwait, so no handler can run on some other thread while the
 * server is being freed. After server_run returns, the main thread sets `done` and wakes it. */
typedef struct signal_waiter {
    server *s;
    sigset_t set;
    _Atomic bool done;
} signal_waiter;

static void *signal_main(void *arg)
{
    signal_waiter *sw = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&sw->set, &sig) != 0 || atomic_load(&sw->done)) {
            return NULL;
        }
        server_stop(sw->s);
    }
}

static const cli_flag_spec serve_flags[] = {
    {"data", "DIR", "the database directory (default ./shale-data; created if missing)"},
    {"http", "ADDR:PORT", "HTTP/JSON listener (default 127.0.0.1:8080; off to disable)"},
    {"resp", "ADDR:PORT", "Redis protocol listener (default 127.0.0.1:6380; off to disable)"},
    {"max-memory", "MIB", "memory budget in MiB (memtables + block cache; default 256)"},
    {"durability", "LEVEL", "none|memory|os|full (default os)"},
    {"threads", "N", "worker threads (default: one per core)"},
    {"auth-token", "TOKEN", "require this token (HTTP Authorization: Bearer, RESP AUTH)"},
    {"requirepass", "TOKEN", "the same as --auth-token, as Redis spells it"},
    {"log-level", "LEVEL", "error|info|debug (default info; debug logs every request)"},
    {"idle-timeout", "SECONDS", "close connections idle this long (default 300; 0 = never)"},
    {"max-body", "BYTES", "largest HTTP request body (default 16777216)"},
    {"max-clients", "N", "most connections at once (default 10000)"},
    {"backup-dir", "DIR", "where POST /admin/backup writes backups (default: off)"},
    {"config", "FILE", "read settings from FILE (same keys as these flags)"},
    {NULL, NULL, NULL},
};

static const cli_spec serve_spec = {
    .name = "serve",
    .args = "",
    .summary = "Runs the database as a server: HTTP/JSON for documents, the Redis protocol for "
               "keys.",
    .details = "Listens on loopback unless told otherwise. Prints one line\n"
               "  shale serve ready: http=HOST:PORT resp=HOST:PORT\n"
               "on stdout once listening (port 0 picks a free port). SIGINT or SIGTERM stops\n"
               "accepting, finishes requests in flight, closes the database and exits 0.\n"
               "See docs/SERVER.md for the routes and commands.\n",
    .min_args = 0,
    .max_args = 0,
    .flags = serve_flags,
};

#define MAX_CONF 32

typedef struct conf {
    char *key[MAX_CONF], *value[MAX_CONF];
    int line[MAX_CONF];
    size_t n;
    char *text;
} conf;

static bool known_key(const char *k)
{
    for (const cli_flag_spec *f = serve_flags; f->name != NULL; f++) {
        if (strcmp(f->name, k) == 0 && strcmp(k, "config") != 0) {
            return true;
        }
    }
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        *--e = '\0';
    }
    return s;
}

static bool load_conf(const char *path, conf *c)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cli_errorf("serve", "--config %s: %s", path, strerror(errno));
        return false;
    }
    char buf[1024];
    int lineno = 0;
    bool ok = true;
    while (ok && fgets(buf, sizeof buf, f) != NULL) {
        lineno++;
        char *hash = strchr(buf, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        buf[strcspn(buf, "\n")] = '\0';
        char *line = trim(buf);
        if (*line == '\0') {
            continue;
        }
        size_t kl = strcspn(line, " \t=");
        char *rest = line + kl;
        if (*rest != '\0') {
            *rest++ = '\0';
        }
        rest = trim(rest);
        if (*rest == '=') {
            rest = trim(rest + 1);
        }
        if (!known_key(line)) {
            ok = cli_errorf("serve", "%s:%d: unknown key '%s'", path, lineno, line) == CLI_OK;
        } else if (*rest == '\0') {
            ok = cli_errorf("serve", "%s:%d: '%s' needs a value", path, lineno, line) == CLI_OK;
        } else if (c->n == MAX_CONF) {
            ok = cli_errorf("serve", "%s:%d: too many settings", path, lineno) == CLI_OK;
        } else {
            c->key[c->n] = strdup(line);
            c->value[c->n] = strdup(rest);
            c->line[c->n] = lineno;
            if (c->key[c->n] == NULL || c->value[c->n] == NULL) {
                ok = cli_errorf("serve", "out of memory") == CLI_OK;
            }
            c->n++;
        }
    }
    fclose(f);
    return ok;
}

static void free_conf(conf *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->key[i]);
        free(c->value[i]);
    }
}

/* The flag's value, else the config file's (last one wins), else NULL. */
static const char *setting(const cli_args *a, const conf *c, const char *name)
{
    const char *v = cli_flag(a, name);
    for (size_t i = 0; v == NULL && i < c->n; i++) {
        if (strcmp(c->key[c->n - 1 - i], name) == 0) {
            v = c->value[c->n - 1 - i];
        }
    }
    return v;
}

static bool number(const cli_args *a, const conf *c, const char *name, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    const char *v = setting(a, c, name);
    return v == NULL || cli_parse_u64("serve", name, v, min, max, out);
}

static bool configure(const cli_args *a, const conf *c, server_config *cfg)
{
    const char *v;
    if ((v = setting(a, c, "data")) != NULL) {
        cfg->data_dir = v;
    }
    if ((v = setting(a, c, "http")) != NULL) {
        cfg->http_addr = v;
    }
    if ((v = setting(a, c, "resp")) != NULL) {
        cfg->resp_addr = v;
    }
    if ((v = setting(a, c, "auth-token")) != NULL || (v = setting(a, c, "requirepass")) != NULL) {
        cfg->auth_token = v;
    }
    if ((v = setting(a, c, "backup-dir")) != NULL) {
        cfg->backup_dir = v;
    }
    if ((v = setting(a, c, "durability")) != NULL) {
        shale_error e;
        if (shale_durability_parse(v, &cfg->durability, &e) != SHALE_OK) {
            return cli_errorf("serve", "--durability %s: expected none, memory, os or full", v) ==
                   CLI_OK;
        }
        cfg->durability_set = true;
    }
    if ((v = setting(a, c, "log-level")) != NULL) {
        if (strcmp(v, "error") == 0) {
            cfg->log_level = 0;
        } else if (strcmp(v, "info") == 0) {
            cfg->log_level = 1;
        } else if (strcmp(v, "debug") == 0) {
            cfg->log_level = 2;
        } else {
            return cli_errorf("serve", "--log-level %s: expected error, info or debug", v) ==
                   CLI_OK;
        }
    }
    uint64_t mem = cfg->max_memory_mb, threads = cfg->threads, idle = cfg->idle_timeout_s;
    uint64_t clients = cfg->max_clients;
    if (!number(a, c, "max-memory", 4, 1048576, &mem) ||
        !number(a, c, "threads", 1, 256, &threads) ||
        !number(a, c, "idle-timeout", 0, 86400 * 365, &idle) ||
        !number(a, c, "max-body", 1024, (uint64_t)1 << 32, &cfg->max_body) ||
        !number(a, c, "max-clients", 1, 1000000, &clients)) {
        return false;
    }
    cfg->max_memory_mb = (uint32_t)mem;
    cfg->threads = (uint32_t)threads;
    cfg->idle_timeout_s = (uint32_t)idle;
    cfg->max_clients = (uint32_t)clients;
    return true;
}

int cmd_serve(int argc, char **argv)
{
    cli_args a;
    int rc;
    if (!cli_parse(&serve_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    conf c = {0};
    server_config cfg;
    server_config_defaults(&cfg);
    const char *path = cli_flag(&a, "config");
    if ((path != NULL && !load_conf(path, &c)) || !configure(&a, &c, &cfg)) {
        free_conf(&c);
        return CLI_ERROR;
    }
    signal_waiter sw = {0};
    sigemptyset(&sw.set);
    sigaddset(&sw.set, SIGINT);
    sigaddset(&sw.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sw.set, NULL);
    signal(SIGPIPE, SIG_IGN);
    server *s = NULL;
    shale_error err;
    if (server_open(&cfg, &s, &err) != SHALE_OK) {
        free_conf(&c);
        return cli_fail("serve", &err);
    }
    sw.s = s;
    pthread_t sig_thread;
    if (pthread_create(&sig_thread, NULL, signal_main, &sw) != 0) {
        (void)server_close(s, NULL);
        free_conf(&c);
        return cli_errorf("serve", "cannot start the signal thread");
    }
    char http[300] = "off", resp[300] = "off";
    if (server_http_port(s) != 0) {
        const char *h = cfg.http_addr;
        snprintf(http, sizeof http, "%.*s:%u", (int)(strrchr(h, ':') - h), h, server_http_port(s));
    }
    if (server_resp_port(s) != 0) {
        const char *h = cfg.resp_addr;
        snprintf(resp, sizeof resp, "%.*s:%u", (int)(strrchr(h, ':') - h), h, server_resp_port(s));
    }
    printf("shale serve ready: http=%s resp=%s\n", http, resp);
    fflush(stdout);
    shale_code run = server_run(s, &err);
    if (run != SHALE_OK) {
        cli_fail("serve", &err);
    }
    atomic_store(&sw.done, true);
    pthread_kill(sig_thread, SIGTERM); /* blocked everywhere: sigwait takes it */
    pthread_join(sig_thread, NULL);
    shale_code closed = server_close(s, &err);
    free_conf(&c);
    if (closed != SHALE_OK) {
        return cli_fail("serve", &err);
    }
    return run == SHALE_OK ? CLI_OK : CLI_ERROR;
}
