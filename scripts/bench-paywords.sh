#!/usr/bin/env bash
# Reproduces the payword figures in docs/BENCHMARKS.md (issue 15), in release builds:
# 1. payword payments one storage agent accepts per second (signed charged reads of a 1 KiB
#    object, each carrying one word: request signature, one hash, the word noted durably with
#    the contract's credit) from BUYERS buyers at once, then `lcp bench` transfers per second
#    by the issuer of the same run with as many clients and transfers, one after the other on
#    the same machine (SQLite);
# 2. the issuer commands that settle SETTLE_PAYMENTS one-unit payments to 6 vendors.
# Usage: scripts/bench-paywords.sh     Env: BUYERS (32), PAYMENTS (500 per buyer),
#        SETTLE_PAYMENTS (1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PAYWORD_BENCH_BUYERS=${BUYERS:-32} PAYWORD_BENCH_PAYMENTS=${PAYMENTS:-500}
export PAYWORD_SETTLE_PAYMENTS=${SETTLE_PAYMENTS:-1000000}
cargo test --release -p storage-agent --test paywords -- --ignored --nocapture --test-threads 1 \
  payword_throughput issuer_commands_to_settle 2>&1 | grep -oE '\{"(paywords|payments)".*\}|test result.*|panicked.*'
