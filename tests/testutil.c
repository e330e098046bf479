#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TU_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_LSAN 1
#endif
#endif
#ifdef TU_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("SHALE_TEST_TMP");
    char tmpl[4096];

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    mkdir(base, 0700);
    snprintf(tmpl, sizeof tmpl, "%s/%s-XXXXXX", base, tag);
    cr_assert_not_null(mkdtemp(tmpl), "mkdtemp %s", tmpl);
    char *out = strdup(tmpl);
    cr_assert_not_null(out);
    return out;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tu_rm_rf(const char *path)
{
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

shale_slice tu_key(char *buf, uint64_t i)
{
    snprintf(buf, 17, "key%013llu", (unsigned long long)(i % 10000000000000ull));
    return (shale_slice){buf, 16};
}

void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t tu_rng_next(tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

uint64_t tu_rng_below(tu_rng *r, uint64_t n)
{
    return tu_rng_next(r) % n;
}

int64_t tu_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return -1;
    }
    return (int64_t)st.st_size;
}

int tu_flip_bit(const char *path, uint64_t offset, int bit)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    int rc = -1;

    if (fd < 0) {
        return -1;
    }
    if (pread(fd, &c, 1, (off_t)offset) == 1) {
        c ^= (unsigned char)(1u << bit);
        rc = pwrite(fd, &c, 1, (off_t)offset) == 1 ? 0 : -1;
    }
    close(fd);
    return rc;
}

int tu_truncate(const char *path, uint64_t size)
{
    return truncate(path, (off_t)size);
}

void tu_copy_dir(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;

    cr_assert_not_null(d, "opendir %s", from);
    cr_assert_eq(mkdir(to, 0700), 0, "mkdir %s: %s", to, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char *src = tu_path(from, e->d_name);
        char *dst = tu_path(to, e->d_name);
        FILE *in = fopen(src, "rb");
        FILE *out = fopen(dst, "wb");
        cr_assert(in != NULL && out != NULL, "copy %s", src);
        char buf[16384];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
            cr_assert_eq(fwrite(buf, 1, n, out), n);
        }
        fclose(in);
        cr_assert_eq(fclose(out), 0);
        free(src);
        free(dst);
    }
    closedir(d);
}

void tu_assert_no_leaks(void)
{
#ifdef TU_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (see the report above)");
#endif
}
