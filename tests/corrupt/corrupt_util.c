/* corrupt_util: helpers the corruption campaigns share (contract in corrupt_util.h). */
#include "corrupt_util.h"

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

char *cu_newest_log(const char *dir)
{
    size_t n = 0;
    char **names = tu_list_dir(dir, &n), *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "log")) {
            free(best);
            best = strdup(names[i]);
        }
    }
    tu_free_names(names, n);
    return best;
}

uint64_t cu_fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}
