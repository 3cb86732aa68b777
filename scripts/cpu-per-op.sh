#!/usr/bin/env bash
# CPU time per request of each tier, for comparing two quorumd binaries (docs/BENCHMARKS.md,
# "CPU per tier"): starts three fresh redis-server nodes on free loopback ports and
# `quorumd run` over them (sweeps off), runs one redis-benchmark test against its RESP
# listener, and prints the throughput and the CPU µs per request of quorumd and of the three
# nodes together (utime + stime from /proc). CPU per request moves far less with the load of a
# shared machine than throughput does; run the binaries alternately and take medians.
#
#   scripts/cpu-per-op.sh [-b BIN] [-t set|get] [-P PIPELINE] [-n REQUESTS] [-c CLIENTS] [-l true|false]
#
# -l turns live detection of changes made outside quorumd on (the default) or off. For `get`,
# the keyspace is filled with one SET run first. Needs redis-server, redis-cli and
# redis-benchmark (scripts/ensure-deps.sh). Everything it starts is stopped on exit.
set -euo pipefail

bin=target/release/quorumd test=set pipeline=1 requests=100000 clients=50 live=true
while getopts "b:t:P:n:c:l:" opt; do
  case $opt in
    b) bin=$OPTARG ;;
    t) test=$OPTARG ;;
    P) pipeline=$OPTARG ;;
    n) requests=$OPTARG ;;
    c) clients=$OPTARG ;;
    l) live=$OPTARG ;;
    *) sed -n 2,13p "$0" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "cpu-per-op: no quorumd binary at $bin (cargo build --release)" >&2; exit 2; }

script=cpu-per-op
# shellcheck source=scripts/local-nodes.sh
source "$(dirname "$0")/local-nodes.sh"
resp=$(free_port) http=$(free_port)
cat >"$dir/quorumd.toml" <<EOF
nodes = ["redis://127.0.0.1:${nodes[0]}", "redis://127.0.0.1:${nodes[1]}", "redis://127.0.0.1:${nodes[2]}"]
[resp]
listen = "127.0.0.1:$resp"
[http]
listen = "127.0.0.1:$http"
[sync]
exchange_interval_ms = 0
full_sweep_cron = ""
live_detection = $live
[log]
level = "warn"
EOF
"$bin" run --config "$dir/quorumd.toml" >"$dir/quorumd.log" 2>&1 &
quorumd=$!
pids+=("$quorumd")
wait_for "$resp"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
nodes_ticks() {
  local sum=0
  for p in "${node_pids[@]}"; do sum=$((sum + $(ticks "$p"))); done
  echo "$sum"
}
bench() {
  redis-benchmark -p "$resp" -c "$clients" -n "$requests" -d 100 -r 100000 -P "$pipeline" -t "$1" -q
}
[ "$test" = get ] && bench set >/dev/null
q0=$(ticks "$quorumd") n0=$(nodes_ticks)
line=$(bench "$test" 2>&1 | tr '\r' '\n' | grep "requests per second" | tail -1)
q1=$(ticks "$quorumd") n1=$(nodes_ticks)
hz=$(getconf CLK_TCK)
per_op() { echo $((($1) * 1000000 / hz / requests)); }
echo "$test -P $pipeline -c $clients, live detection $live: $line" \
  "| quorumd $(per_op "q1 - q0") µs/op, nodes $(per_op "n1 - n0") µs/op"
