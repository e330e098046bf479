/*
 * metrics tests: series summed over shards, histogram buckets cumulative and consistent with the
 * count, errors counted apart, connection gauges, names past the series limit under "other", and
 * the engine's stats present, in the Prometheus text format.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "server/metrics.h"
#include "testutil.h"

/* The value of the sample line that starts with `head` (asserting there is one). */
static double sample(const shale_buf *b, const char *head)
{
    const char *t = b->data, *end = t + b->len;
    size_t hl = strlen(head);
    for (const char *p = t; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll > hl && memcmp(p, head, hl) == 0 && p[hl] == ' ') {
            return strtod(p + hl + 1, NULL);
        }
        p += ll + 1;
    }
    cr_assert_fail("no sample line starting with %s", head);
    return 0;
}

Test(metrics, shards_sum_and_histograms)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "metrics", NULL);
    metrics *m = metrics_new(2);
    cr_assert_not_null(m);
    static const char get[] = "get", set[] = "set";
    for (int i = 0; i < 100; i++) {
        metrics_observe(m, (uint32_t)i % 2, METRICS_RESP, get, (uint64_t)i * 10, i % 10 == 0);
    }
    metrics_observe(m, 1, METRICS_RESP, set, 2000000, false); /* above every bucket */
    metrics_conn(m, METRICS_RESP, 3);
    metrics_conn(m, METRICS_RESP, -1);
    /* More names than series: the rest count as "other". */
    static char names[METRICS_MAX_SERIES + 10][8];
    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        metrics_observe(m, 0, METRICS_HTTP, names[i], 1, false);
    }
    shale_buf out = {0};
    shale_error e;
    cr_assert_eq(metrics_text(m, fx.db, &out, &e), SHALE_OK, "%s", e.msg);
    cr_assert_eq(sample(&out, "shale_resp_commands_total{command=\"get\"}"), 100);
    cr_assert_eq(sample(&out, "shale_resp_commands_errors_total{command=\"get\"}"), 10);
    /* 0,10,..,990 us: 6 at or below 50 us, 11 at or below 100, all 100 at or below 1 ms. */
    cr_assert_eq(
        sample(&out, "shale_resp_command_duration_seconds_bucket{command=\"get\",le=\"5e-05\"}"),
        6);
    cr_assert_eq(
        sample(&out, "shale_resp_command_duration_seconds_bucket{command=\"get\",le=\"0.0001\"}"),
        11);
    cr_assert_eq(
        sample(&out, "shale_resp_command_duration_seconds_bucket{command=\"get\",le=\"0.001\"}"),
        100);
    cr_assert_eq(
        sample(&out, "shale_resp_command_duration_seconds_bucket{command=\"set\",le=\"1\"}"), 0);
    cr_assert_eq(
        sample(&out, "shale_resp_command_duration_seconds_bucket{command=\"set\",le=\"+Inf\"}"), 1);
    cr_assert_eq(sample(&out, "shale_resp_command_duration_seconds_count{command=\"get\"}"), 100);
    cr_assert_eq(sample(&out, "shale_connections{protocol=\"resp\"}"), 2);
    cr_assert_eq(sample(&out, "shale_connections_total{protocol=\"resp\"}"), 3);
    cr_assert_eq(sample(&out, "shale_http_requests_total{route=\"other\"}"), 10);
    cr_assert_eq(sample(&out, "shale_http_requests_total{route=\"n0\"}"), 1);
    cr_assert_geq(sample(&out, "shale_block_cache_capacity"), 1);
    cr_assert(strstr(out.data, "# TYPE shale_resp_command_duration_seconds histogram") != NULL);
    shale_buf_free(&out);
    metrics_free(m);
    tu_fx_end(&fx);
}
