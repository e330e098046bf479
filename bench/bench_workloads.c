/*
 * bench_workloads.c: the operation loop of each workload (see bench_workloads.h for what lives
 * here and what in bench_driver.c, and bench_driver.h for what each workload measures).
 *
 * Keys are --key-size bytes of zero-padded decimal ("0000000000001234"), as in db_bench. Each
 * thread walks the driver's value pool from the start, --value-size bytes at a time, wrapping at
 * its end. Random keys come from the thread's splitmix64 stream (w->rng, seeded by the driver),
 * uniform over [0, num).
 *
 * Transactions (txndisjoint, txnhot): each transaction's keys are drawn from the same streams,
 * distinct within the transaction, so a conflict's retry reads and writes exactly the keys the
 * refused attempt did (with the next values of the thread's walk through the pool).
 */
#include "bench_workloads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Writes k as zero-padded decimal filling exactly `width` bytes (the caller checked it fits). */
static void format_key(char *out, size_t width, uint64_t k)
{
    memset(out, '0', width);
    size_t i = width;
    while (k > 0 && i > 0) {
        out[--i] = (char)('0' + k % 10);
        k /= 10;
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void hist_add(hist *h, uint64_t ns)
{
    h->count[hist_bucket(ns)]++;
    h->n++;
    if (ns > h->max_ns) {
        h->max_ns = ns;
    }
}

static bench_slice next_value(worker *w)
{
    run *r = w->r;
    size_t len = r->params.value_size;
    if (w->value_pos + len > r->pool_size) {
        w->value_pos = 0;
    }
    bench_slice v = {r->pool + w->value_pos, len};
    w->value_pos += len;
    return v;
}

static void do_write(worker *w)
{
    run *r = w->r;
    const workload_params *p = &r->params;
    char key[MAX_KEY_SIZE];
    bench_err err;
    bool seq = r->kind == K_FILLSEQ;
    for (uint64_t i = 0; i < r->ops && !worker_stopped(w); i++) {
        uint64_t k = seq ? i : splitmix64(&w->rng) % p->num;
        format_key(key, p->key_size, k);
        bench_slice v = next_value(w);
        uint64_t t0 = w->h ? now_ns() : 0;
        if (r->eng->put(w->state, (bench_slice){key, p->key_size}, v, r->level, &err) != BENCH_OK) {
            worker_fail(w, &err);
            return;
        }
        if (w->h) {
            hist_add(w->h, now_ns() - t0);
        }
        w->done++;
        w->bytes += p->key_size + v.len;
    }
}

static void do_write_batch(worker *w)
{
    run *r = w->r;
    const workload_params *p = &r->params;
    size_t n = p->batch_size;
    char *keys = malloc(n * p->key_size);
    bench_slice *ks = malloc(n * sizeof(*ks));
    bench_slice *vs = malloc(n * sizeof(*vs));
    bench_err err;
    if (keys == NULL || ks == NULL || vs == NULL) {
        snprintf(err.msg, sizeof(err.msg), "out of memory for a batch of %zu", n);
        worker_fail(w, &err);
        goto out;
    }
    for (uint64_t i = 0; i < r->ops && !worker_stopped(w); i += n) {
        size_t m = r->ops - i < n ? (size_t)(r->ops - i) : n;
        for (size_t j = 0; j < m; j++) {
            char *k = keys + j * p->key_size;
            format_key(k, p->key_size, splitmix64(&w->rng) % p->num);
            ks[j] = (bench_slice){k, p->key_size};
            vs[j] = next_value(w);
            w->bytes += p->key_size + vs[j].len;
        }
        uint64_t t0 = w->h ? now_ns() : 0;
        if (r->eng->write_batch(w->state, ks, vs, m, r->level, &err) != BENCH_OK) {
            worker_fail(w, &err);
            goto out;
        }
        if (w->h) {
            hist_add(w->h, now_ns() - t0);
        }
        w->done += m;
    }
out:
    free(vs);
    free(ks);
    free(keys);
}

static void do_read_random(worker *w)
{
    run *r = w->r;
    const workload_params *p = &r->params;
    char key[MAX_KEY_SIZE + 1];
    size_t klen = p->key_size;
    bench_err err;
    bool missing = r->kind == K_READMISSING;
    if (missing) {
        key[klen++] = '.'; /* db_bench's readmissing: a key no fill ever writes */
    }
    for (uint64_t i = 0; i < r->ops && !worker_stopped(w); i++) {
        format_key(key, p->key_size, splitmix64(&w->rng) % p->num);
        size_t vlen = 0;
        uint64_t t0 = w->h ? now_ns() : 0;
        int rc = r->eng->get(w->state, (bench_slice){key, klen}, &vlen, &err);
        if (rc == BENCH_OK) {
            w->found++;
            w->bytes += klen + vlen;
        } else if (rc != BENCH_NOT_FOUND) {
            worker_fail(w, &err);
            return;
        }
        if (w->h) {
            hist_add(w->h, now_ns() - t0);
        }
        w->done++;
    }
}

static void do_read_seq(worker *w)
{
    run *r = w->r;
    const bench_engine *e = r->eng;
    bool reverse = r->kind == K_READREVERSE;
    void *it = NULL;
    bench_err err;
    if (e->iter_new(w->state, &it, &err) != BENCH_OK) {
        worker_fail(w, &err);
        return;
    }
    if (reverse) {
        e->iter_seek_last(it);
    } else {
        e->iter_seek_first(it);
    }
    uint64_t t0 = w->h ? now_ns() : 0;
    while (w->done < r->ops && e->iter_valid(it)) {
        /* Touch the key and value as a reader would; the slices are only borrowed. */
        w->bytes += e->iter_key(it).len + e->iter_value(it).len;
        w->done++;
        if (reverse) {
            e->iter_prev(it);
        } else {
            e->iter_next(it);
        }
        if (w->h) {
            uint64_t t1 = now_ns();
            hist_add(w->h, t1 - t0);
            t0 = t1;
        }
    }
    if (e->iter_status(it, &err) != BENCH_OK) {
        worker_fail(w, &err);
    }
    e->iter_free(it);
}

static void do_delete_random(worker *w)
{
    run *r = w->r;
    const workload_params *p = &r->params;
    char key[MAX_KEY_SIZE];
    bench_err err;
    for (uint64_t i = 0; i < r->ops && !worker_stopped(w); i++) {
        format_key(key, p->key_size, splitmix64(&w->rng) % p->num);
        uint64_t t0 = w->h ? now_ns() : 0;
        if (r->eng->del(w->state, (bench_slice){key, p->key_size}, r->level, &err) != BENCH_OK) {
            worker_fail(w, &err);
            return;
        }
        if (w->h) {
            hist_add(w->h, now_ns() - t0);
        }
        w->done++;
    }
}

/* Fills keys[0..n) with n distinct keys drawn from [base, base + range), range >= n. */
static void draw_distinct(worker *w, uint64_t base, uint64_t range, uint64_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool dup;
        do {
            keys[i] = base + splitmix64(&w->rng) % range;
            dup = false;
            for (size_t j = 0; j < i && !dup; j++) {
                dup = keys[j] == keys[i];
            }
        } while (dup);
    }
}

/* One attempt at the read-modify-write of the n keys (key_size bytes each) at `keys`. Returns the
 * engine's txn_commit code, or BENCH_ERROR after a failed read or write (the transaction then
 * rolled back). */
static int txn_attempt(worker *w, const char *keys, size_t n, bench_err *err)
{
    run *r = w->r;
    const bench_engine *e = r->eng;
    size_t ks = r->params.key_size;
    if (e->txn_begin(w->state, r->level, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        size_t vlen = 0;
        int rc = e->txn_get(w->state, (bench_slice){keys + i * ks, ks}, &vlen, err);
        w->reads++;
        if (rc == BENCH_OK) {
            w->found++;
        } else if (rc != BENCH_NOT_FOUND) {
            e->txn_abort(w->state);
            return BENCH_ERROR;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (e->txn_put(w->state, (bench_slice){keys + i * ks, ks}, next_value(w), err) !=
            BENCH_OK) {
            e->txn_abort(w->state);
            return BENCH_ERROR;
        }
    }
    return e->txn_commit(w->state, err);
}

/* txndisjoint and txnhot: r->ops committed transactions, each retried until it commits. */
static void do_txn(worker *w)
{
    run *r = w->r;
    const workload_params *p = &r->params;
    size_t n = p->txn_keys;
    uint64_t base = 0, range = p->hot_keys;
    if (r->kind == K_TXNDISJOINT) {
        range = p->num / (uint64_t)p->threads; /* parse_flags checked range >= n */
        base = range * (uint64_t)w->index;
    }
    uint64_t *ids = malloc(n * sizeof(*ids));
    char *keys = malloc(n * p->key_size);
    bench_err err;
    if (ids == NULL || keys == NULL) {
        snprintf(err.msg, sizeof(err.msg), "out of memory for a transaction of %zu keys", n);
        worker_fail(w, &err);
        goto out;
    }
    for (uint64_t i = 0; i < r->ops && !worker_stopped(w); i++) {
        draw_distinct(w, base, range, ids, n);
        for (size_t j = 0; j < n; j++) {
            format_key(keys + j * p->key_size, p->key_size, ids[j]);
        }
        uint64_t t0 = w->h ? now_ns() : 0;
        int rc;
        while ((rc = txn_attempt(w, keys, n, &err)) == BENCH_CONFLICT) {
            w->conflicts++;
            if (worker_stopped(w)) {
                goto out;
            }
        }
        if (rc != BENCH_OK) {
            worker_fail(w, &err);
            goto out;
        }
        if (w->h) {
            hist_add(w->h, now_ns() - t0);
        }
        w->done++;
    }
out:
    free(keys);
    free(ids);
}

void workload_run(worker *w)
{
    switch (w->r->kind) {
    case K_FILLSEQ:
    case K_FILLRANDOM:
    case K_OVERWRITE:
    case K_FILLSYNC:
        do_write(w);
        break;
    case K_FILLBATCH:
        do_write_batch(w);
        break;
    case K_READRANDOM:
    case K_READMISSING:
        do_read_random(w);
        break;
    case K_READSEQ:
    case K_READREVERSE:
        do_read_seq(w);
        break;
    case K_DELETERANDOM:
        do_delete_random(w);
        break;
    case K_TXNDISJOINT:
    case K_TXNHOT:
        do_txn(w);
        break;
    case K_REOPEN:
    case K_STATS:
        break;
    }
}
