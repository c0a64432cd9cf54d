#!/usr/bin/env bash
# The long randomized cluster fault test (docs/durability.md): the suite's
# `crates/natrix/tests/cluster_crash/soak.rs` with many more rounds. Three natrix-server processes,
# an R3 stream, a publisher on every node; each round one random fault (stream leader or a
# follower SIGKILLed and restarted, a node frozen with SIGSTOP, every node SIGKILLed at once),
# then every acknowledged publish is checked and every copy must catch up. The run prints its
# seed first; a failure names the round and the seed and keeps the stores and server logs.
#
#   scripts/cluster-chaos.sh                        # 30 rounds, a random seed
#   NATRIX_CHAOS_ROUNDS=200 scripts/cluster-chaos.sh
#   NATRIX_CHAOS_SEED=1234 scripts/cluster-chaos.sh   # replay a failing run's schedule of faults
#   NATRIX_CHAOS_SNAPSHOT_EVERY=200 scripts/cluster-chaos.sh   # snapshot every 200 entries, so
#                                                   # a node that was down catches up by snapshot
#   scripts/cluster-chaos.sh --release              # extra cargo flags go before `--`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export NATRIX_CHAOS_ROUNDS="${NATRIX_CHAOS_ROUNDS:-30}"
exec cargo test -p natrix --test cluster_crash "$@" -- --nocapture --exact \
    soak::random_faults_lose_no_acknowledged_publish
