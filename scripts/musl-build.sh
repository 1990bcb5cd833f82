#!/usr/bin/env bash
# Build the linux musl addons here, the way CI's build matrix does (napi
# build -x: cargo-zigbuild with zig as the linker), and check that each is a
# musl binary: it needs musl's libc.so, not glibc's libc.so.6, and exports
# the Node-API entry point. scripts/runtimes.js then runs them in Bun's musl
# builds (scripts/musl-runtime.sh).
#
#   scripts/musl-build.sh [x64] [arm64]      (default: x64)
#
# Leaves fdpass.linux-<arch>-musl.node at the root, where the loader looks.
# Builds only when crates/ or Cargo.lock is newer than that file (so CI's
# downloaded artifacts are used as they are); FDPASS_MUSL_REBUILD=1 forces it.
# zig comes from PyPI (ziglang) and cargo-zigbuild from crates.io, into
# $FDPASS_TOOLS (default ~/.cache/fdpass). Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${FDPASS_TOOLS:-$HOME/.cache/fdpass}"
fail() { echo "scripts/musl-build.sh: $*" >&2; exit 1; }

[ $# -gt 0 ] || set -- x64

# Only what is missing or older than the sources is built.
stale=()
for arch in "$@"; do
  case "$arch" in x64 | arm64) ;; *) fail "unknown arch '$arch' (x64 or arm64)" ;; esac
  addon="fdpass.linux-$arch-musl.node"
  if [ "${FDPASS_MUSL_REBUILD:-0}" = 1 ] || [ ! -e "$addon" ] ||
    [ -n "$(find crates Cargo.lock Cargo.toml -newer "$addon" -type f -print -quit)" ]; then
    stale+=("$arch")
  fi
done

if [ "${#stale[@]}" -gt 0 ]; then
  mkdir -p "$tools/zig"
  if [ ! -x "$tools/zig/bin/zig" ]; then
    echo "== musl: installing zig (PyPI ziglang)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$tools/zig/py" ziglang >&2 || fail "pip install ziglang failed"
    mkdir -p "$tools/zig/bin"
    printf '#!/bin/sh\nPYTHONPATH="%s/zig/py" exec python3 -m ziglang "$@"\n' "$tools" >"$tools/zig/bin/zig"
    chmod +x "$tools/zig/bin/zig"
  fi
  export PATH="$tools/zig/bin:$HOME/.cargo/bin:$PATH"
  zig version >/dev/null || fail "zig does not run"
  command -v cargo-zigbuild >/dev/null || cargo install --quiet --locked cargo-zigbuild >&2 || fail "cargo install cargo-zigbuild failed"
  [ -d node_modules/@napi-rs/cli ] || fail "run npm ci first (needs @napi-rs/cli)"
fi

for arch in "${stale[@]}"; do
  case "$arch" in x64) target=x86_64-unknown-linux-musl ;; arm64) target=aarch64-unknown-linux-musl ;; esac
  rustup target list --installed | grep -qx "$target" ||
    rustup target add "$target" >&2 || fail "rustup target add $target failed"
  out="target/musl-out-$arch"
  rm -rf "$out"
  echo "== musl: napi build -x --target $target (zig $(zig version))" >&2
  # Output to a scratch directory: the committed binding.js/binding.d.ts stay untouched.
  npx napi build --platform --release --manifest-path crates/fdpass-napi/Cargo.toml --package fdpass-napi \
    --target "$target" -x --output-dir "$out" --no-js --dts "$PWD/$out/binding.d.ts" >&2 ||
    fail "the $target build failed"
  cp "$out/fdpass.linux-$arch-musl.node" .
done

for arch in "$@"; do
  addon="fdpass.linux-$arch-musl.node"
  machine=$([ "$arch" = x64 ] && echo 'x86-64' || echo 'AArch64')
  readelf -h "$addon" | grep -qi "Machine:.*$machine" || fail "$addon is not an $arch binary"
  needed=$(readelf -d "$addon" | grep NEEDED || true)
  echo "$needed" | grep -q '\[libc.so\]' || fail "$addon does not link musl's libc.so: $needed"
  echo "$needed" | grep -q 'libc.so.6' && fail "$addon links glibc's libc.so.6"
  readelf --wide --dyn-syms "$addon" | grep -q napi_register_module_v1 || fail "$addon does not export napi_register_module_v1"
  echo "musl build ok: $addon ($(stat -c %s "$addon") bytes; NEEDED: $(echo "$needed" | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' '))"
done
