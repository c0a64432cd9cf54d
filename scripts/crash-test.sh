#!/usr/bin/env bash
# The long SIGKILL crash test (docs/durability.md): the same test as the suite's
# `crates/natrix/tests/jetstream_crash.rs`, with many more kills. Every round prints its numbers
# and the run prints its seed first; a failure names the seed and keeps the store and server log.
#
#   scripts/crash-test.sh                      # 50 rounds per variant, a random seed
#   NATRIX_CRASH_ROUNDS=200 scripts/crash-test.sh
#   NATRIX_CRASH_SEED=1234 scripts/crash-test.sh   # replay a failing run's schedule
#   scripts/crash-test.sh --release            # extra cargo flags go before `--`
#
# The default profile shares the suite's build (a release build compiles RocksDB's C++ once more,
# ~10 min on 2 cores) and publishes fewer messages per kill than `--release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export NATRIX_CRASH_ROUNDS="${NATRIX_CRASH_ROUNDS:-50}"
# The two variants one after the other: each SIGKILLs its own server, and on 2 cores two at once
# would mostly measure each other.
exec cargo test -p natrix --test jetstream_crash "$@" -- --nocapture --test-threads=1
