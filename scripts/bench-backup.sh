#!/usr/bin/env bash
# Reproduces the backup figures in docs/BENCHMARKS.md: backup and restore of one tree by the
# `backup` CLI to a 6-agent devnet (4 data + 2 parity shards, every write and read paid through
# LCP) and by restic to a local repository, side by side: MB/s and peak RSS.
# Needs restic (Debian package: apt-get install -y restic) and GNU time (apt-get install -y time).
# Usage: scripts/bench-backup.sh [TREE=/usr/lib/x86_64-linux-gnu]
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${1:-/usr/lib/x86_64-linux-gnu}
command -v restic >/dev/null && [ -x /usr/bin/time ] || { echo "needs restic and GNU time: apt-get install -y restic time" >&2; exit 1; }
cargo build --release --workspace --bins >&2
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
mb=$(python3 -c "print(round($bytes/1e6,1))")
echo "== tree: $tree, $mb MB"

"$bin/devnet" up --dir "$work/net" --agents 6 > "$work/devnet.out" 2> "$work/devnet.err" &
for _ in $(seq 600); do grep -q "devnet ready" "$work/devnet.out" 2>/dev/null && break; sleep 0.1; done
market=$(python3 -c "import json; print(json.load(open('$work/net/devnet.json'))['market']['url'])")
export BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench
"$bin/backup" --config-dir "$work/cfg" init --market "$market" --wallet "$work/net/wallet.key" \
    --slot-bytes $(( bytes / 2 + (256 << 20) )) >/dev/null

measure() { # label, command...: prints seconds and peak RSS (KiB)
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r secs kib < "$work/time"
  python3 -c "print(f'$label: {float($secs):.1f} s, {$bytes/1e6/max(float($secs),0.001):.1f} MB/s, peak RSS {int($kib)/1024:.0f} MiB')"
}
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure "backup create (devnet, 4+2)" "$bin/backup" --config-dir "$work/cfg" create "$tree" --json
cp "$work/out" "$work/create.json"
restic init --repo "$work/restic" >/dev/null 2>&1
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure "restic backup (local)" restic --repo "$work/restic" backup "$tree" --quiet
measure "backup restore (devnet)" "$bin/backup" --config-dir "$work/cfg" restore latest --target "$work/r1" --json
measure "restic restore (local)" restic --repo "$work/restic" restore latest --target "$work/r2" --quiet
name=$(basename "$tree")
diff -r "$work/r1/$name" "$tree" >/dev/null 2>&1 && echo "backup restore identical to the source" || echo "backup restore DIFFERS from the source"
echo "== backup create summary: $(cat "$work/create.json")"
