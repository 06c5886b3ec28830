#!/usr/bin/env bash
# Does scraping /metrics cost the data path anything? Paced load (SESSIONS
# sessions, one 64-byte message every 100 ms each) through the release relay,
# alternating rounds without and with a scrape of /metrics every second;
# prints the p50/p99 round trip of each round, then the medians and the
# with÷without ratios (docs/BENCHMARKS.md).
#   bench/scrape.sh            # ROUNDS=3 SESSIONS=1000 DURATION=10
# Ports (RELAY_PORT, ADMIN_PORT, ORIGIN_PORT) can be set from the
# environment when another run holds the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ROUNDS:=3}" "${SESSIONS:=1000}" "${DURATION:=10}"
: "${RELAY_PORT:=18480}" "${ADMIN_PORT:=18490}" "${ORIGIN_PORT:=18401}"
bin=target/release/ecdn-console
load=target/release/ecdn-load
[ -x "$bin" ] && [ -x "$load" ] || cargo build --release -p ecdn-console -p ecdn-load
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/relay.toml" <<TOML
[relay]
listen = "127.0.0.1:$RELAY_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[domain]]
name = "bench.test"
acceleration = "full-site"
origins = ["127.0.0.1:$ORIGIN_PORT"]
websocket = { switch = "on", timeout = 300 }
TOML
"$bin" origin --listen "127.0.0.1:$ORIGIN_PORT" >/dev/null &
"$bin" --config "$dir/relay.toml" serve >/dev/null &
sleep 1
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics" || { echo "no /metrics on port $ADMIN_PORT" >&2; exit 1; }
round() {
    "$load" "ws://127.0.0.1:$RELAY_PORT/" --host bench.test --mode paced --interval-ms 100 --size 64 \
        --sessions "$SESSIONS" --duration "$DURATION" --json |
        jq -c --arg scrape "$1" --argjson round "$2" \
            '{round: $round, scrape: ($scrape == "yes"), p50_ms: .rtt_ms.p50, p99_ms: .rtt_ms.p99, messages: .messages, errors: .errors}' |
        tee -a "$dir/rounds.jsonl"
}
for r in $(seq "$ROUNDS"); do
    round no "$r"
    ( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics"; done ) &
    scraper=$!
    round yes "$r"
    kill "$scraper"
done
# Medians over the rounds and the ratios with÷without; per-round ratios
# pair each round with the run just before it (interleaved).
jq -rs 'def median: sort | .[(length - 1) / 2 | floor];
    def r(a; b): (a / b * 100 | round) / 100;
    (map(select(.scrape | not))) as $no | (map(select(.scrape))) as $yes
    | "median p50 without \($no | map(.p50_ms) | median) ms, with \($yes | map(.p50_ms) | median) ms; " +
      "median p99 without \($no | map(.p99_ms) | median) ms, with \($yes | map(.p99_ms) | median) ms",
      "p99 with÷without per round: " + ([range($no | length)] | map("\(r($yes[.].p99_ms; $no[.].p99_ms))×") | join(" ")) +
      "; median of them \([range($no | length)] | map(r($yes[.].p99_ms; $no[.].p99_ms)) | median)×"' \
    "$dir/rounds.jsonl"
