#!/usr/bin/env bash
# Validate .github/workflows with actionlint, installed through the Go
# module proxy into a cache directory when it is missing. Exit 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.7.7
bin="${FDPASS_TOOLS:-$HOME/.cache/fdpass/bin}"
if [ ! -x "$bin/actionlint" ] || ! "$bin/actionlint" -version | grep -q "${version#v}"; then
  mkdir -p "$bin"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$version"
fi
"$bin/actionlint" -shellcheck= .github/workflows/*.yml
echo "lint-workflows: .github/workflows/*.yml passed actionlint $version"
