#!/usr/bin/env bash
# Reproduces the `lcp bench` figures in docs/BENCHMARKS.md: SQLite and PostgreSQL, each with
# group commit on (the default batch of up to 2048) and off (--batch-max 1), then the batch
# command (`lcp bench --batch 100` and `--batch 1000`, 16 clients, 200,000 transfers).
# SQLite with group commit runs RUNS times in a row (default 3: issue 21's target is met over
# three consecutive runs), each on a fresh issuer. Every line reports the issuer's CPU per
# transfer (from its /metrics process_cpu_seconds_total) and the load generator's own.
# Usage: scripts/bench-lcp.sh [CLIENTS] [TRANSFERS]   (PostgreSQL part needs BENCH_DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/test; it is skipped when unreachable.)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-128}
transfers=${2:-30000}
pg=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -p lcp >&2
bin=target/release/lcp
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # label, extra serve args...  (BENCH_ARGS: extra bench args)
  local label=$1; shift
  local data="$work/$label"
  "$bin" issuer serve --data "$data" --listen 127.0.0.1:0 "$@" > "$work/$label.out" 2> "$work/$label.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/$label.out" 2>/dev/null && break; sleep 0.1; done
  local url; url=$(sed -n 's/^listening on //p' "$work/$label.out")
  [ -n "$url" ] || { echo "issuer for $label did not start: $(cat "$work/$label.err")" >&2; return 1; }
  printf '%s\t' "$label"
  "$bin" bench --issuer "$url" --key "$data/identity.key" --clients "$clients" --transfers "$transfers" ${BENCH_ARGS:-} --json
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for r in $(seq "${RUNS:-3}"); do run "sqlite-group-commit-$r"; done
run sqlite-batch-of-one --batch-max 1
for b in 100 1000; do
  clients=16 transfers=200000 BENCH_ARGS="--batch $b" run "sqlite-batch-command-$b"
done
if command -v psql >/dev/null && psql "$pg" -Atc 'select 1' >/dev/null 2>&1; then
  for mode in group-commit batch-of-one; do
    schema="bench_$(date +%s%N)"
    psql "$pg" -qc "CREATE SCHEMA $schema" >/dev/null
    extra=(); [ "$mode" = batch-of-one ] && extra=(--batch-max 1)
    run "postgres-$mode" --database "$pg?options=-csearch_path%3D$schema" "${extra[@]}"
    psql "$pg" -qc "DROP SCHEMA $schema CASCADE" >/dev/null
  done
  for b in 100 1000; do
    schema="bench_$(date +%s%N)"
    psql "$pg" -qc "CREATE SCHEMA $schema" >/dev/null
    clients=16 transfers=200000 BENCH_ARGS="--batch $b" \
      run "postgres-batch-command-$b" --database "$pg?options=-csearch_path%3D$schema"
    psql "$pg" -qc "DROP SCHEMA $schema CASCADE" >/dev/null
  done
else
  echo "PostgreSQL at $pg unreachable: skipped" >&2
fi
