/*
 * iter: the one implementation that lives beside the interface, the empty iterator that only
 * reports a status (a constructor that failed hands it back, so callers never test for a special
 * case).
 */
#include "base/iter.h"

#include <stdlib.h>

#include "base/error.h"

typedef struct error_iter {
    iter base;
    shale_error err; /* err.code is the status */
} error_iter;

static bool error_valid(const iter *it)
{
    (void)it;
    return false;
}

static void error_seek(iter *it, shale_slice key, uint64_t seq)
{
    (void)it;
    (void)key;
    (void)seq;
}

static void error_move(iter *it)
{
    (void)it;
}

static void error_entry(const iter *it, ikey_entry *out)
{
    (void)it;
    *out = (ikey_entry){0}; /* REQUIRES valid, which never holds: an empty DEL, never a crash */
}

static shale_code error_status(const iter *it, shale_error *err)
{
    const error_iter *e = (const error_iter *)it;
    return err_copy(err, &e->err);
}

static void error_destroy(iter *it)
{
    free(it);
}

static const iter_ops error_ops = {
    .valid = error_valid,
    .seek = error_seek,
    .seek_first = error_move,
    .seek_last = error_move,
    .next = error_move,
    .prev = error_move,
    .entry = error_entry,
    .status = error_status,
    .destroy = error_destroy,
};

iter *iter_new_error(shale_code code, const shale_error *err)
{
    error_iter *e = malloc(sizeof *e);

    if (e == NULL) {
        return NULL;
    }
    e->base.ops = &error_ops;
    /* `code` decides the status; err only lends its message (and errno). */
    if (code == SHALE_OK) {
        err_clear(&e->err);
    } else if (err != NULL) {
        (void)err_copy(&e->err, err);
        e->err.code = code;
    } else {
        (void)err_set(&e->err, code, 0, "%s", shale_strerror(code));
    }
    return &e->base;
}
