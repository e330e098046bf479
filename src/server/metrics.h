/*
 * metrics: the server's request counters and latency histograms, per HTTP route and per RESP
 * command, and their Prometheus text exposition (GET /metrics) with the engine's stats.
 *
 * Series are keyed by the route's or command's static name string (http_response.route,
 * resp_cmd_name): at most METRICS_MAX_SERIES of them, made on first use; a name past that is
 * counted under "other". Each worker thread observes into its own shard (no atomic read-modify-
 * write, no cache line shared between threads: counting must cost less than a GET); the text
 * sums the shards. One shard has one writer at a time; metrics_text may run on any thread.
 */
#ifndef SHALE_SERVER_METRICS_H
#define SHALE_SERVER_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#define METRICS_MAX_SERIES 256

typedef enum metrics_kind {
    METRICS_HTTP = 0,
    METRICS_RESP = 1,
} metrics_kind;

typedef struct metrics metrics;

metrics *metrics_new(uint32_t nshards); /* NULL when out of memory */
void metrics_free(metrics *m);

/* One request of `name` (a string that lives as long as m) that took `usec`, failed or not
 * (HTTP status >= 400, RESP error reply). */
void metrics_observe(metrics *m, uint32_t shard, metrics_kind kind, const char *name, uint64_t usec,
                     bool error);

/* Connection gauges, kept by the server (atomic: rare). */
void metrics_conn(metrics *m, metrics_kind kind, int delta);

/* Appends the Prometheus text format (version 0.0.4): the series above and db's stats. */
shale_code metrics_text(metrics *m, shale_db *db, shale_buf *out, shale_error *err) SHALE_MUST_USE;

#endif
