#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build QuillDB: the C/C++ toolchain and
# libclang (RocksDB's bindings are generated with bindgen), Node.js and npm (the web console is
# built with them), and with --browser Chromium (the console's tests drive it). Safe to run
# again: it only installs what is missing.
set -euo pipefail

need=()
for pkg in libclang-dev build-essential pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust (rustup) first" >&2; exit 1; }
