#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit, property, integration and oracle test, and
# the official Python client (nats-py) against natrix and nats-server. Needs only the Rust
# toolchain and apt: scripts/install-test-deps.sh fetches the reference nats-server and
# scripts/install-python-deps.sh the Python environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NATS_SERVER_BIN="$(scripts/install-test-deps.sh)"
export NATS_SERVER_BIN
echo "reference server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The official Python client against natrix and the reference nats-server, side by side.
PYTHON="$(scripts/install-python-deps.sh)"
cargo build --bin natrix-server --locked
NATRIX_BIN="$PWD/target/debug/natrix-server"
export NATRIX_BIN
# pytest exits 5 when it collected no tests; with `set -e` that fails the script, as it should.
"$PYTHON" -m pytest -q tests/clients/python
