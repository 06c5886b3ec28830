# Shared by bench/compare.sh and bench/profile.sh: starting and stopping the
# origin and the three proxies on loopback, and reading a process's memory
# and CPU from /proc. Sourced, not run; the caller sets ROOT (the repository)
# and may override the ports, OUT and the timeouts from the environment.
# Every process started here is stopped by its PID on exit (trap).
: "${ORIGIN_PORT:=19001}" "${NGINX_PORT:=19081}" "${HAPROXY_PORT:=19082}" "${RELAY_PORT:=19083}"
: "${OUT:=$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)-${MODE:-run}}"
HOST=bench.test
LOOP=127.0.0.1

mkdir -p "$OUT"
STARTED_PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }

stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    STARTED_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ---------------------------------------------------------------

install_missing() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v jq >/dev/null || missing+=(jq)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} from Debian packages"
        apt-get update -q
        # nginx-light is only a transitional name in current Debian; nginx is the real one.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
}

build() {
    log "building release binaries"
    nice cargo build --release --bin ecdn-console --bin ecdn-load 2>&1 | tail -1
    CONSOLE=$ROOT/target/release/ecdn-console
    LOAD=$ROOT/target/release/ecdn-load
}

# --- processes -----------------------------------------------------------

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if ss -Hltn "sport = :$port" | grep -q LISTEN; then return 0; fi
        sleep 0.1
    done
    log "nothing listens on port $port"
    return 1
}

start_origin() {
    "$CONSOLE" origin --listen "$LOOP:$ORIGIN_PORT" >"$OUT/origin.log" 2>&1 &
    ORIGIN_PID=$!
    STARTED_PIDS+=("$ORIGIN_PID")
    wait_port "$ORIGIN_PORT"
}

# relay_config FILE TIMEOUT: the relay's config, one domain ($HOST) on
# RELAY_PORT with the WebSocket switch on and TIMEOUT seconds.
relay_config() {
    cat >"$1" <<EOF
[relay]
listen = "$LOOP:$RELAY_PORT"
handshake-timeout = 10
origin-connect-timeout = 5
max-sessions = 100000
idle-close = "close-frame"

[[domain]]
name = "$HOST"
acceleration = "full-site"
origins = ["$LOOP:$ORIGIN_PORT"]
websocket = { switch = "on", timeout = $2 }
EOF
}

# $1: idle timeout in seconds for all three proxies.
start_proxies() {
    local t=$1 dir=$OUT/conf-$1
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# One worker like our single relay thread; 2 descriptors per session.
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 19500; }
http {
    access_log off;
    client_body_temp_path $dir/nginx-tmp;
    proxy_temp_path $dir/nginx-tmp;
    server {
        listen $LOOP:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://$LOOP:$ORIGIN_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_read_timeout ${t}s;
            proxy_send_timeout ${t}s;
        }
    }
}
EOF
    cat >"$dir/haproxy.cfg" <<EOF
# One thread like our single relay thread; 2 descriptors per session.
global
    nbthread 1
    maxconn 9900
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout tunnel ${t}s
frontend ws
    bind $LOOP:$HAPROXY_PORT
    maxconn 9900
    default_backend origin
backend origin
    server o1 $LOOP:$ORIGIN_PORT
EOF
    relay_config "$dir/relay.toml" "$t"
    mkdir -p "$dir/nginx-tmp"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" &
    NGINX_MASTER=$!
    STARTED_PIDS+=("$NGINX_MASTER")
    haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    STARTED_PIDS+=("$HAPROXY_PID")
    # Event lines are not what is measured: discard them.
    "$CONSOLE" serve --config "$dir/relay.toml" >/dev/null 2>"$dir/relay.err" &
    RELAY_PID=$!
    STARTED_PIDS+=("$RELAY_PID")
    wait_port "$NGINX_PORT"
    wait_port "$HAPROXY_PORT"
    wait_port "$RELAY_PORT"
    NGINX_PID=""
    for _ in $(seq 50); do
        NGINX_PID=$(pgrep -P "$NGINX_MASTER" | head -1 || true)
        [[ -n $NGINX_PID ]] && break
        sleep 0.1
    done
    log "proxies up (timeout ${t}s): nginx worker $NGINX_PID, haproxy $HAPROXY_PID, relay $RELAY_PID"
}

stop_proxies() {
    local keep=() pid
    for pid in "$NGINX_MASTER" "$HAPROXY_PID" "$RELAY_PID"; do stop_pid "$pid"; done
    for pid in "${STARTED_PIDS[@]}"; do
        [[ $pid == "$NGINX_MASTER" || $pid == "$HAPROXY_PID" || $pid == "$RELAY_PID" ]] || keep+=("$pid")
    done
    STARTED_PIDS=("${keep[@]}")
}

# --- measuring -----------------------------------------------------------

url_of() {
    case $1 in
    direct) echo "ws://$LOOP:$ORIGIN_PORT/bench" ;;
    nginx) echo "ws://$LOOP:$NGINX_PORT/bench" ;;
    haproxy) echo "ws://$LOOP:$HAPROXY_PORT/bench" ;;
    relay) echo "ws://$LOOP:$RELAY_PORT/bench" ;;
    esac
}

pid_of() {
    case $1 in
    direct) echo "$ORIGIN_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    relay) echo "$RELAY_PID" ;;
    esac
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Busy ticks of the whole machine (all cores), and its user-mode part: other
# work (compilers) shows as user time nobody of ours spent, while loopback
# networking is kernel time that may not be charged to our processes.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
machine_user() { awk '/^cpu / { print $2 + $3 }' /proc/stat; }
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }
# utime + stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
