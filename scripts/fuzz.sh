#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each with cargo-fuzz (libFuzzer) on
# the stable toolchain (RUSTC_BOOTSTRAP=1), growing the committed corpus in fuzz/corpus/<target>,
# and prints the executions per target. A crash stops the run and leaves its input in
# fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <file>); each one found becomes
# a regression test in the crate it came from.
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; needs `cargo install cargo-fuzz`)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build >&2
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  if ! cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -max_len=65536 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "$target: CRASH (input in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  execs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo "?")
  echo "$target: $execs executions in ${seconds} s, corpus $(ls "corpus/$target" | wc -l) inputs, no crash"
  rm -f "$log"
done
