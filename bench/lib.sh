# Shared by bench/compare.sh and bench/profile.sh: starting and stopping the
# origin and the three proxies on loopback, and reading a process's memory
# and CPU from /proc. Sourced, not run; the caller sets ROOT (the repository)
# and may override the ports, OUT and the timeouts from the environment.
# Every process started here is stopped by its PID on exit (trap).
: "${ORIGIN_PORT:=19001}" "${NGINX_PORT:=19081}" "${HAPROXY_PORT:=19082}" "${RELAY_PORT:=19083}"
# Where ecdn-load's pushing origin listens in fanout runs (path /push,
# Host push.test: every proxy forwards those there).
: "${PUSH_PORT:=19002}"
# TLS=1: nginx and the relay also serve wss:// (one certificate for both,
# made by make_certificate) on these ports; targets nginx-tls, relay-tls.
: "${TLS:=0}" "${NGINX_TLS_PORT:=19091}" "${RELAY_TLS_PORT:=19093}"
PUSH_HOST=push.test
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
    # The load generator is its own workspace crate (bench/load).
    nice cargo build --release -p ecdn-console -p ecdn-load 2>&1 | tail -1
    CONSOLE=$ROOT/target/release/ecdn-console
    LOAD=$ROOT/target/release/ecdn-load
}

# make_certificate: a private CA and a certificate for $HOST it signed
# (ECDSA P-256, as most public CAs issue now), in $OUT/tls. Sets CA_FILE,
# TLS_CERT and TLS_KEY. The same files serve nginx and the relay.
make_certificate() {
    local dir=$OUT/tls
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=ecdn bench CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$HOST" \
        -keyout "$dir/cert.key" -out "$dir/cert.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$HOST" >"$dir/ext.cnf"
    openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 30 -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
    CA_FILE=$dir/ca.pem
    TLS_CERT=$dir/cert.pem
    TLS_KEY=$dir/cert.key
    log "certificate for $HOST: $TLS_CERT (CA $CA_FILE)"
}

# tls_args TARGET: the generator's extra arguments for TARGET, one a line.
tls_args() {
    [[ $1 == *-tls ]] && printf '%s\n' --ca-file "$CA_FILE"
    return 0
}

# With TLS=1: the relay's wss:// listener, $HOST's certificate, and nginx's
# TLS server (nginx's TLS defaults, the same certificate).
relay_tls_relay() {
    [[ $TLS == 1 ]] && echo "tls-listen = \"$LOOP:$RELAY_TLS_PORT\""
    return 0
}
relay_tls_domain() {
    [[ $TLS == 1 ]] && echo "certificate = { cert-file = \"$TLS_CERT\", key-file = \"$TLS_KEY\" }"
    return 0
}
nginx_tls_server() {
    [[ $TLS == 1 ]] || return 0
    cat <<EOF
    server {
        listen $LOOP:$NGINX_TLS_PORT ssl backlog=4096;
        ssl_certificate $TLS_CERT;
        ssl_certificate_key $TLS_KEY;
        location / {
            proxy_pass http://$LOOP:$ORIGIN_PORT;
        }
    }
EOF
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
    # Someone else's process on the port would be measured instead.
    sleep 0.2
    kill -0 "$ORIGIN_PID" 2>/dev/null || {
        log "the origin did not start: $(tail -1 "$OUT/origin.log") (set ORIGIN_PORT and the other *_PORT variables)"
        exit 1
    }
}

# relay_config FILE TIMEOUT: the relay's config, one domain ($HOST) on
# RELAY_PORT with the WebSocket switch on and TIMEOUT seconds.
relay_config() {
    cat >"$1" <<EOF
[relay]
listen = "$LOOP:$RELAY_PORT"
$(relay_tls_relay)
handshake-timeout = 10
origin-connect-timeout = 5
max-sessions = 100000
idle-close = "close-frame"

[[domain]]
name = "$HOST"
acceleration = "full-site"
origins = ["$LOOP:$ORIGIN_PORT"]
websocket = { switch = "on", timeout = $2 }
$(relay_tls_domain)

[[domain]]
name = "$PUSH_HOST"
acceleration = "full-site"
origins = ["$LOOP:$PUSH_PORT"]
websocket = { switch = "on", timeout = $2 }
EOF
}

# control_relay_config FILE PORT ORIGIN_PORT SOCKET: the relay of the
# attach and hand-over runs: one domain ($HOST, origin on ORIGIN_PORT, a
# 300 s idle limit), listening on PORT, its control socket at SOCKET.
control_relay_config() {
    cat >"$1" <<EOF
[relay]
listen = "$LOOP:$2"
control-socket = "$4"
max-sessions = 100000
handshake-timeout = 30
[[domain]]
name = "$HOST"
acceleration = "full-site"
origins = ["$LOOP:$3"]
websocket = { switch = "on", timeout = 300 }
EOF
}

# start_proxies TIMEOUT [SET]: all three proxies with TIMEOUT seconds of
# idle limit. SET "defaults" (the default): each as a user runs it — nginx
# `worker_processes auto`, HAProxy's default threads (one per CPU), the
# relay's default workers (one per CPU); SET "one": one worker each.
start_proxies() {
    local t=$1 set=${2:-defaults} dir=$OUT/conf-$1-${2:-defaults}
    local nginx_workers=auto haproxy_threads="" relay_workers=()
    if [[ $set == one ]]; then
        nginx_workers=1
        haproxy_threads="nbthread 1"
        relay_workers=(--workers 1)
    fi
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# Set "$set"; 2 descriptors per session.
worker_processes $nginx_workers;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 19500; }
http {
    access_log off;
    client_body_temp_path $dir/nginx-tmp;
    proxy_temp_path $dir/nginx-tmp;
    proxy_http_version 1.1;
    proxy_set_header Upgrade \$http_upgrade;
    proxy_set_header Connection "upgrade";
    proxy_set_header Host \$host;
    proxy_read_timeout ${t}s;
    proxy_send_timeout ${t}s;
    server {
        listen $LOOP:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://$LOOP:$ORIGIN_PORT;
        }
        location /push {
            proxy_pass http://$LOOP:$PUSH_PORT;
        }
    }
$(nginx_tls_server)
}
EOF
    cat >"$dir/haproxy.cfg" <<EOF
# Set "$set"; 2 descriptors per session.
global
    $haproxy_threads
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
    use_backend push if { path_beg /push }
    default_backend origin
backend origin
    server o1 $LOOP:$ORIGIN_PORT
backend push
    server p1 $LOOP:$PUSH_PORT
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
    "$CONSOLE" serve --config "$dir/relay.toml" "${relay_workers[@]}" >/dev/null 2>"$dir/relay.err" &
    RELAY_PID=$!
    STARTED_PIDS+=("$RELAY_PID")
    wait_port "$NGINX_PORT"
    wait_port "$HAPROXY_PORT"
    wait_port "$RELAY_PORT"
    if [[ $TLS == 1 ]]; then
        wait_port "$NGINX_TLS_PORT"
        wait_port "$RELAY_TLS_PORT"
    fi
    NGINX_PID=""
    local want
    want=$([[ $nginx_workers == auto ]] && nproc || echo 1)
    for _ in $(seq 50); do
        # Every worker (all of nginx's work is theirs; the master only waits).
        NGINX_PID=$(pgrep -P "$NGINX_MASTER" -d, || true)
        [[ -n $NGINX_PID && $(tr , '\n' <<<"$NGINX_PID" | wc -l) -ge $want ]] && break
        sleep 0.1
    done
    PROXY_SET=$set
    log "proxies up (set $set, timeout ${t}s): nginx workers $NGINX_PID, haproxy $HAPROXY_PID, relay $RELAY_PID"
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

# url_of TARGET [push]: where the generator connects (push: the fanout path).
url_of() {
    if [[ ${2:-} == push ]]; then
        case $1 in
        direct) echo "ws://$LOOP:$PUSH_PORT/push" ;;
        nginx) echo "ws://$LOOP:$NGINX_PORT/push" ;;
        haproxy) echo "ws://$LOOP:$HAPROXY_PORT/push" ;;
        relay) echo "ws://$LOOP:$RELAY_PORT/push" ;;
        esac
        return
    fi
    case $1 in
    direct) echo "ws://$LOOP:$ORIGIN_PORT/bench" ;;
    nginx) echo "ws://$LOOP:$NGINX_PORT/bench" ;;
    haproxy) echo "ws://$LOOP:$HAPROXY_PORT/bench" ;;
    relay) echo "ws://$LOOP:$RELAY_PORT/bench" ;;
    nginx-tls) echo "wss://$LOOP:$NGINX_TLS_PORT/bench" ;;
    relay-tls) echo "wss://$LOOP:$RELAY_TLS_PORT/bench" ;;
    esac
}

pid_of() {
    case $1 in
    direct) echo "$ORIGIN_PID" ;;
    nginx | nginx-tls) echo "$NGINX_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    relay | relay-tls) echo "$RELAY_PID" ;;
    esac
}

# PIDs may be a comma-separated list (nginx's workers): figures are summed.
proc_files() { local f=$2 p; for p in ${1//,/ }; do echo "/proc/$p/$f"; done; }
rss_kib() { awk '/^VmRSS:/ { s += $2 } END { print s + 0 }' $(proc_files "$1" status); }
# Busy ticks of the whole machine (all cores), and its user-mode part: other
# work (compilers) shows as user time nobody of ours spent, while loopback
# networking is kernel time that may not be charged to our processes.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
machine_user() { awk '/^cpu / { print $2 + $3 }' /proc/stat; }
user_ticks() { awk '{ s += $14 } END { print s + 0 }' $(proc_files "$1" stat); }
# utime + stime in clock ticks.
cpu_ticks() { awk '{ s += $14 + $15 } END { print s + 0 }' $(proc_files "$1" stat); }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
