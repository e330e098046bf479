/*
 * peerbench.c: `peerbench --engine NAME [flags]`, the workloads of `shale bench` (bench_driver.c)
 * run on Shale or on one of the peer engines found at build time (bench/CMakeLists.txt), and
 * `peerbench --engines all [flags]`, the side-by-side comparison of all of them (bench_compare.h).
 */
#include <stddef.h>

#include "bench_compare.h"
#include "bench_driver.h"

int main(int argc, char **argv)
{
    static const bench_engine *const engines[] = {
        &bench_engine_shale,
#ifdef HAVE_LEVELDB
        &bench_engine_leveldb,
#endif
#ifdef HAVE_ROCKSDB
        &bench_engine_rocksdb,
#endif
#ifdef HAVE_LMDB
        &bench_engine_lmdb,
#endif
#ifdef HAVE_SQLITE
        &bench_engine_sqlite,
#endif
    };
    size_t count = sizeof(engines) / sizeof(engines[0]);
    return bench_main(engines, count, "peerbench", compare_run, argc, argv);
}
