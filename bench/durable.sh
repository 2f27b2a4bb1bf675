#!/usr/bin/env bash
# The durable-delivery benchmark, one command: bench/durable.sh [seconds] [connections]
#
# Measured side by side in one run, on loopback, with the same load generator:
#   (f) durability floor - the serving stack appending each batch of queued
#       bodies to one file with one fdatasync per batch (bench/durability_floor.rs)
#   (e) embedded store   - the receiver, Authorization + HS256 + parse, a fresh
#       event id each time, one `ack: durable` route to a local sink, the
#       dispatcher delivering while the load runs
#   drain                - a backlog of pending deliveries (built with a route
#       whose deliveries all come due at one instant) worked off to a local
#       sink that answers at once: deliveries/s and the receiver's peak RSS
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=${2:-32}
OUT=bench/out
mkdir -p "$OUT"
WORK=$(mktemp -d)

cargo build --release --quiet -p fusionhook-receiver --bins --examples -p fusionhook-tests --bin loadgen
BIN=target/release
SINK=127.0.0.1:18401 FLOOR=127.0.0.1:18404 RECV_E=127.0.0.1:18405 ADMIN_E=127.0.0.1:18406 RECV_D=127.0.0.1:18407 ADMIN_D=127.0.0.1:18408

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "bench-admin-token" > "$WORK/token"
receiver_config() { # listen admin store-dir route-extra
  cat <<YAML
listen: "$1"
auth:
  authorization: bench-key
  signature: {algorithms: [HS256], hmacSecret: bench-hmac-secret}
store: {type: embedded, path: "$3"}
admin: {listen: "$2", tokenFile: "$WORK/token"}
routes:
  - name: forward
    events: ["user.create.complete"]
    ack: durable
    http: {method: POST, url: "http://$SINK/sink"}
$4
YAML
}
receiver_config "$RECV_E" "$ADMIN_E" "$WORK/e" "" > "$OUT/e.yaml"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
stats() { curl -sf -H "authorization: Bearer bench-admin-token" "http://$1/v1/stats"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

FUSIONHOOK_LOG=warn "$BIN/examples/ceiling" "$SINK" >/dev/null & pids+=($!)
FUSIONHOOK_LOG=warn "$BIN/examples/durability_floor" "$FLOOR" "$WORK" >/dev/null & pids+=($!)
FUSIONHOOK_LOG=warn "$BIN/fusionhook-receiver" --config "$OUT/e.yaml" >/dev/null & pids+=($!); E_PID=$!
wait_port "$SINK"; wait_port "$FLOOR"; wait_port "$RECV_E"
sleep 0.5

load() { "$BIN/loadgen" --url "http://$1/events" --seconds "$SECONDS_PER_RUN" --connections "$CONNECTIONS" "${@:2}"; }
F=$(load "$FLOOR"); echo "f: $F" >&2
E=$(load "$RECV_E"); echo "e: $E" >&2
E_PEAK=$(hwm_kib "$E_PID")
E_STATS=$(stats "$ADMIN_E")

# The backlog: accepted while nothing is due yet. The load generator's
# events carry createInstant 1700000000000 (ms): a delay of (due - that)
# makes every delivery come due at `due`, after the load.
DUE_MS=$(( $(date +%s%3N) + (SECONDS_PER_RUN + 2) * 1000 + 5000 ))
receiver_config "$RECV_D" "$ADMIN_D" "$WORK/d" "    delayMs: $(( DUE_MS - 1700000000000 ))" > "$OUT/d.yaml"
FUSIONHOOK_LOG=warn "$BIN/fusionhook-receiver" --config "$OUT/d.yaml" >/dev/null & pids+=($!); D_PID=$!
wait_port "$RECV_D"
sleep 0.5
D_IDLE=$(rss_kib "$D_PID")
load "$RECV_D" >/dev/null
BACKLOG=$(stats "$ADMIN_D" | field pending)
now=$(date +%s%3N)
if (( now >= DUE_MS )); then echo "the backlog came due before the load ended; lower the seconds" >&2; exit 1; fi
sleep "$(python3 -c "print(($DUE_MS - $now) / 1000)")"
start=$(date +%s%3N)
while :; do
  pending=$(stats "$ADMIN_D" | field pending)
  (( pending == 0 )) && break
  sleep 0.05
done
DRAIN_MS=$(( $(date +%s%3N) - start ))
D_PEAK=$(hwm_kib "$D_PID")

python3 - "$F" "$E" "$E_STATS" "$E_PEAK" "$BACKLOG" "$DRAIN_MS" "$D_IDLE" "$D_PEAK" "$SECONDS_PER_RUN" "$CONNECTIONS" <<'PY'
import json, sys, os, platform
f, e, e_stats = (json.loads(x) for x in sys.argv[1:4])
e_peak = int(sys.argv[4]) / 1024
backlog, drain_ms = int(sys.argv[5]), int(sys.argv[6])
d_idle, d_peak = int(sys.argv[7]) / 1024, int(sys.argv[8]) / 1024
secs, conns = sys.argv[9], sys.argv[10]
cpu = next((l.split(':',1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.machine())
print(f"Machine: {os.cpu_count()} cores, {cpu}; {secs} s per run, {conns} connections, loopback.\n")
def row(name, r, extra):
    ok = r["statuses"].get("200", 0)
    return f"| {name} | {r['rps']:.0f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {ok}/{r['requests']} | {extra} |"
print("| server | requests/s | p50 ms | p99 ms | 200s | notes |")
print("|---|---|---|---|---|---|")
print(row("(f) durability floor: append + fdatasync per batch", f, "-"))
print(row("(e) receiver, embedded store, ack: durable, dispatcher on", e, f"RSS peak {e_peak:.1f} MiB; after the run: pending {e_stats['pending']}, delivered {e_stats['delivered']}"))
print()
print(f"durable ack e/f: throughput {e['rps'] / max(f['rps'], 1):.2f} (goal >= 0.7), p99 {e['p99_us']/1000:.2f} ms (goal <= 5)")
rate = backlog / max(drain_ms / 1000, 0.001)
print(f"drain: {backlog} pending deliveries in {drain_ms / 1000:.2f} s = {rate:.0f} deliveries/s (goal >= 10000); receiver RSS {d_idle:.1f} -> peak {d_peak:.1f} MiB (bound 64)")
PY
