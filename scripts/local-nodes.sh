# Sourced by the measurement scripts: a temporary directory `$dir`, every process in `pids`
# stopped and `$dir` removed on exit, and three fresh redis-server nodes on free loopback
# ports (`nodes`: their ports, `node_pids`: their pids). `$script` names the caller in errors.

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() {
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$script: nothing answers on port $1" >&2
  exit 1
}

nodes=() node_pids=()
for i in 0 1 2; do
  port=$(free_port)
  mkdir "$dir/n$i"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/n$i" \
    >"$dir/n$i/log" 2>&1 &
  pids+=($!) node_pids+=($!) nodes+=("$port")
  wait_for "$port"
done
