#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, without touching the system's
# services: the reference nats-server (Debian's package, unpacked into target/test-deps) that the
# oracle tests compare natrix against. Idempotent; prints the path of the nats-server binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/target/test-deps"
bin="$dest/usr/sbin/nats-server"

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
    sudo="sudo"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# `apt-get download` needs package lists; refresh them once if the first try finds nothing.
if ! apt-get download -qq nats-server >/dev/null 2>&1; then
    $sudo apt-get update -qq >&2
    apt-get download -qq nats-server >&2
fi
mkdir -p "$dest"
dpkg-deb -x nats-server_*.deb "$dest"
"$bin" --version >&2
echo "$bin"
