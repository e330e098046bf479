/*
 * dfilter: the filter language of dfilter.h, compiled once into a small tree and matched against
 * encoded documents without allocating.
 *
 * Representation. A filter owns one byte buffer (a copy of the encoded filter, or for
 * dfilter_from_pairs the fields and values it encoded); every path slice and operand dval in the
 * tree borrows from it for the filter's whole life. The tree:
 *   N_AND, N_OR   children (the top level and every element of $and are N_AND of their keys)
 *   N_PATH        a path and a list of operators that must all hold; the path is resolved once
 *                 per match and every operator is evaluated against (found, value)
 * An operator is $eq/$ne/$gt/$gte/$lt/$lte (one operand), $in/$nin (an array of operands, sorted
 * by dval_cmp and deduplicated at compile time: linear scan up to IN_LINEAR_MAX values, binary
 * search above), $exists, or $not (a nested operator list on the same path).
 *
 * Choices where the header leaves room (documented here and in the report):
 *   - An object value under a path is an operator expression when every name starts with '$',
 *     a literal (equality with that object) when none does (and when it is empty: {"f": {}} is
 *     equality with the empty object, as MongoDB); mixing both is SHALE_INVALID.
 *   - $not takes a non-empty operator expression and may itself contain $not; it combines with
 *     other operators on the same path ({"f": {"$gte": 1, "$not": {"$eq": 3}}}).
 *   - A path with an empty component ("a..b", ".a", "a.") is rejected like an empty path: it can
 *     never resolve, so {"a..b": null} would silently match every document.
 *   - $in/$nin accept an empty array ($in [] matches nothing, $nin [] everything).
 *   - dfilter_from_pairs: a field is validated like a path (non-empty, no empty component, not
 *     starting with '$'); values are not checked for UTF-8 (a value that is not valid UTF-8
 *     equals no stored string, so it simply matches nothing).
 * Index conditions (dfilter_index_conds) are computed once at compile time from the conjuncts of
 * the top level, flattening nested $and (a conjunct of a conjunct is a conjunct); $or, $not, $ne,
 * $nin and $exists are never offered. One condition per path, in order of first appearance, the
 * tightest available: an $eq (the first one) over an $in (the one with fewest values) over the
 * intersection of the range operators. Not offered either: an $in containing null (the header
 * documents "documents missing the path too" only for DFC_EQ), and any operator whose operand is
 * (or, for $in, contains) an array or an object: dval_index_key orders those by class only and
 * keys [1] and [1.0] differently although they are equal, so an index cannot serve them exactly
 * (such a filter is a scan). Range operands of different classes make the filter unsatisfiable
 * on that path: the condition is then the empty range (lo == hi == the first operand, both
 * exclusive). Same-class bounds that cross (lo > hi) are returned as they are: also empty.
 */
#include "doc/dfilter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"

/* Up to this many $in operands a linear scan beats the branches of a binary search. */
#define IN_LINEAR_MAX 16
/* Paths are quoted in messages up to this many bytes. */
#define MSG_PATH_MAX  64

enum op_kind {
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_IN,
    OP_NIN,
    OP_EXISTS,
    OP_NOT,
};

typedef struct fop {
    enum op_kind kind;
    dval v;              /* EQ NE GT GTE LT LTE */
    enum dval_class cls; /* GT GTE LT LTE: the operand's class */
    bool null_operand;   /* EQ NE: v is null (so a missing field equals it) */
    bool exists;         /* EXISTS */
    bool in_null;        /* IN NIN: null is among vals */
    dval *vals;          /* IN NIN: sorted by dval_cmp, no duplicates */
    size_t nvals;
    struct fop *sub; /* NOT */
    size_t nsub;
} fop;

enum node_kind { N_AND, N_OR, N_PATH };

typedef struct fnode {
    enum node_kind kind;
    shale_slice path; /* N_PATH */
    fop *ops;         /* N_PATH */
    size_t nops;
    struct fnode *kids; /* N_AND N_OR */
    size_t nkids;
} fnode;

struct dfilter {
    uint8_t *bytes; /* owned; everything below borrows from it */
    fnode root;     /* N_AND */
    dfilter_cond *conds;
    size_t nconds;
};

/* ---- freeing (accepts partly built trees: arrays are calloc'ed before they are filled) ---- */

static void free_ops(fop *ops, size_t n)
{
    if (ops == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(ops[i].vals);
        free_ops(ops[i].sub, ops[i].nsub);
    }
    free(ops);
}

static void free_node(fnode *n)
{
    free_ops(n->ops, n->nops);
    if (n->kids != NULL) {
        for (size_t i = 0; i < n->nkids; i++) {
            free_node(&n->kids[i]);
        }
        free(n->kids);
    }
}

void dfilter_free(dfilter *f)
{
    if (f == NULL) {
        return;
    }
    free_node(&f->root);
    free(f->conds);
    free(f->bytes);
    free(f);
}

/* ---- parsing ---- */

static int path_len_for_msg(shale_slice p)
{
    return (int)(p.len > MSG_PATH_MAX ? MSG_PATH_MAX : p.len);
}

static bool name_is(shale_slice name, const char *lit)
{
    return slice_eq(name, slice_cstr(lit));
}

static bool is_operator_name(shale_slice name)
{
    return name.len > 0 && ((const char *)name.data)[0] == '$';
}

/* The field operators, by name; false for anything else (including $and/$or). */
static bool field_operator(shale_slice name, enum op_kind *out)
{
    static const struct {
        const char *name;
        enum op_kind kind;
    } table[] = {
        {"$eq", OP_EQ},         {"$ne", OP_NE},   {"$gt", OP_GT}, {"$gte", OP_GTE},
        {"$lt", OP_LT},         {"$lte", OP_LTE}, {"$in", OP_IN}, {"$nin", OP_NIN},
        {"$exists", OP_EXISTS}, {"$not", OP_NOT},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (name_is(name, table[i].name)) {
            *out = table[i].kind;
            return true;
        }
    }
    return false;
}

static shale_code check_path(shale_slice path, shale_error *err)
{
    const char *p = path.data;
    if (path.len == 0) {
        return err_set(err, SHALE_INVALID, 0, "filter: empty path");
    }
    for (size_t i = 0; i < path.len; i++) {
        if (p[i] == '.' && (i == 0 || i + 1 == path.len || p[i + 1] == '.')) {
            return err_set(err, SHALE_INVALID, 0, "filter: path '%.*s' has an empty component",
                           path_len_for_msg(path), p);
        }
    }
    return SHALE_OK;
}

/* For an object operand: 1 if every name starts with '$' (an operator expression), 0 if none does
 * or it is empty (a literal), -1 if both kinds are mixed. */
static int operator_object(dval v)
{
    dval_iter it;
    shale_slice name;
    dval val;
    size_t ops = 0, fields = 0;

    if (dval_tag_of(v) != DV_OBJECT) {
        return 0;
    }
    dval_iter_init(&it, v);
    while (dval_iter_next(&it, &name, &val)) {
        if (is_operator_name(name)) {
            ops++;
        } else {
            fields++;
        }
    }
    if (ops > 0 && fields > 0) {
        return -1;
    }
    return ops > 0 ? 1 : 0;
}

static int cmp_dval_qsort(const void *a, const void *b)
{
    return dval_cmp(*(const dval *)a, *(const dval *)b);
}

static shale_code parse_in(shale_slice path, shale_slice opname, dval arr, fop *op,
                           shale_error *err)
{
    dval_iter it;
    shale_slice name;
    dval val;
    size_t n = 0;

    if (dval_tag_of(arr) != DV_ARRAY) {
        return err_set(err, SHALE_INVALID, 0, "filter: '%.*s' at '%.*s' needs an array",
                       (int)opname.len, (const char *)opname.data, path_len_for_msg(path),
                       (const char *)path.data);
    }
    op->nvals = 0;
    if (dval_count(arr) > 0) {
        op->vals = calloc(dval_count(arr), sizeof *op->vals);
        if (op->vals == NULL) {
            return err_nomem(err);
        }
    }
    dval_iter_init(&it, arr);
    while (dval_iter_next(&it, &name, &val)) {
        op->vals[n++] = val;
    }
    if (n > 1) {
        qsort(op->vals, n, sizeof *op->vals, cmp_dval_qsort);
        size_t w = 1;
        for (size_t r = 1; r < n; r++) {
            if (dval_cmp(op->vals[w - 1], op->vals[r]) != 0) {
                op->vals[w++] = op->vals[r];
            }
        }
        n = w;
    }
    op->nvals = n;
    /* null sorts first of all values */
    op->in_null = n > 0 && dval_tag_of(op->vals[0]) == DV_NULL;
    return SHALE_OK;
}

static shale_code parse_ops(shale_slice path, dval expr, int depth, fop **out_ops, size_t *out_nops,
                            shale_error *err);

static shale_code parse_op(shale_slice path, shale_slice opname, dval operand, int depth, fop *op,
                           shale_error *err)
{
    const char *ps = path.data;
    int pl = path_len_for_msg(path);
    int ol = (int)(opname.len > MSG_PATH_MAX ? MSG_PATH_MAX : opname.len);
    const char *os = opname.data;

    if (!field_operator(opname, &op->kind)) {
        if (name_is(opname, "$and") || name_is(opname, "$or")) {
            return err_set(err, SHALE_INVALID, 0,
                           "filter: '%.*s' under path '%.*s': $and and $or belong where a "
                           "path does",
                           ol, os, pl, ps);
        }
        return err_set(err, SHALE_INVALID, 0, "filter: unknown operator '%.*s' at '%.*s'", ol, os,
                       pl, ps);
    }
    switch (op->kind) {
    case OP_EQ:
    case OP_NE:
        op->v = operand;
        op->null_operand = dval_tag_of(operand) == DV_NULL;
        return SHALE_OK;
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        op->v = operand;
        op->cls = dval_class_of(operand);
        return SHALE_OK;
    case OP_IN:
    case OP_NIN:
        return parse_in(path, opname, operand, op, err);
    case OP_EXISTS:
        if (dval_tag_of(operand) != DV_TRUE && dval_tag_of(operand) != DV_FALSE) {
            return err_set(err, SHALE_INVALID, 0, "filter: '$exists' at '%.*s' needs true or false",
                           pl, ps);
        }
        op->exists = dval_tag_of(operand) == DV_TRUE;
        return SHALE_OK;
    case OP_NOT:
        if (operator_object(operand) != 1) {
            return err_set(err, SHALE_INVALID, 0,
                           "filter: '$not' at '%.*s' needs a non-empty object of operators", pl,
                           ps);
        }
        if (depth + 1 > DVAL_MAX_DEPTH) {
            return err_set(err, SHALE_INVALID, 0, "filter: nesting deeper than %d at '%.*s'",
                           DVAL_MAX_DEPTH, pl, ps);
        }
        return parse_ops(path, operand, depth + 1, &op->sub, &op->nsub, err);
    }
    return err_set(err, SHALE_INVALID, 0, "filter: bad operator"); /* not reached */
}

/* expr: an operator expression (operator_object(expr) == 1). */
static shale_code parse_ops(shale_slice path, dval expr, int depth, fop **out_ops, size_t *out_nops,
                            shale_error *err)
{
    dval_iter it;
    shale_slice name;
    dval val;
    size_t i = 0;
    shale_code rc;

    *out_nops = dval_count(expr);
    *out_ops = calloc(*out_nops, sizeof **out_ops);
    if (*out_ops == NULL) {
        *out_nops = 0;
        return err_nomem(err);
    }
    dval_iter_init(&it, expr);
    while (dval_iter_next(&it, &name, &val)) {
        rc = parse_op(path, name, val, depth, &(*out_ops)[i++], err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

static shale_code parse_path_value(shale_slice path, dval v, int depth, fnode *n, shale_error *err)
{
    n->kind = N_PATH;
    n->path = path;
    switch (operator_object(v)) {
    case 1:
        return parse_ops(path, v, depth, &n->ops, &n->nops, err);
    case 0:
        n->ops = calloc(1, sizeof *n->ops);
        if (n->ops == NULL) {
            return err_nomem(err);
        }
        n->nops = 1;
        n->ops[0].kind = OP_EQ;
        n->ops[0].v = v;
        n->ops[0].null_operand = dval_tag_of(v) == DV_NULL;
        return SHALE_OK;
    default:
        return err_set(err, SHALE_INVALID, 0,
                       "filter: the object at '%.*s' mixes operators and field names",
                       path_len_for_msg(path), (const char *)path.data);
    }
}

static shale_code parse_object(dval obj, int depth, fnode *n, shale_error *err);

static shale_code parse_logic(shale_slice opname, dval arr, int depth, fnode *n, shale_error *err)
{
    dval_iter it;
    shale_slice name;
    dval val;
    size_t i = 0;
    shale_code rc;
    const char *os = opname.data;

    n->kind = name_is(opname, "$and") ? N_AND : N_OR;
    if (dval_tag_of(arr) != DV_ARRAY || dval_count(arr) == 0) {
        return err_set(err, SHALE_INVALID, 0, "filter: '%s' needs a non-empty array of objects",
                       n->kind == N_AND ? "$and" : "$or");
    }
    dval_iter_init(&it, arr);
    while (dval_iter_next(&it, &name, &val)) {
        if (dval_tag_of(val) != DV_OBJECT) {
            return err_set(err, SHALE_INVALID, 0,
                           "filter: '%s' needs a non-empty array of objects (element %zu is "
                           "not an object)",
                           n->kind == N_AND ? "$and" : "$or", i);
        }
        i++;
    }
    if (depth + 1 > DVAL_MAX_DEPTH) {
        return err_set(err, SHALE_INVALID, 0, "filter: nesting deeper than %d at '%.*s'",
                       DVAL_MAX_DEPTH, (int)opname.len, os);
    }
    n->nkids = dval_count(arr);
    n->kids = calloc(n->nkids, sizeof *n->kids);
    if (n->kids == NULL) {
        n->nkids = 0;
        return err_nomem(err);
    }
    i = 0;
    dval_iter_init(&it, arr);
    while (dval_iter_next(&it, &name, &val)) {
        rc = parse_object(val, depth + 1, &n->kids[i++], err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

/* obj: an object; n becomes the AND of its keys. */
static shale_code parse_object(dval obj, int depth, fnode *n, shale_error *err)
{
    dval_iter it;
    shale_slice name;
    dval val;
    size_t i = 0;
    enum op_kind kind;
    shale_code rc;

    n->kind = N_AND;
    n->nkids = dval_count(obj);
    if (n->nkids == 0) {
        return SHALE_OK;
    }
    n->kids = calloc(n->nkids, sizeof *n->kids);
    if (n->kids == NULL) {
        n->nkids = 0;
        return err_nomem(err);
    }
    dval_iter_init(&it, obj);
    while (dval_iter_next(&it, &name, &val)) {
        fnode *kid = &n->kids[i++];
        if (is_operator_name(name)) {
            if (name_is(name, "$and") || name_is(name, "$or")) {
                rc = parse_logic(name, val, depth, kid, err);
            } else if (field_operator(name, &kind)) {
                rc = err_set(err, SHALE_INVALID, 0,
                             "filter: operator '%.*s' at the top level, where a path belongs",
                             (int)name.len, (const char *)name.data);
            } else {
                rc = err_set(err, SHALE_INVALID, 0, "filter: unknown operator '%.*s'",
                             path_len_for_msg(name), (const char *)name.data);
            }
        } else {
            rc = check_path(name, err);
            if (rc == SHALE_OK) {
                rc = parse_path_value(name, val, depth, kid, err);
            }
        }
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

/* ---- index conditions (computed once, at compile time) ---- */

typedef struct cand {
    shale_slice path;
    const fop *op;
} cand;

static bool scalar(dval v)
{
    return dval_class_of(v) < DVC_ARRAY;
}

static bool offerable(const fop *op)
{
    switch (op->kind) {
    case OP_EQ:
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        return scalar(op->v);
    case OP_IN:
        if (op->in_null) {
            return false;
        }
        for (size_t i = 0; i < op->nvals; i++) {
            if (!scalar(op->vals[i])) {
                return false;
            }
        }
        return true;
    default:
        return false;
    }
}

/* Collects the offerable operators of the conjuncts of n (an N_AND), descending nested ANDs.
 * With out == NULL, only counts. */
static size_t collect(const fnode *n, cand *out, size_t k)
{
    for (size_t i = 0; i < n->nkids; i++) {
        const fnode *kid = &n->kids[i];
        if (kid->kind == N_AND) {
            k = collect(kid, out, k);
        } else if (kid->kind == N_PATH) {
            for (size_t j = 0; j < kid->nops; j++) {
                if (offerable(&kid->ops[j])) {
                    if (out != NULL) {
                        out[k] = (cand){kid->path, &kid->ops[j]};
                    }
                    k++;
                }
            }
        }
    }
    return k;
}

/* The condition for the path of cs[first], from every candidate on that path. */
static dfilter_cond merge_path(const cand *cs, size_t n, size_t first)
{
    shale_slice path = cs[first].path;
    const fop *eq = NULL, *in = NULL, *lo = NULL, *hi = NULL, *range0 = NULL;
    bool mixed = false;
    dfilter_cond c;

    memset(&c, 0, sizeof c);
    c.path = path;
    for (size_t i = first; i < n; i++) {
        const fop *op = cs[i].op;
        if (!slice_eq(cs[i].path, path)) {
            continue;
        }
        switch (op->kind) {
        case OP_EQ:
            if (eq == NULL) {
                eq = op;
            }
            break;
        case OP_IN:
            if (in == NULL || op->nvals < in->nvals) {
                in = op;
            }
            break;
        case OP_GT:
        case OP_GTE:
        case OP_LT:
        case OP_LTE: {
            bool is_lo = op->kind == OP_GT || op->kind == OP_GTE;
            bool excl = op->kind == OP_GT || op->kind == OP_LT;
            const fop **slot = is_lo ? &lo : &hi;
            if (range0 == NULL) {
                range0 = op;
            } else if (op->cls != range0->cls) {
                mixed = true;
                break;
            }
            if (*slot == NULL) {
                *slot = op;
            } else {
                int d = dval_cmp(op->v, (*slot)->v);
                bool slot_excl = (*slot)->kind == OP_GT || (*slot)->kind == OP_LT;
                /* tighter: a larger lower bound, a smaller upper bound; on a tie, exclusive */
                if ((is_lo ? d > 0 : d < 0) || (d == 0 && excl && !slot_excl)) {
                    *slot = op;
                }
            }
            break;
        }
        default:
            break;
        }
    }
    if (eq != NULL) {
        c.kind = DFC_EQ;
        c.values = &eq->v;
        c.nvalues = 1;
    } else if (in != NULL) {
        c.kind = DFC_IN;
        c.values = in->vals;
        c.nvalues = in->nvals;
    } else {
        c.kind = DFC_RANGE;
        c.range_class = range0->cls;
        if (mixed) {
            /* operands of two classes: nothing matches; (v, v) is empty */
            c.has_lo = c.has_hi = true;
            c.lo = c.hi = range0->v;
            return c;
        }
        if (lo != NULL) {
            c.has_lo = true;
            c.lo = lo->v;
            c.lo_inclusive = lo->kind == OP_GTE;
        }
        if (hi != NULL) {
            c.has_hi = true;
            c.hi = hi->v;
            c.hi_inclusive = hi->kind == OP_LTE;
        }
    }
    return c;
}

static shale_code build_conds(dfilter *f, shale_error *err)
{
    size_t n = collect(&f->root, NULL, 0);
    cand *cs;

    if (n == 0) {
        return SHALE_OK;
    }
    cs = calloc(n, sizeof *cs);
    f->conds = calloc(n, sizeof *f->conds);
    if (cs == NULL || f->conds == NULL) {
        free(cs);
        return err_nomem(err);
    }
    collect(&f->root, cs, 0);
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = slice_eq(cs[j].path, cs[i].path);
        }
        if (!seen) {
            f->conds[f->nconds++] = merge_path(cs, n, i);
        }
    }
    free(cs);
    return SHALE_OK;
}

/* ---- construction ---- */

/* Compiles the encoded object in `bytes` (malloc'ed, taken: freed with the filter or on
 * failure). */
static shale_code compile_owned(uint8_t *bytes, dfilter **out, shale_error *err)
{
    dfilter *f = calloc(1, sizeof *f);
    shale_code rc;

    if (f == NULL) {
        free(bytes);
        return err_nomem(err);
    }
    f->bytes = bytes;
    rc = parse_object(dval_at(f->bytes), 0, &f->root, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    rc = build_conds(f, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    *out = f;
    return SHALE_OK;

out_free:
    dfilter_free(f);
    return rc;
}

shale_code dfilter_from_dval(dval filter, dfilter **out, shale_error *err)
{
    uint8_t *copy;

    *out = NULL;
    if (dval_tag_of(filter) != DV_OBJECT) {
        return err_set(err, SHALE_INVALID, 0, "filter: not an object");
    }
    copy = malloc(filter.len);
    if (copy == NULL) {
        return err_nomem(err);
    }
    memcpy(copy, filter.p, filter.len);
    return compile_owned(copy, out, err);
}

shale_code dfilter_parse(const char *json, size_t len, dfilter **out, shale_error *err)
{
    shale_buf b = {0};
    shale_code rc;

    *out = NULL;
    rc = dval_from_json(json, len, true, &b, err);
    if (rc != SHALE_OK) {
        buf_free(&b);
        return rc;
    }
    return compile_owned(b.data, out, err); /* the encoding becomes the filter's bytes */
}

/* The JSON number grammar, exactly (no whitespace, no leading '+', no leading zeros). */
static bool json_number(const char *s, size_t n)
{
    size_t i = 0, start;

    if (i < n && s[i] == '-') {
        i++;
    }
    if (i < n && s[i] == '0') {
        i++;
    } else if (i < n && s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    return i == n;
}

/* Where pair i's pieces live in the filter's bytes. */
typedef struct pair_off {
    size_t path, path_len;
    size_t v[2], v_len[2];
    size_t nv;
} pair_off;

/* Appends the alternative encoding of a go-db value (a number or a boolean) to b, if it has one:
 * numbers are encoded by dval_from_json, so they get exactly the encoding a document's number
 * written the same way gets. A number jansson refuses (1e999) is left a string. */
static shale_code encode_alt(shale_slice value, shale_buf *b, bool *has, shale_error *err)
{
    const char *s = value.data;
    shale_buf tmp = {0};
    shale_code rc;

    *has = false;
    if (name_is(value, "true") || name_is(value, "false")) {
        *has = true;
        return dval_put_bool(b, name_is(value, "true"), err);
    }
    if (!json_number(s, value.len)) {
        return SHALE_OK;
    }
    rc = dval_from_json(s, value.len, false, &tmp, err);
    if (rc == SHALE_NOMEM) {
        goto out;
    }
    if (rc != SHALE_OK || dval_class_of(dval_at(tmp.data)) != DVC_NUMBER) {
        err_clear(err);
        rc = SHALE_OK;
        goto out;
    }
    *has = true;
    rc = buf_append(b, tmp.data, tmp.len, err);
out:
    buf_free(&tmp);
    return rc;
}

shale_code dfilter_from_pairs(const shale_slice *fields, const shale_slice *values, size_t n,
                              dfilter **out, shale_error *err)
{
    dfilter *f;
    pair_off *offs = NULL;
    shale_buf b = {0};
    shale_code rc;

    *out = NULL;
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        return err_nomem(err);
    }
    f->root.kind = N_AND;
    if (n > 0) {
        offs = calloc(n, sizeof *offs);
        f->root.kids = calloc(n, sizeof *f->root.kids);
        if (offs == NULL || f->root.kids == NULL) {
            rc = err_nomem(err);
            goto out_free;
        }
        f->root.nkids = n;
    }
    for (size_t i = 0; i < n; i++) {
        bool has_alt;
        rc = check_path(fields[i], err);
        if (rc == SHALE_OK && is_operator_name(fields[i])) {
            rc = err_set(err, SHALE_INVALID, 0, "filter: field '%.*s' starts with '$'",
                         path_len_for_msg(fields[i]), (const char *)fields[i].data);
        }
        if (rc != SHALE_OK) {
            goto out_free;
        }
        offs[i].path = b.len;
        offs[i].path_len = fields[i].len;
        rc = buf_append(&b, fields[i].data, fields[i].len, err);
        if (rc != SHALE_OK) {
            goto out_free;
        }
        offs[i].v[0] = b.len;
        rc = dval_put_string(&b, values[i], err);
        if (rc != SHALE_OK) {
            goto out_free;
        }
        offs[i].v_len[0] = b.len - offs[i].v[0];
        offs[i].v[1] = b.len;
        rc = encode_alt(values[i], &b, &has_alt, err);
        if (rc != SHALE_OK) {
            goto out_free;
        }
        offs[i].v_len[1] = b.len - offs[i].v[1];
        offs[i].nv = has_alt ? 2 : 1;
    }
    f->bytes = b.data; /* taken: b is not touched again */
    b = (shale_buf){0};
    for (size_t i = 0; i < n; i++) {
        fnode *kid = &f->root.kids[i];
        kid->kind = N_PATH;
        kid->path = slice_make(f->bytes + offs[i].path, offs[i].path_len);
        kid->ops = calloc(1, sizeof *kid->ops);
        if (kid->ops == NULL) {
            rc = err_nomem(err);
            goto out_free;
        }
        kid->nops = 1;
        if (offs[i].nv == 1) {
            kid->ops[0].kind = OP_EQ;
            kid->ops[0].v = (dval){f->bytes + offs[i].v[0], offs[i].v_len[0]};
            continue;
        }
        kid->ops[0].kind = OP_IN;
        kid->ops[0].vals = calloc(2, sizeof(dval));
        if (kid->ops[0].vals == NULL) {
            rc = err_nomem(err);
            goto out_free;
        }
        kid->ops[0].nvals = 2;
        /* sorted: numbers and booleans sort before strings */
        kid->ops[0].vals[0] = (dval){f->bytes + offs[i].v[1], offs[i].v_len[1]};
        kid->ops[0].vals[1] = (dval){f->bytes + offs[i].v[0], offs[i].v_len[0]};
    }
    rc = build_conds(f, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    free(offs);
    *out = f;
    return SHALE_OK;

out_free:
    buf_free(&b);
    free(offs);
    dfilter_free(f);
    return rc;
}

/* ---- matching (no allocation) ---- */

static bool in_set(const fop *op, bool found, dval x)
{
    if (!found) {
        return op->in_null;
    }
    if (op->nvals <= IN_LINEAR_MAX) {
        for (size_t i = 0; i < op->nvals; i++) {
            if (dval_eq(x, op->vals[i])) {
                return true;
            }
        }
        return false;
    }
    size_t lo = 0, hi = op->nvals;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = dval_cmp(op->vals[mid], x);
        if (c == 0) {
            return true;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static bool eval_ops(const fop *ops, size_t n, bool found, dval x);

static bool eval_op(const fop *op, bool found, dval x)
{
    switch (op->kind) {
    case OP_EQ:
        return found ? dval_eq(x, op->v) : op->null_operand;
    case OP_NE:
        return !(found ? dval_eq(x, op->v) : op->null_operand);
    case OP_GT:
        return found && dval_class_of(x) == op->cls && dval_cmp(x, op->v) > 0;
    case OP_GTE:
        return found && dval_class_of(x) == op->cls && dval_cmp(x, op->v) >= 0;
    case OP_LT:
        return found && dval_class_of(x) == op->cls && dval_cmp(x, op->v) < 0;
    case OP_LTE:
        return found && dval_class_of(x) == op->cls && dval_cmp(x, op->v) <= 0;
    case OP_IN:
        return in_set(op, found, x);
    case OP_NIN:
        return !in_set(op, found, x);
    case OP_EXISTS:
        return found == op->exists;
    case OP_NOT:
        return !eval_ops(op->sub, op->nsub, found, x);
    }
    return false;
}

static bool eval_ops(const fop *ops, size_t n, bool found, dval x)
{
    for (size_t i = 0; i < n; i++) {
        if (!eval_op(&ops[i], found, x)) {
            return false;
        }
    }
    return true;
}

static bool eval_node(const fnode *n, dval doc)
{
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            if (!eval_node(&n->kids[i], doc)) {
                return false;
            }
        }
        return true;
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            if (eval_node(&n->kids[i], doc)) {
                return true;
            }
        }
        return false;
    case N_PATH: {
        dval x = {NULL, 0};
        bool found = dval_path(doc, n->path, &x);
        return eval_ops(n->ops, n->nops, found, x);
    }
    }
    return false;
}

bool dfilter_match(const dfilter *f, dval doc)
{
    return eval_node(&f->root, doc);
}

size_t dfilter_index_conds(const dfilter *f, dfilter_cond *out, size_t cap)
{
    for (size_t i = 0; i < f->nconds && i < cap; i++) {
        out[i] = f->conds[i];
    }
    return f->nconds;
}

/* The one N_PATH conjunct of n's (flattened) AND, or NULL if there is not exactly one (or there
 * is an OR). */
static const fnode *only_path(const fnode *n, const fnode *found, bool *ok)
{
    for (size_t i = 0; i < n->nkids && *ok; i++) {
        const fnode *kid = &n->kids[i];
        if (kid->kind == N_AND) {
            found = only_path(kid, found, ok);
        } else if (kid->kind == N_PATH && found == NULL) {
            found = kid;
        } else {
            *ok = false;
        }
    }
    return found;
}

static bool is_range(enum op_kind k)
{
    return k == OP_GT || k == OP_GTE || k == OP_LT || k == OP_LTE;
}

bool dfilter_exact(const dfilter *f, dfilter_cond *out)
{
    bool ok = true;
    const fnode *p = only_path(&f->root, NULL, &ok);
    if (!ok || p == NULL || p->nops == 0 || f->nconds != 1) {
        return false;
    }
    for (size_t i = 0; i < p->nops; i++) {
        const fop *op = &p->ops[i];
        if (!offerable(op)) {
            return false;
        }
        /* Several operators are exact together only as one range of one class. */
        if (p->nops > 1 && (!is_range(op->kind) || op->cls != p->ops[0].cls)) {
            return false;
        }
    }
    *out = f->conds[0];
    return true;
}
