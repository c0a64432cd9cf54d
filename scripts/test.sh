#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit, property, integration and oracle test, and
# the official Python (nats-py), C (nats.c) and Go (nats.go) clients against natrix and nats-server. Needs only
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

# Which kinds of server the cluster-mode passes below run: natrix only, unless
# NATRIX_TEST_KINDS=all asks for the reference server's clusters too.
cluster_kinds_py() { [[ "${NATRIX_TEST_KINDS:-}" == all ]] && echo "natrix or nats" || echo natrix; }
cluster_kinds_go() { [[ "${NATRIX_TEST_KINDS:-}" == all ]] && echo '^TestJetStream' || echo '^TestJetStream/^natrix$'; }

# The official Python client against natrix and the reference nats-server, side by side; the
# same pytest run drives the official C client (nats.c, Debian's libnats-dev) through
# tests/clients/python/test_c_client.py.
PYTHON="$(scripts/install-python-deps.sh)"
scripts/install-c-deps.sh
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
# The JetStream tests again with three clustered natrix servers, the client on the first: streams
# land on any node, so requests, publishes and deliveries cross nodes. Only natrix here, to keep
# CI short: the reference server passes these too (checked by hand: NATRIX_TEST_KINDS=all, see
# docs/compatibility.md "Cluster mode").
NATRIX_PY_JS_CLUSTER=1 "$PYTHON" -m pytest -q -k "$(cluster_kinds_py)" tests/clients/python/test_jetstream.py

# The official Go client (nats.go, Debian's package) against natrix and the reference nats-server,
# built offline in GOPATH mode; everything Go writes stays under target/test-deps.
GO="$(scripts/install-go-deps.sh)"
deps="$PWD/target/test-deps"

# go_suite LABEL [go test args...]: runs the suite (environment as given), shows its log on
# failure, and fails if no test passed.
go_suite() {
    local label="$1"
    shift
    local log="$deps/go-test-$label.log"
    if ! (cd tests/clients/go && env GO111MODULE=off GOFLAGS=-count=1 \
        GOPATH="$deps/gopath:/usr/share/gocode" GOCACHE="$deps/gocache" \
        "$GO" test -v "$@" ./...) >"$log" 2>&1; then
        cat "$log"
        echo "Go client suite ($label) failed (log: $log)" >&2
        exit 1
    fi
    local passed
    passed="$(grep -c -- '--- PASS' "$log" || true)"
    if [[ "$passed" -eq 0 ]]; then
        cat "$log"
        echo "Go client suite ($label) ran no test" >&2
        exit 1
    fi
    grep -E '^(ok|FAIL)' "$log"
    echo "Go client suite ($label): $passed tests and subtests passed"
}

go_suite all
# The JetStream tests again against three clustered natrix servers (as for Python above).
NATRIX_GO_JS_CLUSTER=1 go_suite jetstream-cluster -run "$(cluster_kinds_go)"
