#!/usr/bin/env bash
# Reproduces the cdn figures in docs/BENCHMARKS.md: a ~20 MB H.264 video streamed through the
# viewer gateway from a 6-agent devnet (pieces of 1 MiB on 2 agents each), side by side with
# nginx serving the same file on loopback. Per run: time to first byte and throughput, cold
# (a new gateway: manifest, view purchase over LCP, instructions, pieces from the agents) and
# warm (the same gateway again: pieces from its memory). The cold runs are made twice: with the
# view bought by payword (the default; the wallet's chain is bought by the first run and reused
# by the others, as a viewer's would be) and by LCP transfer (CDN_PAYWORDS=0, the way before
# paywords). Gateway and publisher both see CDN_PAYWORDS from the environment of the run.
# Also per run, cold: the first byte of the video itself (a new gateway asked for byte 0 only:
# curl's time to first byte above counts the response's headers, which the gateway sends once
# the view is bought, before its first piece has arrived). GATEWAY_BIN runs another build's
# `cdn` as the gateway (to compare builds in alternating runs).
# Needs ffmpeg, nginx and curl (Debian packages: apt-get install -y ffmpeg nginx-light curl).
# Usage: scripts/bench-cdn.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
for t in ffmpeg nginx curl; do command -v $t >/dev/null || { echo "needs $t: apt-get install -y ffmpeg nginx-light curl" >&2; exit 1; }; done
cargo build --release --workspace --bins >&2
bin=$PWD/target/release
gwbin=${GATEWAY_BIN:-$bin/cdn}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; sleep 1; rm -rf "$work"' EXIT
wait_line() { for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && break; sleep 0.05; done; }

ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 40 -pix_fmt yuv420p \
  -c:v libx264 -preset ultrafast -b:v 4M -maxrate 4M -bufsize 8M -movflags +faststart "$work/video.mp4"
size=$(stat -c %s "$work/video.mp4")
echo "video: $size bytes" >&2

"$bin/devnet" up --dir "$work/net" --cdn > "$work/devnet.out" 2>&1 &
wait_line "$work/devnet.out" "devnet ready"
grep -q "devnet ready" "$work/devnet.out" || { cat "$work/devnet.out" >&2; exit 1; }
publisher=$(python3 -c "import json;print(json.load(open('$work/net/devnet.json'))['cdn']['url'])")
content=$("$bin/cdn" publish "$work/video.mp4" --publisher "$publisher" --key "$work/net/cdn/identity.key" \
  --replicas 2 --price-per-view 100 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["content"])')

mkdir -p "$work/www" "$work/nginx-tmp"
chmod 755 "$work" "$work/www"
cp "$work/video.mp4" "$work/www/video.mp4"; chmod 644 "$work/www/video.mp4"
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
  types { video/mp4 mp4; }
  server { listen 127.0.0.1:18090; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf"
sleep 0.5

measure() { curl -s -o "$2" -w '%{time_starttransfer} %{time_total}\n' "$1"; }
results=$work/results.txt
: > "$results"
# One chain bought ahead (by a gateway run not measured), so every measured payword run
# finds one in the wallet.
RUST_LOG=warn "$gwbin" gateway --listen 127.0.0.1:0 --publisher "$publisher" --wallet "$work/net/wallet.key" > "$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!; wait_line "$work/gw.out" "listening on"
curl -s -o /dev/null "$(sed -n 's/^listening on //p' "$work/gw.out")/v/$content"
kill $gw_pid; wait $gw_pid 2>/dev/null || true
for r in $(seq "$runs"); do
  CDN_PAYWORDS=0 RUST_LOG=warn "$gwbin" gateway --listen 127.0.0.1:0 --publisher "$publisher" --wallet "$work/net/wallet.key" > "$work/gw.out" 2>"$work/gw.err" &
  gw_pid=$!
  wait_line "$work/gw.out" "listening on"
  gw=$(sed -n 's/^listening on //p' "$work/gw.out")
  transfer_cold=$(measure "$gw/v/$content" /dev/null)
  kill $gw_pid; wait $gw_pid 2>/dev/null || true
  RUST_LOG=warn "$gwbin" gateway --listen 127.0.0.1:0 --publisher "$publisher" --wallet "$work/net/wallet.key" > "$work/gw.out" 2>"$work/gw.err" &
  gw_pid=$!
  wait_line "$work/gw.out" "listening on"
  gw=$(sed -n 's/^listening on //p' "$work/gw.out")
  cold=$(measure "$gw/v/$content" "$work/cold.out")
  cmp -s "$work/cold.out" "$work/video.mp4" || { echo "the cold stream differs from the file" >&2; exit 1; }
  warm=$(measure "$gw/v/$content" /dev/null)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$gw_pid/status)
  kill $gw_pid; wait $gw_pid 2>/dev/null || true
  nginx_t=$(measure "http://127.0.0.1:18090/video.mp4" /dev/null)
  RUST_LOG=warn "$gwbin" gateway --listen 127.0.0.1:0 --publisher "$publisher" --wallet "$work/net/wallet.key" > "$work/gw.out" 2>"$work/gw.err" &
  gw_pid=$!
  wait_line "$work/gw.out" "listening on"
  gw=$(sed -n 's/^listening on //p' "$work/gw.out")
  first_byte=$(curl -s -r 0-0 -o /dev/null -w '%{time_total}' "$gw/v/$content")
  kill $gw_pid; wait $gw_pid 2>/dev/null || true
  echo "$cold $warm $nginx_t $rss $transfer_cold $first_byte" >> "$results"
done
python3 - "$results" "$size" <<'PY'
import sys, statistics
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
med = lambda i: statistics.median(r[i] for r in rows)
mb = size / 1e6
print(f"runs: {len(rows)}, video {size} bytes; medians")
print("| | time to first byte | throughput |")
print("|---|---|---|")
print(f"| gateway, cold, view bought by payword | {med(0)*1000:.1f} ms | {mb/med(1):.0f} MB/s |")
print(f"| gateway, cold, view bought by LCP transfer | {med(7)*1000:.1f} ms | {mb/med(8):.0f} MB/s |")
print(f"| gateway, warm | {med(2)*1000:.1f} ms | {mb/med(3):.0f} MB/s |")
print(f"| nginx | {med(4)*1000:.2f} ms | {mb/med(5):.0f} MB/s |")
print(f"gateway, cold, view bought by payword: the video's first byte (byte 0 alone) after {med(9)*1000:.1f} ms")
print(f"cold throughput / nginx: {med(5)/med(1):.2f}x; warm: {med(5)/med(3):.2f}x; gateway peak RSS {med(6)/1024:.0f} MiB")
PY
