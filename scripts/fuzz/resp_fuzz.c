/*
 * libFuzzer target for the RESP request parser (src/server/resp.c). Not built by CMake: it lives
 * under scripts/ because every tests/<dir> is globbed into a Criterion suite. Build and run from
 * the repository root:
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -Iinclude -Isrc scripts/fuzz/resp_fuzz.c src/server/resp.c src/base/buf.c \
 *       src/base/error.c -lm -o build/resp_fuzz
 *   mkdir -p build/resp_corpus
 *   printf '\004*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n' > build/resp_corpus/multibulk
 *   printf '\005set "a\\x41\\n" '"'"'it\\'"'"'s'"'"' v\r\n*0\r\n\r\nPING\n' >
 * build/resp_corpus/inline build/resp_fuzz -max_total_time=60 -max_len=4096 build/resp_corpus
 *
 * The first input byte picks the limits (odd: small ones, which reach every limit error) and
 * the starting argv capacity ((byte >> 1) % 8), hence the \004 and \005 in front of the seeds;
 * the rest is what a connection received. The target parses it as the server does, command
 * after command, growing argv when asked, and traps on any broken invariant: *used past len, an
 * argument outside the command's bytes, an error without a one-line message, a result that a fresh
 * copy of the same bytes does not reproduce, or a proper prefix of a whole command that is not
 * MORE. ASan catches any read past len (the parser sees an exact-size copy).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    static const resp_limits small = {.max_args = 5, .max_bulk = 16, .max_inline = 48};
    static const resp_limits defaults = RESP_LIMITS_DEFAULT;
    const resp_limits *lim = (data[0] & 1) ? &small : &defaults;
    size_t cap = (size_t)(data[0] >> 1) % 8;
    data++;
    size--;

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
            free(copy);
            break;
        }
        CHECK(msg == NULL);
        if (r == RESP_PARSE_MORE) {
            free(copy);
            CHECK(req.argc == 0);
            if (req.argv_needed == 0) {
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
    return 0;
}
