#!/usr/bin/env bash
# The operator at scale, one command: bench/operator.sh [resources ...] (default: 1000 5000)
#
# For each count, on the real control plane (tests/tests/kubernetes.rs:
# etcd, kube-apiserver and kube-controller-manager, the stand-in node
# reporting receiver pods ready without starting them, the operator under
# the chart's ServiceAccount) and then on the emulators (end-to-end
# scenario 7 in tests/tests/e2e.rs, the stand-in kubelet doing the same),
# in release mode, with the real operator binary. It creates the resources, waits until every one is Ready, then
# watches one full periodic resync (20 s interval) and prints: time to all
# Ready, reconciles, FusionAuth calls and writes, Kubernetes writes during
# the resync, and the operator's peak RSS. Goals (issue 11): 1,000 Ready in
# <= 30 s, 5,000 in <= 150 s, RSS <= 100 MiB at 5,000, zero writes on resync.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 5000)
cargo test --release --locked -p fusionhook-tests --test e2e --test kubernetes --no-run --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# run COUNT TEST FILTER PREFIX WHAT: one scenario, its result line.
run() {
  if FUSIONHOOK_SCALE_RESOURCES=$1 cargo test --release --locked --quiet -p fusionhook-tests --test "$2" "$3" -- --nocapture >"$log" 2>&1; then
    grep -E "^$4" "$log"
  else
    echo "$5 with $1 resources failed:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}
for n in "${counts[@]}"; do
  run "$n" kubernetes the_operator_at_scale "operator at scale" "the operator at scale on the real API server"
  run "$n" e2e scenario_7 "scenario 7" "scenario 7"
done
