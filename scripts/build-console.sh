#!/usr/bin/env bash
# Builds the web console (console/ -> console/dist) with the machine's Node.js and npm and the
# committed lockfile; server/build.rs embeds console/dist into the quilldb binary. Installs
# only when package-lock.json changed, builds only when a source is newer than the build.
set -euo pipefail
cd "$(dirname "$0")/../console"
command -v npm >/dev/null || { echo "build-console: npm is missing (scripts/setup.sh installs Node.js)" >&2; exit 1; }
# Vite 8 needs Node.js 20.19 or newer (Debian 12's own nodejs package is 18).
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || { echo "build-console: Node.js $(node --version) is too old: the console's build (Vite 8) needs 20.19 or newer" >&2; exit 1; }
stamp="node_modules/.quilldb-lock"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "== npm ci (console)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
newest_source=$(find index.html vite.config.ts tsconfig.json package-lock.json src ../flight/proto -type f -newer dist/index.html 2>/dev/null | head -1 || true)
if [ ! -f dist/index.html ] || [ -n "$newest_source" ]; then
  echo "== build the console"
  npm run --silent build
fi
