#!/usr/bin/env bash
# Requests per second of `redrive mock` (a plain 200 route) against nginx on
# the same machine, in the same run, with the same load generator (wrk).
#
#   bench/mock-vs-nginx.sh [DURATION_SECONDS] [ROUNDS] [CONNECTIONS]
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Rounds
# alternate nginx and the mock so drift on a shared machine hits both.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
conns=${3:-64}

for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light)" >&2; exit 2; }
done
cargo build --release --quiet -p redrive

work=$(mktemp -d)
cleanup() {
  [[ -n "${mock_pid:-}" ]] && kill "$mock_pid" 2>/dev/null || true
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$nginx_port; location / { return 200 ""; } }
}
CONF
nginx -c "$work/nginx.conf"

# The mock as an end-to-end benchmark sink: one 200 route. The journal is on
# (its default) in the first configuration and off in the second.
cat > "$work/journal-on.toml" <<'TOML'
[default]
status = 200
TOML
cat > "$work/journal-off.toml" <<'TOML'
[journal]
limit = 0
[default]
status = 200
TOML

run_mock() {
  ./target/release/redrive mock --scenario "$1" --listen 127.0.0.1:0 > "$work/mock.out" 2>/dev/null &
  mock_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/mock.out" 2>/dev/null && break; sleep 0.05; done
  mock_url=$(awk '{print $5}' "$work/mock.out")
}
stop_mock() { kill "$mock_pid"; wait "$mock_pid" 2>/dev/null || true; mock_pid=; }
rps() { wrk -t1 -c"$conns" -d"${duration}s" "$1" | awk '/Requests\/sec/ {print $2}'; }

printf '%-6s %14s %14s %14s %10s %10s\n' round nginx mock mock-nojournal ratio ratio-nj
for r in $(seq "$rounds"); do
  n=$(rps "http://127.0.0.1:$nginx_port/")
  run_mock "$work/journal-on.toml"; m=$(rps "$mock_url/"); stop_mock
  run_mock "$work/journal-off.toml"; o=$(rps "$mock_url/"); stop_mock
  printf '%-6s %14s %14s %14s %10.2f %10.2f\n' "$r" "$n" "$m" "$o" "$(echo "$m / $n" | bc -l)" "$(echo "$o / $n" | bc -l)"
done
echo "wrk -t1 -c$conns -d${duration}s; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
