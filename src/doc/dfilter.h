/*
 * dfilter: the document filter language: parsing, matching against encoded documents (dval.h),
 * and the conditions a query planner can serve from an index.
 *
 * Language (a JSON object; the empty object matches everything):
 *   {"path": value}                     equality ($eq)
 *   {"path": {"$op": operand, ...}}     every operator listed must hold (an implicit AND)
 *   {"$and": [filter, ...]}, {"$or": [filter, ...]}   (non-empty arrays)
 *   {"path": {"$not": {"$op": ...}}}    negation of an operator expression
 *   several keys in one object          AND
 * Operators: $eq $ne $gt $gte $lt $lte $in $nin (operand: an array of values) $exists (operand:
 * true or false). A path is dotted ("address.city", "tags.0"; see dval_path).
 *
 * Semantics, the same with or without an index:
 *   - $eq: the field exists and equals the operand (dval_cmp == 0: type-aware, numbers as
 *     numbers, 1 == 1.0; strings exact and case-sensitive), except that {"f": null} also matches
 *     documents without f (as MongoDB).
 *   - $ne: not $eq (so {"f": {"$ne": null}} matches exactly the documents where f exists and is
 *     not null).
 *   - $gt $gte $lt $lte: the field exists, is of the operand's class (dval_class_of) and compares
 *     so; a field of another class never matches (type bracketing).
 *   - $in: $eq with any of the values; $nin: none of them.
 *   - $exists true: the path resolves; false: it does not.
 *   - $not: the field does not satisfy the expression (including when it is missing).
 *   - Arrays compare as whole values: {"tags": "a"} does not match {"tags": ["a", "b"]}.
 * Anything else is SHALE_INVALID with a message naming the offending part: an unknown operator,
 * an operator at the top level where a path belongs, an operand of the wrong type ($in without
 * an array, $exists without a boolean, $and without a non-empty array of objects), an empty
 * path, a filter that is not an object, nesting deeper than DVAL_MAX_DEPTH.
 *
 * The go-db query model (GET /find?field=value&...): dfilter_from_pairs turns field = value
 * strings into a filter: a value that parses as a JSON number matches numbers equal to it or
 * the identical string; "true"/"false" match that boolean or the identical string; anything
 * else matches the identical string.
 *
 * Threads: a parsed filter is immutable; any number of threads may match with it.
 */
#ifndef SHALE_DOC_DFILTER_H
#define SHALE_DOC_DFILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "shale.h"

#include "doc/dval.h"

typedef struct dfilter dfilter;

/* Parses a filter from JSON text. *out is NULL on failure. */
shale_code dfilter_parse(const char *json, size_t len, dfilter **out,
                         shale_error *err) SHALE_MUST_USE;
/* A filter from an encoded object (the same language; e.g. the "filter" member of a query body
 * already parsed). */
shale_code dfilter_from_dval(dval filter, dfilter **out, shale_error *err) SHALE_MUST_USE;
/* The go-db model: AND of fields[i] = values[i] as described above (n may be 0: match all). */
shale_code dfilter_from_pairs(const shale_slice *fields, const shale_slice *values, size_t n,
                              dfilter **out, shale_error *err) SHALE_MUST_USE;
void dfilter_free(dfilter *f);

/* Whether the document (an object that passed dval_check) matches. */
bool dfilter_match(const dfilter *f, dval doc);

/* What an index on `path` can serve, from the filter's top-level AND (conditions under $or or
 * $not are never offered): every document matching the filter has, at `path`, a value in the
 * set described here; the planner reads those index entries and re-checks each document with
 * dfilter_match. */
typedef enum dfilter_cond_kind {
    DFC_EQ,    /* one value: values[0] (for a null operand, documents missing the path too) */
    DFC_IN,    /* any of values[0 .. nvalues), sorted by dval_cmp and distinct */
    DFC_RANGE, /* values of one class between lo and hi (either may be absent) */
} dfilter_cond_kind;

typedef struct dfilter_cond {
    shale_slice path;
    dfilter_cond_kind kind;
    const dval *values; /* DFC_EQ, DFC_IN: borrowed from the filter */
    size_t nvalues;
    bool has_lo, has_hi;
    bool lo_inclusive, hi_inclusive;
    dval lo, hi;                 /* DFC_RANGE */
    enum dval_class range_class; /* DFC_RANGE: the class of lo/hi */
} dfilter_cond;

/* Fills out[0 .. cap) with the index-usable conditions of the top-level AND (several on one
 * path are intersected into one where possible: $gt and $lt make one range) and returns how
 * many there are (may exceed cap: then only cap were written). */
size_t dfilter_index_conds(const dfilter *f, dfilter_cond *out, size_t cap);

/* True when the whole filter is exactly one index condition (fills *out): one path, with a
 * scalar $eq (null included: missing fields are indexed as null), a scalar $in, or range
 * operators of one class. An index then answers the filter by itself: every entry in the
 * condition's range is a match (up to the index's own limits, see docdb.h). */
bool dfilter_exact(const dfilter *f, dfilter_cond *out);

#endif
