#!/usr/bin/env bash
# A musl runtime for this glibc Linux x86_64 machine: Bun's musl build, run
# by musl's own dynamic loader with a musl C++ runtime beside it. Nothing is
# installed into the system; everything goes to $FDPASS_TOOLS/musl-<arch>
# (default ~/.cache/fdpass), where scripts/runtimes.js keeps its runtimes.
#
#   scripts/musl-runtime.sh x64|arm64      prints the path of a `bun` launcher
#
# The launcher runs `<musl libc.so> --library-path <lib> <bun> "$@"` (for
# arm64 under qemu-aarch64-static), so that a process it starts is the same
# runtime again. Its parts, each at a pinned version:
#   - Bun's musl build from the npm registry (@oven/bun-linux-<arch>-musl);
#   - musl's loader from Debian 13's `musl` .deb (apt-get download with a
#     sources list of its own, unpacked with dpkg-deb -x): Bun needs musl
#     >= 1.2.4 (DT_RELR relocations), which Debian 12 does not have;
#   - libstdc++ and libgcc_s built for musl, from a musllinux wheel on PyPI
#     (numpy bundles them in numpy.libs/); libgcc_s keeps its hashed name,
#     which libstdc++ asks for.
# Any part that cannot be fetched fails the run, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

BUN_VERSION=1.4.5
MUSL_DEB_VERSION=1.2.5-3.1~deb13u1
NUMPY_VERSION=2.3.5
DEBIAN_SUITE=trixie
# sha256 of the .debs, so that a changed archive is noticed rather than run.
declare -A MUSL_DEB_SHA256=(
  [amd64]=fd4231e1c189c0ebe01182747f83817593fefa7f6b690c484410646288b60058
  [arm64]=46cf1fcaa2d49d1573ef0ceabdb36e04a359a9a37d8e4304024f9018682e3f35
)

arch="${1:-}"
fail() { echo "scripts/musl-runtime.sh ($arch): $*" >&2; exit 1; }
case "$arch" in
  x64) bun_pkg=@oven/bun-linux-x64-musl deb_arch=amd64 triple=x86_64-linux-musl wheel_platform=musllinux_1_2_x86_64 emulator= ;;
  arm64) bun_pkg=@oven/bun-linux-aarch64-musl deb_arch=arm64 triple=aarch64-linux-musl wheel_platform=musllinux_1_2_aarch64 emulator=qemu-aarch64-static ;;
  *) echo "usage: scripts/musl-runtime.sh x64|arm64" >&2; exit 2 ;;
esac
[ "$(uname -sm)" = "Linux x86_64" ] || fail "runs on Linux x86_64 only (this is $(uname -sm))"

tools="${FDPASS_RUNTIMES_DIR:-${FDPASS_TOOLS:-$HOME/.cache/fdpass}}"
dir="$tools/musl-$arch"
launcher="$dir/bin/bun"
stamp="$dir/.fdpass-version"
want="bun $BUN_VERSION, musl $MUSL_DEB_VERSION, numpy $NUMPY_VERSION"
if [ -x "$launcher" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$launcher"
  exit 0
fi

if [ -n "$emulator" ] && ! command -v "$emulator" >/dev/null; then
  fail "$emulator is missing: apt-get install qemu-user-static (scripts/arm64.sh does, as root)"
fi
for tool in apt-get dpkg-deb npm python3 unzip; do
  command -v "$tool" >/dev/null || fail "$tool is missing (needed to fetch the musl runtime)"
done

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/lib" "$dir/bun" "$dir/root" "$dir/download"
dl="$dir/download"

# 1. Bun's musl build. npm refuses to install a musl package on glibc (EBADPLATFORM): pack and unpack.
echo "== musl-$arch: $bun_pkg@$BUN_VERSION (npm)" >&2
tarball=$(cd "$dl" && npm pack --silent --loglevel=error "$bun_pkg@$BUN_VERSION") ||
  fail "downloading $bun_pkg@$BUN_VERSION from the npm registry failed"
tar -xzf "$dl/$tarball" -C "$dir/bun" --strip-components=1 || fail "unpacking $tarball failed"
[ -f "$dir/bun/bin/bun" ] || fail "$bun_pkg@$BUN_VERSION has no bin/bun"
chmod +x "$dir/bun/bin/bun"

# 2. musl's loader from Debian 13, with apt state of its own (no system change).
echo "== musl-$arch: musl:$deb_arch $MUSL_DEB_VERSION (Debian $DEBIAN_SUITE)" >&2
apt_dir="$tools/apt-$DEBIAN_SUITE"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || fail "$keyring is missing (apt-get install debian-archive-keyring): it signs Debian $DEBIAN_SUITE"
echo "deb [arch=amd64,arm64 signed-by=$keyring] http://deb.debian.org/debian $DEBIAN_SUITE main" >"$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
  -o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root
)
deb="$dl/musl_${MUSL_DEB_VERSION}_$deb_arch.deb"
(cd "$dl" && apt-get "${apt_opts[@]}" -qq download "musl:$deb_arch=$MUSL_DEB_VERSION" >/dev/null 2>"$dl/apt.err") ||
  {
    apt-get "${apt_opts[@]}" -qq update >&2 || fail "apt-get update of Debian $DEBIAN_SUITE failed (deb.debian.org)"
    (cd "$dl" && apt-get "${apt_opts[@]}" -qq download "musl:$deb_arch=$MUSL_DEB_VERSION" >/dev/null 2>"$dl/apt.err")
  } || fail "apt-get download musl:$deb_arch=$MUSL_DEB_VERSION from Debian $DEBIAN_SUITE failed: $(grep -v '^W:' "$dl/apt.err" | head -n 3)"
deb=$(ls "$dl"/musl_*_"$deb_arch".deb)
echo "${MUSL_DEB_SHA256[$deb_arch]}  $deb" | sha256sum -c --quiet - >&2 || fail "$deb does not have the pinned sha256"
dpkg-deb -x "$deb" "$dir/root" || fail "dpkg-deb -x $deb failed"
loader="$dir/root/usr/lib/$triple/libc.so"
[ -f "$loader" ] || fail "the musl .deb has no usr/lib/$triple/libc.so"

# 3. libstdc++ and libgcc_s for musl, from a musllinux wheel.
echo "== musl-$arch: numpy $NUMPY_VERSION $wheel_platform wheel (PyPI) for libstdc++/libgcc_s" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --platform "$wheel_platform" \
  --python-version 3.11 --dest "$dl" "numpy==$NUMPY_VERSION" >&2 ||
  fail "pip download numpy==$NUMPY_VERSION for $wheel_platform failed (PyPI)"
wheel=$(ls "$dl"/numpy-"$NUMPY_VERSION"-*-"$wheel_platform".whl)
unzip -q -j -o "$wheel" 'numpy.libs/libstdc++*' 'numpy.libs/libgcc_s*' -d "$dl/libs" || fail "$wheel has no numpy.libs/libstdc++ or libgcc_s"
stdcxx=$(ls "$dl"/libs/libstdc++-*.so.6*)
mv "$stdcxx" "$dir/lib/libstdc++.so.6"
gcc_s=$(readelf -d "$dir/lib/libstdc++.so.6" | sed -n 's/.*NEEDED.*\[\(libgcc_s[^]]*\)\].*/\1/p')
[ -n "$gcc_s" ] && [ -f "$dl/libs/$gcc_s" ] || fail "$wheel has no $gcc_s, which its libstdc++ needs"
mv "$dl/libs/$gcc_s" "$dir/lib/"

# 4. The launcher.
{
  echo '#!/bin/sh'
  echo "# Bun $BUN_VERSION for linux-$arch-musl, on musl $MUSL_DEB_VERSION (scripts/musl-runtime.sh)."
  [ -n "$emulator" ] && echo 'unset QEMU_LD_PREFIX'
  echo "exec $emulator \"$loader\" --library-path \"$dir/lib\" \"$dir/bun/bin/bun\" \"\$@\""
} >"$launcher"
chmod +x "$launcher"
version=$("$launcher" --version 2>&1) || fail "Bun does not start on musl: $version"
[ "$version" = "$BUN_VERSION" ] || fail "the launcher printed '$version', not Bun $BUN_VERSION"
rm -rf "$dl"
echo "$want" >"$stamp"
echo "== musl-$arch: Bun $version on musl ready: $launcher" >&2
echo "$launcher"
