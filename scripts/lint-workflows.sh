#!/usr/bin/env bash
# Lint .github/workflows/*.yml with actionlint; exit non-zero on any finding.
#
# actionlint is built from source through the Go module proxy the first time
# (needs `go` on PATH) and cached in $FDPASS_TOOLS (default
# ~/.cache/fdpass/bin). It is built with CGO_ENABLED=0, so the static binary
# also runs in the musl containers CI mounts it into. shellcheck and pyflakes
# integration is off so that the result does not depend on what else happens
# to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.7.12
bin="${FDPASS_TOOLS:-$HOME/.cache/fdpass/bin}"
actionlint="$bin/actionlint"

if [ ! -x "$actionlint" ] || [ "$("$actionlint" -version 2>/dev/null | head -n 1)" != "$version" ]; then
  if ! command -v go >/dev/null; then
    echo "lint-workflows: actionlint $version is not in $bin and go is not on PATH to build it" >&2
    exit 2
  fi
  mkdir -p "$bin"
  rm -f "$actionlint" # go install refuses to replace a file it did not build
  echo "lint-workflows: installing actionlint $version into $bin" >&2
  GOBIN="$bin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$version"
fi

shopt -s nullglob
files=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ "${#files[@]}" -eq 0 ]; then
  echo "lint-workflows: no workflow files in .github/workflows" >&2
  exit 1
fi
"$actionlint" -shellcheck= -pyflakes= "${files[@]}"
echo "lint-workflows: ${files[*]} passed actionlint $version"
