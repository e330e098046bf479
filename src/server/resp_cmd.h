/*
 * resp_cmd: the Redis commands, executed on the key-value store (include/shale.h). No I/O: the
 * connection code (server.c) parses a request with resp.h, calls resp_exec, and sends what it
 * appended to `out`. Tests drive it directly, without sockets.
 *
 * Key space. RESP keys are plain keys of the store, byte for byte, so a value SET over RESP is
 * what shale_get (and `shale get`) returns, and the reverse. The document layer owns the keys
 * that start with 0x00 0xD0 (docdb.h): a RESP command naming such a key gets
 * "-ERR key is in the reserved document space", and KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHDB and
 * FLUSHALL never see or touch that range. So neither protocol can reach the other's data.
 *
 * Values are strings (TYPE answers "string" or "none"). TTLs map onto shale_put_ttl deadlines
 * (milliseconds, absolute); TTL/PTTL read them with shale_get_info. Read-modify-write commands
 * (INCR*, APPEND, SETRANGE, GETDEL, GETEX, SET with NX/XX/GET/KEEPTTL, RENAME, MSETNX, PERSIST,
 * EXPIRE*) run as transactions (get_for_update, retried on conflict), so concurrent INCRs never
 * lose an update. MULTI queues commands (syntax and arity checked at queue time, as Redis does,
 * making EXEC fail with EXECABORT); EXEC runs the queue in one transaction, so other clients see
 * all of it or none; WATCH records each key's version (shale_get_info seq, 0 when absent) and
 * EXEC answers a null array when any watched key changed. Durability is the database's level.
 *
 * Sessions. One per connection: protocol version (2 until HELLO 3), authenticated (true when the
 * server has no token), client name and id, the MULTI queue and WATCH set, SCAN cursors.
 * resp_exec is called from one thread at a time per session; sessions of one server may run on
 * different threads at once (the store is thread-safe; the server counters are atomic).
 */
#ifndef SHALE_SERVER_RESP_CMD_H
#define SHALE_SERVER_RESP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

typedef struct resp_server resp_server;
typedef struct resp_session resp_session;

typedef struct resp_server_opts {
    shale_db *db;
    const char *auth_token; /* NULL or "": no AUTH needed */
    /* The level every write commits at (DEFAULT: the database's). The server passes MEMORY and
     * makes each loop turn's writes durable with one shale_sync before it sends their replies
     * (server.c); a caller that sends replies as resp_exec returns must leave DEFAULT. */
    shale_durability durability;
    /* INFO's "server"/"clients" facts, filled by the server (may be NULL). */
    void (*info)(void *ctx, shale_buf *out); /* appends "key:value\r\n" lines */
    void *info_ctx;
} resp_server_opts;

shale_code resp_server_new(const resp_server_opts *opts, resp_server **out,
                           shale_error *err) SHALE_MUST_USE;
void resp_server_free(resp_server *s);

/* NULL when out of memory. peer is "ip:port" (CLIENT LIST / INFO). */
resp_session *resp_session_new(resp_server *s, const char *peer);
void resp_session_free(resp_session *ss);

typedef enum resp_exec_result {
    RESP_EXEC_OK = 0,    /* reply appended; keep reading */
    RESP_EXEC_CLOSE = 1, /* reply appended (QUIT's +OK); close after sending it */
} resp_exec_result;

/* Runs one command (argv[0] is its name, any case) and appends its reply to out. Errors are
 * replies ("-ERR ...", "-WRONGTYPE ...", "-NOAUTH ...", "-EXECABORT ..."), never a failure of
 * this call; only when out cannot grow does it return RESP_EXEC_CLOSE with out unchanged.
 * argc >= 1. */
resp_exec_result resp_exec(resp_session *ss, const shale_slice *argv, size_t argc, shale_buf *out);

/* As resp_exec, but a plain "SET key value" or "GET key" (authenticated, outside MULTI) may be
 * deferred into the session's group (below): a SET's "+OK" is appended to out at once and the
 * SET committed with the group's other SETs as one write batch; a GET is answered, into out,
 * when the group runs its GETs as one shale_multi_get. Replies come out in command order, each
 * exactly what resp_exec would have given (a batch the store refuses as a whole is redone one
 * SET at a time, each member's replies rewritten from its first grouped SET). What a session
 * deferred runs before its next command of another kind, and after RESP_RUN_MAX deferred
 * commands. The group copies keys and values: argv may be reused at once. The same `out` must be
 * passed for all of a session's calls while it has commands in a group, and nothing taken from
 * out (sent) before the group has run. */
resp_exec_result resp_exec_deferred(resp_session *ss, const shale_slice *argv, size_t argc,
                                    shale_buf *out);
#define RESP_RUN_MAX 64
/* Runs the session's deferred commands, unless they wait in a shared group (resp_session_join),
 * which resp_group_flush runs. RESP_EXEC_CLOSE when out could not grow, now or in a group's run
 * (resp_session_broken). */
resp_exec_result resp_flush(resp_session *ss, shale_buf *out);

/*
 * Groups: the deferred SETs and GETs of the sessions one thread serves, run together. A server
 * thread answers a loop turn's commands only after the turn (server.c), so the commands that
 * clients sent one at a time (redis-benchmark -P 1) can share one commit or one multi_get, and
 * the memtable inserts of one batch overlap their cache misses (commit.c). A session not joined
 * to a group has one of its own, run by its resp_flush. A group and its sessions belong to one
 * thread at a time.
 *
 * resp_group_flush commits the group's SETs, then runs its GETs (another client's GET sees the
 * SETs of the same turn; none of their replies is out yet, so either order is linearizable).
 * When the store refuses the batch (a value over its limit, writes stopped), every SET is redone
 * one by one with resp_exec, so each gets its own answer. A member whose out cannot grow during
 * the run is marked broken (resp_session_broken): its connection must close once what out holds
 * is sent. A session freed with commands in a group leaves them: its SETs are committed without
 * a reply, its GETs not answered.
 */
typedef struct resp_group resp_group;
/* NULL when out of memory. */
resp_group *resp_group_new(resp_server *sv);
/* Runs what it holds first. REQUIRES: no session is still joined to it. */
void resp_group_free(resp_group *g);
void resp_group_flush(resp_group *g);
/* From now on the session's deferred commands go to g. REQUIRES: none of them waits in
 * another group. */
void resp_session_join(resp_session *ss, resp_group *g);
/* True when a reply of the session could not be made (out of memory in a group's run). */
bool resp_session_broken(const resp_session *ss);
/* True when commands of the session wait in a group: a GET's answer is not in out yet. */
bool resp_session_waiting(const resp_session *ss);

/* True when a command run since the last call may have written (a write command, EXEC, or a
 * deferred SET), and clears the mark. When a loop turn's sync fails the server drops only the
 * replies of connections that wrote; the others' answers acknowledge nothing. */
bool resp_session_take_wrote(resp_session *ss);

/* The canonical lower-case name of the session's last command (resp_exec or
 * resp_exec_deferred), for metrics: "get", "set", ..., or "unknown". Static storage. */
const char *resp_session_cmd(const resp_session *ss);

/* The canonical lower-case name of a command for metrics ("get", "set", ...), or "unknown". */
const char *resp_cmd_name(shale_slice name);

#endif
