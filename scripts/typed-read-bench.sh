#!/usr/bin/env bash
# Throughput of the reads that look at a key's type and expiry only (EXISTS, TTL), through
# quorumd's RESP listener, beside one redis-server in the same run (docs/BENCHMARKS.md,
# "typed reads batched"): three fresh redis-server nodes and one baseline on free loopback
# ports, `quorumd run` (BIN) over the three, 100,000 keys of 100 bytes written with
# redis-benchmark, then 3 rounds of `redis-benchmark -n 50000 -c 50 -r 100000 EXISTS|TTL
# key:__rand_int__` against each. Run two binaries alternately and compare the ratios' medians.
#
#   scripts/typed-read-bench.sh BIN LABEL
#
# Needs redis-server, redis-cli and redis-benchmark. Everything it starts is stopped on exit.
set -euo pipefail
bin=$1 label=$2
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nodes=() qd=""
cleanup() {
  [ -n "$qd" ] && kill "$qd" 2>/dev/null && wait "$qd" 2>/dev/null
  for p in "${nodes[@]}" "${base:-}"; do [ -n "$p" ] && redis-cli -p "$p" shutdown nosave >/dev/null 2>&1; done
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in 1 2 3; do nodes+=("$(free_port)"); done
base=$(free_port) resp=$(free_port) http=$(free_port)
for p in "${nodes[@]}" "$base"; do
  redis-server --port "$p" --save "" --appendonly no --daemonize yes --dir "$dir" \
    --pidfile "$dir/$p.pid" --logfile "$dir/$p.log"
done
cat > "$dir/q.toml" <<EOT
nodes = ["redis://127.0.0.1:${nodes[0]}", "redis://127.0.0.1:${nodes[1]}", "redis://127.0.0.1:${nodes[2]}"]
instance_id = "typed-read-bench"
[http]
listen = "127.0.0.1:$http"
[resp]
listen = "127.0.0.1:$resp"
EOT
"$bin" run --config "$dir/q.toml" > "$dir/quorumd.log" 2>&1 &
qd=$!
for _ in $(seq 100); do redis-cli -p "$resp" PING >/dev/null 2>&1 && break; sleep 0.1; done
for p in "$resp" "$base"; do
  redis-benchmark -p "$p" -n 100000 -c 50 -r 100000 -d 100 -t set -q >/dev/null
done
ops() { redis-benchmark -p "$1" -n 50000 -c 50 -r 100000 --csv "$2" key:__rand_int__ | tail -1 | cut -d, -f2 | tr -d '"'; }
for round in 1 2 3; do
  for cmd in EXISTS TTL; do
    echo "$label round $round $cmd quorumd $(ops "$resp" "$cmd") redis $(ops "$base" "$cmd")"
  done
done
