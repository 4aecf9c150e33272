#!/usr/bin/env bash
# Sets everything up and runs the server on its embedded defaults: data in ./data, Flight SQL on
# grpc://127.0.0.1:50051, HTTP on http://127.0.0.1:9051, root with no password from loopback.
# Extra arguments go to `quilldb serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p quilldb-server --bin quilldb
exec "${CARGO_TARGET_DIR:-target}/release/quilldb" serve "$@"
