#!/usr/bin/env bash
# Build headroom's container image from the project's own Dockerfile with
# podman, with no registry: the base images its FROM lines name are first
# built here, from local files, as stand-ins with the same names and shape.
#
#   build stage  rust:${RUST_VERSION}-slim-bookworm (docker.io/library/...)
#                a Debian bookworm root filesystem from debootstrap (minbase,
#                with gcc, libc6-dev and ca-certificates, as the official
#                slim image has) plus this machine's Rust toolchain (the one
#                `rustc --print sysroot` names, which must be the version the
#                Dockerfile's RUST_VERSION asks for) in /usr/local/rustup,
#                CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH, and
#                this machine's CA bundle (so that cargo reaches crates.io
#                as it does on the host)
#   runtime      gcr.io/distroless/cc-debian12:nonroot
#                extracted from Debian bookworm's own packages, as distroless
#                builds it: base-files, netbase, tzdata, ca-certificates (the
#                bundle generated), libc6, libgcc-s1, libgomp1, libstdc++6,
#                libssl3; /etc/passwd with root, nobody and nonroot (65532);
#                USER 65532; no shell, no package manager
#
# The stand-ins are cached in podman's image store under those names and are
# built only when missing (remove them with `podman rmi NAME` to rebuild).
# Then `podman build` runs the Dockerfile unchanged. The build stage fetches
# crates from crates.io (the build runs on the host's network); the
# Dockerfile's cache mounts keep the registry and target/ between builds.
#
# Usage: scripts/build-image.sh [headroom|gohog|stand-ins]...
#   headroom   (the default) the image of the Dockerfile, tagged
#              localhost/headroom:VERSION (VERSION from Cargo.toml), or
#              $HEADROOM_IMAGE
#   gohog      tests/go/gohog (target/test-programs/gohog, built by
#              scripts/build-test-programs.sh) in a scratch image as
#              localhost/headroom-test-gohog:latest, or $GOHOG_IMAGE
#   stand-ins  only the two base images
#
# HEADROOM_BUILD_CONTEXT: the directory to build headroom from (default: this
# checkout), e.g. a `git archive` of another commit.
#
# Needs podman, runc and debootstrap (scripts/install-pod-deps.sh) and root.
# Uses tests/pod/containers.conf and tests/pod/registries.conf unless
# CONTAINERS_CONF / CONTAINERS_REGISTRIES_CONF say otherwise. Prints one line
# per image it builds; quiet otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
work=$root/target/pod-images
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/tests/pod/containers.conf}
export CONTAINERS_REGISTRIES_CONF=${CONTAINERS_REGISTRIES_CONF:-$root/tests/pod/registries.conf}

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' not found; install it with scripts/install-pod-deps.sh"
done
[[ $(id -u) -eq 0 ]] || die "run as root (rootful podman; debootstrap)"

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || die "Cargo.toml: no package version found"
rust_version=$(sed -n 's/^ARG RUST_VERSION=\(.*\)$/\1/p' Dockerfile | head -n1)
[[ -n $rust_version ]] || die "Dockerfile: no 'ARG RUST_VERSION=' line"
build_ref=docker.io/library/rust:${rust_version}-slim-bookworm
runtime_ref=$(awk 'toupper($1) == "FROM" && tolower($0) !~ / as build/ { print $2 }' Dockerfile | tail -n1)
[[ $runtime_ref == gcr.io/distroless/cc-debian12:* ]] \
    || die "Dockerfile: the runtime stage is FROM '$runtime_ref', not the distroless cc-debian12 image this script stands in for"
grep -q "^FROM rust:\${RUST_VERSION}-slim-bookworm AS build" Dockerfile \
    || die "Dockerfile: the build stage is not FROM rust:\${RUST_VERSION}-slim-bookworm"
headroom_image=${HEADROOM_IMAGE:-localhost/headroom:$version}
gohog_image=${GOHOG_IMAGE:-localhost/headroom-test-gohog:latest}

# The Debian mirror apt uses here (debootstrap needs one).
mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

scratch=
# remove_tree DIR: unmount whatever debootstrap left mounted under DIR
# (/proc, /sys), deepest first, then delete it without leaving its file system.
remove_tree() {
    local dir=$1 mnt
    [[ -d $dir ]] || return 0
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r)
    rm -rf --one-file-system "$dir"
}
cleanup() { [[ -z $scratch ]] || remove_tree "$scratch"; }
trap cleanup EXIT
mkdir -p "$work"

# import_dir DIR REF CHANGE...: a root filesystem directory as image REF.
import_dir() {
    local dir=$1 ref=$2
    shift 2
    local changes=()
    for c in "$@"; do changes+=(--change "$c"); done
    tar --numeric-owner --xattrs -C "$dir" -c . \
        | podman import --quiet "${changes[@]}" - "$ref" >/dev/null
}

# --- the runtime stand-in: distroless cc from Debian's packages ----------------
build_runtime() {
    podman image exists "$runtime_ref" && return 0
    local started=$SECONDS
    scratch=$(mktemp -d "$work/runtime.XXXXXX")
    local debs=$scratch/debs rootfs=$scratch/rootfs
    mkdir -p "$debs" "$rootfs"
    local pkgs=(base-files netbase tzdata ca-certificates libc6 libgcc-s1 libgomp1 libstdc++6 libssl3)
    if ! (cd "$debs" && apt-get download -qq "${pkgs[@]}") >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
        (cd "$debs" && apt-get download -qq "${pkgs[@]}") >/dev/null \
            || die "apt-get download ${pkgs[*]} failed"
    fi
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$rootfs"
    done
    rm -rf "$rootfs"/usr/share/{doc,man,info,lintian,bug}
    # What ca-certificates' maintainer script would generate.
    mkdir -p "$rootfs/etc/ssl/certs"
    find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
        | xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
    # distroless' users and groups.
    cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
GROUP
    install -d -m 0700 "$rootfs/root"
    install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
    install -d -m 1777 "$rootfs/tmp"
    [[ ! -e $rootfs/bin/sh && ! -e $rootfs/usr/bin/sh ]] || die "the distroless stand-in got a shell"
    import_dir "$rootfs" "$runtime_ref" \
        "USER 65532" "WORKDIR /home/nonroot" \
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$scratch"
    scratch=
    log "built $runtime_ref (stand-in from Debian packages) in $((SECONDS - started)) s"
}

# --- the build stand-in: bookworm + this machine's Rust toolchain ---------------
build_build() {
    podman image exists "$build_ref" && return 0
    local started=$SECONDS
    command -v rustc >/dev/null 2>&1 || die "rustc not found: the build stand-in carries this machine's toolchain"
    local have sysroot triple
    have=$(rustc --version | awk '{print $2}')
    case $have in
        "$rust_version" | "$rust_version".*) ;;
        *) die "the Dockerfile asks for Rust $rust_version, this machine's rustc is $have" ;;
    esac
    sysroot=$(rustc --print sysroot)
    triple=$(rustc -vV | sed -n 's/^host: //p')
    [[ -x $sysroot/bin/cargo ]] || die "$sysroot/bin/cargo missing: the toolchain has no cargo"
    scratch=$(mktemp -d "$work/build.XXXXXX")
    local rootfs=$scratch/rootfs
    if ! debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
        tail -n 30 "$scratch/debootstrap.log" >&2
        die "debootstrap bookworm from $mirror failed"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/{doc,man,info}
    # Trust what this machine trusts: cargo in the build stage reaches
    # crates.io the way the host does (through any TLS-inspecting proxy whose
    # CA the host's bundle carries).
    local bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    if [[ -s $bundle ]]; then
        cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    fi
    local tc=$rootfs/usr/local/rustup/toolchains/$have-$triple
    mkdir -p "$tc" "$rootfs/usr/local/cargo/bin"
    # The toolchain without its docs (share/): bin, lib, libexec, etc.
    for d in bin lib libexec etc; do
        [[ -e $sysroot/$d ]] && cp -a "$sysroot/$d" "$tc/"
    done
    for b in "$tc"/bin/*; do
        ln -s "../../rustup/toolchains/$have-$triple/bin/$(basename "$b")" \
            "$rootfs/usr/local/cargo/bin/$(basename "$b")"
    done
    import_dir "$rootfs" "$build_ref" \
        "ENV RUSTUP_HOME=/usr/local/rustup" "ENV CARGO_HOME=/usr/local/cargo" \
        "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "ENV RUST_VERSION=$have" "CMD [\"bash\"]"
    remove_tree "$scratch"
    scratch=
    log "built $build_ref (stand-in: debootstrap bookworm + rustc $have) in $((SECONDS - started)) s"
}

# --- the Dockerfile ---------------------------------------------------------------
build_headroom() {
    build_runtime
    build_build
    local started=$SECONDS before after out context=${HEADROOM_BUILD_CONTEXT:-$root}
    before=$(podman image inspect --format '{{.Id}}' "$headroom_image" 2>/dev/null || true)
    # What the build stage copies, hashed: the image is rebuilt when it
    # changed. (Debian's buildah reuses a cached `COPY src` layer after a
    # file inside src/ changed, so its layer cache is not trusted: the
    # rebuild runs with --no-cache, and the Dockerfile's cargo cache mount
    # keeps the compile incremental.)
    local hash have
    hash=$(cd "$context" && find Cargo.toml Cargo.lock build.rs Dockerfile src benches -type f -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    have=$(podman image inspect --format '{{index .Labels "org.headroom.source-sha256"}}' "$headroom_image" 2>/dev/null || true)
    if [[ $have == "$hash" ]]; then
        return 0
    fi
    out=$(mktemp)
    # --pull=never: the FROM images are the stand-ins above. The host network
    # for the RUN steps: cargo reaches crates.io the way it does on the host.
    # The commit for `headroom --version` (.git is not in the context): this
    # checkout's, or $HEADROOM_GIT_COMMIT for another context. It is not in
    # the hash: a new commit with the same sources keeps the image.
    local commit=${HEADROOM_GIT_COMMIT:-}
    if [[ -z $commit && $context == "$root" ]]; then
        commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || true)
    fi
    if ! podman build --pull=never --network=host --no-cache \
        --label "org.headroom.source-sha256=$hash" \
        --build-arg "HEADROOM_GIT_COMMIT=$commit" \
        -f "$context/Dockerfile" -t "$headroom_image" "$context" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "podman build of the Dockerfile failed"
    fi
    rm -f "$out"
    after=$(podman image inspect --format '{{.Id}}' "$headroom_image")
    if [[ -n $before && $before != "$after" ]]; then
        # The previous build of this tag, now untagged: remove it (by ID).
        podman rmi "$before" >/dev/null 2>&1 || true
    fi
    # The untagged build stage of this build and of earlier ones: the
    # cargo caches live in cache mounts, not in these.
    podman image prune --force >/dev/null 2>&1 || true
    if [[ $before != "$after" ]]; then
        log "built $headroom_image from Dockerfile in $((SECONDS - started)) s"
    fi
}

# --- gohog ------------------------------------------------------------------------
build_gohog() {
    local bin=$root/target/test-programs/gohog
    [[ -x $bin ]] || die "$bin missing: run scripts/build-test-programs.sh"
    local before after
    before=$(podman image inspect --format '{{.Id}}' "$gohog_image" 2>/dev/null || true)
    scratch=$(mktemp -d "$work/gohog.XXXXXX")
    cp "$bin" "$scratch/gohog"
    cp "$root/tests/pod/gohog.Containerfile" "$scratch/Containerfile"
    podman build --pull=never --network=none --quiet -t "$gohog_image" "$scratch" >/dev/null \
        || die "podman build of $gohog_image failed"
    rm -rf "$scratch"
    scratch=
    after=$(podman image inspect --format '{{.Id}}' "$gohog_image")
    if [[ -n $before && $before != "$after" ]]; then
        podman rmi "$before" >/dev/null 2>&1 || true
    fi
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(headroom)
for t in "${targets[@]}"; do
    case $t in
        headroom) build_headroom ;;
        gohog) build_gohog ;;
        stand-ins) build_runtime; build_build ;;
        *) die "unknown image '$t' (headroom, gohog, stand-ins)" ;;
    esac
done
