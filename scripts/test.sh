#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit, property, integration and oracle test, and
# the official Python (nats-py) and Go (nats.go) clients against natrix and nats-server. Needs only
# the Rust toolchain and apt: scripts/install-test-deps.sh fetches the reference nats-server,
# scripts/install-python-deps.sh the Python environment and scripts/install-go-deps.sh Go and nats.go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The bundled RocksDB (natrix-store) needs a C++ compiler and libclang to build.
scripts/install-build-deps.sh

NATS_SERVER_BIN="$(scripts/install-test-deps.sh)"
export NATS_SERVER_BIN
echo "reference server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

cargo fmt --all -- --check
# One clean build: incremental compilation only adds GBs of cache a single build never reads.
export CARGO_INCREMENTAL=0
# One build both tests and lints every target: clippy-driver (what `cargo clippy` runs) is the
# compiler of the workspace's own crates, with `-D warnings`, so dependencies (RocksDB's C++ above
# all) are built once instead of once for the tests and again for a separate `cargo clippy` check
# build. `--all-targets` covers what `cargo clippy --all-targets` lints (libs, bins, tests, benches,
# examples) and runs the criterion benches once, in test mode; doctests run on their own.
clippy_driver() { rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true; }
CLIPPY_DRIVER="$(clippy_driver)"
if [[ -z "$CLIPPY_DRIVER" ]]; then
    rustup component add clippy
    CLIPPY_DRIVER="$(clippy_driver)"
fi
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# The official Python client against natrix and the reference nats-server, side by side.
PYTHON="$(scripts/install-python-deps.sh)"
# Built by the workspace test build above (the natrix package's integration tests need it). A
# `cargo build -p natrix` here would select fewer packages, so build-time dependencies would
# unify to other features and RocksDB's C++ would be compiled once more.
NATRIX_BIN="$PWD/target/debug/natrix-server"
if [[ ! -x "$NATRIX_BIN" ]]; then
    echo "missing $NATRIX_BIN after the workspace test build" >&2
    exit 1
fi
export NATRIX_BIN
# pytest exits 5 when it collected no tests; with `set -e` that fails the script, as it should.
"$PYTHON" -m pytest -q tests/clients/python

# The official Go client (nats.go, Debian's package) against natrix and the reference nats-server,
# built offline in GOPATH mode; everything Go writes stays under target/test-deps.
GO="$(scripts/install-go-deps.sh)"
deps="$PWD/target/test-deps"
go_log="$deps/go-test.log"
if ! (cd tests/clients/go && env GO111MODULE=off GOFLAGS=-count=1 \
    GOPATH="$deps/gopath:/usr/share/gocode" GOCACHE="$deps/gocache" \
    "$GO" test -v ./...) >"$go_log" 2>&1; then
    cat "$go_log"
    echo "Go client suite failed (log: $go_log)" >&2
    exit 1
fi
go_passed="$(grep -c -- '--- PASS' "$go_log" || true)"
if [[ "$go_passed" -eq 0 ]]; then
    cat "$go_log"
    echo "Go client suite ran no test" >&2
    exit 1
fi
grep -E '^(ok|FAIL)' "$go_log"
echo "Go client suite: $go_passed tests and subtests passed"
