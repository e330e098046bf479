/* error: err_set fills and returns, NULL err, truncation of long messages, clear, copy, and the
 * fixed texts of shale_strerror. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "base/error.h"

Test(error, set_fills_and_returns_code)
{
    shale_error err;
    memset(&err, 0x55, sizeof err);
    cr_assert_eq(err_set(&err, SHALE_IO, EIO, "%s @%d: %s", "000012.log", 32775, "bad checksum"),
                 SHALE_IO);
    cr_assert_eq(err.code, SHALE_IO);
    cr_assert_eq(err.sys_errno, EIO);
    cr_assert_str_eq(err.msg, "000012.log @32775: bad checksum");
}

Test(error, set_with_null_err_returns_code)
{
    cr_assert_eq(err_set(NULL, SHALE_CORRUPTION, 0, "x %d", 1), SHALE_CORRUPTION);
    cr_assert_eq(err_set(NULL, SHALE_OK, 0, "fine"), SHALE_OK);
    cr_assert_eq(err_nomem(NULL), SHALE_NOMEM);
}

Test(error, long_message_is_truncated_and_terminated)
{
    char longstr[1000];
    memset(longstr, 'q', sizeof longstr - 1);
    longstr[sizeof longstr - 1] = '\0';
    shale_error err;
    memset(&err, 0x55, sizeof err);
    cr_assert_eq(err_set(&err, SHALE_INVALID, 0, "key: %s", longstr), SHALE_INVALID);
    cr_assert_eq(strlen(err.msg), sizeof err.msg - 1);
    cr_assert_eq(err.msg[sizeof err.msg - 1], '\0');
    cr_assert_eq(strncmp(err.msg, "key: qqq", 8), 0);
    cr_assert_eq(err.msg[sizeof err.msg - 2], 'q');
}

Test(error, nomem)
{
    shale_error err;
    cr_assert_eq(err_nomem(&err), SHALE_NOMEM);
    cr_assert_eq(err.code, SHALE_NOMEM);
    cr_assert_eq(err.sys_errno, ENOMEM);
    cr_assert_str_eq(err.msg, "out of memory");
}

Test(error, clear)
{
    shale_error err;
    (void)err_set(&err, SHALE_BUSY, 11, "locked");
    err_clear(&err);
    cr_assert_eq(err.code, SHALE_OK);
    cr_assert_eq(err.sys_errno, 0);
    cr_assert_str_eq(err.msg, "");
    err_clear(NULL);
}

Test(error, copy)
{
    shale_error a;
    shale_error b;
    (void)err_set(&a, SHALE_FULL, 0, "value of %d bytes", 99);
    memset(&b, 0x55, sizeof b);
    cr_assert_eq(err_copy(&b, &a), SHALE_FULL);
    cr_assert_eq(b.code, SHALE_FULL);
    cr_assert_eq(b.sys_errno, 0);
    cr_assert_str_eq(b.msg, "value of 99 bytes");
    cr_assert_eq(err_copy(NULL, &a), SHALE_FULL);
    cr_assert_eq(err_copy(&a, &a), SHALE_FULL);
    cr_assert_str_eq(a.msg, "value of 99 bytes");
    /* A NULL source means no error. */
    cr_assert_eq(err_copy(&b, NULL), SHALE_OK);
    cr_assert_eq(b.code, SHALE_OK);
    cr_assert_str_eq(b.msg, "");
    cr_assert_eq(err_copy(NULL, NULL), SHALE_OK);
    /* An unterminated source message is cut, never overread. */
    memset(a.msg, 'r', sizeof a.msg);
    cr_assert_eq(err_copy(&b, &a), SHALE_FULL);
    cr_assert_eq(strlen(b.msg), sizeof b.msg - 1);
}

Test(error, strerror_texts)
{
    cr_assert_str_eq(shale_strerror(SHALE_OK), "ok");
    cr_assert_str_eq(shale_strerror(SHALE_NOT_FOUND), "not found");
    cr_assert_str_eq(shale_strerror(SHALE_INVALID), "invalid argument");
    cr_assert_str_eq(shale_strerror(SHALE_CORRUPTION), "corruption");
    cr_assert_str_eq(shale_strerror(SHALE_IO), "I/O error");
    cr_assert_str_eq(shale_strerror(SHALE_NOMEM), "out of memory");
    cr_assert_str_eq(shale_strerror(SHALE_CONFLICT), "conflict");
    cr_assert_str_eq(shale_strerror(SHALE_BUSY), "busy");
    cr_assert_str_eq(shale_strerror(SHALE_FULL), "full");
    cr_assert_str_eq(shale_strerror(SHALE_CLOSED), "closed");
    cr_assert_str_eq(shale_strerror((shale_code)10), "unknown code");
    cr_assert_str_eq(shale_strerror((shale_code)-1), "unknown code");
    cr_assert_str_eq(shale_strerror((shale_code)12345), "unknown code");
}

#ifndef NDEBUG
/* NEVER/ALWAYS pass the value through when the condition is as expected. */
Test(error, never_always_pass_through)
{
    cr_assert_eq(NEVER(0), 0);
    cr_assert_eq(ALWAYS(1), 1);
}
#endif
