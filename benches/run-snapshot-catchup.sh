#!/usr/bin/env bash
# Snapshot catch-up under load: a 3-node natrix cluster on loopback, an R3 file stream filled
# with --fill 512-byte messages through node 1 (its leader); node 3 is SIGKILLed, 30,000 more
# messages go in (the leader snapshots and purges its log past node 3), then node 3 restarts and
# can only catch up from a snapshot of the whole stream. One publish at a time on the leader
# measures the ack latency in each phase (benches/snapshot_catchup.py, nats-py from the
# project's venv). Needs `cargo build --release --workspace --bins` first.
#
# Usage: benches/run-snapshot-catchup.sh [--natrix BIN] [--fill N]
# Output: JSON lines on stdout; logs and stores in bench-results/catchup-<timestamp>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NATRIX="$ROOT/target/release/natrix-server"
FILL=200000
while (($#)); do
    case "$1" in
    --natrix) NATRIX=$2; shift 2 ;;
    --fill) FILL=$2; shift 2 ;;
    *) echo "usage: benches/run-snapshot-catchup.sh [--natrix BIN] [--fill N]" >&2; exit 2 ;;
    esac
done
[[ -x $NATRIX ]] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }
PYTHON=$("$ROOT/scripts/install-python-deps.sh")
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

OUT="$ROOT/bench-results/catchup-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/logs"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # The restarted node 3 was started by the Python side.
    [[ -f $OUT/n3.pid ]] && kill -KILL "$(cat "$OUT/n3.pid")" 2>/dev/null || true
}
trap cleanup EXIT

base=19700
for i in 1 2 3; do
    mkdir -p "$OUT/store/n$i"
    cluster_node_conf "n$i" catchup "$OUT/store/n$i" "$base" "$i" >"$OUT/n$i.conf"
    "$NATRIX" -c "$OUT/n$i.conf" >"$OUT/logs/n$i.log" 2>&1 &
    PIDS+=($!)
done
VICTIM_LOG="$OUT/logs/n3-restarted.log" timeout 600 "$PYTHON" "$ROOT/benches/snapshot_catchup.py" \
    "nats://127.0.0.1:$((base + 1))" "${PIDS[2]}" "$NATRIX -c $OUT/n3.conf" "$FILL" |
    tee "$OUT/results.jsonl" |
    while IFS= read -r line; do
        if [[ $line == *restarted_pid* ]]; then
            echo "$line" | sed 's/[^0-9]//g' >"$OUT/n3.pid"
        else
            echo "$line"
        fi
    done
echo "snapshots installed by the restarted node: $(grep -c 'installed a snapshot' "$OUT/logs/n3-restarted.log" || true)"
# Peak resident memory of the leader (it read and sent the snapshot) and of the restarted node.
echo "peak RSS: leader $(awk '/VmHWM/ {print $2, $3}' "/proc/${PIDS[0]}/status"), restarted node $(awk '/VmHWM/ {print $2, $3}' "/proc/$(cat "$OUT/n3.pid")/status")"
echo "results: $OUT/results.jsonl"
