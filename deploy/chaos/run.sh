#!/usr/bin/env bash
# The chaos suite (docs/reliability.md): builds natrix-server and natrix-chaos, then runs seeded
# chaos runs: a 3-node (or --nodes 5) cluster in network namespaces of its own, a workload of
# publishers, consumers and KV compare-and-set writers, a nemesis of kills, pauses, partitions,
# restarts and damaged files, and a checker of the recorded history. Each run prints its seed
# first and a summary line last; the script exits non-zero if any run broke a rule or failed.
#
#   deploy/chaos/run.sh                          # one run, a random seed, release build
#   deploy/chaos/run.sh --runs 100               # seeds S..S+99 (S random unless --seed), a tally
#   deploy/chaos/run.sh --seed 1234              # replay a run's schedule of faults
#   deploy/chaos/run.sh --debug --runs 3 --nodes 5 --duration 60 --keep
#
# Options of this script: --debug (debug build, shared with the test suite's; the default is
# --release), --release. Everything else goes to natrix-chaos (`--help` lists it: --seed,
# --runs, --duration SECS, --nodes 3|5, --replicas 3|5, --workdir DIR, --keep, --history PATH,
# --loopback, --plan).
#
# Needs root with `ip` and `nft` for the namespaces and partitions; otherwise the nodes run on
# loopback and the partition faults are skipped (the summary says so). Every run is bounded and
# removes its processes and namespaces on exit, error or Ctrl-C; a run killed outright leaves
# namespaces named nxc<pid>-*, which the next run removes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

profile=release
args=()
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --release) profile=release ;;
        *) args+=("$arg") ;;
    esac
done

build=(cargo build --locked -p natrix --bin natrix-server -p natrix-chaos --bin natrix-chaos)
if [[ "$profile" == release ]]; then
    build+=(--release)
fi
# The same environment as scripts/test.sh, so that the debug artifacts are the test suite's;
# one cargo at a time on this machine (other builds share target/).
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
env_vars=(CARGO_INCREMENTAL=0)
if [[ -n "$clippy_driver" ]]; then
    env_vars+=(RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
        CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
fi
echo "building ($profile): ${build[*]}" >&2
flock /tmp/natrix-cargo.lock env "${env_vars[@]}" "${build[@]}" >&2

exec "target/$profile/natrix-chaos" --server-bin "target/$profile/natrix-server" "${args[@]}"
