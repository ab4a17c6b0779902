#!/usr/bin/env bash
# Runs schemathesis (property-based API testing from the OpenAPI files in docs/openapi/)
# against every service of a fresh devnet: the issuer, the market, an agent, the publisher, a
# viewer's gateway, an overlay peer and the bank (with its exchange), each twice: as sent (unsigned: the signature check's
# answers) and through scripts/lcp-sign-proxy.py, which signs every request with a fresh key
# (so the fuzzer reaches the parsing and logic behind the check). The check is
# `not_a_server_error`: any 5xx, or a service that stops answering, fails the run. Each run's
# verdict is printed; the full reports go to $OUT (default target/api-fuzz/).
#
# Usage: scripts/api-fuzz.sh [EXAMPLES]   (default 100 examples per operation)
#        ONLY=bank scripts/api-fuzz.sh 50     (one service: issuer, market, agent, publisher,
#                                              gateway, peer or bank)
# Needs: python3 with venv (schemathesis and cryptography are installed into
# target/api-fuzz/venv, pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-100}
out=${OUT:-target/api-fuzz}
schemathesis_version=4.32.5
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ ! -x "$out/venv/bin/schemathesis" ]; then
  echo "installing schemathesis $schemathesis_version into $out/venv" >&2
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q "schemathesis==$schemathesis_version" "cryptography==46.0.3"
fi
st="$out/venv/bin/schemathesis"

cargo build --workspace --bins >&2
bin=target/debug
work=$(mktemp -d)
devnet_pid=""
gateway_pid=""
proxy_pid=""
cleanup() {
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null || true
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  if [ -n "$devnet_pid" ]; then
    kill -TERM "$devnet_pid" 2>/dev/null || true
    wait "$devnet_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/devnet" up --dir "$work/net" --agents 2 --cdn --peers 2 --bank --issuers 2 \
  >"$work/devnet.out" 2>"$work/devnet.err" &
devnet_pid=$!
for _ in $(seq 1 120); do
  grep -q "devnet ready" "$work/devnet.out" 2>/dev/null && break
  if ! kill -0 "$devnet_pid" 2>/dev/null; then
    cat "$work/devnet.err" >&2
    echo "the devnet did not start" >&2
    exit 1
  fi
  sleep 1
done
grep -q "devnet ready" "$work/devnet.out" || { echo "the devnet was not ready in 120 s" >&2; exit 1; }

json() { python3 -c "import json,sys; d=json.load(open('$work/net/devnet.json')); print($1)"; }
issuer=$(json "d['issuer']['url']")
market=$(json "d['market']['url']")
agent=$(json "d['agents'][0]['url']")
publisher=$(json "d['cdn']['url']")
peer=$(json "d['peers'][0]['url']")
bank=$(json "d['bank']['url']")
wallet=$(json "d['wallet']['key']")

"$bin/cdn" gateway --publisher "$publisher" --wallet "$wallet" --listen 127.0.0.1:0 \
  >"$work/gateway.out" 2>"$work/gateway.err" &
gateway_pid=$!
for _ in $(seq 1 60); do
  grep -q "listening on" "$work/gateway.out" 2>/dev/null && break
  sleep 0.5
done
gateway=$(sed -n 's/^listening on //p' "$work/gateway.out" | head -1)
[ -n "$gateway" ] || { cat "$work/gateway.err" >&2; echo "the gateway did not start" >&2; exit 1; }

"$out/venv/bin/python" scripts/lcp-sign-proxy.py "$work/proxy.port" &
proxy_pid=$!
for _ in $(seq 1 50); do [ -s "$work/proxy.port" ] && break; sleep 0.2; done
proxy="http://127.0.0.1:$(cat "$work/proxy.port")"

failed=0
for pair in "issuer=$issuer" "market=$market" "agent=$agent" "publisher=$publisher" \
            "gateway=$gateway" "peer=$peer" "bank=$bank"; do
  name=${pair%%=*}
  url=${pair#*=}
  [ -n "${ONLY:-}" ] && [ "$name" != "$ONLY" ] && continue
  for mode in unsigned signed; do
    # The gateway is the viewer's own and takes no signed requests.
    [ "$name" = gateway ] && [ "$mode" = signed ] && continue
    log="$out/$name-$mode.log"
    proxy_args=()
    [ "$mode" = signed ] && proxy_args=(--proxy "$proxy")
    if "$st" run "docs/openapi/$name.json" --url "$url" "${proxy_args[@]}" \
        --checks not_a_server_error \
        --phases examples,coverage,fuzzing \
        --max-examples "$examples" \
        --workers 1 \
        --request-timeout 40 \
        --suppress-health-check all \
        --no-color >"$log" 2>&1; then
      verdict="no 5xx"
    else
      verdict="FAILURES (see $log)"
      failed=1
    fi
    cases=$(grep -oE "[0-9]+ generated" "$log" | head -1 || true)
    echo "$name ($mode): $verdict; ${cases:-? generated} test cases"
  done
  if ! curl -sf -m 5 "$url/.well-known/lcp" >/dev/null && ! curl -sf -m 5 "$url/" >/dev/null; then
    echo "$name stopped answering" >&2
    failed=1
  fi
done
if grep -q "exited" "$work/devnet.err"; then
  grep "exited" "$work/devnet.err" >&2
  failed=1
fi
exit $failed
