/*
 * error: err_set and friends, and the public code names. No allocation anywhere, so every path
 * here works under OOM.
 */
#include "base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

shale_code err_set(shale_error *err, shale_code code, int sys_errno, const char *fmt, ...)
{
    if (err == NULL) {
        return code;
    }
    err->code = code;
    err->sys_errno = sys_errno;
    err->msg[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        /* vsnprintf always NUL-terminates within the size; a long message is simply cut. */
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n < 0) {
            err->msg[0] = '\0';
        }
    }
    err->msg[sizeof err->msg - 1] = '\0';
    return code;
}

shale_code err_nomem(shale_error *err)
{
    return err_set(err, SHALE_NOMEM, ENOMEM, "out of memory");
}

void err_clear(shale_error *err)
{
    if (err == NULL) {
        return;
    }
    err->code = SHALE_OK;
    err->sys_errno = 0;
    err->msg[0] = '\0';
}

shale_code err_copy(shale_error *dst, const shale_error *src)
{
    if (src == NULL) {
        err_clear(dst);
        return SHALE_OK;
    }
    if (dst != NULL && dst != src) {
        dst->code = src->code;
        dst->sys_errno = src->sys_errno;
        /* src->msg might lack its terminator if a caller filled it by hand; stay in bounds. */
        size_t n = strnlen(src->msg, sizeof src->msg - 1);
        memmove(dst->msg, src->msg, n);
        dst->msg[n] = '\0';
    }
    return src->code;
}

const char *shale_strerror(shale_code code)
{
    switch (code) {
    case SHALE_OK:
        return "ok";
    case SHALE_NOT_FOUND:
        return "not found";
    case SHALE_INVALID:
        return "invalid argument";
    case SHALE_CORRUPTION:
        return "corruption";
    case SHALE_IO:
        return "I/O error";
    case SHALE_NOMEM:
        return "out of memory";
    case SHALE_CONFLICT:
        return "conflict";
    case SHALE_BUSY:
        return "busy";
    case SHALE_FULL:
        return "full";
    case SHALE_CLOSED:
        return "closed";
    }
    return "unknown code";
}
