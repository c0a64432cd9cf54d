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
# Every target is tested (`--all-targets` runs the criterion benches once, in test mode);
# `--all-targets` leaves out doctests, which run on their own. Known cost: clippy's check build
# still compiles RocksDB's C++ a second time (its build-script run hashes differently from the
# test build's; ~8 min on 2 cores), so a clean run takes about 25 minutes.
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
cargo clippy --workspace --all-targets --locked --profile test -- -D warnings

# The official Python client against natrix and the reference nats-server, side by side.
PYTHON="$(scripts/install-python-deps.sh)"
cargo build --profile test --bin natrix-server --locked
NATRIX_BIN="$PWD/target/debug/natrix-server"
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
