#!/usr/bin/env bash
# Protocol conformance through the relay: the Autobahn TestSuite fuzzing
# client against three origin implementations — the embedded origin
# (`ecdn-console origin`), a plain tokio-tungstenite echo
# (examples/tungstenite_echo.rs) and a Python `websockets` echo
# (reliability/origins/websockets_echo.py) — each once directly and once
# through `ecdn-console serve` (one relay per origin), then a verdict
# comparison per case and per origin (summarize_autobahn.py): through the
# relay every case must end as it does directly.
#
# Needs a Python 2.7 interpreter (autobahntestsuite is Python 2 only):
# $PYTHON2, else python2.7 / python2 on PATH, else pyenv's 2.7.x. The
# virtualenv (virtualenv < 20.22) is created under target/autobahn-venv.
# The Python echo runs in target/websockets-venv (python3 -m venv, then
# pip install websockets), created on first use.
#
# Usage: reliability/autobahn.sh [CASES]
#   CASES defaults to groups 1-10; e.g. reliability/autobahn.sh '1.*,2.*'
#   or add the permessage-deflate groups: reliability/autobahn.sh '1.*,...,10.*,12.*,13.*'
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${1:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*}"
work=target/autobahn
venv=target/autobahn-venv
pyvenv=target/websockets-venv
mkdir -p "$work"

find_python2() {
  for candidate in "${PYTHON2:-}" python2.7 python2 "$HOME"/.pyenv/versions/2.7*/bin/python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/wstest" ]; then
  if ! python2=$(find_python2); then
    echo "autobahn.sh: no Python 2.7 interpreter found." >&2
    echo "  The Autobahn TestSuite (PyPI autobahntestsuite) runs only on Python 2.7." >&2
    echo "  Install one (e.g. pyenv install 2.7.18) or point PYTHON2 at it, then run this again." >&2
    exit 3
  fi
  echo "== setting up $venv with $python2"
  "$python2" -m pip install -q 'virtualenv<20.22'
  "$python2" -m virtualenv -q "$venv"
  "$venv/bin/pip" install -q autobahntestsuite
fi

if ! "$pyvenv/bin/python" -c 'import websockets' 2>/dev/null; then
  echo "== setting up $pyvenv (Python websockets for the third origin)"
  python3 -m venv "$pyvenv"
  "$pyvenv/bin/pip" install -q websockets
fi

echo "== building"
cargo build --release -q --bin ecdn-console --example tungstenite_echo
bin=target/release/ecdn-console

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Waits (at most 10 s) until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "autobahn.sh: nothing listens on 127.0.0.1:$1 after 10 s (see $work/*.log)" >&2
  exit 1
}

# A relay with one domain, `localhost`, in front of 127.0.0.1:$2.
start_relay() {
  local name=$1 origin_port=$2 relay_port=$3
  cat >"$work/relay-$name.toml" <<TOML
[relay]
listen = "127.0.0.1:$relay_port"
max-message-bytes = 16777216

# Autobahn connects to ws://localhost:PORT, so its Host header is "localhost".
[[domain]]
name = "localhost"
acceleration = "full-site"
origins = ["127.0.0.1:$origin_port"]
websocket = { switch = "on", timeout = 300 }
TOML
  "$bin" --config "$work/relay-$name.toml" serve >"$work/relay-$name.log" 2>&1 &
  pids+=($!)
}

# name, origin port, relay port.
origins=("embedded 19101 19102" "tungstenite 19103 19104" "websockets 19105 19106")
"$bin" origin --listen 127.0.0.1:19101 >"$work/origin-embedded.log" 2>&1 &
pids+=($!)
target/release/examples/tungstenite_echo 127.0.0.1:19103 >"$work/origin-tungstenite.log" 2>&1 &
pids+=($!)
"$pyvenv/bin/python" reliability/origins/websockets_echo.py 127.0.0.1:19105 >"$work/origin-websockets.log" 2>&1 &
pids+=($!)

servers=""
for entry in "${origins[@]}"; do
  read -r name origin_port relay_port <<<"$entry"
  start_relay "$name" "$origin_port" "$relay_port"
  wait_port "$origin_port"
  wait_port "$relay_port"
  servers+="{\"agent\": \"$name-direct\", \"url\": \"ws://127.0.0.1:$origin_port\"},"
  servers+="{\"agent\": \"$name-relay\", \"url\": \"ws://localhost:$relay_port\"},"
done

# wstest with the cases $1 into $work/$2 (its log: $work/$2.log).
run_wstest() {
  local case_list case_json
  IFS=',' read -r -a case_list <<<"$1"
  case_json=$(printf '"%s",' "${case_list[@]}")
  cat >"$work/$2.json" <<JSON
{
  "outdir": "./$2",
  "servers": [${servers%,}],
  "cases": [${case_json%,}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
  rm -rf "${work:?}/$2"
  (cd "$work" && "../../$venv/bin/wstest" -m fuzzingclient -s "$2.json" >"$2.log" 2>&1)
}

rm -rf "$work"/reports-rerun-*
echo "== running wstest (cases: $cases) against 3 origins × direct/relay; this takes several minutes"
run_wstest "$cases" reports
# Some verdicts race inside an origin (see summarize_autobahn.py): the cases
# that differ run again, $AUTOBAHN_RERUNS times (default 5), and the summary
# judges each over all its runs.
indexes=("$work/reports/index.json")
differing=$(python3 reliability/summarize_autobahn.py --differing "$work/reports/index.json")
if [ -n "$differing" ]; then
  for i in $(seq "${AUTOBAHN_RERUNS:-5}"); do
    echo "== run $i again: $differing"
    run_wstest "$differing" "reports-rerun-$i"
    indexes+=("$work/reports-rerun-$i/index.json")
  done
fi
python3 reliability/summarize_autobahn.py "${indexes[@]}"
