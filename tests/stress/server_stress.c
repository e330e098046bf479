/*
 * server_stress: a concurrency stress run of `shale serve`, without Criterion, so that `make tsan`
 * can run a ThreadSanitizer build of the server (Criterion's runner cannot start under TSan,
 * Snaipe/Criterion#274). It also runs in every `make test` and `make asan`.
 *
 * It starts $SHALE_BIN serve (two workers, port 0, TSAN_OPTIONS=halt_on_error=1 exitcode=66 so
 * a reported race ends the server with 66), then runs at once, over plain sockets:
 *   - RESP clients pipelining SET, GET, INCR on one shared counter, MULTI/EXEC transfers between
 *     shared accounts, DEL and EXPIRE on overlapping keys, opening a new connection every round;
 *   - HTTP clients inserting documents, reading them back by id, and querying with find;
 * while the engine flushes and compacts under them (a small --max-memory). Then it checks what the
 * clients know (the counter equals the INCRs acknowledged, the accounts still sum to their total,
 * every inserted document reads back), stops the server with SIGTERM and requires exit status 0:
 * a race report, a crash or an unclean stop fails the run. Every failure prints why and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESP_CLIENTS 4
#define HTTP_CLIENTS 2
#define ROUNDS       100
#define PIPELINE     32
#define ACCOUNTS     8
#define START_AMOUNT 1000
#define DOCS_PER_RND 5

static uint16_t resp_port, http_port;
static atomic_long incrs_acked;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "server_stress: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- plain sockets ---- */

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        die("connect to port %u: %s", port, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            die("send: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

/* A buffered reader over a socket. */
typedef struct rd {
    int fd;
    char buf[1 << 16];
    size_t off, len;
} rd;

static char rd_byte(rd *r)
{
    if (r->off == r->len) {
        ssize_t n = recv(r->fd, r->buf, sizeof r->buf, 0);
        if (n <= 0) {
            die("recv: %s", n == 0 ? "connection closed" : strerror(errno));
        }
        r->off = 0;
        r->len = (size_t)n;
    }
    return r->buf[r->off++];
}

/* One line without its CRLF into out (cap bytes). */
static void rd_line(rd *r, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char c = rd_byte(r);
        if (c == '\n') {
            break;
        }
        if (c != '\r' && n + 1 < cap) {
            out[n++] = c;
        }
    }
    out[n] = '\0';
}

static void rd_bytes(rd *r, char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = rd_byte(r);
        if (out != NULL) {
            out[i] = c;
        }
    }
}

/* ---- RESP ---- */

static size_t cmd(char *out, size_t cap, int argc, const char *const *argv)
{
    size_t n = (size_t)snprintf(out, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        n += (size_t)snprintf(out + n, cap - n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    }
    return n;
}

/* Reads one reply; returns its type byte. Integers go to *num, bulk strings to val (NULL bulk:
 * val[0] = 0 and *num = -1); arrays are read whole and their integer elements summed in *num. */
static char reply(rd *r, long long *num, char *val, size_t cap)
{
    char line[512];
    rd_line(r, line, sizeof line);
    *num = 0;
    if (val != NULL && cap > 0) {
        val[0] = '\0';
    }
    switch (line[0]) {
    case '+':
    case '-':
        if (val != NULL && cap > 0) {
            size_t n = strnlen(line + 1, cap - 1); /* truncated to cap - 1 bytes */
            memcpy(val, line + 1, n);
            val[n] = '\0';
        }
        return line[0];
    case ':':
        *num = strtoll(line + 1, NULL, 10);
        return ':';
    case '$': {
        long long len = strtoll(line + 1, NULL, 10);
        if (len < 0) {
            *num = -1;
            return '$';
        }
        char *tmp = malloc((size_t)len + 2);
        if (tmp == NULL) {
            die("out of memory");
        }
        rd_bytes(r, tmp, (size_t)len + 2);
        if (val != NULL) {
            snprintf(val, cap, "%.*s", (int)len, tmp);
        }
        free(tmp);
        return '$';
    }
    case '*': {
        long long count = strtoll(line + 1, NULL, 10);
        long long sum = 0;
        for (long long i = 0; i < count; i++) {
            long long v;
            if (reply(r, &v, NULL, 0) == ':') {
                sum += v;
            }
        }
        *num = count < 0 ? -1 : sum;
        return '*';
    }
    default:
        die("unexpected reply line \"%s\"", line);
    }
}

static void *resp_client(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    unsigned seed = id * 7919u + 1;
    static _Thread_local rd r;
    char *out = malloc(1 << 20); /* PIPELINE commands of at most ~2.1 KB */
    if (out == NULL) {
        die("out of memory");
    }
    for (int round = 0; round < ROUNDS; round++) {
        r.fd = dial(resp_port);
        r.off = r.len = 0;
        size_t n = 0;
        int expect = 0, incrs = 0;
        char k[64], v[2100], a[32], b[32];
        for (int i = 0; i < PIPELINE; i++) {
            int op = (int)(rand_r(&seed) % 6);
            snprintf(k, sizeof k, "k%u", rand_r(&seed) % 64);
            if (op == 0 || op == 1) {
                /* 2 KB values, so the run writes enough for flushes and a compaction. */
                int vn = snprintf(v, sizeof v, "v%u-%d-%d-", id, round, i);
                memset(v + vn, 'x', 2000);
                v[vn + 2000] = '\0';
                n += cmd(out + n, (1 << 20) - n, 3, (const char *[]){"SET", k, v});
            } else if (op == 2) {
                n += cmd(out + n, (1 << 20) - n, 2, (const char *[]){"GET", k});
            } else if (op == 3) {
                n += cmd(out + n, (1 << 20) - n, 2, (const char *[]){"INCR", "counter"});
                incrs++;
            } else if (op == 4) {
                n += cmd(out + n, (1 << 20) - n, 3, (const char *[]){"EXPIRE", k, "100"});
            } else {
                /* A transfer of 1 between two accounts, atomically. */
                unsigned x = rand_r(&seed) % ACCOUNTS, y = (x + 1) % ACCOUNTS;
                snprintf(a, sizeof a, "acct%u", x);
                snprintf(b, sizeof b, "acct%u", y);
                n += cmd(out + n, (1 << 20) - n, 1, (const char *[]){"MULTI"});
                n += cmd(out + n, (1 << 20) - n, 2, (const char *[]){"DECR", a});
                n += cmd(out + n, (1 << 20) - n, 2, (const char *[]){"INCR", b});
                n += cmd(out + n, (1 << 20) - n, 1, (const char *[]){"EXEC"});
                expect += 3; /* +OK, QUEUED, QUEUED before the EXEC array */
            }
            expect++;
        }
        send_all(r.fd, out, n);
        for (int i = 0; i < expect; i++) {
            long long num;
            char val[128];
            char t = reply(&r, &num, val, sizeof val);
            if (t == '-') {
                die("client %u: error reply \"%s\"", id, val);
            }
        }
        atomic_fetch_add(&incrs_acked, incrs);
        close(r.fd);
    }
    free(out);
    return NULL;
}

/* ---- HTTP ---- */

/* Sends one request on a keep-alive connection and reads the response: returns the status, the
 * body into body (cap bytes, truncated). */
static int http(rd *r, const char *method, const char *path, const char *json, char *body,
                size_t cap)
{
    char req[2048];
    size_t blen = json ? strlen(json) : 0;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, blen, json ? json : "");
    send_all(r->fd, req, (size_t)n);
    char line[1024];
    rd_line(r, line, sizeof line);
    int status = 0;
    if (sscanf(line, "HTTP/1.1 %d", &status) != 1) {
        die("bad status line \"%s\"", line);
    }
    size_t len = 0;
    bool chunked = false;
    for (;;) {
        rd_line(r, line, sizeof line);
        if (line[0] == '\0') {
            break;
        }
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            len = strtoul(line + 15, NULL, 10);
        } else if (strncasecmp(line, "Transfer-Encoding: chunked", 26) == 0) {
            chunked = true;
        }
    }
    if (chunked) {
        die("%s %s: unexpected chunked response", method, path);
    }
    char *tmp = malloc(len + 1);
    if (tmp == NULL) {
        die("out of memory");
    }
    rd_bytes(r, tmp, len);
    tmp[len] = '\0';
    snprintf(body, cap, "%s", tmp);
    free(tmp);
    return status;
}

static void *http_client(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    static _Thread_local rd r;
    char body[8192], json[512], path[256];
    r.fd = dial(http_port);
    r.off = r.len = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < DOCS_PER_RND; i++) {
            snprintf(json, sizeof json,
                     "{\"_id\":\"h%u-%d-%d\",\"city\":\"c%d\",\"n\":%d,\"client\":%u}", id, round,
                     i, i % 3, round * DOCS_PER_RND + i, id);
            int st = http(&r, "POST", "/collections/stress", json, body, sizeof body);
            if (st != 201) {
                die("insert: status %d: %s", st, body);
            }
        }
        snprintf(path, sizeof path, "/collections/stress/documents/h%u-%d-%d", id, round,
                 DOCS_PER_RND - 1);
        int st = http(&r, "GET", path, NULL, body, sizeof body);
        if (st != 200 || strstr(body, "\"client\":") == NULL) {
            die("get %s: status %d: %s", path, st, body);
        }
        st = http(&r, "GET", "/collections/stress/find?city=c1&limit=5", NULL, body, sizeof body);
        if (st != 200 || strstr(body, "\"documents\"") == NULL) {
            die("find: status %d: %s", st, body);
        }
        if (round % 10 == 0) { /* a fresh connection now and then */
            close(r.fd);
            r.fd = dial(http_port);
            r.off = r.len = 0;
        }
    }
    close(r.fd);
    return NULL;
}

/* ---- the server ---- */

static pid_t start_server(const char *bin, const char *dir)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        die("pipe2: %s", strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        dup2(pfd[1], 1);
        setenv("TSAN_OPTIONS", "halt_on_error=1 exitcode=66", 1);
        execl(bin, bin, "serve", "--data", dir, "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0",
              "--threads", "2", "--max-memory", "16", "--durability", "os", "--log-level", "error",
              (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[512];
    size_t len = 0;
    while (len + 1 < sizeof line && memchr(line, '\n', len) == NULL) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 60000) <= 0) {
            die("no ready line from the server within 60 s");
        }
        ssize_t n = read(pfd[0], line + len, sizeof line - 1 - len);
        if (n <= 0) {
            die("the server ended before its ready line");
        }
        len += (size_t)n;
    }
    line[len] = '\0';
    unsigned hp, rp;
    if (sscanf(line, "shale serve ready: http=127.0.0.1:%u resp=127.0.0.1:%u", &hp, &rp) != 2) {
        die("malformed ready line \"%s\"", line);
    }
    http_port = (uint16_t)hp;
    resp_port = (uint16_t)rp;
    close(pfd[0]);
    return pid;
}

int main(void)
{
    const char *bin = getenv("SHALE_BIN");
    if (bin == NULL || bin[0] == '\0') {
        die("SHALE_BIN is not set (ctest sets it to the built shale program)");
    }
    const char *tmp = getenv("SHALE_TEST_TMP");
    char dir[4096];
    if (tmp != NULL) {
        mkdir(tmp, 0700);
    }
    snprintf(dir, sizeof dir, "%s/server_stress.XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp %s: %s", dir, strerror(errno));
    }
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = start_server(bin, data);

    /* Seed the accounts. */
    rd *r = calloc(1, sizeof *r);
    char buf[4096], name[32], amount[32], val[128];
    long long num;
    r->fd = dial(resp_port);
    for (int i = 0; i < ACCOUNTS; i++) {
        snprintf(name, sizeof name, "acct%d", i);
        snprintf(amount, sizeof amount, "%d", START_AMOUNT);
        size_t n = cmd(buf, sizeof buf, 3, (const char *[]){"SET", name, amount});
        send_all(r->fd, buf, n);
        if (reply(r, &num, val, sizeof val) != '+') {
            die("seeding: %s", val);
        }
    }

    pthread_t th[RESP_CLIENTS + HTTP_CLIENTS];
    for (uintptr_t i = 0; i < RESP_CLIENTS; i++) {
        pthread_create(&th[i], NULL, resp_client, (void *)i);
    }
    for (uintptr_t i = 0; i < HTTP_CLIENTS; i++) {
        pthread_create(&th[RESP_CLIENTS + i], NULL, http_client, (void *)i);
    }
    for (size_t i = 0; i < RESP_CLIENTS + HTTP_CLIENTS; i++) {
        pthread_join(th[i], NULL);
    }

    /* What the clients know. */
    size_t n = cmd(buf, sizeof buf, 2, (const char *[]){"GET", "counter"});
    send_all(r->fd, buf, n);
    reply(r, &num, val, sizeof val);
    if (atoll(val) != atomic_load(&incrs_acked)) {
        die("counter is %s, %ld INCRs were acknowledged", val, atomic_load(&incrs_acked));
    }
    long long sum = 0;
    for (int i = 0; i < ACCOUNTS; i++) {
        snprintf(name, sizeof name, "acct%d", i);
        n = cmd(buf, sizeof buf, 2, (const char *[]){"GET", name});
        send_all(r->fd, buf, n);
        reply(r, &num, val, sizeof val);
        sum += atoll(val);
    }
    if (sum != (long long)ACCOUNTS * START_AMOUNT) {
        die("accounts sum to %lld, not %d: a transfer was not atomic", sum,
            ACCOUNTS * START_AMOUNT);
    }
    close(r->fd);
    r->fd = dial(http_port);
    r->off = r->len = 0;
    char body[8192], path[256];
    for (unsigned c = 0; c < HTTP_CLIENTS; c++) {
        for (int round = 0; round < ROUNDS; round++) {
            snprintf(path, sizeof path, "/collections/stress/documents/h%u-%d-0", c, round);
            if (http(r, "GET", path, NULL, body, sizeof body) != 200) {
                die("document %s is missing: %s", path, body);
            }
        }
    }
    close(r->fd);
    free(r);

    kill(pid, SIGTERM);
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        die("waitpid: %s", strerror(errno));
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        die("the server ended with %s %d (66: ThreadSanitizer reported a race; its report is on "
            "stderr above)",
            WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    char rm[4300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) {
        fprintf(stderr, "server_stress: could not remove %s\n", dir);
    }
    printf("server_stress: %d RESP clients x %d rounds x %d commands, %d HTTP clients x %d "
           "rounds, %ld INCRs acknowledged: ok\n",
           RESP_CLIENTS, ROUNDS, PIPELINE, HTTP_CLIENTS, ROUNDS, atomic_load(&incrs_acked));
    return 0;
}
