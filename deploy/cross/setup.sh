#!/usr/bin/env bash
# Installs the toolchain that cross-builds natrix-server for aarch64 and armv7 on an x86_64
# Debian 12 machine, and the QEMU user-mode emulators that run the Arm binaries here:
# Debian's rustc-web/cargo-web 1.96 (it ships an aarch64 standard library and the std source for
# armv7's -Z build-std), linked into rustup as the toolchain `debian-web`; the cross gcc/g++ and
# libc for aarch64 and armhf; qemu-user-static; clang/libclang (RocksDB's bindgen); protoc.
#
#   sudo deploy/cross/setup.sh          (as root, non-interactive, idempotent)
#
# Skips every step already done, so it is cheap to call before each build (deploy/cross/build.sh
# and deploy/hetero/run.sh do). Only the arm64 foreign architecture is added to dpkg, never armhf:
# the mirror's armhf security index is stale, breaks `apt-get update`, and then the arm64 standard
# library cannot be installed either (see /work/shared/cross-arm.md). armv7's standard library is
# built from rust-web-src by cargo -Z build-std instead.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }
log() { echo "setup.sh: $*"; }

[[ "$(id -u)" == 0 ]] || die "must run as root (apt-get, dpkg --add-architecture)"
[[ "$(uname -m)" == x86_64 ]] || die "written for an x86_64 build machine, this is $(uname -m)"
command -v apt-get >/dev/null || die "needs a Debian/Ubuntu machine (apt-get)"
export DEBIAN_FRONTEND=noninteractive

packages=(
    rustc-web cargo-web libstd-rust-web-dev:arm64 rust-web-src
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross
    qemu-user-static file clang libclang-dev protobuf-compiler binutils
)

# 1. dpkg architecture arm64 (for libstd-rust-web-dev:arm64), and no armhf.
if dpkg --print-foreign-architectures | grep -qx armhf; then
    die "dpkg has the foreign architecture armhf: its stale security index breaks apt-get update; remove it (dpkg --remove-architecture armhf) and rerun"
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding dpkg architecture arm64"
    dpkg --add-architecture arm64
fi

# 2. Packages: install only those missing (dpkg-query status "install ok installed").
missing=()
for p in "${packages[@]}"; do
    status="$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    # A newly added arch needs fresh indexes (its packages are missing then, so this runs).
    timeout 600 apt-get update -q || die "apt-get update failed"
    timeout 1800 apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed"
else
    log "packages already installed"
fi

# 3. Debian's rustc 1.96 as the rustup toolchain `debian-web` (offline: a link to /usr).
command -v rustup >/dev/null || die "rustup not found (the workspace's stable toolchain comes from rustup)"
[[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] || die "/usr/bin/rustc or /usr/bin/cargo missing after install"
if rustup toolchain list | grep -q '^debian-web'; then
    log "rustup toolchain debian-web already linked"
else
    log "linking rustup toolchain debian-web -> /usr"
    rustup toolchain link debian-web /usr
fi

# 4. Check what the builds rely on.
aarch64_std="$(ls -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib 2>/dev/null || true)"
[[ -n "$aarch64_std" ]] || die "no aarch64 standard library under /usr/lib/rustlib (libstd-rust-web-dev:arm64)"
src_dir="$(rustc +debian-web --print sysroot)/lib/rustlib/src/rust/library"
[[ -d "$src_dir" ]] || die "no standard library source at $src_dir (rust-web-src), armv7 cannot use -Z build-std"
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ arm-linux-gnueabihf-gcc \
    arm-linux-gnueabihf-g++ qemu-aarch64-static qemu-arm-static clang file readelf; do
    command -v "$tool" >/dev/null || die "$tool not found after install"
done
log "ready: $(rustc +debian-web --version), $(qemu-aarch64-static --version | head -1)"
