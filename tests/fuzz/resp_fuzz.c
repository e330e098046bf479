/*
 * libFuzzer target for the RESP request parser (src/server/resp.c). Built and replayed like every
 * target in tests/fuzz (README.md there): its corpus is replayed under ctest by every build, and
 * `make fuzz` runs it under libFuzzer.
 *
 * The first input byte picks the limits (odd: small ones, which reach every limit error), the
 * starting argv capacity ((byte >> 1) % 8) and, with a hash of the rest, how the rest is cut
 * into chunks (byte >> 4), hence the \004 and \005 in front of the seeds; the rest is what a
 * connection received. The target parses it as the server does, command after command, growing
 * argv when asked, and traps on any broken invariant: *used past len, an argument outside the
 * command's bytes, an error without a one-line message, a result that a fresh copy of the same
 * bytes does not reproduce, or a proper prefix of a whole command that is not MORE. Then it
 * feeds the same bytes in chunks to one request that keeps its resume state, the buffer moving
 * (a fresh exact-size copy, the old one poisoned and freed) before every call, argv grown by
 * realloc or by a new poisoned array, and now and then resp_request_reset before a call; it
 * traps unless that gives exactly the same commands, ends and final result. ASan catches any
 * read past len or through a pointer into a moved buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "server/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

/* Parses an exact-size private copy of data[0 .. len). */
static resp_parse_result parse_copy(const uint8_t *data, size_t len, const resp_limits *lim,
                                    resp_request *req, size_t *used, const char **msg,
                                    uint8_t **copy)
{
    *copy = malloc(len > 0 ? len : 1);
    CHECK(*copy != NULL);
    if (len > 0) {
        memcpy(*copy, data, len);
    }
    return resp_parse(*copy, len, lim, req, used, msg);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* splitmix64: the chunking's random numbers. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void put(shale_buf *t, const void *p, size_t n)
{
    CHECK(buf_append(t, p, n, NULL) == SHALE_OK);
}

/* The transcript of what a connection gets: for each command "O", where it ends in the stream
 * and its arguments; then "E" and the message, or "M" and where the unfinished rest starts. */
static void tr_cmd(shale_buf *t, size_t end, const resp_request *req)
{
    put(t, "O", 1);
    put(t, &end, sizeof(end));
    put(t, &req->argc, sizeof(req->argc));
    for (size_t i = 0; i < req->argc; i++) {
        put(t, &req->argv[i].len, sizeof(req->argv[i].len));
        put(t, req->argv[i].data, req->argv[i].len);
    }
}

static void tr_end(shale_buf *t, resp_parse_result r, const char *msg, size_t at)
{
    if (r == RESP_PARSE_ERROR) {
        put(t, "E", 1);
        put(t, msg, strlen(msg));
    } else {
        put(t, "M", 1);
        put(t, &at, sizeof(at));
    }
}

/* A fresh exact-size copy of data[0 .. len) replaces *buf (len_old bytes), which is poisoned and
 * freed: the connection's buffer moved. */
static uint8_t *move_to(uint8_t **buf, size_t *len_old, const uint8_t *data, size_t len)
{
    uint8_t *fresh = malloc(len > 0 ? len : 1);
    CHECK(fresh != NULL);
    if (len > 0) {
        memcpy(fresh, data, len);
    }
    if (*buf != NULL) {
        memset(*buf, 0xa5, *len_old);
        free(*buf);
    }
    *buf = fresh;
    *len_old = len;
    return fresh;
}

/* data[0 .. size) in chunks to one request that keeps its state (see the top). */
static void transcript_resumed(const uint8_t *data, size_t size, const resp_limits *lim, size_t cap,
                               uint64_t seed, shale_buf *t)
{
    resp_request req = {.argv_cap = cap};
    if (cap > 0) {
        req.argv = malloc(cap * sizeof(*req.argv));
        CHECK(req.argv != NULL);
    }
    uint8_t *b = NULL;
    size_t blen = 0;
    size_t base = 0; /* b holds data[base .. base + have) */
    size_t have = 0;
    /* Mostly small chunks; some inputs arrive whole or one byte at a time. */
    uint64_t mode = rnd(&seed) % 4;
    move_to(&b, &blen, data, 0);
    for (int guard = 0;; guard++) {
        CHECK(guard < 10000000);
        resp_parse_result r = RESP_PARSE_MORE;
        size_t used = 0;
        const char *msg = NULL;
        if (have > 0) {
            if (rnd(&seed) % 8 == 0) {
                resp_request_reset(&req);
            }
            r = resp_parse(b, have, lim, &req, &used, &msg);
        }
        CHECK(used <= have);
        if (r == RESP_PARSE_ERROR) {
            CHECK(req.resume_off == 0 && req.resume_argc == 0 && req.resume_nargs == 0);
            tr_end(t, r, msg, 0);
            break;
        }
        if (r == RESP_PARSE_OK) {
            CHECK(req.resume_off == 0 && req.resume_argc == 0 && req.resume_nargs == 0);
            tr_cmd(t, base + used, &req);
        } else if (req.argv_needed > 0) {
            CHECK(req.argv_needed > req.argv_cap && req.argv_needed <= lim->max_args);
            shale_slice *g;
            if (rnd(&seed) % 2) {
                g = realloc(req.argv, req.argv_needed * sizeof(*g));
            } else {
                g = malloc(req.argv_needed * sizeof(*g));
                CHECK(g != NULL);
                memset(g, 0xa5, req.argv_needed * sizeof(*g));
                free(req.argv);
            }
            CHECK(g != NULL);
            req.argv = g;
            req.argv_cap = req.argv_needed;
            continue;
        }
        base += used;
        have -= used;
        if (r == RESP_PARSE_MORE) {
            if (base + have == size) {
                tr_end(t, r, NULL, base);
                break;
            }
            size_t chunk = mode == 0   ? size
                           : mode == 1 ? 1
                                       : 1 + (size_t)(rnd(&seed) % (mode == 2 ? 8 : 256));
            have += min_size(chunk, size - base - have);
        }
        move_to(&b, &blen, data + base, have);
    }
    free(b);
    free(req.argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    static const resp_limits small = {.max_args = 5, .max_bulk = 16, .max_inline = 48};
    static const resp_limits defaults = RESP_LIMITS_DEFAULT;
    const resp_limits *lim = (data[0] & 1) ? &small : &defaults;
    size_t cap = (size_t)(data[0] >> 1) % 8;
    const size_t cap0 = cap;
    uint64_t seed = (uint64_t)(data[0] >> 4);
    data++;
    size--;
    for (size_t i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3u; /* FNV-1a */
    }

    shale_buf want = {0};
    shale_slice *argv = cap > 0 ? calloc(cap, sizeof(*argv)) : NULL;
    shale_slice *argv2 = NULL;
    size_t off = 0;
    for (int guard = 0; guard < 100000; guard++) {
        resp_request req = {.argv = argv, .argv_cap = cap};
        size_t used = 0;
        const char *msg = NULL;
        uint8_t *copy = NULL;
        size_t len = size - off;
        resp_parse_result r = parse_copy(data + off, len, lim, &req, &used, &msg, &copy);
        CHECK(used <= len);
        if (r == RESP_PARSE_ERROR) {
            CHECK(msg != NULL && msg[0] != '\0' && strpbrk(msg, "\r\n") == NULL);
            CHECK(req.argc == 0);
            tr_end(&want, r, msg, 0);
            free(copy);
            break;
        }
        CHECK(msg == NULL);
        if (r == RESP_PARSE_MORE) {
            free(copy);
            CHECK(req.argc == 0);
            if (req.argv_needed == 0) {
                tr_end(&want, r, NULL, off + used);
                break;
            }
            CHECK(req.argv_needed > cap && req.argv_needed <= lim->max_args);
            free(argv);
            cap = req.argv_needed;
            argv = calloc(cap, sizeof(*argv));
            CHECK(argv != NULL);
            continue;
        }
        CHECK(r == RESP_PARSE_OK);
        CHECK(used > 0 && req.argc >= 1 && req.argc <= cap && req.argc <= lim->max_args);
        for (size_t i = 0; i < req.argc; i++) {
            const uint8_t *d = argv[i].data;
            CHECK(d >= copy && argv[i].len <= used && d - copy <= (ptrdiff_t)(used - argv[i].len));
        }
        tr_cmd(&want, off + used, &req);
        /* A fresh copy of the same bytes parses the same. */
        free(argv2);
        argv2 = calloc(cap, sizeof(*argv2));
        CHECK(argv2 != NULL);
        resp_request req2 = {.argv = argv2, .argv_cap = cap};
        size_t used2 = 0;
        uint8_t *copy2 = NULL;
        CHECK(parse_copy(data + off, len, lim, &req2, &used2, &msg, &copy2) == RESP_PARSE_OK);
        CHECK(used2 == used && req2.argc == req.argc);
        for (size_t i = 0; i < req.argc; i++) {
            CHECK(argv2[i].len == argv[i].len);
            CHECK(argv[i].len == 0 || memcmp(argv2[i].data, argv[i].data, argv[i].len) == 0);
        }
        free(copy2);
        /* A few proper prefixes of the command are all MORE. */
        for (size_t k = 0; k < min_size(used, 4); k++) {
            size_t plen = (used - 1) * k / 4 + (k > 0 ? 0 : used - 1);
            resp_request req3 = {.argv = argv2, .argv_cap = cap};
            size_t used3 = 0;
            CHECK(parse_copy(data + off, plen, lim, &req3, &used3, &msg, &copy2) ==
                  RESP_PARSE_MORE);
            CHECK(req3.argv_needed == 0 && used3 <= plen);
            free(copy2);
        }
        free(copy);
        off += used;
    }
    free(argv);
    free(argv2);

    /* The same bytes in pieces, resumed, give the same transcript. */
    shale_buf got = {0};
    transcript_resumed(data, size, lim, cap0, seed, &got);
    CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
    buf_free(&want);
    buf_free(&got);
    return 0;
}
