#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every unit, property, integration and oracle test.
# Needs only the Rust toolchain (and apt for the reference nats-server, fetched by
# scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NATS_SERVER_BIN="$(scripts/install-test-deps.sh)"
export NATS_SERVER_BIN
echo "reference server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
