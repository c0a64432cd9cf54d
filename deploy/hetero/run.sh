#!/usr/bin/env bash
# The heterogeneous cluster test: one natrix cluster of an x86_64 node (native), an aarch64 node
# (qemu-aarch64-static) and an armv7 node (qemu-arm-static) on loopback. Checks every node's arch
# tag, arch-tag placement (R1 lands on the tagged node; R3 on one tag is refused as nats-server
# refuses it), then acknowledged publishing through every node into an R3 stream while the stream
# leader is SIGKILLed and restarted, and finally that the three replicas hold byte-identical
# copies with every acknowledged message present exactly once at its acknowledged sequence.
# The steps are in deploy/hetero/hetero.py (nats-py, from the project's venv); results and timings
# in docs/deploy.md ("Heterogeneous cluster test").
#
#   deploy/hetero/run.sh [hetero.py options, e.g. --kills 3 --concurrency 4]
#
# As root, it first runs deploy/cross/setup.sh (idempotent) and builds any missing binary with
# deploy/cross/build.sh (target/<triple>/release/natrix-server; aarch64 takes about half an hour
# on 2 cores, armv7 longer). Overrides:
#   NATRIX_BIN_X86_64, NATRIX_BIN_AARCH64, NATRIX_BIN_ARMV7   binaries to use instead
#   HETERO_WORKDIR   configs, stores and logs (default target/hetero/run-<time>; kept on failure,
#                    the stores removed after a pass unless HETERO_KEEP=1)
# Ports: 9 consecutive free ports probed in 17400-17999, all on 127.0.0.1. Exits non-zero on any
# violation; every node is killed on exit, whatever happens.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { echo "run.sh: $*" >&2; exit 1; }

declare -A triple=(
    [x86_64]=x86_64-unknown-linux-gnu
    [aarch64]=aarch64-unknown-linux-gnu
    [armv7]=armv7-unknown-linux-gnueabihf
)
declare -A machine=([x86_64]="X86-64" [aarch64]="AArch64" [armv7]="ARM")
declare -A bin=(
    [x86_64]="${NATRIX_BIN_X86_64:-$root/target/${triple[x86_64]}/release/natrix-server}"
    [aarch64]="${NATRIX_BIN_AARCH64:-$root/target/${triple[aarch64]}/release/natrix-server}"
    [armv7]="${NATRIX_BIN_ARMV7:-$root/target/${triple[armv7]}/release/natrix-server}"
)

# 1. Toolchain and emulators (setup.sh needs root; without root they must be there already).
if [[ "$(id -u)" == 0 ]]; then
    "$root/deploy/cross/setup.sh"
else
    for tool in qemu-aarch64-static qemu-arm-static readelf; do
        command -v "$tool" >/dev/null || die "$tool missing: run deploy/cross/setup.sh as root"
    done
fi

# 2. Binaries: build what is missing, in sequence (never two cargo builds at once).
for arch in x86_64 aarch64 armv7; do
    if [[ ! -x "${bin[$arch]}" ]]; then
        [[ "${bin[$arch]}" == "$root/target/${triple[$arch]}/release/natrix-server" ]] \
            || die "${bin[$arch]} (from NATRIX_BIN_*) does not exist"
        echo "run.sh: no $arch binary yet, building it (deploy/cross/build.sh $arch)"
        "$root/deploy/cross/build.sh" "$arch"
    fi
    found="$(readelf -h "${bin[$arch]}" | sed -n 's/^ *Machine: *//p')"
    [[ "$found" == *"${machine[$arch]}"* ]] || die "${bin[$arch]} is built for '$found', not $arch"
    echo "run.sh: $arch: ${bin[$arch]}"
done

# 3. nats-py from the project's venv.
python="$("$root/scripts/install-python-deps.sh")"

workdir="${HETERO_WORKDIR:-$root/target/hetero/run-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$workdir"
: >"$workdir/pids"

# Whatever happens (failure, ^C), no node survives the test: hetero.py kills its nodes itself;
# this catches the case where it was killed first. Only pids it started, and only while they
# still run natrix-server.
cleanup() {
    local pid
    while read -r pid; do
        [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || continue
        if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q natrix-server; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$workdir/pids"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
"$python" "$here/hetero.py" --workdir "$workdir" \
    --bin-x86-64 "${bin[x86_64]}" --bin-aarch64 "${bin[aarch64]}" --bin-armv7 "${bin[armv7]}" \
    --result "$workdir/result.json" "$@" || status=$?

if ((status == 0)); then
    if [[ "${HETERO_KEEP:-0}" != 1 ]]; then
        rm -rf "$workdir"/n*/store
    fi
    echo "run.sh: passed; logs and result.json in $workdir"
else
    echo "run.sh: FAILED (exit $status); configs, stores, logs and result.json kept in $workdir" >&2
fi
exit "$status"
