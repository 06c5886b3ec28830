#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 180) on a working corpus
# under target/ seeded from fuzz/corpus/, and prints executions and coverage.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain it
# runs with RUSTC_BOOTSTRAP=1 for the sanitizer flags.
# A crash leaves its input in fuzz/artifacts/TARGET/: copy it into
# fuzz/regressions/TARGET/ so tests/fuzz_corpus.rs replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-180}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
for target in handshake config frames keys; do
  corpus="../target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$corpus" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 >"../target/fuzz-$target.log" 2>&1
  echo "$target: $(grep -E '^Done' "../target/fuzz-$target.log")," \
    "$(grep -E 'DONE' "../target/fuzz-$target.log" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9A-Za-z]+')"
done
