/*
 * The Redis protocol of `shale serve` through hiredis (RESP2) and a raw socket (RESP3): a
 * representative check of each command (exact semantics are unit-tested beside resp_cmd.c),
 * pipelining, errors, TTL expiry, MULTI/EXEC atomicity and WATCH across connections, HELLO 3,
 * AUTH, and the key space shared with the library but not with documents.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_util.h"
#include "testutil.h"

TestSuite(resp, .init = nu_setup, .fini = nu_teardown);

static nu_server srv;

static void start(const char *const *extra)
{
    char *dir = nu_path("db");
    nu_start(&srv, dir, extra);
    free(dir);
}

/* The strings of an array reply, sorted and joined by ',' (static buffer). */
static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *joined(redisReply *r, const char *ctx)
{
    static char out[4096];
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s: not an array (type %d, %s)", ctx, r->type,
                 r->str ? r->str : "");
    char **v = calloc(r->elements + 1, sizeof *v);
    for (size_t i = 0; i < r->elements; i++) {
        cr_assert_eq(r->element[i]->type, REDIS_REPLY_STRING, "%s: element %zu", ctx, i);
        v[i] = r->element[i]->str;
    }
    qsort(v, r->elements, sizeof *v, cmpstr);
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->elements; i++) {
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%s", i ? "," : "", v[i]);
    }
    free(v);
    return out;
}

Test(resp, string_commands)
{
    start(NULL);
    redisContext *c = nu_redis(&srv);
    nu_ok(NU_CMD(c, "PING"), "PONG", "PING");
    nu_str(NU_CMD(c, "PING", "hi"), "hi", "PING hi");
    nu_str(NU_CMD(c, "ECHO", "e c\r\nho"), "e c\r\nho", "ECHO");
    nu_ok(NU_CMD(c, "SELECT", "0"), "OK", "SELECT 0");

    nu_ok(NU_CMD(c, "SET", "k", "v1"), "OK", "SET");
    nu_str(NU_CMD(c, "GET", "k"), "v1", "GET");
    nu_nil(NU_CMD(c, "GET", "missing"), "GET missing");
    nu_nil(NU_CMD(c, "SET", "k", "v2", "NX"), "SET NX existing");
    nu_ok(NU_CMD(c, "SET", "k", "v2", "XX"), "OK", "SET XX");
    nu_nil(NU_CMD(c, "SET", "nk", "x", "XX"), "SET XX missing");
    nu_str(NU_CMD(c, "SET", "k", "v3", "GET"), "v2", "SET GET");
    nu_int(NU_CMD(c, "SETNX", "k", "zz"), 0, "SETNX existing");
    nu_int(NU_CMD(c, "SETNX", "k2", "zz"), 1, "SETNX new");
    nu_str(NU_CMD(c, "GETDEL", "k2"), "zz", "GETDEL");
    nu_nil(NU_CMD(c, "GET", "k2"), "GET after GETDEL");

    /* Binary-safe values and keys. */
    redisReply *r = redisCommand(c, "SET %b %b", "b\0in", (size_t)4, "v\0\r\n", (size_t)4);
    nu_ok(r, "OK", "SET binary");
    r = redisCommand(c, "GET %b", "b\0in", (size_t)4);
    cr_assert(r->type == REDIS_REPLY_STRING && r->len == 4 && memcmp(r->str, "v\0\r\n", 4) == 0);
    freeReplyObject(r);

    nu_ok(NU_CMD(c, "MSET", "a", "1", "b", "2", "c", "3"), "OK", "MSET");
    r = NU_CMD(c, "MGET", "a", "nope", "c");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 3);
    cr_assert_str_eq(r->element[0]->str, "1");
    cr_assert_eq(r->element[1]->type, REDIS_REPLY_NIL);
    cr_assert_str_eq(r->element[2]->str, "3");
    freeReplyObject(r);
    nu_int(NU_CMD(c, "MSETNX", "a", "9", "fresh", "9"), 0, "MSETNX with an existing key");
    nu_nil(NU_CMD(c, "GET", "fresh"), "MSETNX is all or nothing");
    nu_int(NU_CMD(c, "MSETNX", "fresh", "9", "fresh2", "8"), 1, "MSETNX");
    nu_int(NU_CMD(c, "EXISTS", "a", "b", "nope", "a"), 3, "EXISTS counts");
    nu_int(NU_CMD(c, "DEL", "a", "nope", "b"), 2, "DEL");
    nu_int(NU_CMD(c, "EXISTS", "a"), 0, "EXISTS after DEL");
    nu_int(NU_CMD(c, "UNLINK", "c"), 1, "UNLINK");

    nu_int(NU_CMD(c, "INCR", "n"), 1, "INCR new");
    nu_int(NU_CMD(c, "INCRBY", "n", "41"), 42, "INCRBY");
    nu_int(NU_CMD(c, "DECR", "n"), 41, "DECR");
    nu_int(NU_CMD(c, "DECRBY", "n", "50"), -9, "DECRBY");
    nu_str(NU_CMD(c, "INCRBYFLOAT", "f", "1.5"), "1.5", "INCRBYFLOAT");
    nu_err(NU_CMD(c, "INCR", "k"), "ERR", "INCR on a non-integer");
    nu_err(NU_CMD(c, "INCRBY", "n", "x"), "ERR", "INCRBY bad increment");
    nu_ok(NU_CMD(c, "SET", "max", "9223372036854775807"), "OK", "SET max");
    nu_err(NU_CMD(c, "INCR", "max"), "ERR", "INCR overflow");

    nu_int(NU_CMD(c, "APPEND", "s", "Hello"), 5, "APPEND new");
    nu_int(NU_CMD(c, "APPEND", "s", " World"), 11, "APPEND");
    nu_int(NU_CMD(c, "STRLEN", "s"), 11, "STRLEN");
    nu_int(NU_CMD(c, "STRLEN", "nope"), 0, "STRLEN missing");
    nu_str(NU_CMD(c, "GETRANGE", "s", "0", "4"), "Hello", "GETRANGE");
    nu_str(NU_CMD(c, "GETRANGE", "s", "-5", "-1"), "World", "GETRANGE negative");
    nu_int(NU_CMD(c, "SETRANGE", "s", "6", "Redis"), 11, "SETRANGE");
    nu_str(NU_CMD(c, "GET", "s"), "Hello Redis", "after SETRANGE");
    nu_str(NU_CMD(c, "GETSET", "s", "new"), "Hello Redis", "GETSET");
    nu_nil(NU_CMD(c, "GETSET", "gs-missing", "x"), "GETSET missing");
    nu_str(NU_CMD(c, "GET", "s"), "new", "after GETSET");

    nu_ok(NU_CMD(c, "SET", "t", "x"), "OK", "SET t");
    nu_ok(NU_CMD(c, "TYPE", "t"), "string", "TYPE");
    nu_ok(NU_CMD(c, "RENAME", "t", "t2"), "OK", "RENAME");
    nu_nil(NU_CMD(c, "GET", "t"), "RENAME source gone");
    nu_str(NU_CMD(c, "GET", "t2"), "x", "RENAME target");
    nu_err(NU_CMD(c, "RENAME", "nope", "z"), "ERR", "RENAME missing");
    nu_ok(NU_CMD(c, "SET", "t3", "y"), "OK", "SET t3");
    nu_int(NU_CMD(c, "RENAMENX", "t2", "t3"), 0, "RENAMENX onto existing");
    nu_int(NU_CMD(c, "RENAMENX", "t2", "t4"), 1, "RENAMENX");
    redisFree(c);
    nu_stop_ok(&srv);
}

Test(resp, keyspace_and_server_commands)
{
    start(NULL);
    redisContext *c = nu_redis(&srv);
    redisReply *r = NU_CMD(c, "TYPE", "nope");
    cr_assert(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "none") == 0, "TYPE none");
    freeReplyObject(r);
    nu_ok(NU_CMD(c, "MSET", "user:1", "a", "user:2", "b", "item:1", "c"), "OK", "MSET");
    cr_assert_str_eq(joined(r = NU_CMD(c, "KEYS", "*"), "KEYS *"), "item:1,user:1,user:2");
    freeReplyObject(r);
    cr_assert_str_eq(joined(r = NU_CMD(c, "KEYS", "user:*"), "KEYS user:*"), "user:1,user:2");
    freeReplyObject(r);
    nu_int(NU_CMD(c, "DBSIZE"), 3, "DBSIZE");
    r = NU_CMD(c, "RANDOMKEY");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert(strstr("item:1 user:1 user:2", r->str) != NULL, "RANDOMKEY %s", r->str);
    freeReplyObject(r);

    /* SCAN: every key exactly once over the whole cursor walk, with COUNT and MATCH. */
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "scan:%02d", i);
        nu_ok(NU_CMD(c, "SET", key, "v"), "OK", "SET scan");
    }
    int seen[50] = {0};
    char cursor[64] = "0";
    int rounds = 0;
    do {
        r = NU_CMD(c, "SCAN", cursor, "MATCH", "scan:*", "COUNT", "7");
        cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "SCAN reply shape");
        cr_assert_eq(r->element[0]->type, REDIS_REPLY_STRING, "SCAN cursor is a bulk");
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        cr_assert_eq(keys->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < keys->elements; i++) {
            int k;
            cr_assert_eq(sscanf(keys->element[i]->str, "scan:%d", &k), 1, "SCAN MATCH gave %s",
                         keys->element[i]->str);
            seen[k]++;
        }
        freeReplyObject(r);
        cr_assert_lt(++rounds, 200, "SCAN does not end");
    } while (strcmp(cursor, "0") != 0);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(seen[i], 1, "SCAN returned scan:%02d %d times", i, seen[i]);
    }

    r = NU_CMD(c, "INFO");
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "INFO is a bulk");
    cr_assert_not_null(strstr(r->str, "# Server"), "INFO: %.300s", r->str);
    cr_assert_not_null(strstr(r->str, "redis_version:"), "INFO: %.300s", r->str);
    freeReplyObject(r);
    r = NU_CMD(c, "INFO", "keyspace");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    r = NU_CMD(c, "TIME");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "TIME");
    cr_assert_gt(atoll(r->element[0]->str), 1600000000LL);
    freeReplyObject(r);
    r = NU_CMD(c, "COMMAND", "COUNT");
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "COMMAND COUNT");
    cr_assert_gt(r->integer, 20);
    freeReplyObject(r);

    nu_int(NU_CMD(c, "TOUCH", "user:1", "nope", "item:1"), 2, "TOUCH");
    r = NU_CMD(c, "CONFIG", "GET", "databases");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "CONFIG GET databases");
    cr_assert_str_eq(r->element[0]->str, "databases");
    cr_assert_str_eq(r->element[1]->str, "1");
    freeReplyObject(r);
    r = NU_CMD(c, "CONFIG", "GET", "nosuchparam");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 0, "CONFIG GET unknown");
    freeReplyObject(r);
    nu_err(NU_CMD(c, "SELECT", "1"), "ERR", "SELECT 1");

    nu_ok(NU_CMD(c, "CLIENT", "SETNAME", "tester"), "OK", "CLIENT SETNAME");
    nu_str(NU_CMD(c, "CLIENT", "GETNAME"), "tester", "CLIENT GETNAME");
    r = NU_CMD(c, "CLIENT", "ID");
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "CLIENT ID");
    freeReplyObject(r);
    r = NU_CMD(c, "CLIENT", "LIST");
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "CLIENT LIST");
    cr_assert_not_null(strstr(r->str, "name=tester"), "CLIENT LIST: %s", r->str);
    freeReplyObject(r);

    /* RESET: back to a fresh session (name cleared, MULTI dropped). */
    nu_ok(NU_CMD(c, "MULTI"), "OK", "MULTI before RESET");
    nu_ok(NU_CMD(c, "RESET"), "RESET", "RESET");
    nu_nil(NU_CMD(c, "CLIENT", "GETNAME"), "name after RESET");
    nu_str(NU_CMD(c, "GET", "user:1"), "a", "not queued after RESET");

    nu_ok(NU_CMD(c, "FLUSHDB"), "OK", "FLUSHDB");
    nu_int(NU_CMD(c, "DBSIZE"), 0, "DBSIZE after FLUSHDB");
    nu_nil(NU_CMD(c, "RANDOMKEY"), "RANDOMKEY empty");
    nu_ok(NU_CMD(c, "SET", "x", "1"), "OK", "SET x");
    nu_ok(NU_CMD(c, "FLUSHALL"), "OK", "FLUSHALL");
    nu_int(NU_CMD(c, "DBSIZE"), 0, "DBSIZE after FLUSHALL");

    /* The document space is out of reach. */
    r = redisCommand(c, "SET %b v",
                     "\x00\xd0"
                     "abc",
                     (size_t)5);
    nu_err(r, "ERR key is in the reserved document space", "SET reserved");
    r = redisCommand(c, "GET %b", "\x00\xd0", (size_t)2);
    nu_err(r, "ERR key is in the reserved document space", "GET reserved");

    nu_ok(NU_CMD(c, "QUIT"), "OK", "QUIT");
    r = redisCommand(c, "PING");
    cr_assert_null(r, "the connection stays open after QUIT");
    redisFree(c);
    nu_stop_ok(&srv);
}

Test(resp, expiry_commands_and_ttl)
{
    start(NULL);
    redisContext *c = nu_redis(&srv);
    nu_ok(NU_CMD(c, "SET", "p", "v"), "OK", "SET");
    nu_int(NU_CMD(c, "TTL", "p"), -1, "TTL without expiry");
    nu_int(NU_CMD(c, "TTL", "nope"), -2, "TTL missing");
    nu_int(NU_CMD(c, "PTTL", "nope"), -2, "PTTL missing");
    nu_int(NU_CMD(c, "EXPIRE", "p", "1000"), 1, "EXPIRE");
    redisReply *r = NU_CMD(c, "TTL", "p");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 900 && r->integer <= 1000, "TTL %lld",
              r->integer);
    freeReplyObject(r);
    nu_int(NU_CMD(c, "EXPIRE", "nope", "10"), 0, "EXPIRE missing");
    nu_int(NU_CMD(c, "PEXPIRE", "p", "500000"), 1, "PEXPIRE");
    r = NU_CMD(c, "PTTL", "p");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 400000 && r->integer <= 500000,
              "PTTL %lld", r->integer);
    freeReplyObject(r);
    nu_int(NU_CMD(c, "PERSIST", "p"), 1, "PERSIST");
    nu_int(NU_CMD(c, "TTL", "p"), -1, "TTL after PERSIST");
    nu_int(NU_CMD(c, "PERSIST", "p"), 0, "PERSIST without expiry");
    nu_int(NU_CMD(c, "EXPIREAT", "p", "4102444800"), 1, "EXPIREAT 2100");
    nu_int(NU_CMD(c, "PEXPIREAT", "p", "4102444800000"), 1, "PEXPIREAT 2100");
    r = NU_CMD(c, "TTL", "p");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 1000000, "TTL %lld", r->integer);
    freeReplyObject(r);
    nu_int(NU_CMD(c, "EXPIRETIME", "p"), 4102444800LL, "EXPIRETIME");
    nu_int(NU_CMD(c, "PEXPIRETIME", "p"), 4102444800000LL, "PEXPIRETIME");
    nu_int(NU_CMD(c, "EXPIRETIME", "nope"), -2, "EXPIRETIME missing");
    nu_int(NU_CMD(c, "EXPIRE", "p", "10", "NX"), 0, "EXPIRE NX with a TTL");
    nu_int(NU_CMD(c, "EXPIRE", "p", "10", "GT"), 0, "EXPIRE GT smaller");
    nu_int(NU_CMD(c, "EXPIRE", "p", "10", "LT"), 1, "EXPIRE LT smaller");
    nu_ok(NU_CMD(c, "SETEX", "se", "100", "v"), "OK", "SETEX");
    nu_ok(NU_CMD(c, "PSETEX", "pse", "100000", "v"), "OK", "PSETEX");
    nu_ok(NU_CMD(c, "SET", "sx", "v", "EX", "100"), "OK", "SET EX");
    r = NU_CMD(c, "TTL", "sx");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 0 && r->integer <= 100);
    freeReplyObject(r);
    nu_ok(NU_CMD(c, "SET", "sx", "w", "KEEPTTL"), "OK", "SET KEEPTTL");
    r = NU_CMD(c, "TTL", "sx");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 0, "KEEPTTL kept it: %lld",
              r->integer);
    freeReplyObject(r);
    nu_ok(NU_CMD(c, "SET", "sx", "w"), "OK", "SET clears the TTL");
    nu_int(NU_CMD(c, "TTL", "sx"), -1, "TTL after plain SET");
    nu_str(NU_CMD(c, "GETEX", "sx", "EX", "50"), "w", "GETEX EX");
    r = NU_CMD(c, "TTL", "sx");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 0 && r->integer <= 50);
    freeReplyObject(r);
    nu_str(NU_CMD(c, "GETEX", "sx", "PERSIST"), "w", "GETEX PERSIST");
    nu_int(NU_CMD(c, "TTL", "sx"), -1, "after GETEX PERSIST");
    nu_err(NU_CMD(c, "SET", "k", "v", "EX", "0"), "ERR", "SET EX 0");
    nu_err(NU_CMD(c, "SET", "k", "v", "EX", "abc"), "ERR", "SET EX abc");

    /* Expiry: poll until gone (no timing assertion: only that it goes). */
    nu_ok(NU_CMD(c, "SET", "short", "v", "PX", "150"), "OK", "SET PX");
    nu_ok(NU_CMD(c, "SET", "long", "v", "EX", "3600"), "OK", "SET EX long");
    uint64_t end = nu_now_ms() + NU_DEADLINE_MS;
    for (;;) {
        r = NU_CMD(c, "GET", "short");
        bool gone = r->type == REDIS_REPLY_NIL;
        freeReplyObject(r);
        if (gone) {
            break;
        }
        cr_assert_lt(nu_now_ms(), end, "a key with PX 150 never expired");
        tu_sleep_us(20000);
    }
    nu_int(NU_CMD(c, "TTL", "short"), -2, "TTL of an expired key");
    nu_int(NU_CMD(c, "EXISTS", "short"), 0, "EXISTS expired");
    nu_str(NU_CMD(c, "GET", "long"), "v", "the long one is still there");
    /* EXPIRE with a deadline in the past deletes. */
    nu_int(NU_CMD(c, "EXPIREAT", "long", "1"), 1, "EXPIREAT past");
    nu_nil(NU_CMD(c, "GET", "long"), "GET after EXPIREAT past");
    redisFree(c);
    nu_stop_ok(&srv);
}

Test(resp, pipelining_and_errors)
{
    start(NULL);
    redisContext *c = nu_redis(&srv);
    char key[32], val[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "pk%04d", i);
        snprintf(val, sizeof val, "pv%d", i);
        if (i % 2 == 0) {
            cr_assert_eq(redisAppendCommand(c, "SET %s %s", key, val), REDIS_OK);
        } else {
            cr_assert_eq(redisAppendCommand(c, "INCR ctr"), REDIS_OK);
        }
    }
    for (int i = 0; i < 1000; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "reply %d: %s", i, c->errstr);
        if (i % 2 == 0) {
            nu_ok(r, "OK", "pipelined SET");
        } else {
            nu_int(r, i / 2 + 1, "pipelined INCR in order");
        }
    }
    /* Pipelined reads, answered in order. */
    for (int i = 0; i < 1000; i += 2) {
        snprintf(key, sizeof key, "pk%04d", i);
        cr_assert_eq(redisAppendCommand(c, "GET %s", key), REDIS_OK);
    }
    for (int i = 0; i < 1000; i += 2) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        snprintf(val, sizeof val, "pv%d", i);
        nu_str(r, val, "pipelined GET");
    }

    nu_err(NU_CMD(c, "NOSUCHCOMMAND", "x"), "ERR unknown command", "unknown command");
    nu_err(NU_CMD(c, "GET"), "ERR wrong number of arguments", "GET arity");
    nu_err(NU_CMD(c, "SET", "onlykey"), "ERR wrong number of arguments", "SET arity");
    nu_err(NU_CMD(c, "GET", "a", "b"), "ERR wrong number of arguments", "GET arity 3");
    nu_err(NU_CMD(c, "SET", "k", "v", "BOGUS"), "ERR", "SET bad option");
    nu_err(NU_CMD(c, "EXEC"), "ERR", "EXEC without MULTI");
    nu_err(NU_CMD(c, "DISCARD"), "ERR", "DISCARD without MULTI");
    /* The connection survives errors. */
    nu_ok(NU_CMD(c, "PING"), "PONG", "PING after errors");
    /* Inline commands (telnet). */
    int fd = nu_connect(srv.resp_port);
    nu_send(fd, "SET inl \"a b\"\r\nGET inl\r\n", 24);
    size_t len;
    bool eof;
    char *rep = nu_read_replies(fd, 2, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep, "+OK\r\n$3\r\na b\r\n");
    free(rep);
    close(fd);
    redisFree(c);
    /* The server counts commands per name for /metrics. */
    nu_resp h = NU_GET(&srv, "/metrics");
    nu_expect_status(&h, 200, "metrics");
    cr_assert_not_null(strstr(h.body, "shale_resp_commands_total{command=\"incr\"} 500\n"),
                       "metrics lack 500 INCRs:\n%.3000s", h.body);
    cr_assert_not_null(strstr(h.body, "shale_resp_commands_total{command=\"get\"}"),
                       "metrics lack GET:\n%.3000s", h.body);
    nu_resp_free(&h);
    nu_stop_ok(&srv);
}

/* A worker moving units between two keys in MULTI/EXEC; the reader checks their sum. */
typedef struct mover {
    uint16_t port;
    atomic_bool stop;
    atomic_int done;
    char fail[256];
} mover;

static void *move_units(void *arg)
{
    mover *m = arg;
    struct timeval tv = {.tv_sec = 60};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", m->port, tv);
    if (c == NULL || c->err) {
        snprintf(m->fail, sizeof m->fail, "connect failed");
        return NULL;
    }
    redisSetTimeout(c, tv);
    for (int i = 0; i < 300 && !atomic_load(&m->stop); i++) {
        const char *cmds[] = {"MULTI", "DECRBY x 1", "INCRBY y 1", "EXEC"};
        for (int k = 0; k < 4; k++) {
            redisAppendCommand(c, cmds[k]);
        }
        redisReply *r[4] = {0};
        for (int k = 0; k < 4; k++) {
            if (redisGetReply(c, (void **)&r[k]) != REDIS_OK) {
                snprintf(m->fail, sizeof m->fail, "reply %d: %s", k, c->errstr);
                redisFree(c);
                return NULL;
            }
        }
        bool ok = r[0]->type == REDIS_REPLY_STATUS && r[1]->type == REDIS_REPLY_STATUS &&
                  strcmp(r[1]->str, "QUEUED") == 0 && r[3]->type == REDIS_REPLY_ARRAY &&
                  r[3]->elements == 2;
        if (!ok && m->fail[0] == '\0') {
            snprintf(m->fail, sizeof m->fail, "MULTI/EXEC replies: %d %d %d %d", r[0]->type,
                     r[1]->type, r[2]->type, r[3]->type);
        }
        for (int k = 0; k < 4; k++) {
            freeReplyObject(r[k]);
        }
        if (!ok) {
            break;
        }
        atomic_fetch_add(&m->done, 1);
    }
    redisFree(c);
    return NULL;
}

Test(resp, multi_exec_atomic_and_watch)
{
    start(NULL);
    redisContext *a = nu_redis(&srv);
    redisContext *b = nu_redis(&srv);

    /* Queued commands are invisible to others until EXEC. */
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "m1", "1"), "QUEUED", "queue SET");
    nu_ok(NU_CMD(a, "INCR", "m2"), "QUEUED", "queue INCR");
    nu_err(NU_CMD(a, "MULTI"), "ERR", "nested MULTI");
    nu_nil(NU_CMD(b, "GET", "m1"), "not visible before EXEC");
    redisReply *r = NU_CMD(a, "EXEC");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "EXEC reply");
    cr_assert(r->element[0]->type == REDIS_REPLY_STATUS && strcmp(r->element[0]->str, "OK") == 0);
    cr_assert(r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer == 1);
    freeReplyObject(r);
    nu_str(NU_CMD(b, "GET", "m1"), "1", "visible after EXEC");

    /* DISCARD drops the queue. */
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "m1", "discarded"), "QUEUED", "queue");
    nu_ok(NU_CMD(a, "DISCARD"), "OK", "DISCARD");
    nu_str(NU_CMD(b, "GET", "m1"), "1", "DISCARD wrote nothing");

    /* An arity error at queue time aborts EXEC. */
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "m1", "x"), "QUEUED", "queue");
    nu_err(NU_CMD(a, "GET"), "ERR", "queued arity error");
    nu_err(NU_CMD(a, "EXEC"), "EXECABORT", "EXEC after a queue error");
    nu_str(NU_CMD(b, "GET", "m1"), "1", "EXECABORT wrote nothing");

    /* WATCH: a change by another client makes EXEC answer a null array. */
    nu_ok(NU_CMD(a, "WATCH", "w"), "OK", "WATCH");
    nu_ok(NU_CMD(b, "SET", "w", "theirs"), "OK", "other client writes");
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "w", "mine"), "QUEUED", "queue");
    r = NU_CMD(a, "EXEC");
    cr_assert(r->type == REDIS_REPLY_NIL, "EXEC after a watched change: type %d", r->type);
    freeReplyObject(r);
    nu_str(NU_CMD(b, "GET", "w"), "theirs", "watched EXEC did nothing");
    /* Unchanged watched key: EXEC runs. */
    nu_ok(NU_CMD(a, "WATCH", "w"), "OK", "WATCH");
    nu_str(NU_CMD(b, "GET", "w"), "theirs", "a read is not a change");
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "w", "mine"), "QUEUED", "queue");
    r = NU_CMD(a, "EXEC");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 1, "EXEC with an unchanged watch");
    freeReplyObject(r);
    nu_str(NU_CMD(b, "GET", "w"), "mine", "EXEC applied");
    /* UNWATCH forgets. */
    nu_ok(NU_CMD(a, "WATCH", "w"), "OK", "WATCH");
    nu_ok(NU_CMD(a, "UNWATCH"), "OK", "UNWATCH");
    nu_ok(NU_CMD(b, "SET", "w", "again"), "OK", "other write");
    nu_ok(NU_CMD(a, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(a, "SET", "w", "after-unwatch"), "QUEUED", "queue");
    r = NU_CMD(a, "EXEC");
    cr_assert(r->type == REDIS_REPLY_ARRAY, "EXEC after UNWATCH");
    freeReplyObject(r);

    /* Atomicity under concurrency: two movers shift units from x to y in MULTI/EXEC while a
     * reader checks with MGET (one consistent read) that x + y never changes. */
    nu_ok(NU_CMD(b, "MSET", "x", "100000", "y", "0"), "OK", "MSET x y");
    mover m1 = {.port = srv.resp_port}, m2 = {.port = srv.resp_port};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, move_units, &m1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, move_units, &m2), 0);
    int reads = 0;
    bool broken = false;
    long long bx = 0, by = 0;
    while (atomic_load(&m1.done) + atomic_load(&m2.done) < 600 && reads < 20000) {
        r = NU_CMD(b, "MGET", "x", "y");
        long long x = atoll(r->element[0]->str), y = atoll(r->element[1]->str);
        freeReplyObject(r);
        reads++;
        if (x + y != 100000) {
            broken = true;
            bx = x;
            by = y;
            break;
        }
        if (m1.fail[0] || m2.fail[0]) {
            break;
        }
    }
    atomic_store(&m1.stop, true);
    atomic_store(&m2.stop, true);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(m1.fail[0], '\0', "mover 1: %s", m1.fail);
    cr_assert_eq(m2.fail[0], '\0', "mover 2: %s", m2.fail);
    cr_assert(!broken, "a reader saw half a transaction: x=%lld y=%lld", bx, by);
    int moved = atomic_load(&m1.done) + atomic_load(&m2.done);
    r = NU_CMD(b, "MGET", "x", "y");
    cr_assert_eq(atoll(r->element[1]->str), moved, "no lost update: y=%s after %d moves",
                 r->element[1]->str, moved);
    cr_assert_eq(atoll(r->element[0]->str), 100000 - moved);
    freeReplyObject(r);
    redisFree(a);
    redisFree(b);
    nu_stop_ok(&srv);
}

Test(resp, resp3_hello)
{
    start(NULL);
    int fd = nu_connect(srv.resp_port);
    const char hello[] = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
    nu_send(fd, hello, sizeof hello - 1);
    size_t len;
    bool eof;
    char *rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep, "no HELLO 3 reply");
    cr_assert_eq(rep[0], '%', "HELLO 3 is not a RESP3 map: %.200s", rep);
    cr_assert_not_null(strstr(rep, "$5\r\nproto\r\n:3\r\n"), "HELLO 3 map lacks proto 3: %.400s",
                       rep);
    cr_assert_not_null(strstr(rep, "$6\r\nserver\r\n"), "HELLO map lacks server: %.400s", rep);
    cr_assert_not_null(strstr(rep, "$7\r\nversion\r\n"), "HELLO map lacks version: %.400s", rep);
    free(rep);
    /* RESP3 types: null is "_". */
    const char get[] = "*2\r\n$3\r\nGET\r\n$4\r\nnope\r\n";
    nu_send(fd, get, sizeof get - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep, "_\r\n");
    free(rep);
    const char set[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    nu_send(fd, set, sizeof set - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep, "+OK\r\n");
    free(rep);
    /* HELLO 2 back: a flat array. */
    const char hello2[] = "*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n";
    nu_send(fd, hello2, sizeof hello2 - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_eq(rep[0], '*', "HELLO 2 is not an array: %.200s", rep);
    cr_assert_not_null(strstr(rep, "$5\r\nproto\r\n:2\r\n"), "HELLO 2: %.400s", rep);
    free(rep);
    nu_send(fd, get, sizeof get - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep, "$-1\r\n");
    free(rep);
    /* An unsupported protocol version. */
    const char hello4[] = "*2\r\n$5\r\nHELLO\r\n$1\r\n4\r\n";
    nu_send(fd, hello4, sizeof hello4 - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_eq(rep[0], '-', "HELLO 4: %.200s", rep);
    free(rep);
    close(fd);
    nu_stop_ok(&srv);
}

Test(resp, auth)
{
    start((const char *const[]){"--auth-token", "tok3n", NULL});
    redisContext *c = nu_redis(&srv);
    nu_err(NU_CMD(c, "GET", "k"), "NOAUTH", "GET before AUTH");
    nu_err(NU_CMD(c, "SET", "k", "v"), "NOAUTH", "SET before AUTH");
    redisReply *r = NU_CMD(c, "AUTH", "wrong");
    cr_assert_eq(r->type, REDIS_REPLY_ERROR, "AUTH wrong: type %d", r->type);
    freeReplyObject(r);
    nu_err(NU_CMD(c, "GET", "k"), "NOAUTH", "GET after a failed AUTH");
    nu_ok(NU_CMD(c, "AUTH", "tok3n"), "OK", "AUTH");
    nu_ok(NU_CMD(c, "SET", "k", "v"), "OK", "SET after AUTH");
    nu_str(NU_CMD(c, "GET", "k"), "v", "GET after AUTH");
    redisFree(c);
    /* AUTH default <token> (Redis 6 form) and HELLO with AUTH. */
    c = nu_redis(&srv);
    nu_ok(NU_CMD(c, "AUTH", "default", "tok3n"), "OK", "AUTH default tok3n");
    nu_str(NU_CMD(c, "GET", "k"), "v", "GET");
    redisFree(c);
    int fd = nu_connect(srv.resp_port);
    const char hello[] = "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$5\r\n"
                         "tok3n\r\n";
    nu_send(fd, hello, sizeof hello - 1);
    size_t len;
    bool eof;
    char *rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_eq(rep[0], '%', "HELLO 3 AUTH: %.200s", rep);
    free(rep);
    const char get[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    nu_send(fd, get, sizeof get - 1);
    rep = nu_read_reply(fd, &len, &eof);
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep, "$1\r\nv\r\n");
    free(rep);
    close(fd);
    nu_stop_ok(&srv);
}

Test(resp, library_interop)
{
    char *dir = nu_path("db");
    shale_options o = {.create_if_missing = true};
    shale_db *db = tu_open(dir, &o);
    tu_put(db, "from-lib", "lib-value");
    tu_put(db, "counter", "41");
    shale_error cerr;
    cr_assert_eq(shale_close(db, &cerr), SHALE_OK, "close: %s", cerr.msg);
    nu_start(&srv, dir, NULL);
    redisContext *c = nu_redis(&srv);
    nu_str(NU_CMD(c, "GET", "from-lib"), "lib-value", "a key put by the library");
    nu_int(NU_CMD(c, "INCR", "counter"), 42, "INCR a library value");
    nu_ok(NU_CMD(c, "SET", "from-resp", "resp-value"), "OK", "SET");
    redisReply *r = redisCommand(c, "SET bin %b", "\x01\x00\xff", (size_t)3);
    nu_ok(r, "OK", "SET binary");
    redisFree(c);
    nu_stop_ok(&srv);

    db = tu_open(dir, NULL);
    tu_expect(db, "from-resp", "resp-value");
    tu_expect(db, "counter", "42");
    shale_slice v = {"\x01\x00\xff", 3};
    tu_expectn(db, tu_str("bin"), &v);
    shale_error err;
    cr_assert_eq(shale_close(db, &err), SHALE_OK);
    free(dir);
}

Test(resp, documents_and_keys_are_separate)
{
    start(NULL);
    nu_resp h = NU_SEND(&srv, "POST", "/collections/docs/batch",
                        "{\"documents\":[{\"_id\":\"d1\"},{\"_id\":\"d2\"}]}");
    nu_expect_status(&h, 201, "insert documents");
    nu_resp_free(&h);
    h = NU_SEND(&srv, "POST", "/collections/docs/indexes/x", "");
    nu_expect_status(&h, 201, "create index");
    nu_resp_free(&h);
    redisContext *c = nu_redis(&srv);
    redisReply *r = NU_CMD(c, "KEYS", "*");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 0, "KEYS * sees %zu document keys (first: %s)", r->elements,
                 r->elements ? r->element[0]->str : "");
    freeReplyObject(r);
    nu_int(NU_CMD(c, "DBSIZE"), 0, "DBSIZE with only documents");
    nu_nil(NU_CMD(c, "RANDOMKEY"), "RANDOMKEY with only documents");
    r = NU_CMD(c, "SCAN", "0", "COUNT", "1000");
    cr_assert_eq(r->element[1]->elements, 0, "SCAN sees document keys");
    freeReplyObject(r);
    nu_ok(NU_CMD(c, "SET", "r1", "1"), "OK", "SET");
    nu_ok(NU_CMD(c, "SET", "r2", "2"), "OK", "SET");
    cr_assert_str_eq(joined(r = NU_CMD(c, "KEYS", "*"), "KEYS"), "r1,r2");
    freeReplyObject(r);
    nu_int(NU_CMD(c, "DBSIZE"), 2, "DBSIZE");
    nu_ok(NU_CMD(c, "FLUSHALL"), "OK", "FLUSHALL");
    nu_ok(NU_CMD(c, "FLUSHDB"), "OK", "FLUSHDB");
    nu_int(NU_CMD(c, "DBSIZE"), 0, "DBSIZE after FLUSHALL");
    redisFree(c);
    h = NU_GET(&srv, "/collections/docs/documents/d2");
    nu_expect_status(&h, 200, "a document after FLUSHALL");
    nu_resp_free(&h);
    h = NU_GET(&srv, "/collections/docs/find?x=1");
    nu_expect_status(&h, 200, "an indexed query after FLUSHALL");
    nu_resp_free(&h);
    nu_stop_ok(&srv);
}
