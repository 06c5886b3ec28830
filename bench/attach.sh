#!/usr/bin/env bash
# Attached consoles on a busy relay (DESIGN §7, docs/BENCHMARKS.md): a
# release `serve` holding IDLE idle sessions; CONSOLES `ecdn-console attach`
# consoles in tmux (80×24) on Live Sessions, refreshing once a second.
# Reports each console's frame time (sample over the control socket + draw,
# p50/p99/max), the relay's control thread CPU (% of a core), and the paced
# round trip of PACED sessions (one 64-byte message every 100 ms each)
# without and with the consoles attached, in interleaved rounds.
#   bench/attach.sh              # IDLE=9000 CONSOLES=2 PACED=500 ROUNDS=2 WINDOW=15
# (9,000 + 500 sessions are 19,000 descriptors in the relay: under a hard
# open-files limit of 20,000, more paced sessions are refused with EMFILE.)
# BURSTS=1 adds a control window per round: CONSOLES processes burning the
# same CPU in the same bursts (bench/cpu_bursts.py) but not attached, to tell
# the consoles' CPU from what the control socket does. BURST_MS sets the
# burst (default 4 ms) and BURST_PERIOD_MS how often (default 333 ms).
# STANDINS=1 adds another: CONSOLES clients asking the relay what `attach`
# asks (bench/control_standin.py) with no table or terminal — the relay's
# side of attaching alone.
# WORKERS=1 runs the relay on one worker, leaving a core to the consoles and
# the generator: the comparison an edge machine with more cores than relay
# workers would see.
# CONSOLE_NICE=0 puts the consoles back at the relay's priority (attach
# lowers its own to nice 10; raising it again needs root or CAP_SYS_NICE).
# CONSOLE_SCHED=idle starts tmux and the consoles under SCHED_IDLE
# (`chrt -i 0`), to tell what the consoles' own CPU does from the relay's.
# PIN=1 splits the CPUs (`taskset`): the data path — the relay's workers,
# the origin and the load generators — on CPU 0; the control socket — the
# relay's control thread and every other thread of it, tmux and the
# consoles — on CPU 1. It tells whether what the control socket does delays
# a frame, or only the CPU that attached consoles take beside the relay.
# PIN=relay keeps the whole relay on CPU 0, its control thread beside the
# workers (as without pinning): what the relay's side of the control socket
# costs the data path, with the consoles' own CPU kept apart — as on a
# machine where systemd's CPUAffinity= pins the relay. The consoles are not
# moved by the script: attach moves itself off a pinned relay's CPUs.
# With BURSTS=1 the bursts then run on CPU 0, the data path's: the control
# that shows the comparison can see a delay.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=attach
# shellcheck source=bench/lib.sh
source bench/lib.sh
: "${IDLE:=9000}" "${CONSOLES:=2}" "${PACED:=500}" "${ROUNDS:=2}" "${WINDOW:=15}" "${CONSOLE_NICE:=}" "${BURSTS:=}" "${WORKERS:=}" "${CONSOLE_SCHED:=}" "${BURST_MS:=4}" "${BURST_PERIOD_MS:=333}" "${STANDINS:=}" "${PIN:=}"
bin=$PWD/target/release/ecdn-console
load=$PWD/target/release/ecdn-load
command -v tmux >/dev/null || { apt-get update -q && apt-get install -y -q tmux; }
if [ -n "$PIN" ]; then
    command -v taskset >/dev/null || { echo "PIN needs taskset (util-linux)" >&2; exit 2; }
    [ "$(nproc)" -ge 2 ] || { echo "PIN needs two CPUs; this machine has $(nproc)" >&2; exit 2; }
fi
cargo build --release -q -p ecdn-console -p ecdn-load
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
dir=$(mktemp -d)
consoles() { for c in $(seq "$CONSOLES"); do tmux kill-session -t "ecdn-attach-$c" 2>/dev/null || true; done; }
trap 'consoles; kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
control_relay_config "$dir/relay.toml" 18680 18601 "$dir/relay.sock"
# Prefixes that put a command on the data path's CPU or the consoles' when
# PIN is set (taskset execs the command: `$!` stays the command's pid).
on_data_path=() beside_consoles=()
[ -n "$PIN" ] && on_data_path=(taskset -c 0) beside_consoles=(taskset -c 1)
"${on_data_path[@]}" "$bin" origin --listen 127.0.0.1:18601 >/dev/null &
"$bin" serve --config "$dir/relay.toml" ${WORKERS:+--workers "$WORKERS"} >"$dir/serve.log" &
relay=$!
sleep 1
if [ -n "$PIN" ]; then
    for t in /proc/"$relay"/task/*; do
        case "$PIN:$(cat "$t/comm")" in relay:* | *:relay-*) cpu=0 ;; *) cpu=1 ;; esac
        taskset -p -c "$cpu" "$(basename "$t")" >/dev/null
    done
fi
# Idle sessions held for every round: three windows, one more each for
# BURSTS and STANDINS, and the pauses between them.
windows=3
[ -n "$BURSTS" ] && windows=$(( windows + 1 ))
[ -n "$STANDINS" ] && windows=$(( windows + 1 ))
hold=$(( ROUNDS * (windows * WINDOW + 15) + 30 ))
"${on_data_path[@]}" "$load" ws://127.0.0.1:18680/ --host bench.test --mode idle --sessions "$IDLE" \
    --concurrency 256 --duration "$hold" --ready-line >/dev/null 2>"$dir/idle.err" &
until grep -q '^ready' "$dir/idle.err" 2>/dev/null; do sleep 0.2; done
echo "idle: $(grep '^ready' "$dir/idle.err")"
control_ticks() {
    local t sum=0
    for t in /proc/"$relay"/task/*; do
        [ "$(cat "$t/comm")" = control ] && sum=$(( sum + $(awk '{print $14 + $15}' "$t/stat") ))
    done
    echo "$sum"
}
# CPU ticks of the attached consoles and of the tmux server that runs them
# (every process whose command line names the socket; all threads).
console_ticks() {
    local p sum=0
    for p in $(pgrep -f "attach --socket $dir/relay.sock" || true); do
        sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    echo "$sum"
}
paced() {
    "${on_data_path[@]}" "$load" ws://127.0.0.1:18680/ --host bench.test --mode paced --interval-ms 100 --size 64 \
        --sessions "$PACED" --duration "$WINDOW" --json |
        jq -c '{p50_ms: .rtt_ms.p50, p99_ms: .rtt_ms.p99, max_ms: .rtt_ms.max, errors: .errors}'
}
hz=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
    echo "round $r without consoles: $(paced)"
    for c in $(seq "$CONSOLES"); do
        ${CONSOLE_SCHED:+chrt -i 0} tmux new-session -d -s "ecdn-attach-$c" -x 80 -y 24 \
            "RUST_LOG=ecdn_console::frame=debug ECDN_CONSOLE_LOG=$OUT/console-$r-$c.log $bin attach --socket $dir/relay.sock"
    done
    sleep 2
    if [ -n "$PIN" ]; then
        # PIN=relay: the consoles find the relay pinned and move by
        # themselves (src/tui/cpus.rs); tmux is moved here.
        movers=$(tmux display-message -p '#{pid}')
        [ "$PIN" = relay ] || movers="$movers $(pgrep -f "attach --socket $dir/relay.sock" | tr '\n' ' ')"
        for p in $movers; do taskset -a -p -c 1 "$p" >/dev/null; done
        for p in $(pgrep -f "attach --socket $dir/relay.sock"); do
            [ "$(cat /proc/"$p"/comm)" = ecdn-console ] &&
                echo "round $r console $p on CPUs $(awk '/^Cpus_allowed_list/ { print $2 }' /proc/"$p"/status)"
        done
    fi
    if [ -n "$CONSOLE_NICE" ]; then
        renice -n "$CONSOLE_NICE" -p $(pgrep -f "attach --socket $dir/relay.sock") >/dev/null
    fi
    for c in $(seq "$CONSOLES"); do tmux send-keys -t "ecdn-attach-$c" 3; done
    sleep 2
    # The consoles' cost on the relay with only the idle sessions, then
    # with the paced ones too (each moving session is sent every refresh).
    before=$(control_ticks)
    sleep "$WINDOW"
    after=$(control_ticks)
    echo "round $r relay control thread, $IDLE idle sessions: $(awk -v t=$(( after - before )) -v hz="$hz" -v w="$WINDOW" 'BEGIN { printf "%.2f %% of a core", 100 * t / hz / w }')"
    before=$(control_ticks)
    consoles_before=$(console_ticks)
    echo "round $r with $CONSOLES consoles: $(paced)"
    after=$(control_ticks)
    echo "round $r the consoles themselves: $(awk -v t=$(( $(console_ticks) - consoles_before )) -v hz="$hz" -v w="$WINDOW" 'BEGIN { printf "%.2f %% of a core", 100 * t / hz / w }')"
    echo "round $r relay control thread, + $PACED paced: $(awk -v t=$(( after - before )) -v hz="$hz" -v w="$WINDOW" 'BEGIN { printf "%.2f %% of a core", 100 * t / hz / w }')"
    consoles
    if [ -n "$BURSTS" ]; then
        bursts=() burst_cpu=
        [ -n "$PIN" ] && burst_cpu=", on the data path's CPU"
        for c in $(seq "$CONSOLES"); do "${on_data_path[@]}" python3 bench/cpu_bursts.py "$BURST_MS" 10 "$BURST_PERIOD_MS" & bursts+=($!); done
        sleep 2
        echo "round $r with $CONSOLES CPU bursts of $BURST_MS ms every $BURST_PERIOD_MS ms instead (no socket$burst_cpu): $(paced)"
        kill "${bursts[@]}"
    fi
    if [ -n "$STANDINS" ]; then
        standins=()
        for c in $(seq "$CONSOLES"); do "${beside_consoles[@]}" python3 bench/control_standin.py "$dir/relay.sock" & standins+=($!); done
        sleep 2
        echo "round $r with $CONSOLES relay-side stand-ins instead (no table, no terminal): $(paced)"
        kill "${standins[@]}"
    fi
done
# frame_percentiles LABEL: p50/p99/max of the frame times on stdin (µs).
frame_percentiles() {
    sort -n | awk -v label="$1" '{ v[NR] = $1 } END { if (NR) { p = int(NR * 0.99) + 1; if (p > NR) p = NR; printf "%s: %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", label, NR, v[int(NR * 0.5) + 1] / 1000, v[p] / 1000, v[NR] / 1000 } }'
}
cat "$OUT"/console-*.log | sed -n 's/.*frame_us=\([0-9]*\).*/\1/p' | frame_percentiles "console frames"
# The frames that asked the relay (the rest only drew events and aged rows).
cat "$OUT"/console-*.log | sed -n 's/.*frame_us=\([0-9]*\) sampled=true.*/\1/p' |
    frame_percentiles "console frames that asked the relay"
# Where the slow frames were: each console's frame number (1 = the first,
# with the first page of the table) and time, slowest five.
for f in "$OUT"/console-*.log; do
    echo "$(basename "$f" .log) slowest frames (n: ms): $(sed -n 's/.*frame_us=\([0-9]*\).*/\1/p' "$f" |
        awk '{ printf "%d %.1f\n", NR, $1 / 1000 }' | sort -k2 -n -r | head -5 | awk '{ printf "%s: %s  ", $1, $2 }')"
done
echo "console logs in $OUT"
