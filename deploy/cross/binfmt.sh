#!/usr/bin/env bash
# Lets this x86_64 machine's Docker engine run linux/arm64 and linux/arm/v7 images: registers
# qemu-user-static with the kernel's binfmt_misc for aarch64 and 32-bit Arm ELF binaries, so that
# executing one (in a container or not) runs it under QEMU. Without this, `docker run --platform
# linux/arm64 ...` fails with "exec format error" and only the x86_64 image can run here.
#
#   sudo deploy/cross/binfmt.sh            # register (idempotent); prints what is registered
#   sudo deploy/cross/binfmt.sh --status   # what is registered, changes nothing
#   sudo deploy/cross/binfmt.sh --remove   # unregister the two handlers again
#
# What it changes: a running kernel setting of this machine, not a file. It mounts binfmt_misc on
# /proc/sys/fs/binfmt_misc if nothing is mounted there, and writes Debian's own registrations
# (/usr/lib/binfmt.d/qemu-aarch64.conf and qemu-arm.conf, from qemu-user-static) with the flag F
# added: F makes the kernel open the interpreter now, so it works inside a container's root
# filesystem, where /usr/libexec/qemu-binfmt does not exist. Nothing survives a reboot; --remove
# undoes it at once. Other handlers are left alone. Needs qemu-user-static
# (deploy/cross/setup.sh installs it).
set -euo pipefail

die() { echo "binfmt.sh: $*" >&2; exit 1; }
log() { echo "binfmt.sh: $*"; }

mode=register
case "${1:-}" in
    "") ;;
    --status) mode=status ;;
    --remove) mode=remove ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (--status, --remove)" ;;
esac
(($# <= 1)) || die "one argument at most"
[[ "$(id -u)" == 0 ]] || die "must run as root (binfmt_misc registration)"

dir=/proc/sys/fs/binfmt_misc
handlers=(qemu-aarch64 qemu-arm)

status() {
    local h
    for h in "${handlers[@]}"; do
        if [[ -e "$dir/$h" ]]; then
            log "$h: $(head -1 "$dir/$h"), $(grep -E '^(interpreter|flags)' "$dir/$h" | tr '\n' ' ')"
        else
            log "$h: not registered"
        fi
    done
}

mounted() { grep -qs " $dir binfmt_misc " /proc/mounts; }

if [[ "$mode" == status ]]; then
    mounted || { log "binfmt_misc is not mounted on $dir: nothing registered"; exit 0; }
    status
    exit 0
fi

if ! mounted; then
    [[ "$mode" == remove ]] && { log "binfmt_misc is not mounted: nothing to remove"; exit 0; }
    grep -qw binfmt_misc /proc/filesystems || modprobe binfmt_misc 2>/dev/null \
        || die "this kernel has no binfmt_misc file system"
    mount -t binfmt_misc binfmt_misc "$dir" || die "cannot mount binfmt_misc on $dir"
    log "mounted binfmt_misc on $dir"
fi

for h in "${handlers[@]}"; do
    if [[ "$mode" == remove ]]; then
        if [[ -e "$dir/$h" ]]; then
            echo -1 >"$dir/$h"
            log "$h: removed"
        fi
        continue
    fi
    conf="/usr/lib/binfmt.d/$h.conf"
    [[ -r "$conf" ]] || die "$conf missing: install qemu-user-static (deploy/cross/setup.sh)"
    if [[ -e "$dir/$h" ]]; then
        if grep -q '^flags: .*F' "$dir/$h"; then
            continue
        fi
        # Registered without F (by systemd-binfmt, say): containers cannot use it; replace it.
        echo -1 >"$dir/$h"
    fi
    # The line is ':name:type:offset:magic:mask:interpreter:flags'; add F to the flags.
    line="$(grep -v '^#' "$conf" | head -1)"
    flags="${line##*:}"
    [[ "$flags" == *F* ]] || line="${line}F"
    interpreter="$(cut -d: -f7 <<<"$line")"
    [[ -x "$interpreter" ]] || die "$h: interpreter $interpreter missing (qemu-user-static)"
    printf '%s' "$line" >"$dir/register" || die "$h: the kernel refused the registration"
    log "$h: registered ($interpreter)"
done
status
