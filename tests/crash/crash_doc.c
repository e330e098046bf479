/*
 * crash_doc: process crashes (SIGKILL) while the document layer writes, against the public API
 * (include/shale.h, "Documents"): every call that changes documents is one transaction, index
 * entries included, all or nothing also across a crash, and durable at the database's level.
 *
 * Each cycle a forked child opens the database with FULL durability and tiny budgets (64 KiB
 * write buffer, tables and log segments, level-0 trigger 2, so flushes and compactions run all
 * the time), makes sure collection "crashdocs" exists with indexes on "n" (a number) and "a.b"
 * (a nested string), reports that (the setup ack), and then runs operations. Operation j is drawn
 * from (seed, j) and the model state before it, which the child inherits from the parent at the
 * fork and keeps up to date as the parent does, so the parent knows every operation without
 * being told. The model has 160 document slots: slots below 80 have client ids (of varied
 * lengths), the others get generated ids (inserted without "_id"). The operations:
 *   - insert of a client id (SHALE_CONFLICT, nothing written, when the slot's document exists);
 *   - insert without "_id": the id comes from the returned JSON (24 hex digits, increasing
 *     within the process) and is reported to the parent with the ack;
 *   - insert_many of 2..20 absent slots, client and generated ids mixed (generated ids reported);
 *   - update (a shallow merge that sets some of the indexed fields n, a, t and a field u),
 *     update_many of 2..6 documents, replace (a new body; sometimes with a foreign "_id", which
 *     must be ignored), delete; now and then on an absent client id (SHALE_NOT_FOUND);
 *   - create or drop of a third index, on "t" (a field of mixed types), now and then. In every
 *     fourth cycle the child's first operation is such an index operation and a thread of the
 *     child SIGKILLs its own process during it: 0..25 ms after it starts, or (creates) as soon as
 *     the catalog lists the index as building, or as soon as a chunk of its build is in, so kills
 *     land in every stage of a build, also between a build's commits, where time is short. The
 *     ack of that operation is never sent: it is always the one in doubt. A build left
 *     unfinished is resumed (shale_index_create again) by a later index operation, after
 *     document writes that must maintain the building index meanwhile.
 * Every returned document is checked against the model in the child. The child reports each
 * operation over the pipe only after it returned as it must (an acknowledgement); the parent
 * SIGKILLs it at a random moment (crash_fork_kill), reopens the directory (kept over every
 * cycle) and checks:
 *   - the documents (a raw scan of the collection's key range, and shale_doc_get of each) are
 *     exactly the model after the last acked operation, or after the one in doubt (wholly: a
 *     batch never partly), with every field's value and type as acknowledged, "_id" included.
 *     An operation whose generated ids already reached the parent was acknowledged and must be
 *     there. Ids the parent did not learn (the op in doubt) are taken from the database;
 *   - the indexes: "n" and "a.b" ready once the setup was acked; "t" as the acked index
 *     operations left it, or, for the one in doubt, absent, building (a build interrupted) or
 *     ready (a drop wholly there or not); nothing else;
 *   - documents and indexes agree (the raw key space, docdb.h's layout): every entry of an index
 *     names a document, once, under exactly the key of the document's value at the index's path;
 *     a ready index has an entry for every document, a building one a subset. Entries of dropped
 *     indexes (a kill during a drop's purge) are counted, never read;
 *   - queries: for every index path and some values present in the collection (every value
 *     every 10 cycles), shale_doc_find
 *     with the equality filter returns exactly the documents holding an equal value (null: also
 *     those without the field), through the index when it is ready (shale_doc_explain says
 *     "index") and by a scan when it is not; the match count of an empty filter is the count of
 *     documents;
 *   - every 10 cycles: `shale check` ($SHALE_BIN) calls the killed directory clean, and after a
 *     full compaction the documents and indexes still agree. No file is leaked.
 * The run must have acked every kind of operation and a refused write, and had an index
 * operation in doubt.
 * The next child goes on after the last op the check found applied. SHALE_CRASH_SEED=<n> in the
 * environment replaces the operation seed; SHALE_CAMPAIGN_SCALE=<n> multiplies the cycles. The run
 * ends with one campaign report line (tu_campaign_report).
 *
 * Plumbing: crash_common.h's crash_fork_kill (48-byte records), crash_create, crash_remove,
 * crash_env_seed and crash_offline_check. JSON on the test side is jansson's; the raw index
 * check reads the catalog with docdb_meta_read and rebuilds entry keys with docdb_path_key, the
 * one place this test looks below the public API.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shale.h"

#include "crash_common.h"
#include "doc/docdb.h"
#include "doc/dval.h"
#include "testutil.h"

#define COLL         "crashdocs"
#define N_SLOTS      160u
#define N_CLIENT     80u /* slots [0, N_CLIENT) have client ids */
#define ID_CAP       48u
#define GEN_ID_LEN   24u
#define MAX_MANY     20u
#define MAX_UPD      6u
#define PAD_MAX      800u
#define ACK_WAIT_MS  3000
#define ARM_EVERY    4u     /* every ARM_EVERY-th cycle kills itself inside an index op */
#define ARM_MAX_US   25000u /* ... 0 .. this long after the op starts */
#define QUERY_VALUES 5u     /* values per index path queried after most kills */

enum { IX_N, IX_AB, IX_T, N_IX };
static const char *const ix_path[N_IX] = {"n", "a.b", "t"};
enum ix_state { IX_ABSENT, IX_BUILDING, IX_READY };
static const char *const ix_state_names[] = {"absent", "building", "ready"};

/* The document fields an operation draws values for. */
enum { F_N, F_A, F_T, N_F };
static const char *const field_names[N_F] = {"n", "a", "t"};

enum op_kind {
    OP_INSERT,
    OP_INSERT_GEN,
    OP_INSERT_MANY,
    OP_UPDATE,
    OP_UPDATE_MANY,
    OP_REPLACE,
    OP_DELETE,
    OP_INDEX,
    OP_KINDS
};

static const char *const kind_names[OP_KINDS] = {
    "insert",      "insert (generated id)",
    "insert_many", "update",
    "update_many", "replace",
    "delete",      "index op",
};

/* ---- the model ------------------------------------------------------------------------------ */

typedef struct slot_st {
    bool present;
    uint8_t idlen; /* generated ids: 0 while absent */
    char id[ID_CAP];
    uint64_t base;     /* the op that inserted or replaced the document */
    uint64_t src[N_F]; /* the op whose value field f holds; 0 = no such field */
    uint64_t u;        /* the last update; 0 = no field u */
} slot_st;

typedef struct model {
    slot_st s[N_SLOTS];
    uint8_t ix[N_IX];
    bool coll; /* the collection exists */
} model;

typedef struct op {
    enum op_kind kind;
    shale_code want; /* OK; CONFLICT for an existing client id; NOT_FOUND for an absent one */
    uint32_t n;
    uint32_t slot[MAX_MANY];
    uint8_t mask[MAX_MANY]; /* updates: the fields the patch sets (bit f) */
    bool drop;              /* OP_INDEX: drop "t" (else create it) */
} op;

static uint64_t hv(uint64_t seed, uint64_t j, uint32_t slot, uint32_t what)
{
    return tu_mix64(seed ^ tu_mix64(j * 0x9e3779b97f4a7c15ull ^ ((uint64_t)slot << 40) ^
                                    ((uint64_t)what << 56) ^ 0xd0c5ull));
}

static bool is_gen(uint32_t slot)
{
    return slot >= N_CLIENT;
}

/* Client ids: "doc/NNN" and 0..40 more characters, so keys and index entries vary in length. */
static void client_id(uint32_t slot, slot_st *st)
{
    int n = snprintf(st->id, ID_CAP, "doc/%03" PRIu32 "-", slot);
    uint32_t extra = (uint32_t)(tu_mix64(slot * 7919u + 1) % 41);
    for (uint32_t i = 0; i < extra; i++) {
        st->id[n + (int)i] = (char)('a' + (slot + i * 3) % 26);
    }
    st->idlen = (uint8_t)(n + (int)extra);
}

static void model_init(model *m)
{
    memset(m, 0, sizeof *m);
    for (uint32_t s = 0; s < N_CLIENT; s++) {
        client_id(s, &m->s[s]);
    }
}

/* A random slot satisfying `want_present` (and, gen >= 0, is_gen == gen), not used[]; or -1. */
static int pick(tu_rng *r, const model *m, bool want_present, int gen, const bool *used)
{
    uint32_t start = (uint32_t)tu_rng_below(r, N_SLOTS);
    for (uint32_t i = 0; i < N_SLOTS; i++) {
        uint32_t s = (start + i) % N_SLOTS;
        if (m->s[s].present == want_present && (gen < 0 || is_gen(s) == (gen == 1)) &&
            (used == NULL || !used[s])) {
            return (int)s;
        }
    }
    return -1;
}

static uint8_t patch_mask(tu_rng *r)
{
    return (uint8_t)(1 + tu_rng_below(r, 7));
}

/* Op j, drawn from (seed, j) and the state before it. forced: an index op (armed cycles). */
static void gen_op(uint64_t seed, uint64_t j, const model *m, bool forced, op *o)
{
    static const unsigned below[OP_KINDS] = {9, 17, 21, 43, 48, 58, 95, 100};
    tu_rng r;
    bool used[N_SLOTS] = {false};

    memset(o, 0, sizeof *o);
    tu_rng_seed(&r, hv(seed, j, 0, 0xff));
    unsigned d = (unsigned)tu_rng_below(&r, 100);
    enum op_kind k = OP_INSERT;
    while (d >= below[k]) {
        k++;
    }
    if (forced) {
        k = OP_INDEX;
    }
    o->want = SHALE_OK;
    if (k == OP_INDEX) {
        o->kind = OP_INDEX;
        o->drop = m->ix[IX_T] == IX_READY;
        return;
    }
    /* Now and then an update, replace or delete of an absent client id. */
    if ((k == OP_UPDATE || k == OP_REPLACE || k == OP_DELETE) && tu_rng_below(&r, 10) == 0) {
        int s = pick(&r, m, false, 0, NULL);
        if (s >= 0) {
            o->kind = k;
            o->want = SHALE_NOT_FOUND;
            o->n = 1;
            o->slot[0] = (uint32_t)s;
            o->mask[0] = patch_mask(&r);
            return;
        }
    }
    if (k == OP_INSERT_GEN || k == OP_INSERT_MANY) {
        uint32_t want_n = k == OP_INSERT_GEN ? 1 : 2 + (uint32_t)tu_rng_below(&r, MAX_MANY - 1);
        int gen = k == OP_INSERT_GEN ? 1 : -1;
        for (; o->n < want_n; o->n++) {
            int s = pick(&r, m, false, gen, used);
            if (s < 0) {
                break;
            }
            used[s] = true;
            o->slot[o->n] = (uint32_t)s;
        }
        if (o->n == want_n) {
            o->kind = k;
            return;
        }
        memset(used, 0, sizeof used);
        o->n = 0;
        k = OP_UPDATE; /* no room: an update instead */
    }
    if (k == OP_UPDATE_MANY) {
        uint32_t want_n = 2 + (uint32_t)tu_rng_below(&r, MAX_UPD - 1);
        for (; o->n < want_n; o->n++) {
            int s = pick(&r, m, true, -1, used);
            if (s < 0) {
                break;
            }
            used[s] = true;
            o->slot[o->n] = (uint32_t)s;
            o->mask[o->n] = patch_mask(&r);
        }
        if (o->n >= 2) {
            o->kind = k;
            return;
        }
        memset(used, 0, sizeof used);
        o->n = 0;
        k = OP_UPDATE;
    }
    if (k == OP_UPDATE || k == OP_REPLACE || k == OP_DELETE) {
        int s = pick(&r, m, true, -1, NULL);
        if (s >= 0) {
            o->kind = k;
            o->n = 1;
            o->slot[0] = (uint32_t)s;
            o->mask[0] = patch_mask(&r);
            return;
        }
        k = OP_INSERT; /* nothing present: an insert instead */
    }
    /* A client id: mostly an absent one, one time in four any (it may exist: a conflict). */
    int s = tu_rng_below(&r, 4) == 0 ? -1 : pick(&r, m, false, 0, NULL);
    o->kind = OP_INSERT;
    o->n = 1;
    o->slot[0] = s >= 0 ? (uint32_t)s : (uint32_t)tu_rng_below(&r, N_CLIENT);
    o->want = m->s[o->slot[0]].present ? SHALE_CONFLICT : SHALE_OK;
}

/* Whether field f is in the body op j writes to slot (inserts and replaces). */
static bool base_has(uint64_t seed, uint64_t j, uint32_t slot, int f)
{
    return hv(seed, j, slot, 'p' + (uint32_t)f) % 8 != 0;
}

static void set_base(uint64_t seed, uint64_t j, uint32_t slot, slot_st *st)
{
    st->present = true;
    st->base = j;
    st->u = 0;
    for (int f = 0; f < N_F; f++) {
        st->src[f] = base_has(seed, j, slot, f) ? j : 0;
    }
}

/* Applies op j to m; ids[i] (NULL or empty: not known) are the generated ids of the op's slots. */
static void apply(uint64_t seed, uint64_t j, const op *o, model *m, char (*ids)[GEN_ID_LEN + 1])
{
    if (o->kind == OP_INDEX) {
        m->ix[IX_T] = o->drop ? IX_ABSENT : IX_READY;
        return;
    }
    if (o->want != SHALE_OK) {
        return;
    }
    for (uint32_t i = 0; i < o->n; i++) {
        uint32_t s = o->slot[i];
        slot_st *st = &m->s[s];
        switch (o->kind) {
        case OP_INSERT:
        case OP_INSERT_GEN:
        case OP_INSERT_MANY:
            set_base(seed, j, s, st);
            if (is_gen(s)) {
                st->idlen = 0;
                if (ids != NULL && ids[i][0] != '\0') {
                    memcpy(st->id, ids[i], GEN_ID_LEN);
                    st->idlen = GEN_ID_LEN;
                }
            }
            break;
        case OP_UPDATE:
        case OP_UPDATE_MANY:
            for (int f = 0; f < N_F; f++) {
                if (o->mask[i] & (1u << f)) {
                    st->src[f] = j;
                }
            }
            st->u = j;
            break;
        case OP_REPLACE:
            set_base(seed, j, s, st);
            break;
        case OP_DELETE:
            st->present = false;
            if (is_gen(s)) {
                st->idlen = 0;
            }
            break;
        default:
            break;
        }
    }
}

/* ---- document values ------------------------------------------------------------------------ */

static const char *const str_pool[] = {
    "",       "a",      "A",  "city-01",  "city-02", "Z\xc3\xbcrich", "\xe6\x97\xa5\xe6\x9c\xac",
    "q\"b\\", "t\tn\n", "zz", "\xc3\x9f", "city-10",
};
#define N_STR (sizeof str_pool / sizeof str_pool[0])

/* The value op j gives field f of slot's document (a new reference). Mixed kinds: integers,
 * doubles equal to integers (1.0 must index and match as 1), nulls (index like a missing field),
 * nested objects with and without "b", a non-object "a", booleans, arrays. */
static json_t *gen_value(uint64_t seed, uint64_t j, uint32_t slot, int f)
{
    uint64_t h = hv(seed, j, slot, 'v' + (uint32_t)f);
    int64_t k = (int64_t)((h >> 8) % 24) - 4;
    const char *str = str_pool[(h >> 16) % N_STR];
    switch (f) {
    case F_N:
        switch (h % 10) {
        case 0:
            return json_real((double)k);
        case 1:
            return json_real((double)k + 0.5);
        case 2:
            return json_null();
        default:
            return json_integer(k);
        }
    case F_A:
        switch (h % 10) {
        case 0:
            return json_string("flat");
        case 1:
            return json_pack("{sI}", "x", (json_int_t)j);
        default:
            return json_pack("{sssI}", "b", str, "x", (json_int_t)j);
        }
    default:
        switch (h % 8) {
        case 0:
            return json_true();
        case 1:
            return json_false();
        case 2:
        case 3:
            return json_integer(k % 5);
        case 4:
            return json_pack("[sI]", "x", (json_int_t)(k % 3));
        default:
            return json_string(str);
        }
    }
}

/* The padding of op j's body for slot: random letters, so tables do not compress to nothing. */
static json_t *gen_pad(uint64_t seed, uint64_t j, uint32_t slot)
{
    char pad[PAD_MAX + 1];
    tu_rng r;
    tu_rng_seed(&r, hv(seed, j, slot, 'P'));
    size_t len = (size_t)tu_rng_below(&r, PAD_MAX);
    for (size_t i = 0; i < len; i++) {
        pad[i] = (char)('a' + tu_rng_next(&r) % 26);
    }
    pad[len] = '\0';
    return json_string(pad);
}

/* The document the model says slot holds (with its "_id" when with_id and known). */
static json_t *expected_doc(uint64_t seed, uint32_t slot, const slot_st *st, bool with_id)
{
    json_t *d = json_object();
    if (with_id && st->idlen > 0) {
        json_object_set_new(d, "_id", json_stringn(st->id, st->idlen));
    }
    json_object_set_new(d, "s", json_integer(slot));
    json_object_set_new(d, "j", json_integer((json_int_t)st->base));
    json_object_set_new(d, "pad", gen_pad(seed, st->base, slot));
    for (int f = 0; f < N_F; f++) {
        if (st->src[f] != 0) {
            json_object_set_new(d, field_names[f], gen_value(seed, st->src[f], slot, f));
        }
    }
    if (st->u != 0) {
        json_object_set_new(d, "u", json_integer((json_int_t)st->u));
    }
    return d;
}

/* Equality as the document layer keeps values: numbers by value, but an integer stays an
 * integer and a double a double; everything else exact. */
static bool jeq(const json_t *a, const json_t *b)
{
    if (json_typeof(a) != json_typeof(b)) {
        return false;
    }
    switch (json_typeof(a)) {
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL:
        return json_real_value(a) == json_real_value(b);
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) {
            return false;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!jeq(json_array_get(a, i), json_array_get(b, i))) {
                return false;
            }
        }
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) {
            return false;
        }
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)a, key, v)
        {
            json_t *w = json_object_get(b, key);
            if (w == NULL || !jeq(v, w)) {
                return false;
            }
        }
        return true;
    }
    default:
        return true;
    }
}

/* The filter's notion of equality (dval_cmp == 0): numbers by value whatever their kind. */
static bool qeq(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) {
        return false;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) {
            return false;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!qeq(json_array_get(a, i), json_array_get(b, i))) {
                return false;
            }
        }
        return true;
    }
    return jeq(a, b);
}

static bool hex_id(const char *s, size_t len)
{
    if (len != GEN_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* Whether doc is what the model says slot holds. With the id unknown (idlen 0) the document's
 * "_id" must be a generated one. Says why not in `why`. */
static bool doc_matches(uint64_t seed, uint32_t slot, const slot_st *st, const json_t *doc,
                        char *why, size_t cap)
{
    json_t *want = expected_doc(seed, slot, st, true);
    json_t *id = json_object_get(doc, "_id");
    bool ok = false;

    if (!json_is_object(doc) || !json_is_string(id)) {
        snprintf(why, cap, "not an object with a string _id");
    } else if (st->idlen > 0 && !jeq(id, json_object_get(want, "_id"))) {
        snprintf(why, cap, "_id '%s', want '%.*s'", json_string_value(id), (int)st->idlen, st->id);
    } else if (st->idlen == 0 && !hex_id(json_string_value(id), json_string_length(id))) {
        snprintf(why, cap, "_id '%s' is not a generated id", json_string_value(id));
    } else if (json_object_size(doc) != json_object_size(want) + (st->idlen == 0)) {
        snprintf(why, cap, "%zu fields, want %zu", json_object_size(doc),
                 json_object_size(want) + (st->idlen == 0));
    } else {
        const char *key;
        json_t *v;
        ok = true;
        json_object_foreach(want, key, v)
        {
            json_t *got = json_object_get(doc, key);
            if (ok && (got == NULL || !jeq(v, got))) {
                char *ws = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                char *gs = got != NULL ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                snprintf(why, cap, "field %s is %.60s, want %.60s", key, gs ? gs : "missing",
                         ws ? ws : "?");
                free(ws);
                free(gs);
                ok = false;
            }
        }
    }
    json_decref(want);
    return ok;
}

/* ---- child ---------------------------------------------------------------------------------- */

enum rec_type { R_SETUP = 1, R_ACK, R_ID, R_FAIL };

/* One record over the pipe: 48 bytes. R_ID: a generated id of op j's i-th slot, sent (after the
 * call returned) before the op's R_ACK. R_FAIL: the child failed; code = what it got. */
typedef struct rec {
    uint32_t type;
    uint32_t code; /* R_ID: the position in the op; R_FAIL: the code */
    uint64_t j;
    uint32_t slot;
    uint32_t pad_;
    char id[GEN_ID_LEN];
} rec;

typedef struct child_arg {
    uint64_t seed;
    const char *dir;
    const model *m; /* the state before op `start` */
    uint64_t start, cap;
    uint32_t arm_us; /* > 0: op `start` is an index op, killed after up to arm_us */
} child_arg;

typedef struct child {
    shale_db *db;
    int fd;
    uint64_t seed;
    uint64_t j;
    model m;
    char last_gen[GEN_ID_LEN + 1];
    shale_buf out;
} child;

static _Noreturn void child_fail(const child *c, shale_code rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static _Noreturn void child_fail(const child *c, shale_code rc, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "crash_doc child: op %" PRIu64 ": %s\n", c->j, msg);
    rec a = {.type = R_FAIL, .code = (uint32_t)rc, .j = c->j};
    crash_send_record(c->fd, &a, sizeof a);
    _exit(3);
}

static void must(const child *c, shale_code rc, shale_code want, const char *what,
                 const shale_error *err)
{
    if (rc != want) {
        child_fail(c, rc == SHALE_OK ? SHALE_INVALID : rc, "%s: %s, want %s (%s)", what,
                   shale_strerror(rc), shale_strerror(want), err->msg);
    }
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s == NULL) {
        _exit(8);
    }
    return s;
}

static json_t *parse_out(const child *c, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(c->out.data, c->out.len, 0, &je);
    if (j == NULL) {
        child_fail(c, SHALE_CORRUPTION, "%s returned invalid JSON: %s", what, je.text);
    }
    return j;
}

/* A document a write returned for slot: as the model (after the op) says; a generated id is
 * checked (new, greater than the last this process made) and stored into ids. */
static void check_returned(child *c, const model *after, uint32_t slot, const json_t *doc,
                           char *id_out, const char *what)
{
    char why[256];
    slot_st st = after->s[slot];
    if (is_gen(slot) && st.idlen == 0) {
        json_t *id = json_object_get(doc, "_id");
        const char *s = json_string_value(id);
        if (s == NULL || !hex_id(s, json_string_length(id)) || strcmp(s, c->last_gen) <= 0) {
            child_fail(c, SHALE_CORRUPTION,
                       "%s of slot %" PRIu32 ": generated _id '%s' is not 24 hex digits greater "
                       "than the last one, '%s'",
                       what, slot, s != NULL ? s : "(none)", c->last_gen);
        }
        memcpy(c->last_gen, s, GEN_ID_LEN + 1);
        memcpy(id_out, s, GEN_ID_LEN + 1);
        memcpy(st.id, s, GEN_ID_LEN);
        st.idlen = GEN_ID_LEN;
    }
    if (!doc_matches(c->seed, slot, &st, doc, why, sizeof why)) {
        child_fail(c, SHALE_CORRUPTION, "%s of slot %" PRIu32 " returned the wrong document: %s",
                   what, slot, why);
    }
}

static void run_index_op(child *c, const op *o)
{
    shale_error err = {0};
    if (o->drop) {
        must(c, shale_index_drop(c->db, COLL, "t", &err), SHALE_OK, "index drop", &err);
    } else {
        must(c, shale_index_create(c->db, COLL, "t", &err), SHALE_OK, "index create", &err);
    }
}

/* Runs op c->j (drawn from c->m) and reports it; c->m is then the state after it. */
static void run_op(child *c, bool forced)
{
    op o;
    static char ids[MAX_MANY][GEN_ID_LEN + 1];
    static model after;
    shale_error err = {0};
    shale_code rc;

    gen_op(c->seed, c->j, &c->m, forced, &o);
    memset(ids, 0, sizeof ids);
    after = c->m;
    apply(c->seed, c->j, &o, &after, NULL);
    if (o.kind == OP_INDEX) {
        run_index_op(c, &o);
        c->m = after;
        rec a = {.type = R_ACK, .j = c->j};
        crash_send_record(c->fd, &a, sizeof a);
        return;
    }
    const slot_st *st0 = &c->m.s[o.slot[0]];
    shale_slice id0 = {st0->id, st0->idlen};
    const char *what = kind_names[o.kind];
    json_t *docs[MAX_MANY] = {NULL};
    char *texts[MAX_MANY] = {NULL};
    shale_slice sl[MAX_MANY], idsl[MAX_MANY];

    switch (o.kind) {
    case OP_INSERT:
    case OP_INSERT_GEN:
    case OP_INSERT_MANY:
    case OP_REPLACE:
        for (uint32_t i = 0; i < o.n; i++) {
            uint32_t s = o.slot[i];
            slot_st body = after.s[s];
            if (o.want != SHALE_OK) {
                set_base(c->seed, c->j, s, &body);
            }
            docs[i] = expected_doc(c->seed, s, &body, o.kind != OP_REPLACE);
            if (o.kind == OP_REPLACE && c->j % 3 == 0) {
                /* A replace ignores the "_id" of its argument. */
                json_object_set_new(docs[i], "_id", json_string("someone-else"));
            }
            texts[i] = dump(docs[i]);
            sl[i] = (shale_slice){texts[i], strlen(texts[i])};
        }
        break;
    case OP_UPDATE:
    case OP_UPDATE_MANY:
        for (uint32_t i = 0; i < o.n; i++) {
            uint32_t s = o.slot[i];
            docs[i] = json_object();
            for (int f = 0; f < N_F; f++) {
                if (o.mask[i] & (1u << f)) {
                    json_object_set_new(docs[i], field_names[f], gen_value(c->seed, c->j, s, f));
                }
            }
            json_object_set_new(docs[i], "u", json_integer((json_int_t)c->j));
            if (c->j % 4 == 0) {
                /* An "_id" equal to the document's is allowed in a patch. */
                json_object_set_new(docs[i], "_id", json_stringn(c->m.s[s].id, c->m.s[s].idlen));
            }
            texts[i] = dump(docs[i]);
            sl[i] = (shale_slice){texts[i], strlen(texts[i])};
            idsl[i] = (shale_slice){c->m.s[s].id, c->m.s[s].idlen};
        }
        break;
    default:
        break;
    }

    switch (o.kind) {
    case OP_INSERT:
    case OP_INSERT_GEN:
        rc = shale_doc_insert(c->db, COLL, sl[0], &c->out, &err);
        break;
    case OP_INSERT_MANY:
        rc = shale_doc_insert_many(c->db, COLL, sl, o.n, &c->out, &err);
        break;
    case OP_UPDATE:
        rc = shale_doc_update(c->db, COLL, id0, sl[0], &c->out, &err);
        break;
    case OP_UPDATE_MANY:
        rc = shale_doc_update_many(c->db, COLL, idsl, sl, o.n, &c->out, &err);
        break;
    case OP_REPLACE:
        rc = shale_doc_replace(c->db, COLL, id0, sl[0], &c->out, &err);
        break;
    default:
        rc = shale_doc_delete(c->db, COLL, id0, &err);
        break;
    }
    must(c, rc, o.want, what, &err);
    if (rc == SHALE_OK && o.kind != OP_DELETE) {
        json_t *res = parse_out(c, what);
        bool many = o.kind == OP_INSERT_MANY || o.kind == OP_UPDATE_MANY;
        if (many && (!json_is_array(res) || json_array_size(res) != o.n)) {
            child_fail(c, SHALE_CORRUPTION, "%s of %" PRIu32 " returned no array of as many", what,
                       o.n);
        }
        for (uint32_t i = 0; i < o.n; i++) {
            check_returned(c, &after, o.slot[i], many ? json_array_get(res, i) : res, ids[i], what);
        }
        json_decref(res);
    }
    for (uint32_t i = 0; i < o.n; i++) {
        json_decref(docs[i]);
        free(texts[i]);
    }
    apply(c->seed, c->j, &o, &c->m, ids);
    for (uint32_t i = 0; i < o.n; i++) {
        if (ids[i][0] != '\0') {
            rec a = {.type = R_ID, .code = i, .j = c->j, .slot = o.slot[i]};
            memcpy(a.id, ids[i], GEN_ID_LEN);
            crash_send_record(c->fd, &a, sizeof a);
        }
    }
    rec a = {.type = R_ACK, .j = c->j};
    crash_send_record(c->fd, &a, sizeof a);
}

static shale_options db_opts(bool create)
{
    shale_options o = tu_small_lsm_options(2);
    o.create_if_missing = create;
    o.durability = SHALE_DURABILITY_FULL;
    o.wal_segment_bytes = 64 * 1024;
    return o;
}

/* The collection and its two indexes, created when missing (an interrupted build resumes). */
static void setup(child *c)
{
    shale_error err = {0};
    c->j = 0;
    must(c, shale_coll_create(c->db, COLL, &err), c->m.coll ? SHALE_CONFLICT : SHALE_OK,
         "collection create", &err);
    c->m.coll = true;
    for (int x = IX_N; x <= IX_AB; x++) {
        shale_code want = c->m.ix[x] == IX_READY ? SHALE_CONFLICT : SHALE_OK;
        must(c, shale_index_create(c->db, COLL, ix_path[x], &err), want, "index create", &err);
        c->m.ix[x] = IX_READY;
    }
    rec a = {.type = R_SETUP};
    crash_send_record(c->fd, &a, sizeof a);
}

static int meta_index(const doc_meta *m, const char *path)
{
    for (int i = 0; i < m->nindexes; i++) {
        if (strcmp(m->idx[i].path, path) == 0) {
            return i;
        }
    }
    return -1;
}

/* Whether the catalog shows the index on "t" ready, or building (and, with want_entries, with
 * entries: a chunk of its build committed). */
static bool build_seen(shale_db *db, bool want_entries)
{
    static doc_meta m; /* the killer thread's */
    shale_buf prefix = {0};
    shale_iter *it = NULL;
    bool seen = false;

    if (docdb_meta_read(db, NULL, COLL, &m, NULL) != SHALE_OK) {
        return false;
    }
    int at = meta_index(&m, "t");
    if (at < 0 || m.idx[at].ready || !want_entries) {
        return at >= 0;
    }
    if (docdb_index_prefix(&prefix, m.cid, m.idx[at].iid, NULL) == SHALE_OK) {
        shale_read_opts ro = {.prefix = {prefix.data, prefix.len}};
        if (shale_iter_new(db, &ro, &it, NULL) == SHALE_OK) {
            shale_iter_seek_first(it);
            seen = shale_iter_valid(it);
            shale_iter_free(it);
        }
    }
    shale_buf_free(&prefix);
    return seen;
}

typedef struct killer_arg {
    shale_db *db;
    uint64_t us;
    int mode; /* 0: after `us`; 1: once the index is declared; 2: once a build chunk is in */
} killer_arg;

/* The armed child's own SIGKILL. Modes 1 and 2 watch the catalog and the index (each poll
 * 100 us apart), so kills land in each stage of a build, not only where the time goes. */
static void *killer(void *arg)
{
    const killer_arg *k = arg;
    if (k->mode == 0) {
        tu_sleep_us(k->us);
    }
    for (int polls = 0; k->mode != 0 && polls < 20000 && !build_seen(k->db, k->mode == 2);
         polls++) {
        tu_sleep_us(100);
    }
    kill(getpid(), SIGKILL);
    return NULL;
}

static _Noreturn void child_main(void *arg, int fd)
{
    static child c;
    const child_arg *ca = arg;
    shale_options o = db_opts(false);
    shale_error err = {0};

    c = (child){.fd = fd, .seed = ca->seed, .m = *ca->m};
    shale_code rc = shale_open(ca->dir, &o, &c.db, &err);
    if (rc != SHALE_OK) {
        child_fail(&c, rc, "open: %s", err.msg);
    }
    setup(&c);
    for (c.j = ca->start; c.j < ca->start + ca->cap; c.j++) {
        bool armed = ca->arm_us > 0 && c.j == ca->start;
        if (armed) {
            static killer_arg ka;
            pthread_t th;
            op io;
            uint64_t h = hv(ca->seed, c.j, 0, 'K');
            gen_op(c.seed, c.j, &c.m, true, &io);
            ka = (killer_arg){
                .db = c.db, .us = h % ca->arm_us, .mode = io.drop ? 0 : (int)(h >> 32) % 3};
            if (pthread_create(&th, NULL, killer, &ka) != 0) {
                _exit(6);
            }
            run_index_op(&c, &io);
            for (;;) {
                pause(); /* never acked: the op stays the one in doubt */
            }
        }
        run_op(&c, false);
    }
    for (;;) {
        pause();
    }
}

/* ---- parent: the actual state --------------------------------------------------------------- */

typedef struct actual {
    bool present;
    char id[DOC_ID_MAX + 1];
    size_t idlen;
    shale_buf raw; /* the stored value (version byte | dval) */
    json_t *doc;   /* from shale_doc_get */
} actual;

typedef struct run_state {
    uint64_t seed;
    unsigned cycles;
    uint64_t cap, max_acks, max_delay_us;
    char *dir;
    model m;           /* after op last_ack (acks are applied as they come) */
    uint64_t next;     /* the first op of the coming cycle */
    uint64_t last_ack; /* this cycle */
    uint64_t forced_j; /* the armed index op of this cycle, 0 if none */
    bool setup_acked;  /* this cycle */
    uint32_t nnotes;   /* generated ids reported for op last_ack + 1 */
    char notes[MAX_MANY][GEN_ID_LEN + 1];
    uint32_t note_slot[MAX_MANY];
    actual act[N_SLOTS];
    doc_meta meta;
    bool meta_found;
    /* counters */
    uint64_t acked[OP_KINDS], acked_noop, acked_docs_gen;
    uint64_t doubt_present, doubt_absent, doubt_ix[3]; /* in-doubt index op left: by state */
    uint64_t verified_docs, verified_entries, queries, leftovers, peak_deep_tables;
    uint64_t partial_builds; /* building indexes found with entries, over all checks */
    bool child_error;
    rec child_err;
    char bad[256];
} run_state;

static void bad(run_state *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad(run_state *r, const char *fmt, ...)
{
    va_list ap;
    if (r->bad[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(r->bad, sizeof r->bad, fmt, ap);
    va_end(ap);
}

static bool book(void *arg, const void *p)
{
    run_state *r = arg;
    rec a;
    memcpy(&a, p, sizeof a);
    if (a.type == R_FAIL) {
        r->child_error = true;
        r->child_err = a;
        return false;
    }
    if (a.type == R_SETUP) {
        if (r->setup_acked) {
            bad(r, "two setup acks");
        }
        r->setup_acked = true;
        r->m.coll = true;
        r->m.ix[IX_N] = r->m.ix[IX_AB] = IX_READY;
        return true;
    }
    uint64_t j = r->last_ack + 1;
    if (!r->setup_acked || a.j != j) {
        bad(r, "record %u of op %" PRIu64 " out of order (expected op %" PRIu64 ")", a.type, a.j,
            j);
        return true;
    }
    op o;
    gen_op(r->seed, j, &r->m, j == r->forced_j, &o);
    if (a.type == R_ID) {
        if (r->nnotes >= MAX_MANY || a.code >= o.n || o.slot[a.code] != a.slot ||
            !hex_id(a.id, GEN_ID_LEN)) {
            bad(r, "op %" PRIu64 " (%s): a bad generated-id record", j, kind_names[o.kind]);
            return true;
        }
        memcpy(r->notes[a.code], a.id, GEN_ID_LEN);
        r->notes[a.code][GEN_ID_LEN] = '\0';
        r->note_slot[r->nnotes++] = a.slot;
        return true;
    }
    uint32_t gens = 0;
    for (uint32_t i = 0; i < o.n && o.want == SHALE_OK && o.kind <= OP_INSERT_MANY; i++) {
        gens += is_gen(o.slot[i]);
    }
    if (r->nnotes != gens) {
        bad(r, "op %" PRIu64 " (%s): %" PRIu32 " generated ids reported, want %" PRIu32, j,
            kind_names[o.kind], r->nnotes, gens);
    }
    apply(r->seed, j, &o, &r->m, r->notes);
    memset(r->notes, 0, sizeof r->notes);
    r->nnotes = 0;
    r->acked[o.kind]++;
    r->acked_noop += o.want != SHALE_OK;
    r->acked_docs_gen += gens;
    r->last_ack = j;
    return true;
}

static void actual_clear(run_state *r)
{
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        shale_buf_free(&r->act[s].raw);
        json_decref(r->act[s].doc);
        memset(&r->act[s], 0, sizeof r->act[s]);
    }
}

static json_t *parse_buf(const shale_buf *b, const char *what, unsigned cycle)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, 0, &je);
    cr_assert(j != NULL, "cycle %u: %s returned invalid JSON: %s", cycle, what, je.text);
    return j;
}

/* Reads every document of the collection: a raw scan of its key range (each value must decode
 * and carry a slot number "s" of its own), then shale_doc_get of each id. Returns the count. */
static uint32_t read_actual(run_state *r, shale_db *db, unsigned cycle)
{
    shale_error err = {0};
    shale_buf prefix = {0}, out = {0};
    shale_iter *it = NULL;
    uint32_t n = 0;

    actual_clear(r);
    shale_code rc = docdb_meta_read(db, NULL, COLL, &r->meta, &err);
    cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "cycle %u: catalog: %s (%s)", cycle,
              shale_strerror(rc), err.msg);
    r->meta_found = rc == SHALE_OK;
    if (!r->meta_found) {
        return 0;
    }
    cr_assert_eq(docdb_doc_prefix(&prefix, r->meta.cid, &err), SHALE_OK);
    shale_read_opts ro = {.prefix = {prefix.data, prefix.len}};
    cr_assert_eq(shale_iter_new(db, &ro, &it, &err), SHALE_OK, "%s", err.msg);
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        shale_slice id = {(const char *)k.data + prefix.len, k.len - prefix.len};
        dval d, sv, idv;
        cr_assert(id.len >= 1 && id.len <= DOC_ID_MAX, "cycle %u: a document key of %zu bytes",
                  cycle, k.len);
        rc = docdb_doc_decode(v, COLL, id, &d, &err);
        cr_assert_eq(rc, SHALE_OK, "cycle %u: %s", cycle, err.msg);
        cr_assert(dval_field(d, (shale_slice){"s", 1}, &sv) && dval_tag_of(sv) == DV_INT &&
                      dval_int(sv) >= 0 && dval_int(sv) < (int64_t)N_SLOTS,
                  "cycle %u: document '%.*s' has no slot number", cycle, (int)id.len,
                  (const char *)id.data);
        cr_assert(dval_field(d, (shale_slice){"_id", 3}, &idv) && dval_tag_of(idv) == DV_STRING &&
                      dval_str(idv).len == id.len &&
                      memcmp(dval_str(idv).data, id.data, id.len) == 0,
                  "cycle %u: document '%.*s' is stored with another _id", cycle, (int)id.len,
                  (const char *)id.data);
        actual *a = &r->act[dval_int(sv)];
        cr_assert(!a->present, "cycle %u: slot %" PRId64 " is held by '%.*s' and '%.*s'", cycle,
                  dval_int(sv), (int)a->idlen, a->id, (int)id.len, (const char *)id.data);
        a->present = true;
        memcpy(a->id, id.data, id.len);
        a->id[id.len] = '\0';
        a->idlen = id.len;
        shale_buf_free(&a->raw);
        a->raw.data = malloc(v.len);
        cr_assert(a->raw.data != NULL);
        memcpy(a->raw.data, v.data, v.len);
        a->raw.len = a->raw.cap = v.len;
        n++;
    }
    rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, "cycle %u: document scan: %s", cycle, err.msg);
    shale_iter_free(it);
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        actual *a = &r->act[s];
        if (!a->present) {
            continue;
        }
        rc = shale_doc_get(db, COLL, (shale_slice){a->id, a->idlen}, &out, &err);
        cr_assert_eq(rc, SHALE_OK, "cycle %u: get of '%s', which the scan saw: %s (%s)", cycle,
                     a->id, shale_strerror(rc), err.msg);
        a->doc = parse_buf(&out, "shale_doc_get", cycle);
    }
    shale_buf_free(&prefix);
    shale_buf_free(&out);
    return n;
}

/* Whether the database's documents are the model's; the first difference goes to `why`. */
static bool docs_match(const run_state *r, const model *m, char *why, size_t cap)
{
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        const actual *a = &r->act[s];
        const slot_st *st = &m->s[s];
        char w[256];
        if (a->present != st->present) {
            snprintf(why, cap, "slot %" PRIu32 " is %s, want %s", s,
                     a->present ? "there" : "absent", st->present ? "there" : "absent");
            return false;
        }
        if (a->present && !doc_matches(r->seed, s, st, a->doc, w, sizeof w)) {
            snprintf(why, cap, "slot %" PRIu32 " ('%s'): %s", s, a->id, w);
            return false;
        }
    }
    return true;
}

/* The op in doubt, op last_ack + 1, drawn from the acked state; false if there is none (the
 * setup is in doubt, or the child ran out of planned ops). */
static bool doubt_op(const run_state *r, op *o)
{
    uint64_t d = r->last_ack + 1;
    if (!r->setup_acked || d >= r->next + r->cap) {
        return false;
    }
    gen_op(r->seed, d, &r->m, d == r->forced_j, o);
    return true;
}

/* The documents are the acked state or the state after the op in doubt: chooses, and takes
 * generated ids the parent did not learn from the database. */
static void match_docs(run_state *r, unsigned cycle, const op *doubt)
{
    static model after;
    char why_a[400] = "", why_d[400] = "";
    op o = doubt != NULL ? *doubt : (op){.kind = OP_KINDS};
    bool has_doubt = doubt != NULL && o.kind != OP_INDEX;
    uint64_t d = r->last_ack + 1;

    if (docs_match(r, &r->m, why_a, sizeof why_a)) {
        cr_assert(r->nnotes == 0,
                  "seed %" PRIu64 " cycle %u: op %" PRIu64 " (%s) returned its generated ids "
                  "(it was acknowledged), but it is not there",
                  r->seed, cycle, d, has_doubt ? kind_names[o.kind] : "?");
        r->doubt_absent += has_doubt;
        return;
    }
    cr_assert(has_doubt,
              "seed %" PRIu64 " cycle %u: the documents are not the state after the last ack "
              "(op %" PRIu64 "), and no document op is in doubt: %s",
              r->seed, cycle, r->last_ack, why_a);
    after = r->m;
    apply(r->seed, d, &o, &after, r->notes);
    if (!docs_match(r, &after, why_d, sizeof why_d)) {
        /* Which documents of the op in doubt are there. */
        uint32_t there = 0, missing = 0;
        char why[256];
        for (uint32_t i = 0; i < o.n; i++) {
            uint32_t s = o.slot[i];
            bool is_new = r->act[s].present == after.s[s].present &&
                          (!r->act[s].present ||
                           doc_matches(r->seed, s, &after.s[s], r->act[s].doc, why, sizeof why));
            there += is_new;
            missing += !is_new;
        }
        cr_assert_fail("seed %" PRIu64 " cycle %u: the documents are neither the state after the "
                       "last ack (op %" PRIu64 ": %s) nor after op %" PRIu64 " in doubt (%s of "
                       "%" PRIu32 " documents: %s); of its documents %u are in their new state "
                       "and %u are not%s",
                       r->seed, cycle, r->last_ack, why_a, d, kind_names[o.kind], o.n, why_d, there,
                       missing, there > 0 && missing > 0 ? " (PARTLY THERE)" : "");
    }
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        if (after.s[s].present && after.s[s].idlen == 0) {
            memcpy(after.s[s].id, r->act[s].id, GEN_ID_LEN);
            after.s[s].idlen = GEN_ID_LEN;
        }
    }
    r->m = after;
    r->doubt_present++;
}

/* The indexes are as the acked ops left them, but for the op in doubt (the setup, or an index
 * op on "t"), which may have left its index building or not have happened. */
static void match_indexes(run_state *r, unsigned cycle, const op *doubt)
{
    bool doubt_ix = doubt != NULL && doubt->kind == OP_INDEX;
    uint8_t got[N_IX];

    cr_assert(r->meta_found || !r->m.coll,
              "seed %" PRIu64 " cycle %u: the collection is gone after it was acked", r->seed,
              cycle);
    for (int x = 0; x < N_IX; x++) {
        int at = r->meta_found ? meta_index(&r->meta, ix_path[x]) : -1;
        got[x] = at < 0 ? IX_ABSENT : r->meta.idx[at].ready ? IX_READY : IX_BUILDING;
    }
    cr_assert(!r->meta_found || r->meta.nindexes == (got[0] != 0) + (got[1] != 0) + (got[2] != 0),
              "cycle %u: the collection has %u indexes, not only on n, a.b and t", cycle,
              r->meta.nindexes);
    for (int x = 0; x < N_IX; x++) {
        uint8_t want = r->m.ix[x];
        bool ok = got[x] == want;
        bool in_doubt = (x != IX_T && !r->setup_acked) || (x == IX_T && doubt_ix);
        if (in_doubt && x != IX_T) {
            /* The setup creates it if missing and finishes an interrupted build. */
            ok = want == IX_ABSENT || got[x] >= want;
        } else if (in_doubt) {
            /* A drop: wholly there or not; a create: absent (if it was), building, ready. */
            ok = doubt->drop ? got[x] != IX_BUILDING
                             : (got[x] != IX_ABSENT || want == IX_ABSENT) && want != IX_READY;
            r->doubt_ix[got[x]]++;
        }
        cr_assert(ok,
                  "seed %" PRIu64 " cycle %u: the index on '%s' is %s, the acked ops left it %s%s",
                  r->seed, cycle, ix_path[x], ix_state_names[got[x]], ix_state_names[want],
                  in_doubt ? " (an op on it in doubt)" : "");
        r->m.ix[x] = got[x];
    }
    r->m.coll = r->meta_found;
}

/* Documents and indexes agree, in the raw key space: every entry of an index names a document
 * (once) under exactly the key of its value at the index's path; a ready index has one entry per
 * document. Entries of iids no longer in the catalog are counted as leftovers. */
static void check_entries(run_state *r, shale_db *db, unsigned cycle, uint32_t ndocs)
{
    shale_error err = {0};
    shale_buf prefix = {0}, want = {0};
    static bool seen[N_SLOTS];

    for (uint16_t i = 0; i < r->meta.nindexes; i++) {
        const doc_index *x = &r->meta.idx[i];
        shale_iter *it = NULL;
        uint32_t n = 0;
        memset(seen, 0, sizeof seen);
        cr_assert_eq(docdb_index_prefix(&prefix, r->meta.cid, x->iid, &err), SHALE_OK);
        shale_read_opts ro = {.prefix = {prefix.data, prefix.len}};
        cr_assert_eq(shale_iter_new(db, &ro, &it, &err), SHALE_OK, "%s", err.msg);
        for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
            shale_slice k = shale_iter_key(it), id = shale_iter_value(it);
            uint32_t s = 0;
            while (s < N_SLOTS && !(r->act[s].present && r->act[s].idlen == id.len &&
                                    memcmp(r->act[s].id, id.data, id.len) == 0)) {
                s++;
            }
            cr_assert(s < N_SLOTS,
                      "seed %" PRIu64 " cycle %u: an entry of the index on '%s' names '%.*s', "
                      "which is no document",
                      r->seed, cycle, x->path, (int)id.len, (const char *)id.data);
            cr_assert(!seen[s],
                      "seed %" PRIu64 " cycle %u: '%s' has two entries in the index on '%s'",
                      r->seed, cycle, r->act[s].id, x->path);
            seen[s] = true;
            dval d;
            cr_assert_eq(docdb_doc_decode((shale_slice){r->act[s].raw.data, r->act[s].raw.len},
                                          COLL, id, &d, &err),
                         SHALE_OK);
            shale_buf_free(&want);
            cr_assert_eq(docdb_index_prefix(&want, r->meta.cid, x->iid, &err), SHALE_OK);
            cr_assert_eq(docdb_path_key(d, (shale_slice){x->path, x->path_len}, &want, &err),
                         SHALE_OK);
            cr_assert(want.len + id.len == k.len && memcmp(want.data, k.data, want.len) == 0 &&
                          memcmp((const char *)k.data + want.len, id.data, id.len) == 0,
                      "seed %" PRIu64 " cycle %u: the entry of '%s' in the index on '%s' (%s) is "
                      "not under the key of its value: a stale entry",
                      r->seed, cycle, r->act[s].id, x->path, x->ready ? "ready" : "building");
            n++;
        }
        cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s", err.msg);
        shale_iter_free(it);
        cr_assert(x->ready ? n == ndocs : n <= ndocs,
                  "seed %" PRIu64 " cycle %u: the %s index on '%s' has %" PRIu32
                  " entries for %" PRIu32 " documents",
                  r->seed, cycle, x->ready ? "ready" : "building", x->path, n, ndocs);
        r->verified_entries += n;
        r->partial_builds += !x->ready && n > 0;
    }

    /* Every entry under the collection's index range belongs to a live index or is a leftover
     * of a dropped one (an iid below next_iid). */
    shale_iter *it = NULL;
    cr_assert_eq(docdb_index_prefix(&prefix, r->meta.cid, 0, &err), SHALE_OK);
    prefix.len -= 4; /* P 'I' cid */
    shale_read_opts ro = {.prefix = {prefix.data, prefix.len}};
    cr_assert_eq(shale_iter_new(db, &ro, &it, &err), SHALE_OK, "%s", err.msg);
    uint64_t left = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        cr_assert_geq(k.len, prefix.len + 4);
        const uint8_t *p = (const uint8_t *)k.data + prefix.len;
        uint32_t iid = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        bool live = false;
        for (uint16_t i = 0; i < r->meta.nindexes; i++) {
            live = live || r->meta.idx[i].iid == iid;
        }
        cr_assert(live || iid < r->meta.next_iid,
                  "cycle %u: index entries of iid %" PRIu32 ", never handed out", cycle, iid);
        left += !live;
    }
    cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s", err.msg);
    shale_iter_free(it);
    r->leftovers = left > r->leftovers ? left : r->leftovers;
    shale_buf_free(&prefix);
    shale_buf_free(&want);
}

/* The value of a document at an index path as a filter sees it (NULL: missing). Borrowed. */
static json_t *value_at(json_t *doc, int x)
{
    if (x == IX_AB) {
        json_t *a = json_object_get(doc, "a");
        return json_is_object(a) ? json_object_get(a, "b") : NULL;
    }
    return json_object_get(doc, ix_path[x]);
}

static json_t *find(run_state *r, shale_db *db, const char *filter, bool explain, unsigned cycle)
{
    /* Ids only: the documents themselves were compared through shale_doc_get. */
    shale_doc_query q = {.filter = {filter, strlen(filter)}, .fields = {"_id", 3}, .limit = 1000};
    shale_buf out = {0};
    shale_error err = {0};
    shale_code rc = explain ? shale_doc_explain(db, COLL, &q, &out, &err)
                            : shale_doc_find(db, COLL, &q, &out, &err);
    cr_assert_eq(rc, SHALE_OK, "cycle %u: %s %s: %s (%s)", cycle, explain ? "explain" : "find",
                 filter, shale_strerror(rc), err.msg);
    json_t *j = parse_buf(&out, explain ? "explain" : "find", cycle);
    shale_buf_free(&out);
    r->queries++;
    return j;
}

/* For every index path and every value in the collection (every: else up to QUERY_VALUES values
 * starting at a slot that moves with the cycle), an equality find returns exactly the documents
 * with an equal value (null: those without the field too), through the index when it is ready,
 * by a scan otherwise. */
static void check_queries(run_state *r, shale_db *db, unsigned cycle, uint32_t ndocs, bool every)
{
    static bool done[N_SLOTS];
    json_t *all = find(r, db, "{}", false, cycle);
    cr_assert_eq(json_integer_value(json_object_get(all, "total")), (json_int_t)ndocs,
                 "cycle %u: an empty filter matches %" JSON_INTEGER_FORMAT " of %" PRIu32
                 " documents",
                 cycle, json_integer_value(json_object_get(all, "total")), ndocs);
    json_decref(all);

    for (int x = 0; x < N_IX; x++) {
        bool explained = false;
        uint32_t values = 0;
        memset(done, 0, sizeof done);
        for (uint32_t i = 0; i < N_SLOTS && (every || values < QUERY_VALUES); i++) {
            uint32_t s = (i + cycle * 37u) % N_SLOTS;
            if (!r->act[s].present || done[s]) {
                continue;
            }
            values++;
            json_t *v = value_at(r->act[s].doc, x);
            json_t *f = json_object();
            json_object_set(f, ix_path[x], v != NULL ? v : json_null());
            char *text = dump(f);
            json_t *res = find(r, db, text, false, cycle);
            json_t *got = json_object_get(res, "documents");
            uint32_t want_n = 0;
            for (uint32_t t = 0; t < N_SLOTS; t++) {
                if (!r->act[t].present) {
                    continue;
                }
                json_t *w = value_at(r->act[t].doc, x);
                bool eq = v == NULL || json_is_null(v) ? w == NULL || json_is_null(w)
                                                       : w != NULL && qeq(v, w);
                if (!eq) {
                    continue;
                }
                done[t] = true;
                want_n++;
                bool found = false;
                for (size_t g = 0; g < json_array_size(got) && !found; g++) {
                    json_t *id = json_object_get(json_array_get(got, g), "_id");
                    found = json_string_length(id) == r->act[t].idlen &&
                            memcmp(json_string_value(id), r->act[t].id, r->act[t].idlen) == 0;
                }
                cr_assert(found, "seed %" PRIu64 " cycle %u: find %s misses '%s'", r->seed, cycle,
                          text, r->act[t].id);
            }
            cr_assert_eq(json_array_size(got), want_n,
                         "seed %" PRIu64 " cycle %u: find %s returns %zu documents, want %" PRIu32,
                         r->seed, cycle, text, json_array_size(got), want_n);
            json_decref(res);
            if (!explained && v != NULL && !json_is_null(v) && !json_is_array(v) &&
                !json_is_object(v)) {
                /* The plan for a scalar: the index when it is ready, a scan when it is not (an
                 * array operand may be served either way). */
                json_t *e = find(r, db, text, true, cycle);
                const char *plan = json_string_value(json_object_get(e, "plan"));
                const char *want = r->m.ix[x] == IX_READY ? "index" : "scan";
                cr_assert(plan != NULL && strcmp(plan, want) == 0,
                          "cycle %u: explain %s: plan %s, want %s (the index is %s)", cycle, text,
                          plan != NULL ? plan : "(none)", want, ix_state_names[r->m.ix[x]]);
                json_decref(e);
                explained = true;
            }
            free(text);
            json_decref(f);
        }
    }
}

static void check_db(run_state *r, shale_db *db, unsigned cycle, uint32_t ndocs, bool every)
{
    if (r->meta_found) {
        check_entries(r, db, cycle, ndocs);
        check_queries(r, db, cycle, ndocs, every);
    }
}

static void verify(run_state *r, unsigned cycle)
{
    bool tenth = cycle % 10 == 9 || cycle + 1 == r->cycles;
    shale_error err = {0};
    shale_db *db = NULL;

    if (tenth) {
        crash_offline_check(r->dir, "crash_doc", r->seed, cycle);
    }
    /* Defaults but for the level-0 trigger: no compaction starts while the files are listed. */
    shale_options o = {.l0_compaction_trigger = 64};
    shale_code rc = shale_open(r->dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "seed %" PRIu64 " cycle %u: reopen after the kill: %s (%s)", r->seed,
                 cycle, shale_strerror(rc), err.msg);

    uint32_t ndocs = read_actual(r, db, cycle);
    op doubt;
    bool has_doubt = doubt_op(r, &doubt);
    match_docs(r, cycle, has_doubt ? &doubt : NULL);
    match_indexes(r, cycle, has_doubt ? &doubt : NULL);
    check_db(r, db, cycle, ndocs, tenth);
    r->verified_docs += ndocs;

    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    uint64_t deep = 0;
    for (int lv = 1; lv < 8; lv++) {
        deep += st.level_tables[lv];
    }
    r->peak_deep_tables = deep > r->peak_deep_tables ? deep : r->peak_deep_tables;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "crash_doc seed %" PRIu64 " cycle %u: after the kill", r->seed,
             cycle);
    tu_assert_db_files(db, r->dir, ctx);
    if (tenth) {
        rc = shale_compact(db, &err);
        cr_assert_eq(rc, SHALE_OK, "cycle %u: compact: %s (%s)", cycle, shale_strerror(rc),
                     err.msg);
        cr_assert_eq(read_actual(r, db, cycle), ndocs, "cycle %u: compaction changed the count",
                     cycle);
        char why[400];
        cr_assert(docs_match(r, &r->m, why, sizeof why), "cycle %u: after compaction: %s", cycle,
                  why);
        check_db(r, db, cycle, ndocs, false);
    }
    actual_clear(r);
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "cycle %u: close: %s", cycle, err.msg);
}

static void crash_cycle(run_state *r, tu_rng *rng, unsigned cycle)
{
    bool armed = cycle % ARM_EVERY == ARM_EVERY - 1;
    child_arg ca = {.seed = r->seed,
                    .dir = r->dir,
                    .m = &r->m,
                    .start = r->next,
                    .cap = r->cap,
                    .arm_us = armed ? ARM_MAX_US : 0};

    r->last_ack = r->next - 1;
    r->forced_j = armed ? r->next : 0;
    r->setup_acked = false;
    r->nnotes = 0;
    memset(r->notes, 0, sizeof r->notes);
    /* An armed child kills itself: the parent waits for it (up to all its acks, no delay) or,
     * one time in three, kills it at once. */
    int status = crash_fork_kill(&(crash_child){.main = child_main,
                                                .main_arg = &ca,
                                                .book = book,
                                                .book_arg = r,
                                                .record_len = sizeof(rec),
                                                .max_acks = armed ? 1000 : r->max_acks,
                                                .max_delay_us = armed ? 0 : r->max_delay_us,
                                                .mixed_delay_div = 4,
                                                .ack_wait_ms = ACK_WAIT_MS},
                                 rng);
    cr_assert(!r->child_error,
              "seed %" PRIu64 " cycle %u: the child failed on op %" PRIu64 " with %s (see stderr)",
              r->seed, cycle, r->child_err.j, shale_strerror((shale_code)r->child_err.code));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "cycle %u: the child ended on its own (status 0x%x)", cycle, status);
    cr_assert(r->bad[0] == '\0', "seed %" PRIu64 " cycle %u: %s", r->seed, cycle, r->bad);
}

static void run(uint64_t seed, unsigned cycles, uint64_t cap, uint64_t max_acks,
                uint64_t max_delay_us)
{
    /* Static, so a failed assertion (which ends the test process) leaves nothing leaked. */
    static run_state run_state_;
    run_state *r = &run_state_;
    tu_rng rng;

    memset(r, 0, sizeof *r);
    r->seed = crash_env_seed(seed);
    r->cycles = cycles * (unsigned)tu_campaign_scale();
    r->cap = cap;
    r->max_acks = max_acks;
    r->max_delay_us = max_delay_us;
    r->next = 1;
    model_init(&r->m);
    shale_options o = db_opts(true);
    r->dir = crash_create("crash_doc", &o, r->seed, &rng);

    for (unsigned c = 0; c < r->cycles; c++) {
        crash_cycle(r, &rng, c);
        verify(r, c);
        r->next = r->last_ack + 2; /* the op in doubt, there or not, is done */
    }
    uint64_t acked = 0;
    for (int k = 0; k < OP_KINDS; k++) {
        acked += r->acked[k];
    }
    cr_log_info("crash_doc: seed %" PRIu64 ", %u cycles, %" PRIu64 " ops acked (%" PRIu64
                " inserts, %" PRIu64 " generated-id inserts, %" PRIu64 " insert_many, %" PRIu64
                " updates, %" PRIu64 " update_many, %" PRIu64 " replaces, %" PRIu64
                " deletes, %" PRIu64 " index ops; %" PRIu64 " refused as they must be; %" PRIu64
                " generated ids reported); in doubt: doc ops there %" PRIu64 ", absent %" PRIu64
                "; index ops left absent %" PRIu64 ", building %" PRIu64 ", ready %" PRIu64
                " (building indexes with entries checked %" PRIu64 " times); %" PRIu64
                " documents, %" PRIu64 " index entries and %" PRIu64
                " queries verified; up to %" PRIu64 " leftover entries of dropped indexes; "
                "up to %" PRIu64 " tables below level 0",
                r->seed, r->cycles, acked, r->acked[OP_INSERT], r->acked[OP_INSERT_GEN],
                r->acked[OP_INSERT_MANY], r->acked[OP_UPDATE], r->acked[OP_UPDATE_MANY],
                r->acked[OP_REPLACE], r->acked[OP_DELETE], r->acked[OP_INDEX], r->acked_noop,
                r->acked_docs_gen, r->doubt_present, r->doubt_absent, r->doubt_ix[IX_ABSENT],
                r->doubt_ix[IX_BUILDING], r->doubt_ix[IX_READY], r->partial_builds,
                r->verified_docs, r->verified_entries, r->queries, r->leftovers,
                r->peak_deep_tables);
    /* The run must have exercised what it claims to. */
    for (int k = 0; k < OP_KINDS; k++) {
        cr_assert_gt(r->acked[k], 0, "no %s was ever acked", kind_names[k]);
    }
    cr_assert_gt(r->acked_noop, 0, "no refused write was ever acked");
    cr_assert_gt(r->doubt_ix[0] + r->doubt_ix[1] + r->doubt_ix[2], 0,
                 "no index op was ever in doubt");
    /* Every mismatch failed in match_docs or the index checks: nothing acknowledged was lost. */
    tu_campaign_report("crash",
                       "documents: %u cycles, %llu acknowledged ops verified, %llu in doubt, 0 "
                       "lost (%llu documents, %llu index entries, %llu queries checked; index ops "
                       "in doubt left absent %llu, building %llu, ready %llu; seed 0x%llx)",
                       r->cycles, (unsigned long long)acked, (unsigned long long)r->doubt_present,
                       (unsigned long long)r->verified_docs,
                       (unsigned long long)r->verified_entries, (unsigned long long)r->queries,
                       (unsigned long long)r->doubt_ix[IX_ABSENT],
                       (unsigned long long)r->doubt_ix[IX_BUILDING],
                       (unsigned long long)r->doubt_ix[IX_READY], (unsigned long long)r->seed);
    crash_remove(&r->dir);
}

/* seed, cycles, ops per cycle before the child idles, max acks before the kill, max delay before
 * the kill (us). */
Test(crash_doc, full_durability_documents_and_indexes)
{
    run(0xd0c0001, 60, 2000, 80, 100000);
}
