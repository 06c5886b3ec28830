#!/usr/bin/env bash
# Side-by-side benchmark of issues 6 and 13: the same loads against the
# origin directly, nginx, HAProxy and `ecdn-console serve`, all on loopback,
# in two sets run in interleaved rounds — "defaults" (each as a user runs it:
# nginx `worker_processes auto`, HAProxy's default threads, the relay's
# default workers, all one per CPU) and "one" (one worker each: per-core
# efficiency) — then one table per set with the ratios relay÷nginx,
# relay÷HAProxy, relay÷direct.
#
#   bench/compare.sh quick     # small numbers, ~2 minutes: does everything work?
#   bench/compare.sh full      # the figures of docs/BENCHMARKS.md
#
# Every number below can be overridden from the environment, e.g.
#   ROUNDS=1 DURATION=5 bench/compare.sh full
#
# wss:// beside ws:// (issue 14): TLS=1 makes nginx and the relay also serve
# TLS with one certificate (a private CA made with openssl) and adds the
# targets nginx-tls and relay-tls; the table is then bench/tls_table.jq's:
#   TLS=1 TARGETS="relay relay-tls nginx nginx-tls" TESTS="memory echo64 echo4k" bench/compare.sh full
#
# The machine caps a process at 20,000 file descriptors (hard limit): a
# proxy holds two per relayed session, so idle runs are sized to 9,000
# sessions (18,000 descriptors plus listeners and logs).
#
# Only loopback addresses are used. Everything this script starts is stopped
# by its PID on exit (trap), and nothing else is touched.
set -euo pipefail

MODE=${1:-quick}
cd "$(dirname "$0")/.."
ROOT=$PWD

case "$MODE" in
quick)
    : "${ROUNDS:=1}" "${DURATION:=2}" "${ECHO_SESSIONS:=20}" "${PACED_SESSIONS:=50}"
    : "${PACED_INTERVAL_MS:=100}" "${IDLE_SESSIONS:=200}" "${IDLE_TIMEOUT:=2}" "${HOLD:=4}"
    : "${FANOUT_SESSIONS:=500}"
    ;;
full)
    : "${ROUNDS:=3}" "${DURATION:=10}" "${ECHO_SESSIONS:=100}" "${PACED_SESSIONS:=1000}"
    : "${PACED_INTERVAL_MS:=100}" "${IDLE_SESSIONS:=9000}" "${IDLE_TIMEOUT:=5}" "${HOLD:=8}"
    : "${FANOUT_SESSIONS:=5000}"
    ;;
*)
    echo "usage: $0 [quick|full]" >&2
    exit 2
    ;;
esac
# Before each run, wait up to QUIET_WAIT s for other work to drop under QUIET_PCT %.
[[ $MODE == full ]] && : "${QUIET_WAIT:=60}"
: "${QUIET_WAIT:=0}" "${QUIET_PCT:=10}"
# The timeout for everything but the timeout-precision run: longer than any run.
: "${LONG_TIMEOUT:=120}"
: "${CONCURRENCY:=64}"
: "${TARGETS:=direct nginx haproxy relay}"
# The worker sets (see the top), and what each test runs.
: "${SETS:=defaults one}"
: "${TESTS:=memory echo64 echo4k echo64k paced handshake fanout timeout}"
# Fan-out: the origin (ecdn-load itself) pushes FANOUT_SIZE bytes every
# FANOUT_INTERVAL_MS to FANOUT_SESSIONS clients.
: "${FANOUT_INTERVAL_MS:=100}" "${FANOUT_SIZE:=256}"

# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# Waits (at most QUIET_WAIT s) until other work uses under QUIET_PCT % of
# the machine in user mode, so that fewer runs measure someone's compiler.
wait_quiet() {
    local waited=0 u0 u1 pct
    while ((waited < QUIET_WAIT)); do
        u0=$(machine_user)
        sleep 1
        u1=$(machine_user)
        pct=$(((u1 - u0) * 100 / ($(getconf CLK_TCK) * $(nproc))))
        ((pct < QUIET_PCT)) && return 0
        waited=$((waited + 1))
    done
    ((QUIET_WAIT == 0)) || log "  the machine is still busy ($pct % user) after ${QUIET_WAIT}s; measuring anyway"
}

# run_load TEST TARGET ROUND [ecdn-load args...]: one run, one JSON line.
run_load() {
    local test=$1 target=$2 round=$3
    shift 3
    local pid origin_pid=$ORIGIN_PID file="$OUT/$test-$target-r$round"
    local pid_cpu0 origin_cpu0 busy0 user0 pid_user0 origin_user0 t0 load0 report gen_cpu gen_user ours_user
    wait_quiet
    pid=$(pid_of "$target")
    pid_cpu0=$(cpu_ticks "$pid")
    origin_cpu0=$(cpu_ticks "$origin_pid")
    pid_user0=$(user_ticks "$pid")
    origin_user0=$(user_ticks "$origin_pid")
    busy0=$(machine_busy)
    user0=$(machine_user)
    t0=$(date +%s.%N)
    load0=$(loadavg)
    # bash's `time` gives the generator's own CPU (user + sys seconds).
    local tls
    mapfile -t tls < <(tls_args "$target")
    if ! { TIMEFORMAT='%U %S'; time "$LOAD" "$(url_of "$target" "${URL_KIND:-}")" --host "${LOAD_HOST:-$HOST}" \
        --concurrency "$CONCURRENCY" --json "${tls[@]}" "$@" >"$file.json" 2>"$file.err"; } 2>"$file.time"; then
        log "  $test/$target: ecdn-load failed: $(tail -1 "$file.err")"
    fi
    gen_cpu=$(awk '{ print $1 + $2 }' "$file.time")
    gen_user=$(awk '{ print $1 }' "$file.time")
    ours_user=$(($(user_ticks "$origin_pid") - origin_user0))
    [[ $target == direct ]] || ours_user=$((ours_user + $(user_ticks "$pid") - pid_user0))
    report=$(cat "$file.json")
    [[ -n $report ]] || report='{}'
    jq -c --arg test "$test" --arg target "$target" --argjson round "$round" --arg set "$PROXY_SET" \
        --argjson cpu "$(($(cpu_ticks "$pid") - pid_cpu0))" \
        --argjson origin_cpu "$(($(cpu_ticks "$origin_pid") - origin_cpu0))" \
        --argjson busy "$(($(machine_busy) - busy0))" --argjson gen_cpu "${gen_cpu:-0}" \
        --argjson user "$(($(machine_user) - user0))" --argjson gen_user "${gen_user:-0}" \
        --argjson ours_user "$ours_user" \
        --argjson wall "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }')" --argjson ncpu "$(nproc)" \
        --argjson hz "$(getconf CLK_TCK)" \
        --argjson load0 "$load0" --argjson load1 "$(loadavg)" \
        '. + {url: .target, test: $test, target: $target, round: $round, set: $set, load_before: $load0, load_after: $load1,
          proxy_cpu_s: (if $target == "direct" then 0 else $cpu / $hz end), origin_cpu_s: ($origin_cpu / $hz),
          generator_cpu_s: $gen_cpu, wall_s: $wall,
          machine_busy_pct: ($busy / $hz / $wall / $ncpu * 100),
          other_user_pct: ((($user - $ours_user) / $hz - $gen_user) / $wall / $ncpu * 100)}' \
        <<<"$report" >>"$RESULTS"
    log "  $test/$target: $(jq -r 'if .idle then "lateness \(.idle.lateness_ms // {} | "p50 \(.p50) p99 \(.p99) max \(.max)") ms, closes \([.idle.closes[] | "\(.sessions)×\(.close)"] | join(" ")), still open \(.idle.still_open)"
        else "\(.messages_per_s // 0 | floor) msgs/s, p50 \(.rtt_ms.p50) ms, p99 \(.rtt_ms.p99) ms" end + ", errors \(.errors)"' <<<"$report") (load $load0 → $(loadavg); $(tail -1 "$RESULTS" | jq -r '"machine busy \(.machine_busy_pct | floor) %, others (user) \(.other_user_pct | floor) %"'))"
}

# Memory and idle CPU: RSS before and with IDLE_SESSIONS silent sessions held.
run_memory() {
    local target=$1 round=$2
    local pid file="$OUT/memory-$target-r$round" load_pid rss0 rss1 cpu0 cpu1 load0
    wait_quiet
    pid=$(pid_of "$target")
    rss0=$(rss_kib "$pid")
    load0=$(loadavg)
    local tls
    mapfile -t tls < <(tls_args "$target")
    "$LOAD" "$(url_of "$target")" --host "$HOST" --concurrency "$CONCURRENCY" --json "${tls[@]}" \
        --mode idle --sessions "$IDLE_SESSIONS" --duration "$HOLD" --ready-line \
        >"$file.json" 2>"$file.err" &
    load_pid=$!
    STARTED_PIDS+=("$load_pid")
    for _ in $(seq 1200); do
        grep -q '^ready:' "$file.err" 2>/dev/null && break
        kill -0 "$load_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    rss1=$(rss_kib "$pid")
    cpu0=$(cpu_ticks "$pid")
    sleep 5
    cpu1=$(cpu_ticks "$pid")
    wait "$load_pid" || log "  memory/$target: ecdn-load failed: $(tail -1 "$file.err")"
    jq -c --arg target "$target" --argjson round "$round" --arg set "$PROXY_SET" --argjson rss0 "$rss0" --argjson rss1 "$rss1" \
        --argjson cpu "$((cpu1 - cpu0))" --argjson hz "$(getconf CLK_TCK)" \
        --argjson load0 "$load0" --argjson load1 "$(loadavg)" \
        '. + {url: .target, test: "memory", target: $target, round: $round, set: $set, load_before: $load0, load_after: $load1,
          rss_before_kib: $rss0, rss_after_kib: $rss1,
          kib_per_session: (if .opened > 0 then ($rss1 - $rss0) / .opened else null end),
          idle_cpu_pct: ($cpu / $hz / 5 * 100)}' \
        <"$file.json" >>"$RESULTS"
    log "  memory/$target: RSS $rss0 → $rss1 KiB with $(jq .opened "$file.json") sessions, $((cpu1 - cpu0)) ticks CPU in 5 s"
}

# --- the run -------------------------------------------------------------

install_missing
build
if [[ $TLS == 1 ]]; then make_certificate; fi
ulimit -n 20000 2>/dev/null || true
{
    echo "mode=$MODE rounds=$ROUNDS duration=$DURATION echo_sessions=$ECHO_SESSIONS quiet_wait=$QUIET_WAIT quiet_pct=$QUIET_PCT"
    echo "paced_sessions=$PACED_SESSIONS interval_ms=$PACED_INTERVAL_MS idle_sessions=$IDLE_SESSIONS idle_timeout=$IDLE_TIMEOUT"
    echo "nproc=$(nproc) cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) kernel=$(uname -r)"
    echo "nginx=$(nginx -v 2>&1 | cut -d/ -f2) haproxy=$(haproxy -v | awk 'NR == 1 { print $3 }') commit=$(git rev-parse --short HEAD)"
    if [[ $TLS == 1 ]]; then echo "tls=1 $(openssl version | cut -d' ' -f1-2) certificate=ECDSA P-256 targets=$TARGETS"; fi
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ) uptime: $(uptime)"
} | tee "$OUT/machine.txt" >&2

wants() { [[ " $TESTS " == *" $1 "* ]]; }

# One set's runs: every test, each over every target in turn.
run_set() {
    local round=$1 set=$2 target
    start_proxies "$LONG_TIMEOUT" "$set"
    # Memory first, on fresh processes (earlier runs would leave reusable heap).
    if wants memory; then
        for target in $TARGETS; do
            [[ $target == direct ]] || run_memory "$target" "$round"
        done
    fi
    for target in $TARGETS; do
        wants echo64 && run_load echo64 "$target" "$round" --mode echo --size 64 --sessions "$ECHO_SESSIONS" --duration "$DURATION"
    done
    for target in $TARGETS; do
        wants echo4k && run_load echo4k "$target" "$round" --mode echo --size 4096 --sessions "$ECHO_SESSIONS" --duration "$DURATION"
    done
    for target in $TARGETS; do
        wants echo64k && run_load echo64k "$target" "$round" --mode echo --size 65536 --sessions "$ECHO_SESSIONS" --duration "$DURATION"
    done
    for target in $TARGETS; do
        wants paced && run_load paced "$target" "$round" --mode paced --interval-ms "$PACED_INTERVAL_MS" --size 64 \
            --sessions "$PACED_SESSIONS" --duration "$DURATION"
    done
    # CONCURRENCY (64) loops of open, one message, close.
    for target in $TARGETS; do
        wants handshake && run_load handshake "$target" "$round" --mode handshake --size 64 --duration "$DURATION"
    done
    for target in $TARGETS; do
        wants fanout && URL_KIND=push LOAD_HOST=$PUSH_HOST run_load fanout "$target" "$round" --mode fanout \
            --push-listen "$LOOP:$PUSH_PORT" --interval-ms "$FANOUT_INTERVAL_MS" --size "$FANOUT_SIZE" \
            --sessions "$FANOUT_SESSIONS" --duration "$DURATION"
    done
    stop_proxies
    if wants timeout; then
        start_proxies "$IDLE_TIMEOUT" "$set"
        for target in $TARGETS; do
            [[ $target == direct ]] || run_load timeout "$target" "$round" --mode idle \
                --sessions "$IDLE_SESSIONS" --expect-timeout "$IDLE_TIMEOUT" --duration "$((IDLE_TIMEOUT + 3))"
        done
        stop_proxies
    fi
}

start_origin
for round in $(seq "$ROUNDS"); do
    for set in $SETS; do
        log "round $round of $ROUNDS, set $set"
        run_set "$round" "$set"
    done
done
echo "date_end=$(date -u +%Y-%m-%dT%H:%M:%SZ) uptime: $(uptime)" | tee -a "$OUT/machine.txt" >&2

# --- the table -----------------------------------------------------------
TABLE=bench/table.jq
[[ $TLS == 1 ]] && TABLE=bench/tls_table.jq
# Medians over the rounds; ratios relay÷X ("higher is better" rows want > 1,
# the others < 1).
: >"$OUT/table.md"
for set in $SETS; do
    case $set in
    defaults) echo "### At their defaults (nginx worker_processes auto, HAProxy default threads, relay default workers; $(nproc) CPUs)" ;;
    one) echo "### One worker each" ;;
    *) echo "### Set $set" ;;
    esac
    echo
    jq -rs --arg set "$set" --arg echo_n "$ECHO_SESSIONS" --arg paced_n "$PACED_SESSIONS" --arg interval "$PACED_INTERVAL_MS" \
        --arg idle_n "$IDLE_SESSIONS" --arg idle_t "$IDLE_TIMEOUT" --arg fan_n "$FANOUT_SESSIONS" \
        --arg fan_interval "$FANOUT_INTERVAL_MS" --arg fan_size "$FANOUT_SIZE" --arg conc "$CONCURRENCY" \
        -f "$TABLE" "$RESULTS"
    echo
done | tee "$OUT/table.md"
log "results in $OUT"
