#!/usr/bin/env bash
# Installs what the power-cut test needs, idempotently: qemu (host package), busybox-static and
# e2fsprogs (host packages, the guest's userland and the data disk's mkfs), Debian's kernel
# unpacked into target/powercut/kernel (never installed on the host), the reference nats-server
# (scripts/install-test-deps.sh) and a Python venv with nats-py for the publisher and the checker.
# Prints nothing but progress on stderr; safe to run again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$root/target/powercut"
mkdir -p "$cache"

sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
    sudo="sudo"
fi

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx insmod || need+=(busybox-static)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
if ((${#need[@]})); then
    echo "setup: apt-get install ${need[*]}" >&2
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# busybox (dynamic) may already be there without the applets we need; the static one is certain.
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    $sudo apt-get install -y -qq --no-install-recommends busybox-static >&2
fi

# The kernel: the package that linux-image-amd64 points at, unpacked, not installed.
if [[ ! -f "$cache/kernel/vmlinuz" ]]; then
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [[ -z "$pkg" ]]; then
        $sudo apt-get update -qq >&2
        pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    fi
    echo "setup: unpacking $pkg into $cache/kernel" >&2
    work="$(mktemp -d)"
    chmod 755 "$work"
    (cd "$work" && apt-get download -qq "$pkg" >&2)
    rm -rf "$cache/kernel"
    mkdir -p "$cache/kernel/root"
    dpkg-deb -x "$work"/linux-image-*.deb "$cache/kernel/root"
    rm -rf "$work"
    ver="$(ls "$cache/kernel/root/lib/modules")"
    echo "$ver" >"$cache/kernel/version"
    cp "$cache/kernel/root/boot/vmlinuz-$ver" "$cache/kernel/vmlinuz"
fi

# The reference server, unpacked by the script the oracle tests use.
"$root/scripts/install-test-deps.sh" >"$cache/nats-server.path"

# Publisher and checker dependencies.
if [[ ! -x "$cache/venv/bin/python" ]] || ! "$cache/venv/bin/python" -c 'import nats' 2>/dev/null; then
    echo "setup: python venv with nats-py" >&2
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install -q nats-py >&2
fi

echo "setup: ready (kernel $(cat "$cache/kernel/version"), $(qemu-system-x86_64 --version | head -1))" >&2
