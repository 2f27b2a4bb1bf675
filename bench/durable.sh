#!/usr/bin/env bash
# The durable-delivery benchmark, one command: bench/durable.sh [seconds] [connections]
# (DRAIN_SECONDS=N builds the drain's backlog for N seconds instead, e.g.
# 120 for about a million pending deliveries)
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
#   (c) PostgreSQL ceiling - pgbench over the same number of connections,
#       each transaction inserting the rows an accepted event becomes (one
#       event row with a ~700-byte body, one delivery row), into the
#       receiver's own tables, on a throwaway cluster started for the run
#   (p) postgres store   - (e) with `store: postgres` on that cluster
# The receivers run with MALLOC_ARENA_MAX=2, as the image (Dockerfile) runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=${2:-32}
DRAIN_SECONDS=${DRAIN_SECONDS:-$SECONDS_PER_RUN}
OUT=bench/out
mkdir -p "$OUT"
WORK=$(mktemp -d)

cargo build --release --quiet -p fusionhook-receiver --bins --examples -p fusionhook-tests --bin loadgen --bin postgres-cluster
BIN=target/release
SINK=127.0.0.1:18401 FLOOR=127.0.0.1:18404 RECV_E=127.0.0.1:18405 ADMIN_E=127.0.0.1:18406 RECV_D=127.0.0.1:18407 ADMIN_D=127.0.0.1:18408
RECV_P=127.0.0.1:18409 ADMIN_P=127.0.0.1:18410

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "bench-admin-token" > "$WORK/token"
receiver_config() { # listen admin store route-extra
  cat <<YAML
listen: "$1"
auth:
  authorization: bench-key
  signature: {algorithms: [HS256], hmacSecret: bench-hmac-secret}
store: $3
admin: {listen: "$2", tokenFile: "$WORK/token"}
routes:
  - name: forward
    events: ["user.create.complete"]
    ack: durable
    http: {method: POST, url: "http://$SINK/sink"}
$4
YAML
}
receiver_config "$RECV_E" "$ADMIN_E" "{type: embedded, path: \"$WORK/e\"}" "" > "$OUT/e.yaml"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
stats() { curl -sf -H "authorization: Bearer bench-admin-token" "http://$1/v1/stats"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

FUSIONHOOK_LOG=warn "$BIN/examples/ceiling" "$SINK" >/dev/null & pids+=($!)
FUSIONHOOK_LOG=warn "$BIN/examples/durability_floor" "$FLOOR" "$WORK" >/dev/null & pids+=($!)
FUSIONHOOK_LOG=warn MALLOC_ARENA_MAX=2 "$BIN/fusionhook-receiver" --config "$OUT/e.yaml" >/dev/null & pids+=($!); E_PID=$!
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
DUE_MS=$(( $(date +%s%3N) + (DRAIN_SECONDS + 2) * 1000 + 5000 ))
receiver_config "$RECV_D" "$ADMIN_D" "{type: embedded, path: \"$WORK/d\"}" "    delayMs: $(( DUE_MS - 1700000000000 ))" > "$OUT/d.yaml"
FUSIONHOOK_LOG=warn MALLOC_ARENA_MAX=2 "$BIN/fusionhook-receiver" --config "$OUT/d.yaml" >/dev/null & pids+=($!); D_PID=$!
wait_port "$RECV_D"
sleep 0.5
D_IDLE=$(rss_kib "$D_PID")
"$BIN/loadgen" --url "http://$RECV_D/events" --seconds "$DRAIN_SECONDS" --connections "$CONNECTIONS" >/dev/null
D_LOADED=$(hwm_kib "$D_PID")
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
kill "$D_PID" "$E_PID" 2>/dev/null || true

# PostgreSQL: a throwaway cluster, the receiver on it, then the ceiling.
"$BIN/postgres-cluster" > "$WORK/pg" & pids+=($!); PG_PID=$!
for _ in $(seq 600); do [[ $(wc -l < "$WORK/pg") -ge 2 ]] && break; sleep 0.1; done
PG_URL=$(sed -n 1p "$WORK/pg"); PG_TOOLS=$(sed -n 2p "$WORK/pg")
[[ -n "$PG_URL" ]] || { echo "the PostgreSQL cluster did not start" >&2; exit 1; }
echo "$PG_URL" > "$WORK/pg-url"
receiver_config "$RECV_P" "$ADMIN_P" "{type: postgres, urlFile: \"$WORK/pg-url\"}" "" > "$OUT/p.yaml"
FUSIONHOOK_LOG=warn MALLOC_ARENA_MAX=2 "$BIN/fusionhook-receiver" --config "$OUT/p.yaml" >/dev/null & pids+=($!); P_PID=$!
wait_port "$RECV_P"
PG_PORT=${PG_URL##*:}; PG_PORT=${PG_PORT%%/*}
cat > "$WORK/ceiling.sql" <<'SQL'
BEGIN;
INSERT INTO fusionhook_events (id, type, received_ms, body)
  VALUES (gen_random_uuid()::text, 'user.create.complete', 0, decode(repeat('7b', 700), 'hex'));
INSERT INTO fusionhook_deliveries (event_id, event_type, route, state, attempts, total_attempts, created_ms,
    round_started_ms, next_attempt_ms, updated_ms, history)
  VALUES (gen_random_uuid()::text, 'user.create.complete', 'pgbench', 2, 0, 0, 0, 0, NULL, 0, '[]');
COMMIT;
SQL
C_OUT=$("$PG_TOOLS/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -c "$CONNECTIONS" -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/ceiling.sql" postgres 2>&1)
C_TPS=$(echo "$C_OUT" | awk '/^tps =/ {print $3; exit}')
C_LAT=$(echo "$C_OUT" | awk '/^latency average =/ {print $4; exit}')
echo "c: tps $C_TPS, latency average $C_LAT ms" >&2
P=$(load "$RECV_P"); echo "p: $P" >&2
P_PEAK=$(hwm_kib "$P_PID")

python3 - "$F" "$E" "$E_STATS" "$E_PEAK" "$BACKLOG" "$DRAIN_MS" "$D_IDLE" "$D_PEAK" "$SECONDS_PER_RUN" "$CONNECTIONS" "$C_TPS" "$C_LAT" "$P" "$P_PEAK" "$D_LOADED" <<'PY'
import json, sys, os, platform
f, e, e_stats = (json.loads(x) for x in sys.argv[1:4])
c_tps, c_lat, p = float(sys.argv[11]), float(sys.argv[12]), json.loads(sys.argv[13])
p_peak = int(sys.argv[14]) / 1024
d_loaded = int(sys.argv[15]) / 1024
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
print(f"| (c) PostgreSQL ceiling: pgbench, event + delivery row per transaction | {c_tps:.0f} | - | - | - | latency average {c_lat:.2f} ms |")
print(row("(p) receiver, postgres store, ack: durable, dispatcher on", p, f"RSS peak {p_peak:.1f} MiB"))
print()
print(f"durable ack e/f: throughput {e['rps'] / max(f['rps'], 1):.2f} (goal >= 0.7), p99 {e['p99_us']/1000:.2f} ms (goal <= 5)")
print(f"postgres p/c: throughput {p['rps'] / max(c_tps, 1):.2f} (goal >= 0.7)")
rate = backlog / max(drain_ms / 1000, 0.001)
print(f"drain: {backlog} pending deliveries in {drain_ms / 1000:.2f} s = {rate:.0f} deliveries/s (goal >= 10000); receiver RSS {d_idle:.1f} MiB idle, peak {d_loaded:.1f} MiB while the backlog was accepted, {d_peak:.1f} MiB by the end of the drain (bound 64)")
PY
