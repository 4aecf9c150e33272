#!/usr/bin/env bash
# Sets everything up and runs every test: formatting, clippy, the Rust unit and integration
# tests (cargo nextest; they start the real binary on port 0), the Python tests (pytest in
# .venv with pinned pyarrow, ADBC, Polars and DuckDB, against the real binary), and the web
# console's tests in headless Chromium (playwright-core, against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
# The console's files are embedded in the binary: build them before cargo compiles it.
scripts/build-console.sh

target="${CARGO_TARGET_DIR:-$PWD/target}"
export QUILLDB_BIN="$target/debug/quilldb"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build the quilldb binary (the integration tests start it)"
cargo build -p quilldb-server --bin quilldb
echo "== Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

echo "== Python tests"
venv="python-client/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r python-client/requirements-test.txt
# The client package as a user installs it (not editable: the tests use what pip installed).
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python-client
echo "== mypy (the package is typed: py.typed)"
(cd python-client && .venv/bin/python -m mypy --ignore-missing-imports quilldb)
"$venv/bin/python" -m pytest -q python-client/tests

echo "== web console tests (headless Chromium)"
(cd console && npm test)
