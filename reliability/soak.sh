#!/usr/bin/env bash
# Soak: thousands of sessions exchanging sequence-numbered messages through
# the relay for minutes; fails on any lost, duplicated or reordered message.
# Usage: reliability/soak.sh [SESSIONS] [SECONDS]   (default 2000 for 180 s)
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SESSIONS="${1:-2000}" SOAK_SECS="${2:-180}" \
  cargo test --release --test soak -- --ignored --nocapture a_long_soak_loses_nothing
