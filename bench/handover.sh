#!/usr/bin/env bash
# Live session hand-over under load (DESIGN §7, docs/BENCHMARKS.md): IDLE
# idle sessions and STREAM paced sessions (a 64-byte message every 10 ms
# each) through the release relay, and TAKEOVERS `serve --takeover` rounds
# while they run, each new process taking over from the previous one.
# Prints each hand-over's time (old side: paused to let go; new side:
# connect to running), the paced sessions' worst round trip over the whole
# run, and whether any session was lost; then every round trip slower than
# SLOW_MS (20) with the time it ended, beside when each takeover started.
#   bench/handover.sh            # IDLE=9000 STREAM=20 TAKEOVERS=3 WORKERS=2
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=handover
# shellcheck source=bench/lib.sh
source bench/lib.sh
: "${IDLE:=9000}" "${STREAM:=20}" "${TAKEOVERS:=3}" "${WORKERS:=2}" "${GAP:=4}" "${SLOW_MS:=20}"
bin=target/release/ecdn-console
load=target/release/ecdn-load
cargo build --release -q -p ecdn-console -p ecdn-load
# Two descriptors per session in the relay, one per session in the generator.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
control_relay_config "$dir/relay.toml" 18580 18501 "$dir/relay.sock"
"$bin" origin --listen 127.0.0.1:18501 >/dev/null &
"$bin" serve --config "$dir/relay.toml" --workers "$WORKERS" >"$dir/serve-0.log" &
sleep 1
hold=$(( (TAKEOVERS + 1) * GAP + 10 ))
"$load" ws://127.0.0.1:18580/ --host bench.test --mode idle --sessions "$IDLE" \
    --concurrency 256 --duration "$hold" --ready-line --json >"$dir/idle.json" 2>"$dir/idle.err" &
idle=$!
until grep -q '^ready' "$dir/idle.err" 2>/dev/null; do sleep 0.2; done
echo "idle: $(grep '^ready' "$dir/idle.err")"
"$load" ws://127.0.0.1:18580/ --host bench.test --mode paced --interval-ms 10 --size 64 \
    --sessions "$STREAM" --duration $(( TAKEOVERS * GAP + 4 )) --json --log-slow-ms "$SLOW_MS" \
    >"$dir/paced.json" 2>"$dir/slow.txt" &
paced=$!
sleep 2
for n in $(seq "$TAKEOVERS"); do
    echo "takeover $n: started $(date -u +%H:%M:%S.%3N)"
    "$bin" serve --config "$dir/relay.toml" --workers "$WORKERS" --takeover >"$dir/serve-$n.log" 2>&1 &
    until grep -q ' takeover \| error' "$dir/serve-$n.log" 2>/dev/null; do sleep 0.05; done
    new=$(grep -m1 ' takeover ' "$dir/serve-$n.log" | sed 's/.*takeover *//')
    sleep 0.3
    old=$(grep -m1 ' handover ' "$dir/serve-$((n - 1)).log" | sed 's/.*handover *//')
    echo "takeover $n: new: $new"
    echo "            old: $old"
    sleep "$GAP"
done
wait "$paced"
echo "round trips over $SLOW_MS ms: $(grep -c '^slow' "$dir/slow.txt" || true)"
grep '^slow' "$dir/slow.txt" | sort -k2,2 -g -r | head -10 || true
grep -v '^slow' "$dir/slow.txt" >&2 || true
jq -c '{paced_sessions: .opened, round_trips: .messages, errors: .errors, rtt_p50_ms: .rtt_ms.p50, rtt_p99_ms: .rtt_ms.p99, rtt_max_ms: .rtt_ms.max}' "$dir/paced.json"
wait "$idle" || true
jq -c '{idle_sessions: .opened, closed_before_the_end: ([.idle.closes[]?.count] | add // 0), still_open: .idle.still_open}' "$dir/idle.json"
