#!/usr/bin/env bash
# The operator at scale, one command: bench/operator.sh [resources ...] (default: 1000 5000)
#
# Runs end-to-end scenario 7 (tests/tests/e2e.rs) in release mode for each
# count: the Kubernetes API and FusionAuth emulators, the stand-in kubelet
# reporting receivers available without starting them, the real operator
# binary. It creates the resources, waits until every one is Ready, then
# watches one full periodic resync (20 s interval) and prints: time to all
# Ready, reconciles, FusionAuth calls and writes, Kubernetes writes during
# the resync, and the operator's peak RSS. Goals (issue 11): 1,000 Ready in
# <= 30 s, 5,000 in <= 150 s, RSS <= 100 MiB at 5,000, zero writes on resync.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 5000)
cargo test --release --locked -p fusionhook-tests --test e2e --no-run --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for n in "${counts[@]}"; do
  if FUSIONHOOK_SCALE_RESOURCES=$n cargo test --release --locked --quiet -p fusionhook-tests --test e2e scenario_7 -- --nocapture >"$log" 2>&1; then
    grep -E "^scenario 7" "$log"
  else
    echo "scenario 7 with $n resources failed:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
done
