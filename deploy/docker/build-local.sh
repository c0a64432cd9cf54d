#!/usr/bin/env bash
# Builds the natrix container images here, without any registry or base image: each image is
# FROM scratch with a root filesystem staged from a natrix-server binary on disk, its shared
# libraries and dynamic loader (found with readelf, so foreign-arch binaries work too), a minimal
# /etc/passwd with the unprivileged user 65532, the default config and an empty /data.
#
#   deploy/docker/build-local.sh [x86_64|aarch64|armv7 ...]    (default: the host's arch)
#
# Tags natrix:<version>-<arch> and natrix:local-<arch> for every arch (the compose files use the
# latter), and natrix:local for the host's arch. Each image is then started once to check its
# default configuration: always for the host's arch, and for an Arm arch when the kernel runs
# that arch's binaries under QEMU (deploy/cross/binfmt.sh registers it), else the check is skipped
# and says so.
# Binaries: target/<triple>/release/natrix-server (deploy/cross/build.sh puts them there).
# Libraries: the host's /lib/<multiarch> for the host arch, the cross sysroot
# /usr/<multiarch>/lib (Debian's libc6-dev-<arch>-cross, libstdc++6-<arch>-cross) otherwise.
#
#   env: NATRIX_BIN    binary for the host's arch instead of target/<triple>/release/natrix-server
#        NATRIX_IMAGE  repository name of the images (default: natrix)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="${NATRIX_IMAGE:-natrix}"
stage_root="$root/target/docker-local"
runtime_uid=65532
max_libraries=64

die() { echo "build-local.sh: $*" >&2; exit 1; }

canonical_arch() {
    case "$1" in
        x86_64|amd64) echo x86_64 ;;
        aarch64|arm64) echo aarch64 ;;
        armv7|armv7l|armhf|arm) echo armv7 ;;
        *) return 1 ;;
    esac
}

# Sets triple, platform, multiarch and elf_machine (readelf -h's "Machine:") for an arch.
arch_facts() {
    case "$1" in
        x86_64) triple=x86_64-unknown-linux-gnu; platform=linux/amd64
                multiarch=x86_64-linux-gnu; elf_machine="X86-64" ;;
        aarch64) triple=aarch64-unknown-linux-gnu; platform=linux/arm64
                 multiarch=aarch64-linux-gnu; elf_machine="AArch64" ;;
        armv7) triple=armv7-unknown-linux-gnueabihf; platform=linux/arm/v7
               multiarch=arm-linux-gnueabihf; elf_machine="ARM" ;;
    esac
}

# Whether this kernel runs the arch's binaries under QEMU (a binfmt_misc handler with flag F, which
# also works inside a container's root filesystem).
engine_runs() {
    local handler
    case "$1" in
        aarch64) handler=qemu-aarch64 ;;
        armv7) handler=qemu-arm ;;
        *) return 1 ;;
    esac
    local entry="/proc/sys/fs/binfmt_misc/$handler"
    [[ -r "$entry" ]] && grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry"
}

needed_libraries() {
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'
}

find_library() {
    local name="$1" dir
    shift
    for dir in "$@"; do
        if [[ -e "$dir/$name" ]]; then
            echo "$dir/$name"
            return 0
        fi
    done
    return 1
}

# Stages binary + loader + libraries + /etc + /data for one arch into $stage/.
stage_rootfs() {
    local arch="$1" binary="$2" stage="$3"
    shift 3
    local libdirs=("$@")
    local rootfs="$stage/rootfs"
    rm -rf "$stage"
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/lib/$multiarch" "$rootfs/etc/natrix" "$stage/data"

    local machine
    machine="$(readelf -h "$binary" | sed -n 's/^ *Machine: *//p')"
    [[ "$machine" == *"$elf_machine"* ]] \
        || die "$binary is built for '$machine', not $arch ($elf_machine)"
    # Without debug info (a release build keeps line tables, and RocksDB's C++ is built with -g:
    # ~490 MB); the symbols stay, so backtraces still name functions.
    local strip_tool="$multiarch-strip"
    command -v "$strip_tool" >/dev/null || die "$strip_tool not found (binutils-$multiarch, deploy/cross/setup.sh)"
    "$strip_tool" --strip-debug -o "$rootfs/usr/local/bin/natrix-server" "$binary" \
        || die "$strip_tool failed on $binary"
    chmod 0755 "$rootfs/usr/local/bin/natrix-server"

    local interp
    interp="$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')"
    [[ -n "$interp" ]] || die "$binary has no program interpreter (a static binary needs no script)"
    local interp_file
    interp_file="$(find_library "$(basename "$interp")" "${libdirs[@]}")" \
        || die "dynamic loader $(basename "$interp") not found in ${libdirs[*]}"
    mkdir -p "$rootfs/$(dirname "$interp")"
    cp -L "$interp_file" "$rootfs$interp"
    chmod 0755 "$rootfs$interp"

    # Breadth-first over NEEDED entries, bounded; each library copied under its soname.
    local -a queue=()
    local -A seen=(["$(basename "$interp")"]=1)
    mapfile -t queue < <(needed_libraries "$binary")
    local count=0 name file
    while ((${#queue[@]})); do
        name="${queue[0]}"
        queue=("${queue[@]:1}")
        [[ -n "${seen[$name]:-}" ]] && continue
        seen[$name]=1
        count=$((count + 1))
        ((count <= max_libraries)) || die "more than $max_libraries libraries: giving up"
        file="$(find_library "$name" "${libdirs[@]}")" || die "library $name not found in ${libdirs[*]}"
        cp -L "$file" "$rootfs/lib/$multiarch/$name"
        chmod 0644 "$rootfs/lib/$multiarch/$name"
        mapfile -t -O "${#queue[@]}" queue < <(needed_libraries "$file")
    done
    echo "build-local.sh: $arch: loader $interp, libraries: $(cd "$rootfs/lib/$multiarch" && echo *)"

    printf 'root:x:0:0:root:/:/sbin/nologin\nnatrix:x:%s:%s:natrix:/data:/sbin/nologin\n' \
        "$runtime_uid" "$runtime_uid" >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnatrix:x:%s:\n' "$runtime_uid" >"$rootfs/etc/group"
    # glibc reads /etc/hosts (Docker and Kubernetes write it) before asking DNS.
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    install -m 0644 "$here/natrix.conf" "$rootfs/etc/natrix/natrix.conf"
    cp "$here/Dockerfile.local" "$stage/Dockerfile"
}

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml")"
[[ -n "$version" ]] || die "no [workspace.package] version in $root/Cargo.toml"
revision="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
host_arch="$(canonical_arch "$(uname -m)")" || die "unsupported host arch $(uname -m)"
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"
command -v docker >/dev/null || die "docker not found"

archs=()
if (($# == 0)); then
    archs=("$host_arch")
fi
for a in "$@"; do
    canonical="$(canonical_arch "$a")" || die "unknown arch '$a' (x86_64, aarch64, armv7)"
    archs+=("$canonical")
done

for arch in "${archs[@]}"; do
    arch_facts "$arch"
    binary="$root/target/$triple/release/natrix-server"
    libdirs=("/usr/$multiarch/lib")
    if [[ "$arch" == "$host_arch" ]]; then
        binary="${NATRIX_BIN:-$binary}"
        libdirs=("/lib/$multiarch" "/usr/lib/$multiarch")
    fi
    [[ -x "$binary" ]] || die "no binary for $arch at $binary (deploy/cross/build.sh $arch, or NATRIX_BIN for the host arch)"
    for dir in "${libdirs[@]}"; do
        [[ -d "$dir" ]] || die "library directory $dir missing (for $arch: apt-get install libc6-dev-*-cross libstdc++6-*-cross, or deploy/cross/setup.sh)"
    done

    stage="$stage_root/$arch"
    stage_rootfs "$arch" "$binary" "$stage" "${libdirs[@]}"
    tag="$image:$version-$arch"
    tags=(-t "$tag" -t "$image:local-$arch")
    if [[ "$arch" == "$host_arch" ]]; then
        tags+=(-t "$image:local")
    fi
    # --no-cache: the classic builder reuses a cached step of another platform's build of the same
    # Dockerfile (FROM scratch, ARG) and then fails ("does not match the specified platform").
    docker build --quiet --no-cache --platform "$platform" "${tags[@]}" \
        --build-arg "LIBDIR=/lib/$multiarch" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        "$stage" >/dev/null
    echo "build-local.sh: built $tag ($platform, $(docker image inspect -f '{{.Os}}/{{.Architecture}}{{with .Variant}}/{{.}}{{end}} user {{.Config.User}}, {{.Size}} bytes' "$tag"))"

    if [[ "$arch" != "$host_arch" ]] && ! engine_runs "$arch"; then
        echo "build-local.sh: $tag not started: the kernel has no binfmt_misc handler for $arch (deploy/cross/binfmt.sh registers QEMU's)"
        continue
    fi
    # The image's own loader, libraries and config must work: check the default config.
    docker run --rm --platform "$platform" --name "natrix-build-check-$$" "$tag" -t 2>&1 \
        | grep -q "is valid" || die "$tag cannot check its own configuration"
    echo "build-local.sh: $tag starts and its default configuration is valid"
done
