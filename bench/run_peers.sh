#!/usr/bin/env bash
# Runs `shale bench` and `peerbench --engine E` (every engine peerbench was built with) with the
# same flags, one engine after the other, and prints a markdown table of the results on stdout
# (for docs/BENCHMARKS.md). Three runs per engine:
#   1. the workloads fillseq fillrandom overwrite readrandom readmissing readseq readreverse
#      deleterandom, with the flags given (default: --num 1000000 --value-size 100 --threads 1
#      --durability os; a --benchmarks among them replaces the list);
#   2. fillsync with --threads 1 and again with --threads 8 (same other flags);
#   3. fillseq,reopen: the time to open a database whose log holds --num records.
# The raw output of every run goes to stderr, or to the file $BENCH_RAW when it is set.
#
# Usage: bench/run_peers.sh [FLAG...]
# Environment: BUILD_DIR (default build/bench-rel: configure it with
#   cmake -S . -B build/bench-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo and build the targets shale
#   and peerbench), ENGINES (default "shale" plus every peer engine peerbench lists).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/bench-rel}
shale_bin=$build/shale
peer_bin=$build/bench/peerbench

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
if [ $# -eq 0 ]; then
    set -- --num 1000000 --value-size 100 --threads 1 --durability os
fi
flags=("$@")

if [ ! -x "$shale_bin" ]; then
    echo "run_peers.sh: $shale_bin not found (build the target shale in $build)" >&2
    exit 2
fi
if [ -z "${ENGINES:-}" ]; then
    ENGINES=shale
    if [ -x "$peer_bin" ]; then
        # The --help text lists the engines this peerbench was built with.
        peers=$("$peer_bin" --help | sed -n 's/.*--engine NAME *the engine to measure: *//p')
        ENGINES="shale $peers"
    else
        echo "run_peers.sh: $peer_bin not found: measuring shale alone" >&2
    fi
fi
read -r -a engines <<<"$ENGINES"

raw() {
    if [ -n "${BENCH_RAW:-}" ]; then
        cat >>"$BENCH_RAW"
    else
        cat >&2
    fi
}

# run ENGINE FLAG...: runs one benchmark process; prints its output (also to the raw log).
run() {
    local engine=$1
    shift
    local cmd
    if [ "$engine" = shale ]; then
        cmd=("$shale_bin" bench "$@")
    else
        cmd=("$peer_bin" --engine "$engine" "$@")
    fi
    local out rc
    out=$("${cmd[@]}" 2>&1)
    rc=$?
    {
        echo "\$ ${cmd[*]}"
        echo "$out"
        [ $rc -eq 0 ] || echo "(exit status $rc)"
        echo
    } | raw
    echo "$out"
}

# ops NAME: the ops/sec of workload NAME in the output on stdin, or "error".
ops() {
    awk -v n="$1" '$1 == n && $2 == ":" && /ops\/sec/ {
        for (i = 1; i <= NF; i++) if ($i == "ops/sec" || $i == "ops/sec;") { print $(i-1); exit }
    } END {}' | head -1
}

# group 1234567 -> 1,234,567
group() {
    awk '{ s = $1; if (s !~ /^[0-9]+$/) { print s; next }
           r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
           print s r }'
}

declare -A cell
workloads=(fillseq fillrandom overwrite readrandom readmissing readseq readreverse deleterandom)
main_list=$(IFS=,; echo "${workloads[*]}")
machine=""

for e in "${engines[@]}"; do
    echo "run_peers.sh: $e ..." >&2
    out=$(run "$e" --benchmarks "$main_list" "${flags[@]}")
    [ -n "$machine" ] || machine=$(echo "$out" | sed -n 's/^CPU: *//p')
    for w in "${workloads[@]}"; do
        v=$(echo "$out" | ops "$w")
        cell[$w,$e]=${v:-n/a}
    done
    found=$(echo "$out" | sed -n 's/^readrandom .*(\([0-9]* of [0-9]*\) found).*/\1/p')
    cell[found,$e]=${found:-n/a}
    for t in 1 8; do
        out=$(run "$e" "${flags[@]}" --benchmarks fillsync --threads $t)
        v=$(echo "$out" | ops fillsync)
        cell[fillsync$t,$e]=${v:-n/a}
    done
    a=${cell[fillsync1,$e]}
    b=${cell[fillsync8,$e]}
    if [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ && $a -gt 0 ]]; then
        cell[speedup,$e]=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1fx", b / a }')
    else
        cell[speedup,$e]=n/a
    fi
    out=$(run "$e" "${flags[@]}" --benchmarks fillseq,reopen --threads 1)
    v=$(echo "$out" | awk '$1 == "reopen" && $2 == ":" { print $3; exit }')
    cell[reopen,$e]=${v:-n/a}
    r=$(echo "$out" | sed -n 's/^reopen .*; \([0-9]*\) log records replayed.*/\1/p')
    cell[replayed,$e]=${r:-n/a}
done

echo "Flags: \`${flags[*]}\`  "
echo "Machine: ${machine:-unknown}, $(uname -sr)  "
echo "Units: operations per second (readseq/readreverse: entries per second) unless stated."
echo
printf '| workload |'
for e in "${engines[@]}"; do printf ' %s |' "$e"; done
printf '\n|---|'
for e in "${engines[@]}"; do printf -- '---:|'; done
printf '\n'
row() {
    local key=$1 label=$2 fmt=${3:-group}
    printf '| %s |' "$label"
    for e in "${engines[@]}"; do
        local v=${cell[$key,$e]:-n/a}
        [ "$fmt" = group ] && v=$(echo "$v" | group)
        printf ' %s |' "$v"
    done
    printf '\n'
}
for w in "${workloads[@]}"; do
    row "$w" "$w"
done
row found "readrandom keys found" raw
row fillsync1 "fillsync, 1 thread"
row fillsync8 "fillsync, 8 threads (aggregate)"
row speedup "fillsync 8 threads / 1 thread" raw
row reopen "reopen after fillseq (ms to open)" raw
row replayed "log records replayed by that open" raw
