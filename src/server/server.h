/*
 * server: `shale serve`, the database as a network server. One shale_db, one HTTP listener
 * (http_api.h on libevent's evhttp) and one RESP listener (resp.h, resp_cmd.h on libevent
 * bufferevents), served by `threads` worker threads, each with its own event loop and its own
 * listening socket per protocol (SO_REUSEPORT: the kernel spreads connections between them). A
 * request runs to its end on the thread that read it; plain RESP SETs and GETs of all of a
 * thread's connections wait in its group (resp_cmd.h) and run at the turn's end as one commit and
 * one multi_get; RESP writes commit at MEMORY level and each loop turn makes them durable with one
 * shale_sync before their replies go out (server.c).
 *
 * Connections: an idle or slow client is closed after idle_timeout_s without a complete request
 * (HTTP: evhttp's timeout; RESP: a read timeout, and a write timeout while replies wait for a
 * client that does not read them); a client
 * whose unfinished RESP command exceeds max_query_bytes, or whose HTTP body exceeds max_body
 * (413), is answered and closed. Others are unaffected.
 *
 * Stop: server_stop (from any thread or a signal handler's self-pipe) makes every loop stop
 * accepting, finishes the requests in flight, then server_run returns; server_close flushes and
 * closes the database.
 */
#ifndef SHALE_SERVER_SERVER_H
#define SHALE_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

typedef struct server_config {
    const char *data_dir;   /* default ./shale-data */
    const char *http_addr;  /* "127.0.0.1:8080"; "" or "off" = no HTTP listener */
    const char *resp_addr;  /* "127.0.0.1:6380"; "" or "off" = no RESP listener */
    uint32_t max_memory_mb; /* 0 = the library's default */
    shale_durability durability;
    bool durability_set;      /* else the library's default */
    uint32_t threads;         /* worker threads; 0 = the number of cores */
    const char *auth_token;   /* NULL or "": none */
    int log_level;            /* 0 errors, 1 info (default), 2 debug (every request) */
    uint32_t idle_timeout_s;  /* default 300 */
    uint64_t max_body;        /* HTTP request body bytes; default 16 MiB */
    uint64_t max_query_bytes; /* RESP bytes of one unfinished command; default 64 MiB */
    uint32_t max_clients;     /* connections at once, both protocols; default 10000 */
    const char *backup_dir;   /* POST /admin/backup writes here; NULL or "": the route is off */
} server_config;

void server_config_defaults(server_config *c);

typedef struct server server;

/* Opens the database and binds both listeners (a second server on the same data directory
 * fails here: the database's LOCK). Logs one line saying where it listens. */
shale_code server_open(const server_config *c, server **out, shale_error *err) SHALE_MUST_USE;
/* Serves until server_stop. Returns after the loops ended. */
shale_code server_run(server *s, shale_error *err) SHALE_MUST_USE;
/* Async-signal-safe: asks server_run to end. */
void server_stop(server *s);
/* Closes the database (flushing it) and frees the server. */
shale_code server_close(server *s, shale_error *err);

/* The port a listener actually bound (useful with port 0): 0 when it is off. */
uint16_t server_http_port(const server *s);
uint16_t server_resp_port(const server *s);

#endif
