/*
 * net_util: see net_util.h. The server runs as a child of the test process: fork, then in the
 * child only async-signal-safe calls (dup2, prctl, execve) with everything prepared before the
 * fork. Every child's pid is kept in a small table so that teardown and exit can kill it.
 */
#include "net_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

extern char **environ;

char *nu_root;

#define MAX_CHILDREN 16
static pid_t children[MAX_CHILDREN];
static bool atexit_done;

static void track(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
    kill(pid, SIGKILL);
    cr_assert_fail("net_util: too many server children");
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == pid) {
            children[i] = 0;
        }
    }
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR) {
            }
            children[i] = 0;
        }
    }
}

uint64_t nu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nu_setup(void)
{
    const char *bin = getenv("SHALE_BIN");
    if (bin == NULL || bin[0] == '\0') {
        cr_skip_test("SHALE_BIN is not set (run under ctest, or set it to the shale program)");
    }
    if (!atexit_done) {
        atexit(kill_all);
        atexit_done = true;
    }
    /* A peer closing a socket we write to must be an error return, not a death. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    nu_root = tu_tmpdir("net");
}

void nu_teardown(void)
{
    kill_all();
    if (nu_root != NULL) {
        tu_rm_rf(nu_root);
        free(nu_root);
        nu_root = NULL;
    }
    curl_global_cleanup();
}

char *nu_path(const char *name)
{
    return tu_path(nu_root, name);
}

/* ---- the server process ---- */

static int wait_exit(pid_t pid, int timeout_ms)
{
    uint64_t end = nu_now_ms() + (uint64_t)timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (r < 0 && errno != EINTR) {
            return -2;
        }
        if (nu_now_ms() > end) {
            return -1;
        }
        tu_sleep_us(5000);
    }
}

char *nu_log(const nu_server *s)
{
    int fd = open(s->log, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return strdup("");
    }
    return tu_read_fd(fd, NULL);
}

static bool env_overridden(const char *entry, const char *const *env)
{
    const char *eq = strchr(entry, '=');
    size_t n = eq != NULL ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        if (strncmp(env[i], entry, n) == 0 && env[i][n] == '=') {
            return true;
        }
    }
    return false;
}

/* Forks and execs the server; returns -1 when ready, else its exit status. */
static int spawn(nu_server *s, const char *dir, const char *const *extra, const char *const *env,
                 char *why, size_t why_cap)
{
    static int serial;
    const char *bin = getenv("SHALE_BIN");
    const char *argv[48];
    size_t n = 0;

    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log, sizeof s->log, "%s/server%d.stderr", nu_root, serial++);
    argv[n++] = bin;
    argv[n++] = "serve";
    argv[n++] = "--data";
    argv[n++] = s->dir;
    argv[n++] = "--http";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--resp";
    argv[n++] = "127.0.0.1:0";
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        cr_assert_lt(n, 46, "too many server arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;

    size_t nenv = 0, cap = 8;
    for (char **e = environ; *e != NULL; e++) {
        cap++;
    }
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        cap++;
    }
    const char **envp = calloc(cap, sizeof *envp);
    cr_assert_not_null(envp);
    for (char **e = environ; *e != NULL; e++) {
        if (!env_overridden(*e, env)) {
            envp[nenv++] = *e;
        }
    }
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        envp[nenv++] = env[i];
    }
    envp[nenv] = NULL;

    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
    int logfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(logfd, 0, "open %s: %s", s->log, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(nullfd, 0);
    pid_t parent = getpid();

    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the test process, whatever way it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        signal(SIGPIPE, SIG_DFL);
        dup2(nullfd, 0);
        dup2(pfd[1], 1);
        dup2(logfd, 2);
        execve(bin, (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    track(pid);
    free(envp);
    close(pfd[1]);
    close(logfd);
    close(nullfd);
    s->pid = pid;
    s->out_fd = pfd[0];

    /* Read the ready line. */
    char line[512];
    size_t len = 0;
    uint64_t end = nu_now_ms() + NU_DEADLINE_MS;
    for (;;) {
        char *nl = memchr(line, '\n', len);
        if (nl != NULL) {
            *nl = '\0';
            break;
        }
        uint64_t now = nu_now_ms();
        if (now > end || len + 1 >= sizeof line) {
            snprintf(why, why_cap, "no ready line (got \"%.*s\")", (int)len, line);
            kill(pid, SIGKILL);
            int st = wait_exit(pid, NU_DEADLINE_MS);
            untrack(pid);
            s->pid = 0;
            return st >= 0 ? st : 137;
        }
        struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(end - now));
        if (pr <= 0) {
            continue;
        }
        ssize_t r = read(s->out_fd, line + len, sizeof line - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        /* stdout closed before the line: the server ended (or closed stdout) */
        int st = wait_exit(pid, NU_DEADLINE_MS);
        if (st < 0) {
            kill(pid, SIGKILL);
            st = wait_exit(pid, NU_DEADLINE_MS);
            snprintf(why, why_cap, "closed stdout without the ready line and kept running");
        } else {
            snprintf(why, why_cap, "exited with status %d before the ready line", st);
        }
        untrack(pid);
        s->pid = 0;
        close(s->out_fd);
        s->out_fd = -1;
        return st >= 0 ? st : 137;
    }
    unsigned hp = 0, rp = 0;
    int got = sscanf(line, "shale serve ready: http=127.0.0.1:%u resp=127.0.0.1:%u", &hp, &rp);
    if (got != 2 || hp == 0 || hp > 65535 || rp == 0 || rp > 65535) {
        snprintf(why, why_cap, "malformed ready line \"%s\"", line);
        kill(pid, SIGKILL);
        wait_exit(pid, NU_DEADLINE_MS);
        untrack(pid);
        s->pid = 0;
        return 200;
    }
    s->http_port = (uint16_t)hp;
    s->resp_port = (uint16_t)rp;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", hp);
    return -1;
}

int nu_start_try(nu_server *s, const char *dir, const char *const *extra)
{
    char why[600];
    return spawn(s, dir, extra, NULL, why, sizeof why);
}

void nu_start_env(nu_server *s, const char *dir, const char *const *extra, const char *const *env)
{
    char why[600];
    int st = spawn(s, dir, extra, env, why, sizeof why);
    if (st != -1) {
        char *log = nu_log(s);
        cr_assert_fail("shale serve --data %s: %s; stderr:\n%s", dir, why, log);
    }
}

void nu_start(nu_server *s, const char *dir, const char *const *extra)
{
    nu_start_env(s, dir, extra, NULL);
}

int nu_stop(nu_server *s)
{
    cr_assert_gt(s->pid, 0, "nu_stop: no server running");
    kill(s->pid, SIGTERM);
    int st = wait_exit(s->pid, NU_DEADLINE_MS);
    if (st < 0) {
        kill(s->pid, SIGKILL);
        wait_exit(s->pid, NU_DEADLINE_MS);
        untrack(s->pid);
        s->pid = 0;
        char *log = nu_log(s);
        cr_assert_fail("server did not exit within %d ms of SIGTERM; stderr:\n%s", NU_DEADLINE_MS,
                       log);
    }
    untrack(s->pid);
    s->pid = 0;
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    return st;
}

void nu_stop_ok(nu_server *s)
{
    int st = nu_stop(s);
    if (st != 0) {
        char *log = nu_log(s);
        cr_assert_fail("server exited with status %d after SIGTERM (want 0); stderr:\n%s", st, log);
    }
}

void nu_kill9(nu_server *s)
{
    cr_assert_gt(s->pid, 0);
    kill(s->pid, SIGKILL);
    int st = wait_exit(s->pid, NU_DEADLINE_MS);
    cr_assert_eq(st, 128 + SIGKILL, "SIGKILLed server ended with %d", st);
    untrack(s->pid);
    s->pid = 0;
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
}

uint64_t nu_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    uint64_t kib = 0;
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
            kib = v;
            break;
        }
    }
    fclose(f);
    return kib;
}

/* ---- HTTP ---- */

typedef struct growbuf {
    char *p;
    size_t len, cap;
} growbuf;

static size_t gb_add(growbuf *g, const void *data, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(g->p, cap);
        if (p == NULL) {
            return 0;
        }
        g->p = p;
        g->cap = cap;
    }
    memcpy(g->p + g->len, data, n);
    g->len += n;
    g->p[g->len] = '\0';
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    return gb_add(ud, data, size * nmemb);
}

nu_resp nu_http(const nu_server *s, const char *method, const char *path, const char *body,
                size_t body_len, const char *const *hdrs)
{
    nu_resp r = {0};
    growbuf b = {0}, h = {0};
    char url[2048];
    struct curl_slist *list = NULL;

    snprintf(url, sizeof url, "%s%s", s->url, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)NU_DEADLINE_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    }
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        list = curl_slist_append(list, "Content-Type: application/json");
    }
    /* No "Expect: 100-continue" round trip. */
    list = curl_slist_append(list, "Expect:");
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++) {
        list = curl_slist_append(list, hdrs[i]);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    CURLcode cc = curl_easy_perform(c);
    r.curl_code = (int)cc;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    if (b.p == NULL) {
        gb_add(&b, "", 0);
    }
    if (h.p == NULL) {
        gb_add(&h, "", 0);
    }
    r.body = b.p;
    r.len = b.len;
    r.headers = h.p;
    return r;
}

char *nu_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, (int)strlen(s));
    cr_assert_not_null(e);
    char *out = strdup(e);
    curl_free(e);
    return out;
}

void nu_resp_free(nu_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

const char *nu_header(const nu_resp *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = r->headers;
    const char *found = NULL;
    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t ll = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (ll > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            found = p; /* the last one wins (after a 100 Continue block) */
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
    if (found == NULL) {
        return NULL;
    }
    const char *v = found + n + 1;
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    size_t vl = strcspn(v, "\r\n");
    if (vl >= cap) {
        vl = cap - 1;
    }
    memcpy(out, v, vl);
    out[vl] = '\0';
    return out;
}

json_t *nu_json(const nu_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
    cr_assert_not_null(j, "invalid JSON body (%s at %d:%d) of status %ld: %.400s", je.text, je.line,
                       je.column, r->status, r->body);
    return j;
}

void nu_expect_status(const nu_resp *r, long want, const char *ctx)
{
    cr_assert_eq(r->curl_code, 0, "%s: transport failed: curl code %d (%s)", ctx, r->curl_code,
                 curl_easy_strerror((CURLcode)r->curl_code));
    cr_assert_eq(r->status, want, "%s: status %ld, want %ld; body: %.400s", ctx, r->status, want,
                 r->body);
    if (want >= 400) {
        json_error_t je;
        json_t *j = json_loadb(r->body, r->len, 0, &je);
        cr_assert_not_null(j, "%s: error body is not a JSON object: %.400s", ctx, r->body);
        cr_assert(json_is_string(json_object_get(j, "error")), "%s: no string \"error\": %.400s",
                  ctx, r->body);
        cr_assert(json_is_string(json_object_get(j, "message")),
                  "%s: no string \"message\": %.400s", ctx, r->body);
        json_t *code = json_object_get(j, "code");
        cr_assert(json_is_integer(code) && json_integer_value(code) == want,
                  "%s: \"code\" is not %ld: %.400s", ctx, want, r->body);
        json_decref(j);
    }
}

json_t *nu_jget(json_t *o, const char *key, json_type type, const char *ctx)
{
    cr_assert(json_is_object(o), "%s: not an object", ctx);
    json_t *v = json_object_get(o, key);
    char *dump = json_dumps(o, JSON_COMPACT);
    cr_assert_not_null(v, "%s: no key \"%s\" in %.400s", ctx, key, dump ? dump : "?");
    bool ok;
    switch (type) {
    case JSON_TRUE:
    case JSON_FALSE:
        ok = json_is_boolean(v);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        ok = json_is_number(v);
        break;
    default:
        ok = json_typeof(v) == type;
        break;
    }
    cr_assert(ok, "%s: key \"%s\" has JSON type %d, want %d, in %.400s", ctx, key,
              (int)json_typeof(v), (int)type, dump ? dump : "?");
    free(dump);
    return v;
}

/* ---- RESP via hiredis ---- */

redisContext *nu_redis(const nu_server *s)
{
    struct timeval tv = {.tv_sec = NU_DEADLINE_MS / 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->resp_port, tv);
    cr_assert_not_null(c);
    cr_assert_eq(c->err, 0, "redis connect to port %u: %s", s->resp_port, c->errstr);
    cr_assert_eq(redisSetTimeout(c, tv), REDIS_OK);
    return c;
}

redisReply *nu_cmd(redisContext *c, const char *const *argv)
{
    int argc = 0;
    size_t lens[64];
    while (argv[argc] != NULL) {
        cr_assert_lt(argc, 64);
        lens[argc] = strlen(argv[argc]);
        argc++;
    }
    redisReply *r = redisCommandArgv(c, argc, (const char **)argv, lens);
    cr_assert_not_null(r, "%s: no reply (connection error %d: %s)", argv[0], c->err, c->errstr);
    return r;
}

static const char *rtype(int t)
{
    switch (t) {
    case REDIS_REPLY_STRING:
        return "bulk";
    case REDIS_REPLY_ARRAY:
        return "array";
    case REDIS_REPLY_INTEGER:
        return "integer";
    case REDIS_REPLY_NIL:
        return "nil";
    case REDIS_REPLY_STATUS:
        return "status";
    case REDIS_REPLY_ERROR:
        return "error";
    default:
        return "?";
    }
}

void nu_ok(redisReply *r, const char *status, const char *ctx)
{
    cr_assert_eq(r->type, REDIS_REPLY_STATUS, "%s: %s reply \"%s\", want +%s", ctx, rtype(r->type),
                 r->str ? r->str : "", status);
    cr_assert_str_eq(r->str, status, "%s: +%s, want +%s", ctx, r->str, status);
    freeReplyObject(r);
}

void nu_int(redisReply *r, long long v, const char *ctx)
{
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s: %s reply \"%s\", want :%lld", ctx,
                 rtype(r->type), r->str ? r->str : "", v);
    cr_assert_eq(r->integer, v, "%s: :%lld, want :%lld", ctx, r->integer, v);
    freeReplyObject(r);
}

void nu_str(redisReply *r, const char *v, const char *ctx)
{
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s: %s reply \"%s\", want bulk \"%s\"", ctx,
                 rtype(r->type), r->str ? r->str : "", v);
    cr_assert(r->len == strlen(v) && memcmp(r->str, v, r->len) == 0,
              "%s: bulk \"%.*s\", want \"%s\"", ctx, (int)r->len, r->str, v);
    freeReplyObject(r);
}

void nu_nil(redisReply *r, const char *ctx)
{
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "%s: %s reply \"%s\", want nil", ctx, rtype(r->type),
                 r->str ? r->str : "");
    freeReplyObject(r);
}

void nu_err(redisReply *r, const char *prefix, const char *ctx)
{
    cr_assert_eq(r->type, REDIS_REPLY_ERROR, "%s: %s reply \"%s\" (:%lld), want error %s...", ctx,
                 rtype(r->type), r->str ? r->str : "", r->integer, prefix);
    cr_assert(strncmp(r->str, prefix, strlen(prefix)) == 0, "%s: error \"%s\", want \"%s...\"", ctx,
              r->str, prefix);
    freeReplyObject(r);
}

/* ---- raw sockets ---- */

int nu_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } while (rc < 0 && errno == EINTR);
    cr_assert_eq(rc, 0, "connect 127.0.0.1:%u: %s", port, strerror(errno));
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool nu_send_try(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        c += w;
        n -= (size_t)w;
    }
    return true;
}

void nu_send(int fd, const void *p, size_t n)
{
    cr_assert(nu_send_try(fd, p, n), "send: %s", strerror(errno));
}

/* Length of the line starting at buf (up to and including CRLF), 0 if incomplete. */
static size_t line_len(const char *buf, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') {
            return i + 2;
        }
    }
    return 0;
}

long nu_resp_len(const char *buf, size_t n)
{
    if (n == 0) {
        return 0;
    }
    size_t ll = line_len(buf, n);
    if (ll == 0) {
        return 0;
    }
    char t = buf[0];
    long long v = 0;
    switch (t) {
    case '+':
    case '-':
    case ':':
    case '_':
    case '#':
    case ',':
    case '(':
        return (long)ll;
    case '$':
    case '=':
    case '!':
        if (sscanf(buf + 1, "%lld", &v) != 1) {
            return -1;
        }
        if (v < 0) {
            return (long)ll;
        }
        if (n < ll + (size_t)v + 2) {
            return 0;
        }
        return (long)(ll + (size_t)v + 2);
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
        if (sscanf(buf + 1, "%lld", &v) != 1) {
            return -1;
        }
        if (v < 0) {
            return (long)ll;
        }
        long long items = (t == '%' || t == '|') ? 2 * v : v;
        size_t off = ll;
        for (long long i = 0; i < items; i++) {
            long e = nu_resp_len(buf + off, n - off);
            if (e <= 0) {
                return e;
            }
            off += (size_t)e;
        }
        return (long)off;
    }
    default:
        return -1;
    }
}

char *nu_read_replies(int fd, int count, size_t *len, bool *eof)
{
    growbuf g = {0};
    *eof = false;
    *len = 0;
    uint64_t end = nu_now_ms() + NU_DEADLINE_MS;
    for (;;) {
        size_t off = 0;
        int whole = 0;
        while (whole < count && off < g.len) {
            long rl = nu_resp_len(g.p + off, g.len - off);
            if (rl < 0) {
                cr_assert_fail("not a RESP reply: \"%.200s\"", g.p + off);
            }
            if (rl == 0) {
                break;
            }
            off += (size_t)rl;
            whole++;
        }
        if (whole == count) {
            cr_assert_eq(off, g.len, "more bytes than %d replies: \"%.300s\"", count, g.p);
            *len = g.len;
            return g.p;
        }
        if (nu_now_ms() > end) {
            free(g.p);
            return NULL;
        }
        char tmp[65536];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r > 0) {
            gb_add(&g, tmp, (size_t)r);
            continue;
        }
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        *eof = true;
        free(g.p);
        return NULL;
    }
}

char *nu_read_reply(int fd, size_t *len, bool *eof)
{
    return nu_read_replies(fd, 1, len, eof);
}

bool nu_wait_eof(int fd, int timeout_ms)
{
    uint64_t end = nu_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = nu_now_ms();
        if (now >= end) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(end - now));
        if (pr <= 0) {
            continue;
        }
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r == 0) {
            return true;
        }
        if (r < 0 && (errno == ECONNRESET || errno == EPIPE)) {
            return true;
        }
    }
}

uint64_t nu_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    return (uint64_t)rl.rlim_cur;
}
