#!/usr/bin/env bash
# The power-cut test: a JetStream server runs inside a qemu virtual machine with its store on a
# virtio disk (cache=none: the guest's writes and flushes go straight to the host file); the host
# publishes with acks, records every acknowledged message, and cuts the power by killing qemu with
# SIGKILL at a seeded random moment. The guest's page cache dies with it; only what the guest wrote
# to its disk stays. The next boot (same disk) checks that every acknowledged message is there.
# Rounds accumulate on one disk: boot, check all earlier rounds, publish, cut; a final boot checks
# everything. Exits 1 if any acknowledged message is missing or changed.
#
#   deploy/powercut/run.sh [--server natrix|nats-server] [--rounds N] [--seed S]
#                          [--cut-min SECONDS] [--cut-max SECONDS] [--port 4800-4899]
#                          [--sync-interval always|DURATION]   (natrix only: the negative control)
#   env: NATRIX_SERVER_BIN  a natrix-server binary to test instead of building the release one
#        POWERCUT_ACCEL     tcg (default) or kvm
#        POWERCUT_CONCURRENCY  publishes in flight (default 16)
#        POWERCUT_STRACE=1  count qemu's writes and fdatasyncs on the disk file (strace-N.txt)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$root/target/powercut"

server=natrix
rounds=3
seed=1
cut_min=2
cut_max=30
port=4850
sync_interval=""
while (($#)); do
    case "$1" in
        --server) server="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --cut-min) cut_min="$2"; shift 2 ;;
        --cut-max) cut_max="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --sync-interval) sync_interval="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
case "$server" in natrix|nats-server) ;; *) echo "run.sh: --server natrix|nats-server" >&2; exit 64 ;; esac
if [[ -n "$sync_interval" && "$server" != natrix ]]; then
    echo "run.sh: --sync-interval is natrix's option (nats-server 2.9 has none; it fsyncs every 2 min)" >&2
    exit 64
fi
if ((port < 4800 || port > 4899)); then
    echo "run.sh: --port must be within 4800-4899" >&2
    exit 64
fi
if ((rounds < 1 || rounds > 100)); then
    echo "run.sh: --rounds must be within 1-100" >&2
    exit 64
fi

"$here/setup.sh"
py="$cache/venv/bin/python"
kernel="$cache/kernel/vmlinuz"
kver="$(cat "$cache/kernel/version")"

# --- the server binary ------------------------------------------------------------------------
if [[ "$server" == natrix ]]; then
    bin="${NATRIX_SERVER_BIN:-}"
    if [[ -z "$bin" ]]; then
        (cd "$root" && cargo build --release --workspace --bins >&2)
        bin="$root/target/release/natrix-server"
    fi
else
    bin="$(cat "$cache/nats-server.path")"
fi
[[ -x "$bin" ]] || { echo "run.sh: no server binary at $bin" >&2; exit 1; }
version="$("$bin" --version 2>&1 | head -1 || true)"

# --- the initramfs: busybox, the server, its shared libraries, the modules, init ---------------
stage="$cache/initramfs-$server"
rm -rf "$stage"
mkdir -p "$stage"/{bin,etc,proc,sys,dev,mnt,tmp,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
# Without debug info: the initramfs lives in the guest's RAM.
prog=natrix-server
[[ "$server" == nats-server ]] && prog=nats-server
strip -o "$stage/bin/$prog" "$bin" 2>/dev/null || cp "$bin" "$stage/bin/$prog"
cp "$here/init.sh" "$stage/init"
if [[ -n "$sync_interval" ]]; then
    # init passes it with -c: e.g. "2m" acknowledges before fsync, as nats-server does.
    printf 'jetstream {\n  sync_interval: "%s"\n}\n' "$sync_interval" >"$stage/etc/server.conf"
fi
chmod 755 "$stage/init"
# A dynamically linked binary brings its libraries (and the loader) at the paths ldd names.
if ldd "$bin" >/dev/null 2>&1; then
    ldd "$bin" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
fi
# Debian's kernel has virtio and ext4 as modules: load them, dependencies first, from .modinfo.
"$py" - "$cache/kernel/root/lib/modules/$kver" "$stage" <<'EOF'
import os, re, shutil, sys
moddir, stage = sys.argv[1], sys.argv[2]
paths = {}
for d, _, files in os.walk(os.path.join(moddir, "kernel")):
    for f in files:
        if f.endswith(".ko"):
            paths[f[:-3].replace("-", "_")] = os.path.join(d, f)
def deps(name):
    data = open(paths[name], "rb").read()
    m = re.search(rb"\x00depends=([^\x00]*)\x00", data)
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []
order = []
def visit(name):
    if name in order:
        return
    for d in deps(name):
        visit(d)
    order.append(name)
# crc32c_generic: ext4's checksums ask the crypto API for crc32c, and nothing would autoload it.
for want in ["crc32c_generic", "virtio_pci", "virtio_blk", "virtio_net", "ext4"]:
    visit(want)
with open(os.path.join(stage, "etc/modules.order"), "w") as out:
    for name in order:
        shutil.copy(paths[name], os.path.join(stage, "lib/modules", name + ".ko"))
        out.write(name + ".ko\n")
EOF
initramfs="$cache/initramfs-$server.cpio.gz"
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$initramfs")

# --- the virtual machine -----------------------------------------------------------------------
# TCG by default: on this project's machines /dev/kvm exists (nested, under Firecracker) but a KVM
# guest aborts on MSR 0x10a with -cpu host/max and hangs after the BIOS with other models.
# POWERCUT_ACCEL=kvm uses KVM where it works.
accel="${POWERCUT_ACCEL:-tcg}"
cpu=max
[[ "$accel" == kvm ]] && cpu=host,-arch-capabilities
boot_timeout=180
[[ "$accel" == kvm ]] && boot_timeout=60

run="$cache/runs/$server${sync_interval:+-sync$sync_interval}-seed$seed"
rm -rf "$run"
mkdir -p "$run"
disk="$run/disk.raw"
qemu-img create -q -f raw "$disk" 2G
mkfs.ext4 -q -F -L powercut "$disk"
acks="$run/acks.txt"
: >"$acks"
echo 0 >"$run/next-id"

qemu_pid=""
stop_qemu() {
    if [[ -n "$qemu_pid" ]]; then
        kill -KILL "$qemu_pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    qemu_pid=""
}
trap stop_qemu EXIT
trap 'exit 143' TERM INT

boot() {
    local n="$1"
    rm -f "$run/qemu.pid"
    # cache=none: O_DIRECT on the host file, and the guest sees a volatile write cache, so its
    # fsync becomes a virtio flush that qemu turns into fdatasync on the host file.
    # -daemonize: qemu is no child of this shell, so its SIGKILL is the power cut and no job report.
    qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 2 -m 1024 -display none -no-reboot \
        -daemonize -pidfile "$run/qemu.pid" -serial "file:$run/boot-$n.log" -monitor none \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "console=ttyS0 loglevel=4 panic=-1 powercut.server=$server" \
        -drive "file=$disk,format=raw,if=virtio,cache=none" \
        -nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:$port-:4222" \
        </dev/null >>"$run/qemu.log" 2>&1
    qemu_pid="$(cat "$run/qemu.pid")"
    if [[ -n "${POWERCUT_STRACE:-}" ]]; then
        # Evidence that guest flushes reach the host file: qemu's fdatasync calls, counted.
        strace -f -c -e trace=fdatasync,fsync,pwrite64,pwritev,io_submit -p "$qemu_pid" \
            -o "$run/strace-$n.txt" 2>/dev/null &
    fi
}

cuts=($("$py" -c "import random,sys; r=random.Random($seed); print(' '.join(f'{r.uniform($cut_min,$cut_max):.1f}' for _ in range($rounds)))"))
url="nats://127.0.0.1:$port"
echo "powercut: $server ($version${sync_interval:+, sync_interval $sync_interval}), $rounds rounds, seed $seed, cuts ${cuts[*]} s, accel $accel, run dir $run"

for ((r = 1; r <= rounds; r++)); do
    boot "$r"
    start=$SECONDS
    if ((r > 1)); then
        # An intermediate check: earlier losses show per round; the final check decides.
        timeout $((boot_timeout + 120)) "$py" "$here/load.py" check --url "$url" --ack-log "$acks" \
            --boot "$r" --ready-timeout "$boot_timeout" --qemu-pid "$qemu_pid" || true
    fi
    first_id="$(cat "$run/next-id")"
    timeout $((boot_timeout + 120)) "$py" "$here/load.py" publish --url "$url" --ack-log "$acks" \
        --round "$r" --first-id "$first_id" --next-id-file "$run/next-id" \
        --qemu-pid "$qemu_pid" --cut-after "${cuts[$((r - 1))]}" \
        --concurrency "${POWERCUT_CONCURRENCY:-16}" --ready-timeout "$boot_timeout" || {
        echo "powercut: round $r: publishing failed; guest console:" >&2
        tail -n 30 "$run/boot-$r.log" >&2
        exit 1
    }
    stop_qemu
    grep -ahom1 'POWERCUT-DISK.*' "$run/boot-$r.log" | sed "s/^/powercut: round $r: /" || true
    echo "powercut: round $r took $((SECONDS - start)) s"
done

final=$((rounds + 1))
boot "$final"
status=0
timeout $((boot_timeout + 300)) "$py" "$here/load.py" check --url "$url" --ack-log "$acks" \
    --boot "$final" --ready-timeout "$boot_timeout" --qemu-pid "$qemu_pid" --summary "$run/summary.json" || status=$?
stop_qemu
if ((status == 0)); then
    echo "powercut: PASS: $server${sync_interval:+ (sync_interval $sync_interval)} lost no acknowledged message ($rounds power cuts, seed $seed)"
else
    echo "powercut: FAIL: $server${sync_interval:+ (sync_interval $sync_interval)} lost acknowledged messages ($rounds power cuts, seed $seed; logs in $run)"
fi
exit "$status"
