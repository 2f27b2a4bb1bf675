#!/usr/bin/env bash
# The receiver benchmark, one command: bench/run.sh [seconds] [connections]
#
# Measures on loopback, in the same run and with the same load generator:
#   (a) ceiling         - the receiver's serving stack with a handler that reads the body and answers 200
#   (b) full path       - Authorization + HS256 signature + parse + dedupe of a fresh event id, no matching route
#   (d) duplicate path  - the same receiver, the same event (id and bytes) every time: FusionAuth's retry
#   (c) with a route    - (b) plus an `http` route that POSTs the event to a local sink
# Every request carries its own HS256 signature over the exact body.
# Prints a Markdown table (requests/s, p50, p99, RSS) and the ratios to (a).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=${2:-16}
OUT=bench/out
mkdir -p "$OUT"

cargo build --release --quiet -p fusionhook-receiver --bins --examples -p fusionhook-tests --bin loadgen
BIN=target/release
CEILING=127.0.0.1:18401 RECV_B=127.0.0.1:18402 RECV_C=127.0.0.1:18403

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat > "$OUT/b.yaml" <<YAML
listen: "$RECV_B"
auth:
  authorization: bench-key
  signature: {algorithms: [HS256], hmacSecret: bench-hmac-secret}
routes:
  - name: deletes-only
    events: ["user.delete"]
    log: {}
YAML
cat > "$OUT/c.yaml" <<YAML
listen: "$RECV_C"
auth:
  authorization: bench-key
  signature: {algorithms: [HS256], hmacSecret: bench-hmac-secret}
routes:
  - name: forward
    events: ["user.create.complete"]
    http:
      method: POST
      url: "http://$CEILING/sink/{{event.user.id}}"
      timeoutMs: 1500
YAML

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

FUSIONHOOK_LOG=warn "$BIN/examples/ceiling" "$CEILING" >/dev/null & pids+=($!); CEILING_PID=$!
FUSIONHOOK_LOG=warn "$BIN/fusionhook-receiver" --config "$OUT/b.yaml" >/dev/null & pids+=($!); B_PID=$!
FUSIONHOOK_LOG=warn "$BIN/fusionhook-receiver" --config "$OUT/c.yaml" >/dev/null & pids+=($!); C_PID=$!
wait_port "$CEILING"; wait_port "$RECV_B"; wait_port "$RECV_C"
sleep 0.5
B_IDLE=$(rss_kib "$B_PID"); C_IDLE=$(rss_kib "$C_PID")

load() { "$BIN/loadgen" --url "http://$1/events" --seconds "$SECONDS_PER_RUN" --connections "$CONNECTIONS" "${@:2}"; }
A=$(load "$CEILING"); echo "a: $A" >&2
B=$(load "$RECV_B"); echo "b: $B" >&2
D=$(load "$RECV_B" --repeat-id); echo "d: $D" >&2
C=$(load "$RECV_C"); echo "c: $C" >&2
B_PEAK=$(hwm_kib "$B_PID"); C_PEAK=$(hwm_kib "$C_PID")

python3 - "$A" "$B" "$D" "$C" "$B_IDLE" "$B_PEAK" "$C_IDLE" "$C_PEAK" "$SECONDS_PER_RUN" "$CONNECTIONS" <<'PY'
import json, sys, platform, os
a, b, d, c = (json.loads(x) for x in sys.argv[1:5])
b_idle, b_peak, c_idle, c_peak = (int(x) / 1024 for x in sys.argv[5:9])
secs, conns = sys.argv[9], sys.argv[10]
def row(name, r, rss):
    ok = r["statuses"].get("200", 0)
    return f"| {name} | {r['rps']:.0f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {ok}/{r['requests']} | {rss} |"
cpu = next((l.split(':',1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.machine())
print(f"Machine: {os.cpu_count()} cores, {cpu}; {secs} s per run, {conns} connections, loopback.\n")
print("| server | requests/s | p50 ms | p99 ms | 200s | receiver RSS MiB (idle -> peak) |")
print("|---|---|---|---|---|---|")
print(row("(a) ceiling: read body, answer 200", a, "-"))
print(row("(b) full path: auth + HS256 + parse + dedupe of a fresh id, no route", b, f"{b_idle:.1f} -> {b_peak:.1f}"))
print(row("(d) duplicate path: (b) with the same event every time", d, "(same process as b)"))
print(row("(c) with a route: (b) + http route to a local sink", c, f"{c_idle:.1f} -> {c_peak:.1f}"))
print()
ratio = lambda x, key: x[key] / max(a[key], 1)
print(f"full path b/a: throughput {ratio(b, 'rps'):.2f} (goal >= 0.85), p99 {ratio(b, 'p99_us'):.2f} (goal <= 1.5)")
print(f"duplicate path d/a: throughput {ratio(d, 'rps'):.2f}, p99 {ratio(d, 'p99_us'):.2f}")
print(f"receiver RSS: idle {b_idle:.1f} MiB (goal <= 20), peak under load {b_peak:.1f} MiB (goal <= 50)")
PY
