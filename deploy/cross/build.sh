#!/usr/bin/env bash
# Builds natrix-server in release for one architecture on this x86_64 machine and puts it where
# deploy/docker/build-local.sh and deploy/hetero/run.sh look for it:
# target/<triple>/release/natrix-server.
#
#   deploy/cross/build.sh x86_64|aarch64|armv7
#
#   x86_64   the rustup stable toolchain (the workspace's normal one), --target x86_64-unknown-linux-gnu
#   aarch64  Debian's rustc 1.96 (`+debian-web`, it ships the aarch64 std), aarch64-unknown-linux-gnu
#   armv7    the same rustc building std from source: RUSTC_BOOTSTRAP=1 ... -Z build-std,
#            armv7-unknown-linux-gnueabihf
#
# Needs the cross toolchain: run deploy/cross/setup.sh (as root) first. Linkers and QEMU runners
# come from deploy/cross/cargo-config.toml (passed with --config; there is no repo-wide
# .cargo/config.toml). Cargo runs under `nice -n 19` in its own target dir, target/cross (env
# CARGO_TARGET_DIR overrides), so it neither competes for the CPU with nor invalidates the
# default target/ of other builds on the machine. The build is --locked.
# Measured on 2 cores: see docs/deploy.md ("Cross builds for Arm").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { echo "build.sh: $*" >&2; exit 1; }

(($# == 1)) || die "usage: $0 x86_64|aarch64|armv7"
arch="$1"
toolchain=()
build_std=()
case "$arch" in
    x86_64|amd64) arch=x86_64; triple=x86_64-unknown-linux-gnu; toolchain=(+stable) ;;
    aarch64|arm64) arch=aarch64; triple=aarch64-unknown-linux-gnu; toolchain=(+debian-web) ;;
    armv7|armhf|arm) arch=armv7; triple=armv7-unknown-linux-gnueabihf; toolchain=(+debian-web)
        build_std=(-Z build-std) ;;
    *) die "unknown arch '$arch' (x86_64, aarch64, armv7)" ;;
esac

if [[ "$arch" != x86_64 ]]; then
    rustup toolchain list | grep -q '^debian-web' \
        || die "rustup toolchain debian-web missing: run deploy/cross/setup.sh as root first"
fi
command -v file >/dev/null || die "'file' missing: run deploy/cross/setup.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/cross}"
config="$here/cargo-config.toml"
built="$CARGO_TARGET_DIR/$triple/release/natrix-server"
dest="$root/target/$triple/release/natrix-server"

echo "build.sh: $arch ($triple), toolchain ${toolchain[*]}, target dir $CARGO_TARGET_DIR"
start=$(date +%s)
(
    cd "$root"
    if [[ "$arch" == armv7 ]]; then
        # -Z build-std is unstable; Debian's rustc is a stable build, so allow it explicitly.
        export RUSTC_BOOTSTRAP=1
        # librocksdb-sys 0.19 defines HAVE_UINT128_EXTENSION for every non-MSVC target, but
        # 32-bit Arm gcc has no __uint128_t (util/fastrange.h fails to compile); RocksDB has a
        # portable fallback. Flags from this variable come after the build script's own -D
        # options, so -U wins. (It already defines _FILE_OFFSET_BITS=64 on 32-bit targets, so
        # RocksDB handles files over 2 GiB.)
        export CXXFLAGS_armv7_unknown_linux_gnueabihf="-UHAVE_UINT128_EXTENSION"
    fi
    # No debug info: the workspace's release profile keeps line tables for profiling, which
    # also compiles RocksDB's C++ with -g (a 490 MB binary, and a slower build). Symbols stay,
    # so a panic's backtrace still names its functions.
    export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
    nice -n 19 cargo "${toolchain[@]}" --config "$config" build --release --locked \
        -p natrix --bin natrix-server --target "$triple" "${build_std[@]}"
)
elapsed=$(($(date +%s) - start))

[[ -x "$built" ]] || die "cargo finished but $built does not exist"
mkdir -p "$(dirname "$dest")"
cp -f "$built" "$dest.tmp"
mv -f "$dest.tmp" "$dest"
echo "build.sh: built $arch in $((elapsed / 60)) m $((elapsed % 60)) s"
echo "build.sh: binary: $dest ($(stat -c %s "$dest") bytes)"
file "$dest"
