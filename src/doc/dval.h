/*
 * dval: the binary encoding of JSON values ("document values"): the form documents are stored
 * in, filtered in and indexed from.
 *
 * Why an encoding of our own rather than MessagePack: a query reads a few fields of every
 * document it scans. Here a field is found without decoding or allocating anything: an object
 * keeps its fields sorted by name and every container records its byte length, so a reader skips
 * whole values it does not want, and values compare in place. msgpack-c's C API has no in-place
 * field access: a reader decodes each whole document into a tree (bench/encbench.c measures the
 * two: docs/BENCHMARKS.md, "Document encoding"). JSON text
 * is parsed and printed by jansson (Debian's libjansson), never by hand.
 *
 * Format (integers little-endian; varint32 is LEB128 as in base/coding.h):
 *   value      := tag u8 | body
 *   DV_NULL    0x00   no body
 *   DV_FALSE   0x01   no body
 *   DV_TRUE    0x02   no body
 *   DV_INT     0x03   i64, fixed 8 bytes: a JSON number written without fraction or exponent
 *                     that fits int64
 *   DV_DOUBLE  0x04   f64, fixed 8 bytes (IEEE 754): every other JSON number; never NaN or inf
 *   DV_STRING  0x05   varint32 len | len bytes of UTF-8
 *   DV_ARRAY   0x06   varint32 body_len | varint32 count | count values          (body_len: the
 *   DV_OBJECT  0x07   varint32 body_len | varint32 count | count fields           bytes after it)
 *   field      := varint32 name_len | name (UTF-8) | value
 * An object's field names are strictly increasing bytewise (so no duplicates). Nesting depth
 * (a scalar at top level is depth 0; each array or object adds 1) is at most DVAL_MAX_DEPTH.
 *
 * Order (dval_cmp), total over all values, documented for users as the sort order:
 *   null < false < true < numbers < strings < arrays < objects
 * numbers by value (an int and a double compare exactly: 2^53 + 1 > 2^53 as double), strings
 * bytewise, arrays element by element then shorter first, objects field by field (name, then
 * value) then fewer fields first.
 *
 * Damage: dval_check validates untrusted bytes (from disk) completely; every other function
 * REQUIRES a value that passed dval_check or was produced by this module, and never reads
 * outside it.
 *
 * Threads: everything is pure; a dval borrows bytes it does not own.
 */
#ifndef SHALE_DOC_DVAL_H
#define SHALE_DOC_DVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#define DVAL_MAX_DEPTH 32 /* nesting limit for documents (documented to users) */

enum dval_tag {
    DV_NULL = 0x00,
    DV_FALSE = 0x01,
    DV_TRUE = 0x02,
    DV_INT = 0x03,
    DV_DOUBLE = 0x04,
    DV_STRING = 0x05,
    DV_ARRAY = 0x06,
    DV_OBJECT = 0x07,
};

/* Type classes, in sort order: comparisons ($gt, $lt, ...) match only values of the operand's
 * class (type bracketing, as MongoDB): {"age": {"$gt": 5}} never matches a string. */
enum dval_class {
    DVC_NULL = 0,
    DVC_BOOL = 1,
    DVC_NUMBER = 2,
    DVC_STRING = 3,
    DVC_ARRAY = 4,
    DVC_OBJECT = 5,
};

/* One encoded value (tag included), borrowed. */
typedef struct dval {
    const uint8_t *p;
    size_t len;
} dval;

/* ---- JSON in and out (jansson) ---- */

/* Parses JSON text and encodes it into out (replacing its contents). With require_object, the
 * top-level value must be an object. SHALE_INVALID, with a message that says what and where
 * (line and column from jansson), for: invalid JSON, invalid UTF-8 (also in names), a duplicate
 * name in an object, nesting deeper than DVAL_MAX_DEPTH, a non-object top level with
 * require_object, trailing garbage, a number beyond the double range, a NUL character in a name
 * (jansson cannot hold one; NUL inside string values is fine). A JSON integer beyond int64 is
 * encoded as DV_DOUBLE (correctly rounded). SHALE_NOMEM when out of memory. */
shale_code dval_from_json(const char *json, size_t len, bool require_object, shale_buf *out,
                          shale_error *err) SHALE_MUST_USE;
/* Appends the value as compact JSON text (no spaces; fields in stored order) to out. */
shale_code dval_to_json(dval v, shale_buf *out, shale_error *err) SHALE_MUST_USE;

/* ---- checking and reading ---- */

/* Validates p[0, len) as exactly one value: tags, lengths, counts, bounds, sorted unique names,
 * depth, no NaN/inf doubles, strings and names valid UTF-8. SHALE_CORRUPTION with what and where
 * (byte offset) otherwise. */
shale_code dval_check(const uint8_t *p, size_t len, shale_error *err) SHALE_MUST_USE;
/* The part of dval_check that keeps readers inside the bytes: tags, lengths, counts, bounds,
 * depth; not UTF-8, name order or finite doubles. For values read back from the store, which
 * were fully checked when written and are checksummed by the key-value layer (a scan checks
 * every document it reads: the full check cost most of a scan's time). Every reader is safe on
 * a value that passed it (a name out of order can only make dval_field miss a field). */
shale_code dval_check_frame(const uint8_t *p, size_t len, shale_error *err) SHALE_MUST_USE;
/* The value at p (which must start a checked value): its whole extent. */
dval dval_at(const uint8_t *p);
enum dval_tag dval_tag_of(dval v);
enum dval_class dval_class_of(dval v);
int64_t dval_int(dval v);     /* REQUIRES DV_INT */
double dval_double(dval v);   /* DV_INT or DV_DOUBLE, as a double */
shale_slice dval_str(dval v); /* REQUIRES DV_STRING: the bytes */
uint32_t dval_count(dval v);  /* elements of an array, fields of an object, else 0 */

/* Walks the elements of an array or the fields of an object in stored order. */
typedef struct dval_iter {
    const uint8_t *p, *end;
    bool object;
} dval_iter;
void dval_iter_init(dval_iter *it, dval container); /* REQUIRES array or object */
/* The next element (name empty) or field; false at the end. */
bool dval_iter_next(dval_iter *it, shale_slice *name, dval *value);

/* The field `name` of an object (binary search is not possible on varint-framed fields; a scan
 * that stops once names pass `name`). False if v is not an object or has no such field. */
bool dval_field(dval obj, shale_slice name, dval *out);
/* A dotted path: "a.b.c" descends objects; a component of decimal digits indexes an array
 * ("tags.0"). False if any step is missing. An empty path or empty component finds nothing. */
bool dval_path(dval v, shale_slice path, dval *out);

/* ---- comparing ---- */

/* The total order above: <0, 0, >0. */
int dval_cmp(dval a, dval b);
static inline bool dval_eq(dval a, dval b)
{
    return dval_cmp(a, b) == 0;
}

/* Appends an order-preserving key for v to out: memcmp order of keys equals dval_cmp order for
 * every value (two values get the same key exactly when they compare equal), and each key is
 * self-delimiting (a key is never a prefix of another), so index keys can carry the document id
 * right after it. The bytes are persisted in index entries, so they are a format:
 *   null 01, false 02, true 03;
 *   number 04 | the double nearest it as 8 order-preserving big-endian bytes (-0.0 as 0.0) |
 *     8 bytes: how far an int lies from that double (0 below 2^53 and for doubles), as a
 *     big-endian int64 with the sign bit flipped, so ints beyond 2^53 keep their exact order;
 *   string 05 | the bytes with each 00 written 00 FF | 00 01;
 *   array 06 | each element's key | 00;
 *   object 07 | per field: the name as a string's bytes (escaped, 00 01) and the value's key |
 *     00 00.
 * 00 and 08-FF never start a key. */
shale_code dval_index_key(dval v, shale_buf *out, shale_error *err) SHALE_MUST_USE;

/* ---- building ---- */

/* Encoders for single scalars (appended to out), for callers building values. Builders refuse
 * with SHALE_INVALID what dval_check would reject: a non-finite double, invalid UTF-8, a value
 * nested too deep, a string or container over 4 GiB. */
shale_code dval_put_null(shale_buf *out, shale_error *err) SHALE_MUST_USE;
shale_code dval_put_bool(shale_buf *out, bool b, shale_error *err) SHALE_MUST_USE;
shale_code dval_put_int(shale_buf *out, int64_t i, shale_error *err) SHALE_MUST_USE;
shale_code dval_put_double(shale_buf *out, double d, shale_error *err) SHALE_MUST_USE;
shale_code dval_put_string(shale_buf *out, shale_slice s, shale_error *err) SHALE_MUST_USE;

/* out = obj with field `name` set to `value` (added in order, or replacing). REQUIRES obj an
 * object; out must not alias obj's bytes. */
shale_code dval_set_field(dval obj, shale_slice name, dval value, shale_buf *out,
                          shale_error *err) SHALE_MUST_USE;
/* out = base with every field of patch set (a shallow merge: patch's fields replace base's
 * whole, new ones are added). REQUIRES both objects. */
shale_code dval_merge(dval base, dval patch, shale_buf *out, shale_error *err) SHALE_MUST_USE;
/* out = an object with only the given paths of doc (each a dotted path; a path into a nested
 * object keeps that nesting: {"a":{"b":1,"c":2}} projected on "a.b" is {"a":{"b":1}}); paths
 * that are missing are left out. A digit component applied to an array keeps an array of the
 * selected elements, in order; a non-object doc gives {}. */
shale_code dval_project(dval doc, const shale_slice *paths, size_t npaths, shale_buf *out,
                        shale_error *err) SHALE_MUST_USE;

#endif
