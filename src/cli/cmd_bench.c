/*
 * cmd_bench.c: `shale bench [flags]`, a db_bench-style benchmark of the library through its public
 * API. The flags (--max-memory among them) and report live in bench/bench_driver.c and the
 * workloads in bench/bench_workloads.c, shared with `peerbench`, which runs the same workloads on
 * LevelDB, RocksDB, LMDB and SQLite and compares them all side by side (`peerbench --engines all`);
 * this file only plugs in the Shale adapter (bench/engine_shale.c), without the comparison, and
 * maps the driver's status to the CLI's exit codes.
 */
#include "bench_driver.h"
#include "cli/cli.h"

int cmd_bench(int argc, char **argv)
{
    static const bench_engine *const engines[] = {&bench_engine_shale};
    int rc = bench_main(engines, 1, "shale bench", NULL, argc, argv);
    return rc == 0 ? CLI_OK : CLI_ERROR;
}
