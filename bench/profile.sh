#!/usr/bin/env bash
# Profiles one proxy under one load, for the Findings of docs/BENCHMARKS.md.
#
#   bench/profile.sh stat [relay|nginx|haproxy] [LOAD]
#       perf stat (task clock, context switches) and syscalls per message of
#       the proxy during LOAD (default echo: closed loop, 64 B × 100 sessions;
#       paced: 1,000 sessions × 64 B every 100 ms; handshake: 64 loops of
#       open, one message, close)
#   bench/profile.sh record [LOAD]
#       perf record of the relay under LOAD: where its CPU goes
#
# SET=one profiles the one-worker configuration (default: each at its defaults).
#   bench/profile.sh heap [SESSIONS]
#       heaptrack of `ecdn-console serve` holding SESSIONS idle sessions
#       (default 3000): the allocation sites of what an idle session keeps
#
# Same loopback setup as bench/compare.sh (bench/lib.sh); other ports, so
# the two can never collide. Results land in target/bench/*-profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-stat}
MODE=profile
: "${ORIGIN_PORT:=19101}" "${NGINX_PORT:=19181}" "${HAPROXY_PORT:=19182}" "${RELAY_PORT:=19183}"
: "${WINDOW:=5}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

install_missing
build
command -v perf >/dev/null || { apt-get install -y -q linux-perf >&2; }
start_origin

# Starts LOAD ($2, default echo) against $1 in the background; returns once
# its sessions are open (the window then measures steady state only).
echo_load() {
    local args
    case ${2:-echo} in
    echo) args=(--mode echo --size 64 --sessions 100) ;;
    paced) args=(--mode paced --interval-ms 100 --size 64 --sessions 1000) ;;
    handshake) args=(--mode handshake --size 64) ;;
    *) echo "unknown load $2 (echo, paced, handshake)" >&2; exit 2 ;;
    esac
    "$LOAD" "$(url_of "$1")" --host "$HOST" "${args[@]}" \
        --duration "$((WINDOW + 4))" --ready-line --json >"$OUT/load-$1.json" 2>"$OUT/load-$1.err" &
    LOAD_PID=$!
    STARTED_PIDS+=("$LOAD_PID")
    until grep -q '^ready:' "$OUT/load-$1.err" 2>/dev/null; do sleep 0.1; done
    sleep 1
}

case $WHAT in
stat)
    target=${2:-relay}
    start_proxies 120 "${SET:-defaults}"
    pid=$(pid_of "$target")
    echo_load "$target" "${3:-echo}"
    perf stat -e task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter \
        -p "$pid" -- sleep "$WINDOW" 2>"$OUT/perf-stat-$target.txt"
    # Which syscalls: strace slows the proxy down, but the mix per message holds.
    timeout 3 strace -c -f -p "$pid" -o "$OUT/strace-$target.txt" 2>/dev/null || true
    wait "$LOAD_PID"
    rate=$(jq .messages_per_s "$OUT/load-$target.json")
    cat "$OUT/perf-stat-$target.txt"
    awk -v rate="$rate" -v window="$WINDOW" -v target="$target" '
        /raw_syscalls:sys_enter/ { gsub(",", "", $1); sys = $1 }
        /context-switches/ { gsub(",", "", $1); cs = $1 }
        /task-clock/ { gsub(",", "", $1); ms = $1 }
        END {
            msgs = rate * window
            printf "%s: %.0f round trips/s; per round trip: %.2f syscalls, %.3f context switches, %.2f µs CPU\n",
                target, rate, sys / msgs, cs / msgs, ms * 1000 / msgs
        }' "$OUT/perf-stat-$target.txt" | tee -a "$OUT/summary.txt"
    echo "syscall mix (strace -c, 3 s):"
    awk 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ { printf "  %-14s %s calls, %s errors\n", $NF, $4, ($5 ~ /^[0-9]+$/ ? $5 : 0) }' \
        "$OUT/strace-$target.txt" | head -8
    ;;
record)
    start_proxies 120 "${SET:-defaults}"
    echo_load relay "${2:-echo}"
    perf record -F 2999 -g -o "$OUT/perf.data" -p "$RELAY_PID" -- sleep "$WINDOW" 2>/dev/null
    wait "$LOAD_PID"
    perf report -i "$OUT/perf.data" --no-children --stdio --sort dso,symbol --percent-limit 0.7 \
        -g none 2>/dev/null | grep -v '^$' | head -60 | tee "$OUT/perf-report.txt"
    ;;
heap)
    sessions=${2:-3000}
    start_proxies 120
    # The relay again, under heaptrack, on the same port with the same config.
    stop_pid "$RELAY_PID"
    heaptrack -o "$OUT/heap" "$CONSOLE" serve --config "$OUT/conf-120-defaults/relay.toml" >/dev/null 2>"$OUT/heaptrack.log" &
    wrapper=$!
    STARTED_PIDS+=("$wrapper")
    wait_port "$RELAY_PORT"
    # heaptrack is a script that runs the relay as its child: stop that one,
    # and let the script finish writing its file.
    RELAY_PID=$(pgrep -P "$wrapper" -x ecdn-console | head -1 || true)
    STARTED_PIDS+=("$RELAY_PID")
    "$LOAD" "$(url_of relay)" --host "$HOST" --mode idle --sessions "$sessions" --concurrency 16 \
        --duration 4 --ready-line --json >"$OUT/load-heap.json" 2>"$OUT/load-heap.err"
    # heaptrack writes its file when the relay exits (SIGTERM: a clean stop).
    stop_pid "$RELAY_PID"
    wait "$wrapper" || true
    file=$(ls "$OUT"/heap*.zst "$OUT"/heap*.gz 2>/dev/null | head -1 || true)
    heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
        --print-leaks 0 --peak-limit 15 --sub-peak-limit 4 >"$OUT/heap-peaks.txt"
    grep -E '^(peak heap memory|total memory|calls to allocation)' "$OUT/heap-peaks.txt" || true
    sed -n '/MOST MEMORY ALLOCATED/,/^$/p;/PEAK MEMORY CONSUMERS/,$p' "$OUT/heap-peaks.txt" | head -120
    echo "sessions held: $(jq .opened "$OUT/load-heap.json")"
    ;;
*)
    echo "usage: $0 stat [relay|nginx|haproxy] [echo|paced|handshake] | record [echo|paced|handshake] | heap [SESSIONS]" >&2
    exit 2
    ;;
esac
log "results in $OUT"
