#!/usr/bin/env bash
# A short narrated tour of the `shale` command: writes, reads, scans, statistics, a restart, a
# missing key and a key that expires. Run by `make demo` as: scripts/demo.sh SHALE_BIN DATA_DIR.
# Safe to run again on the same DATA_DIR: it only overwrites its own keys.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SHALE_BIN DATA_DIR" >&2
    exit 2
fi
bin=$1
data=$2
if [ ! -x "$bin" ]; then
    echo "demo: $bin is not an executable (build it first: make)" >&2
    exit 2
fi

step() {
    printf '\n== %s\n' "$*"
}

# Prints the command as a user would type it, then runs it.
run() {
    printf '$ shale'
    printf ' %q' "$@"
    printf '\n'
    "$bin" "$@"
}

step "Shale $("$bin" --version | cut -d' ' -f2): a database is a directory; 'put' creates $data if missing."
run put "$data" user:1 alice
run put "$data" user:2 bob
run put "$data" user:3 carol --durability full
run put "$data" config:theme dark
run put "$data" session:42 token-abc --ttl 2
echo "(session:42 expires 2 seconds from now; user:3 was fdatasync'ed before 'put' returned)"

step "Read one key back."
run get "$data" user:2

step "Scan everything, in key order (KEY<TAB>VALUE)."
run scan "$data"

step "Scan only the keys that start with 'user:', in reverse order, keys only."
run scan "$data" --prefix user: --reverse --keys-only

step "Statistics. Counters start at each open; last_sequence and recovered_records tell the history."
run stats "$data"

step "Restart: each command is a new process that reopens the database and replays its log."
echo "(nothing above kept the database open: the data below comes back from disk)"
run get "$data" user:1
run scan "$data" --start user: --end user:3
run stats "$data" --json

step "A key that is not there: 'get' says so on stderr and exits 1."
rc=0
run get "$data" user:99 || rc=$?
echo "(exit status $rc)"
if [ "$rc" -ne 1 ]; then
    echo "demo: expected exit status 1 for a missing key" >&2
    exit 1
fi

step "Wait for session:42's 2-second TTL to pass, then look again."
sleep 2.2
rc=0
run get "$data" session:42 || rc=$?
echo "(exit status $rc: expired keys are invisible, and a background sweeper deletes them)"
if [ "$rc" -ne 1 ]; then
    echo "demo: expected session:42 to have expired" >&2
    exit 1
fi
run scan "$data" --keys-only

step "Done. The data is in $data; try: $bin --help"
