/*
 * error: filling a shale_error and naming codes.
 *
 * err_set() is the one way a failure is reported: it fills the caller's shale_error (which may be
 * NULL) and returns the code, so a failure is one line: `return err_set(err, SHALE_IO, errno,
 * "%s: write @%llu", name, off);`. It never allocates, so it works under OOM. Thread-safe.
 *
 * NEVER(x) is for "cannot happen, but would be bad": it asserts in debug builds and evaluates to
 * x in release builds so the caller can return SHALE_CORRUPTION instead of crashing (SQLite).
 */
#ifndef SHALE_BASE_ERROR_H
#define SHALE_BASE_ERROR_H

#include <assert.h>

#include "shale.h"

#define SHALE_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Fills *err (if non-NULL) and returns `code`. `sys_errno` is 0 when no OS call failed. */
shale_code err_set(shale_error *err, shale_code code, int sys_errno, const char *fmt, ...)
    SHALE_PRINTF(4, 5);

/* err_set(err, SHALE_NOMEM, ENOMEM, "out of memory"). */
shale_code err_nomem(shale_error *err);

/* Clears *err to SHALE_OK with an empty message (NULL is accepted). */
void err_clear(shale_error *err);

/* Copies src into dst (either may be NULL) and returns src's code. */
shale_code err_copy(shale_error *dst, const shale_error *src);

#ifdef NDEBUG
#define NEVER(x)  (x)
#define ALWAYS(x) (x)
#else
#define NEVER(x)  ((x) ? (assert(!(#x)), 1) : 0)
#define ALWAYS(x) ((x) ? 1 : (assert(!(#x)), 0))
#endif

#endif
