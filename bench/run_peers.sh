#!/usr/bin/env bash
# Runs the side-by-side comparison of docs/BENCHMARKS.md: `peerbench --engines all` (Shale,
# LevelDB, RocksDB, LMDB and SQLite, each engine in its own process, the same workloads, keys and
# values) for 1,000,000 and 10,000,000 keys of 16 bytes with 100-byte values, each once with the
# default memory budget (256 MiB, Shale's default) and once with --max-memory set to a tenth of
# the data (keys + values), and prints the four markdown tables on stdout, each under the exact
# command that made it. Workloads: fillseq fillrandom overwrite readrandom readmissing readseq
# deleterandom fillsync (peerbench's default list, db_bench's order).
#
# Rounds: 1,000,000 keys $ROUNDS_1M rounds (default 3), 10,000,000 keys $ROUNDS_10M (default 1:
# a round of the five engines takes about half an hour at that size); with several rounds the
# engines take turns and each cell is the median. At 10,000,000 keys both fills write all
# 10,000,000 keys, but the reads are cut to 1,000,000 per read workload (readseq scans the first
# 1,000,000 entries), overwrite and deleterandom to 1,000,000 random keys of the 10,000,000, and
# fillsync to 10,000 writes, as at 1,000,000 keys ($FLAGS_10M, default "--reads 1000000 --writes
# 1000000 --num-sync 10000"): rates per operation, not totals, are compared, and SQLite alone
# would otherwise take an hour per run.
#
# Usage: bench/run_peers.sh [FLAG...]   (extra peerbench flags, added to every run)
# Environment:
#   BUILD_DIR  default build/release, where `make bench` builds peerbench (RelWithDebInfo)
#   ENGINES    default all; e.g. ENGINES=shale to measure Shale alone
#   SIZES      default "1000000 10000000"
#   BUDGETS    default "default tenth"
#   ROUNDS_1M, ROUNDS_10M, FLAGS_10M (above); BENCH_RAW: a file for peerbench's full output
#              (default stderr)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/release}
bin=$build/bench/peerbench

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
if [ ! -x "$bin" ]; then
    echo "run_peers.sh: $bin not found (run make bench, or set BUILD_DIR)" >&2
    exit 2
fi

engines=${ENGINES:-all}
sizes=${SIZES:-1000000 10000000}
budgets=${BUDGETS:-default tenth}
key_size=16
value_size=100

raw() {
    if [ -n "${BENCH_RAW:-}" ]; then
        cat >>"$BENCH_RAW"
    else
        cat >&2
    fi
}

status=0
for num in $sizes; do
    if [ "$num" -ge 10000000 ]; then
        rounds=${ROUNDS_10M:-1}
    else
        rounds=${ROUNDS_1M:-3}
    fi
    for budget in $budgets; do
        cmd=("$bin" --engines "$engines" --num "$num" --key-size "$key_size"
             --value-size "$value_size" --rounds "$rounds")
        if [ "$num" -ge 10000000 ]; then
            read -r -a more <<<"${FLAGS_10M---reads 1000000 --writes 1000000 --num-sync 10000}"
            cmd+=("${more[@]}")
        fi
        what="default memory budget (256 MiB)"
        if [ "$budget" = tenth ]; then
            # A tenth of keys + values, in whole MiB (rounded to the nearest).
            mib=$(( (num * (key_size + value_size) / 10 + 524288) / 1048576 ))
            [ "$mib" -ge 4 ] || mib=4 # Shale's smallest max_memory_mb
            cmd+=(--max-memory "$mib")
            what="max_memory = a tenth of the data ($mib MiB)"
        fi
        cmd+=("$@")
        echo "run_peers.sh: $(date +%H:%M:%S) $num keys, $what: ${cmd[*]}" >&2
        start=$(date +%s)
        out=$("${cmd[@]}" 2>&1)
        rc=$?
        end=$(date +%s)
        {
            echo "\$ ${cmd[*]}"
            echo "$out"
            [ $rc -eq 0 ] || echo "(exit status $rc)"
            echo
        } | raw
        [ $rc -eq 0 ] || status=1
        echo "### $num keys, $what"
        echo
        echo '```'
        echo "${cmd[*]#"$root/"}"
        echo '```'
        echo
        date_line=$(echo "$out" | sed -n 's/^Date: *//p' | head -1)
        load_line=$(echo "$out" | sed -n 's/^Load: *\([0-9. ]*\).*/\1/p' | head -1)
        echo "Started $date_line, load averages ${load_line% } (1, 5, 15 min); the whole run took" \
            "$((end - start)) s."
        echo
        echo "$out" | sed -n '/^Operations per second/,$p'
        echo
    done
done
exit $status
