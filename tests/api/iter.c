/* Iterators: ordering, seeks, both directions, bounds and prefix against a sorted reference, the
 * point-in-time view, and bad arguments. */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"

TestSuite(iter);

/* ---- a reference model: a pool of distinct keys, each live with a value or absent ---- */

enum { KMAX = 6, POOL = 400 };

typedef struct rkey {
    unsigned char k[KMAX];
    size_t len;
    bool live;
    char v[24];
} rkey;

typedef struct model {
    rkey keys[POOL]; /* sorted bytewise, distinct */
    size_t n;
} model;

/* Bytes that stress ordering: NUL, 0xff and a few letters, so keys share prefixes. */
static const unsigned char alphabet[] = {0x00, 'a', 'b', 'c', 0xff};

static shale_slice rk_slice(const rkey *k)
{
    return (shale_slice){k->k, k->len};
}

static int cmp_bytes(const void *a, size_t an, const void *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0) {
        return c;
    }
    return an < bn ? -1 : an > bn;
}

static int cmp_rkey(const void *a, const void *b)
{
    const rkey *x = a, *y = b;
    return cmp_bytes(x->k, x->len, y->k, y->len);
}

static void random_key(tu_rng *r, unsigned char *out, size_t *len)
{
    *len = 1 + (size_t)tu_rng_below(r, KMAX);
    for (size_t i = 0; i < *len; i++) {
        out[i] = alphabet[tu_rng_below(r, sizeof alphabet)];
    }
}

/* Fills the pool with distinct random keys, then runs random puts and deletes on db and model. */
static void model_build(model *m, shale_db *db, tu_rng *r, int ops)
{
    m->n = 0;
    for (int i = 0; i < POOL; i++) {
        rkey *k = &m->keys[m->n];
        memset(k, 0, sizeof *k);
        random_key(r, k->k, &k->len);
        m->n++;
    }
    qsort(m->keys, m->n, sizeof m->keys[0], cmp_rkey);
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (w == 0 || cmp_rkey(&m->keys[w - 1], &m->keys[i]) != 0) {
            m->keys[w++] = m->keys[i];
        }
    }
    m->n = w;
    for (int i = 0; i < ops; i++) {
        rkey *k = &m->keys[tu_rng_below(r, m->n)];
        if (tu_rng_below(r, 10) < 7) {
            snprintf(k->v, sizeof k->v, "v%d", i);
            k->live = true;
            tu_putn(db, rk_slice(k), tu_str(k->v));
        } else {
            k->live = false;
            TU_OK(shale_delete(db, NULL, rk_slice(k), &ERR));
        }
    }
}

static bool has_prefix(const rkey *k, shale_slice p)
{
    return p.len == 0 || (k->len >= p.len && memcmp(k->k, p.data, p.len) == 0);
}

/* The model's keys an iterator with `ro` must show, as indexes into m->keys. */
typedef struct view {
    size_t idx[POOL];
    size_t n;
} view;

static void view_build(view *v, const model *m, const shale_read_opts *ro)
{
    v->n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const rkey *k = &m->keys[i];
        if (!k->live) {
            continue;
        }
        if (ro->lower_bound.len &&
            cmp_bytes(k->k, k->len, ro->lower_bound.data, ro->lower_bound.len) < 0) {
            continue;
        }
        if (ro->upper_bound.len &&
            cmp_bytes(k->k, k->len, ro->upper_bound.data, ro->upper_bound.len) >= 0) {
            continue;
        }
        if (!has_prefix(k, ro->prefix)) {
            continue;
        }
        v->idx[v->n++] = i;
    }
}

/* Position in the view of the first key >= t (v->n if none). */
static ptrdiff_t view_lower(const view *v, const model *m, const unsigned char *t, size_t tn)
{
    for (size_t i = 0; i < v->n; i++) {
        const rkey *k = &m->keys[v->idx[i]];
        if (cmp_bytes(k->k, k->len, t, tn) >= 0) {
            return (ptrdiff_t)i;
        }
    }
    return (ptrdiff_t)v->n;
}

/* Asserts the iterator sits at view position pos (-1 or v->n: invalid). */
static void check_at(shale_iter *it, const view *v, const model *m, ptrdiff_t pos, int step)
{
    if (pos < 0 || pos >= (ptrdiff_t)v->n) {
        cr_assert_not(shale_iter_valid(it), "step %d: valid, expected the end", step);
        TU_OK(shale_iter_status(it, &ERR));
        return;
    }
    const rkey *k = &m->keys[v->idx[pos]];
    cr_assert(shale_iter_valid(it), "step %d: invalid, expected position %td of %zu", step, pos,
              v->n);
    shale_slice key = shale_iter_key(it);
    shale_slice val = shale_iter_value(it);
    cr_assert_eq(cmp_bytes(key.data, key.len, k->k, k->len), 0,
                 "step %d: wrong key at position %td (len %zu, want len %zu)", step, pos, key.len,
                 k->len);
    cr_assert_eq(val.len, strlen(k->v), "step %d: value length", step);
    cr_assert_eq(memcmp(val.data, k->v, val.len), 0, "step %d: value bytes", step);
}

/* Random seeks and moves in both directions, checked after every step. */
static void random_walk(shale_db *db, const model *m, const shale_read_opts *ro, tu_rng *r,
                        int steps)
{
    view v;
    shale_iter *it = NULL;
    ptrdiff_t pos = -1;

    view_build(&v, m, ro);
    TU_OK(shale_iter_new(db, ro, &it, &ERR));
    for (int step = 0; step < steps; step++) {
        bool valid = pos >= 0 && pos < (ptrdiff_t)v.n;
        unsigned op = (unsigned)tu_rng_below(r, 10);
        unsigned char t[KMAX];
        size_t tn;

        if (tu_rng_below(r, 2) == 0) {
            random_key(r, t, &tn);
        } else {
            const rkey *k = &m->keys[tu_rng_below(r, m->n)];
            tn = k->len;
            memcpy(t, k->k, tn);
        }
        if (!valid && op >= 4) {
            op = (unsigned)tu_rng_below(r, 4); /* moving needs a position: seek instead */
        }
        switch (op) {
        case 0:
            shale_iter_seek_first(it);
            pos = 0;
            break;
        case 1:
            shale_iter_seek_last(it);
            pos = (ptrdiff_t)v.n - 1;
            break;
        case 2:
            shale_iter_seek(it, (shale_slice){t, tn});
            pos = view_lower(&v, m, t, tn);
            break;
        case 3: {
            shale_iter_seek_for_prev(it, (shale_slice){t, tn});
            /* the last key <= t: one before the first key > t */
            ptrdiff_t first_gt = (ptrdiff_t)v.n;
            for (size_t i = 0; i < v.n; i++) {
                const rkey *k = &m->keys[v.idx[i]];
                if (cmp_bytes(k->k, k->len, t, tn) > 0) {
                    first_gt = (ptrdiff_t)i;
                    break;
                }
            }
            pos = first_gt - 1;
            break;
        }
        case 4:
        case 5:
        case 6:
            shale_iter_next(it);
            pos++;
            break;
        default:
            shale_iter_prev(it);
            pos--;
            break;
        }
        if (pos < 0 || pos >= (ptrdiff_t)v.n) {
            pos = -1;
        }
        check_at(it, &v, m, pos, step);
    }
    /* A full forward and backward scan. */
    shale_iter_seek_first(it);
    for (size_t i = 0; i < v.n; i++) {
        check_at(it, &v, m, (ptrdiff_t)i, -1);
        shale_iter_next(it);
    }
    check_at(it, &v, m, -1, -1);
    shale_iter_seek_last(it);
    for (size_t i = v.n; i-- > 0;) {
        check_at(it, &v, m, (ptrdiff_t)i, -2);
        shale_iter_prev(it);
    }
    check_at(it, &v, m, -1, -2);
    shale_iter_free(it);
}

typedef struct iter_case {
    const char *name;
    shale_read_opts ro;
} iter_case;

Test(iter, random_walks_match_a_sorted_reference)
{
    static const iter_case cases[] = {
        {"no bounds", {.prefix = {NULL, 0}}},
        {"lower a", {.lower_bound = TU_SL("a")}},
        {"upper b\\0", {.upper_bound = TU_SL("b\0")}},
        {"lower \\0a upper b",
         {.lower_bound = TU_SL("\0"
                               "a"),
          .upper_bound = TU_SL("b")}},
        {"lower between keys", {.lower_bound = TU_SL("ab\xff\xff\xff\xff\xff")}},
        {"prefix a", {.prefix = TU_SL("a")}},
        {"prefix \\xff", {.prefix = TU_SL("\xff")}},
        {"prefix \\0", {.prefix = TU_SL("\0")}},
        {"prefix a + bounds inside",
         {.prefix = TU_SL("a"), .lower_bound = TU_SL("ab"), .upper_bound = TU_SL("ac")}},
        {"prefix ab + bounds around",
         {.prefix = TU_SL("ab"), .lower_bound = TU_SL("a"), .upper_bound = TU_SL("c")}},
        {"prefix b + bounds cutting",
         {.prefix = TU_SL("b"), .lower_bound = TU_SL("bb"), .upper_bound = TU_SL("\xff")}},
        {"lower above upper", {.lower_bound = TU_SL("c"), .upper_bound = TU_SL("a")}},
        {"lower equals upper", {.lower_bound = TU_SL("b"), .upper_bound = TU_SL("b")}},
        {"prefix matches nothing", {.prefix = TU_SL("zzz")}},
        {"prefix outside bounds", {.prefix = TU_SL("c"), .upper_bound = TU_SL("b")}},
    };
    static model m;
    tu_fx fx = {0};
    tu_rng r;

    tu_rng_seed(&r, 20240611);
    tu_fx_begin(&fx, "api-iter", NULL);
    model_build(&m, fx.db, &r, 1500);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_log_info("case %s", cases[i].name);
        random_walk(fx.db, &m, &cases[i].ro, &r, 1500);
    }
    /* The same after a reopen (the view is rebuilt from the log). */
    tu_fx_reopen(&fx, NULL);
    random_walk(fx.db, &m, &cases[0].ro, &r, 3000);
    random_walk(fx.db, &m, &cases[8].ro, &r, 1000);
    tu_fx_end(&fx);
}

Test(iter, empty_database)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "api-iter", NULL);
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_seek_first(it);
    cr_assert_not(shale_iter_valid(it));
    shale_iter_seek_last(it);
    cr_assert_not(shale_iter_valid(it));
    shale_iter_seek(it, TU_SL("m"));
    cr_assert_not(shale_iter_valid(it));
    shale_iter_seek_for_prev(it, TU_SL("m"));
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);

    /* Only deleted keys: still empty. */
    tu_put(fx.db, "a", "1");
    tu_del(fx.db, "a");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_seek_first(it);
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, skips_deleted_keys)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "api-iter", NULL);
    tu_put(fx.db, "a", "1");
    tu_put(fx.db, "b", "2");
    tu_put(fx.db, "c", "3");
    tu_put(fx.db, "d", "4");
    tu_del(fx.db, "b");
    tu_del(fx.db, "d");
    tu_put(fx.db, "c", "33");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "a=1,c=33");
    shale_iter_seek(it, TU_SL("b"));
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(shale_iter_key(it).len, 1);
    cr_assert_eq(memcmp(shale_iter_key(it).data, "c", 1), 0);
    shale_iter_seek_for_prev(it, TU_SL("b"));
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "a", 1), 0);
    shale_iter_seek_for_prev(it, TU_SL("zzz"));
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "c", 1), 0);
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, point_in_time_view)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "api-iter", NULL);
    tu_put(fx.db, "a", "1");
    tu_put(fx.db, "b", "2");
    tu_put(fx.db, "c", "3");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    tu_put(fx.db, "aa", "new");     /* inserted after: not seen */
    tu_del(fx.db, "b");             /* deleted after: still seen */
    tu_put(fx.db, "c", "changed");  /* overwritten after: old value */
    tu_put(fx.db, "0", "before-a"); /* before every key: not seen */
    shale_batch *bt = shale_batch_new();
    cr_assert_not_null(bt);
    TU_OK(shale_batch_delete(bt, TU_SL("a"), &ERR));
    TU_OK(shale_batch_put(bt, TU_SL("d"), TU_SL("4"), &ERR));
    TU_OK(shale_write(fx.db, NULL, bt, &ERR));
    shale_batch_free(bt);
    cr_assert_str_eq(tu_scan(it, false), "a=1,b=2,c=3");
    /* Backwards too. */
    shale_iter_seek_last(it);
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "c", 1), 0);
    cr_assert_eq(memcmp(shale_iter_value(it).data, "3", 1), 0);
    shale_iter_free(it);

    /* A new iterator sees the new state. */
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "0=before-a,aa=new,c=changed,d=4");
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, outlives_many_writes)
{
    enum { N = 200, WRITES = 4000 };
    tu_fx fx = {0};
    shale_iter *it = NULL;
    char kb[17], vb[256];

    tu_fx_begin(&fx, "api-iter", NULL);
    for (uint64_t i = 0; i < N; i++) {
        tu_putn(fx.db, tu_key(kb, i * 2), api_value(vb, i));
    }
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_seek(it, tu_key(kb, 20)); /* positioned before the writes */
    for (uint64_t i = 0; i < WRITES; i++) {
        uint64_t k = i % (2 * N + 7);
        if (i % 3 == 0) {
            TU_OK(shale_delete(fx.db, NULL, tu_key(kb, k), &ERR));
        } else {
            tu_putn(fx.db, tu_key(kb, k), TU_SL("overwritten"));
        }
    }
    /* Continue from where it was, then rescan from the start. */
    for (uint64_t i = 10; i < N; i++) {
        cr_assert(shale_iter_valid(it), "entry %llu", (unsigned long long)i);
        shale_slice want = tu_key(kb, i * 2);
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        cr_assert_eq(k.len, want.len);
        cr_assert_eq(memcmp(k.data, want.data, k.len), 0);
        shale_slice wv = api_value(vb, i);
        cr_assert_eq(v.len, wv.len);
        cr_assert_eq(memcmp(v.data, wv.data, v.len), 0);
        shale_iter_next(it);
    }
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    size_t n = 0;
    for (shale_iter_seek_last(it); shale_iter_valid(it); shale_iter_prev(it)) {
        n++;
    }
    cr_assert_eq(n, N);
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, info_gives_seq_and_deadline)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    const uint64_t far = 4102444800000ull; /* 2100-01-01 */

    tu_fx_begin(&fx, "api-iter", NULL);
    tu_put(fx.db, "a", "1");
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("b"), TU_SL("2"), far, &ERR));
    tu_put(fx.db, "c", "3");
    tu_put(fx.db, "a", "11");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    int n = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it), n++) {
        shale_slice k = shale_iter_key(it);
        shale_entry_info got = shale_iter_info(it);
        shale_entry_info want = {0};
        TU_OK(shale_get_info(fx.db, NULL, k, NULL, &want, &ERR));
        cr_assert_eq(got.seq, want.seq, "key %.*s", (int)k.len, (const char *)k.data);
        cr_assert_eq(got.expire_at_ms, want.expire_at_ms);
        cr_assert_eq(got.expire_at_ms, memcmp(k.data, "b", 1) == 0 ? far : 0);
    }
    cr_assert_eq(n, 3);
    shale_iter_free(it);
    tu_fx_end(&fx);
}

/* shale_iter_new copies the bound and prefix bytes. */
Test(iter, read_opts_are_copied)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    char prefix[4] = "b", lower[4] = "b1", upper[4] = "b3";
    shale_read_opts ro = {
        .prefix = {prefix, 1}, .lower_bound = {lower, 2}, .upper_bound = {upper, 2}};

    tu_fx_begin(&fx, "api-iter", NULL);
    static const char *const keys[] = {"a1", "b0", "b1", "b2", "b3", "c1"};
    for (size_t i = 0; i < 6; i++) {
        tu_put(fx.db, keys[i], "v");
    }
    TU_OK(shale_iter_new(fx.db, &ro, &it, &ERR));
    memcpy(prefix, "x", 1);
    memcpy(lower, "\0\0", 2);
    memcpy(upper, "\xff\xff", 2);
    cr_assert_str_eq(tu_scan(it, false), "b1=v,b2=v");
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, seek_is_clamped_into_bounds)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    shale_read_opts ro = {.lower_bound = TU_SL("b"), .upper_bound = TU_SL("d")};

    tu_fx_begin(&fx, "api-iter", NULL);
    static const char *const keys[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++) {
        tu_put(fx.db, keys[i], keys[i]);
    }
    TU_OK(shale_iter_new(fx.db, &ro, &it, &ERR));
    shale_iter_seek(it, TU_SL("a"));
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "b", 1), 0);
    shale_iter_seek_for_prev(it, TU_SL("z"));
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "c", 1), 0);
    shale_iter_seek(it, TU_SL("d"));
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_seek_for_prev(it, TU_SL("a"));
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_seek_last(it);
    cr_assert_eq(memcmp(shale_iter_key(it).data, "c", 1), 0);
    shale_iter_next(it);
    cr_assert_not(shale_iter_valid(it));
    shale_iter_seek_first(it);
    cr_assert_eq(memcmp(shale_iter_key(it).data, "b", 1), 0);
    shale_iter_prev(it);
    cr_assert_not(shale_iter_valid(it));
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    tu_fx_end(&fx);
}

Test(iter, null_arguments)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "api-iter", NULL);
    tu_put(fx.db, "a", "1");
    TU_CODE(SHALE_INVALID, shale_iter_new(NULL, NULL, &it, &ERR));
    TU_CODE(SHALE_INVALID, shale_iter_new(fx.db, NULL, NULL, &ERR));
    shale_read_opts bad = {.prefix = {NULL, 3}};
    TU_CODE(SHALE_INVALID, shale_iter_new(fx.db, &bad, &it, &ERR));
    bad = (shale_read_opts){.lower_bound = {NULL, 1}};
    TU_CODE(SHALE_INVALID, shale_iter_new(fx.db, &bad, &it, &ERR));
    bad = (shale_read_opts){.upper_bound = {NULL, 1}};
    TU_CODE(SHALE_INVALID, shale_iter_new(fx.db, &bad, &it, &ERR));

    /* Every iterator call accepts NULL without crashing. */
    shale_iter_free(NULL);
    shale_iter_seek_first(NULL);
    shale_iter_seek_last(NULL);
    shale_iter_seek(NULL, TU_SL("a"));
    shale_iter_seek_for_prev(NULL, TU_SL("a"));
    shale_iter_next(NULL);
    shale_iter_prev(NULL);
    cr_assert_not(shale_iter_valid(NULL));
    TU_CODE(SHALE_INVALID, shale_iter_status(NULL, &ERR));

    /* Moving an iterator that is not positioned does not crash; a seek then works. */
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_next(it);
    shale_iter_prev(it);
    shale_iter_seek_first(it);
    shale_iter_next(it);
    cr_assert_not(shale_iter_valid(it));
    shale_iter_next(it);
    shale_iter_prev(it);
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(memcmp(shale_iter_key(it).data, "a", 1), 0);
    shale_iter_free(it);
    tu_fx_end(&fx);
}

/* An iterator left open at shale_close is invalidated; freeing it later is safe. */
Test(iter, left_open_at_close)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "api-iter", NULL);
    tu_put(fx.db, "a", "1");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    tu_fx_close(&fx);
    shale_iter_free(it);
    tu_fx_end(&fx);
}

/* An iterator over tables keeps reading its view after shale_close: the view pins the tables, and
 * the table and block caches stay alive until the iterator is freed. With tiny tables, more of them
 * than the table cache keeps open, the walk after the close opens most tables itself (ASan would
 * flag any access to memory the close freed). */
Test(iter, reads_tables_after_close)
{
    shale_options o = tu_small_lsm_options(4);
    tu_fx fx = {0};
    shale_iter *it = NULL;
    char kb[17], vb[200];
    const unsigned n = 8000;

    o.max_open_tables = 16; /* the smallest bound: fewer than the tables written below */
    o.compression = SHALE_COMPRESSION_NONE;
    tu_fx_begin(&fx, "api-iter", &o);
    for (unsigned i = 0; i < n; i++) {
        snprintf(vb, sizeof vb, "value-%u-%0150u", i, i);
        tu_putn(fx.db, tu_key(kb, i), tu_str(vb));
    }
    TU_OK(shale_compact(fx.db, &ERR));
    shale_stats st;
    TU_OK(shale_stats_get(fx.db, &st, &ERR));
    uint64_t below = 0;
    for (int l = 1; l < 8; l++) {
        below += st.level_tables[l];
    }
    cr_assert_gt(below, 16, "want more tables below level 0, got %llu", (unsigned long long)below);
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    tu_fx_close(&fx);
    unsigned seen = 0;
    for (; shale_iter_valid(it); shale_iter_next(it), seen++) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        snprintf(vb, sizeof vb, "value-%u-%0150u", seen, seen);
        cr_assert_eq(k.len, 16);
        cr_assert_eq(memcmp(k.data, tu_key(kb, seen).data, 16), 0, "key %u out of order", seen);
        cr_assert_eq(v.len, strlen(vb));
        cr_assert_eq(memcmp(v.data, vb, v.len), 0, "value of key %u", seen);
    }
    TU_OK(shale_iter_status(it, &ERR));
    cr_assert_eq(seen, n);
    shale_iter_free(it);
    tu_fx_end(&fx);
}
