#!/usr/bin/env bash
# How long `quorumd convert` takes to merge sub-buckets into fewer (docs/OPERATIONS.md,
# "Upgrading"): starts three fresh redis-server nodes on free loopback ports and `quorumd run`
# over them with `sub_buckets = FROM`, writes KEYS keys of 100 bytes through its Redis-protocol
# listener (`redis-cli --pipe`), stops it, times `quorumd convert` with `sub_buckets = TO`, and
# checks the result: quorumd starts with TO, reads a key back, and a digest exchange
# (`quorumd sweep --dry-run`) finds every node in sync.
#
#   scripts/convert-time.sh [-b BIN] [-p xxh3|slot] [-k KEYS] [-f FROM] [-t TO]
#
# Defaults: target/release/quorumd, slot, 1000000 keys, 16 into 4. Needs redis-server and
# redis-cli (scripts/ensure-deps.sh). Everything it starts is stopped on exit.
set -euo pipefail

bin=target/release/quorumd placement=slot keys=1000000 from=16 to=4
while getopts "b:p:k:f:t:" opt; do
  case $opt in
    b) bin=$OPTARG ;;
    p) placement=$OPTARG ;;
    k) keys=$OPTARG ;;
    f) from=$OPTARG ;;
    t) to=$OPTARG ;;
    *) sed -n 2,12p "$0" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "convert-time: no quorumd binary at $bin (cargo build --release)" >&2; exit 2; }

script=convert-time
# shellcheck source=scripts/local-nodes.sh
source "$(dirname "$0")/local-nodes.sh"
resp=$(free_port) http=$(free_port)
config() {
  cat <<EOF
nodes = ["redis://127.0.0.1:${nodes[0]}", "redis://127.0.0.1:${nodes[1]}", "redis://127.0.0.1:${nodes[2]}"]
placement = "$placement"
sub_buckets = $1
[resp]
listen = "127.0.0.1:$resp"
[http]
listen = "127.0.0.1:$http"
[sync]
exchange_interval_ms = 0
full_sweep_cron = ""
live_detection = false
[log]
level = "warn"
EOF
}
config "$from" >"$dir/from.toml"
config "$to" >"$dir/to.toml"

start() {
  "$bin" run --config "$1" >>"$dir/quorumd.log" 2>&1 &
  quorumd=$!
  pids+=("$quorumd")
  wait_for "$resp"
}
stop() {
  kill -TERM "$quorumd"
  wait "$quorumd" 2>/dev/null || true
}

start "$dir/from.toml"
started=$(date +%s.%N)
value=$(printf 'v%.0s' $(seq 100))
awk -v n="$keys" -v v="$value" 'BEGIN { for (i = 0; i < n; i++) printf "SET key:%d %s\n", i, v }' |
  redis-cli -p "$resp" --pipe >"$dir/load.log"
loaded=$(date +%s.%N)
grep -q "errors: 0" "$dir/load.log" || { cat "$dir/load.log" >&2; exit 1; }
echo "loaded $keys keys through quorumd in $(echo "$loaded - $started" | bc) s (placement $placement, sub_buckets $from)"
stop

started=$(date +%s.%N)
"$bin" convert --config "$dir/to.toml" 2>>"$dir/quorumd.log"
done_at=$(date +%s.%N)
echo "quorumd convert into sub_buckets $to: $(echo "$done_at - $started" | bc) s for 3 nodes"

start "$dir/to.toml"
got=$(redis-cli -p "$resp" GET key:$((keys - 1)))
[ "$got" = "$value" ] || { echo "convert-time: key:$((keys - 1)) reads back as '$got'" >&2; exit 1; }
stop
"$bin" sweep --config "$dir/to.toml" --dry-run >"$dir/sweep.log" 2>&1 ||
  { echo "convert-time: the exchange after the conversion found divergence or failed:" >&2; cat "$dir/sweep.log" >&2; exit 1; }
echo "checked: quorumd starts with sub_buckets $to, reads key:$((keys - 1)) back, and a digest exchange finds the nodes in sync"
