#!/usr/bin/env bash
# Protocol conformance through the relay: the Autobahn TestSuite fuzzing
# client against the embedded origin, once directly and once through
# `ecdn-console serve`, then a verdict comparison (summarize_autobahn.py).
#
# Needs a Python 2.7 interpreter (autobahntestsuite is Python 2 only):
# $PYTHON2, else python2.7 / python2 on PATH, else pyenv's 2.7.x. The
# virtualenv (virtualenv < 20.22) is created under target/autobahn-venv.
#
# Usage: reliability/autobahn.sh [CASES]   e.g. reliability/autobahn.sh '1.*,2.*'
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${1:-*}"
work=target/autobahn
venv=target/autobahn-venv
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

echo "== building"
cargo build --release -q
bin=target/release/ecdn-console

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

origin_port=19101
relay_port=19102
"$bin" origin --listen "127.0.0.1:$origin_port" >"$work/origin.log" 2>&1 &
pids+=($!)
cat >"$work/relay.toml" <<TOML
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
"$bin" --config "$work/relay.toml" serve >"$work/relay.log" 2>&1 &
pids+=($!)
sleep 1

IFS=',' read -r -a case_list <<<"$cases"
case_json=$(printf '"%s",' "${case_list[@]}")
cat >"$work/fuzzingclient.json" <<JSON
{
  "outdir": "./reports",
  "servers": [
    {"agent": "direct", "url": "ws://127.0.0.1:$origin_port"},
    {"agent": "ecdn-relay", "url": "ws://localhost:$relay_port"}
  ],
  "cases": [${case_json%,}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

echo "== running wstest (cases: $cases); this takes a few minutes"
(cd "$work" && "../../$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1)
python3 reliability/summarize_autobahn.py "$work/reports/index.json"
