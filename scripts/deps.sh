#!/usr/bin/env bash
# Installs the Debian packages Shale needs to build and test, when any is missing. Runs
# `apt-get update` once first; does nothing when everything is present. Usage: deps.sh [bench]
# ("bench" adds the peer engines measured by `shale bench --peers`, msgpack-c for encbench, and
# Redis, redis-benchmark, wrk and nginx for the server benchmarks).
set -euo pipefail
pkgs=(cmake make gcc clang clang-format pkg-config libcriterion-dev liblz4-dev libzstd-dev
      libjansson-dev libevent-dev libcurl4-openssl-dev libhiredis-dev libssl-dev fiu-utils
      libfiu-dev)
if [ "${1:-}" = "bench" ]; then
  pkgs+=(libleveldb-dev librocksdb-dev liblmdb-dev libsqlite3-dev libmsgpack-dev redis-server
         redis-tools wrk nginx-light)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
