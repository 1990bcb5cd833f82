#!/usr/bin/env bash
# Publish fdpass: the platform packages (npm/<platform>, one binary each)
# and then the root package, whose optionalDependencies name them at the
# same version; without those, `npm install fdpass` installs no binary.
# The publish job of .github/workflows/CI.yml runs this script, and
# scripts/release-rehearsal.sh runs it against a local registry: one source.
#
#   scripts/publish.sh [npm publish flags, e.g. --provenance]
#
# Run in a checkout with `npm ci` and `npm run build:ts` done and the
# binaries of every target in package.json "napi.targets" in artifacts/ (as
# download-artifact leaves them; `napi artifacts` moves them into npm/). It
# edits package.json and npm/ in place (a CI checkout, or the rehearsal's
# copy). The registry and its token come from npm's own configuration. A
# version with a prerelease part (1.2.0-rc.1) goes under the dist-tag `next`.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "scripts/publish.sh: $*" >&2; exit 1; }

publish_flags=("$@")

[ -e dist/index.js ] || fail "dist/ is missing: run npm run build:ts first"

npx napi create-npm-dirs
npx napi artifacts
# Checks that every platform package has its binary, sets each to the root
# version and writes the root's optionalDependencies. --skip-optional-publish:
# the packages are published below, with the flags given (provenance in CI).
npx napi pre-publish -t npm --skip-optional-publish --no-gh-release

version=$(node -p 'require("./package.json").version')
platforms=$(node -p 'Object.keys(require("./package.json").optionalDependencies || {}).join(" ")')
[ -n "$platforms" ] || fail "napi pre-publish wrote no optionalDependencies into package.json"
tag=latest
case "$version" in *-*) tag=next ;; esac
for name in $platforms; do
  dir="npm/${name#fdpass-}"
  [ "$(node -p "require('./$dir/package.json').version")" = "$version" ] || fail "$dir is not at version $version"
  echo "== publish $name@$version ($tag)"
  (cd "$dir" && npm publish --access public --tag "$tag" "${publish_flags[@]}")
done
echo "== publish fdpass@$version ($tag), optionalDependencies: $platforms"
npm publish --access public --tag "$tag" "${publish_flags[@]}"
