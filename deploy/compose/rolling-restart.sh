#!/usr/bin/env bash
# The StatefulSet life cycle, proved in Compose: a rolling restart under publish load.
# Starts the 3-node cluster of docker-compose.yml from the local image, waits until every node's
# /healthz says ok, creates an R3 stream and publishes with acks (rolling.py, nats-py from the
# project venv, connected to all three nodes), then restarts the nodes one at a time (stop with
# SIGTERM and a grace period, stay down --down seconds, start), each time waiting for the node's
# /healthz before the next. The default downtime (3 s) is longer than the Raft election timeout
# (1-2 s), as a Kubernetes pod's re-creation is: a stopped leader is replaced, not resumed.
# Then it checks that every acknowledged message is in the stream exactly once, at the sequence
# it was acknowledged with, and that every node's copy agrees; it reports acked, lost,
# duplicates and the longest time without an acknowledgement (the write stall).
# Exits 1 on any loss, duplicate or misplacement, or a stall above --max-stall.
#
#   deploy/compose/rolling-restart.sh [--rounds N] [--max-stall SECONDS] [--warmup SECONDS]
#                                     [--cooldown SECONDS] [--down SECONDS] [--concurrency N] [--keep]
#                                     [--mixed-arch]
#   env: NATRIX_IMAGE  image to run (default natrix:local; deploy/docker/build-local.sh makes it)
#
# --mixed-arch adds docker-compose.mixed-arch.yml: n1 runs natrix:local-x86_64, n2
# natrix:local-aarch64, n3 natrix:local-armv7 (build-local.sh x86_64 aarch64 armv7; on an x86_64
# host the engine runs the Arm ones under QEMU once deploy/cross/binfmt.sh registered it), and
# each node's /varz must carry its own arch: tag. Health waits are then 300 s (emulation is slow).
#
# Uses the Compose project natrix-rr (network and volumes natrix-rr_*), host ports 14222-14224
# and 18222-18224 on 127.0.0.1; removes all of it on exit (--keep leaves the logs in /tmp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
project=natrix-rr
image="${NATRIX_IMAGE:-natrix:local}"
nodes=(n1 n2 n3)
client_ports=(14222 14223 14224)
monitor_ports=(18222 18223 18224)

rounds=1
max_stall=10
warmup=5
cooldown=5
down=3
concurrency=8
keep=0
mixed_arch=0
health_timeout=90
stop_timeout=30
while (($#)); do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --max-stall) max_stall="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --cooldown) cooldown="$2"; shift 2 ;;
        --down) down="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --mixed-arch) mixed_arch=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "rolling-restart.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
if ((rounds < 1 || rounds > 20)); then
    echo "rolling-restart.sh: --rounds must be within 1-20" >&2
    exit 64
fi

say() { echo "rolling-restart: $*"; }
die() { echo "rolling-restart: $*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    command -v docker-compose >/dev/null || die "neither 'docker compose' nor docker-compose found"
    compose_cmd=(docker-compose)
fi
compose_files=(-f "$here/docker-compose.yml")
images=("$image")
node_archs=()
if ((mixed_arch)); then
    compose_files+=(-f "$here/docker-compose.mixed-arch.yml")
    images=("${NATRIX_IMAGE_X86_64:-natrix:local-x86_64}" "${NATRIX_IMAGE_AARCH64:-natrix:local-aarch64}"
        "${NATRIX_IMAGE_ARMV7:-natrix:local-armv7}")
    node_archs=(x86_64 aarch64 armv7)
    health_timeout=300
fi
compose() { NATRIX_IMAGE="$image" "${compose_cmd[@]}" -p "$project" "${compose_files[@]}" "$@"; }

for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 \
        || die "no image $img here: build it with deploy/docker/build-local.sh (NATRIX_BIN=... for a binary on disk)"
done
py="$("$root/scripts/install-python-deps.sh")"

work="$(mktemp -d /tmp/natrix-rr.XXXXXX)"
publisher_pid=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$publisher_pid" ]] && kill -0 "$publisher_pid" 2>/dev/null; then
        kill "$publisher_pid" 2>/dev/null || true
        wait "$publisher_pid" 2>/dev/null || true
    fi
    compose logs --no-color >"$work/cluster.log" 2>&1 || true
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    if ((rc != 0 || keep)); then
        echo "rolling-restart: logs kept in $work (cluster.log, publisher.log, acks.log)" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

servers=""
monitor_urls=""
for i in "${!nodes[@]}"; do
    servers+="${servers:+,}nats://127.0.0.1:${client_ports[$i]}"
    monitor_urls+="${monitor_urls:+,}http://127.0.0.1:${monitor_ports[$i]}"
done

elapsed_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Polls the node's /healthz until it answers {"status":"ok"}; bounded by health_timeout.
wait_healthy() {
    local port="$1" deadline=$((SECONDS + health_timeout))
    while ((SECONDS < deadline)); do
        if curl -fsS --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null | grep -q '"ok"'; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

publisher_alive() {
    kill -0 "$publisher_pid" 2>/dev/null || die "the publisher exited early: $(tail -5 "$work/publisher.log")"
}

compose down -v --remove-orphans >/dev/null 2>&1 || true
say "starting ${nodes[*]} from ${images[*]}"
started="$EPOCHREALTIME"
compose up -d >"$work/up.log" 2>&1 || die "compose up failed: $(cat "$work/up.log")"
for i in "${!nodes[@]}"; do
    wait_healthy "${monitor_ports[$i]}" || die "${nodes[$i]} not healthy after ${health_timeout} s"
done
say "all nodes healthy $(elapsed_since "$started") s after start"
for i in "${!node_archs[@]}"; do
    tags="$(curl -fsS --max-time 5 "http://127.0.0.1:${monitor_ports[$i]}/varz" \
        | "$py" -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("tags") or []))')" \
        || die "${nodes[$i]}: /varz unreadable"
    [[ " $tags " == *" arch:${node_archs[$i]} "* ]] \
        || die "${nodes[$i]} should run ${node_archs[$i]} but its /varz tags are: $tags"
    say "${nodes[$i]}: /varz tags $tags"
done

"$py" "$here/rolling.py" publish --servers "$servers" --concurrency "$concurrency" \
    --ack-log "$work/acks.log" --summary "$work/summary.json" \
    --stop-file "$work/stop" --ready-file "$work/ready" >"$work/publisher.log" 2>&1 &
publisher_pid=$!
for _ in $(seq 1 600); do
    [[ -e "$work/ready" ]] && break
    publisher_alive
    sleep 0.2
done
[[ -e "$work/ready" ]] || die "the publisher did not start within 120 s"
cat "$work/publisher.log"
say "publishing; restarts begin after ${warmup} s"
sleep "$warmup"

restarts=0
for round in $(seq 1 "$rounds"); do
    for i in "${!nodes[@]}"; do
        node="${nodes[$i]}"
        leader="$("$py" "$here/rolling.py" leader --servers "$servers")"
        t0="$EPOCHREALTIME"
        compose stop -t "$stop_timeout" "$node" >/dev/null 2>&1 || die "compose stop $node failed"
        stop_s="$(elapsed_since "$t0")"
        sleep "$down"
        t1="$EPOCHREALTIME"
        compose start "$node" >/dev/null 2>&1 || die "compose start $node failed"
        wait_healthy "${monitor_ports[$i]}" || die "$node not healthy ${health_timeout} s after its restart"
        restarts=$((restarts + 1))
        say "round $round: $node restarted (stream leader before: $leader): stopped in ${stop_s} s, down ${down} s, healthy $(elapsed_since "$t1") s after start"
        publisher_alive
    done
done

say "all restarts done; publishing ${cooldown} s more"
sleep "$cooldown"
touch "$work/stop"
for _ in $(seq 1 900); do
    kill -0 "$publisher_pid" 2>/dev/null || break
    sleep 0.2
done
if kill -0 "$publisher_pid" 2>/dev/null; then
    die "the publisher did not stop within 180 s of the stop file"
fi
wait "$publisher_pid" || die "the publisher failed: $(tail -5 "$work/publisher.log")"
publisher_pid=""
tail -n +2 "$work/publisher.log"

status=0
"$py" "$here/rolling.py" check --servers "$servers" --monitor-urls "$monitor_urls" \
    --ack-log "$work/acks.log" --summary "$work/summary.json" \
    --max-stall "$max_stall" --result "$work/result.json" || status=$?
if ((status == 0)); then
    say "PASS: $restarts restarts, nothing acknowledged lost or duplicated, stall within ${max_stall} s"
else
    say "FAIL (see the violations above)"
fi
exit "$status"
