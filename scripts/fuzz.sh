#!/usr/bin/env bash
# Runs QuillDB's libFuzzer targets (fuzz/): `scripts/fuzz.sh [seconds per target] [target...]`.
# Each runs on its corpus (fuzz/corpus/<target>, which grows with what it finds) for the given
# time (default 60 s); a crash stops it and leaves the input in fuzz/artifacts/<target>/.
# A finding's input goes into fuzz/regressions/<target>/ with its fix: the test command replays
# those, the corpora and a few seconds of mutations of them on every run (fuzzing/tests).
# Builds with the stable toolchain (`-s none`: no sanitizer, which needs nightly) into its own
# target folder: instrumented builds share nothing with the normal ones.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sql_front_end flight_commands parameter_batches row_decoder manifest)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR="${QUILLDB_FUZZ_TARGET_DIR:-$HOME/.cache/quilldb-fuzz-target}"
cd fuzz
cargo fuzz build -s none
for t in "${targets[@]}"; do
  echo "== $t for ${seconds}s"
  mkdir -p "corpus/$t"
  cargo fuzz run -s none "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 \
    -print_final_stats=1
done
