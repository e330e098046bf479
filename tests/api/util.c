/* The utility calls: shale_strerror, shale_version, durability names, shale_buf_free. */
#include <stdio.h>

#include "api.h"

TestSuite(util);

Test(util, strerror_names_every_code)
{
    const char *seen[SHALE_CLOSED + 1];

    for (int c = SHALE_OK; c <= SHALE_CLOSED; c++) {
        const char *s = shale_strerror((shale_code)c);
        cr_assert_not_null(s, "code %d", c);
        cr_assert(s[0] != '\0', "code %d: empty text", c);
        for (int d = 0; d < c; d++) {
            cr_assert_str_neq(s, seen[d], "codes %d and %d share \"%s\"", d, c, s);
        }
        seen[c] = s;
    }
    cr_assert_not_null(strstr(shale_strerror(SHALE_NOT_FOUND), "not found"));
    cr_assert_not_null(strstr(shale_strerror(SHALE_CORRUPTION), "corrupt"));
    /* Codes outside the set still get a text. */
    cr_assert_not_null(shale_strerror((shale_code)100));
    cr_assert_not_null(shale_strerror((shale_code)-1));
}

Test(util, version_matches_the_header)
{
    char want[32];

    snprintf(want, sizeof want, "%d.%d.%d", SHALE_VERSION_MAJOR, SHALE_VERSION_MINOR,
             SHALE_VERSION_PATCH);
    cr_assert_not_null(shale_version());
    cr_assert_str_eq(shale_version(), want);
}

Test(util, durability_names_round_trip)
{
    static const struct {
        const char *text;
        shale_durability level;
    } table[] = {
        {"none", SHALE_DURABILITY_NONE},
        {"memory", SHALE_DURABILITY_MEMORY},
        {"os", SHALE_DURABILITY_OS},
        {"full", SHALE_DURABILITY_FULL},
    };

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        shale_durability got = SHALE_DURABILITY_DEFAULT;
        TU_OK(shale_durability_parse(table[i].text, &got, &ERR));
        cr_assert_eq(got, table[i].level, "%s", table[i].text);
        const char *name = shale_durability_name(table[i].level);
        cr_assert_not_null(name);
        cr_assert_str_eq(name, table[i].text);
    }
    /* Out-of-range levels do not crash. */
    (void)shale_durability_name(SHALE_DURABILITY_DEFAULT);
    (void)shale_durability_name((shale_durability)99);
}

Test(util, durability_parse_rejects_other_text)
{
    static const char *const bad[] = {"",        "ful",  "fully",  "full ", " os",
                                      "default", "sync", "none\n", "0",     "4"};
    shale_durability got;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_durability_parse(bad[i], &got, &ERR));
    }
    TU_CODE(SHALE_INVALID, shale_durability_parse(NULL, &got, &ERR));
    TU_CODE(SHALE_INVALID, shale_durability_parse("full", NULL, &ERR));
    cr_assert_eq(shale_durability_parse("bogus", &got, NULL), SHALE_INVALID);
}

Test(util, buf_free)
{
    shale_buf zero = {0};
    shale_buf used = {0};
    tu_fx fx = {0};

    shale_buf_free(&zero);
    cr_assert_null(zero.data);
    shale_buf_free(NULL);

    tu_fx_begin(&fx, "api-util", NULL);
    tu_put(fx.db, "k", "value");
    TU_OK(shale_get(fx.db, NULL, TU_SL("k"), &used, &ERR));
    cr_assert_not_null(used.data);
    shale_buf_free(&used);
    cr_assert_null(used.data);
    cr_assert_eq(used.len, 0);
    cr_assert_eq(used.cap, 0);
    shale_buf_free(&used); /* freeing twice is harmless once reset */
    /* A freed buffer is a zeroed one again: usable. */
    TU_OK(shale_get(fx.db, NULL, TU_SL("k"), &used, &ERR));
    cr_assert_eq(used.len, 5);
    shale_buf_free(&used);
    tu_fx_end(&fx);
}
