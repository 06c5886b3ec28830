#!/usr/bin/env bash
# Hand-over soak: thousands of sessions streaming sequence-numbered messages
# (and a few 1 MiB ones, one of them stopped half-way through a frame at
# every hand-over) through real `serve` processes while `serve --takeover`
# replaces the relay several times; idle sessions on a 3 s timeout must be
# cut at their original deadline. Fails on any lost, duplicated or reordered
# message, any close seen by a streaming peer, a changed session id, or an
# idle session cut more than 0.5 s from its deadline. Prints figures.
#
# Parameters (environment):
#   HANDOVER_SESSIONS   streaming sessions            (default 2000)
#   HANDOVER_BIG        1 MiB streaming sessions      (default 5)
#   HANDOVER_IDLE       idle sessions per takeover    (default 100; they must open
#                       within 1 s beside the streaming load, a third of their timeout)
#   HANDOVER_TAKEOVERS  successive `serve --takeover` (default 5)
#   HANDOVER_PAUSE_MS   pause between two-message windows per session (default 100)
#   HANDOVER_TAIL_SECS  streaming after the last takeover (default 5)
# Each session uses three file descriptors in the test process (client,
# origin) and two in the relay: raise `ulimit -n` for very large runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export HANDOVER_SESSIONS="${HANDOVER_SESSIONS:-2000}" HANDOVER_BIG="${HANDOVER_BIG:-5}" \
  HANDOVER_IDLE="${HANDOVER_IDLE:-100}" HANDOVER_TAKEOVERS="${HANDOVER_TAKEOVERS:-5}" \
  HANDOVER_PAUSE_MS="${HANDOVER_PAUSE_MS:-100}" HANDOVER_TAIL_SECS="${HANDOVER_TAIL_SECS:-5}"
cargo test --release --test handover -- --ignored --nocapture a_long_handover_soak_loses_nothing
