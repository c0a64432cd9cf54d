#!/usr/bin/env bash
# Side-by-side quorum benchmark: a 3-node natrix cluster and a 3-node nats-server cluster on
# loopback, each with an R3 file stream; `natrix-bench js-pub` with 256 publishes in flight and
# with 1 (once with the stream leader on node 1, once elsewhere, so every publish is forwarded)
# and `natrix-bench js-consume` (a pull consumer with explicit acks) through node 1, and
# core pub/sub across nodes (`natrix-bench pubsub`, publisher on node 1, subscriber on node 2).
# natrix acknowledges after the entry is fsynced on a quorum; nats-server (its default) after the
# write reached a quorum's memory (`--nats-sync always`: after it fsynced, like natrix). One run
# per server and scenario,
# servers alternating. Needs `cargo build --release --workspace --bins` first.
#
# Usage: benches/run-cluster.sh [--nats BIN] [--nats-sync INTERVAL] [--count N] [--pub1-count N]
# Output: bench-results/cluster-<timestamp>/{results.jsonl,logs/}.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NATS_BIN=$(command -v nats-server || true)
COUNT=100000
PUB1_COUNT=2000
CORE_MSGS=2000000
NATS_SYNC=""
while (($#)); do
    case "$1" in
    --nats) NATS_BIN=$2; shift 2 ;;
    --nats-sync) NATS_SYNC=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --pub1-count) PUB1_COUNT=$2; shift 2 ;;
    *) echo "usage: benches/run-cluster.sh [--nats BIN] [--nats-sync INTERVAL] [--count N] [--pub1-count N]" >&2; exit 2 ;;
    esac
done
NATRIX="$ROOT/target/release/natrix-server"
BENCH="$ROOT/target/release/natrix-bench"
[[ -x $NATRIX && -x $BENCH ]] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }
[[ -x $NATS_BIN ]] || { echo "no nats-server (pass --nats BIN)" >&2; exit 1; }

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

OUT="$ROOT/bench-results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/logs"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap cleanup EXIT

# start_cluster LABEL BIN BASEPORT: three nodes, clients on BASE+1..3, routes on BASE+11..13.
start_cluster() {
    local label=$1 bin=$2 base=$3 i sync=""
    if [[ $label == nats ]]; then sync=$NATS_SYNC; fi
    for i in 1 2 3; do
        local dir="$OUT/store/$label/n$i" conf="$OUT/$label-n$i.conf"
        mkdir -p "$dir"
        cluster_node_conf "$label-n$i" bench "$dir" "$base" "$i" "$sync" >"$conf"
        "$bin" -c "$conf" >"$OUT/logs/$label-n$i.log" 2>&1 &
        PIDS+=($!)
    done
}

# run LABEL PORT SCENARIO IN_FLIGHT COUNT LEADER: retries while the cluster forms (bounded).
run() {
    local label=$1 port=$2 scenario=$3 in_flight=$4 count=$5 leader=$6 attempt
    local placement=()
    if [[ $scenario == js-pub ]]; then placement=(--leader "$leader"); fi
    for attempt in $(seq 1 30); do
        if "$BENCH" "$scenario" --server "nats://127.0.0.1:$port" --label "$label" --replicas 3 \
            --in-flight "$in_flight" --count "$count" "${placement[@]}" --json >>"$OUT/results.jsonl" \
            2>>"$OUT/logs/bench.log"; then
            return 0
        fi
        sleep 1
    done
    echo "run-cluster.sh: $label $scenario/$in_flight failed 30 times" >&2
    return 1
}

for scenario in "js-pub 256 $COUNT any" "js-pub 1 $PUB1_COUNT here" "js-pub 1 $PUB1_COUNT elsewhere" \
    "js-consume 256 $COUNT any"; do
    read -r name in_flight count leader <<<"$scenario"
    start_cluster natrix "$NATRIX" 19200
    run natrix-r3 19201 "$name" "$in_flight" "$count" "$leader"
    cleanup
    rm -rf "$OUT/store/natrix"
    start_cluster nats "$NATS_BIN" 19300
    run "nats-$("$NATS_BIN" --version | awk '{print $2}')${NATS_SYNC:+-sync-$NATS_SYNC}-r3" 19301 "$name" "$in_flight" "$count" "$leader"
    cleanup
    rm -rf "$OUT/store/nats"
done
# Core pub/sub across nodes: publisher on node 1, subscriber on node 2 (every message crosses
# the route), no JetStream involved.
for label_bin_base in "natrix $NATRIX 19200" "nats $NATS_BIN 19300"; do
    read -r label bin base <<<"$label_bin_base"
    start_cluster "$label" "$bin" "$base"
    name=natrix
    if [[ $label == nats ]]; then name="nats-$("$NATS_BIN" --version | awk '{print $2}')"; fi
    for attempt in $(seq 1 30); do
        if "$BENCH" pubsub --server "nats://127.0.0.1:$((base + 1))" \
            --sub-server "nats://127.0.0.1:$((base + 2))" --label "$name-cluster" \
            --msgs "$CORE_MSGS" --size 128 --json >>"$OUT/results.jsonl" 2>>"$OUT/logs/bench.log"; then
            break
        fi
        sleep 1
    done
    cleanup
    rm -rf "$OUT/store/$label"
done
echo "results: $OUT/results.jsonl"
