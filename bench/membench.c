/*
 * membench: the memtable's insert path alone, with and without memtable_warm (the lock-step walk
 * of a batch's search paths that commit.c runs before applying a batch; see skiplist.h).
 *
 *   membench [entries] [batch]
 *
 * Fills a memtable with `entries` (default 300,000) random 16-byte keys ("key:%012u", drawn from
 * a million, as redis-benchmark -r 1000000 makes them) with 100-byte values, then times 100,000
 * more inserts in batches of `batch` (default 32), once adding each batch straight away and once
 * warming it first, on two memtables filled alike. Prints ns per insert for each, and for the
 * warmed run the walk's share. Timing is wall clock over the whole measured phase; run it on an
 * idle machine and more than once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shale.h"

#include "mem/memtable.h"

#define MEASURED  100000u
#define MAX_BATCH 256u

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Fills keys[0..n) with the next n keys of the stream. */
static void draw(uint64_t *rng, char (*keys)[17], shale_slice *ks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "key:%012u", (unsigned)(next_rand(rng) % 1000000u));
        ks[i] = (shale_slice){keys[i], 16};
    }
}

/* One run: fill, then MEASURED inserts in batches. Returns ns per measured insert; *walk_ns gets
 * the warm walk's part. -1 on failure. */
static double run(size_t entries, size_t batch, int warm, double *walk_ns)
{
    memtable *m = memtable_new();
    if (m == NULL) {
        return -1;
    }
    static char keys[MAX_BATCH][17];
    shale_slice ks[MAX_BATCH];
    char value[100];
    memset(value, 'v', sizeof value);
    uint64_t rng = 0x9e3779b97f4a7c15ull, seq = 1;
    double walk = 0, t0 = 0;
    shale_error err;
    for (size_t done = 0; done < entries + MEASURED; done += batch) {
        if (done == entries) {
            t0 = now_s();
        }
        draw(&rng, keys, ks, batch);
        if (warm && done >= entries) {
            double w = now_s();
            memtable_warm(m, ks, batch);
            walk += now_s() - w;
        }
        for (size_t i = 0; i < batch; i++) {
            if (memtable_add(m, seq++, MEMTABLE_PUT, ks[i], (shale_slice){value, sizeof value}, 0,
                             NULL, NULL, &err) != SHALE_OK) {
                fprintf(stderr, "membench: %s\n", err.msg);
                memtable_unref(m);
                return -1;
            }
        }
    }
    double per = (now_s() - t0) / MEASURED * 1e9;
    *walk_ns = walk / MEASURED * 1e9;
    memtable_unref(m);
    return per;
}

int main(int argc, char **argv)
{
    size_t entries = argc > 1 ? strtoul(argv[1], NULL, 10) : 300000;
    size_t batch = argc > 2 ? strtoul(argv[2], NULL, 10) : 32;
    if (batch == 0 || batch > MAX_BATCH || MEASURED % batch != 0 || entries % batch != 0) {
        fprintf(stderr, "membench: batch must be 1..%u and divide %u and entries\n", MAX_BATCH,
                MEASURED);
        return 2;
    }
    double walk = 0, w2 = 0;
    double plain = run(entries, batch, 0, &w2);
    double warmed = run(entries, batch, 1, &walk);
    if (plain < 0 || warmed < 0) {
        return 1;
    }
    printf("memtable of %zu entries, %u inserts in batches of %zu: plain %.0f ns/insert, "
           "warmed %.0f ns/insert (walk %.0f + insert %.0f)\n",
           entries, MEASURED, batch, plain, warmed, walk, warmed - walk);
    return 0;
}
