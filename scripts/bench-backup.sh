#!/usr/bin/env bash
# Reproduces the backup figures in docs/BENCHMARKS.md: backup and restore of one tree by the
# `backup` CLI to a 6-agent devnet (4 data + 2 parity shards, every write and read paid through
# LCP) and by restic to a local repository, side by side: MB/s and peak RSS. The `backup`
# summaries at the end give the seconds per stage (`stage_seconds`).
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
    --slot-bytes $(( bytes / 3 + (64 << 20) )) >/dev/null

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
cp "$work/out" "$work/restore.json"
measure "restic restore (local)" restic --repo "$work/restic" restore latest --target "$work/r2" --quiet
name=$(basename "$tree")
python3 - "$work/r1/$name" "$tree" <<'PY'
import hashlib, os, stat, sys
a, b = sys.argv[1], sys.argv[2]
def entries(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n); st = os.lstat(p); rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode): out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode): out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), hashlib.sha256(open(p, "rb").read()).hexdigest())
    return out
x, y = entries(a), entries(b)
diff = [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
print(f"restore check: {len(y)} entries in the source, {len(diff)} differ" + (f", first: {diff[0]} {x.get(diff[0])} vs {y.get(diff[0])}" if diff else " (contents, link targets, modes, file mtimes)"))
PY
echo "== backup create summary: $(cat "$work/create.json")"
echo "== backup restore summary: $(cat "$work/restore.json")"
