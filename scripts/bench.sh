#!/usr/bin/env bash
# Side-by-side benchmark: one Traefik v3.6.12, one echo backend, three routes
# (no middleware / edgepass plugin / ForwardAuth to the daemon's /verify),
# driven by wrk round-robin; plus revocation propagation, edge memory with
# 100,000 revocations, first-seen vs cached token cost under Yaegi and the
# size of a 50-group cookie, churn, daemon capacity and the scale set. About
# 8 minutes on 2 cores.
#
#   scripts/bench.sh                       # defaults
#   DURATION=20s ROUNDS=5 scripts/bench.sh # longer, steadier
#   scripts/bench.sh -memory-revocations=0 # extra flags go to cmd/bench
#
# Results: bench-results/<time>/ (report.txt, results.json, throughput.svg,
# raw wrk output, component logs); bench-results/latest points at the last.
# The last two lines of the output are the throughput ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: wrk not found; installing it from Debian (apt-get install -y wrk)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! $sudo apt-get install -y wrk >&2; then
    $sudo apt-get update >&2
    $sudo apt-get install -y wrk >&2
  fi
  command -v wrk >/dev/null 2>&1 || { echo "bench: could not install wrk; install it and rerun" >&2; exit 1; }
fi

# Traefik, the daemon and the OIDC provider are built or found by cmd/bench
# (harness.Build). Each variable below passes its flag only when set; the
# defaults are bench.DefaultOptions.
args=()
[ -n "${DURATION:-}" ] && args+=("-duration=$DURATION")
[ -n "${WARMUP:-}" ] && args+=("-warmup=$WARMUP")
[ -n "${ROUNDS:-}" ] && args+=("-rounds=$ROUNDS")
[ -n "${THREADS:-}" ] && args+=("-threads=$THREADS")
[ -n "${CONNECTIONS:-}" ] && args+=("-connections=$CONNECTIONS")

cd integration
exec go run ./cmd/bench ${args[@]+"${args[@]}"} "$@"
