#!/usr/bin/env bash
# Runs every libFuzzer target of a `make fuzz` build for a time each, and reports what it found.
#   scripts/fuzz.sh BUILD_DIR SECONDS [SAVE]
# Each target fuzzes from its saved corpus (tests/fuzz/corpus/<target>, read only) into a working
# corpus under BUILD_DIR; a crash leaves its input as BUILD_DIR/crash-<target>-* and fails the
# run. With SAVE=1 the new inputs are merged (minimised) into the saved corpus, which every
# `make test` replays.
set -uo pipefail
build=${1:?usage: fuzz.sh BUILD_DIR SECONDS [SAVE]}
secs=${2:-60}
save=${3:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
failed=0
shopt -s nullglob
targets=("$build"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no fuzz_* targets in $build" >&2
    exit 2
fi
for bin in "${targets[@]}"; do
    t=${bin##*/fuzz_}
    seed=$root/tests/fuzz/corpus/$t
    work=$build/corpus/$t
    mkdir -p "$work" "$seed"
    echo "== $t: ${secs}s" >&2
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/crash-$t-" "$work" "$seed" 2>"$build/$t.log"; then
        echo "== $t: FAILED (log: $build/$t.log)" >&2
        tail -n 30 "$build/$t.log" >&2
        failed=1
    fi
    grep -E '^#[0-9]+ +DONE' "$build/$t.log" | tail -n 1 >&2
    if [ "$save" = 1 ]; then
        "$bin" -merge=1 "$seed" "$work" 2>>"$build/$t.log" >/dev/null
        # Every build replays the saved corpora: keep each one small (tests/fuzz/README.md).
        kb=$(du -sk "$seed" | cut -f1)
        echo "== $t: saved corpus $(ls "$seed" | wc -l) files, ${kb} KiB" >&2
        if [ "$kb" -gt 1024 ]; then
            echo "== $t: WARNING: saved corpus over 1 MiB; prune its largest files" >&2
        fi
    fi
done
exit $failed
