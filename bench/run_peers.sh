#!/usr/bin/env bash
# Runs `shale bench` and `peerbench --engine E` (every engine peerbench was built with) with the
# same flags, one engine after the other, and prints a markdown table of the results on stdout
# (for docs/BENCHMARKS.md). Three runs per engine:
#   1. the workloads fillseq fillrandom overwrite readrandom readmissing readseq readreverse
#      deleterandom, with the flags given (default: --num 1000000 --value-size 100 --threads 1
#      --durability os; a --benchmarks among them replaces the list), $ROUNDS times (default 1)
#      with the engines taking turns; the table gives the median;
#   2. fillsync with --threads 1 and with --threads 8 (same other flags), $FILLSYNC_ROUNDS times
#      (default 3) with the engines taking turns; the table gives the median;
#   3. fillseq,reopen: the time to open a database whose log holds --num records.
# The raw output of every run goes to stderr, or to the file $BENCH_RAW when it is set.
#
# Usage: bench/run_peers.sh [FLAG...]
# Environment: BUILD_DIR (default build/bench-rel: configure it with
#   cmake -S . -B build/bench-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo and build the targets shale
#   and peerbench), ENGINES (default "shale" plus every peer engine peerbench lists), ROUNDS,
#   FILLSYNC_ROUNDS, BENCH_RAW (above).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/bench-rel}
shale_bin=$build/shale
peer_bin=$build/bench/peerbench

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
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
repeats=${FILLSYNC_ROUNDS:-3}
rounds=${ROUNDS:-1}

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

# median N...: the median of whole numbers (non-numbers are dropped; "n/a" when none is left).
median() {
    printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A cell
workloads=(fillseq fillrandom overwrite readrandom readmissing readseq readreverse deleterandom)
main_list=$(IFS=,; echo "${workloads[*]}")
machine=""

# Other processes on the machine only ever slow a run down, and they come and go: with
# ROUNDS > 1 the engines take turns, round after round, and each cell is the median.
declare -A runs
for ((round = 1; round <= rounds; round++)); do
    for e in "${engines[@]}"; do
        echo "run_peers.sh: $e: workloads, round $round of $rounds" >&2
        out=$(run "$e" --benchmarks "$main_list" "${flags[@]}")
        [ -n "$machine" ] || machine=$(echo "$out" | sed -n 's/^CPU: *//p')
        for w in "${workloads[@]}"; do
            v=$(echo "$out" | ops "$w")
            runs[$w,$e]="${runs[$w,$e]:-} ${v:-n/a}"
        done
        found=$(echo "$out" | sed -n 's/^readrandom .*(\([0-9]* of [0-9]*\) found).*/\1/p')
        cell[found,$e]=${found:-n/a}
    done
done
for e in "${engines[@]}"; do
    for w in "${workloads[@]}"; do
        # shellcheck disable=SC2086 # word splitting is wanted: the values of the rounds
        cell[$w,$e]=$(median ${runs[$w,$e]})
    done
done

# fillsync measures the disk's sync latency, which drifts over minutes on shared or virtual
# disks: the engines take turns, round after round, and each cell is the median of the rounds.
declare -A syncs
for ((round = 1; round <= repeats; round++)); do
    for e in "${engines[@]}"; do
        for t in 1 8; do
            echo "run_peers.sh: $e: fillsync, $t thread(s), round $round of $repeats" >&2
            out=$(run "$e" "${flags[@]}" --benchmarks fillsync --threads $t)
            v=$(echo "$out" | ops fillsync)
            syncs[$t,$e]="${syncs[$t,$e]:-} ${v:-n/a}"
        done
    done
done
for e in "${engines[@]}"; do
    # shellcheck disable=SC2086 # word splitting is wanted: the values of the rounds
    a=$(median ${syncs[1,$e]})
    # shellcheck disable=SC2086
    b=$(median ${syncs[8,$e]})
    cell[fillsync1,$e]=$a
    cell[fillsync8,$e]=$b
    if [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ && $a -gt 0 ]]; then
        cell[speedup,$e]=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1fx", b / a }')
    else
        cell[speedup,$e]=n/a
    fi
done

for e in "${engines[@]}"; do
    echo "run_peers.sh: $e: fillseq,reopen" >&2
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
    if [ "$rounds" -gt 1 ]; then
        row "$w" "$w (median of $rounds)"
    else
        row "$w" "$w"
    fi
done
row found "readrandom keys found" raw
row fillsync1 "fillsync, 1 thread (median of $repeats)"
row fillsync8 "fillsync, 8 threads, aggregate (median of $repeats)"
row speedup "fillsync 8 threads / 1 thread" raw
row reopen "reopen after fillseq (ms to open)" raw
row replayed "log records replayed by that open" raw
