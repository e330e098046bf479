/* api: the shared helpers of the public-API suite (see api.h). */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "env/env.h"

size_t api_count_logs(const char *dir)
{
    cr_assert(api_path_exists(dir), "api_count_logs: no directory %s", dir);
    return tu_count_suffix(dir, ".log");
}

void api_write_file(const char *dir, const char *name, const char *text)
{
    char *p = tu_path(dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "create %s", p);
    fputs(text, f);
    fclose(f);
    free(p);
}

bool api_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

_Atomic uint64_t api_now = 1700000000000ull;

static uint64_t fake_now_ms(const shale_env *env)
{
    (void)env;
    return atomic_load(&api_now);
}

const shale_env *api_fake_env(void)
{
    static shale_env fake;
    fake = *env_posix();
    fake.name = "fake-clock";
    fake.now_ms = fake_now_ms;
    return &fake;
}

shale_slice api_value(char *buf, uint64_t i)
{
    int n = snprintf(buf, 32, "v%llu-", (unsigned long long)i);
    size_t want = 1 + (size_t)((i * 2654435761u) % 200);
    size_t len = (size_t)n;

    while (len < want) {
        size_t step = (size_t)n < want - len ? (size_t)n : want - len;
        memcpy(buf + len, buf, step);
        len += step;
    }
    return (shale_slice){buf, len};
}
