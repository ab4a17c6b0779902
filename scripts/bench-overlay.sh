#!/usr/bin/env bash
# Reproduces the overlay figures in docs/BENCHMARKS.md (issue 18), in release builds:
# 1. the simulated 1,000-peer network (the peer's own decision code, in process) against TTL
#    flooding at the same TTL, for policies 1 to 3 and TTLs 4 and 8;
# 2. solicitations per second one `peer` process answers (BUYERS buyers at once, paid ahead,
#    SOLICITATIONS each, SQLite, the load generator on the same machine).
# Usage: scripts/bench-overlay.sh     Env: BUYERS (16), SOLICITATIONS (500 per buyer)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p overlay --bin peer
for hops in 8 4; do
  for policy in 1 2 3; do
    echo "== simulate --peers 1000 --degree 4 --documents 100 --searches 1000 --hops $hops --policy $policy"
    target/release/peer simulate --hops "$hops" --policy "$policy"
  done
done
export OVERLAY_BENCH_BUYERS=${BUYERS:-16} OVERLAY_BENCH_SOLICITATIONS=${SOLICITATIONS:-500}
cargo test --release -p overlay --test bench -- --ignored --nocapture 2>&1 \
  | grep -oE '\{"buyers".*\}|test result.*|panicked.*'
