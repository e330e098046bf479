/*
 * peerbench.c: `peerbench --engine leveldb|rocksdb|lmdb [flags]`, the workloads of `shale bench`
 * (bench_driver.c) run on the peer engines found at build time (bench/CMakeLists.txt).
 */
#include <stddef.h>

#include "bench_driver.h"

int main(int argc, char **argv)
{
    /* The NULL keeps the array non-empty whatever was found; it is not counted. */
    static const bench_engine *const engines[] = {
#ifdef HAVE_LEVELDB
        &bench_engine_leveldb,
#endif
#ifdef HAVE_ROCKSDB
        &bench_engine_rocksdb,
#endif
#ifdef HAVE_LMDB
        &bench_engine_lmdb,
#endif
        NULL,
    };
    size_t count = sizeof(engines) / sizeof(engines[0]) - 1;
    return bench_main(engines, count, "peerbench", argc, argv);
}
