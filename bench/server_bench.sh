#!/usr/bin/env bash
# Benchmarks `shale serve` side by side with Redis 7 (the Redis protocol) and nginx (HTTP), in
# one run on this machine, and prints a markdown table on stdout with the exact commands, the
# machine and the versions. Progress and the tools' raw output go to stderr.
#
#   1. redis-benchmark -t set,get -n 1000000 -r 1000000 -d 100 -c 50, with -P 1 and -P 16,
#      against `shale serve --durability os` and against redis-server (--appendonly yes
#      --appendfsync everysec --save '').
#   2. wrk GET /collections/users/documents/{id} on random existing ids ("u0000001234"; 100,000
#      documents loaded first through the batch route), against shale serve and against nginx
#      serving a copy of one such response as a static file (every path maps to it), same wrk
#      settings (-t2 -c50 -d10s).
#   3. Inserts over HTTP with wrk and bench/wrk_insert.lua: one document per POST
#      /collections/{c} and 100 per POST /collections/{c}/batch, unique client ids, docs/s and
#      p99; plus the load of step 2 (sequential curl, 1000 documents per batch).
#
# Each server is started in turn on free loopback ports with its own temp dir under
# ${TMPDIR:-/tmp} and stopped (SIGTERM) before the next one starts, so no two compete for the
# cores; everything is killed and removed on exit. The Shale rows are skipped (with the reason)
# when the shale binary is missing or `shale serve` does not come up.
#
# Usage: bench/server_bench.sh [--shale PATH] [--quick] [--keep]
#   --shale PATH  the shale program (default $SHALE, else build/release/shale, as `make` builds)
#   --quick       a smoke test: -n 100000, 10,000 documents, wrk -d3s
#   --keep        keep the temp dir (data, logs, raw outputs) and print its path
# Needs only redis-server, redis-benchmark, redis-cli, wrk, nginx, curl (scripts/deps.sh bench)
# and coreutils/awk.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
shale=${SHALE:-$root/build/release/shale}
quick=0
keep=0

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

while [ $# -gt 0 ]; do
    case $1 in
    --shale)
        [ $# -ge 2 ] || { echo "server_bench.sh: --shale needs a path" >&2; exit 2; }
        shale=$2
        shift 2
        ;;
    --shale=*)
        shale=${1#--shale=}
        shift
        ;;
    --quick)
        quick=1
        shift
        ;;
    --keep)
        keep=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "server_bench.sh: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done
case $shale in
/*) ;;
*/*) shale=$PWD/$shale ;;
esac

for tool in redis-server redis-benchmark redis-cli wrk nginx curl timeout awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "server_bench.sh: $tool not found (scripts/deps.sh bench installs it)" >&2
        exit 2
    fi
done
lua_insert=$root/bench/wrk_insert.lua
if [ ! -r "$lua_insert" ]; then
    echo "server_bench.sh: $lua_insert not found" >&2
    exit 2
fi

if [ "$quick" = 1 ]; then
    rb_n=100000
    ndocs=10000
    dur=3s
else
    rb_n=1000000
    ndocs=100000
    dur=10s
fi
rb_common="-t set,get -n $rb_n -r 1000000 -d 100 -c 50"
wrk_opts="-t2 -c50 -d$dur --latency"
load_batch=1000
ins_batch=100
coll=users
tmo=900 # seconds: no single tool run may hang the script

work=$(mktemp -d "${TMPDIR:-/tmp}/shale-server-bench.XXXXXX") || exit 2
server_pid=""
server_name=""

log() {
    echo "== $*" >&2
}

# Stops the running server with SIGTERM (SIGKILL after 30 s); returns its exit status.
stop_server() {
    local pid=$server_pid rc i
    [ -n "$pid" ] || return 0
    server_pid=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$server_name did not stop within 30 s of SIGTERM: killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    return $rc
}

cleanup() {
    stop_server
    if [ "$keep" = 1 ]; then
        echo "server_bench.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port below the kernel's ephemeral range: a port in it may be some client's local port (wrk's
# connections of a moment ago), which a listener cannot bind even with SO_REUSEADDR.
free_port() {
    local p i lo span
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    if [ -n "$lo" ] && [ "$lo" -gt 12000 ]; then
        span=$((lo - 10000))
    else
        lo=61000 span=4000
    fi
    for ((i = 0; i < 200; i++)); do
        p=$((lo - 1 - RANDOM % span))
        if ! port_open "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_port PORT: until something accepts on it (10 s), while the server lives.
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" && return 0
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- results: res[key.field]; commands: cmds[] (numbered in the table as [cN]) ----
declare -A res
cmds=()
notes=()

add_cmd() { # sets cmd_no (not a subshell: cmds must grow)
    cmds+=("$1")
    cmd_no=${#cmds[@]}
}

# run_rb KEYPREFIX PORT PIPELINE: one redis-benchmark run; stores SET and GET rows.
run_rb() {
    local key=$1 port=$2 p=$3 cmd out errs n t
    cmd="redis-benchmark -h 127.0.0.1 -p $port $rb_common -P $p --csv"
    add_cmd "$cmd"
    n=$cmd_no
    log "$server_name: $cmd"
    # shellcheck disable=SC2086
    out=$(timeout "$tmo" $cmd 2>"$work/rb.err")
    echo "$out" >&2
    cat "$work/rb.err" >&2
    errs=$(grep -c -i 'error' "$work/rb.err")
    for t in SET GET; do
        local line
        line=$(echo "$out" | grep "^\"$t\"" | tr -d '"')
        if [ -z "$line" ]; then
            res[$key.$t.skip]="redis-benchmark gave no $t result (see stderr)"
            res[$key.$t.cmd]=$n
            continue
        fi
        res[$key.$t.rps]=$(echo "$line" | cut -d, -f2)
        res[$key.$t.p50]=$(echo "$line" | cut -d, -f5)
        res[$key.$t.p99]=$(echo "$line" | cut -d, -f7)
        res[$key.$t.err]=$errs
        res[$key.$t.cmd]=$n
    done
}

# wrk_field LINE NAME: NAME's value in a WRK_RESULT line.
wrk_field() {
    local v=" ${1#WRK_RESULT}"
    v=${v#* "$2"=}
    echo "${v%% *}"
}

# run_wrk KEY PER SCRIPT URL [SCRIPT ARGS...]: one wrk run; PER documents per request.
run_wrk() {
    local key=$1 per=$2 script=$3 url=$4 cmd n out line
    shift 4
    cmd="wrk $wrk_opts -s $script $url -- $*"
    add_cmd "$cmd"
    n=$cmd_no
    log "$server_name: $cmd"
    # shellcheck disable=SC2086
    out=$(timeout "$tmo" wrk $wrk_opts -s "$script" "$url" -- "$@" 2>&1)
    echo "$out" >&2
    res[$key.cmd]=$n
    line=$(echo "$out" | grep '^WRK_RESULT ')
    if [ -z "$line" ]; then
        res[$key.skip]="wrk gave no result (see stderr)"
        return
    fi
    local requests dus p50 p99 serr kerr
    requests=$(wrk_field "$line" requests)
    dus=$(wrk_field "$line" duration_us)
    p50=$(wrk_field "$line" p50_us)
    p99=$(wrk_field "$line" p99_us)
    serr=$(wrk_field "$line" status_errors)
    kerr=$(wrk_field "$line" socket_errors)
    res[$key.rps]=$(awk -v r="$requests" -v d="$dus" 'BEGIN { printf "%.2f", r / (d / 1e6) }')
    res[$key.docs]=$(awk -v r="$requests" -v e="$serr" -v d="$dus" -v p="$per" \
        'BEGIN { printf "%.2f", (r - e) * p / (d / 1e6) }')
    res[$key.p50]=$(awk -v u="$p50" 'BEGIN { printf "%.3f", u / 1000 }')
    res[$key.p99]=$(awk -v u="$p99" 'BEGIN { printf "%.3f", u / 1000 }')
    res[$key.err]=$((serr + kerr))
}

# ---- servers ----
shale_cmd_shown=""
shale_skip=""

# start_shale TAG: a fresh `shale serve` on port 0; sets shale_http, shale_resp (HOST:PORT).
start_shale() {
    local tag=$1 out line="" i
    if [ -n "$shale_skip" ]; then
        return 1
    fi
    if [ ! -x "$shale" ]; then
        shale_skip="$shale not found"
        return 1
    fi
    out=$work/shale-$tag.out
    local args=(serve --data "$work/shale-$tag" --http 127.0.0.1:0 --resp 127.0.0.1:0
        --durability os --log-level error)
    shale_cmd_shown="shale serve --data DIR --http 127.0.0.1:0 --resp 127.0.0.1:0 --durability os --log-level error"
    server_name="shale serve ($tag)"
    log "starting $shale_cmd_shown"
    "$shale" "${args[@]}" >"$out" 2>"$work/shale-$tag.err" &
    server_pid=$!
    for ((i = 0; i < 300; i++)); do
        line=$(grep -m1 '^shale serve ready:' "$out" 2>/dev/null) && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid" 2>/dev/null
            shale_skip="shale serve exited ($?) before ready: $(tail -c 300 "$work/shale-$tag.err" | tr '\n' ' ')"
            server_pid=""
            return 1
        fi
        sleep 0.1
    done
    if [ -z "$line" ]; then
        shale_skip="shale serve printed no ready line within 30 s"
        stop_server
        return 1
    fi
    shale_http=${line#*http=}
    shale_http=${shale_http%% *}
    shale_resp=${line#*resp=}
    shale_resp=${shale_resp%% *}
    log "$line"
    return 0
}

stop_shale() {
    local rc
    stop_server
    rc=$?
    if [ "$rc" != 0 ]; then
        notes+=("shale serve ($1) exited with status $rc on SIGTERM (stderr: $(tail -c 200 "$work/shale-$1.err" | tr '\n' ' '))")
    fi
}

redis_cmd_shown=""
start_redis() {
    local port
    port=$(free_port) || return 1
    mkdir -p "$work/redis"
    local args=(--port "$port" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes
        --appendfsync everysec --save '' --daemonize no --logfile "$work/redis/redis.log")
    redis_cmd_shown="redis-server --port $port --bind 127.0.0.1 --dir DIR --appendonly yes --appendfsync everysec --save '' --daemonize no --logfile DIR/redis.log"
    server_name="redis-server"
    log "starting $redis_cmd_shown"
    redis-server "${args[@]}" &
    server_pid=$!
    redis_port=$port
    wait_port "$port" || return 1
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    return 1
}

nginx_cmd_shown=""
start_nginx() {
    local port dir=$work/nginx user_line=""
    port=$(free_port) || return 1
    mkdir -p "$dir/www" "$dir/logs" "$dir/tmp"
    cp "$work/doc.json" "$dir/www/doc.json"
    # A master started as root runs its workers as "nobody", who cannot read the 0700 temp dir.
    if [ "$(id -u)" = 0 ]; then
        user_line="user root;"
    fi
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            root $dir/www;
            try_files /doc.json =404;
        }
    }
}
EOF
    nginx_cmd_shown="nginx -e DIR/logs/error.log -p DIR -c DIR/nginx.conf -g 'daemon off;'"
    server_name="nginx"
    log "starting $nginx_cmd_shown (config: worker_processes auto; $user_line access_log off; keepalive_requests 1000000; every path -> doc.json)"
    nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
    server_pid=$!
    nginx_port=$port
    wait_port "$port"
}

# load_docs ADDR N: N documents "u%010d" into $coll, $load_batch per POST, sequential curl.
load_docs() {
    local addr=$1 n=$2 s e code
    for ((s = 0; s < n; s += load_batch)); do
        e=$((s + load_batch))
        [ "$e" -le "$n" ] || e=$n
        awk -v s="$s" -v e="$e" 'BEGIN {
            split("Berlin Lisbon Nantes Oslo-- Quito- Tokyo- Zurich Dakar-", city, " ")
            printf "{\"documents\":["
            for (i = s; i < e; i++) {
                m = i % 1000000
                printf "%s{\"_id\":\"u%010d\",\"name\":\"user %06d\",\"email\":\"user%06d@example.com\",\"age\":%02d,\"city\":\"%s\",\"active\":%s,\"score\":%6d,\"tags\":[\"a\",\"b\"]}", \
                    (i > s ? "," : ""), i, m, m, 18 + m % 60, city[1 + m % 8], (m % 2 == 0 ? "true " : "false"), m
            }
            printf "]}"
        }' >"$work/batch.json"
        code=$(curl -s -o "$work/batch.out" -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary "@$work/batch.json" "http://$addr/collections/$coll/batch")
        if [ "$code" != 201 ] && [ "$code" != 200 ]; then
            echo "load: POST /collections/$coll/batch at $s: HTTP $code: $(head -c 300 "$work/batch.out")"
            return 1
        fi
    done
    return 0
}

now_ns() {
    date +%s%N
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ================= 1. Redis protocol =================
if start_shale resp; then
    if [ "$(redis-cli -p "${shale_resp##*:}" ping 2>/dev/null)" = PONG ]; then
        run_rb "rb.P1.shale" "${shale_resp##*:}" 1
        run_rb "rb.P16.shale" "${shale_resp##*:}" 16
        res[rb.shale.info]=$(redis-cli -p "${shale_resp##*:}" dbsize 2>&1)
    else
        shale_resp_skip="PING on the RESP port did not answer PONG"
    fi
    stop_shale resp
fi
redis_up=0
for _ in 1 2 3; do
    if start_redis; then
        redis_up=1
        break
    fi
    stop_server
done
if [ "$redis_up" = 1 ]; then
    run_rb "rb.P1.redis" "$redis_port" 1
    run_rb "rb.P16.redis" "$redis_port" 16
    stop_server || notes+=("redis-server exited non-zero on SIGTERM")
else
    notes+=("redis-server did not start (3 attempts): $(tail -c 300 "$work/redis/redis.log" 2>/dev/null)")
fi

# ================= 2. HTTP GET by id =================
lua_get=$work/wrk_get.lua
cat >"$lua_get" <<'EOF'
-- GET /collections/{c}/documents/u%010d on random ids below N (args: N COLL)
local next_tid = 0
function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
end
function init(args)
    n = tonumber(args[1])
    coll = args[2]
    math.randomseed(42 + tid)
end
function request()
    return wrk.format("GET", string.format("/collections/%s/documents/u%010d", coll,
        math.random(0, n - 1)))
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK_RESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f " ..
        "status_errors=%.0f socket_errors=%.0f\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

doc_size=""
doc_src="a copy of one Shale document response"
if start_shale get; then
    log "loading $ndocs documents into $coll ($load_batch per batch)"
    t0=$(now_ns)
    if msg=$(load_docs "$shale_http" "$ndocs"); then
        t1=$(now_ns)
        res[load.shale.docs]=$(awk -v n="$ndocs" -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", n / (d / 1e9) }')
        add_cmd "for each 1000 ids: curl -s -H 'Content-Type: application/json' --data-binary @batch.json http://$shale_http/collections/$coll/batch   ($ndocs documents, one curl at a time)"
        res[load.shale.cmd]=$cmd_no
        code=$(curl -s -o "$work/doc.json" -w '%{http_code}' "http://$shale_http/collections/$coll/documents/u0000000042")
        if [ "$code" = 200 ]; then
            doc_size=$(wc -c <"$work/doc.json")
            log "document response ($doc_size bytes): $(cat "$work/doc.json")"
            run_wrk "get.shale" 1 "$lua_get" "http://$shale_http" "$ndocs" "$coll"
        else
            res[get.shale.skip]="GET of a loaded document answered HTTP $code"
        fi
    else
        res[load.shale.skip]=$msg
        res[get.shale.skip]="the load failed"
    fi
    stop_shale get
fi
if [ -z "$doc_size" ]; then
    # No Shale response to copy: a document of the same shape, for the nginx row alone.
    doc_src="a document shaped like the loaded ones (no Shale response to copy)"
    printf '{"_id":"u0000000042","name":"user 000042","email":"user000042@example.com","age":60,"city":"Zurich","active":true ,"score":    42,"tags":["a","b"]}' >"$work/doc.json"
    doc_size=$(wc -c <"$work/doc.json")
fi
nginx_up=0
for _ in 1 2 3; do
    if start_nginx; then
        nginx_up=1
        break
    fi
    stop_server
done
if [ "$nginx_up" = 1 ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nginx_port/collections/$coll/documents/u0000000042")
    if [ "$code" = 200 ]; then
        run_wrk "get.nginx" 1 "$lua_get" "http://127.0.0.1:$nginx_port" "$ndocs" "$coll"
    else
        res[get.nginx.skip]="nginx answered HTTP $code"
    fi
    stop_server || notes+=("nginx exited non-zero on SIGTERM")
else
    res[get.nginx.skip]="nginx did not start (3 attempts): $(tail -c 300 "$work/nginx/logs/error.log" 2>/dev/null | tr '\n' ' ')"
fi

# ================= 3. HTTP inserts =================
if start_shale insert; then
    run_wrk "ins1.shale" 1 "$lua_insert" "http://$shale_http" one 1 ins_one w
    run_wrk "insb.shale" "$ins_batch" "$lua_insert" "http://$shale_http" batch "$ins_batch" ins_batch b
    res[ins.check]=$(curl -s "http://$shale_http/collections/ins_one/documents/w00-000000002" | head -c 200)
    stop_shale insert
fi

# ================= report =================
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
shale_ver="(not run)"
if [ -x "$shale" ]; then
    shale_ver=$("$shale" --version 2>&1 | head -1)
fi

fmt() { # value or "-"
    if [ -n "${1:-}" ]; then echo "$1"; else echo "-"; fi
}
ratio() { # a b -> a/b as "0.00x"
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
    else
        echo "-"
    fi
}

# row BENCH SERVER KEY RPS_FIELD PEER_KEY
row() {
    local bench=$1 server=$2 key=$3 peer=${4:-} skip
    skip=${res[$key.skip]:-}
    if [ "$server" = shale ] && [ -n "$shale_skip" ]; then
        skip="skipped: $shale_skip"
    fi
    local c="${res[$key.cmd]:-}"
    [ -n "$c" ] && c="[c$c]"
    if [ -n "$skip" ]; then
        printf '| %s | %s | %s | - | - | - | - | - | - |\n' "$bench" "$server" "$skip"
        return
    fi
    local rps=${res[$key.rps]:-} vs="-"
    if [ -n "$peer" ]; then
        vs=$(ratio "$rps" "${res[$peer.rps]:-}")
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$bench" "$server" "$c" \
        "$(fmt "$rps")" "$(fmt "${res[$key.docs]:-}")" "$(fmt "${res[$key.p50]:-}")" \
        "$(fmt "${res[$key.p99]:-}")" "$(fmt "${res[$key.err]:-}")" "$vs"
}

{
    echo "## shale serve vs Redis 7 and nginx (bench/server_bench.sh$([ "$quick" = 1 ] && echo " --quick"))"
    echo
    echo "- Machine: $(nproc) cores, $cpu, Linux $(uname -r); client and server share the cores (no pinning); load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Versions: $shale_ver; $(redis-server --version | head -1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-3)"
    echo "- Shale: \`$([ -n "$shale_cmd_shown" ] && echo "$shale_cmd_shown" || echo "shale serve (not run)")\` (a fresh data dir per section; default --threads, one per core)"
    echo "- Redis: \`${redis_cmd_shown:-not run}\`"
    echo "- nginx: \`${nginx_cmd_shown:-not run}\`, worker_processes auto, access_log off, keepalive_requests 1000000, every path answers $doc_src ($doc_size bytes, application/json)"
    echo "- GET reads: $ndocs documents \"u%010d\" loaded first; wrk picks ids uniformly at random. Inserts: bench/wrk_insert.lua, unique client ids, ~150-byte documents."
    echo "- requests/s and latencies as the client reports them (redis-benchmark --csv; wrk's done() summary); docs/s = successful requests/s x documents per request; errors = error replies / non-2xx / socket errors."
    echo
    echo "| Benchmark | Server | Cmd | requests/s | docs/s | p50 ms | p99 ms | errors | Shale / peer |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    for p in P1 P16; do
        for t in SET GET; do
            k1="rb.$p.shale.$t"
            k2="rb.$p.redis.$t"
            row "RESP $t -P ${p#P}" shale "$k1" "$k2"
            row "RESP $t -P ${p#P}" "redis 7" "$k2"
        done
    done
    row "HTTP GET /collections/$coll/documents/{id}" shale get.shale get.nginx
    row "HTTP GET /collections/$coll/documents/{id}" "nginx static" get.nginx
    row "HTTP POST /collections/{c} (1 doc)" shale ins1.shale
    row "HTTP POST /collections/{c}/batch ($ins_batch docs)" shale insb.shale
    row "HTTP load, batch of $load_batch, 1 curl at a time" shale load.shale
    echo
    echo "Commands:"
    echo
    for ((i = 0; i < ${#cmds[@]}; i++)); do
        echo "- [c$((i + 1))] \`${cmds[$i]}\`"
    done
    if [ -n "${shale_resp_skip:-}" ]; then
        notes+=("RESP rows of Shale skipped: $shale_resp_skip")
    fi
    if [ -n "${res[ins.check]:-}" ]; then
        notes+=("check: GET of an inserted single document (w00-000000002; wrk spends seq 1 on its probe request): ${res[ins.check]}")
    fi
    if [ ${#notes[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        echo
        for n in "${notes[@]}"; do
            echo "- $n"
        done
    fi
}
