#!/usr/bin/env bash
# Runs one natrix node with JetStream on a fresh Debian machine that has only the Rust toolchain:
# installs the C++/libclang build dependencies of the bundled RocksDB (scripts/install-build-deps.sh),
# builds in release mode and starts `natrix-server -js` with any extra nats-server-style flags
# ("$@", e.g. `-p 4222 -m 8222 -sd /var/lib/natrix`). Without `-sd`, the data goes to
# nats-server's default store directory, `<temp dir>/nats/jetstream`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-build-deps.sh
exec cargo run --release --locked --bin natrix-server -- -js "$@"
