#!/usr/bin/env bash
# Install fdpass as a user would: pack the root package and this platform's
# binary package, install both tarballs into a fresh directory outside the
# repo with no Rust on PATH, and pass a file descriptor between two
# processes there. Needs `npm run build` first. Prints "verify-pack: ok".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

target="$(node -p "require('$repo/package.json').napi.binaryName").linux-x64-gnu"
if [ "$(uname -sm)" != "Linux x86_64" ] || ldd --version 2>&1 | grep -qi musl; then
  echo "verify-pack: skipped: this script packs linux-x64-gnu, and this is $(uname -sm)$(ldd --version 2>&1 | grep -qi musl && echo ' with musl')"
  exit 0
fi

mkdir -p "$work/platform" "$work/app"
cp -r "$repo/npm/linux-x64-gnu/." "$work/platform/"
cp "$repo/$target.node" "$work/platform/"
(cd "$work/platform" && npm pack --silent --pack-destination "$work" >/dev/null)
(cd "$repo" && npm pack --silent --pack-destination "$work" >/dev/null)

# Nothing from the repo or the Rust toolchain is reachable from here on.
cd "$work/app"
export PATH="$(dirname "$(command -v node)"):/usr/bin:/bin"
command -v cargo >/dev/null && { echo "verify-pack: cargo is still on PATH"; exit 1; }
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$work"/fdpass-0*.tgz "$work"/fdpass-linux-x64-gnu-*.tgz
[ ! -e node_modules/fdpass/target ] && [ ! -e node_modules/fdpass/crates ] || { echo "verify-pack: the package ships build inputs"; exit 1; }
ls node_modules/fdpass/*.node >/dev/null 2>&1 && { echo "verify-pack: the root package ships a binary"; exit 1; }

cat > pass.js <<'JS'
const { socketpair, adopt } = require('fdpass')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
if (process.argv[2] === 'child') {
  const s = adopt(3)
  s.receive().then(({ fds: [f] }) => {
    const buf = Buffer.alloc(32)
    const n = fs.readSync(f.fd, buf, 0, 32, 0)
    return s.send(buf.subarray(0, n)).then(() => s.close())
  })
} else {
  fs.writeFileSync('hello.txt', 'passed between processes')
  const [a, b] = socketpair()
  spawn(process.execPath, [__filename, 'child'], { stdio: ['inherit', 'inherit', 'inherit', b.fd] })
  b.close()
  const fd = fs.openSync('hello.txt', 'r')
  a.send('file', [fd]).then(() => a.receive()).then((m) => {
    if (m.data.toString() !== 'passed between processes') throw new Error('wrong reply: ' + m.data)
    console.log('verify-pack: ok (' + m.data + ')')
    a.close()
  })
}
JS
node pass.js
