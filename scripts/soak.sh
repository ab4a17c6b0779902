#!/usr/bin/env bash
# A soak (issue 20, item 6): for MINUTES, on one devnet (6 agents and a publisher), run
# together and without pause
#   - backups: a tree that changes every round (a new 1 MiB file, an old one removed),
#     `backup create`, then every third round `backup restore latest` compared with `diff -r`;
#   - views: a 4 MiB content published once, read whole through a viewer's gateway and
#     compared by SHA-256; every tenth read through a new gateway process (a new view bought);
#   - transfers: `lcp bench` rounds of 2,000 transfers by 8 wallets;
# and every 30 s sample each service's resident memory (VmRSS). At the end, with the load
# stopped: the issuer's balances must sum to zero (escrow accounts included) and every
# agent's used bytes must equal the bytes of its object files.
#
# Prints a report (errors per workload, memory at minute 2 and at the end, the checks) and
# writes it with the samples to $OUT (default target/soak/). Exit 0 only with zero errors,
# every service's memory at the end within 20% of its level at minute 2, and both checks.
#
# Usage: scripts/soak.sh MINUTES   (debug binaries unless PROFILE=release; SOAK_CACHES=default
#        keeps the shipped cache sizes, see below)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: scripts/soak.sh MINUTES}
if [ "$minutes" -lt 3 ]; then
  echo "MINUTES must be at least 3 (memory is compared with its level at minute 2)" >&2
  exit 2
fi
profile=${PROFILE:-debug}
out=${OUT:-target/soak}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins >&2
else
  cargo build --workspace --bins >&2
fi
bin=$(pwd)/target/$profile
work=$(mktemp -d)
pids=()
# Each workload runs in a process group of its own (job control), so stopping it stops what
# it started too (a backup, a bench, a curl, the gateway).
stop_workloads() {
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  [ -s "$work/gateway.pid" ] && kill "$(cat "$work/gateway.pid")" 2>/dev/null || true
}
cleanup() {
  stop_workloads
  if [ -n "${devnet_pid:-}" ]; then
    kill -TERM "$devnet_pid" 2>/dev/null || true
    wait "$devnet_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start_devnet() {
  : >"$work/devnet.out"
  "$bin/devnet" up --dir "$work/net" --agents 6 --cdn >"$work/devnet.out" 2>>"$work/devnet.err" &
  devnet_pid=$!
  for _ in $(seq 1 120); do
    grep -q "devnet ready" "$work/devnet.out" 2>/dev/null && break
    kill -0 "$devnet_pid" 2>/dev/null || { cat "$work/devnet.err" >&2; exit 1; }
    sleep 1
  done
  grep -q "devnet ready" "$work/devnet.out" || { echo "the devnet was not ready in 120 s" >&2; exit 1; }
}
# Caches that fill as the soak runs are not leaks, but they would hide one: by default the
# soak runs with small ones (SQLite 512 KiB of pages per connection instead of 64 MiB: a
# service has up to 10 connections, so at most 5 MiB; agents' read cache off instead of
# 64 MiB), so memory that still grows is something else.
# SOAK_CACHES=default keeps the shipped sizes.
if [ "${SOAK_CACHES:-small}" = small ]; then
  export LCP_SQLITE_CACHE_KIB=${LCP_SQLITE_CACHE_KIB:-512}
fi
start_devnet
if [ "${SOAK_CACHES:-small}" = small ]; then
  # The agents' configs exist after the first start: turn their read cache off, start again.
  kill -TERM "$devnet_pid"; wait "$devnet_pid" 2>/dev/null || true
  sed -i 's/^read_cache_bytes = .*/read_cache_bytes = 0/' "$work"/net/agents/agent-*/config.toml
  start_devnet
fi
json() { python3 -c "import json; d=json.load(open('$work/net/devnet.json')); print($1)"; }
market=$(json "d['market']['url']")
issuer=$(json "d['issuer']['url']")
publisher=$(json "d['cdn']['url']")
wallet=$(json "d['wallet']['key']")
publisher_key="$work/net/cdn/identity.key"
deadline=$(( $(date +%s) + minutes * 60 ))
started=$(date +%s)

# Each workload appends one line per operation to $work/<name>.ops: "ok" or "error: ...".
note() { echo "$2" >>"$work/$1.ops"; }

backups() {
  local home="$work/backup-home" src="$work/backup-src" round=0
  export BACKUP_PASSWORD="soak soak soak"
  mkdir -p "$src"
  for i in $(seq 1 20); do head -c $((i * 4096)) /dev/urandom >"$src/small-$i"; done
  "$bin/backup" --config-dir "$home" init --market "$market" --wallet "$wallet" --json \
    >"$work/backup-init.json" 2>"$work/backup-init.err" \
    || { note backups "error: init: $(tail -1 "$work/backup-init.err")"; return; }
  while [ "$(date +%s)" -lt "$deadline" ]; do
    round=$((round + 1))
    head -c 1048576 /dev/urandom >"$src/big-$round"
    rm -f "$src/big-$((round - 4))"
    if "$bin/backup" --config-dir "$home" create "$src" --json >/dev/null 2>"$work/backup.err"; then
      note backups ok
    else
      note backups "error: create round $round: $(tail -1 "$work/backup.err")"
      continue
    fi
    if [ $((round % 3)) -eq 0 ]; then
      rm -rf "$work/restored"
      if "$bin/backup" --config-dir "$home" restore latest --target "$work/restored" --json \
          >/dev/null 2>"$work/restore.err" && diff -r "$src" "$work/restored/$(basename "$src")" >/dev/null; then
        note restores ok
      else
        note restores "error: restore round $round: $(tail -1 "$work/restore.err")"
      fi
    fi
  done
}

start_gateway() {
  [ -n "${gateway_pid:-}" ] && kill "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null || true
  : >"$work/gateway.out"
  "$bin/cdn" gateway --publisher "$publisher" --wallet "$work/viewer.key" --listen 127.0.0.1:0 \
    >"$work/gateway.out" 2>>"$work/gateway.err" &
  gateway_pid=$!
  echo "$gateway_pid" >"$work/gateway.pid"
  for _ in $(seq 1 100); do
    grep -q "listening on" "$work/gateway.out" 2>/dev/null && break
    sleep 0.1
  done
  gateway=$(sed -n 's/^listening on //p' "$work/gateway.out" | head -1)
}

views() {
  head -c $((4 << 20)) /dev/urandom >"$work/content.bin"
  local want
  want=$(sha256sum "$work/content.bin" | cut -d' ' -f1)
  "$bin/cdn" publish "$work/content.bin" --publisher "$publisher" --key "$publisher_key" \
    --piece-kib 256 --replicas 2 --price-per-view 10 --json >"$work/published.json" 2>"$work/publish.err" \
    || { note views "error: publish: $(tail -1 "$work/publish.err")"; return; }
  local content
  content=$(python3 -c "import json; print(json.load(open('$work/published.json'))['content'])")
  "$bin/lcp" keygen --out "$work/viewer.key" >/dev/null
  "$bin/lcp" transfer --key "$wallet" --issuer "$issuer" --to "$("$bin/lcp" id --key "$work/viewer.key")" \
    --amount 100000000 >/dev/null 2>"$work/fund.err" || { note views "error: fund: $(tail -1 "$work/fund.err")"; return; }
  local n=0
  start_gateway
  while [ "$(date +%s)" -lt "$deadline" ]; do
    n=$((n + 1))
    [ $((n % 10)) -eq 0 ] && start_gateway
    got=$(curl -sf -m 60 "$gateway/v/$content" | sha256sum | cut -d' ' -f1) || got="curl failed"
    if [ "$got" = "$want" ]; then note views ok; else note views "error: view $n: hash $got"; fi
  done
}

transfers() {
  local issuer_key="$work/net/issuer/identity.key"
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if "$bin/lcp" bench --issuer "$issuer" --key "$issuer_key" --clients 8 --transfers 2000 --json \
        >"$work/bench.json" 2>"$work/bench.err"; then
      note transfers ok
    else
      note transfers "error: bench: $(tail -1 "$work/bench.err")"
    fi
  done
}

memory() {
  echo "elapsed_s,service,rss_kib,anon_kib,file_kib" >"$out/memory.csv"
  while [ "$(date +%s)" -lt "$deadline" ]; do
    local t=$(( $(date +%s) - started ))
    python3 - "$work/net/devnet.json" "$t" "$work/gateway.pid" >>"$out/memory.csv" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
services = [("issuer", d["issuer"]), ("market", d["market"]), ("cdn", d["cdn"])]
services += [(f"agent-{i}", a) for i, a in enumerate(d["agents"])]
for name, s in services:
    # VmRSS, and its two parts: anonymous memory (the heap, stacks: where a leak shows) and
    # pages of mapped files (the binary's code, faulted in as new paths first run).
    kib = {"VmRSS:": 0, "RssAnon:": 0, "RssFile:": 0}
    try:
        for line in open(f"/proc/{s['pid']}/status"):
            field = line.split(":")[0] + ":"
            if field in kib:
                kib[field] = int(line.split()[1])
    except OSError:
        pass
    print(f"{sys.argv[2]},{name},{kib['VmRSS:']},{kib['RssAnon:']},{kib['RssFile:']}")
PY
    sleep 30
  done
}

# A workload that stops before the deadline (an unexpected failure) is an error too.
run_workload() {
  local name=$1
  set +e
  "$name"
  local code=$?
  [ "$(date +%s)" -lt "$deadline" ] && note "$name" "error: the $name workload stopped early (exit $code)"
  return 0
}
# Job control: each background workload gets a process group of its own.
set -m
for w in backups views transfers memory; do
  run_workload "$w" &
  pids+=($!)
done
set +m
echo "soaking for $minutes minutes ($profile binaries, ${SOAK_CACHES:-small} caches); samples in $out/memory.csv" >&2
for p in "${pids[@]}"; do wait "$p" || true; done
stop_workloads
pids=()

# The checks, with the load stopped (the agents' redemptions and sweeps settle first).
sleep 5
"$bin/lcp" balance --key "$wallet" --issuer "$issuer" >/dev/null 2>&1 || true
kill -TERM "$devnet_pid" 2>/dev/null || true
wait "$devnet_pid" 2>/dev/null || true
devnet_pid=""
python3 - "$work" "$out" "$minutes" <<'PY'
import csv, glob, json, os, sqlite3, sys
work, out, minutes = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [f"{minutes} minutes, caches {os.environ.get('SOAK_CACHES', 'small')}"]
ok = True
for name in ["backups", "restores", "views", "transfers"]:
    ops = open(f"{work}/{name}.ops").read().splitlines() if os.path.exists(f"{work}/{name}.ops") else []
    errors = [o for o in ops if o != "ok"]
    lines.append(f"{name}: {len(ops) - len(errors)} ok, {len(errors)} errors")
    lines += ["  " + e for e in errors[:5]]
    if errors or not ops:
        ok = False
rows = list(csv.DictReader(open(f"{out}/memory.csv")))
by = {}
for r in rows:
    by.setdefault(r["service"], []).append(
        (int(r["elapsed_s"]), int(r["rss_kib"]), int(r["anon_kib"]), int(r["file_kib"])))
if not by:
    lines.append("memory: no samples")
    ok = False
lines.append("resident memory (MiB): at minute 2 -> at the end (change) [anonymous; file pages]")
for name, samples in sorted(by.items()):
    _, at2, anon2, file2 = min(samples, key=lambda s: abs(s[0] - 120))
    _, end, anon_end, file_end = samples[-1]
    change = (end - at2) / at2 * 100 if at2 else float("inf")
    within = abs(change) <= 20
    ok &= within
    lines.append(
        f"  {name}: {at2 / 1024:.1f} -> {end / 1024:.1f} ({change:+.1f}%) "
        f"[{anon2 / 1024:.1f} -> {anon_end / 1024:.1f}; {file2 / 1024:.1f} -> {file_end / 1024:.1f}]"
        f"{'' if within else '  OVER 20%'}")
db = sqlite3.connect(f"{work}/net/issuer/issuer.sqlite")
total, accounts = db.execute("SELECT COALESCE(SUM(balance), 0), COUNT(*) FROM accounts").fetchone()
lines.append(f"ledger: {accounts} accounts, balances sum to {total}")
ok &= total == 0
for agent in sorted(glob.glob(f"{work}/net/agents/agent-*")):
    conn = sqlite3.connect(f"{agent}/agent.sqlite")
    (used,) = conn.execute("SELECT COALESCE(SUM(used_bytes), 0) FROM contracts").fetchone()
    (rows_bytes,) = conn.execute("SELECT COALESCE(SUM(size), 0) FROM objects").fetchone()
    # Staging files of writes in flight (`#` in the name) are not objects.
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(f"{agent}/objects") for f in fs if "#" not in f)
    same = used == rows_bytes == disk
    ok &= same
    lines.append(f"{os.path.basename(agent)}: used {used} bytes, objects {rows_bytes} in rows, {disk} on disk{'' if same else '  DIFFERENT'}")
lines.append("verdict: " + ("pass" if ok else "FAIL"))
report = "\n".join(lines)
open(f"{out}/report.txt", "w").write(report + "\n")
print(report)
sys.exit(0 if ok else 1)
PY
