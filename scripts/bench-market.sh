#!/usr/bin/env bash
# Reproduces the market-at-scale figures in docs/BENCHMARKS.md (issue 14, step 1). For each
# backend (SQLite, then PostgreSQL in a throw-away schema, skipped when unreachable) and each
# size N, a fresh `market serve` (its defaults: probes every 60 s, the network rule on) is loaded
# by `market bench`: N synthetic agents fill the book with signed offers (their endpoints
# answered by the bench's stand-in on loopback), then heartbeats at N/60 per second go on while
# CONCURRENCY clients ask for MATCHES matches (k = 4..30, targets 1e-3..1e-9), for at most
# SECONDS_MAX seconds.
# Prints a Markdown table, a row per run, on stdout; each run's whole JSON report (and the
# market's peak RSS) on stderr.
# Usage: scripts/bench-market.sh [AGENTS...]            (default: 1000 10000)
# Env: MATCHES (40), CONCURRENCY (2), SECONDS_MAX (180), FILL_S_MAX (300), K_MAX (30: the
#      largest k among the match shapes; 10 keeps k = 4, 10 and 6 only), BACKENDS
#      ("sqlite postgres"; "postgres2" runs two market processes on one PostgreSQL, a bench
#      process against each with half the agents, heartbeats and matches), BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test),
#      HEARTBEATS_PER_S (default N/60: every agent once a minute), PERF_DIR (record a perf
#      profile of each market process there; needs perf), REPUTATIONS (set: after the fill,
#      every agent gets a synthetic reputation, `market bench --reputations-in`),
#      CHECK_SELECTION (a number of restarts: after the run, `market check-selection` compares
#      each shape on pre-selected candidates with a long search over the whole book; on stderr).
# What one market absorbs (no matches: the measured phase is the bench's --seconds-min, 10 s):
#   MATCHES=0 HEARTBEATS_PER_S=6000 scripts/bench-market.sh 10000
# and two markets on one PostgreSQL:
#   MATCHES=0 HEARTBEATS_PER_S=6000 BACKENDS=postgres2 scripts/bench-market.sh 10000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${*:-1000 10000}
matches=${MATCHES:-40}
concurrency=${CONCURRENCY:-2}
seconds_max=${SECONDS_MAX:-180}
k_max=${K_MAX:-30}
heartbeats=()
[ -n "${HEARTBEATS_PER_S:-}" ] && heartbeats=(--heartbeats-per-s "$HEARTBEATS_PER_S")
fill_s_max=${FILL_S_MAX:-300}
backends=${BACKENDS:-sqlite postgres}
pg=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -p market >&2
bin=target/release/market
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

summary() { # label, the bench's JSON, peak RSS in KiB, the market's /metrics text
  python3 - "$1" "$2" "$3" "${4:-}" <<'PY'
import json, re, sys
label, r, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3] or 0)
metrics = sys.argv[4]
def phase(kind, name):
    m = re.search(r'market_match_phase%s_total\{phase="%s"\} ([0-9.e+-]+)' % (kind, name), metrics)
    return float(m.group(1)) if m else 0.0
phases = " / ".join(f"{1000 * phase('_seconds', p) / max(phase('s', p), 1):.2f}"
                    for p in ("refresh", "refresh_wait", "refresh_db", "scan", "select", "recheck"))
f, h, m = r["fill"], r["steady"]["heartbeats"], r["steady"]["matches"]
k10 = next((s for s in m["shapes"] if s["shape"]["data_shards"] == 10), None)
errs = {**{"fill " + k: v for k, v in f["errors"].items()},
        **{"hb " + k: v for k, v in h["errors"].items()},
        **{"match " + k: v for k, v in m["errors"].items()}}
ml = m["latency"]
print(f"| {label} | {f['accepted']}/{f['posted']} at {f['offers_per_s']:.0f}/s "
      f"(p50 {f['latency']['p50_ms']:.0f} / p99 {f['latency']['p99_ms']:.0f} ms) "
      f"| {h['per_s']:.0f}/s of {h['target_per_s']:.0f}/s, {h['skipped_behind']} skipped "
      f"(p50 {h['latency']['p50_ms']:.1f} / p99 {h['latency']['p99_ms']:.1f} ms) "
      f"| {m['met']}/{m['requested']} met, {m['per_s']:.2f}/s, {m['cut_at_deadline']} cut "
      f"| {ml['p50_ms']:.0f} / {ml['p90_ms']:.0f} / {ml['p99_ms']:.0f} / {ml['max_ms']:.0f} "
      f"| {(k10['latency']['p50_ms'] if k10 else 0):.0f} / {(k10['latency']['max_ms'] if k10 else 0):.0f} "
      f"| {phases} | {rss // 1024} MiB | {errs or 'none'} |")
PY
}

run() { # label, agents, extra `market serve` arguments...
  local label=$1 n=$2; shift 2
  local data="$work/$label-$n"
  "$bin" serve --data "$data" --listen 127.0.0.1:0 "$@" > "$data.out" 2> "$data.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$data.out" 2>/dev/null && break; sleep 0.1; done
  local url; url=$(sed -n 's/^listening on //p' "$data.out")
  [ -n "$url" ] || { echo "market for $label did not start: $(cat "$data.err")" >&2; return 1; }
  local perf_pid=
  if [ -n "${PERF_DIR:-}" ]; then
    mkdir -p "$PERF_DIR"
    perf record -F 199 -g -p "$pid" -o "$PERF_DIR/market-$label-$n.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local out database="$data/market.sqlite" db_args=()
  [ "${1:-}" = --database ] && database=$2
  [ "${1:-}" = --database ] && db_args=(--database "$2")
  local reputations=()
  [ -n "${REPUTATIONS:-}" ] && reputations=(--reputations-in "$database")
  # Bounded: the fill, the measured phase, and a margin for the drain and the slowest match.
  out=$(timeout $((fill_s_max + seconds_max + 180)) "$bin" bench --market "$url" --agents "$n" \
    --matches "$matches" --concurrency "$concurrency" --seconds-max "$seconds_max" \
    --fill-s-max "$fill_s_max" --k-max "$k_max" "${heartbeats[@]}" "${reputations[@]}" --json) || { echo "bench $label N=$n failed" >&2; out='{}'; }
  if [ -n "${CHECK_SELECTION:-}" ]; then
    echo "check-selection $label N=$n:" >&2
    "$bin" check-selection --data "$data" "${db_args[@]}" --k-max "$k_max" \
      --restarts "${CHECK_SELECTION}" >&2 || echo "check-selection failed" >&2
  fi
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  local metrics; metrics=$(curl -s --max-time 10 "$url/metrics" || true)
  [ "$out" != '{}' ] && summary "$label N=$n" "$out" "$rss" "$metrics"
  printf '%s\t%s\t{"market_peak_rss_kib": %s}\n' "$label-$n" "$out" "$rss" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

start_market() { # data dir, extra `market serve` arguments...; sets $market_pid and $market_url
  local data=$1; shift
  "$bin" serve --data "$data" --listen 127.0.0.1:0 "$@" > "$data.out" 2> "$data.err" &
  market_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$data.out" 2>/dev/null && break; sleep 0.1; done
  market_url=$(sed -n 's/^listening on //p' "$data.out")
  [ -n "$market_url" ] || { echo "market in $data did not start: $(cat "$data.err")" >&2; return 1; }
}

run_pair() { # agents, database URL: two markets on one PostgreSQL, a bench against each
  local n=$1 url=$2 half=$(( $1 / 2 )) pids=() urls=() benches=()
  for i in 1 2; do
    start_market "$work/pair-$i-$n" --database "$url" || return 1
    pids+=("$market_pid"); urls+=("$market_url")
  done
  local hb=()
  [ -n "${HEARTBEATS_PER_S:-}" ] && hb=(--heartbeats-per-s $(( HEARTBEATS_PER_S / 2 )))
  # Each bench brings its own agents (seed 1 and 2) to its own market; both books are one.
  for i in 1 2; do
    timeout $((fill_s_max + seconds_max + 180)) "$bin" bench --market "${urls[$((i - 1))]}" \
      --agents "$half" --seed "$i" --matches $(( matches / 2 )) --concurrency "$concurrency" \
      --seconds-max "$seconds_max" --fill-s-max "$fill_s_max" --k-max "$k_max" "${hb[@]}" \
      --json > "$work/pair-$i-$n.json" &
    benches+=("$!")
  done
  wait "${benches[@]}" || echo "a bench of the pair N=$n failed" >&2
  for i in 1 2; do
    local rss out
    rss=$(awk '/VmHWM/ {print $2}' "/proc/${pids[$((i - 1))]}/status")
    out=$(cat "$work/pair-$i-$n.json")
    local metrics; metrics=$(curl -s --max-time 10 "${urls[$((i - 1))]}/metrics" || true)
    [ -n "$out" ] && summary "postgres, market $i of 2, N=$n ($half via each)" "$out" "$rss" "$metrics"
    printf '%s\t%s\t{"market_peak_rss_kib": %s}\n' "pair-$i-$n" "$out" "$rss" >&2
  done
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}

echo "| run | fill (first offers) | heartbeats | matches | match p50 / p90 / p99 / max ms | k=10 1e-6 p50 / max ms | mean ms refresh (turn wait, db) / scan / select / recheck | market RSS | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
for backend in $backends; do
  for n in $sizes; do
    case $backend in
      sqlite) run sqlite "$n" ;;
      postgres|postgres2)
        if command -v psql >/dev/null && psql "$pg" -Atc 'select 1' >/dev/null 2>&1; then
          schema="bench_market_$(date +%s%N)"
          psql "$pg" -qc "CREATE SCHEMA $schema" >/dev/null
          if [ "$backend" = postgres ]; then
            run postgres "$n" --database "$pg?options=-csearch_path%3D$schema" || true
          else
            run_pair "$n" "$pg?options=-csearch_path%3D$schema" || true
          fi
          psql "$pg" -qc "DROP SCHEMA $schema CASCADE" >/dev/null
        else
          echo "PostgreSQL at $pg unreachable: skipped" >&2
        fi ;;
      *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
  done
done
