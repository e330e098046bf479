/*
 * crash_server: SIGKILL of `shale serve` ($SHALE_BIN) under acknowledged client writes over both
 * protocols, with --durability full and with --durability os (a process kill, not a power loss:
 * a reply sent after an OS-level write must survive it too; docs/SERVER.md: "Every write is as
 * durable as --durability says when its reply is sent").
 *
 * One data directory goes through every cycle of a test. A cycle: four client threads (lanes)
 * work on the running server, each in its own key and document space (RESP keys
 * "cs<t><lane>:k<NN>" and counters "cs<t><lane>:c<N>", collection "cs<t><lane>" with ids
 * "d<NN>"; <t> names the variant, so a stray request of one test can never land in another's
 * space). A lane runs one operation at a time, each drawn deterministically from (seed, lane, op
 * index) and the lane's model (so a document insert always names an absent id, a PATCH a present
 * one): RESP SET, MSET (one batch), DEL (the reply must count the present keys), INCR (the reply
 * must be the model's next value), MULTI with 2..6 queued SET/DEL/INCR and EXEC (one transaction,
 * every reply in the array checked); HTTP POST of a document, POST .../batch of 1..6 documents,
 * PATCH and DELETE of .../documents/{id}, POST /transaction of 2..5 inserts, updates, replaces and
 * deletes (each sees the earlier ones). The lane counts an operation as acknowledged only when
 * its whole reply arrived and was the success the model predicts; then it applies it to its
 * model. A transport failure ends the lane: the operation it was running is the one in doubt
 * (at most one per lane); a transport failure before the kill, or any other reply, fails the test.
 * The main thread SIGKILLs the server at a random moment (after a random number of acks, after a
 * random delay, or both), joins the lanes, runs `shale check` ($SHALE_BIN) on the stopped
 * directory every fifth cycle (it must call it clean), restarts the server and reads, through the
 * server itself, every lane's whole space: MGET of every key and counter (each value byte for
 * byte what its header names), SCAN MATCH of the lane's prefix (no key the MGET did not see),
 * GET /find of the collection (every document's fields exactly as written; nothing with another
 * id), /find?g=G for each value of the indexed field "g" (the index agrees with the documents)
 * and GET .../documents/{id} of the ids the op in doubt touched and of a sample of the others
 * (every id every fifth cycle). Each lane must then equal its model after its last acknowledged
 * operation, or after the one in doubt, wholly: an MSET, MULTI, batch or /transaction is all
 * there or all absent. A mismatch names the differing keys and documents and whether the op in
 * doubt is partly there. The restarted server's /stats must not show last_sequence going back.
 * The restarted server serves the next cycle's lanes. Every fourth cycle, between the kill and
 * the restart, one more server is started on the directory and SIGKILLed 0..40 ms later, mostly
 * during its recovery, before it listens: that start must lose nothing either.
 *
 * Why this is sound: the lanes' spaces are disjoint and a lane waits for each reply before the
 * next request, so its acknowledged operations are totally ordered and only the one it was
 * running at the kill can be in doubt; the server has no graceful shutdown under SIGKILL, so a
 * reply that arrived was sent before the kill. Nothing is ever lost silently: a lost ack fails the
 * test before the report, which therefore always says "0 lost". "in doubt" counts the operations
 * in doubt at a kill that turned out applied. SHALE_CRASH_SEED=<n> replaces the operation seed
 * (the kill moments depend on timing); SHALE_CAMPAIGN_SCALE multiplies the cycles. The run ends
 * with a graceful stop and a last clean `shale check`.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "crash_common.h"
#include "net_util.h"
#include "testutil.h"

extern char **environ;

TestSuite(crash_server, .init = nu_setup, .fini = nu_teardown);

#define LANES   4
#define NKEYS   48u /* string keys per lane */
#define NCTR    4u  /* counters per lane */
#define NDOCS   40u /* document ids per lane */
#define NG      4u  /* values of the indexed field "g" */
#define MAX_EFF 8u  /* effects of one operation */
#define BODY    8192

enum kind {
    K_SET,
    K_MSET,
    K_DEL,
    K_INCR,
    K_MULTI,
    K_INSERT,
    K_BATCH,
    K_PATCH,
    K_DELDOC,
    K_TXN,
    KINDS
};

static const char *const kind_names[KINDS] = {"SET",          "MSET",        "DEL",   "INCR",
                                              "MULTI/EXEC",   "POST",        "batch", "PATCH",
                                              "DELETE (doc)", "/transaction"};

/* What an operation does to one key or document, in order. */
enum act { E_SET, E_DEL, E_INCR, E_INS, E_PATCH, E_REPL, E_DDEL };

typedef struct effect {
    uint8_t act;
    uint8_t g;    /* E_INS, E_PATCH, E_REPL: the new "g" */
    uint16_t idx; /* E_SET: key; E_DEL: key (< NKEYS) or counter (NKEYS + c); E_INCR: counter;
                   * the others: document */
} effect;

typedef struct op {
    enum kind kind;
    uint64_t j;
    uint32_t n;
    effect e[MAX_EFF];
} op;

typedef struct doc_state {
    bool present;
    uint8_t g;
    uint64_t v; /* the op that inserted or replaced it (its "v" and "s") */
    uint64_t u; /* the op that last patched it ("u"), 0: no "u" */
} doc_state;

typedef struct lane_model {
    uint64_t key[NKEYS]; /* the op whose value the key holds; 0: absent */
    int64_t ctr[NCTR];   /* the counter's value; 0: absent */
    doc_state doc[NDOCS];
} lane_model;

typedef struct variant {
    const char *name;
    char tag; /* names the variant's keys and collections */
    const char *durability;
    unsigned cycles;
    uint64_t max_acks; /* over all lanes */
    uint64_t max_delay_us;
    uint64_t seed;
} variant;

typedef struct lane {
    unsigned id;
    uint64_t next;         /* the first op of the coming cycle */
    lane_model m;          /* after the last acknowledged op */
    bool has_doubt;        /* `doubt` was started and got no whole reply */
    op doubt;              /* valid when has_doubt */
    uint64_t acked;        /* this cycle */
    uint64_t kinds[KINDS]; /* acked ops by kind, over the run */
    char coll[16];         /* "cs<t><lane>" */
    char prefix[16];       /* "cs<t><lane>:" */
} client_lane;

typedef struct run_state {
    variant v;
    char *dir;
    nu_server srv;
    client_lane lanes[LANES];
    /* The cycle's shared state between the lanes and the main thread. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t cycle_acks;
    unsigned lanes_done;
    atomic_bool killed;
    tu_failure fail;
    redisContext *vrc; /* the verifier's connection (here, so a failed check leaks nothing) */
    /* Totals. */
    uint64_t acked[KINDS], acked_ops, doubt_present, doubt_absent, docs_read, keys_read;
    /* From GET /stats after each restart. */
    uint64_t last_sequence, peak_tables, recovered_records, truncated_bytes;
    unsigned startup_kills, checks;
} run_state;

static run_state R;

/* ---- the deterministic operations -------------------------------------------------------- */

static uint64_t op_hash(uint64_t seed, unsigned lane, uint64_t j)
{
    return tu_mix64(seed ^ tu_mix64(((uint64_t)lane << 56) ^ j ^ 0x3c6ef372fe94f82bull));
}

static void apply_effect(lane_model *m, const effect *e, uint64_t j)
{
    switch (e->act) {
    case E_SET:
        m->key[e->idx] = j;
        break;
    case E_DEL:
        if (e->idx < NKEYS) {
            m->key[e->idx] = 0;
        } else {
            m->ctr[e->idx - NKEYS] = 0;
        }
        break;
    case E_INCR:
        m->ctr[e->idx]++;
        break;
    case E_INS:
    case E_REPL:
        m->doc[e->idx] = (doc_state){.present = true, .g = e->g, .v = j};
        break;
    case E_PATCH:
        m->doc[e->idx].g = e->g;
        m->doc[e->idx].u = j;
        break;
    default:
        m->doc[e->idx] = (doc_state){0};
        break;
    }
}

static void apply_op(lane_model *m, const op *o)
{
    for (uint32_t i = 0; i < o->n; i++) {
        apply_effect(m, &o->e[i], o->j);
    }
}

/* A random document that is present (want) or absent (!want) in `m`, or -1. */
static int pick_doc(tu_rng *r, const lane_model *m, bool want)
{
    uint32_t start = (uint32_t)tu_rng_below(r, NDOCS);
    for (uint32_t i = 0; i < NDOCS; i++) {
        uint32_t d = (start + i) % NDOCS;
        if (m->doc[d].present == want) {
            return (int)d;
        }
    }
    return -1;
}

/* Adds the effect to `o` and applies it to the simulation `sim`. */
static void add(op *o, lane_model *sim, uint8_t act, uint32_t idx, uint8_t g)
{
    o->e[o->n] = (effect){.act = act, .g = g, .idx = (uint16_t)idx};
    apply_effect(sim, &o->e[o->n], o->j);
    o->n++;
}

static bool has_idx(const op *o, uint32_t idx)
{
    for (uint32_t i = 0; i < o->n; i++) {
        if (o->e[i].idx == idx) {
            return true;
        }
    }
    return false;
}

/* A key (string or counter) not yet among the op's effects. */
static uint32_t fresh_key(tu_rng *r, const op *o, uint32_t range)
{
    uint32_t k;
    do {
        k = (uint32_t)tu_rng_below(r, range);
    } while (has_idx(o, k));
    return k;
}

/* Op j of a lane in state `m`: every document effect names a document in the state it needs
 * (a simulation of the op's own earlier effects included). */
static void gen_op(uint64_t seed, unsigned lane, uint64_t j, const lane_model *m, op *o)
{
    static const uint8_t weights[KINDS] = {14, 8, 8, 8, 10, 10, 10, 12, 8, 12};
    tu_rng r;
    lane_model sim = *m;
    uint64_t w = 0, pick;

    tu_rng_seed(&r, op_hash(seed, lane, j));
    for (int k = 0; k < KINDS; k++) {
        w += weights[k];
    }
    pick = tu_rng_below(&r, w);
    int kind = 0;
    while (pick >= weights[kind]) {
        pick -= weights[kind++];
    }
    memset(o, 0, sizeof *o);
    o->j = j;
    /* Document ops on a full or empty collection turn into the op that is possible. */
    if ((kind == K_INSERT || kind == K_BATCH) && pick_doc(&r, m, false) < 0) {
        kind = K_DELDOC;
    } else if ((kind == K_PATCH || kind == K_DELDOC) && pick_doc(&r, m, true) < 0) {
        kind = K_INSERT;
    }
    o->kind = (enum kind)kind;
    uint8_t g = (uint8_t)tu_rng_below(&r, NG);
    switch (o->kind) {
    case K_SET:
        add(o, &sim, E_SET, (uint32_t)tu_rng_below(&r, NKEYS), 0);
        break;
    case K_MSET: {
        uint32_t n = 2 + (uint32_t)tu_rng_below(&r, 4);
        for (uint32_t i = 0; i < n; i++) {
            add(o, &sim, E_SET, fresh_key(&r, o, NKEYS), 0);
        }
        break;
    }
    case K_DEL: {
        uint32_t n = 1 + (uint32_t)tu_rng_below(&r, 3);
        for (uint32_t i = 0; i < n; i++) {
            add(o, &sim, E_DEL, fresh_key(&r, o, NKEYS + NCTR), 0);
        }
        break;
    }
    case K_INCR:
        add(o, &sim, E_INCR, (uint32_t)tu_rng_below(&r, NCTR), 0);
        break;
    case K_MULTI: {
        /* The same key may come twice: the queue runs in order. */
        uint32_t n = 2 + (uint32_t)tu_rng_below(&r, 5);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t a = tu_rng_below(&r, 10);
            if (a < 5) {
                add(o, &sim, E_SET, (uint32_t)tu_rng_below(&r, NKEYS), 0);
            } else if (a < 8) {
                add(o, &sim, E_DEL, (uint32_t)tu_rng_below(&r, NKEYS + NCTR), 0);
            } else {
                add(o, &sim, E_INCR, (uint32_t)tu_rng_below(&r, NCTR), 0);
            }
        }
        break;
    }
    case K_INSERT:
        add(o, &sim, E_INS, (uint32_t)pick_doc(&r, &sim, false), g);
        break;
    case K_BATCH: {
        uint32_t n = 1 + (uint32_t)tu_rng_below(&r, 6);
        int d;
        for (uint32_t i = 0; i < n && (d = pick_doc(&r, &sim, false)) >= 0; i++) {
            add(o, &sim, E_INS, (uint32_t)d, (uint8_t)tu_rng_below(&r, NG));
        }
        break;
    }
    case K_PATCH:
        add(o, &sim, E_PATCH, (uint32_t)pick_doc(&r, &sim, true), g);
        break;
    case K_DELDOC:
        add(o, &sim, E_DDEL, (uint32_t)pick_doc(&r, &sim, true), 0);
        break;
    default: {
        /* /transaction: inserts, updates, replaces and deletes, each seeing the earlier ones
         * (an insert may be updated or deleted again within the same transaction). */
        uint32_t n = 2 + (uint32_t)tu_rng_below(&r, 4);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t a = tu_rng_below(&r, 4);
            int d = pick_doc(&r, &sim, a != 0);
            if (d < 0) {
                a = a == 0 ? 3 : 0;
                d = pick_doc(&r, &sim, a != 0);
            }
            uint8_t gg = (uint8_t)tu_rng_below(&r, NG);
            add(o, &sim,
                a == 0   ? E_INS
                : a == 1 ? E_PATCH
                : a == 2 ? E_REPL
                         : E_DDEL,
                (uint32_t)d, gg);
        }
        break;
    }
    }
}

/* ---- values and documents ------------------------------------------------------------------ */

/* The value op j writes to string key k of `lane`: names all three, padded to a length that
 * varies with them. */
static size_t make_value(char *buf, size_t cap, unsigned lane, uint64_t j, uint32_t k)
{
    int n = snprintf(buf, cap, "L%u J%" PRIu64 " K%u|", lane, j, k);
    size_t len = (size_t)n + (size_t)(tu_mix64(j * 131 + k + ((uint64_t)lane << 40)) % 160);
    for (size_t i = (size_t)n; i < len && i + 1 < cap; i++) {
        buf[i] = (char)('a' + (j + k + i) % 26);
    }
    buf[len] = '\0';
    return len;
}

/* The "s" field of document d written by op v. */
static void make_pad(char *buf, size_t cap, unsigned lane, uint64_t v, uint32_t d)
{
    size_t len = 4 + (size_t)(tu_mix64(v * 7919 + d + ((uint64_t)lane << 32)) % 60);
    if (len >= cap) {
        len = cap - 1;
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = (char)('a' + (v + d + 3 * i) % 26);
    }
    buf[len] = '\0';
}

static void key_name(char *buf, size_t cap, const client_lane *ln, uint32_t idx)
{
    if (idx < NKEYS) {
        snprintf(buf, cap, "%sk%02u", ln->prefix, idx);
    } else {
        snprintf(buf, cap, "%sc%u", ln->prefix, idx - NKEYS);
    }
}

/* Appends to `out` (at *len) what fmt makes. */
__attribute__((format(printf, 4, 5))) static void cat(char *out, size_t cap, size_t *len,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = *len < cap ? vsnprintf(out + *len, cap - *len, fmt, ap) : 0;
    va_end(ap);
    *len += n > 0 ? (size_t)n : 0;
}

/* A full document body (insert, replace): {"_id"?,"g","v","s"}. */
static void doc_body(char *out, size_t cap, size_t *len, unsigned lane, uint32_t d, uint8_t g,
                     uint64_t v, bool with_id)
{
    char pad[80];
    make_pad(pad, sizeof pad, lane, v, d);
    if (with_id) {
        cat(out, cap, len, "{\"_id\":\"d%02u\",", d);
    } else {
        cat(out, cap, len, "{");
    }
    cat(out, cap, len, "\"g\":%u,\"v\":%" PRIu64 ",\"s\":\"%s\"}", g, v, pad);
}

/* Reads a document object into *st, checking that it is one of this lane's, with exactly the
 * fields our writes make and "s" as its "v" says; false with `why` otherwise. *d gets its slot. */
static bool parse_doc(json_t *o, unsigned lane, uint32_t *d, doc_state *st, char *why, size_t cap)
{
    const char *id = json_string_value(json_object_get(o, "_id"));
    unsigned k = 0;
    char tail = 0;
    if (!json_is_object(o) || id == NULL || sscanf(id, "d%2u%c", &k, &tail) != 1 || k >= NDOCS ||
        strlen(id) != 3) {
        snprintf(why, cap, "a foreign document (_id %s)", id != NULL ? id : "missing");
        return false;
    }
    json_t *g = json_object_get(o, "g"), *v = json_object_get(o, "v");
    json_t *s = json_object_get(o, "s"), *u = json_object_get(o, "u");
    size_t want_fields = 4 + (u != NULL);
    if (!json_is_integer(g) || !json_is_integer(v) || !json_is_string(s) ||
        (u != NULL && !json_is_integer(u)) || json_object_size(o) != want_fields ||
        json_integer_value(g) < 0 || json_integer_value(g) >= (json_int_t)NG ||
        json_integer_value(v) <= 0 || (u != NULL && json_integer_value(u) <= 0)) {
        char *dump = json_dumps(o, JSON_COMPACT);
        snprintf(why, cap, "document %s is malformed: %.200s", id, dump != NULL ? dump : "?");
        free(dump);
        return false;
    }
    *d = k;
    *st = (doc_state){.present = true,
                      .g = (uint8_t)json_integer_value(g),
                      .v = (uint64_t)json_integer_value(v),
                      .u = u != NULL ? (uint64_t)json_integer_value(u) : 0};
    char pad[80];
    make_pad(pad, sizeof pad, lane, st->v, k);
    if (strcmp(json_string_value(s), pad) != 0) {
        snprintf(why, cap, "document %s: \"s\" is not what op %" PRIu64 " wrote", id, st->v);
        return false;
    }
    return true;
}

static bool doc_eq(const doc_state *a, const doc_state *b)
{
    return a->present == b->present &&
           (!a->present || (a->g == b->g && a->v == b->v && a->u == b->u));
}

/* ---- a lane (worker thread: never cr_assert) ----------------------------------------------- */

enum outcome { OUT_OK, OUT_TRANSPORT, OUT_BAD };

typedef struct lane_ctx {
    client_lane *ln;
    redisContext *rc;
    CURL *curl;
    struct curl_slist *hdrs;
    char body[BODY];
    size_t body_len;
    char *reply;
    size_t reply_len, reply_cap;
    char why[1024];
} lane_ctx;

static size_t on_reply(char *data, size_t size, size_t nmemb, void *ud)
{
    lane_ctx *c = ud;
    size_t n = size * nmemb;
    if (c->reply_len + n + 1 > c->reply_cap) {
        size_t cap = c->reply_cap ? c->reply_cap : 4096;
        while (cap < c->reply_len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(c->reply, cap);
        if (p == NULL) {
            return 0;
        }
        c->reply = p;
        c->reply_cap = cap;
    }
    memcpy(c->reply + c->reply_len, data, n);
    c->reply_len += n;
    c->reply[c->reply_len] = '\0';
    return n;
}

/* One HTTP request on the lane's keep-alive handle; *status 0 on a transport failure. */
static enum outcome http(lane_ctx *c, const char *method, const char *path, bool with_body,
                         long *status)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", R.srv.url, path);
    c->reply_len = 0;
    if (c->reply != NULL) {
        c->reply[0] = '\0';
    }
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (with_body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    CURLcode cc = curl_easy_perform(c->curl);
    *status = 0;
    if (cc != CURLE_OK) {
        snprintf(c->why, sizeof c->why, "%s %s: %s", method, path, curl_easy_strerror(cc));
        return OUT_TRANSPORT;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    return OUT_OK;
}

/* Checks a returned document against the model state `want` of slot d. */
static bool check_returned(lane_ctx *c, json_t *o, uint32_t d, const doc_state *want,
                           const char *what)
{
    uint32_t got_d = 0;
    doc_state got;
    char why[300];
    if (!parse_doc(o, c->ln->id, &got_d, &got, why, sizeof why)) {
        snprintf(c->why, sizeof c->why, "%s returned %s", what, why);
        return false;
    }
    if (got_d != d || !doc_eq(&got, want)) {
        snprintf(c->why, sizeof c->why,
                 "%s returned d%02u g%u v%" PRIu64 " u%" PRIu64 ", want d%02u g%u v%" PRIu64
                 " u%" PRIu64,
                 what, got_d, got.g, got.v, got.u, d, want->g, want->v, want->u);
        return false;
    }
    return true;
}

static enum outcome run_http(lane_ctx *c, const op *o)
{
    const client_lane *ln = c->ln;
    lane_model after = ln->m;
    char path[128];
    long status = 0, want_status;
    const char *method = "POST";
    bool with_body = true;

    apply_op(&after, o);
    c->body_len = 0;
    if (o->kind == K_INSERT) {
        snprintf(path, sizeof path, "/collections/%s", ln->coll);
        doc_body(c->body, BODY, &c->body_len, ln->id, o->e[0].idx, o->e[0].g, o->j, true);
        want_status = 201;
    } else if (o->kind == K_BATCH) {
        snprintf(path, sizeof path, "/collections/%s/batch", ln->coll);
        cat(c->body, BODY, &c->body_len, "{\"documents\":[");
        for (uint32_t i = 0; i < o->n; i++) {
            cat(c->body, BODY, &c->body_len, "%s", i > 0 ? "," : "");
            doc_body(c->body, BODY, &c->body_len, ln->id, o->e[i].idx, o->e[i].g, o->j, true);
        }
        cat(c->body, BODY, &c->body_len, "]}");
        want_status = 201;
    } else if (o->kind == K_PATCH) {
        snprintf(path, sizeof path, "/collections/%s/documents/d%02u", ln->coll, o->e[0].idx);
        cat(c->body, BODY, &c->body_len, "{\"g\":%u,\"u\":%" PRIu64 "}", o->e[0].g, o->j);
        method = "PATCH";
        want_status = 200;
    } else if (o->kind == K_DELDOC) {
        snprintf(path, sizeof path, "/collections/%s/documents/d%02u", ln->coll, o->e[0].idx);
        method = "DELETE";
        with_body = false;
        want_status = 204;
    } else {
        snprintf(path, sizeof path, "/transaction");
        cat(c->body, BODY, &c->body_len, "{\"operations\":[");
        for (uint32_t i = 0; i < o->n; i++) {
            const effect *e = &o->e[i];
            static const char *const names[] = {[E_INS] = "insert",
                                                [E_PATCH] = "update",
                                                [E_REPL] = "replace",
                                                [E_DDEL] = "delete"};
            cat(c->body, BODY, &c->body_len, "%s{\"op\":\"%s\",\"collection\":\"%s\"",
                i > 0 ? "," : "", names[e->act], ln->coll);
            if (e->act != E_INS) {
                cat(c->body, BODY, &c->body_len, ",\"id\":\"d%02u\"", e->idx);
            }
            if (e->act == E_INS || e->act == E_REPL) {
                cat(c->body, BODY, &c->body_len, ",\"document\":");
                doc_body(c->body, BODY, &c->body_len, ln->id, e->idx, e->g, o->j, e->act == E_INS);
            } else if (e->act == E_PATCH) {
                cat(c->body, BODY, &c->body_len, ",\"document\":{\"g\":%u,\"u\":%" PRIu64 "}", e->g,
                    o->j);
            }
            cat(c->body, BODY, &c->body_len, "}");
        }
        cat(c->body, BODY, &c->body_len, "]}");
        want_status = 200;
    }
    if (c->body_len >= BODY) {
        snprintf(c->why, sizeof c->why, "op %" PRIu64 ": body too long", o->j);
        return OUT_BAD;
    }
    enum outcome out = http(c, method, path, with_body, &status);
    if (out != OUT_OK) {
        return out;
    }
    if (status != want_status) {
        snprintf(c->why, sizeof c->why, "%s %s: status %ld, want %ld: %.200s", method, path, status,
                 want_status, c->reply != NULL ? c->reply : "");
        return OUT_BAD;
    }
    if (o->kind == K_DELDOC) {
        return OUT_OK;
    }
    json_error_t je;
    json_t *j = json_loadb(c->reply != NULL ? c->reply : "", c->reply_len, 0, &je);
    if (j == NULL) {
        snprintf(c->why, sizeof c->why, "%s %s: invalid JSON reply: %.200s", method, path,
                 c->reply != NULL ? c->reply : "");
        return OUT_BAD;
    }
    bool ok = true;
    if (o->kind == K_INSERT || o->kind == K_PATCH) {
        ok = check_returned(c, j, o->e[0].idx, &after.doc[o->e[0].idx], path);
    } else if (o->kind == K_BATCH) {
        json_t *n = json_object_get(j, "inserted_count");
        json_t *docs = json_object_get(j, "documents");
        ok = json_is_integer(n) && json_integer_value(n) == (json_int_t)o->n &&
             json_array_size(docs) == o->n;
        if (!ok) {
            snprintf(c->why, sizeof c->why, "batch of %u: reply %.200s", o->n, c->reply);
        }
    } else {
        json_t *res = json_object_get(j, "results");
        ok = json_is_true(json_object_get(j, "success")) && json_array_size(res) == o->n;
        if (!ok) {
            snprintf(c->why, sizeof c->why, "transaction of %u: reply %.200s", o->n, c->reply);
        }
    }
    json_decref(j);
    return ok ? OUT_OK : OUT_BAD;
}

/* The reply of one command, as the model predicts it. */
typedef struct want_reply {
    int type; /* REDIS_REPLY_STATUS ("OK"/"QUEUED") or REDIS_REPLY_INTEGER */
    const char *status;
    long long integer;
} want_reply;

static bool reply_is(lane_ctx *c, const redisReply *r, const want_reply *w, const char *what)
{
    bool ok = r->type == w->type && (w->type == REDIS_REPLY_STATUS ? strcmp(r->str, w->status) == 0
                                                                   : r->integer == w->integer);
    if (!ok) {
        snprintf(c->why, sizeof c->why, "%s: reply type %d \"%s\" :%lld, want type %d \"%s\" :%lld",
                 what, r->type, r->str != NULL ? r->str : "", r->integer, w->type,
                 w->status != NULL ? w->status : "", w->integer);
    }
    return ok;
}

/* Appends one command (SET/DEL/INCR of effect e, or the MSET/DEL of the whole op) and returns
 * the reply it must get, given `sim` (updated). */
static want_reply append_effect(lane_ctx *c, lane_model *sim, const effect *e, uint64_t j)
{
    char key[40], val[256];
    const char *argv[3];
    size_t lens[3];
    key_name(key, sizeof key, c->ln, e->act == E_INCR ? NKEYS + e->idx : e->idx);
    want_reply w = {.type = REDIS_REPLY_INTEGER};
    argv[1] = key;
    lens[1] = strlen(key);
    if (e->act == E_SET) {
        argv[0] = "SET";
        argv[2] = val;
        lens[2] = make_value(val, sizeof val, c->ln->id, j, e->idx);
        w = (want_reply){.type = REDIS_REPLY_STATUS, .status = "OK"};
    } else if (e->act == E_DEL) {
        argv[0] = "DEL";
        w.integer = e->idx < NKEYS ? sim->key[e->idx] != 0 : sim->ctr[e->idx - NKEYS] != 0;
    } else {
        argv[0] = "INCR";
        w.integer = sim->ctr[e->idx] + 1;
    }
    lens[0] = strlen(argv[0]);
    redisAppendCommandArgv(c->rc, e->act == E_SET ? 3 : 2, argv, lens);
    apply_effect(sim, e, j);
    return w;
}

/* Reads one reply; OUT_TRANSPORT when the connection ended. */
static enum outcome get_reply(lane_ctx *c, redisReply **r)
{
    void *p = NULL;
    if (redisGetReply(c->rc, &p) != REDIS_OK || p == NULL) {
        snprintf(c->why, sizeof c->why, "RESP: %s", c->rc->errstr);
        *r = NULL;
        return OUT_TRANSPORT;
    }
    *r = p;
    return OUT_OK;
}

static enum outcome run_resp(lane_ctx *c, const op *o)
{
    lane_model sim = c->ln->m;
    want_reply w[2 * MAX_EFF + 2];
    uint32_t nw = 0;
    char what[64];

    snprintf(what, sizeof what, "op %" PRIu64 " (%s)", o->j, kind_names[o->kind]);
    if (o->kind == K_MSET || o->kind == K_DEL) {
        /* One command over all the keys. */
        const char *argv[1 + 2 * MAX_EFF];
        size_t lens[1 + 2 * MAX_EFF];
        char keys[MAX_EFF][40], vals[MAX_EFF][256];
        int argc = 0;
        long long present = 0;
        argv[argc] = o->kind == K_MSET ? "MSET" : "DEL";
        lens[argc] = strlen(argv[argc]);
        argc++;
        for (uint32_t i = 0; i < o->n; i++) {
            const effect *e = &o->e[i];
            key_name(keys[i], sizeof keys[i], c->ln, e->idx);
            argv[argc] = keys[i];
            lens[argc++] = strlen(keys[i]);
            if (o->kind == K_MSET) {
                argv[argc] = vals[i];
                lens[argc++] = make_value(vals[i], sizeof vals[i], c->ln->id, o->j, e->idx);
            } else {
                present += e->idx < NKEYS ? sim.key[e->idx] != 0 : sim.ctr[e->idx - NKEYS] != 0;
            }
        }
        redisAppendCommandArgv(c->rc, argc, argv, lens);
        w[nw++] = o->kind == K_MSET ? (want_reply){.type = REDIS_REPLY_STATUS, .status = "OK"}
                                    : (want_reply){.type = REDIS_REPLY_INTEGER, .integer = present};
    } else if (o->kind == K_MULTI) {
        const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
        size_t ml[] = {5}, el[] = {4};
        redisAppendCommandArgv(c->rc, 1, multi, ml);
        w[nw++] = (want_reply){.type = REDIS_REPLY_STATUS, .status = "OK"};
        for (uint32_t i = 0; i < o->n; i++) {
            w[1 + o->n + i] = append_effect(c, &sim, &o->e[i], o->j);
            w[nw++] = (want_reply){.type = REDIS_REPLY_STATUS, .status = "QUEUED"};
        }
        redisAppendCommandArgv(c->rc, 1, exec, el);
    } else {
        w[nw++] = append_effect(c, &sim, &o->e[0], o->j);
    }
    /* Every reply before EXEC's (MULTI's +OK, the +QUEUED ones), then EXEC's array. */
    for (uint32_t i = 0; i < nw; i++) {
        redisReply *r;
        if (get_reply(c, &r) != OUT_OK) {
            return OUT_TRANSPORT;
        }
        bool ok = reply_is(c, r, &w[i], what);
        freeReplyObject(r);
        if (!ok) {
            return OUT_BAD;
        }
    }
    if (o->kind != K_MULTI) {
        return OUT_OK;
    }
    redisReply *r;
    if (get_reply(c, &r) != OUT_OK) {
        return OUT_TRANSPORT;
    }
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == o->n;
    if (!ok) {
        snprintf(c->why, sizeof c->why, "%s: EXEC reply type %d \"%s\" with %zu elements, want %u",
                 what, r->type, r->str != NULL ? r->str : "", r->elements, o->n);
    }
    for (uint32_t i = 0; ok && i < o->n; i++) {
        ok = reply_is(c, r->element[i], &w[1 + o->n + i], what);
    }
    freeReplyObject(r);
    return ok ? OUT_OK : OUT_BAD;
}

static void lane_finish(void)
{
    pthread_mutex_lock(&R.mu);
    R.lanes_done++;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

/* A transport failure is expected only once the main thread decided to kill the server. */
static void transport_failed(lane_ctx *c, const op *o)
{
    if (!atomic_load(&R.killed)) {
        tu_fail(&R.fail,
                "%s seed %" PRIu64 " lane %u op %" PRIu64 " (%s): the connection failed before "
                "the kill: %s",
                R.v.name, R.v.seed, c->ln->id, o != NULL ? o->j : 0,
                o != NULL ? kind_names[o->kind] : "connect", c->why);
    }
}

static void *lane_main(void *arg)
{
    lane_ctx *c = arg;
    client_lane *ln = c->ln;
    struct timeval tv = {.tv_sec = NU_DEADLINE_MS / 1000};

    c->rc = redisConnectWithTimeout("127.0.0.1", R.srv.resp_port, tv);
    c->curl = curl_easy_init();
    if (c->rc == NULL || c->rc->err != 0 || c->curl == NULL) {
        snprintf(c->why, sizeof c->why, "connect: %s",
                 c->rc != NULL ? c->rc->errstr : "out of memory");
        transport_failed(c, NULL);
        lane_finish();
        return NULL;
    }
    redisSetTimeout(c->rc, tv);
    c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)NU_DEADLINE_MS);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_reply);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);

    for (uint64_t j = ln->next; !tu_failed(&R.fail); j++) {
        op o;
        gen_op(R.v.seed, ln->id, j, &ln->m, &o);
        ln->doubt = o;
        ln->has_doubt = true;
        enum outcome out = o.kind < K_INSERT ? run_resp(c, &o) : run_http(c, &o);
        if (out == OUT_TRANSPORT) {
            transport_failed(c, &o);
            break;
        }
        if (out == OUT_BAD) {
            tu_fail(&R.fail, "%s seed %" PRIu64 " lane %u: %s", R.v.name, R.v.seed, ln->id, c->why);
            break;
        }
        apply_op(&ln->m, &o);
        ln->has_doubt = false;
        ln->acked++;
        ln->kinds[o.kind]++;
        pthread_mutex_lock(&R.mu);
        R.cycle_acks++;
        pthread_cond_broadcast(&R.cv);
        pthread_mutex_unlock(&R.mu);
    }
    lane_finish();
    return NULL;
}

/* ---- the main thread: the server, the kill, the check -------------------------------------- */

static void start_server(void)
{
    const char *extra[] = {
        "--durability", R.v.durability, "--threads", "2", "--max-memory", "4", NULL};
    nu_start(&R.srv, R.dir, extra);
}

/* Starts the server again and SIGKILLs it 0..40 ms later, mostly while it recovers and before
 * it listens (nu_start would wait for the ready line): a kill during recovery must lose nothing
 * either. Its output goes to /dev/null. */
static void kill_in_startup(tu_rng *rng)
{
    const char *bin = getenv("SHALE_BIN");
    const char *argv[] = {
        bin,      "serve",       "--data",       R.dir,          "--http",       "127.0.0.1:0",
        "--resp", "127.0.0.1:0", "--durability", R.v.durability, "--max-memory", "4",
        NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", bin, strerror(rc));
    tu_sleep_us(tu_rng_below(rng, 40001)); /* the kill's random moment */
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s seed %" PRIu64 ": the server killed during its start ended with status 0x%x",
              R.v.name, R.v.seed, status);
    R.startup_kills++;
}

/* Waits until `want` acks came this cycle, every lane ended, or `wait_ms` passed. */
static void wait_acks(uint64_t want, long wait_ms)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += wait_ms / 1000;
    end.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&R.mu);
    while (R.cycle_acks < want && R.lanes_done < LANES) {
        if (pthread_cond_timedwait(&R.cv, &R.mu, &end) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&R.mu);
}

/* Runs the lanes on the running server and kills it at a random moment. */
static void crash_cycle(tu_rng *rng, unsigned cycle)
{
    static lane_ctx ctx[LANES];
    pthread_t th[LANES];
    char ctxmsg[128];

    tu_failure_init(&R.fail);
    R.cycle_acks = 0;
    R.lanes_done = 0;
    atomic_store(&R.killed, false);
    for (unsigned l = 0; l < LANES; l++) {
        memset(&ctx[l], 0, sizeof ctx[l]);
        ctx[l].ln = &R.lanes[l];
        R.lanes[l].has_doubt = false;
        R.lanes[l].acked = 0;
        cr_assert_eq(pthread_create(&th[l], NULL, lane_main, &ctx[l]), 0);
    }
    uint64_t mode = tu_rng_below(rng, 3);
    uint64_t want = mode == 1 ? 0 : tu_rng_below(rng, R.v.max_acks + 1);
    uint64_t delay = mode == 0   ? 0
                     : mode == 1 ? tu_rng_below(rng, R.v.max_delay_us + 1)
                                 : tu_rng_below(rng, R.v.max_delay_us / 4 + 1);
    /* Under a slow sanitizer build past 3 s without the planned acks the kill comes anyway. */
    wait_acks(want, 3000);
    if (delay > 0) {
        tu_sleep_us(delay); /* the kill's random moment, not a synchronisation */
    }
    /* The server must still be running: one that ended on its own (a crash, an exit on an
     * error) is a failure, named with its stderr. waitid(WNOWAIT) looks without reaping. */
    siginfo_t si = {0};
    int wrc = waitid(P_PID, (id_t)R.srv.pid, &si, WEXITED | WNOHANG | WNOWAIT);
    if (wrc == 0 && si.si_pid == R.srv.pid) {
        char *log = nu_log(&R.srv);
        cr_assert_fail("%s seed %" PRIu64 " cycle %u: the server ended on its own before the "
                       "kill (%s %d); lanes: %s; stderr:\n%s",
                       R.v.name, R.v.seed, cycle, si.si_code == CLD_EXITED ? "exit" : "signal",
                       si.si_status, tu_failed(&R.fail) ? R.fail.why : "no failure", log);
    }
    atomic_store(&R.killed, true);
    nu_kill9(&R.srv);
    for (unsigned l = 0; l < LANES; l++) {
        pthread_join(th[l], NULL);
        redisFree(ctx[l].rc);
        curl_slist_free_all(ctx[l].hdrs);
        curl_easy_cleanup(ctx[l].curl);
        free(ctx[l].reply);
    }
    snprintf(ctxmsg, sizeof ctxmsg, "%s seed %" PRIu64 " cycle %u", R.v.name, R.v.seed, cycle);
    tu_failure_check(&R.fail, ctxmsg);
}

static redisReply *cmd_argv(redisContext *rc, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, lens);
    cr_assert_not_null(r, "%s seed %" PRIu64 ": %s: no reply (%s)", R.v.name, R.v.seed, argv[0],
                       rc->errstr);
    return r;
}

/* MGET of every key and counter, then SCAN MATCH of the lane's prefix. */
static void read_keys(redisContext *rc, const client_lane *ln, lane_model *a, unsigned cycle)
{
    const char *argv[1 + NKEYS + NCTR];
    size_t lens[1 + NKEYS + NCTR];
    char names[NKEYS + NCTR][40];
    argv[0] = "MGET";
    lens[0] = 4;
    for (uint32_t i = 0; i < NKEYS + NCTR; i++) {
        key_name(names[i], sizeof names[i], ln, i);
        argv[1 + i] = names[i];
        lens[1 + i] = strlen(names[i]);
    }
    redisReply *r = cmd_argv(rc, 1 + NKEYS + NCTR, argv, lens);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == NKEYS + NCTR,
              "%s cycle %u: MGET reply type %d", R.v.name, cycle, r->type);
    uint32_t present = 0;
    for (uint32_t i = 0; i < NKEYS + NCTR; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_NIL) {
            continue;
        }
        cr_assert_eq(e->type, REDIS_REPLY_STRING, "%s cycle %u: MGET %s: type %d", R.v.name, cycle,
                     names[i], e->type);
        present++;
        if (i >= NKEYS) {
            char *end;
            long long v = strtoll(e->str, &end, 10);
            cr_assert(*end == '\0' && v > 0 && end != e->str,
                      "%s seed %" PRIu64 " cycle %u: counter %s holds \"%.40s\"", R.v.name,
                      R.v.seed, cycle, names[i], e->str);
            a->ctr[i - NKEYS] = v;
            continue;
        }
        unsigned vl = 0, vk = 0;
        uint64_t vj = 0;
        char head[64], want[256];
        tu_head(head, sizeof head, e->str, e->len);
        int fields = sscanf(head, "L%u J%" SCNu64 " K%u|", &vl, &vj, &vk);
        cr_assert(fields == 3 && vl == ln->id && vk == i && vj > 0,
                  "%s seed %" PRIu64 " cycle %u: %s holds a foreign value '%.40s'", R.v.name,
                  R.v.seed, cycle, names[i], head);
        size_t wl = make_value(want, sizeof want, ln->id, vj, i);
        cr_assert(wl == e->len && memcmp(want, e->str, wl) == 0,
                  "%s seed %" PRIu64 " cycle %u: %s: the value of op %" PRIu64 " is damaged",
                  R.v.name, R.v.seed, cycle, names[i], vj);
        a->key[i] = vj;
    }
    freeReplyObject(r);
    R.keys_read += NKEYS + NCTR;

    /* SCAN sees exactly the keys MGET found, nothing else under the prefix. */
    char cursor[32] = "0", match[32];
    bool seen[NKEYS + NCTR] = {0};
    uint32_t distinct = 0;
    snprintf(match, sizeof match, "%s*", ln->prefix);
    for (int calls = 0;; calls++) {
        const char *sargv[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
        size_t sl[6];
        for (int i = 0; i < 6; i++) {
            sl[i] = strlen(sargv[i]);
        }
        r = cmd_argv(rc, 6, sargv, sl);
        cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                      r->element[0]->type == REDIS_REPLY_STRING &&
                      r->element[1]->type == REDIS_REPLY_ARRAY,
                  "%s cycle %u: SCAN reply type %d", R.v.name, cycle, r->type);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            uint32_t idx = NKEYS + NCTR;
            for (uint32_t n = 0; n < NKEYS + NCTR; n++) {
                if (strcmp(k, names[n]) == 0) {
                    idx = n;
                }
            }
            cr_assert(idx < NKEYS + NCTR &&
                          (idx < NKEYS ? a->key[idx] != 0 : a->ctr[idx - NKEYS] != 0),
                      "%s seed %" PRIu64 " cycle %u: SCAN found %s, which MGET did not", R.v.name,
                      R.v.seed, cycle, k);
            distinct += !seen[idx];
            seen[idx] = true;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0) {
            break;
        }
        cr_assert_lt(calls, 1000, "%s: SCAN does not end", R.v.name);
    }
    cr_assert_eq(distinct, present, "%s seed %" PRIu64 " cycle %u: SCAN saw %u keys, MGET %u",
                 R.v.name, R.v.seed, cycle, distinct, present);
}

/* GET path; returns the parsed JSON body after checking the status. */
static json_t *get_json(const char *path, long want, unsigned cycle)
{
    char ctx[200];
    snprintf(ctx, sizeof ctx, "%s seed %" PRIu64 " cycle %u: GET %s", R.v.name, R.v.seed, cycle,
             path);
    nu_resp r = NU_GET(&R.srv, path);
    nu_expect_status(&r, want, ctx);
    json_t *j = want == 200 ? nu_json(&r) : NULL;
    nu_resp_free(&r);
    return j;
}

/* /find of the whole collection, /find?g=G, and GET of some documents. */
static void read_docs(const client_lane *ln, lane_model *a, tu_rng *rng, unsigned cycle)
{
    char path[200], why[300];
    snprintf(path, sizeof path, "/collections/%s/find?limit=1000", ln->coll);
    json_t *page = get_json(path, 200, cycle);
    json_t *docs = nu_jget(page, "documents", JSON_ARRAY, path);
    size_t i;
    json_t *o;
    uint32_t n = 0;
    json_array_foreach(docs, i, o)
    {
        uint32_t d;
        doc_state st;
        cr_assert(parse_doc(o, ln->id, &d, &st, why, sizeof why),
                  "%s seed %" PRIu64 " cycle %u: %s: %s", R.v.name, R.v.seed, cycle, path, why);
        cr_assert(!a->doc[d].present, "%s cycle %u: %s lists d%02u twice", R.v.name, cycle, path,
                  d);
        a->doc[d] = st;
        n++;
    }
    cr_assert(!json_is_true(json_object_get(page, "has_next")), "%s: more than one page", path);
    json_t *total = json_object_get(page, "total");
    cr_assert(json_is_integer(total) && json_integer_value(total) == (json_int_t)n,
              "%s seed %" PRIu64 " cycle %u: %s: total is not the %u documents listed", R.v.name,
              R.v.seed, cycle, path, n);
    json_decref(page);
    R.docs_read += n;

    /* The index on "g" agrees with the documents. */
    for (uint32_t g = 0; g < NG; g++) {
        bool want[NDOCS] = {0};
        uint32_t nwant = 0;
        for (uint32_t d = 0; d < NDOCS; d++) {
            want[d] = a->doc[d].present && a->doc[d].g == g;
            nwant += want[d];
        }
        snprintf(path, sizeof path, "/collections/%s/find?g=%u&limit=1000", ln->coll, g);
        page = get_json(path, 200, cycle);
        docs = nu_jget(page, "documents", JSON_ARRAY, path);
        cr_assert_eq(json_array_size(docs), nwant,
                     "%s seed %" PRIu64 " cycle %u: %s found %zu documents, the collection has %u",
                     R.v.name, R.v.seed, cycle, path, json_array_size(docs), nwant);
        json_array_foreach(docs, i, o)
        {
            uint32_t d;
            doc_state st;
            cr_assert(parse_doc(o, ln->id, &d, &st, why, sizeof why) && want[d] &&
                          doc_eq(&st, &a->doc[d]),
                      "%s seed %" PRIu64 " cycle %u: %s returned d%02u, which the scan "
                      "disagrees with",
                      R.v.name, R.v.seed, cycle, path, d);
        }
        json_decref(page);
    }

    /* GET by id: the ids the op in doubt touched, and a sample (all every fifth cycle). */
    bool get[NDOCS] = {0};
    for (uint32_t e = 0; ln->has_doubt && e < ln->doubt.n; e++) {
        if (ln->doubt.kind >= K_INSERT) {
            get[ln->doubt.e[e].idx] = true;
        }
    }
    for (uint32_t s = 0; s < 4; s++) {
        get[tu_rng_below(rng, NDOCS)] = true;
    }
    for (uint32_t d = 0; d < NDOCS; d++) {
        if (!get[d] && cycle % 5 != 4) {
            continue;
        }
        snprintf(path, sizeof path, "/collections/%s/documents/d%02u", ln->coll, d);
        json_t *doc = get_json(path, a->doc[d].present ? 200 : 404, cycle);
        if (doc != NULL) {
            uint32_t dd;
            doc_state st;
            cr_assert(parse_doc(doc, ln->id, &dd, &st, why, sizeof why) && dd == d &&
                          doc_eq(&st, &a->doc[d]),
                      "%s seed %" PRIu64 " cycle %u: GET %s disagrees with /find", R.v.name,
                      R.v.seed, cycle, path);
            json_decref(doc);
        }
    }
}

/* Differences between `want` and `got` (keys, counters, documents), named in msg. */
static uint32_t diff(const lane_model *want, const lane_model *got, char *msg, size_t cap)
{
    uint32_t n = 0;
    size_t len = strlen(msg);
    for (uint32_t k = 0; k < NKEYS; k++) {
        if (want->key[k] != got->key[k]) {
            n++;
            cat(msg, cap, &len, " k%02u: want op %" PRIu64 " got %" PRIu64 ";", k, want->key[k],
                got->key[k]);
        }
    }
    for (uint32_t k = 0; k < NCTR; k++) {
        if (want->ctr[k] != got->ctr[k]) {
            n++;
            cat(msg, cap, &len, " c%u: want %" PRId64 " got %" PRId64 ";", k, want->ctr[k],
                got->ctr[k]);
        }
    }
    for (uint32_t d = 0; d < NDOCS; d++) {
        const doc_state *w = &want->doc[d], *g = &got->doc[d];
        if (!doc_eq(w, g)) {
            n++;
            char ws[64] = "absent", gs[64] = "absent";
            if (w->present) {
                snprintf(ws, sizeof ws, "g%u v%" PRIu64 " u%" PRIu64, w->g, w->v, w->u);
            }
            if (g->present) {
                snprintf(gs, sizeof gs, "g%u v%" PRIu64 " u%" PRIu64, g->g, g->v, g->u);
            }
            cat(msg, cap, &len, " d%02u: want %s got %s;", d, ws, gs);
        }
    }
    if (len >= cap && cap > 4) {
        memcpy(msg + cap - 4, "...", 4);
    }
    return n;
}

/* The lane must be its model after the last ack, or after the op in doubt, wholly. */
static void match_lane(client_lane *ln, const lane_model *a, unsigned cycle)
{
    char msg[1024] = "";
    if (diff(&ln->m, a, msg, sizeof msg) == 0) {
        R.doubt_absent += ln->has_doubt;
        return;
    }
    if (ln->has_doubt) {
        lane_model after = ln->m;
        char msg2[1024] = "";
        apply_op(&after, &ln->doubt);
        if (diff(&after, a, msg2, sizeof msg2) == 0) {
            ln->m = after;
            R.doubt_present++;
            return;
        }
        cr_assert_fail("%s seed %" PRIu64 " cycle %u lane %u: the state is neither the one after "
                       "the last ack (op %" PRIu64 ") nor the one after op %" PRIu64
                       " in doubt (%s of %u effects); against the acked state:%s against the "
                       "op in doubt:%s",
                       R.v.name, R.v.seed, cycle, ln->id, ln->doubt.j - 1, ln->doubt.j,
                       kind_names[ln->doubt.kind], ln->doubt.n, msg, msg2);
    }
    cr_assert_fail("%s seed %" PRIu64 " cycle %u lane %u: acknowledged writes are not there "
                   "(no op in doubt; last ack op %" PRIu64 "):%s",
                   R.v.name, R.v.seed, cycle, ln->id, ln->next + ln->acked - 1, msg);
}

/* The restarted server's statistics: the sequence never goes back (a reused sequence number
 * would let an old write shadow a newer one); the rest is reported. */
static void check_stats(unsigned cycle)
{
    json_t *st = get_json("/stats", 200, cycle);
    json_t *seq = nu_jget(st, "last_sequence", JSON_INTEGER, "/stats");
    uint64_t s = (uint64_t)json_integer_value(seq);
    cr_assert_geq(s, R.last_sequence,
                  "%s seed %" PRIu64 " cycle %u: last_sequence went back from %" PRIu64
                  " to %" PRIu64,
                  R.v.name, R.v.seed, cycle, R.last_sequence, s);
    R.last_sequence = s;
    json_t *levels = nu_jget(st, "level_tables", JSON_ARRAY, "/stats");
    uint64_t tables = 0;
    size_t i;
    json_t *n;
    json_array_foreach(levels, i, n)
    {
        tables += (uint64_t)json_integer_value(n);
    }
    R.peak_tables = tables > R.peak_tables ? tables : R.peak_tables;
    R.recovered_records +=
        (uint64_t)json_integer_value(nu_jget(st, "recovered_records", JSON_INTEGER, "/stats"));
    R.truncated_bytes +=
        (uint64_t)json_integer_value(nu_jget(st, "truncated_bytes", JSON_INTEGER, "/stats"));
    json_decref(st);
}

static void verify(tu_rng *rng, unsigned cycle)
{
    check_stats(cycle);
    R.vrc = nu_redis(&R.srv);
    for (unsigned l = 0; l < LANES; l++) {
        client_lane *ln = &R.lanes[l];
        static lane_model a; /* what the restarted server holds in the lane's space */
        memset(&a, 0, sizeof a);
        read_keys(R.vrc, ln, &a, cycle);
        read_docs(ln, &a, rng, cycle);
        match_lane(ln, &a, cycle);
        /* The op in doubt is settled either way; the next cycle starts after it. */
        ln->next = ln->has_doubt ? ln->doubt.j + 1 : ln->next + ln->acked;
    }
    redisFree(R.vrc);
    R.vrc = NULL;
}

/* Each lane's collection with an index on "g" (acknowledged before the first kill). */
static void setup_collections(void)
{
    for (unsigned l = 0; l < LANES; l++) {
        client_lane *ln = &R.lanes[l];
        char path[128];
        snprintf(path, sizeof path, "/collections/%s", ln->coll);
        nu_resp r = NU_SEND(&R.srv, "POST", path, "{\"_id\":\"setup\"}");
        nu_expect_status(&r, 201, path);
        nu_resp_free(&r);
        snprintf(path, sizeof path, "/collections/%s/documents/setup", ln->coll);
        r = NU_DELETE(&R.srv, path);
        nu_expect_status(&r, 204, path);
        nu_resp_free(&r);
        snprintf(path, sizeof path, "/collections/%s/indexes/g", ln->coll);
        r = nu_http(&R.srv, "POST", path, NULL, 0, NULL);
        nu_expect_status(&r, 201, path);
        nu_resp_free(&r);
    }
}

static void run(const variant *vin)
{
    tu_rng rng;
    memset(&R, 0, sizeof R);
    R.v = *vin;
    R.v.seed = crash_env_seed(vin->seed);
    R.v.cycles = vin->cycles * (unsigned)tu_campaign_scale();
    pthread_mutex_init(&R.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&R.cv, &ca);
    pthread_condattr_destroy(&ca);
    json_object_seed(0); /* before the lanes make objects in parallel */
    tu_rng_seed(&rng, R.v.seed ^ 0x9e3779b97f4a7c15ull);
    for (unsigned l = 0; l < LANES; l++) {
        client_lane *ln = &R.lanes[l];
        ln->id = l;
        ln->next = 1;
        snprintf(ln->coll, sizeof ln->coll, "cs%c%u", R.v.tag, l);
        snprintf(ln->prefix, sizeof ln->prefix, "cs%c%u:", R.v.tag, l);
    }
    R.dir = nu_path("db");

    start_server();
    setup_collections();
    for (unsigned c = 0; c < R.v.cycles; c++) {
        crash_cycle(&rng, c);
        if (c % 4 == 2) {
            kill_in_startup(&rng);
        }
        if (c % 5 == 4) {
            crash_offline_check(R.dir, R.v.name, R.v.seed, c);
            R.checks++;
        }
        start_server();
        verify(&rng, c);
    }
    /* A graceful stop keeps everything, and leaves a directory `shale check` calls clean. */
    nu_stop_ok(&R.srv);
    crash_offline_check(R.dir, R.v.name, R.v.seed, R.v.cycles);
    R.checks++;

    uint64_t resp = 0, http_ops = 0;
    for (int k = 0; k < KINDS; k++) {
        for (unsigned l = 0; l < LANES; l++) {
            R.acked[k] += R.lanes[l].kinds[k];
        }
        R.acked_ops += R.acked[k];
        *(k < K_INSERT ? &resp : &http_ops) += R.acked[k];
    }
    cr_log_info(
        "%s: seed %" PRIu64 ", %u cycles, %" PRIu64 " acked ops (%" PRIu64 " SET, %" PRIu64
        " MSET, %" PRIu64 " DEL, %" PRIu64 " INCR, %" PRIu64 " MULTI; %" PRIu64 " POST, %" PRIu64
        " batch, %" PRIu64 " PATCH, %" PRIu64 " DELETE, %" PRIu64 " transaction); in doubt %" PRIu64
        " applied, %" PRIu64 " not; %" PRIu64 " key and %" PRIu64 " document reads; %" PRIu64
        " log records recovered, %" PRIu64 " torn bytes cut, up to %" PRIu64 " tables",
        R.v.name, R.v.seed, R.v.cycles, R.acked_ops, R.acked[K_SET], R.acked[K_MSET],
        R.acked[K_DEL], R.acked[K_INCR], R.acked[K_MULTI], R.acked[K_INSERT], R.acked[K_BATCH],
        R.acked[K_PATCH], R.acked[K_DELDOC], R.acked[K_TXN], R.doubt_present, R.doubt_absent,
        R.keys_read, R.docs_read, R.recovered_records, R.truncated_bytes, R.peak_tables);
    /* The run must have exercised what it claims to. */
    for (int k = 0; k < KINDS; k++) {
        cr_assert_gt(R.acked[k], 0, "%s: no %s was ever acknowledged", R.v.name, kind_names[k]);
    }
    tu_campaign_report("crash",
                       "%s: %u cycles, %llu acknowledged ops verified, %llu in doubt, 0 lost "
                       "(%llu RESP, %llu HTTP; %llu MULTI/EXEC, %llu batches, %llu "
                       "transactions; %u more kills during a start; %u shale check runs; "
                       "seed 0x%llx)",
                       R.v.name, R.v.cycles, (unsigned long long)R.acked_ops,
                       (unsigned long long)R.doubt_present, (unsigned long long)resp,
                       (unsigned long long)http_ops, (unsigned long long)R.acked[K_MULTI],
                       (unsigned long long)(R.acked[K_MSET] + R.acked[K_BATCH]),
                       (unsigned long long)R.acked[K_TXN], R.startup_kills, R.checks,
                       (unsigned long long)R.v.seed);
    free(R.dir);
    R.dir = NULL;
    pthread_cond_destroy(&R.cv);
    pthread_mutex_destroy(&R.mu);
}

/* Variants: name, tag, --durability, cycles (times SHALE_CAMPAIGN_SCALE), max acks before the
 * kill (over all lanes), max delay before the kill (us), seed. */

Test(crash_server, durability_full)
{
    run(&(variant){"server/full", 'f', "full", 24, 400, 400000, 0x5e4e0001});
}

Test(crash_server, durability_os)
{
    run(&(variant){"server/os", 'o', "os", 24, 600, 400000, 0x5e4e00a5});
}
