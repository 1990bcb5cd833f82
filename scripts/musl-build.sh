#!/usr/bin/env bash
# Build the linux-x64-musl addon here, the way CI's build matrix does (napi
# build -x: cargo-zigbuild with zig as the linker), and check that the result
# is a musl binary: it needs musl's libc.so, not glibc's libc.so.6, and
# exports the Node-API entry point. Nothing on this machine can load it (no
# musl Node), so it is only built; the node:alpine CI jobs run it.
#
# zig comes from PyPI (ziglang) and cargo-zigbuild from crates.io, into
# $FDPASS_TOOLS (default ~/.cache/fdpass). Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${FDPASS_TOOLS:-$HOME/.cache/fdpass}"
fail() { echo "scripts/musl-build.sh: $*" >&2; exit 1; }

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
rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
  rustup target add x86_64-unknown-linux-musl >&2 || fail "rustup target add x86_64-unknown-linux-musl failed"

out=target/musl-out
rm -rf "$out"
echo "== musl: napi build -x --target x86_64-unknown-linux-musl (zig $(zig version))" >&2
npx napi build --platform --release --manifest-path crates/fdpass-napi/Cargo.toml --package fdpass-napi \
  --target x86_64-unknown-linux-musl -x --output-dir "$out" --no-js --dts "$PWD/$out/binding.d.ts" >&2 ||
  fail "the musl build failed"
addon="$out/fdpass.linux-x64-musl.node"
needed=$(readelf -d "$addon" | grep NEEDED || true)
echo "$needed" | grep -q '\[libc.so\]' || fail "$addon does not link musl's libc.so: $needed"
echo "$needed" | grep -q 'libc.so.6' && fail "$addon links glibc's libc.so.6"
readelf --wide --dyn-syms "$addon" | grep -q napi_register_module_v1 || fail "$addon does not export napi_register_module_v1"
echo "musl build ok: $addon ($(stat -c %s "$addon") bytes; NEEDED: $(echo "$needed" | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' '))"
