/*
 * net_util: the harness of the server suite (tests/net): a real `shale serve` ($SHALE_BIN) in a
 * child process, driven by real clients (libcurl for HTTP, hiredis for RESP2, raw sockets for
 * RESP3 and hostile bytes).
 *
 * Contract:
 * - Every test of the suite uses nu_setup / nu_teardown as its .init / .fini: nu_setup makes a
 *   fresh temporary root nu_root (and skips the test when $SHALE_BIN is unset); nu_teardown
 *   SIGKILLs any server still running and removes nu_root. A server child also gets
 *   PR_SET_PDEATHSIG(SIGKILL), and an atexit handler kills what is left, so no server outlives
 *   the test process however it ends.
 * - nu_start runs `shale serve --data DIR --http 127.0.0.1:0 --resp 127.0.0.1:0 <extra...>`
 *   with stdout on a pipe and stderr in a file (nu_log reads it back), waits (with a generous
 *   deadline, never a timing assertion) for the one "shale serve ready: http=... resp=..." line
 *   and records both ports. nu_stop sends SIGTERM and waits for the exit; nu_kill9 SIGKILLs.
 * - HTTP: nu_http does one request on a new connection and returns status, body and headers
 *   (status 0 and curl_code != 0 when the transport failed). nu_json parses a body (cr_assert
 *   on invalid JSON).
 * - RESP: nu_redis connects hiredis (30 s timeouts); nu_cmd runs a NULL-terminated argv.
 *   Raw sockets: nu_connect, nu_send, nu_read_reply (one whole RESP2/RESP3 reply), nu_wait_eof.
 * Failures are Criterion assertions from the calling thread; worker threads must not call the
 * cr_assert-based helpers (they use the *_try forms, which never assert).
 */
#ifndef SHALE_TESTS_NET_NET_UTIL_H
#define SHALE_TESTS_NET_NET_UTIL_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Generous deadlines for anything we wait on (ASan, 2 loaded cores): never asserted as timing. */
#define NU_DEADLINE_MS 60000

extern char *nu_root; /* this test's temporary root (removed by nu_teardown) */

void nu_setup(void);
void nu_teardown(void);

typedef struct nu_server {
    pid_t pid;  /* 0 when not running */
    int out_fd; /* read end of the child's stdout */
    char dir[512];
    char log[560]; /* the child's stderr */
    uint16_t http_port, resp_port;
    char url[64]; /* "http://127.0.0.1:<http_port>" */
} nu_server;

/* nu_root/<name> as a malloc'ed path (not created). */
char *nu_path(const char *name);

/* Starts a server on data directory `dir` with extra arguments (NULL-terminated array, or NULL)
 * and waits for its ready line; cr_assert (with the server's stderr) when it does not come. */
void nu_start(nu_server *s, const char *dir, const char *const *extra);
/* The same with extra environment entries ("NAME=value", NULL-terminated, may be NULL): entries
 * replace the inherited ones of the same name. */
void nu_start_env(nu_server *s, const char *dir, const char *const *extra, const char *const *env);
/* Starts it and returns -1 once it is ready, or its exit status (128 + signal) when it ended
 * before printing the ready line. */
int nu_start_try(nu_server *s, const char *dir, const char *const *extra);
/* SIGTERM, then waits for the exit; returns the exit status (128 + signal). SIGKILLs and fails
 * the test if it does not end within the deadline. */
int nu_stop(nu_server *s);
/* nu_stop asserting exit status 0. */
void nu_stop_ok(nu_server *s);
/* SIGKILL and reap. */
void nu_kill9(nu_server *s);
/* The server's stderr so far (malloc'ed, NUL-terminated). */
char *nu_log(const nu_server *s);
/* VmRSS of a process in KiB (0 if unreadable). */
uint64_t nu_rss_kib(pid_t pid);

/* ---- HTTP (libcurl) ---- */
typedef struct nu_resp {
    long status; /* 0 when the transport failed */
    int curl_code;
    char *body; /* NUL-terminated (may also hold NULs) */
    size_t len;
    char *headers; /* raw header block(s), NUL-terminated */
} nu_resp;

/* One request: method "GET", "POST", ...; path includes the query. body may be NULL. hdrs is a
 * NULL-terminated array of "Name: value" strings, or NULL. */
nu_resp nu_http(const nu_server *s, const char *method, const char *path, const char *body,
                size_t body_len, const char *const *hdrs);
void nu_resp_free(nu_resp *r);
/* s percent-encoded for a URL (malloc'ed). */
char *nu_escape(const char *s);
/* The value of header `name` (case-insensitive) copied into out, or NULL when absent. */
const char *nu_header(const nu_resp *r, const char *name, char *out, size_t cap);

#define NU_GET(s, path)        nu_http((s), "GET", (path), NULL, 0, NULL)
#define NU_DELETE(s, path)     nu_http((s), "DELETE", (path), NULL, 0, NULL)
#define NU_SEND(s, m, path, b) nu_http((s), (m), (path), (b), strlen(b), NULL)

/* Parses the body as JSON (cr_assert on failure, showing it). json_decref the result. */
json_t *nu_json(const nu_resp *r);
/* Asserts status == want and, for a JSON error status (>= 400), the error shape
 * {"error":string,"message":string,"code":want}. ctx names the request in messages. */
void nu_expect_status(const nu_resp *r, long want, const char *ctx);
/* Member `key` of object o, asserting it exists and has JSON type `type` (JSON_TRUE also
 * accepts JSON_FALSE: "a boolean"; JSON_INTEGER also accepts a real). */
json_t *nu_jget(json_t *o, const char *key, json_type type, const char *ctx);

/* ---- RESP ---- */
redisContext *nu_redis(const nu_server *s);
/* Runs argv (NULL-terminated C strings); asserts a reply came (the connection did not fail). */
redisReply *nu_cmd(redisContext *c, const char *const *argv);
#define NU_CMD(c, ...) nu_cmd((c), (const char *const[]){__VA_ARGS__, NULL})
/* Assertions on a reply; each frees it. */
void nu_ok(redisReply *r, const char *status, const char *ctx);  /* +status */
void nu_int(redisReply *r, long long v, const char *ctx);        /* :v */
void nu_str(redisReply *r, const char *v, const char *ctx);      /* bulk v */
void nu_nil(redisReply *r, const char *ctx);                     /* null */
void nu_err(redisReply *r, const char *prefix, const char *ctx); /* -prefix... */

/* Raw sockets (blocking, 30 s receive timeout). */
int nu_connect(uint16_t port);
void nu_send(int fd, const void *p, size_t n);
/* Sends without asserting; false when the peer closed. */
bool nu_send_try(int fd, const void *p, size_t n);
/* The length of the first whole RESP2/RESP3 reply in buf[0, n): > 0, 0 when incomplete, -1 when
 * not a valid reply. */
long nu_resp_len(const char *buf, size_t n);
/* Reads one whole reply (malloc'ed, NUL-terminated; *len its length). NULL when the connection
 * ended or the deadline passed first (then *eof says whether it was an end of connection). */
char *nu_read_reply(int fd, size_t *len, bool *eof);
/* The same for `count` replies (concatenated). */
char *nu_read_replies(int fd, int count, size_t *len, bool *eof);
/* Reads and discards until the peer closes (true: read returned 0 or ECONNRESET) or
 * `timeout_ms` passed (false). */
bool nu_wait_eof(int fd, int timeout_ms);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit. */
uint64_t nu_raise_nofile(void);

/* Monotonic milliseconds. */
uint64_t nu_now_ms(void);

#endif
