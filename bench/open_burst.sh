#!/usr/bin/env bash
# The slowest round trips while 500 sessions open at once (docs/BENCHMARKS.md,
# "Attached consoles on CPUs of their own"): the relay's workers, the origin
# and the generators on CPU 0, the relay's other threads on CPU 1; beside
# them on CPU 1, by turns, nothing ("none"), two relay-side stand-ins asking
# what `attach` asks ("standin", bench/control_standin.py), or two busy loops
# at nice 10 that have nothing to do with the relay ("burn"). Each turn opens
# 500 paced sessions (one 64 B message per 100 ms each) beside IDLE idle
# ones and reports their round-trip p99/max, how many took over 5 ms, the
# time the host stole from CPU 0 (a VM's vCPU can wait for the host), and
# the workers' futex calls (a worker waiting on a lock the control side
# holds would make them).
#   bench/open_burst.sh            # N=3 IDLE=9000 MODES="none standin burn"
# TRACE=1 also logs every futex call of a worker that took over 0.5 ms
# (`perf trace`, into $OUT/futex-ROUND-MODE.txt): a worker held up by a
# lock the control thread holds while it is off its CPU would show there;
# and records the workers' context switches ($OUT/switch-ROUND-MODE.data)
# to count how often they blocked in the kernel or were preempted.
# RELAY_ENV="NAME=VALUE …" runs the relay with those variables set.
# Needs taskset, perf and two CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=open-burst
# shellcheck source=bench/lib.sh
source bench/lib.sh
: "${N:=3}" "${IDLE:=9000}" "${MODES:=none standin burn}"
for tool in taskset perf jq; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }; done
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs; this machine has $(nproc)" >&2; exit 2; }
cargo build --release -q -p ecdn-console -p ecdn-load
bin=$PWD/target/release
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
control_relay_config "$dir/relay.toml" 18880 18801 "$dir/relay.sock"
taskset -c 0 "$bin/ecdn-console" origin --listen 127.0.0.1:18801 >/dev/null &
env ${RELAY_ENV:-} "$bin/ecdn-console" serve --config "$dir/relay.toml" >"$dir/serve.log" 2>&1 &
relay=$!
sleep 1
workers=()
for t in /proc/"$relay"/task/*; do
    case "$(cat "$t/comm")" in
        relay-*) taskset -p -c 0 "$(basename "$t")" >/dev/null; workers+=("$(basename "$t")") ;;
        *) taskset -p -c 1 "$(basename "$t")" >/dev/null ;;
    esac
done
# Time the hypervisor gave CPU 0's turn to something else (the 8th field
# of /proc/stat, in USER_HZ ticks): on a shared host this, not the relay,
# can be what holds a round trip up.
cpu0_steal_ms() { awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu0" { print $9 * 1000 / hz }' /proc/stat; }
# switches_in_state STATE FILE: how often a worker left its CPU in STATE
# (D: waiting in the kernel, e.g. on mmap_lock in a page fault; R: preempted).
switches_in_state() { perf script -i "$2" -F trace 2>/dev/null | grep -c "prev_state=$1[ +]" || true; }
worker_list=$(IFS=,; echo "${workers[*]}")
turns=$(( N * $(wc -w <<<"$MODES") ))
taskset -c 0 "$bin/ecdn-load" ws://127.0.0.1:18880/ --host bench.test --mode idle --sessions "$IDLE" \
    --concurrency 256 --duration $(( turns * 8 + 30 )) --ready-line >/dev/null 2>"$dir/idle.err" &
until grep -q '^ready' "$dir/idle.err" 2>/dev/null; do sleep 0.2; done
for round in $(seq "$N"); do
    for mode in $MODES; do
        beside=()
        for _ in 1 2; do
            case "$mode" in
                standin) taskset -c 1 python3 bench/control_standin.py "$dir/relay.sock" & beside+=($!) ;;
                burn) taskset -c 1 nice -n 10 python3 -c 'while 1: pass' & beside+=($!) ;;
            esac
        done
        [ ${#beside[@]} -gt 0 ] && sleep 1.5
        perf stat -e syscalls:sys_enter_futex,page-faults,context-switches -t "$worker_list" -o "$dir/futex.txt" -- sleep 3 >/dev/null 2>&1 &
        counting=$!
        if [ -n "${TRACE:-}" ]; then
            timeout 3 perf trace -e futex --duration 0.5 -t "$worker_list" -o "$OUT/futex-$round-$mode.txt" >/dev/null 2>&1 &
            timeout -s INT 3 perf record -q -g -e sched:sched_switch -t "$worker_list" -o "$OUT/switch-$round-$mode.data" >/dev/null 2>&1 &
        fi
        steal_before=$(cpu0_steal_ms)
        rtt=$(taskset -c 0 "$bin/ecdn-load" ws://127.0.0.1:18880/ --host bench.test --mode paced \
            --interval-ms 100 --size 64 --sessions 500 --duration 2 --json --log-slow-ms 5 2>"$dir/slow.txt" |
            jq -r '"p99 \(.rtt_ms.p99) ms, max \(.rtt_ms.max) ms"')
        steal=$(( $(cpu0_steal_ms) - steal_before ))
        wait "$counting"
        echo "round $round $mode: $rtt, CPU 0 stolen by the host: $steal ms, over 5 ms: $(grep -c '^slow' "$dir/slow.txt" || true), worker futex calls: $(awk '/futex/ { print $1 }' "$dir/futex.txt"), page faults: $(awk '/page-faults/ { print $1 }' "$dir/futex.txt"), context switches: $(awk '/context-switches/ { print $1 }' "$dir/futex.txt")"
        if [ -n "${TRACE:-}" ]; then
            sleep 0.5 # perf record writes its file on SIGINT
            echo "  workers blocked in the kernel (off CPU in state D): $(switches_in_state D "$OUT/switch-$round-$mode.data"), preempted: $(switches_in_state R "$OUT/switch-$round-$mode.data"), futex calls over 0.5 ms: $(grep -c futex "$OUT/futex-$round-$mode.txt" || true)"
        fi
        [ ${#beside[@]} -gt 0 ] && kill "${beside[@]}"
        sleep 1
    done
done
