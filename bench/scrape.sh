#!/usr/bin/env bash
# Does scraping /metrics cost the data path anything? Paced load (SESSIONS
# sessions, one 64-byte message every 100 ms each) through the release relay,
# alternating rounds without and with a scrape of /metrics every second;
# prints the p50/p99 round trip of each round (docs/BENCHMARKS.md).
#   bench/scrape.sh            # ROUNDS=3 SESSIONS=1000 DURATION=10
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ROUNDS:=3}" "${SESSIONS:=1000}" "${DURATION:=10}"
bin=target/release/ecdn-console
load=target/release/ecdn-load
[ -x "$bin" ] && [ -x "$load" ] || cargo build --release --bin ecdn-console --bin ecdn-load
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/relay.toml" <<TOML
[relay]
listen = "127.0.0.1:18480"
[admin]
listen = "127.0.0.1:18490"
[[domain]]
name = "bench.test"
acceleration = "full-site"
origins = ["127.0.0.1:18401"]
websocket = { switch = "on", timeout = 300 }
TOML
"$bin" origin --listen 127.0.0.1:18401 >/dev/null &
"$bin" --config "$dir/relay.toml" serve >/dev/null &
sleep 1
round() {
    "$load" ws://127.0.0.1:18480/ --host bench.test --mode paced --interval-ms 100 --size 64 \
        --sessions "$SESSIONS" --duration "$DURATION" --json
}
for r in $(seq "$ROUNDS"); do
    printf 'round %s without scrape: ' "$r"
    round | jq -c '{p50_ms: .rtt_ms.p50, p99_ms: .rtt_ms.p99, messages: .messages, errors: .errors}'
    ( while sleep 1; do curl -s -o /dev/null http://127.0.0.1:18490/metrics; done ) &
    scraper=$!
    printf 'round %s with 1 s scrape: ' "$r"
    round | jq -c '{p50_ms: .rtt_ms.p50, p99_ms: .rtt_ms.p99, messages: .messages, errors: .errors}'
    kill "$scraper"
done
