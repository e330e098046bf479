/* server: see server.h. */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/error.h"
#include "server/http_api.h"
#include "server/metrics.h"
#include "server/resp.h"
#include "server/resp_cmd.h"

/* A RESP connection's reply buffer above which it stops reading until the client drains it:
 * a pipelining client that never reads cannot make the server buffer without bound. */
#define RESP_OUT_HIGH (8u << 20)
/* A read asks for this much (more while a large command arrives); an emptied input buffer
 * larger than RESP_IN_KEEP is freed rather than kept for the connection's life. */
#define RESP_IN_READ  16384u
#define RESP_IN_KEEP  (64u << 10)
/* How long a stopping server waits for replies in flight before it closes anyway. */
#define STOP_GRACE_MS 5000

typedef struct worker worker;

struct server {
    server_config cfg;
    char *data_dir, *http_addr, *resp_addr, *auth_token;
    shale_db *db;
    metrics *met;
    http_api *api;
    resp_server *resp;
    resp_limits limits;
    bool http_on, resp_on;
    uint16_t http_port, resp_port;
    int stop_pipe[2];
    _Atomic bool stopping;
    worker *workers;
    uint32_t nworkers;
    struct timespec started;
    _Atomic int64_t clients;
};

struct worker {
    server *srv;
    uint32_t index;
    pthread_t thread;
    bool started;
    struct event_base *base;
    int http_fd, resp_fd; /* this worker's listening sockets until evhttp / the listener own them */
    struct evhttp *http;
    struct evhttp_bound_socket *http_bound;
    struct evconnlistener *resp_listener;
    struct resp_conn *conns;   /* this thread's RESP connections, freed at the end */
    struct resp_conn *pending; /* connections with replies held until the turn's sync */
    resp_group *group; /* the turn's deferred SETs of every connection, one commit (resp_cmd.h) */
    struct event *stop_ev, *grace_ev, *accept_retry_ev;
    bool stopped;
    int64_t busy; /* connections of this thread with output in flight (streams, RESP replies) */
    uint64_t grace_ms;
};

/* ---- logging ---- */

static void logf_(const server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(const server *s, int level, const char *fmt, ...)
{
    if (s != NULL && level > s->cfg.log_level) {
        return;
    }
    char when[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ shale serve: %s%s\n", when, ts.tv_nsec / 1000000,
            level == 0 ? "error: " : "", msg);
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- configuration ---- */

void server_config_defaults(server_config *c)
{
    memset(c, 0, sizeof *c);
    c->data_dir = "./shale-data";
    c->http_addr = "127.0.0.1:8080";
    c->resp_addr = "127.0.0.1:6380";
    c->log_level = 1;
    c->idle_timeout_s = 300;
    c->max_body = 16u << 20;
    c->max_query_bytes = 64u << 20;
    c->max_clients = 10000;
}

static bool off(const char *addr)
{
    return addr == NULL || addr[0] == '\0' || strcmp(addr, "off") == 0;
}

/* One bound, listening socket; reuseport lets every worker have its own on one address. */
static int bind_one(const struct sockaddr *sa, socklen_t salen, bool reuseport, int *e)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, sa, salen) != 0 || listen(fd, 1024) != 0) {
        *e = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                     : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/*
 * Listens on "HOST:PORT" ("[v6]:PORT" too) with n sockets, one per worker, bound with
 * SO_REUSEPORT so that the kernel spreads new connections over the workers. (One shared socket
 * would not: libevent accepts every pending connection in one callback, so a burst of clients
 * lands on whichever worker woke first.) Another process must not join the group: a port given
 * explicitly is first bound without SO_REUSEPORT, which fails when anyone holds it.
 */
static shale_code listen_on(const char *addr, const char *what, uint32_t n, int *fds,
                            uint16_t *port_out, shale_error *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        return err_set(err, SHALE_INVALID, 0, "--%s %s: expected HOST:PORT", what, addr);
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(h, colon + 1, &hints, &res);
    if (g != 0) {
        return err_set(err, SHALE_INVALID, 0, "--%s %s: %s", what, addr, gai_strerror(g));
    }
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)res->ai_addrlen;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    int e = 0;
    if (port_of(&ss) != 0) {
        int probe = bind_one((struct sockaddr *)&ss, sl, false, &e);
        if (probe < 0) {
            return err_set(err, SHALE_IO, e, "--%s %s: cannot listen: %s", what, addr, strerror(e));
        }
        close(probe);
    }
    for (uint32_t i = 0; i < n; i++) {
        fds[i] = bind_one((struct sockaddr *)&ss, sl, true, &e);
        if (fds[i] < 0) {
            while (i > 0) {
                close(fds[--i]);
                fds[i] = -1;
            }
            return err_set(err, SHALE_IO, e, "--%s %s: cannot listen: %s", what, addr, strerror(e));
        }
        if (i == 0) { /* port 0: the others join the port the kernel picked */
            socklen_t l = sl;
            if (getsockname(fds[0], (struct sockaddr *)&ss, &l) != 0) {
                e = errno;
                close(fds[0]);
                fds[0] = -1;
                return err_set(err, SHALE_IO, e, "--%s %s: getsockname: %s", what, addr,
                               strerror(e));
            }
        }
    }
    *port_out = port_of(&ss);
    return SHALE_OK;
}

/* ---- facts for /health, /metrics and INFO ---- */

static uint64_t uptime_s(const server *s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - s->started.tv_sec);
}

static void health_facts(void *ctx, shale_buf *out)
{
    server *s = ctx;
    shale_stats st;
    shale_error e;
    char line[512];
    int n;
    if (shale_stats_get(s->db, &st, &e) == SHALE_OK) {
        n = snprintf(line, sizeof line,
                     ",\"uptime_seconds\":%" PRIu64 ",\"data_bytes\":%" PRIu64
                     ",\"memory_bytes\":%" PRIu64 ",\"live_keys\":%" PRIu64
                     ",\"connections\":%" PRId64 ",\"writes_stopped\":%s",
                     uptime_s(s), st.table_bytes_on_disk + st.log_bytes,
                     st.memory_bytes + st.block_cache_bytes, st.live_keys, atomic_load(&s->clients),
                     st.writes_stopped ? "true" : "false");
    } else {
        n = snprintf(line, sizeof line, ",\"uptime_seconds\":%" PRIu64, uptime_s(s));
    }
    if (n > 0) {
        if (buf_append(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, NULL) !=
            SHALE_OK) {
            return; /* the answer goes out without these facts */
        }
    }
}

static void metrics_text_cb(void *ctx, shale_buf *out)
{
    server *s = ctx;
    shale_error e;
    if (metrics_text(s->met, s->db, out, &e) != SHALE_OK) {
        logf_(s, 0, "metrics: %s", e.msg);
    }
}

static void resp_info(void *ctx, shale_buf *out)
{
    server *s = ctx;
    char line[512];
    int n =
        snprintf(line, sizeof line,
                 "uptime_in_seconds:%" PRIu64 "\r\ntcp_port:%u\r\nhttp_port:%u\r\n"
                 "connected_clients:%" PRId64 "\r\nio_threads_active:%u\r\n",
                 uptime_s(s), s->resp_port, s->http_port, atomic_load(&s->clients), s->nworkers);
    if (n > 0) {
        if (buf_append(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, NULL) !=
            SHALE_OK) {
            return; /* the answer goes out without these facts */
        }
    }
}

/* ---- HTTP ---- */

typedef struct http_stream_ctx {
    worker *w;
    struct evhttp_request *req;
    http_response resp;
    shale_buf chunk;
    uint64_t t0;
} http_stream_ctx;

static http_method method_of(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return HTTP_GET;
    case EVHTTP_REQ_POST:
        return HTTP_POST;
    case EVHTTP_REQ_PUT:
        return HTTP_PUT;
    case EVHTTP_REQ_PATCH:
        return HTTP_PATCH;
    case EVHTTP_REQ_DELETE:
        return HTTP_DELETE;
    case EVHTTP_REQ_HEAD:
        return HTTP_HEAD;
    default:
        return HTTP_OTHER;
    }
}

static void stream_closed(struct evhttp_connection *con, void *arg);

static void stream_free(http_stream_ctx *c)
{
    c->w->busy--;
    http_response_free(&c->resp);
    buf_free(&c->chunk);
    free(c);
}

/* The connection went away (client closed, timeout, or evhttp_free at shutdown) while the stream
 * was still running: libevent never calls the chunk callback again. If the failure detached the
 * request (req->evcon == NULL: evhttp_connection_incoming_fail), nobody else frees it. */
static void stream_closed(struct evhttp_connection *con, void *arg)
{
    (void)con;
    http_stream_ctx *c = arg;
    worker *w = c->w;
    metrics_observe(w->srv->met, w->index, METRICS_HTTP, c->resp.route, mono_us() - c->t0, true);
    if (evhttp_request_get_connection(c->req) == NULL) {
        evhttp_request_free(c->req);
    }
    stream_free(c);
}

static void stream_end(http_stream_ctx *c, bool ok)
{
    worker *w = c->w;
    struct evhttp_connection *con0 = evhttp_request_get_connection(c->req);
    if (con0 != NULL) {
        evhttp_connection_set_closecb(con0, NULL, NULL);
    }
    metrics_observe(w->srv->met, w->index, METRICS_HTTP, c->resp.route, mono_us() - c->t0, !ok);
    if (ok) {
        evhttp_send_reply_end(c->req);
    } else {
        /* The head is out: only a cut connection tells the client the body is incomplete. */
        struct evhttp_connection *con = evhttp_request_get_connection(c->req);
        struct bufferevent *bev = con ? evhttp_connection_get_bufferevent(con) : NULL;
        if (bev != NULL) {
            shutdown(bufferevent_getfd(bev), SHUT_RDWR);
        }
        evhttp_send_reply_end(c->req);
    }
    stream_free(c);
}

/* Sends the next chunk when the last one has gone out, so a stream holds one chunk at a time. */
static void stream_pump(struct evhttp_connection *con, void *arg)
{
    (void)con;
    http_stream_ctx *c = arg;
    for (;;) {
        bool done = false;
        shale_error e;
        c->chunk.len = 0;
        if (http_stream_next(c->resp.stream, &c->chunk, &done, &e) != SHALE_OK) {
            logf_(c->w->srv, 0, "stream %s: %s", c->resp.route ? c->resp.route : "?", e.msg);
            stream_end(c, false);
            return;
        }
        if (c->chunk.len > 0) {
            struct evbuffer *b = evbuffer_new();
            if (b == NULL || evbuffer_add(b, c->chunk.data, c->chunk.len) != 0) {
                evbuffer_free(b);
                stream_end(c, false);
                return;
            }
            if (done) {
                evhttp_send_reply_chunk(c->req, b);
                evbuffer_free(b);
                stream_end(c, true);
            } else {
                evhttp_send_reply_chunk_with_cb(c->req, b, stream_pump, c);
                evbuffer_free(b);
            }
            return;
        }
        if (done) {
            stream_end(c, true);
            return;
        }
    }
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    worker *w = arg;
    server *s = w->srv;
    uint64_t t0 = mono_us();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evkeyvalq *in_h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    unsigned char *body = blen ? evbuffer_pullup(in, -1) : NULL;
    http_request hr = {
        .method = method_of(evhttp_request_get_command(req)),
        .path = path && path[0] ? path : "/",
        .query = uri ? evhttp_uri_get_query(uri) : NULL,
        .authorization = evhttp_find_header(in_h, "Authorization"),
        .accept = evhttp_find_header(in_h, "Accept"),
        .body = {body, blen},
    };
    http_response resp = {0};
    http_api_handle(s->api, &hr, &resp);
    struct evkeyvalq *out_h = evhttp_request_get_output_headers(req);
    evhttp_add_header(out_h, "Content-Type",
                      resp.content_type ? resp.content_type : "application/json");
    evhttp_add_header(out_h, "Server", "shale");
    const char *route = resp.route ? resp.route : "unmatched";
    if (s->cfg.log_level >= 2) {
        logf_(s, 2, "http %s %s -> %d", route, hr.path, resp.status);
    }
    if (resp.stream != NULL && resp.status < 300) {
        http_stream_ctx *c = calloc(1, sizeof *c);
        if (c != NULL) {
            c->w = w;
            c->req = req;
            c->resp = resp;
            c->t0 = t0;
            w->busy++;
            evhttp_connection_set_closecb(evhttp_request_get_connection(req), stream_closed, c);
            evhttp_send_reply_start(req, resp.status, NULL);
            stream_pump(NULL, c);
            return;
        }
        http_response_free(&resp);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evbuffer *ob = evbuffer_new();
    if (ob != NULL && resp.body.len > 0) {
        evbuffer_add(ob, resp.body.data, resp.body.len);
    }
    evhttp_send_reply(req, resp.status ? resp.status : 500, NULL, ob);
    evbuffer_free(ob);
    metrics_observe(s->met, w->index, METRICS_HTTP, route, mono_us() - t0, resp.status >= 400);
    http_response_free(&resp);
}

/* ---- RESP ---- */

typedef struct resp_conn {
    worker *w;
    struct resp_conn *prev, *next;   /* worker.conns */
    struct resp_conn *pprev, *pnext; /* worker.pending, when `pending` */
    bool pending;
    bool wrote;              /* a held reply acknowledges a write (resp_session_take_wrote) */
    struct bufferevent *bev; /* the output side: queued replies, the write timeout, errors */
    struct event *rev;       /* the input side: readable, or idle for idle_timeout_s */
    resp_session *ss;
    resp_request req;
    shale_buf in; /* bytes read and not yet parsed into a finished command */
    shale_buf out;
    bool closing; /* close once the output is written */
    bool reading; /* rev added */
    bool counted_busy;
} resp_conn;

static void pending_remove(resp_conn *c)
{
    if (!c->pending) {
        return;
    }
    if (c->pprev != NULL) {
        c->pprev->pnext = c->pnext;
    } else {
        c->w->pending = c->pnext;
    }
    if (c->pnext != NULL) {
        c->pnext->pprev = c->pprev;
    }
    c->pending = false;
    c->pprev = c->pnext = NULL;
}

static void pending_add(resp_conn *c)
{
    if (c->pending) {
        return;
    }
    c->pending = true;
    c->pprev = NULL;
    c->pnext = c->w->pending;
    if (c->pnext != NULL) {
        c->pnext->pprev = c;
    }
    c->w->pending = c;
}

static void conn_free(resp_conn *c)
{
    pending_remove(c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        c->w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->counted_busy) {
        c->w->busy--;
    }
    metrics_conn(c->w->srv->met, METRICS_RESP, -1);
    atomic_fetch_sub(&c->w->srv->clients, 1);
    event_free(c->rev);
    bufferevent_free(c->bev); /* closes the socket */
    resp_session_free(c->ss);
    free(c->req.argv);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static void conn_busy(resp_conn *c, bool busy)
{
    if (busy != c->counted_busy) {
        c->w->busy += busy ? 1 : -1;
        c->counted_busy = busy;
    }
}

static void reading_on(resp_conn *c)
{
    if (!c->reading) {
        const server *s = c->w->srv;
        struct timeval idle = {.tv_sec = s->cfg.idle_timeout_s};
        event_add(c->rev, s->cfg.idle_timeout_s ? &idle : NULL);
        c->reading = true;
    }
}

static void reading_off(resp_conn *c)
{
    if (c->reading) {
        event_del(c->rev);
        c->reading = false;
    }
}

static void resp_flush_out(resp_conn *c)
{
    struct evbuffer *o = bufferevent_get_output(c->bev);
    if (c->out.len > 0) {
        /* Nothing queued: write now, as Redis does before it sleeps, rather than wait for the
         * loop to report the socket writable (one poll round trip per reply at -P 1). */
        size_t done = 0;
        if (evbuffer_get_length(o) == 0) {
            ssize_t n = send(bufferevent_getfd(c->bev), c->out.data, c->out.len,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            done = n > 0 ? (size_t)n : 0; /* errors: queue it all, libevent reports them */
        }
        if (done < c->out.len &&
            bufferevent_write(c->bev, (const char *)c->out.data + done, c->out.len - done) != 0) {
            /* Out of memory: a reply lost on an open connection would pair later replies with
             * the wrong commands. Close instead. */
            c->closing = true;
            reading_off(c);
        }
        c->out.len = 0;
    }
    conn_busy(c, evbuffer_get_length(o) > 0);
    if (c->reading && evbuffer_get_length(o) > RESP_OUT_HIGH) {
        reading_off(c); /* until the client reads its replies */
    }
}

static void protocol_error(resp_conn *c, const char *msg)
{
    /* The commands before the bad one are answered first, the deferred ones too: their
     * replies (and a redo's rewrite from gmark) must land before the error, not after it. */
    (void)resp_flush(c->ss, &c->out);
    if (resp_session_waiting(c->ss)) {
        resp_group_flush(c->w->group);
    }
    char line[256];
    int n = snprintf(line, sizeof line, "-ERR Protocol error: %s\r\n", msg);
    if (buf_append(&c->out, line, (size_t)n, NULL) != SHALE_OK) {
        c->out.len = 0; /* the connection closes without the reason */
    }
    c->closing = true;
    logf_(c->w->srv, 2, "resp: protocol error: %s", msg);
}

/* A closing connection goes once its last reply is out (else resp_write_cb frees it). */
static void conn_close_if_done(resp_conn *c)
{
    if (c->closing) {
        reading_off(c);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && c->out.len == 0) {
            conn_free(c);
        }
    }
}

/*
 * Replies are held until the writes they acknowledge are durable. Commands commit at MEMORY level
 * (resp_server_opts.durability), then one shale_sync at the database's level covers every write
 * of the loop turn before any reply goes out: one log write (and with FULL one fdatasync) per
 * turn rather than per command, as Redis writes its append-only file once per turn. If the sync
 * fails, the held replies are dropped and their connections closed: those clients see no
 * acknowledgement, only a lost connection.
 */
static bool turn_sync(worker *w)
{
    shale_error e;
    if (shale_sync(w->srv->db, SHALE_DURABILITY_DEFAULT, &e) == SHALE_OK) {
        return true;
    }
    logf_(w->srv, 0, "sync failed, dropping unacknowledged replies: %s", e.msg);
    return false;
}

/* False when the sync failed and c was freed. */
/* Sends c's held replies once the turn's sync returned (synced), or, when it failed and c
 * wrote, drops them and closes c: its replies may acknowledge what the log did not take. False
 * when c was freed. */
static bool release(resp_conn *c, bool synced)
{
    pending_remove(c);
    if (resp_session_broken(c->ss)) {
        c->closing = true; /* a reply could not be made: what out holds goes, then the close */
        reading_off(c);
    }
    bool wrote = c->wrote | resp_session_take_wrote(c->ss);
    c->wrote = false;
    if (!synced && wrote) {
        conn_free(c);
        return false;
    }
    resp_flush_out(c);
    return true;
}

static void flush_pending(worker *w)
{
    if (w->group != NULL) {
        resp_group_flush(w->group); /* the turn's SETs, of every connection, as one batch */
    }
    if (w->pending == NULL) {
        return;
    }
    /* A turn whose commands only read needs no sync: its replies acknowledge no write (they may
     * show another client's write not yet synced, as Redis's do before its AOF write). */
    bool wrote = false;
    for (const resp_conn *c = w->pending; c != NULL && !wrote; c = c->pnext) {
        wrote = c->wrote;
    }
    bool synced = !wrote || turn_sync(w);
    while (w->pending != NULL) {
        resp_conn *c = w->pending;
        if (release(c, synced)) {
            conn_close_if_done(c);
        }
    }
}

/* Runs the commands in c->in. Returns false when c was freed. */
static bool resp_process(resp_conn *c)
{
    server *s = c->w->srv;
    size_t len = c->in.len;
    if (c->closing || len == 0) {
        c->in.len = 0;
        return true;
    }
    uint8_t *data = c->in.data;
    size_t off = 0;
    uint64_t t = mono_us();
    while (off < len && !c->closing) {
        size_t used = 0;
        const char *msg = NULL;
        resp_parse_result r = resp_parse(data + off, len - off, &s->limits, &c->req, &used, &msg);
        off += used;
        if (r == RESP_PARSE_ERROR) {
            protocol_error(c, msg ? msg : "invalid request");
            break;
        }
        if (r == RESP_PARSE_MORE) {
            if (c->req.argv_needed > c->req.argv_cap) {
                shale_slice *g = realloc(c->req.argv, c->req.argv_needed * sizeof *g);
                if (g == NULL) {
                    protocol_error(c, "out of memory");
                    break;
                }
                c->req.argv = g;
                c->req.argv_cap = c->req.argv_needed;
                c->req.argv_needed = 0;
                continue;
            }
            if (len - off > s->cfg.max_query_bytes) {
                protocol_error(c, "query buffer too big");
            }
            break;
        }
        size_t before = c->out.len;
        /* Plain SETs and GETs may be deferred into one batch / multi_get (resp_cmd.h): their
         * time here is the queueing, the run's is on the command that ends it. */
        resp_exec_result x = resp_exec_deferred(c->ss, c->req.argv, c->req.argc, &c->out);
        bool error = c->out.len > before && ((const char *)c->out.data)[before] == '-';
        /* One clock read per command: a pipeline's commands run back to back. */
        uint64_t now = mono_us();
        metrics_observe(s->met, c->w->index, METRICS_RESP, resp_session_cmd(c->ss), now - t, error);
        t = now;
        if (x == RESP_EXEC_CLOSE) {
            c->closing = true;
        }
        /* A session defers at most RESP_RUN_MAX commands whose replies are not in out yet, so
         * this bound is passed by at most that many replies. */
        if (c->out.len >= RESP_OUT_HIGH) {
            if (resp_flush(c->ss, &c->out) != RESP_EXEC_OK) {
                c->closing = true;
            }
            resp_group_flush(c->w->group);      /* before any reply goes out */
            if (!release(c, turn_sync(c->w))) { /* a huge pipeline: answer what we have now */
                return false;
            }
            if (!c->reading) {
                break; /* the rest waits in `in` until the client reads (resp_write_cb) */
            }
        }
    }
    /* Deferred SETs and GETs wait, copied, in the worker's group until the turn ends
     * (flush_pending): `in` may be consumed now. */
    if (resp_flush(c->ss, &c->out) != RESP_EXEC_OK) {
        c->closing = true;
    }
    if (c->closing) {
        off = len;
    }
    /* What is left is at most one unfinished command: the parser resumes it from offsets
     * relative to its start, so moving it to the front is safe, and it moves once per read
     * that finished commands, not once per read. */
    if (off > 0) {
        memmove(c->in.data, (uint8_t *)c->in.data + off, len - off);
        c->in.len = len - off;
    }
    if (c->in.len == 0 && c->in.cap > RESP_IN_KEEP) {
        buf_free(&c->in); /* a big command is done: do not keep its buffer */
    }
    c->wrote |= resp_session_take_wrote(c->ss);
    if (c->out.len > 0 || resp_session_waiting(c->ss)) {
        pending_add(c); /* answered after the turn's group and sync (worker_main) */
    } else {
        conn_close_if_done(c);
    }
    return true;
}

/*
 * The socket is readable (or idle too long). One read(2) per event, into c->in, as Redis reads
 * its query buffer: a bufferevent's input costs an ioctl(FIONREAD) and a readv per read, and a
 * pullup, a third more system calls per command at -P 1. The read asks for RESP_IN_READ bytes,
 * or as much as is already buffered when a large command is arriving, so a big bulk string is
 * read in a number of calls logarithmic in its size.
 */
static void resp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    resp_conn *c = arg;
    if (what & EV_TIMEOUT) {
        logf_(c->w->srv, 2, "resp: closing an idle connection");
        conn_free(c);
        return;
    }
    size_t want = c->in.len > RESP_IN_READ ? c->in.len : RESP_IN_READ;
    if (buf_reserve(&c->in, want, NULL) != SHALE_OK) {
        protocol_error(c, "out of memory");
        if (c->out.len > 0) {
            pending_add(c); /* the error goes out at the turn's end, then the close */
        } else {
            conn_close_if_done(c);
        }
        return;
    }
    ssize_t n = read(fd, (uint8_t *)c->in.data + c->in.len, c->in.cap - c->in.len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_free(c); /* closed by the client, or reset */
        return;
    }
    if (n < 0) {
        return;
    }
    c->in.len += (size_t)n;
    (void)resp_process(c);
}

static void resp_write_cb(struct bufferevent *bev, void *arg)
{
    resp_conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    conn_busy(c, pending > 0);
    if (c->closing && pending == 0 && !c->pending) { /* held replies go out first */
        conn_free(c);
        return;
    }
    if (!c->reading && !c->closing && pending <= RESP_OUT_HIGH / 2) {
        reading_on(c);
        /* Commands already buffered are not announced again by the socket. */
        if (c->in.len > 0) {
            (void)resp_process(c);
        }
    }
}

static void resp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    resp_conn *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        logf_(c->w->srv, 2, "resp: closing a connection that does not read its replies");
    }
    conn_free(c);
}

static void resp_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    (void)l;
    (void)salen;
    worker *w = arg;
    server *s = w->srv;
    char peer[80] = "?";
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
        snprintf(peer, sizeof peer, "%s:%u", ip, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(peer, sizeof peer, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    if (atomic_load(&s->clients) >= (int64_t)s->cfg.max_clients) {
        static const char full[] = "-ERR max number of clients reached\r\n";
        ssize_t wr = write(fd, full, sizeof full - 1);
        (void)wr;
        close(fd);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    resp_conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    resp_session *ss = resp_session_new(s->resp, peer);
    struct event *rev = c ? event_new(w->base, fd, EV_READ | EV_PERSIST, resp_read_cb, c) : NULL;
    if (c == NULL || bev == NULL || ss == NULL || rev == NULL) {
        free(c);
        resp_session_free(ss);
        if (rev != NULL) {
            event_free(rev);
        }
        if (bev != NULL) {
            bufferevent_free(bev);
        } else {
            close(fd);
        }
        logf_(s, 0, "resp: out of memory accepting %s", peer);
        return;
    }
    c->w = w;
    c->bev = bev;
    c->ss = ss;
    resp_session_join(ss, w->group);
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    atomic_fetch_add(&s->clients, 1);
    metrics_conn(s->met, METRICS_RESP, 1);
    c->rev = rev;
    bufferevent_setcb(bev, NULL, resp_write_cb, resp_event_cb, c);
    struct timeval idle = {.tv_sec = s->cfg.idle_timeout_s};
    /* The write timeout runs only while replies wait to go out: a client that stops reading
     * them is closed like an idle one. The bufferevent never reads (resp_read_cb does). */
    bufferevent_set_timeouts(bev, NULL, s->cfg.idle_timeout_s ? &idle : NULL);
    bufferevent_disable(bev, EV_READ);
    bufferevent_enable(bev, EV_WRITE);
    reading_on(c);
}

/* ---- workers ---- */

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    if (w->stopped) {
        return;
    }
    if (w->resp_listener != NULL) {
        evconnlistener_enable(w->resp_listener);
    }
    if (w->http_bound != NULL) {
        evconnlistener_enable(evhttp_bound_socket_get_listener(w->http_bound));
    }
}

/* accept failed with something other than EAGAIN/EINTR (EMFILE, ENFILE, ENOBUFS): the socket
 * stays readable, so without this libevent would retry at once, forever. Pause, then retry. */
static _Thread_local worker *this_worker; /* evhttp's listener carries the evhttp, not w */

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)arg;
    worker *w = this_worker;
    int e = EVUTIL_SOCKET_ERROR();
    evconnlistener_disable(l);
    if (!event_pending(w->accept_retry_ev, EV_TIMEOUT, NULL)) {
        logf_(w->srv, 0, "accept: %s; not accepting for 100 ms", strerror(e));
        struct timeval tv = {.tv_usec = 100000};
        event_add(w->accept_retry_ev, &tv);
    }
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    w->grace_ms += 50;
    if (w->busy <= 0 || w->grace_ms >= STOP_GRACE_MS) {
        event_base_loopexit(w->base, NULL);
    }
}

/* The stop pipe became readable: stop accepting, then leave once replies in flight are out. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    worker *w = arg;
    if ((what & EV_READ) == 0 && !atomic_load(&w->srv->stopping)) {
        return; /* the once-a-second look (worker_init) */
    }
    event_del(w->stop_ev);
    w->stopped = true;
    if (w->resp_listener != NULL) {
        evconnlistener_disable(w->resp_listener);
    }
    /* No new commands: the replies already made go out during the grace period. */
    for (resp_conn *c = w->conns; c != NULL; c = c->next) {
        reading_off(c);
        c->closing = true;
    }
    if (w->http_bound != NULL) {
        /* Requests are served synchronously, so none is half-done here; a stream may be, and
         * the grace period lets it finish. */
        evhttp_del_accept_socket(w->http, w->http_bound);
        w->http_bound = NULL;
    }
    struct timeval tick = {.tv_usec = 50000};
    w->grace_ev = event_new(w->base, -1, EV_PERSIST, grace_cb, w);
    if (w->grace_ev == NULL || event_add(w->grace_ev, &tick) != 0) {
        event_base_loopexit(w->base, NULL);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    this_worker = w;
    for (;;) {
        int r = event_base_loop(w->base, EVLOOP_ONCE);
        flush_pending(w); /* the end of a turn: sync once, then answer */
        if (r != 0 || event_base_got_exit(w->base) || event_base_got_break(w->base)) {
            break;
        }
    }
    return NULL;
}

static shale_code worker_init(server *s, worker *w, uint32_t index, shale_error *err)
{
    w->srv = s;
    w->index = index;
    (void)index;
    w->base = event_base_new();
    if (w->base == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "cannot make an event loop");
    }
    if (s->resp != NULL && (w->group = resp_group_new(s->resp)) == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "cannot make a worker's write group");
    }
    if (w->http_fd >= 0) {
        w->http = evhttp_new(w->base);
        w->http_bound = w->http ? evhttp_accept_socket_with_handle(w->http, w->http_fd) : NULL;
        if (w->http_bound == NULL) {
            return err_set(err, SHALE_IO, errno, "cannot serve HTTP on the listening socket");
        }
        w->http_fd = -1; /* evhttp's now */
        evhttp_set_gencb(w->http, http_cb, w);
        evhttp_set_max_body_size(w->http, (ev_ssize_t)s->cfg.max_body);
        evhttp_set_max_headers_size(w->http, 64 * 1024);
        if (s->cfg.idle_timeout_s) {
            evhttp_set_timeout(w->http, (int)s->cfg.idle_timeout_s);
        }
        evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                                EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    }
    if (w->resp_fd >= 0) {
        w->resp_listener = evconnlistener_new(w->base, resp_accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1,
                                              (evutil_socket_t)w->resp_fd);
        if (w->resp_listener == NULL) {
            return err_set(err, SHALE_IO, errno, "cannot serve RESP on the listening socket");
        }
        w->resp_fd = -1; /* the listener's now */
    }
    w->accept_retry_ev = event_new(w->base, -1, 0, accept_retry_cb, w);
    if (w->accept_retry_ev == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "out of memory");
    }
    if (w->resp_listener != NULL) {
        evconnlistener_set_error_cb(w->resp_listener, accept_error_cb);
    }
    if (w->http_bound != NULL) {
        evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->http_bound),
                                    accept_error_cb);
    }
    /* The pipe wakes the loop at once; the timeout is the fallback when server_stop's write to
     * it failed (it runs in a signal handler, with nowhere to report that). */
    struct timeval look = {.tv_sec = 1};
    w->stop_ev = event_new(w->base, s->stop_pipe[0], EV_READ | EV_PERSIST, stop_cb, w);
    if (w->stop_ev == NULL || event_add(w->stop_ev, &look) != 0) {
        return err_set(err, SHALE_NOMEM, 0, "cannot watch the stop pipe");
    }
    return SHALE_OK;
}

static void worker_release(worker *w)
{
    if (w->http_fd >= 0) {
        close(w->http_fd);
    }
    if (w->resp_fd >= 0) {
        close(w->resp_fd);
    }
    while (w->conns != NULL) {
        conn_free(w->conns);
    }
    resp_group_free(w->group); /* commits what closed connections left (nothing after a turn) */
    if (w->stop_ev != NULL) {
        event_free(w->stop_ev);
    }
    if (w->grace_ev != NULL) {
        event_free(w->grace_ev);
    }
    if (w->accept_retry_ev != NULL) {
        event_free(w->accept_retry_ev);
    }
    if (w->resp_listener != NULL) {
        evconnlistener_free(w->resp_listener);
    }
    if (w->http != NULL) {
        evhttp_free(w->http);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
}

/* ---- lifecycle ---- */

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

shale_code server_open(const server_config *c, server **out, shale_error *err)
{
    *out = NULL;
    /* No evthread_use_pthreads: every event base is used by its own thread only (the stop
     * request crosses threads through a pipe), so libevent needs no locks. */
    server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "out of memory");
    }
    s->cfg = *c;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    s->data_dir = dup_or_null(c->data_dir);
    s->http_addr = dup_or_null(c->http_addr);
    s->resp_addr = dup_or_null(c->resp_addr);
    s->auth_token = dup_or_null(c->auth_token);
    s->cfg.data_dir = s->data_dir;
    s->cfg.http_addr = s->http_addr;
    s->cfg.resp_addr = s->resp_addr;
    s->cfg.auth_token = s->auth_token;
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    shale_code rc = SHALE_OK;
    if (s->data_dir == NULL) {
        rc = err_set(err, SHALE_INVALID, 0, "no data directory");
        goto fail;
    }
    if (off(s->http_addr) && off(s->resp_addr)) {
        rc = err_set(err, SHALE_INVALID, 0, "both listeners are off: nothing to serve");
        goto fail;
    }
    shale_options o = {.create_if_missing = true,
                       .max_memory_mb = c->max_memory_mb,
                       .durability = c->durability_set ? c->durability : SHALE_DURABILITY_DEFAULT};
    rc = shale_open(s->data_dir, &o, &s->db, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    s->nworkers = c->threads ? c->threads : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nworkers == 0 || s->nworkers > 256) {
        s->nworkers = s->nworkers ? 256 : 1;
    }
    s->met = metrics_new(s->nworkers);
    if (s->met == NULL) {
        rc = err_set(err, SHALE_NOMEM, 0, "out of memory");
        goto fail;
    }
    http_api_opts ho = {.db = s->db,
                        .auth_token = s->auth_token,
                        .max_body = (size_t)c->max_body,
                        .health_facts = health_facts,
                        .metrics_text = metrics_text_cb,
                        .ctx = s,
                        .backup_dir = c->backup_dir};
    rc = http_api_new(&ho, &s->api, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    resp_server_opts ro = {.db = s->db,
                           .auth_token = s->auth_token,
                           /* OS and FULL: commit at MEMORY, synced once per turn */
                           .durability = !c->durability_set || c->durability >= SHALE_DURABILITY_OS
                                             ? SHALE_DURABILITY_MEMORY
                                             : SHALE_DURABILITY_DEFAULT,
                           .info = resp_info,
                           .info_ctx = s};
    rc = resp_server_new(&ro, &s->resp, err);
    if (rc != SHALE_OK) {
        goto fail;
    }
    s->limits = (resp_limits)RESP_LIMITS_DEFAULT;
    if (s->limits.max_bulk > c->max_query_bytes) {
        s->limits.max_bulk = (size_t)c->max_query_bytes;
    }
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = err_set(err, SHALE_IO, errno, "pipe: %s", strerror(errno));
        goto fail;
    }
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    for (uint32_t i = 0; s->workers != NULL && i < s->nworkers; i++) {
        s->workers[i].http_fd = s->workers[i].resp_fd = -1; /* not fd 0: worker_release closes */
    }
    int *fds = calloc(2 * (size_t)s->nworkers, sizeof *fds);
    if (s->workers == NULL || fds == NULL) {
        free(fds);
        rc = err_set(err, SHALE_NOMEM, 0, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        s->workers[i].http_fd = s->workers[i].resp_fd = -1;
        fds[i] = fds[s->nworkers + i] = -1;
    }
    s->http_on = !off(s->http_addr);
    s->resp_on = !off(s->resp_addr);
    if (s->http_on) {
        rc = listen_on(s->http_addr, "http", s->nworkers, fds, &s->http_port, err);
    }
    if (rc == SHALE_OK && s->resp_on) {
        rc = listen_on(s->resp_addr, "resp", s->nworkers, fds + s->nworkers, &s->resp_port, err);
    }
    for (uint32_t i = 0; i < s->nworkers; i++) { /* each worker closes its own from now on */
        s->workers[i].http_fd = fds[i];
        s->workers[i].resp_fd = fds[s->nworkers + i];
    }
    free(fds);
    for (uint32_t i = 0; rc == SHALE_OK && i < s->nworkers; i++) {
        rc = worker_init(s, &s->workers[i], i, err);
    }
    if (rc != SHALE_OK) {
        goto fail;
    }
    *out = s;
    return SHALE_OK;
fail:
    (void)server_close(s, NULL);
    return rc;
}

shale_code server_run(server *s, shale_error *err)
{
    char http[300] = "off", resp[300] = "off";
    if (s->http_on) {
        snprintf(http, sizeof http, "%s (port %u)", s->http_addr, s->http_port);
    }
    if (s->resp_on) {
        snprintf(resp, sizeof resp, "%s (port %u)", s->resp_addr, s->resp_port);
    }
    logf_(s, 1, "serving %s (durability %s, %u threads): http %s, resp %s", s->data_dir,
          s->cfg.durability_set ? shale_durability_name(s->cfg.durability) : "os", s->nworkers,
          http, resp);
    shale_code rc = SHALE_OK;
    uint32_t started = 0;
    for (uint32_t i = 1; i < s->nworkers; i++) {
        int e = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (e != 0) {
            rc = err_set(err, SHALE_IO, e, "cannot start a worker thread: %s", strerror(e));
            server_stop(s);
            break;
        }
        s->workers[i].started = true;
        started++;
    }
    worker_main(&s->workers[0]); /* the calling thread is worker 0 */
    for (uint32_t i = 1; i < s->nworkers; i++) {
        if (s->workers[i].started) {
            pthread_join(s->workers[i].thread, NULL);
            s->workers[i].started = false;
        }
    }
    (void)started;
    return rc;
}

void server_stop(server *s)
{
    int saved = errno;
    atomic_store(&s->stopping, true);
    if (s->stop_pipe[1] >= 0) {
        ssize_t n;
        do {
            n = write(s->stop_pipe[1], "x", 1);
        } while (n < 0 && errno == EINTR);
    }
    errno = saved;
}

shale_code server_close(server *s, shale_error *err)
{
    if (s == NULL) {
        return SHALE_OK;
    }
    for (uint32_t i = 0; s->workers != NULL && i < s->nworkers; i++) {
        worker_release(&s->workers[i]);
    }
    free(s->workers);
    http_api_free(s->api);
    resp_server_free(s->resp);
    shale_code rc = SHALE_OK;
    if (s->db != NULL) {
        rc = shale_close(s->db, err);
        logf_(s, rc == SHALE_OK ? 1 : 0, "closed %s%s", s->data_dir,
              rc == SHALE_OK ? "" : " with an error");
    }
    metrics_free(s->met);
    for (int i = 0; i < 2; i++) {
        if (s->stop_pipe[i] >= 0) {
            close(s->stop_pipe[i]);
        }
    }
    free(s->data_dir);
    free(s->http_addr);
    free(s->resp_addr);
    free(s->auth_token);
    free(s);
    return rc;
}

uint16_t server_http_port(const server *s)
{
    return s->http_port;
}

uint16_t server_resp_port(const server *s)
{
    return s->resp_port;
}
