/*
 * libFuzzer target for JSON documents (src/doc/dval.c: dval_from_json and dval_to_json). Built
 * and replayed like every target in tests/fuzz (README.md there).
 *
 * The input is JSON text (any bytes). dval_from_json parses it with require_object false and
 * true, and the target traps unless:
 *   - each returns SHALE_OK or SHALE_INVALID (with a message), and with require_object it
 *     succeeds exactly when the plain parse gives an object, with the same bytes;
 *   - a parsed value passes dval_check; printed with dval_to_json it is JSON that jansson reads,
 *     and parsing that text again gives the same bytes (the encoding is canonical, dval.c), which
 *     print as the same text;
 *   - the readers keep their promises on it (fuzz_util.h fz_dval_readers: fields found by name,
 *     dval_cmp a consistent order, index keys ordered as dval_cmp).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static shale_code parse(const uint8_t *data, size_t size, bool object, shale_buf *out)
{
    /* An exact-size copy without a terminator: the parser must not read past len. */
    char *copy = malloc(size > 0 ? size : 1);
    FZ_CHECK(copy != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
    }
    shale_error err = {0};
    shale_code rc = dval_from_json(copy, size, object, out, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_INVALID);
    FZ_CHECK(rc == SHALE_OK || err.msg[0] != '\0');
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shale_buf d1 = {0}, d2 = {0}, d3 = {0}, j1 = {0}, j2 = {0};
    shale_code rc = parse(data, size, false, &d1);
    shale_code rc_obj = parse(data, size, true, &d2);
    if (rc != SHALE_OK) {
        FZ_CHECK(rc_obj != SHALE_OK);
        goto out;
    }
    const uint8_t *p = d1.data;
    FZ_CHECK(d1.len > 0);
    FZ_CHECK((rc_obj == SHALE_OK) == (p[0] == DV_OBJECT));
    if (rc_obj == SHALE_OK) {
        FZ_CHECK(d2.len == d1.len && memcmp(d1.data, d2.data, d1.len) == 0);
    }
    shale_error err = {0};
    FZ_CHECK(dval_check(d1.data, d1.len, &err) == SHALE_OK);
    FZ_CHECK(dval_check_frame(d1.data, d1.len, &err) == SHALE_OK);
    dval v = {d1.data, d1.len};
    FZ_CHECK(dval_to_json(v, &j1, &err) == SHALE_OK);

    json_error_t je;
    json_t *j = json_loadb(j1.data, j1.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    FZ_CHECK(j != NULL);
    json_decref(j);

    FZ_CHECK(parse(j1.data, j1.len, false, &d3) == SHALE_OK);
    FZ_CHECK(d3.len == d1.len && memcmp(d1.data, d3.data, d1.len) == 0);
    FZ_CHECK(dval_to_json((dval){d3.data, d3.len}, &j2, &err) == SHALE_OK);
    FZ_CHECK(j2.len == j1.len && memcmp(j1.data, j2.data, j1.len) == 0);

    fz_dval_readers(v, true);
out:
    buf_free(&d1);
    buf_free(&d2);
    buf_free(&d3);
    buf_free(&j1);
    buf_free(&j2);
    return 0;
}
