/*
 * resp_cmd tests: every command run through resp_exec on a real temporary database, without
 * sockets, comparing the exact reply bytes (RESP2, and RESP3 after HELLO 3), plus what only a
 * store can show: values shared with shale_get/shale_put, atomic EXEC, concurrent INCR, expiry,
 * and the document layer's reserved keys staying out of reach.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/buf.h"
#include "server/resp_cmd.h"
#include "testutil.h"

static tu_fx fx;
static resp_server *sv;
static resp_session *ss;
static shale_buf rbuf;

static void info_cb(void *ctx, shale_buf *out)
{
    (void)ctx;
    static const char lines[] = "tcp_port:6380\r\nconnected_clients:42\r\n";
    size_t at = out->len;
    if (out->cap - out->len < sizeof lines) {
        void *p = realloc(out->data, out->len + sizeof lines);
        if (p == NULL) {
            return;
        }
        out->data = p;
        out->cap = out->len + sizeof lines;
    }
    memcpy((char *)out->data + at, lines, sizeof lines - 1);
    out->len += sizeof lines - 1;
}

static void open_server(const char *token)
{
    shale_error err;
    tu_fx_begin(&fx, "resp_cmd", NULL);
    resp_server_opts o = {.db = fx.db, .auth_token = token, .info = info_cb};
    cr_assert_eq(resp_server_new(&o, &sv, &err), SHALE_OK, "%s", err.msg);
    ss = resp_session_new(sv, "127.0.0.1:5000");
    cr_assert_not_null(ss);
}

static void setup(void)
{
    open_server(NULL);
}

static void setup_auth(void)
{
    open_server("s3cret");
}

static void teardown(void)
{
    resp_session_free(ss);
    ss = NULL;
    resp_server_free(sv);
    sv = NULL;
    shale_buf_free(&rbuf);
    tu_fx_end(&fx);
}

TestSuite(resp_cmd, .init = setup, .fini = teardown);
TestSuite(resp_cmd_auth, .init = setup_auth, .fini = teardown);
TestSuite(resp_cmd_ks, .init = setup, .fini = teardown);
TestSuite(resp_cmd_multi, .init = setup, .fini = teardown);

/* Printable form of bytes for failure messages (static, two alternating buffers). */
static const char *esc(const void *data, size_t len)
{
    static char bufs[2][4096];
    static int which;
    char *out = bufs[which ^= 1];
    size_t n = 0;
    const unsigned char *p = data;
    for (size_t i = 0; i < len && n + 5 < sizeof bufs[0]; i++) {
        if (p[i] == '\r') {
            n += (size_t)sprintf(out + n, "\\r");
        } else if (p[i] == '\n') {
            n += (size_t)sprintf(out + n, "\\n");
        } else if (p[i] < 32 || p[i] >= 127) {
            n += (size_t)sprintf(out + n, "\\x%02x", p[i]);
        } else {
            out[n++] = (char)p[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* Runs argv on s; the reply is in rbuf. */
static resp_exec_result run_argv(resp_session *s, const shale_slice *argv, size_t argc)
{
    rbuf.len = 0;
    return resp_exec(s, argv, argc, &rbuf);
}

/* Runs a command written as words separated by single spaces ("" is an empty word). */
static resp_exec_result run(resp_session *s, const char *line)
{
    shale_slice argv[64];
    size_t argc = 0;
    const char *p = line;
    while (*p != '\0') {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        cr_assert_lt(argc, 64);
        argv[argc++] =
            (n == 2 && p[0] == '"' && p[1] == '"') ? (shale_slice){"", 0} : (shale_slice){p, n};
        p += n;
        if (*p == ' ') {
            p++;
        }
    }
    return run_argv(s, argv, argc);
}

static void check_reply(const char *what, const void *want, size_t wlen, int line)
{
    cr_assert(rbuf.len == wlen && memcmp(rbuf.data, want, wlen) == 0,
              "line %d: %s\n  want: %s\n  got:  %s", line, what, esc(want, wlen),
              esc(rbuf.data, rbuf.len));
}

#define EXPECT_ON(s, line, want)                                                                   \
    do {                                                                                           \
        run((s), (line));                                                                          \
        check_reply((line), (want), sizeof(want) - 1, __LINE__);                                   \
    } while (0)
#define EXPECT(line, want) EXPECT_ON(ss, line, want)

/* Whether the reply contains text. */
static bool has(const char *text)
{
    return memmem(rbuf.data, rbuf.len, text, strlen(text)) != NULL;
}

/* The integer of a ":N\r\n" reply. */
static long long int_reply(void)
{
    cr_assert(rbuf.len >= 4 && ((char *)rbuf.data)[0] == ':', "not an integer: %s",
              esc(rbuf.data, rbuf.len));
    return strtoll((char *)rbuf.data + 1, NULL, 10);
}

static void store_get(const char *key, const char *want)
{
    tu_expect(fx.db, key, want);
}

/* ---- basics ---- */

Test(resp_cmd, ping_echo_time_select)
{
    EXPECT("PING", "+PONG\r\n");
    EXPECT("ping hello", "$5\r\nhello\r\n");
    EXPECT("PING a b", "-ERR wrong number of arguments for 'ping' command\r\n");
    EXPECT("ECHO hi", "$2\r\nhi\r\n");
    EXPECT("echo \"\"", "$0\r\n\r\n");
    EXPECT("ECHO", "-ERR wrong number of arguments for 'echo' command\r\n");
    EXPECT("SELECT 0", "+OK\r\n");
    EXPECT("SELECT 1", "-ERR DB index is out of range\r\n");
    EXPECT("SELECT x", "-ERR value is not an integer or out of range\r\n");
    run(ss, "TIME");
    cr_assert(rbuf.len > 10 && memcmp(rbuf.data, "*2\r\n$", 5) == 0, "%s",
              esc(rbuf.data, rbuf.len));
}

Test(resp_cmd, unknown_and_arity)
{
    EXPECT("FOO a b", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
    EXPECT("nope", "-ERR unknown command 'nope', with args beginning with: \r\n");
    EXPECT("GET", "-ERR wrong number of arguments for 'get' command\r\n");
    EXPECT("GET a b", "-ERR wrong number of arguments for 'get' command\r\n");
    EXPECT("SET a", "-ERR wrong number of arguments for 'set' command\r\n");
    EXPECT("MSET a b c", "-ERR wrong number of arguments for 'mset' command\r\n");
    EXPECT("MSETNX a b c", "-ERR wrong number of arguments for 'msetnx' command\r\n");
    cr_assert_str_eq(resp_cmd_name(tu_str("GET")), "get");
    cr_assert_str_eq(resp_cmd_name(tu_str("IncrByFloat")), "incrbyfloat");
    cr_assert_str_eq(resp_cmd_name(tu_str("watch")), "watch");
    cr_assert_str_eq(resp_cmd_name(tu_str("append")), "append");
    cr_assert_str_eq(resp_cmd_name(tu_str("nope")), "unknown");
    cr_assert_str_eq(resp_cmd_name(tu_str("averyveryverylongname")), "unknown");
    cr_assert_str_eq(resp_cmd_name((shale_slice){"", 0}), "unknown");
}

Test(resp_cmd, get_set_basic_and_interop)
{
    EXPECT("GET k", "$-1\r\n");
    EXPECT("SET k v1", "+OK\r\n");
    EXPECT("sEt k hello", "+OK\r\n");
    EXPECT("GET k", "$5\r\nhello\r\n");
    store_get("k", "hello");
    tu_put(fx.db, "fromlib", "xyz");
    EXPECT("GET fromlib", "$3\r\nxyz\r\n");
    /* Binary keys and values, NUL bytes included. */
    shale_slice set[3] = {TU_SL("SET"), TU_SL("b\0k"), TU_SL("v\0\r\nw")};
    run_argv(ss, set, 3);
    check_reply("SET binary", "+OK\r\n", 5, __LINE__);
    shale_slice val = TU_SL("v\0\r\nw");
    tu_expectn(fx.db, TU_SL("b\0k"), &val);
    shale_slice get[2] = {TU_SL("GET"), TU_SL("b\0k")};
    run_argv(ss, get, 2);
    check_reply("GET binary", "$5\r\nv\0\r\nw\r\n", 11, __LINE__);
    EXPECT("SET \"\" v", "-ERR empty key\r\n");
    EXPECT("SET e \"\"", "+OK\r\n");
    EXPECT("GET e", "$0\r\n\r\n");
}

Test(resp_cmd, set_options)
{
    EXPECT("SET k v NX", "+OK\r\n");
    EXPECT("SET k w NX", "$-1\r\n");
    EXPECT("GET k", "$1\r\nv\r\n");
    EXPECT("SET k w XX", "+OK\r\n");
    EXPECT("SET nokey w XX", "$-1\r\n");
    EXPECT("EXISTS nokey", ":0\r\n");
    EXPECT("SET k x GET", "$1\r\nw\r\n");
    EXPECT("SET new x GET", "$-1\r\n");
    EXPECT("SET k y NX GET", "$1\r\nx\r\n");
    EXPECT("GET k", "$1\r\nx\r\n");
    EXPECT("SET k v NX XX", "-ERR syntax error\r\n");
    EXPECT("SET k v EX 10 PX 100", "-ERR syntax error\r\n");
    EXPECT("SET k v KEEPTTL EX 10", "-ERR syntax error\r\n");
    EXPECT("SET k v EX 10 KEEPTTL", "-ERR syntax error\r\n");
    EXPECT("SET k v EX", "-ERR syntax error\r\n");
    EXPECT("SET k v FOO", "-ERR syntax error\r\n");
    EXPECT("SET k v EX 0", "-ERR invalid expire time in 'set' command\r\n");
    EXPECT("SET k v PX -5", "-ERR invalid expire time in 'set' command\r\n");
    EXPECT("SET k v EX 9223372036854775", "-ERR invalid expire time in 'set' command\r\n");
    EXPECT("SET k v PX 9223372036854775807", "-ERR invalid expire time in 'set' command\r\n");
    EXPECT("SET k v EX abc", "-ERR value is not an integer or out of range\r\n");
    EXPECT("GET k", "$1\r\nx\r\n");
    /* Expiry options and TTL. */
    EXPECT("SET t v EX 100", "+OK\r\n");
    EXPECT("TTL t", ":100\r\n");
    run(ss, "PTTL t");
    long long pttl = int_reply();
    cr_assert(pttl > 90000 && pttl <= 100000, "pttl %lld", pttl);
    EXPECT("SET t v2 KEEPTTL", "+OK\r\n");
    EXPECT("TTL t", ":100\r\n");
    EXPECT("SET t v3", "+OK\r\n");
    EXPECT("TTL t", ":-1\r\n");
    EXPECT("SET t v PX 100000", "+OK\r\n");
    EXPECT("TTL t", ":100\r\n");
    EXPECT("SET t v EXAT 32503680000", "+OK\r\n"); /* year 3000 */
    EXPECT("EXPIRETIME t", ":32503680000\r\n");
    EXPECT("SET t v PXAT 32503680000123", "+OK\r\n");
    EXPECT("PEXPIRETIME t", ":32503680000123\r\n");
    EXPECT("EXPIRETIME t", ":32503680000\r\n");
    /* A deadline in the past: written, and gone at once. */
    EXPECT("SET t v PXAT 1", "+OK\r\n");
    EXPECT("GET t", "$-1\r\n");
    EXPECT("TTL t", ":-2\r\n");
}

Test(resp_cmd, setnx_setex_psetex_getset)
{
    EXPECT("SETNX a 1", ":1\r\n");
    EXPECT("SETNX a 2", ":0\r\n");
    EXPECT("GET a", "$1\r\n1\r\n");
    EXPECT("SETEX b 100 v", "+OK\r\n");
    EXPECT("TTL b", ":100\r\n");
    EXPECT("SETEX b 0 v", "-ERR invalid expire time in 'setex' command\r\n");
    EXPECT("SETEX b x v", "-ERR value is not an integer or out of range\r\n");
    EXPECT("PSETEX c 100000 v", "+OK\r\n");
    EXPECT("TTL c", ":100\r\n");
    EXPECT("PSETEX c -1 v", "-ERR invalid expire time in 'psetex' command\r\n");
    EXPECT("SETEX b 100", "-ERR wrong number of arguments for 'setex' command\r\n");
    EXPECT("GETSET b new", "$1\r\nv\r\n");
    EXPECT("TTL b", ":-1\r\n");
    EXPECT("GETSET z new", "$-1\r\n");
    store_get("z", "new");
}

Test(resp_cmd, getdel_getex)
{
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("GETDEL k", "$1\r\nv\r\n");
    EXPECT("GETDEL k", "$-1\r\n");
    store_get("k", NULL);
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("GETEX k", "$1\r\nv\r\n");
    EXPECT("TTL k", ":-1\r\n");
    EXPECT("GETEX k EX 100", "$1\r\nv\r\n");
    EXPECT("TTL k", ":100\r\n");
    EXPECT("GETEX k PERSIST", "$1\r\nv\r\n");
    EXPECT("TTL k", ":-1\r\n");
    EXPECT("GETEX k PX 200000", "$1\r\nv\r\n");
    EXPECT("TTL k", ":200\r\n");
    EXPECT("GETEX k EXAT 32503680000", "$1\r\nv\r\n");
    EXPECT("EXPIRETIME k", ":32503680000\r\n");
    EXPECT("GETEX k PXAT 32503680000999", "$1\r\nv\r\n");
    EXPECT("PEXPIRETIME k", ":32503680000999\r\n");
    EXPECT("GETEX k EX 10 PX 10", "-ERR syntax error\r\n");
    EXPECT("GETEX k PERSIST EX 10", "-ERR syntax error\r\n");
    EXPECT("GETEX k EX", "-ERR syntax error\r\n");
    EXPECT("GETEX k EX 0", "-ERR invalid expire time in 'getex' command\r\n");
    EXPECT("GETEX k EX x", "-ERR value is not an integer or out of range\r\n");
    EXPECT("GETEX missing EX 10", "$-1\r\n");
    EXPECT("EXISTS missing", ":0\r\n");
    EXPECT("GETEX k PXAT 1", "$1\r\nv\r\n"); /* past: the key goes */
    EXPECT("EXISTS k", ":0\r\n");
}

Test(resp_cmd, mget_mset_msetnx)
{
    EXPECT("MSET a 1 b 2 c 3", "+OK\r\n");
    EXPECT("MGET a b nope c", "*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n");
    store_get("b", "2");
    EXPECT("MSETNX a 9 d 4", ":0\r\n");
    EXPECT("EXISTS d", ":0\r\n");
    EXPECT("MSETNX d 4 e 5", ":1\r\n");
    EXPECT("MGET d e", "*2\r\n$1\r\n4\r\n$1\r\n5\r\n");
    EXPECT("MSET a", "-ERR wrong number of arguments for 'mset' command\r\n");
    EXPECT("MGET", "-ERR wrong number of arguments for 'mget' command\r\n");
    EXPECT("MGET a \"\"", "-ERR key 1: empty key\r\n");
}

Test(resp_cmd, del_unlink_exists_touch_type)
{
    EXPECT("MSET a 1 b 2 c 3", "+OK\r\n");
    EXPECT("EXISTS a b nope a", ":3\r\n");
    EXPECT("TOUCH a nope", ":1\r\n");
    EXPECT("TYPE a", "+string\r\n");
    EXPECT("TYPE nope", "+none\r\n");
    EXPECT("DEL a nope a", ":1\r\n");
    EXPECT("UNLINK b c", ":2\r\n");
    EXPECT("DEL b", ":0\r\n");
    EXPECT("EXISTS a b c", ":0\r\n");
    EXPECT("DEL", "-ERR wrong number of arguments for 'del' command\r\n");
}

Test(resp_cmd, expire_family)
{
    EXPECT("EXPIRE nope 10", ":0\r\n");
    EXPECT("TTL nope", ":-2\r\n");
    EXPECT("PTTL nope", ":-2\r\n");
    EXPECT("EXPIRETIME nope", ":-2\r\n");
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("TTL k", ":-1\r\n");
    EXPECT("PTTL k", ":-1\r\n");
    EXPECT("PEXPIRETIME k", ":-1\r\n");
    EXPECT("EXPIRE k 100 XX", ":0\r\n");
    EXPECT("EXPIRE k 100 GT", ":0\r\n");
    EXPECT("EXPIRE k 100 NX", ":1\r\n");
    EXPECT("EXPIRE k 200 NX", ":0\r\n");
    EXPECT("TTL k", ":100\r\n");
    EXPECT("EXPIRE k 50 GT", ":0\r\n");
    EXPECT("EXPIRE k 200 GT", ":1\r\n");
    EXPECT("EXPIRE k 300 LT", ":0\r\n");
    EXPECT("EXPIRE k 150 LT", ":1\r\n");
    EXPECT("EXPIRE k 120 XX", ":1\r\n");
    EXPECT("TTL k", ":120\r\n");
    EXPECT("GET k", "$1\r\nv\r\n");
    EXPECT("PEXPIRE k 300000", ":1\r\n");
    EXPECT("TTL k", ":300\r\n");
    EXPECT("EXPIREAT k 32503680000", ":1\r\n");
    EXPECT("EXPIRETIME k", ":32503680000\r\n");
    EXPECT("PEXPIREAT k 32503680000500", ":1\r\n");
    EXPECT("PEXPIRETIME k", ":32503680000500\r\n");
    EXPECT("PERSIST k", ":1\r\n");
    EXPECT("PERSIST k", ":0\r\n");
    EXPECT("PERSIST nope", ":0\r\n");
    EXPECT("TTL k", ":-1\r\n");
    EXPECT("EXPIRE k 10 NX XX", "-ERR NX and XX, GT or LT options at the same time are not "
                                "compatible\r\n");
    EXPECT("EXPIRE k 10 GT LT", "-ERR GT and LT options at the same time are not compatible\r\n");
    EXPECT("EXPIRE k 10 FOO", "-ERR Unsupported option FOO\r\n");
    EXPECT("EXPIRE k ten", "-ERR value is not an integer or out of range\r\n");
    EXPECT("EXPIRE k 9223372036854775807", "-ERR invalid expire time in 'expire' command\r\n");
    EXPECT("PEXPIRE k 9223372036854775807", "-ERR invalid expire time in 'pexpire' command\r\n");
    EXPECT("EXPIRE k", "-ERR wrong number of arguments for 'expire' command\r\n");
    /* A deadline now or past deletes the key. */
    EXPECT("EXPIRE k 0", ":1\r\n");
    EXPECT("EXISTS k", ":0\r\n");
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("EXPIRE k -5", ":1\r\n");
    EXPECT("GET k", "$-1\r\n");
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("EXPIREAT k 1", ":1\r\n");
    EXPECT("EXISTS k", ":0\r\n");
    /* TTLs set over RESP are the store's deadlines. */
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("PEXPIREAT k 32503680000777", ":1\r\n");
    shale_entry_info info;
    shale_error err;
    cr_assert_eq(shale_get_info(fx.db, NULL, tu_str("k"), NULL, &info, &err), SHALE_OK);
    cr_assert_eq(info.expire_at_ms, 32503680000777ull);
}

Test(resp_cmd, ttl_expiry_polls)
{
    EXPECT("SET k v PX 50", "+OK\r\n");
    bool gone = false;
    for (int i = 0; i < 500 && !gone; i++) {
        run(ss, "GET k");
        gone = rbuf.len == 5 && memcmp(rbuf.data, "$-1\r\n", 5) == 0;
        if (!gone) {
            check_reply("GET k before expiry", "$1\r\nv\r\n", 7, __LINE__);
            tu_sleep_us(10000);
        }
    }
    cr_assert(gone, "key never expired");
    EXPECT("TTL k", ":-2\r\n");
    EXPECT("EXISTS k", ":0\r\n");
    store_get("k", NULL);
}

Test(resp_cmd, incr_family)
{
    EXPECT("INCR n", ":1\r\n");
    EXPECT("INCRBY n 41", ":42\r\n");
    EXPECT("DECR n", ":41\r\n");
    EXPECT("DECRBY n 50", ":-9\r\n");
    EXPECT("GET n", "$2\r\n-9\r\n");
    store_get("n", "-9");
    EXPECT("INCRBY n x", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET s abc", "+OK\r\n");
    EXPECT("INCR s", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET s \"\"", "+OK\r\n");
    EXPECT("INCR s", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET s 007", "+OK\r\n");
    EXPECT("INCR s", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET s +1", "+OK\r\n");
    EXPECT("INCR s", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET m 9223372036854775807", "+OK\r\n");
    EXPECT("INCR m", "-ERR increment or decrement would overflow\r\n");
    EXPECT("GET m", "$19\r\n9223372036854775807\r\n");
    EXPECT("SET m -9223372036854775808", "+OK\r\n");
    EXPECT("DECR m", "-ERR increment or decrement would overflow\r\n");
    EXPECT("DECRBY m -9223372036854775808", "-ERR decrement would overflow\r\n");
    EXPECT("INCRBY m 9223372036854775808", "-ERR value is not an integer or out of range\r\n");
    /* INCR keeps the deadline. */
    EXPECT("SET t 1 EX 100", "+OK\r\n");
    EXPECT("INCR t", ":2\r\n");
    EXPECT("TTL t", ":100\r\n");
    /* A value written by the library counts too. */
    tu_put(fx.db, "lib", "10");
    EXPECT("INCR lib", ":11\r\n");
}

Test(resp_cmd, incrbyfloat)
{
    EXPECT("SET f 10.50", "+OK\r\n");
    EXPECT("INCRBYFLOAT f 0.1", "$4\r\n10.6\r\n");
    EXPECT("INCRBYFLOAT f -5", "$3\r\n5.6\r\n");
    EXPECT("INCRBYFLOAT g 5.0e3", "$4\r\n5000\r\n");
    EXPECT("INCRBYFLOAT g 2.0e2", "$4\r\n5200\r\n");
    EXPECT("INCRBYFLOAT h 3", "$1\r\n3\r\n");
    EXPECT("INCRBYFLOAT h -3", "$1\r\n0\r\n");
    EXPECT("INCRBYFLOAT h abc", "-ERR value is not a valid float\r\n");
    EXPECT("INCRBYFLOAT h \"\"", "-ERR value is not a valid float\r\n");
    EXPECT("INCRBYFLOAT h nan", "-ERR value is not a valid float\r\n");
    EXPECT("INCRBYFLOAT h inf", "-ERR increment would produce NaN or Infinity\r\n");
    EXPECT("SET s abc", "+OK\r\n");
    EXPECT("INCRBYFLOAT s 1", "-ERR value is not a valid float\r\n");
    store_get("f", "5.6");
}

Test(resp_cmd, append_strlen_getrange_setrange)
{
    EXPECT("APPEND s Hello", ":5\r\n");
    EXPECT("APPEND s ,World", ":11\r\n");
    EXPECT("GET s", "$11\r\nHello,World\r\n");
    EXPECT("STRLEN s", ":11\r\n");
    EXPECT("STRLEN nope", ":0\r\n");
    EXPECT("SET s Thisisastring", "+OK\r\n");
    EXPECT("GETRANGE s 0 3", "$4\r\nThis\r\n");
    EXPECT("GETRANGE s -3 -1", "$3\r\ning\r\n");
    EXPECT("GETRANGE s 0 -1", "$13\r\nThisisastring\r\n");
    EXPECT("GETRANGE s 10 100", "$3\r\ning\r\n");
    EXPECT("GETRANGE s 5 3", "$0\r\n\r\n");
    EXPECT("GETRANGE s -1 -5", "$0\r\n\r\n");
    EXPECT("GETRANGE s -100 1", "$2\r\nTh\r\n");
    EXPECT("GETRANGE nope 0 10", "$0\r\n\r\n");
    EXPECT("GETRANGE s a 1", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SET k HelloWorld", "+OK\r\n");
    EXPECT("SETRANGE k 5 Redis", ":10\r\n");
    EXPECT("GET k", "$10\r\nHelloRedis\r\n");
    EXPECT("SETRANGE k 12 X", ":13\r\n");
    EXPECT("GET k", "$13\r\nHelloRedis\0\0X\r\n");
    EXPECT("SETRANGE k 0 \"\"", ":13\r\n");
    EXPECT("SETRANGE new 0 \"\"", ":0\r\n");
    EXPECT("EXISTS new", ":0\r\n");
    EXPECT("SETRANGE new 2 ab", ":4\r\n");
    EXPECT("GET new", "$4\r\n\0\0ab\r\n");
    EXPECT("SETRANGE k -1 x", "-ERR offset is out of range\r\n");
    EXPECT("SETRANGE k x x", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SETRANGE k 536870912 x",
           "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
    /* Past the store's max_value_bytes (4 MiB by default): the store's message. */
    run(ss, "SETRANGE k 4194304 x");
    cr_assert(has("-ERR value of 4194305 bytes exceeds max_value_bytes"), "%s",
              esc(rbuf.data, rbuf.len));
    EXPECT("STRLEN k", ":13\r\n");
    /* APPEND and SETRANGE keep the deadline. */
    EXPECT("SET t a EX 100", "+OK\r\n");
    EXPECT("APPEND t b", ":2\r\n");
    EXPECT("SETRANGE t 0 z", ":2\r\n");
    EXPECT("TTL t", ":100\r\n");
    EXPECT("GET t", "$2\r\nzb\r\n");
}

Test(resp_cmd, rename)
{
    EXPECT("RENAME nope x", "-ERR no such key\r\n");
    EXPECT("SET a 1 EX 100", "+OK\r\n");
    EXPECT("RENAME a b", "+OK\r\n");
    EXPECT("EXISTS a", ":0\r\n");
    EXPECT("GET b", "$1\r\n1\r\n");
    EXPECT("TTL b", ":100\r\n");
    EXPECT("RENAME b b", "+OK\r\n");
    EXPECT("GET b", "$1\r\n1\r\n");
    EXPECT("SET c 3", "+OK\r\n");
    EXPECT("RENAMENX b c", ":0\r\n");
    EXPECT("RENAMENX b d", ":1\r\n");
    EXPECT("RENAMENX nope d", "-ERR no such key\r\n");
    EXPECT("RENAME d c", "+OK\r\n");
    EXPECT("GET c", "$1\r\n1\r\n");
    store_get("d", NULL);
    store_get("c", "1");
}

/* ---- the key space ---- */

Test(resp_cmd_ks, keys_patterns)
{
    EXPECT("MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 h*llo 6 other 7", "+OK\r\n");
    run(ss, "KEYS *");
    cr_assert(rbuf.len > 4 && memcmp(rbuf.data, "*7\r\n", 4) == 0, "%s", esc(rbuf.data, rbuf.len));
    EXPECT("KEYS h?llo", "*4\r\n$5\r\nh*llo\r\n$5\r\nhallo\r\n$5\r\nhello\r\n$5\r\nhxllo\r\n");
    EXPECT("KEYS h*llo", "*6\r\n$5\r\nh*llo\r\n$5\r\nhallo\r\n$8\r\nheeeello\r\n$5\r\nhello\r\n"
                         "$4\r\nhllo\r\n$5\r\nhxllo\r\n");
    EXPECT("KEYS h[ae]llo", "*2\r\n$5\r\nhallo\r\n$5\r\nhello\r\n");
    EXPECT("KEYS h[^e]llo", "*3\r\n$5\r\nh*llo\r\n$5\r\nhallo\r\n$5\r\nhxllo\r\n");
    EXPECT("KEYS h[a-b]llo", "*1\r\n$5\r\nhallo\r\n");
    EXPECT("KEYS h[b-a]llo", "*1\r\n$5\r\nhallo\r\n");
    EXPECT("KEYS h\\*llo", "*1\r\n$5\r\nh*llo\r\n");
    EXPECT("KEYS oth*", "*1\r\n$5\r\nother\r\n");
    EXPECT("KEYS other", "*1\r\n$5\r\nother\r\n");
    EXPECT("KEYS x*", "*0\r\n");
    EXPECT("KEYS h[", "*0\r\n");
    EXPECT("KEYS *o", "*6\r\n$5\r\nh*llo\r\n$5\r\nhallo\r\n$8\r\nheeeello\r\n$5\r\nhello\r\n"
                      "$4\r\nhllo\r\n$5\r\nhxllo\r\n");
    EXPECT("KEYS *r", "*1\r\n$5\r\nother\r\n");
    /* A pathological pattern terminates quickly. */
    EXPECT(
        "SET aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab 1",
        "+OK\r\n");
    EXPECT("KEYS a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c", "*0\r\n");
}

static void insert_doc(void)
{
    shale_error err;
    shale_code rc =
        shale_doc_insert(fx.db, "things", tu_str("{\"_id\":\"d1\",\"x\":1}"), NULL, &err);
    cr_assert_eq(rc, SHALE_OK, "%s", err.msg);
}

static void doc_present(void)
{
    shale_buf out = {0};
    shale_error err;
    cr_assert_eq(shale_doc_get(fx.db, "things", tu_str("d1"), &out, &err), SHALE_OK, "%s", err.msg);
    shale_buf_free(&out);
}

Test(resp_cmd_ks, reserved_space_is_out_of_reach)
{
    insert_doc();
    static const char rk[] = "\x00\xD0"
                             "Cthings";
    shale_slice key = {rk, sizeof rk - 1};
    const char *err = "-ERR key is in the reserved document space\r\n";
    size_t elen = strlen(err);
    shale_slice get[2] = {TU_SL("GET"), key};
    run_argv(ss, get, 2);
    check_reply("GET reserved", err, elen, __LINE__);
    shale_slice set[3] = {TU_SL("SET"), key, TU_SL("x")};
    run_argv(ss, set, 3);
    check_reply("SET reserved", err, elen, __LINE__);
    shale_slice del[3] = {TU_SL("DEL"), TU_SL("a"), key};
    run_argv(ss, del, 3);
    check_reply("DEL reserved", err, elen, __LINE__);
    shale_slice mset[5] = {TU_SL("MSET"), TU_SL("a"), key, key, TU_SL("b")};
    run_argv(ss, mset, 5);
    check_reply("MSET reserved key", err, elen, __LINE__);
    shale_slice mset_ok[3] = {TU_SL("MSET"), TU_SL("a"), key}; /* as a value: fine */
    run_argv(ss, mset_ok, 3);
    check_reply("MSET reserved value", "+OK\r\n", 5, __LINE__);
    shale_slice ren[3] = {TU_SL("RENAME"), TU_SL("a"), key};
    run_argv(ss, ren, 3);
    check_reply("RENAME to reserved", err, elen, __LINE__);
    shale_slice prefix[2] = {TU_SL("GET"), TU_SL("\x00\xD0")};
    run_argv(ss, prefix, 2);
    check_reply("GET prefix", err, elen, __LINE__);
    shale_slice watch[2] = {TU_SL("WATCH"), key};
    run_argv(ss, watch, 2);
    check_reply("WATCH reserved", err, elen, __LINE__);
    /* 00 CF and 00 D1 are plain keys. */
    shale_slice below[3] = {TU_SL("SET"), TU_SL("\x00\xCF"), TU_SL("lo")};
    run_argv(ss, below, 3);
    check_reply("SET 00 CF", "+OK\r\n", 5, __LINE__);
    shale_slice above[3] = {TU_SL("SET"), TU_SL("\x00\xD1"), TU_SL("hi")};
    run_argv(ss, above, 3);
    check_reply("SET 00 D1", "+OK\r\n", 5, __LINE__);
    /* Invisible to the key space commands. */
    EXPECT("DBSIZE", ":3\r\n");
    EXPECT("KEYS *", "*3\r\n$2\r\n\x00\xCF\r\n$2\r\n\x00\xD1\r\n$1\r\na\r\n");
    EXPECT("SCAN 0 COUNT 100", "*2\r\n$1\r\n0\r\n*3\r\n$2\r\n\x00\xCF\r\n$2\r\n\x00\xD1\r\n"
                               "$1\r\na\r\n");
    run(ss, "INFO keyspace");
    cr_assert(has("db0:keys=3,expires=0,avg_ttl=0\r\n"), "%s", esc(rbuf.data, rbuf.len));
    for (int i = 0; i < 50; i++) {
        run(ss, "RANDOMKEY");
        cr_assert(!has("\xD0"
                       "C"),
                  "RANDOMKEY returned a reserved key: %s", esc(rbuf.data, rbuf.len));
    }
    EXPECT("FLUSHALL", "+OK\r\n");
    EXPECT("DBSIZE", ":0\r\n");
    EXPECT("KEYS *", "*0\r\n");
    EXPECT("RANDOMKEY", "$-1\r\n");
    doc_present();
    /* FLUSHDB in batches: more keys than one batch. */
    for (uint64_t i = 0; i < 2500; i++) {
        char kb[32];
        tu_putn(fx.db, tu_key(kb, i), tu_str("v"));
    }
    EXPECT("DBSIZE", ":2500\r\n");
    EXPECT("FLUSHDB SYNC", "+OK\r\n");
    EXPECT("DBSIZE", ":0\r\n");
    EXPECT("FLUSHALL NOW", "-ERR syntax error\r\n");
    doc_present();
    /* Inside EXEC too. */
    EXPECT("SET x 1", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("FLUSHALL ASYNC", "+QUEUED\r\n");
    EXPECT("DBSIZE", "+QUEUED\r\n");
    EXPECT("EXEC", "*2\r\n+OK\r\n:0\r\n");
    doc_present();
}

Test(resp_cmd_ks, scan_every_key_once)
{
    enum { N = 1000 };
    shale_batch *b = shale_batch_new();
    shale_error err;
    for (uint64_t i = 0; i < N; i++) {
        char key[32];
        cr_assert_eq(shale_batch_put(b, tu_key(key, i), tu_str("v"), &err), SHALE_OK);
    }
    cr_assert_eq(shale_write(fx.db, NULL, b, &err), SHALE_OK);
    shale_batch_free(b);
    insert_doc();
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    char cursor[32] = "0";
    int calls = 0, total = 0;
    do {
        char line[96];
        snprintf(line, sizeof line, "SCAN %s COUNT 10", cursor);
        run(ss, line);
        calls++;
        cr_assert_lt(calls, 500, "SCAN does not end");
        /* *2\r\n$<n>\r\n<cursor>\r\n*<k>\r\n then k bulks */
        const char *p = rbuf.data, *end = p + rbuf.len;
        cr_assert(memcmp(p, "*2\r\n$", 5) == 0, "%s", esc(rbuf.data, rbuf.len));
        size_t clen = strtoul(p + 5, NULL, 10);
        p = strstr(p + 5, "\r\n") + 2;
        memcpy(cursor, p, clen);
        cursor[clen] = '\0';
        p += clen + 2;
        cr_assert_eq(*p, '*');
        long k = strtol(p + 1, NULL, 10);
        cr_assert(k <= 10, "COUNT 10 gave %ld keys", k);
        p = strstr(p, "\r\n") + 2;
        for (long i = 0; i < k; i++) {
            cr_assert_eq(*p, '$');
            size_t kl = strtoul(p + 1, NULL, 10);
            p = strstr(p, "\r\n") + 2;
            cr_assert_eq(kl, 16u);
            unsigned long idx = strtoul(p + 3, NULL, 10);
            cr_assert_lt(idx, (unsigned long)N);
            cr_assert_eq(seen[idx], 0, "key %lu returned twice", idx);
            seen[idx] = 1;
            total++;
            p += kl + 2;
        }
        cr_assert_eq(p, end);
    } while (strcmp(cursor, "0") != 0);
    cr_assert_eq(total, N);
    /* Options. */
    EXPECT("SCAN 0 MATCH key0000000000999* COUNT 1000", "*2\r\n$1\r\n0\r\n*1\r\n$16\r\n"
                                                        "key0000000000999\r\n");
    EXPECT("SCAN 0 MATCH key000000000099[0-9] COUNT 1000 TYPE string",
           "*2\r\n$1\r\n0\r\n*10\r\n$16\r\nkey0000000000990\r\n$16\r\nkey0000000000991\r\n"
           "$16\r\nkey0000000000992\r\n$16\r\nkey0000000000993\r\n$16\r\nkey0000000000994\r\n"
           "$16\r\nkey0000000000995\r\n$16\r\nkey0000000000996\r\n$16\r\nkey0000000000997\r\n"
           "$16\r\nkey0000000000998\r\n$16\r\nkey0000000000999\r\n");
    EXPECT("SCAN 0 MATCH *9[0-1] COUNT 2000 TYPE string",
           "*2\r\n$1\r\n0\r\n*20\r\n$16\r\nkey0000000000090\r\n$16\r\nkey0000000000091\r\n"
           "$16\r\nkey0000000000190\r\n$16\r\nkey0000000000191\r\n$16\r\nkey0000000000290\r\n"
           "$16\r\nkey0000000000291\r\n$16\r\nkey0000000000390\r\n$16\r\nkey0000000000391\r\n"
           "$16\r\nkey0000000000490\r\n$16\r\nkey0000000000491\r\n$16\r\nkey0000000000590\r\n"
           "$16\r\nkey0000000000591\r\n$16\r\nkey0000000000690\r\n$16\r\nkey0000000000691\r\n"
           "$16\r\nkey0000000000790\r\n$16\r\nkey0000000000791\r\n$16\r\nkey0000000000890\r\n"
           "$16\r\nkey0000000000891\r\n$16\r\nkey0000000000990\r\n$16\r\nkey0000000000991\r\n");
    /* MATCH filters what COUNT examined: a page can be empty with a cursor to go on. */
    run(ss, "SCAN 0 MATCH *999 COUNT 5");
    cr_assert(rbuf.len > 11 && memcmp(rbuf.data, "*2\r\n$1\r\n0\r\n", 11) != 0 && has("\r\n*0\r\n"),
              "%s", esc(rbuf.data, rbuf.len));
    EXPECT("SCAN 0 COUNT 2000 TYPE hash", "*2\r\n$1\r\n0\r\n*0\r\n");
    EXPECT("SCAN 0 COUNT 0", "-ERR syntax error\r\n");
    EXPECT("SCAN 0 COUNT x", "-ERR value is not an integer or out of range\r\n");
    EXPECT("SCAN 0 MATCH", "-ERR syntax error\r\n");
    EXPECT("SCAN 0 FOO bar", "-ERR syntax error\r\n");
    EXPECT("SCAN abc", "-ERR invalid cursor\r\n");
    EXPECT("SCAN 999999", "-ERR invalid cursor\r\n");
    EXPECT("SCAN -1", "-ERR invalid cursor\r\n");
    /* A finished cursor is gone; an old one stays usable until evicted. */
    run(ss, "SCAN 0 COUNT 1");
    cr_assert(has("key0000000000000"), "%s", esc(rbuf.data, rbuf.len));
}

Test(resp_cmd_ks, scan_cursor_table_is_bounded)
{
    EXPECT("MSET a 1 b 2 c 3", "+OK\r\n");
    /* 17 scans started: the first cursor is evicted, the others continue. */
    char ids[17][24];
    for (int i = 0; i < 17; i++) {
        run(ss, "SCAN 0 COUNT 1");
        cr_assert(has("$1\r\na\r\n"), "%s", esc(rbuf.data, rbuf.len));
        const char *p = strstr(rbuf.data, "$") + 1;
        size_t n = strtoul(p, NULL, 10);
        p = strstr(p, "\r\n") + 2;
        memcpy(ids[i], p, n);
        ids[i][n] = '\0';
    }
    char line[64];
    snprintf(line, sizeof line, "SCAN %s", ids[0]);
    EXPECT(line, "-ERR invalid cursor\r\n");
    snprintf(line, sizeof line, "SCAN %s COUNT 1", ids[16]);
    run(ss, line);
    cr_assert(has("$1\r\nb\r\n"), "%s", esc(rbuf.data, rbuf.len));
    snprintf(line, sizeof line, "SCAN %s", ids[1]);
    EXPECT(line, "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\nc\r\n");
}

Test(resp_cmd_ks, randomkey_dbsize)
{
    EXPECT("RANDOMKEY", "$-1\r\n");
    EXPECT("DBSIZE", ":0\r\n");
    EXPECT("MSET alpha 1 beta 2 gamma 3", "+OK\r\n");
    EXPECT("SET t v EX 100", "+OK\r\n");
    EXPECT("DBSIZE", ":4\r\n");
    bool got[4] = {false};
    static const char *const names[4] = {"alpha", "beta", "gamma", "t"};
    for (int i = 0; i < 400; i++) {
        run(ss, "RANDOMKEY");
        bool ok = false;
        for (int j = 0; j < 4; j++) {
            char want[32];
            snprintf(want, sizeof want, "$%zu\r\n%s\r\n", strlen(names[j]), names[j]);
            if (rbuf.len == strlen(want) && memcmp(rbuf.data, want, rbuf.len) == 0) {
                got[j] = ok = true;
            }
        }
        cr_assert(ok, "RANDOMKEY: %s", esc(rbuf.data, rbuf.len));
    }
    cr_assert(got[0] && got[3], "RANDOMKEY never picked the first or the last key");
    run(ss, "INFO keyspace");
    cr_assert(has("# Keyspace\r\ndb0:keys=4,expires=1,avg_ttl=0\r\n"), "%s",
              esc(rbuf.data, rbuf.len));
}

/* ---- server commands ---- */

Test(resp_cmd, info)
{
    EXPECT("SET a 1", "+OK\r\n");
    run(ss, "INFO");
    cr_assert(memcmp(rbuf.data, "$", 1) == 0);
    const char *want[] = {"# Server\r\nredis_version:7.0.0\r\n",
                          "shale_version:",
                          "tcp_port:6380",
                          "# Clients\r\nconnected_clients:42\r\n",
                          "# Memory\r\nused_memory:",
                          "# Persistence\r\nloading:0",
                          "# Stats\r\n",
                          "keyspace_hits:",
                          "# Replication\r\nrole:master",
                          "# Keyspace\r\ndb0:keys=1,expires=0"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert(has(want[i]), "INFO lacks %s: %s", want[i], esc(rbuf.data, rbuf.len));
    }
    cr_assert(!has("connected_clients:1"), "ours and the callback's: %s", esc(rbuf.data, rbuf.len));
    run(ss, "INFO server");
    cr_assert(has("redis_version") && !has("# Clients") && !has("# Keyspace"), "%s",
              esc(rbuf.data, rbuf.len));
    run(ss, "info CLIENTS stats");
    cr_assert(!has("redis_version") && has("# Clients") && has("\r\n\r\n# Stats"), "%s",
              esc(rbuf.data, rbuf.len));
    EXPECT("INFO nosuchsection", "$0\r\n\r\n");
    run(ss, "HELLO 3");
    run(ss, "INFO server");
    cr_assert(rbuf.len > 10 && memcmp(rbuf.data, "=", 1) == 0 && has("\r\ntxt:# Server\r\n"), "%s",
              esc(rbuf.data, rbuf.len));
}

Test(resp_cmd, config)
{
    EXPECT("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    EXPECT("config get appendonly", "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    EXPECT("CONFIG GET databases", "*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n");
    EXPECT("CONFIG GET nosuch", "*0\r\n");
    EXPECT("CONFIG GET save appendonly", "*4\r\n$10\r\nappendonly\r\n$2\r\nno\r\n$4\r\nsave\r\n"
                                         "$0\r\n\r\n");
    run(ss, "CONFIG GET maxmemory");
    cr_assert(memcmp(rbuf.data, "*2\r\n$9\r\nmaxmemory\r\n$", 20) == 0, "%s",
              esc(rbuf.data, rbuf.len));
    run(ss, "CONFIG GET MAXMEMORY*");
    cr_assert(memcmp(rbuf.data, "*4\r\n", 4) == 0 && has("maxmemory-policy\r\n$10\r\nnoeviction"),
              "%s", esc(rbuf.data, rbuf.len));
    run(ss, "CONFIG GET *");
    cr_assert(memcmp(rbuf.data, "*14\r\n", 5) == 0, "%s", esc(rbuf.data, rbuf.len));
    EXPECT("CONFIG SET save \"\"", "+OK\r\n");
    EXPECT("CONFIG SET timeout 10 save 3600", "+OK\r\n");
    EXPECT("CONFIG GET timeout", "*2\r\n$7\r\ntimeout\r\n$2\r\n10\r\n");
    EXPECT("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$4\r\n3600\r\n");
    EXPECT("CONFIG SET databases 2", "-ERR CONFIG SET failed (possibly related to argument "
                                     "'databases') - can't set immutable config\r\n");
    EXPECT("CONFIG SET nosuch 1",
           "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n");
    EXPECT("CONFIG SET save", "-ERR wrong number of arguments for 'config|set' command\r\n");
    EXPECT("CONFIG GET", "-ERR wrong number of arguments for 'config|get' command\r\n");
    EXPECT("CONFIG RESETSTAT", "+OK\r\n");
    EXPECT("CONFIG REWRITE", "-ERR The server is running without a config file\r\n");
    EXPECT("CONFIG FOO", "-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n");
    EXPECT("CONFIG", "-ERR wrong number of arguments for 'config' command\r\n");
    run(ss, "HELLO 3");
    EXPECT("CONFIG GET save", "%1\r\n$4\r\nsave\r\n$4\r\n3600\r\n");
    EXPECT("CONFIG GET nosuch", "%0\r\n");
}

Test(resp_cmd, client)
{
    resp_session *other = resp_session_new(sv, "10.0.0.1:1");
    cr_assert_not_null(other);
    EXPECT("CLIENT ID", ":1\r\n");
    EXPECT_ON(other, "CLIENT ID", ":2\r\n");
    EXPECT("CLIENT GETNAME", "$-1\r\n");
    EXPECT("CLIENT SETNAME worker-1", "+OK\r\n");
    EXPECT("CLIENT GETNAME", "$8\r\nworker-1\r\n");
    shale_slice bad[3] = {TU_SL("CLIENT"), TU_SL("SETNAME"), TU_SL("a b")};
    run_argv(ss, bad, 3);
    check_reply("SETNAME a b",
                "-ERR Client names cannot contain spaces, newlines or special characters.\r\n", 74,
                __LINE__);
    EXPECT("CLIENT SETINFO LIB-NAME redis-py", "+OK\r\n");
    EXPECT("CLIENT SETINFO lib-ver 5.0.1", "+OK\r\n");
    EXPECT("CLIENT SETINFO FOO x", "-ERR Unrecognized option 'FOO'\r\n");
    EXPECT_ON(other, "MULTI", "+OK\r\n");
    EXPECT_ON(other, "PING", "+QUEUED\r\n");
    run(ss, "CLIENT LIST");
    cr_assert(has("id=1 addr=127.0.0.1:5000 ") && has("name=worker-1 ") &&
                  has("lib-name=redis-py lib-ver=5.0.1\n") && has("cmd=client ") &&
                  has("id=2 addr=10.0.0.1:1 ") && has("flags=x db=0 sub=0 psub=0 ssub=0 multi=1 "),
              "%s", esc(rbuf.data, rbuf.len));
    run(ss, "CLIENT LIST ID 2");
    cr_assert(has("id=2 ") && !has("id=1 "), "%s", esc(rbuf.data, rbuf.len));
    EXPECT("CLIENT LIST TYPE pubsub", "$0\r\n\r\n");
    EXPECT("CLIENT LIST ID x", "-ERR Invalid client ID\r\n");
    EXPECT("CLIENT LIST FOO", "-ERR syntax error\r\n");
    run(ss, "CLIENT INFO");
    cr_assert(has("id=1 ") && !has("id=2 ") && has(" resp=2 ") && has("flags=N "), "%s",
              esc(rbuf.data, rbuf.len));
    EXPECT("CLIENT SETNAME \"\"", "+OK\r\n");
    EXPECT("CLIENT GETNAME", "$-1\r\n");
    EXPECT("CLIENT NO-EVICT on", "+OK\r\n");
    EXPECT("CLIENT ID 1", "-ERR wrong number of arguments for 'client|id' command\r\n");
    EXPECT("CLIENT KILL x", "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n");
    run(ss, "CLIENT HELP");
    cr_assert(memcmp(rbuf.data, "*", 1) == 0);
    resp_session_free(other);
    run(ss, "CLIENT LIST");
    cr_assert(!has("id=2 "), "%s", esc(rbuf.data, rbuf.len));
}

#define GET_INFO                                                                                   \
    "*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*1\r\n+@string\r\n*"  \
    "0\r\n"                                                                                        \
    "*0\r\n*0\r\n"

Test(resp_cmd, command)
{
    EXPECT("COMMAND INFO get", "*1\r\n" GET_INFO);
    EXPECT("COMMAND INFO GET nosuch", "*2\r\n" GET_INFO "$-1\r\n");
    EXPECT("COMMAND INFO mset", "*1\r\n*10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n"
                                ":1\r\n:-1\r\n:2\r\n*1\r\n+@string\r\n*0\r\n*0\r\n*0\r\n");
    run(ss, "COMMAND COUNT");
    long long count = int_reply();
    cr_assert_gt(count, 50);
    run(ss, "COMMAND LIST");
    cr_assert_eq(strtoll((char *)rbuf.data + 1, NULL, 10), count);
    cr_assert(has("$4\r\nincr\r\n") && has("$5\r\nwatch\r\n"));
    run(ss, "COMMAND");
    char head[64];
    int n = snprintf(head, sizeof head, "*%lld\r\n*10\r\n$6\r\nappend\r\n:3\r\n", count);
    cr_assert(rbuf.len > (size_t)n && memcmp(rbuf.data, head, (size_t)n) == 0, "%s",
              esc(rbuf.data, 64));
    cr_assert(has(GET_INFO));
    EXPECT("COMMAND DOCS", "*0\r\n");
    EXPECT("COMMAND DOCS get", "*0\r\n");
    EXPECT("COMMAND FOO", "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n");
    EXPECT("COMMAND COUNT x", "-ERR wrong number of arguments for 'command|count' command\r\n");
    run(ss, "HELLO 3");
    EXPECT("COMMAND DOCS", "%0\r\n");
    EXPECT("COMMAND INFO get", "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n"
                               ":1\r\n:1\r\n~1\r\n+@string\r\n~0\r\n*0\r\n*0\r\n");
}

#define HELLO_REPLY(hdr, proto, id)                                                                \
    hdr "$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:" proto    \
        "\r\n$2\r\nid\r\n:" id "\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\n"       \
        "master\r\n$7\r\nmodules\r\n*0\r\n"

Test(resp_cmd, hello_and_resp3)
{
    EXPECT("HELLO", HELLO_REPLY("*14\r\n", "2", "1"));
    EXPECT("HELLO 4", "-NOPROTO unsupported protocol version\r\n");
    EXPECT("HELLO 1", "-NOPROTO unsupported protocol version\r\n");
    EXPECT("HELLO x", "-ERR Protocol version is not an integer or out of range\r\n");
    EXPECT("HELLO 3 FOO", "-ERR Syntax error in HELLO option 'FOO'\r\n");
    EXPECT("HELLO 3 SETNAME", "-ERR Syntax error in HELLO option 'SETNAME'\r\n");
    EXPECT("GET nope", "$-1\r\n");
    EXPECT("HELLO 3 SETNAME cli", HELLO_REPLY("%7\r\n", "3", "1"));
    EXPECT("CLIENT GETNAME", "$3\r\ncli\r\n");
    EXPECT("GET nope", "_\r\n");
    EXPECT("SET a 1", "+OK\r\n");
    EXPECT("MGET a nope", "*2\r\n$1\r\n1\r\n_\r\n");
    EXPECT("SET a 2 XX GET", "$1\r\n1\r\n");
    EXPECT("INCRBYFLOAT a 0.5", "$3\r\n2.5\r\n");
    run(ss, "CLIENT INFO");
    cr_assert(memcmp(rbuf.data, "=", 1) == 0 && has("txt:id=1 ") && has(" resp=3 "), "%s",
              esc(rbuf.data, rbuf.len));
    EXPECT("HELLO 2", HELLO_REPLY("*14\r\n", "2", "1"));
    EXPECT("GET nope", "$-1\r\n");
    /* No token: AUTH says so, or accepts the default user with any password. */
    EXPECT("AUTH pw", "-ERR AUTH <password> called without any password configured for the "
                      "default user. Are you sure your configuration is correct?\r\n");
    EXPECT("AUTH default pw", "+OK\r\n");
    EXPECT("AUTH bob pw", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    EXPECT("HELLO 3 AUTH default anything", HELLO_REPLY("%7\r\n", "3", "1"));
}

Test(resp_cmd, quit_reset)
{
    EXPECT("HELLO 3 SETNAME x", HELLO_REPLY("%7\r\n", "3", "1"));
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET a 1", "+QUEUED\r\n");
    EXPECT("RESET", "+RESET\r\n");
    EXPECT("GET a", "$-1\r\n");
    EXPECT("CLIENT GETNAME", "$-1\r\n");
    EXPECT("EXEC", "-ERR EXEC without MULTI\r\n");
    cr_assert_eq(run(ss, "PING"), RESP_EXEC_OK);
    cr_assert_eq(run(ss, "QUIT"), RESP_EXEC_CLOSE);
    check_reply("QUIT", "+OK\r\n", 5, __LINE__);
}

Test(resp_cmd_auth, auth_flow)
{
    static const char noauth[] = "-NOAUTH Authentication required.\r\n";
    static const char wrongpass[] =
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    EXPECT("GET k", noauth);
    EXPECT("PING", noauth);
    EXPECT("MULTI", noauth);
    EXPECT("FOO", "-ERR unknown command 'FOO', with args beginning with: \r\n");
    EXPECT("AUTH wrong", wrongpass);
    EXPECT("AUTH s3cre", wrongpass);
    EXPECT("AUTH s3cret1", wrongpass);
    EXPECT("AUTH bob s3cret", wrongpass);
    EXPECT("AUTH a b c", "-ERR syntax error\r\n");
    EXPECT("HELLO 3",
           "-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
           "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
           "select the RESP protocol version at the same time\r\n");
    EXPECT("HELLO 3 AUTH default wrong", wrongpass);
    EXPECT("GET k", noauth);
    EXPECT("HELLO 3 AUTH default s3cret", HELLO_REPLY("%7\r\n", "3", "1"));
    EXPECT("GET k", "_\r\n");
    EXPECT("RESET", "+RESET\r\n");
    EXPECT("GET k", noauth);
    EXPECT("AUTH s3cret", "+OK\r\n");
    EXPECT("GET k", "$-1\r\n");
    EXPECT("RESET", "+RESET\r\n");
    EXPECT("AUTH default s3cret", "+OK\r\n");
    EXPECT("SET k v", "+OK\r\n");
    /* Another session starts unauthenticated. */
    resp_session *other = resp_session_new(sv, "10.0.0.2:2");
    EXPECT_ON(other, "GET k", noauth);
    cr_assert_eq(run(other, "QUIT"), RESP_EXEC_CLOSE);
    check_reply("QUIT", "+OK\r\n", 5, __LINE__);
    resp_session_free(other);
}

/* ---- MULTI / EXEC / WATCH ---- */

Test(resp_cmd_multi, exec_basic)
{
    EXPECT("EXEC", "-ERR EXEC without MULTI\r\n");
    EXPECT("DISCARD", "-ERR DISCARD without MULTI\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("MULTI", "-ERR MULTI calls can not be nested\r\n");
    EXPECT("SET a 1", "+QUEUED\r\n");
    EXPECT("INCR a", "+QUEUED\r\n");
    EXPECT("GET a", "+QUEUED\r\n");
    EXPECT("MSET b 1 c 2", "+QUEUED\r\n");
    EXPECT("WATCH x", "-ERR WATCH inside MULTI is not allowed\r\n");
    store_get("a", NULL);
    EXPECT("EXEC", "*4\r\n+OK\r\n:2\r\n$1\r\n2\r\n+OK\r\n");
    store_get("a", "2");
    store_get("c", "2");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("EXEC", "*0\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET x 1", "+QUEUED\r\n");
    EXPECT("DISCARD", "+OK\r\n");
    EXPECT("EXISTS x", ":0\r\n");
    EXPECT("EXEC", "-ERR EXEC without MULTI\r\n");
}

Test(resp_cmd_multi, execabort_and_runtime_errors)
{
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET x 1", "+QUEUED\r\n");
    EXPECT("GET", "-ERR wrong number of arguments for 'get' command\r\n");
    EXPECT("SET y 1", "+QUEUED\r\n");
    EXPECT("EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n");
    EXPECT("EXISTS x y", ":0\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("NOSUCH", "-ERR unknown command 'NOSUCH', with args beginning with: \r\n");
    EXPECT("EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n");
    /* An error while running answers in its slot; the rest still runs. */
    EXPECT("SET s abc", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("INCR s", "+QUEUED\r\n");
    EXPECT("SET y 1", "+QUEUED\r\n");
    EXPECT("RENAME nope z", "+QUEUED\r\n");
    EXPECT("MSET a b c", "+QUEUED\r\n");
    EXPECT("SET w 1 EX 0", "+QUEUED\r\n");
    EXPECT("EXEC", "*5\r\n-ERR value is not an integer or out of range\r\n+OK\r\n"
                   "-ERR no such key\r\n-ERR wrong number of arguments for 'mset' command\r\n"
                   "-ERR invalid expire time in 'set' command\r\n");
    store_get("y", "1");
    store_get("s", "abc");
    /* Every command kind inside EXEC. */
    EXPECT("MULTI", "+OK\r\n");
    static const char *const q[] = {"SET k 5 EX 100",
                                    "GETEX k PERSIST",
                                    "TTL k",
                                    "APPEND k 0",
                                    "SETRANGE k 0 6",
                                    "STRLEN k",
                                    "GETRANGE k 0 0",
                                    "DECRBY k 10",
                                    "INCRBYFLOAT k 0.5",
                                    "SETNX k 1",
                                    "GETSET k 7",
                                    "MSETNX m1 1 m2 2",
                                    "MGET m1 m2 nope",
                                    "EXPIRE m1 100",
                                    "PERSIST m1",
                                    "RENAME m1 m3",
                                    "GETDEL m2",
                                    "DEL m3",
                                    "EXISTS m1 m2 m3",
                                    "KEYS m*",
                                    "SCAN 0",
                                    "TYPE k",
                                    "PING",
                                    "SELECT 0"};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        EXPECT_ON(ss, q[i], "+QUEUED\r\n");
    }
    EXPECT("EXEC", "*24\r\n+OK\r\n$1\r\n5\r\n:-1\r\n:2\r\n:2\r\n:2\r\n$1\r\n6\r\n:50\r\n"
                   "$4\r\n50.5\r\n:0\r\n$4\r\n50.5\r\n:1\r\n*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"
                   ":1\r\n:1\r\n+OK\r\n$1\r\n2\r\n:1\r\n:0\r\n*0\r\n"
                   "*2\r\n$1\r\n0\r\n*3\r\n$1\r\nk\r\n$1\r\ns\r\n$1\r\ny\r\n"
                   "+string\r\n+PONG\r\n+OK\r\n");
}

Test(resp_cmd_multi, watch)
{
    resp_session *other = resp_session_new(sv, "10.0.0.3:3");
    cr_assert_not_null(other);
    EXPECT("SET w 0", "+OK\r\n");
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT_ON(other, "SET w 1", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET z 1", "+QUEUED\r\n");
    EXPECT("EXEC", "*-1\r\n");
    EXPECT("EXISTS z", ":0\r\n");
    /* Unchanged: runs. WATCH is over after EXEC. */
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET z 1", "+QUEUED\r\n");
    EXPECT("EXEC", "*1\r\n+OK\r\n");
    EXPECT_ON(other, "SET w 2", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET z 2", "+QUEUED\r\n");
    EXPECT("EXEC", "*1\r\n+OK\r\n");
    /* UNWATCH forgets. */
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT_ON(other, "SET w 3", "+OK\r\n");
    EXPECT("UNWATCH", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("SET z 3", "+QUEUED\r\n");
    EXPECT("EXEC", "*1\r\n+OK\r\n");
    /* A missing key that appears; a key deleted; our own change; DISCARD unwatches. */
    EXPECT("WATCH nokey", "+OK\r\n");
    EXPECT_ON(other, "SET nokey 1", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("EXEC", "*-1\r\n");
    EXPECT("WATCH nokey w", "+OK\r\n");
    EXPECT_ON(other, "DEL nokey", ":1\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("EXEC", "*-1\r\n");
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT("SET w mine", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("EXEC", "*-1\r\n");
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("DISCARD", "+OK\r\n");
    EXPECT_ON(other, "SET w 4", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("EXEC", "*0\r\n");
    /* RESP3: the null. */
    run(ss, "HELLO 3");
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT_ON(other, "INCR w", ":5\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("GET w", "+QUEUED\r\n");
    EXPECT("EXEC", "_\r\n");
    EXPECT("WATCH", "-ERR wrong number of arguments for 'watch' command\r\n");
    resp_session_free(other);
}

/* A reader that must never see a half-applied EXEC of "INCR a; INCR b". */
typedef struct atom_ctx {
    shale_db *db;
    atomic_bool stop;
    tu_failure fail;
    long reads;
} atom_ctx;

static void *atom_reader(void *arg)
{
    atom_ctx *a = arg;
    shale_slice keys[2] = {TU_SL("a"), TU_SL("b")};
    shale_buf vals[2] = {{0}, {0}};
    shale_code codes[2];
    shale_error err;
    while (!atomic_load(&a->stop) && !tu_failed(&a->fail)) {
        if (shale_multi_get(a->db, NULL, 2, keys, vals, codes, &err) != SHALE_OK) {
            tu_fail(&a->fail, "multi_get: %s", err.msg);
            break;
        }
        bool same =
            codes[0] == codes[1] &&
            (codes[0] != SHALE_OK ||
             (vals[0].len == vals[1].len && memcmp(vals[0].data, vals[1].data, vals[0].len) == 0));
        if (!same) {
            tu_fail(&a->fail, "saw a=%s b=%s", esc(vals[0].data, vals[0].len),
                    esc(vals[1].data, vals[1].len));
        }
        a->reads++;
    }
    shale_buf_free(&vals[0]);
    shale_buf_free(&vals[1]);
    return NULL;
}

Test(resp_cmd_multi, exec_is_atomic)
{
    atom_ctx a = {.db = fx.db};
    tu_failure_init(&a.fail);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, atom_reader, &a), 0);
    for (int i = 1; i <= 200; i++) {
        EXPECT("MULTI", "+OK\r\n");
        EXPECT("INCR a", "+QUEUED\r\n");
        EXPECT("INCR b", "+QUEUED\r\n");
        char want[64];
        int n = snprintf(want, sizeof want, "*2\r\n:%d\r\n:%d\r\n", i, i);
        run(ss, "EXEC");
        check_reply("EXEC", want, (size_t)n, __LINE__);
    }
    atomic_store(&a.stop, true);
    pthread_join(t, NULL);
    tu_failure_check(&a.fail, "atomic EXEC");
    store_get("a", "200");
    store_get("b", "200");
}

typedef struct incr_ctx {
    resp_server *sv;
    tu_failure *fail;
    int n;
} incr_ctx;

static void *incr_worker(void *arg)
{
    incr_ctx *c = arg;
    resp_session *s = resp_session_new(c->sv, "127.0.0.1:9");
    shale_buf out = {0};
    shale_slice argv[2] = {TU_SL("INCR"), TU_SL("counter")};
    if (s == NULL) {
        tu_fail(c->fail, "no session");
        return NULL;
    }
    for (int i = 0; i < c->n && !tu_failed(c->fail); i++) {
        out.len = 0;
        if (resp_exec(s, argv, 2, &out) != RESP_EXEC_OK || out.len < 4 ||
            ((char *)out.data)[0] != ':') {
            tu_fail(c->fail, "INCR answered %s", esc(out.data, out.len));
        }
    }
    shale_buf_free(&out);
    resp_session_free(s);
    return NULL;
}

Test(resp_cmd_multi, concurrent_incr)
{
    enum { THREADS = 4, EACH = 1000 };
    tu_failure fail;
    tu_failure_init(&fail);
    pthread_t t[THREADS];
    incr_ctx c = {.sv = sv, .fail = &fail, .n = EACH};
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, incr_worker, &c), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    tu_failure_check(&fail, "concurrent INCR");
    EXPECT("GET counter", "$4\r\n4000\r\n");
    store_get("counter", "4000");
}

/* Parses an EXEC reply "*2\r\n:<a>\r\n:<b>\r\n": the number of fields sscanf matched. */
static int exec_pair(const shale_buf *b, long long *x, long long *y)
{
    char tmp[128];
    size_t n = b->len < sizeof tmp - 1 ? b->len : sizeof tmp - 1;
    memcpy(tmp, b->data, n);
    tmp[n] = '\0';
    return sscanf(tmp, "*2\r\n:%lld\r\n:%lld\r\n", x, y);
}

/* EXECs racing on the same keys: retried whole on conflict, each one seen alone. */
static void *exec_worker(void *arg)
{
    incr_ctx *c = arg;
    resp_session *s = resp_session_new(c->sv, "127.0.0.1:10");
    shale_buf out = {0};
    shale_slice multi[1] = {TU_SL("MULTI")}, exec[1] = {TU_SL("EXEC")};
    shale_slice incr[2] = {TU_SL("INCR"), TU_SL("c")};
    shale_slice incrby[3] = {TU_SL("INCRBY"), TU_SL("d"), TU_SL("2")};
    if (s == NULL) {
        tu_fail(c->fail, "no session");
        return NULL;
    }
    for (int i = 0; i < c->n && !tu_failed(c->fail); i++) {
        out.len = 0;
        if (resp_exec(s, multi, 1, &out) != RESP_EXEC_OK ||
            resp_exec(s, incr, 2, &out) != RESP_EXEC_OK ||
            resp_exec(s, incrby, 3, &out) != RESP_EXEC_OK) {
            tu_fail(c->fail, "queueing failed");
            break;
        }
        out.len = 0;
        long long a = 0, b = 0;
        if (resp_exec(s, exec, 1, &out) != RESP_EXEC_OK || exec_pair(&out, &a, &b) != 2 ||
            b != 2 * a) {
            tu_fail(c->fail, "EXEC answered %s", esc(out.data, out.len));
        }
    }
    shale_buf_free(&out);
    resp_session_free(s);
    return NULL;
}

Test(resp_cmd_multi, concurrent_exec)
{
    enum { THREADS = 4, EACH = 150 };
    tu_failure fail;
    tu_failure_init(&fail);
    pthread_t t[THREADS];
    incr_ctx c = {.sv = sv, .fail = &fail, .n = EACH};
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, exec_worker, &c), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    tu_failure_check(&fail, "concurrent EXEC");
    store_get("c", "600");
    store_get("d", "1200");
}

/* Regressions found while splitting resp_cmd.c: RANDOMKEY next to the document range, EXPIRETIME
 * rounding and far deadlines, UNWATCH and SCAN inside a retried EXEC, long CLIENT LIST lines, and
 * HELLO checking SETNAME before AUTH. */
TestSuite(resp_cmd_fix, .init = setup, .fini = teardown);
Test(resp_cmd_fix, randomkey_all_keys_below_docs)
{
    insert_doc();
    shale_slice a[3] = {TU_SL("SET"), TU_SL("\x00\x01"), TU_SL("v")};
    run_argv(ss, a, 3);
    shale_slice b[3] = {TU_SL("SET"), TU_SL("\x00\x02"), TU_SL("v")};
    run_argv(ss, b, 3);
    for (int i = 0; i < 50; i++) {
        run(ss, "RANDOMKEY");
        bool ok = (rbuf.len == 8 && memcmp(rbuf.data, "$2\r\n\x00\x01\r\n", 8) == 0) ||
                  (rbuf.len == 8 && memcmp(rbuf.data, "$2\r\n\x00\x02\r\n", 8) == 0);
        cr_assert(ok, "RANDOMKEY: %s", esc(rbuf.data, rbuf.len));
    }
    doc_present();
}

Test(resp_cmd_fix, expiretime_rounds)
{
    EXPECT("SET k v", "+OK\r\n");
    EXPECT("PEXPIREAT k 32503680000500", ":1\r\n");
    EXPECT("EXPIRETIME k", ":32503680001\r\n");
    EXPECT("PEXPIREAT k 32503680000499", ":1\r\n");
    EXPECT("EXPIRETIME k", ":32503680000\r\n");
    shale_error err;
    cr_assert_eq(shale_put_ttl(fx.db, NULL, tu_str("far"), tu_str("v"), UINT64_MAX, &err),
                 SHALE_OK);
    EXPECT("PEXPIRETIME far", ":9223372036854775807\r\n");
    EXPECT("EXPIRETIME far", ":9223372036854776\r\n");
    run(ss, "TTL far");
    cr_assert(int_reply() > 9000000000000000LL, "%s", esc(rbuf.data, rbuf.len));
    EXPECT("EXPIRE far 100 GT", ":0\r\n");
    EXPECT("EXPIRE far 100 LT", ":1\r\n");
}

Test(resp_cmd_fix, unwatch_in_exec)
{
    EXPECT("WATCH w", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("UNWATCH", "+QUEUED\r\n");
    EXPECT("SET w 1", "+QUEUED\r\n");
    EXPECT("EXEC", "*2\r\n+OK\r\n+OK\r\n");
    /* EXEC unwatched: a later change does not abort the next one. */
    EXPECT("SET w 2", "+OK\r\n");
    EXPECT("MULTI", "+OK\r\n");
    EXPECT("GET w", "+QUEUED\r\n");
    EXPECT("EXEC", "*1\r\n$1\r\n2\r\n");
}

typedef struct hammer {
    resp_server *sv;
    atomic_bool stop;
} hammer;

static void *hammer_fn(void *arg)
{
    hammer *h = arg;
    resp_session *s = resp_session_new(h->sv, "x");
    shale_buf out = {0};
    shale_slice argv[2] = {TU_SL("INCR"), TU_SL("c")};
    while (!atomic_load(&h->stop)) {
        out.len = 0;
        (void)resp_exec(s, argv, 2, &out);
    }
    shale_buf_free(&out);
    resp_session_free(s);
    return NULL;
}

Test(resp_cmd_fix, scan_in_exec_survives_retry)
{
    EXPECT("MSET a 1 b 2 c3 3 d 4", "+OK\r\n");
    hammer h = {.sv = sv};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hammer_fn, &h), 0);
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        run(ss, "SCAN 0 COUNT 1");
        const char *p = strstr(rbuf.data, "$") + 1;
        size_t n = strtoul(p, NULL, 10);
        p = strstr(p, "\r\n") + 2;
        char line[64];
        snprintf(line, sizeof line, "SCAN %.*s COUNT 1", (int)n, p);
        EXPECT("MULTI", "+OK\r\n");
        run(ss, line);
        EXPECT("INCR c", "+QUEUED\r\n");
        run(ss, "EXEC");
        if (has("invalid cursor")) {
            bad++;
        }
    }
    atomic_store(&h.stop, true);
    pthread_join(t, NULL);
    cr_assert_eq(bad, 0, "%d EXECs answered invalid cursor", bad);
    /* Outside EXEC, a continued cursor still gives its slot away. */
}

Test(resp_cmd_fix, client_list_long_name)
{
    char name[3000];
    memset(name, 'n', sizeof name);
    shale_slice argv[3] = {TU_SL("CLIENT"), TU_SL("SETNAME"), {name, sizeof name}};
    run_argv(ss, argv, 3);
    cr_assert(has("+OK"));
    EXPECT("CLIENT SETINFO LIB-NAME mylib", "+OK\r\n");
    run(ss, "CLIENT INFO");
    cr_assert(has("lib-name=mylib lib-ver=\n\r\n"), "%s", esc(rbuf.data, rbuf.len));
    run(ss, "CLIENT LIST");
    cr_assert(has("lib-name=mylib lib-ver=\n\r\n"), "%s", esc(rbuf.data, rbuf.len));
}

Test(resp_cmd_fix_auth, hello_bad_name_does_not_auth, .init = setup_auth, .fini = teardown)
{
    shale_slice argv[7] = {TU_SL("HELLO"),  TU_SL("3"),       TU_SL("AUTH"), TU_SL("default"),
                           TU_SL("s3cret"), TU_SL("SETNAME"), TU_SL("a b")};
    run_argv(ss, argv, 7);
    cr_assert(has("-ERR Client names cannot contain spaces"), "%s", esc(rbuf.data, rbuf.len));
    EXPECT("GET x", "-NOAUTH Authentication required.\r\n");
}

/* ---- deferred runs (resp_exec_deferred, resp_flush) ---- */

TestSuite(resp_cmd_defer, .init = setup, .fini = teardown);

/* One random command over keys "<tag>0".."<tag>7" into words[] (returns argc). */
static size_t random_cmd(tu_rng *r, char tag, char words[4][64])
{
    static const char *const names[] = {"SET",    "SET",   "GET",    "GET",    "GET",
                                        "DEL",    "INCR",  "APPEND", "EXISTS", "SETN",
                                        "STRLEN", "MULTI", "EXEC",   "SETX"};
    int k = (int)tu_rng_below(r, 8);
    int v = (int)tu_rng_below(r, 1000);
    const char *name = names[tu_rng_below(r, sizeof names / sizeof names[0])];
    size_t n = 2;
    snprintf(words[1], 64, "%c%d", tag, k);
    if (strcmp(name, "MULTI") == 0 || strcmp(name, "EXEC") == 0) {
        n = 1;
    } else if (strcmp(name, "SET") == 0 || strcmp(name, "APPEND") == 0) {
        snprintf(words[2], 64, "v%d", v);
        n = 3;
    } else if (strcmp(name, "SETN") == 0) { /* a number, for INCR */
        snprintf(words[2], 64, "%d", v);
        name = "SET";
        n = 3;
    } else if (strcmp(name, "SETX") == 0) { /* a SET that cannot join a run: an option */
        snprintf(words[2], 64, "w%d", v);
        snprintf(words[3], 64, "XX");
        name = "SET";
        n = 4;
    }
    snprintf(words[0], 64, "%s", name);
    return n;
}

/* The same random command stream, on disjoint keys, through resp_exec on one session and through
 * resp_exec_deferred (flushed at random points) on another: byte-identical replies. */
Test(resp_cmd_defer, same_replies_as_resp_exec)
{
    resp_session *ds = resp_session_new(sv, "127.0.0.1:5001");
    cr_assert_not_null(ds);
    shale_buf a = {0}, b = {0};
    tu_rng r1, r2, rf;
    tu_rng_seed(&r1, 42);
    tu_rng_seed(&r2, 42);
    tu_rng_seed(&rf, 7);
    enum { N = 5000 };
    char(*w2s)[4][64] = calloc(N, sizeof *w2s); /* a run's argv must live until its flush */
    cr_assert_not_null(w2s);
    for (int i = 0; i < N; i++) {
        char w1[4][64];
        char(*w2)[64] = w2s[i];
        size_t n1 = random_cmd(&r1, 'a', w1), n2 = random_cmd(&r2, 'b', w2);
        cr_assert_eq(n1, n2);
        shale_slice s1[4], s2[4];
        for (size_t j = 0; j < n1; j++) {
            s1[j] = tu_str(w1[j]);
            s2[j] = tu_str(w2[j]);
        }
        cr_assert_eq(resp_exec(ss, s1, n1, &a), RESP_EXEC_OK);
        cr_assert_eq(resp_exec_deferred(ds, s2, n2, &b), RESP_EXEC_OK);
        if (tu_rng_below(&rf, 8) == 0) {
            cr_assert_eq(resp_flush(ds, &b), RESP_EXEC_OK);
        }
    }
    cr_assert_eq(resp_flush(ds, &b), RESP_EXEC_OK);
    free(w2s);
    cr_assert_eq(a.len, b.len, "reply streams differ in length: %zu vs %zu", a.len, b.len);
    cr_assert(memcmp(a.data, b.data, a.len) == 0, "reply streams differ");
    /* The keys hold the same values. */
    for (int k = 0; k < 8; k++) {
        char ka[8], kb[8];
        snprintf(ka, sizeof ka, "a%d", k);
        snprintf(kb, sizeof kb, "b%d", k);
        shale_buf va = {0}, vb = {0};
        shale_error e;
        shale_code ca = shale_get(fx.db, NULL, tu_str(ka), &va, &e);
        shale_code cb = shale_get(fx.db, NULL, tu_str(kb), &vb, &e);
        cr_assert_eq(ca, cb);
        cr_assert(va.len == vb.len && (va.len == 0 || memcmp(va.data, vb.data, va.len) == 0));
        shale_buf_free(&va);
        shale_buf_free(&vb);
    }
    shale_buf_free(&a);
    shale_buf_free(&b);
    resp_session_free(ds);
}

/* A run of SETs and GETs held across several commands, then flushed: replies in order; a run the
 * store refuses as a whole (one value over max_value_bytes) is redone one by one, so only that
 * SET fails; reserved keys never join a run and get their error. */
Test(resp_cmd_defer, runs_keep_order_and_per_command_answers)
{
    shale_buf out = {0};
    size_t big_len = (4u << 20) + 1;
    char *big = malloc(big_len);
    cr_assert_not_null(big);
    memset(big, 'x', big_len);
    shale_slice cmds[][3] = {
        {TU_SL("SET"), TU_SL("k1"), TU_SL("one")},
        {TU_SL("SET"), TU_SL("k2"), {big, big_len}},
        {TU_SL("set"), TU_SL("k3"), TU_SL("three")},
        {TU_SL("GET"), TU_SL("k1"), {0}},
        {TU_SL("GET"), TU_SL("k2"), {0}},
        {TU_SL("get"), TU_SL("k3"), {0}},
        {TU_SL("SET"), TU_SL("\x00\xd0x"), TU_SL("v")},
        {TU_SL("GET"), TU_SL("k3"), {0}},
    };
    size_t argc[] = {3, 3, 3, 2, 2, 2, 3, 2};
    for (size_t i = 0; i < 8; i++) {
        cr_assert_eq(resp_exec_deferred(ss, cmds[i], argc[i], &out), RESP_EXEC_OK);
    }
    cr_assert_eq(resp_flush(ss, &out), RESP_EXEC_OK);
    const char *want_head = "+OK\r\n-ERR ";
    cr_assert(out.len > strlen(want_head) && memcmp(out.data, want_head, strlen(want_head)) == 0,
              "%.*s", (int)(out.len < 200 ? out.len : 200), (const char *)out.data);
    const char *rest =
        memmem(out.data, out.len,
               "\r\n+OK\r\n$3\r\none\r\n$-1\r\n$5\r\nthree\r\n-ERR key "
               "is in the reserved document space\r\n$5\r\nthree\r\n",
               strlen("\r\n+OK\r\n$3\r\none\r\n$-1\r\n$5\r\nthree\r\n-ERR key is in the "
                      "reserved document space\r\n$5\r\nthree\r\n"));
    cr_assert_not_null(rest, "%.*s", (int)(out.len < 400 ? out.len : 400), (const char *)out.data);
    free(big);
    shale_buf_free(&out);
}

/* resp_session_take_wrote: set by write commands, EXEC and deferred SETs; not by reads, errors
 * before running, or commands queued in MULTI; cleared by the call. */
Test(resp_cmd_defer, take_wrote_marks_writes_only)
{
    cr_assert(!resp_session_take_wrote(ss));
    run(ss, "GET a");
    run(ss, "EXISTS a");
    cr_assert(!resp_session_take_wrote(ss), "reads do not write");
    run(ss, "SET a 1");
    cr_assert(resp_session_take_wrote(ss));
    cr_assert(!resp_session_take_wrote(ss), "the mark is cleared");
    run(ss, "INCR");
    cr_assert(!resp_session_take_wrote(ss), "an arity error runs nothing");
    run(ss, "MULTI");
    run(ss, "SET b 2");
    cr_assert(!resp_session_take_wrote(ss), "queued, not run");
    run(ss, "EXEC");
    cr_assert(resp_session_take_wrote(ss));
    shale_slice set[3] = {TU_SL("SET"), TU_SL("c"), TU_SL("3")};
    cr_assert_eq(resp_exec_deferred(ss, set, 3, &rbuf), RESP_EXEC_OK);
    cr_assert(resp_session_take_wrote(ss), "a deferred SET");
    cr_assert_eq(resp_flush(ss, &rbuf), RESP_EXEC_OK);
    run(ss, "DEL c");
    cr_assert(resp_session_take_wrote(ss));
}

/* ---- groups (resp_group_*: one thread's sessions share a commit and a multi_get) ---- */

/* A new session of sv, joined to g. */
static resp_session *joined(resp_group *g, const char *peer)
{
    resp_session *s = resp_session_new(sv, peer);
    cr_assert_not_null(s);
    resp_session_join(s, g);
    return s;
}

/* Two sessions joined to one group run the same random streams as two sessions through resp_exec
 * (their own keys each): after the group's flushes, byte-identical replies and the same values.
 * The group is flushed at random points, and the streams' buffers are reused at once (the group
 * copies what it keeps). */
Test(resp_cmd_defer, group_replies_match_resp_exec)
{
    resp_group *g = resp_group_new(sv);
    cr_assert_not_null(g);
    resp_session *ref[2] = {ss, resp_session_new(sv, "127.0.0.1:5002")};
    resp_session *grp[2] = {joined(g, "127.0.0.1:5003"), joined(g, "127.0.0.1:5004")};
    cr_assert_not_null(ref[1]);
    shale_buf want[2] = {{0}}, got[2] = {{0}};
    tu_rng rr[2], rg[2], rf;
    tu_rng_seed(&rr[0], 11), tu_rng_seed(&rr[1], 12);
    tu_rng_seed(&rg[0], 11), tu_rng_seed(&rg[1], 12);
    tu_rng_seed(&rf, 5);
    const char tags[2][2] = {{'a', 'c'}, {'b', 'd'}}; /* [session][ref, group] */
    for (int i = 0; i < 6000; i++) {
        int who = (int)tu_rng_below(&rf, 2);
        char w1[4][64], w2[4][64];
        size_t n1 = random_cmd(&rr[who], tags[who][0], w1);
        size_t n2 = random_cmd(&rg[who], tags[who][1], w2);
        cr_assert_eq(n1, n2);
        shale_slice s1[4], s2[4];
        for (size_t j = 0; j < n1; j++) {
            s1[j] = tu_str(w1[j]);
            s2[j] = tu_str(w2[j]);
        }
        cr_assert_eq(resp_exec(ref[who], s1, n1, &want[who]), RESP_EXEC_OK);
        cr_assert_eq(resp_exec_deferred(grp[who], s2, n2, &got[who]), RESP_EXEC_OK);
        memset(w2, 'Z', sizeof w2); /* the input is the caller's again */
        cr_assert_eq(resp_flush(grp[who], &got[who]), RESP_EXEC_OK, "joined: nothing to run");
        if (tu_rng_below(&rf, 16) == 0) {
            resp_group_flush(g);
            cr_assert(!resp_session_waiting(grp[0]) && !resp_session_waiting(grp[1]));
        }
    }
    resp_group_flush(g);
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(want[s].len, got[s].len, "session %d: %zu vs %zu bytes", s, want[s].len,
                     got[s].len);
        cr_assert(memcmp(want[s].data, got[s].data, want[s].len) == 0, "session %d differs", s);
        cr_assert_not(resp_session_broken(grp[s]));
    }
    for (int k = 0; k < 8; k++) {
        for (int s = 0; s < 2; s++) {
            char ka[8], kb[8];
            snprintf(ka, sizeof ka, "%c%d", tags[s][0], k);
            snprintf(kb, sizeof kb, "%c%d", tags[s][1], k);
            shale_buf va = {0}, vb = {0};
            shale_error e;
            shale_code ca = shale_get(fx.db, NULL, tu_str(ka), &va, &e);
            shale_code cb = shale_get(fx.db, NULL, tu_str(kb), &vb, &e);
            cr_assert_eq(ca, cb, "%s vs %s", ka, kb);
            cr_assert(va.len == vb.len && (va.len == 0 || memcmp(va.data, vb.data, va.len) == 0));
            shale_buf_free(&va);
            shale_buf_free(&vb);
        }
    }
    for (int s = 0; s < 2; s++) {
        shale_buf_free(&want[s]);
        shale_buf_free(&got[s]);
        resp_session_free(grp[s]);
    }
    resp_session_free(ref[1]);
    resp_group_free(g);
}

/* A GET waits in the group until it runs; it sees the SETs of another session deferred before
 * it, and its own session's earlier SETs (which run first). */
Test(resp_cmd_defer, group_gets_wait_and_see_earlier_sets)
{
    resp_group *g = resp_group_new(sv);
    cr_assert_not_null(g);
    resp_session *a = joined(g, "127.0.0.1:5005"), *b = joined(g, "127.0.0.1:5006");
    shale_buf oa = {0}, ob = {0};
    shale_slice set_x[3] = {TU_SL("SET"), TU_SL("x"), TU_SL("1")};
    shale_slice get_x[2] = {TU_SL("GET"), TU_SL("x")};
    cr_assert_eq(resp_exec_deferred(a, set_x, 3, &oa), RESP_EXEC_OK);
    cr_assert_eq(resp_exec_deferred(b, get_x, 2, &ob), RESP_EXEC_OK);
    cr_assert_eq(ob.len, 0, "a GET's answer waits for the group");
    cr_assert(resp_session_waiting(b) && resp_session_waiting(a));
    resp_group_flush(g);
    cr_assert_eq(ob.len, 7);
    cr_assert(memcmp(ob.data, "$1\r\n1\r\n", 7) == 0, "%s", esc(ob.data, ob.len));
    /* Its own SET, then its GET: the SET runs first. */
    shale_slice set_y[3] = {TU_SL("SET"), TU_SL("y"), TU_SL("2")};
    shale_slice get_y[2] = {TU_SL("GET"), TU_SL("y")};
    cr_assert_eq(resp_exec_deferred(a, set_y, 3, &oa), RESP_EXEC_OK);
    cr_assert_eq(resp_exec_deferred(a, get_y, 2, &oa), RESP_EXEC_OK);
    resp_group_flush(g);
    const char want[] = "+OK\r\n+OK\r\n$1\r\n2\r\n";
    cr_assert_eq(oa.len, sizeof want - 1, "%s", esc(oa.data, oa.len));
    cr_assert(memcmp(oa.data, want, sizeof want - 1) == 0, "%s", esc(oa.data, oa.len));
    shale_buf_free(&oa);
    shale_buf_free(&ob);
    resp_session_free(a);
    resp_session_free(b);
    resp_group_free(g);
}

/* The store refuses the group's batch (one key over max_key_bytes): every SET is redone alone,
 * so only that one fails, and each session's replies are rewritten in order, after what was in
 * its out before. A session freed with SETs in the group leaves them: they are still committed. */
Test(resp_cmd_defer, group_refused_batch_is_redone_per_set)
{
    resp_group *g = resp_group_new(sv);
    cr_assert_not_null(g);
    resp_session *a = joined(g, "127.0.0.1:5007"), *b = joined(g, "127.0.0.1:5008");
    resp_session *gone = joined(g, "127.0.0.1:5009");
    char big[5000];
    memset(big, 'q', sizeof big);
    shale_buf oa = {0}, ob = {0}, og = {0};
    cr_assert_eq(buf_append(&oa, ":7\r\n", 4, NULL), SHALE_OK); /* an earlier reply stays */
    shale_slice c1[3] = {TU_SL("SET"), TU_SL("k1"), TU_SL("one")};
    shale_slice c2[3] = {TU_SL("SET"), {big, sizeof big}, TU_SL("two")};
    shale_slice c3[3] = {TU_SL("SET"), TU_SL("k3"), TU_SL("three")};
    shale_slice c4[3] = {TU_SL("SET"), TU_SL("k4"), TU_SL("four")};
    cr_assert_eq(resp_exec_deferred(a, c1, 3, &oa), RESP_EXEC_OK);
    cr_assert_eq(resp_exec_deferred(b, c2, 3, &ob), RESP_EXEC_OK);
    cr_assert_eq(resp_exec_deferred(gone, c4, 3, &og), RESP_EXEC_OK);
    cr_assert_eq(resp_exec_deferred(a, c3, 3, &oa), RESP_EXEC_OK);
    resp_session_free(gone);
    shale_buf_free(&og);
    resp_group_flush(g);
    const char want_a[] = ":7\r\n+OK\r\n+OK\r\n";
    cr_assert_eq(oa.len, sizeof want_a - 1, "%s", esc(oa.data, oa.len));
    cr_assert(memcmp(oa.data, want_a, sizeof want_a - 1) == 0, "%s", esc(oa.data, oa.len));
    cr_assert(ob.len > 5 && memcmp(ob.data, "-ERR ", 5) == 0, "%s", esc(ob.data, ob.len));
    cr_assert_not_null(memmem(ob.data, ob.len, "\r\n", 2));
    cr_assert_eq((char *)memmem(ob.data, ob.len, "\r\n", 2) - (char *)ob.data + 2, (long)ob.len,
                 "one reply only: %s", esc(ob.data, ob.len));
    const char *const keys[] = {"k1", "k3", "k4"};
    const char *const vals[] = {"one", "three", "four"};
    for (int i = 0; i < 3; i++) {
        shale_buf v = {0};
        shale_error e;
        cr_assert_eq(shale_get(fx.db, NULL, tu_str(keys[i]), &v, &e), SHALE_OK, "%s", keys[i]);
        cr_assert(v.len == strlen(vals[i]) && memcmp(v.data, vals[i], v.len) == 0);
        shale_buf_free(&v);
    }
    shale_buf_free(&oa);
    shale_buf_free(&ob);
    resp_session_free(a);
    resp_session_free(b);
    resp_group_free(g);
}
