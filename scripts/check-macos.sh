#!/usr/bin/env bash
# Type-check and lint the macOS code paths (the cfg(target_os = "macos")
# halves of crates/fdpass-core/src/platform.rs and friends) from Linux.
# Nothing is linked or run: that needs a Mac (the GitHub workflow's macOS
# jobs). `cargo check` for a foreign target needs only rustup's std for it.
# This caught macOS code that no longer compiled against nix 0.32.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(x86_64-apple-darwin aarch64-apple-darwin)
rustup target add "${targets[@]}" >/dev/null
for t in "${targets[@]}"; do
  echo "clippy --target $t"
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/check-macos" cargo clippy --quiet --target "$t" --workspace --all-targets -- -D warnings
done
