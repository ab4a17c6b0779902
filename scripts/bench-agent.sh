#!/usr/bin/env bash
# Reproduces the storage-agent figures in docs/BENCHMARKS.md: 1 MiB reads through a retrieval
# token (every read charged to the contract) with 16 connections, side by side with nginx serving
# the same bytes from a file on loopback; PUT throughput of 1 MiB objects; the agent's peak RSS.
# Needs wrk and nginx (Debian packages: apt-get install -y wrk nginx-light).
# Usage: scripts/bench-agent.sh [SECONDS] [WRITES]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
writes=${2:-200}
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx: apt-get install -y wrk nginx-light" >&2; exit 1; }
cargo build --release -p lcp -p storage-agent --bins --examples >&2
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

wait_line() { for _ in $(seq 200); do grep -q "listening on" "$1" 2>/dev/null && break; sleep 0.05; done; sed -n 's/^listening on //p' "$1"; }

"$bin/lcp" issuer serve --data "$work/issuer" --listen 127.0.0.1:0 > "$work/issuer.out" 2>/dev/null &
issuer=$(wait_line "$work/issuer.out")
"$bin/storage-agent" init --data "$work/agent" --issuer "$issuer" --capacity $(( 2 * (writes + 16) << 20 )) --read-per-kib 1 --write-per-kib 1 >/dev/null 2>&1
# READ_CACHE_BYTES=0 measures reads from disk (the page cache) without the hot-object cache.
[ -n "${READ_CACHE_BYTES:-}" ] && sed -i "s/^read_cache_bytes = .*/read_cache_bytes = $READ_CACHE_BYTES/" "$work/agent/config.toml"
RUST_LOG=warn "$bin/storage-agent" serve --data "$work/agent" --listen 127.0.0.1:0 > "$work/agent.out" 2>/dev/null &
agent_pid=$!
agent=$(wait_line "$work/agent.out")
setup=$("$bin/examples/bench_setup" "$issuer" "$work/issuer/identity.key" "$agent" "$writes")
token_url=$(echo "$setup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_url"])')

# nginx serving the same 1 MiB from a file.
mkdir -p "$work/www" "$work/nginx-tmp"
chmod 755 "$work" "$work/www"  # nginx workers run as an unprivileged user
python3 - "$work/www/obj-0" <<'PY'
import sys
open(sys.argv[1], "wb").write(bytes((i * 31 % 251) for i in range(1 << 20)))
PY
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp; proxy_temp_path $work/nginx-tmp; fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp; scgi_temp_path $work/nginx-tmp;
  sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:18089; root $work/www; }
}
CONF
chmod 644 "$work/www/obj-0"
nginx -c "$work/nginx.conf"
sleep 0.5
cmp <(curl -s "$token_url") "$work/www/obj-0" && echo "token and nginx serve identical bytes" >&2

run_wrk() { wrk -t2 -c16 -d"${secs}s" --latency "$1" 2>&1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:18089/obj-0")
[ "$status" = 200 ] || { echo "nginx answers $status: $(cat "$work/nginx-error.log")" >&2; exit 1; }
[ -n "${PERF_AGENT:-}" ] && { perf record -F 499 -g -p "$agent_pid" -o "$PERF_AGENT" >/dev/null 2>&1 & }
agent_out=$(run_wrk "$token_url")
[ -n "${PERF_AGENT:-}" ] && { pkill -INT -f "perf record -F 499" || true; sleep 1; }
nginx_out=$(run_wrk "http://127.0.0.1:18089/obj-0")
peak_kib=$(awk '/VmHWM/ {print $2}' /proc/$agent_pid/status)
contract=$(echo "$setup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["contract"])')
echo "== setup: $setup"
echo "== agent token reads (16 connections, ${secs}s):"; echo "$agent_out"
echo "== nginx (16 connections, ${secs}s):"; echo "$nginx_out"
echo "== agent peak RSS: ${peak_kib} KiB"
"$bin/storage-agent" status --data "$work/agent" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); c=s["contracts"][0]; print("== charged reads: contract credit now", c["credit"], "paid", c["paid"])'
