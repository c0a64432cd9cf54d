#!/usr/bin/env bash
# Installs what the Go client compatibility suite (tests/clients/go) needs: Debian's Go toolchain
# (golang-go) and the official Go client nats.go with its dependencies (nkeys, nuid) as Debian
# sources under /usr/share/gocode, so the suite builds offline in GOPATH mode without a module
# proxy. Idempotent: installs only what is missing, refreshing the package lists at most once.
# Prints the path of the go binary on stdout; diagnostics go to stderr.
set -euo pipefail

packages=(golang-go golang-github-nats-io-go-nats-dev)
nats_go=/usr/share/gocode/src/github.com/nats-io/nats.go

go_binary() {
    if command -v go >/dev/null; then
        command -v go
    elif [[ -x /usr/lib/go/bin/go ]]; then
        echo /usr/lib/go/bin/go
    else
        return 1
    fi
}

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

if [[ ! -f "$nats_go/nats.go" ]]; then
    echo "nats.go sources not found at $nats_go" >&2
    exit 1
fi
go="$(go_binary)" || { echo "no go binary after installing golang-go" >&2; exit 1; }
echo "$go"
