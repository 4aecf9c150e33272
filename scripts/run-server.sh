#!/usr/bin/env bash
# Sets everything up and runs the server on its embedded defaults: data in ./data, Flight SQL on
# grpc://127.0.0.1:50051, HTTP on http://127.0.0.1:9051, root with no password from loopback.
# Extra arguments go to `quilldb serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-console.sh
cargo build --release -p quilldb-server --bin quilldb
bin="${CARGO_TARGET_DIR:-target}/release/quilldb"
# The line tables of QuillDB's crates go into quilldb.debug beside the binary, which points to
# it (.gnu_debuglink: Rust backtraces, gdb and addr2line read it there); the binary sheds 90 MB.
if readelf -S "$bin" | grep -q '\.debug_info'; then
  objcopy --only-keep-debug "$bin" "$bin.debug"
  objcopy --strip-debug --add-gnu-debuglink="$bin.debug" "$bin" "$bin.stripped"
  mv "$bin.stripped" "$bin"
fi
exec "$bin" serve "$@"
