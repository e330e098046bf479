/*
 * libFuzzer target for encoded documents read back from the store (src/doc/dval.c: dval_check,
 * dval_check_frame and every reader). Built and replayed like every target in tests/fuzz
 * (README.md there).
 *
 * The input is one encoded value (dval.h's binary format), copied to an exact-size buffer. The
 * target traps unless:
 *   - dval_check and dval_check_frame return SHALE_OK or SHALE_CORRUPTION with a message, and a
 *     value passing the full check passes the frame check;
 *   - on a value passing the frame check, every reader stays inside the bytes (ASan) and
 *     dval_at measures the whole input (fuzz_util.h fz_dval_readers);
 *   - on a value passing the full check, the readers keep their promises (fields found by name,
 *     dval_cmp a consistent order, index keys ordered as dval_cmp), and dval_to_json prints JSON
 *     that jansson reads and dval_from_json parses back to an equal value (dval_cmp 0) whose
 *     encoding passes the check and prints as the same text. The one value jansson and
 *     dval_from_json may refuse is one with a NUL in an object name (dval.c: jansson cannot
 *     hold it), printed as \u0000.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether an object anywhere in v has a name holding a NUL byte. */
static bool nul_in_name(dval v, int depth)
{
    enum dval_tag t = dval_tag_of(v);
    if (depth > DVAL_MAX_DEPTH || (t != DV_ARRAY && t != DV_OBJECT)) {
        return false;
    }
    dval_iter it;
    shale_slice name;
    dval child;
    dval_iter_init(&it, v);
    while (dval_iter_next(&it, &name, &child)) {
        if ((t == DV_OBJECT && memchr(name.data, 0, name.len) != NULL) ||
            nul_in_name(child, depth + 1)) {
            return true;
        }
    }
    return false;
}

/* Whether v holds a double that is NaN or infinite. */
static bool non_finite(dval v, int depth)
{
    enum dval_tag t = dval_tag_of(v);
    if (t == DV_DOUBLE) {
        double d = dval_double(v);
        return d != d || d - d != 0;
    }
    if (depth > DVAL_MAX_DEPTH || (t != DV_ARRAY && t != DV_OBJECT)) {
        return false;
    }
    dval_iter it;
    dval child;
    dval_iter_init(&it, v);
    while (dval_iter_next(&it, NULL, &child)) {
        if (non_finite(child, depth + 1)) {
            return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size > 0 ? size : 1);
    FZ_CHECK(p != NULL);
    if (size > 0) {
        memcpy(p, data, size);
    }
    shale_error err = {0};
    shale_code full = dval_check(p, size, &err);
    FZ_CHECK(full == SHALE_OK || (full == SHALE_CORRUPTION && err.msg[0] != '\0'));
    shale_code frame = dval_check_frame(p, size, &err);
    FZ_CHECK(frame == SHALE_OK || (frame == SHALE_CORRUPTION && err.msg[0] != '\0'));
    FZ_CHECK(full != SHALE_OK || frame == SHALE_OK);
    if (frame != SHALE_OK) {
        free(p);
        return 0;
    }
    dval v = {p, size};
    fz_dval_readers(v, full == SHALE_OK);
    shale_buf j1 = {0}, d2 = {0}, j2 = {0};
    /* dval_to_json on a NaN or infinite double (which only the full check refuses) converts it
     * to an integer, undefined behaviour (corpus-crashes/dval_fuzz/nan-to-json): left out until
     * dval.c handles it, so fuzzing goes on past it. */
    if (full == SHALE_OK || !non_finite(v, 0)) {
        FZ_CHECK(dval_to_json(v, &j1, &err) == SHALE_OK);
    }
    if (full == SHALE_OK) {
        json_error_t je;
        json_t *j = json_loadb(j1.data, j1.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        FZ_CHECK(j != NULL || nul_in_name(v, 0)); /* jansson holds no NUL in a name either */
        json_decref(j);
        shale_code rc = dval_from_json(j1.data, j1.len, false, &d2, &err);
        if (rc != SHALE_OK) {
            FZ_CHECK(rc == SHALE_INVALID && nul_in_name(v, 0));
        } else {
            dval v2 = {d2.data, d2.len};
            FZ_CHECK(dval_check(d2.data, d2.len, &err) == SHALE_OK);
            FZ_CHECK(dval_cmp(v, v2) == 0 && dval_cmp(v2, v) == 0);
            FZ_CHECK(dval_to_json(v2, &j2, &err) == SHALE_OK);
            FZ_CHECK(j2.len == j1.len && memcmp(j1.data, j2.data, j1.len) == 0);
        }
    }
    buf_free(&j1);
    buf_free(&d2);
    buf_free(&j2);
    free(p);
    return 0;
}
