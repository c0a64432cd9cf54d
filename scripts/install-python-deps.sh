#!/usr/bin/env bash
# Creates the Python environment the client compatibility suite (tests/clients/python) runs in:
# a venv in target/test-deps/venv with the pinned nats-py, pytest and kubernetes-validate (the
# Kubernetes manifest validator; it bundles the API schemas, so validation needs no network).
# Installs Debian's python3-venv first if this Python cannot make a venv. Idempotent: reinstalls only when
# requirements.txt changed. Prints the venv's python path on stdout; diagnostics go to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/test-deps/venv"
requirements="$root/tests/clients/python/requirements.txt"
python="$venv/bin/python"
stamp="$venv/.requirements.txt"

if [[ -x "$python" ]] && cmp -s "$requirements" "$stamp"; then
    echo "$python"
    exit 0
fi

sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
    sudo="sudo"
fi

mkdir -p "$root/target/test-deps"
if ! command -v python3 >/dev/null || ! python3 -m venv --clear "$venv" >&2; then
    echo "python3 -m venv failed; installing python3-venv" >&2
    $sudo apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    python3 -m venv --clear "$venv" >&2
fi
"$python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$stamp"
echo "$python"
