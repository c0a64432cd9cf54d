#!/usr/bin/env bash
# Installs what the C client compatibility suite (tests/clients/c, driven by
# tests/clients/python/test_c_client.py) needs: Debian's build of the official C client nats.c
# (libnats-dev: headers, libnats.so and its pkg-config file), a C compiler and pkg-config.
# Idempotent: installs only what is missing, refreshing the package lists at most once.
# Diagnostics go to stderr.
set -euo pipefail

packages=(libnats-dev gcc libc6-dev pkg-config)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo="sudo"
    fi
    echo "installing ${missing[*]}" >&2
    install() {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2
    }
    # Package lists may be missing or stale on a fresh machine: refresh them once on failure.
    if ! install; then
        $sudo apt-get update -qq >&2
        install
    fi
fi

if [[ ! -f /usr/include/nats/nats.h ]]; then
    echo "nats.c headers not found at /usr/include/nats/nats.h" >&2
    exit 1
fi
command -v gcc >/dev/null || { echo "no gcc after installing it" >&2; exit 1; }
