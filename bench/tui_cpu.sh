#!/usr/bin/env bash
# The console's CPU use in a real terminal (tmux, 80×24) on Live Sessions:
# idle with no sessions, then holding SESSIONS idle sessions (default 9000)
# through its in-process relay. Reports the UI thread and the relay thread
# separately, as % of one core, over WINDOW seconds (default 20).
#
#   bench/tui_cpu.sh [SESSIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=tui
SESSIONS=${1:-9000}
: "${WINDOW:=20}"
: "${ORIGIN_PORT:=19201}" "${RELAY_PORT:=19283}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'tmux kill-session -t ecdn-bench 2>/dev/null || true; cleanup' EXIT
trap 'exit 130' INT TERM

command -v tmux >/dev/null || { apt-get update -q && apt-get install -y -q tmux; }
build
start_origin
relay_config "$OUT/console.toml" 120
tmux new-session -d -s ecdn-bench -x 80 -y 24 "$CONSOLE --config $OUT/console.toml"
wait_port "$RELAY_PORT"
CONSOLE_PID=$(tmux list-panes -t ecdn-bench -F '#{pane_pid}')
tmux send-keys -t ecdn-bench 3
sleep 1

# Ticks of the console's threads: the relay thread is named "relay", the
# UI runs on the main thread (its id is the process id).
thread_ticks() {
    local ui relay
    ui=$(awk '{ print $14 + $15 }' "/proc/$CONSOLE_PID/task/$CONSOLE_PID/stat")
    relay=$(for t in /proc/"$CONSOLE_PID"/task/*; do
        [[ $(cat "$t/comm") == relay ]] && awk '{ print $14 + $15 }' "$t/stat"
    done | head -1)
    echo "$ui ${relay:-0} $(cpu_ticks "$CONSOLE_PID")"
}

measure() {
    local label=$1 a b hz
    hz=$(getconf CLK_TCK)
    read -r -a a <<<"$(thread_ticks)"
    sleep "$WINDOW"
    read -r -a b <<<"$(thread_ticks)"
    awk -v l="$label" -v w="$WINDOW" -v hz="$hz" -v u=$((b[0] - a[0])) -v r=$((b[1] - a[1])) -v t=$((b[2] - a[2])) \
        'BEGIN { printf "%s: UI thread %.2f %%, relay thread %.2f %%, whole process %.2f %% of a core over %d s\n",
                 l, u / hz / w * 100, r / hz / w * 100, t / hz / w * 100, w }' | tee -a "$OUT/summary.txt"
}

measure "no sessions"
"$LOAD" "ws://$LOOP:$RELAY_PORT/bench" --host "$HOST" --mode idle --sessions "$SESSIONS" \
    --duration $((WINDOW + 10)) --ready-line --json >"$OUT/load.json" 2>"$OUT/load.err" &
LOAD_PID=$!
STARTED_PIDS+=("$LOAD_PID")
until grep -q '^ready:' "$OUT/load.err" 2>/dev/null; do sleep 0.2; done
sleep 3
tmux capture-pane -p -t ecdn-bench >"$OUT/screen.txt"
head -3 "$OUT/screen.txt"
measure "$SESSIONS idle sessions"
wait "$LOAD_PID" || true
log "results in $OUT"
