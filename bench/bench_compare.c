/*
 * bench_compare.c: one child process per engine and round, then the table. See bench_compare.h.
 */
#include "bench_compare.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What the parent learns about one child. */
typedef struct child_run {
    bool ok;          /* exited with status 0 */
    long maxrss_kib;  /* wait4's ru_maxrss */
    double seconds;   /* fork to exit */
    compare_result r; /* a copy of what the child wrote */
} child_run;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (the mean of the middle two when n is even); n >= 1. Sorts v. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

const char *compare_group(char *out, size_t len, double v)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%.0f", v < 0 ? 0 : v);
    size_t n = strlen(digits), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            out[o++] = ',';
        }
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

/* Waits for child pid (retrying on EINTR), filling its wait status and resource usage (zeroed
 * when the wait fails). Returns wait4's result: pid, or -1. */
static pid_t wait_child(pid_t pid, int *status, struct rusage *ru)
{
    pid_t got;
    memset(ru, 0, sizeof(*ru));
    do {
        got = wait4(pid, status, 0, ru);
    } while (got < 0 && errno == EINTR);
    return got;
}

/* Forks one child that runs engine e and waits for it. Returns false if the fork failed. */
static bool run_child(const compare_spec *spec, size_t e, compare_result *shared, child_run *out)
{
    memset(shared, 0, sizeof(*shared));
    fflush(stdout);
    fflush(stderr);
    double t0 = now_sec();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", spec->prog, strerror(errno));
        return false;
    }
    if (pid == 0) {
        int status = spec->child(spec->ctx, e, shared);
        fflush(stdout);
        fflush(stderr);
        _exit(status);
    }
    int st = 0;
    struct rusage ru;
    pid_t got = wait_child(pid, &st, &ru);
    out->seconds = now_sec() - t0;
    out->ok = got == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    out->maxrss_kib = ru.ru_maxrss;
    out->r = *shared;
    if (got == pid && WIFSIGNALED(st)) {
        printf("(%s: killed by signal %d)\n", spec->engine_names[e], WTERMSIG(st));
    } else if (!out->ok) {
        printf("(%s: exit status %d)\n", spec->engine_names[e], got == pid ? WEXITSTATUS(st) : -1);
    }
    return true;
}

/* The peak RSS of a child that runs nothing: the harness's own share of every engine's peak. */
static long baseline_rss_kib(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        _exit(0);
    }
    int st = 0;
    struct rusage ru;
    pid_t got = wait_child(pid, &st, &ru);
    return got == pid ? ru.ru_maxrss : -1;
}

static void print_table(const compare_spec *spec, child_run *runs, long base_kib)
{
    size_t ne = spec->engine_count, nw = spec->workload_count;
    int nr = spec->rounds;
    double *v = malloc((size_t)nr * sizeof(*v));
    if (v == NULL) {
        printf("(out of memory for the table)\n");
        return;
    }
    char cell[64];
    printf("\n");
    if (nr > 1) {
        printf("Operations per second (readseq: entries per second); each cell the median of %d "
               "rounds, peak RSS the largest.\n\n",
               nr);
    } else {
        printf("Operations per second (readseq: entries per second); one round.\n\n");
    }
    printf("| workload |");
    for (size_t e = 0; e < ne; e++) {
        printf(" %s |", spec->engine_names[e]);
    }
    printf("\n|---|");
    for (size_t e = 0; e < ne; e++) {
        printf("---:|");
    }
    printf("\n");
    for (size_t w = 0; w < nw; w++) {
        printf("| %s |", spec->workload_names[w]);
        for (size_t e = 0; e < ne; e++) {
            size_t n = 0;
            bool failed = false;
            for (int r = 0; r < nr; r++) {
                const child_run *c = &runs[(size_t)r * ne + e];
                if (c->r.ran[w]) {
                    v[n++] = c->r.ops[w];
                } else if (!c->ok) {
                    failed = true;
                }
            }
            if (n > 0) {
                compare_group(cell, sizeof(cell), median(v, n));
            } else {
                snprintf(cell, sizeof(cell), "%s", failed ? "failed" : "n/a");
            }
            printf(" %s |", cell);
        }
        printf("\n");
    }
    /* The keys readrandom found are the same for every engine when they all agree on the data. */
    for (size_t w = 0; w < nw; w++) {
        if (strcmp(spec->workload_names[w], "readrandom") != 0) {
            continue;
        }
        printf("| readrandom keys found |");
        for (size_t e = 0; e < ne; e++) {
            const compare_result *r = &runs[e].r; /* round 1: the same keys every round */
            if (r->ran[w]) {
                char a[32], b[32];
                compare_group(a, sizeof(a), (double)r->found[w]);
                compare_group(b, sizeof(b), (double)r->done[w]);
                printf(" %s of %s |", a, b);
            } else {
                printf(" n/a |");
            }
        }
        printf("\n");
        break;
    }
    printf("| peak RSS (MiB) |");
    for (size_t e = 0; e < ne; e++) {
        long max = -1;
        for (int r = 0; r < nr; r++) {
            const child_run *c = &runs[(size_t)r * ne + e];
            if (c->maxrss_kib > max) {
                max = c->maxrss_kib;
            }
        }
        if (max >= 0) {
            printf(" %.0f |", (double)max / 1024.0);
        } else {
            printf(" n/a |");
        }
    }
    printf("\n| size on disk (MiB) |");
    for (size_t e = 0; e < ne; e++) {
        size_t n = 0;
        for (int r = 0; r < nr; r++) {
            const child_run *c = &runs[(size_t)r * ne + e];
            if (c->r.have_disk) {
                v[n++] = (double)c->r.disk_bytes;
            }
        }
        if (n > 0) {
            printf(" %.1f |", median(v, n) / 1048576.0);
        } else {
            printf(" n/a |");
        }
    }
    printf("\n| run time (s) |");
    for (size_t e = 0; e < ne; e++) {
        for (int r = 0; r < nr; r++) {
            v[r] = runs[(size_t)r * ne + e].seconds;
        }
        double t = median(v, (size_t)nr);
        printf(t >= 10 ? " %.0f |" : " %.1f |", t);
    }
    printf("\n\n");
    if (base_kib >= 0) {
        printf("Peak RSS is each engine's child process (wait4 ru_maxrss), the harness included: a "
               "child that runs no engine peaks at %.1f MiB.\n",
               (double)base_kib / 1024.0);
    }
    free(v);
}

int compare_run(const compare_spec *spec)
{
    size_t ne = spec->engine_count;
    size_t total = (size_t)spec->rounds * ne;
    /* The children write here; MAP_SHARED makes their writes visible after wait4. */
    compare_result *shared = mmap(NULL, sizeof(compare_result), PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        fprintf(stderr, "%s: mmap: %s\n", spec->prog, strerror(errno));
        return 1;
    }
    child_run *runs = calloc(total, sizeof(*runs));
    if (runs == NULL) {
        fprintf(stderr, "%s: out of memory\n", spec->prog);
        munmap(shared, sizeof(compare_result));
        return 1;
    }
    long base_kib = baseline_rss_kib();
    int status = 0;
    for (int r = 0; r < spec->rounds; r++) {
        for (size_t e = 0; e < ne; e++) {
            child_run *c = &runs[(size_t)r * ne + e];
            printf("\n== %s, round %d of %d ==\n", spec->engine_names[e], r + 1, spec->rounds);
            if (!run_child(spec, e, shared, c)) {
                status = 1;
                continue;
            }
            if (!c->ok) {
                status = 1;
            }
            printf("%-12s : peak RSS %.1f MiB; ", "process", (double)c->maxrss_kib / 1024.0);
            if (c->r.have_disk) {
                printf("%.1f MiB on disk; ", (double)c->r.disk_bytes / 1048576.0);
            }
            printf("%.1f s in all\n", c->seconds);
        }
    }
    print_table(spec, runs, base_kib);
    fflush(stdout);
    free(runs);
    munmap(shared, sizeof(compare_result));
    return status;
}
