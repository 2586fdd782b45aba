#!/usr/bin/env bash
# Build what the VM test suite boots, into target/vm/ (ignored by git):
#   target/vm/vmlinuz          Debian bookworm's cloud kernel (cgroup v2), fetched
#                              once with `apt-get download` and kept
#   target/vm/kernel.txt       which package it came from
#   target/vm/initramfs.cpio   uncompressed newc cpio: busybox (static) with its
#                              applet links, util-linux's unshare (busybox's has no
#                              --cgroup), headroom with the libraries ldd lists,
#                              gohog (static Go), and tests/vm/ as /vm with
#                              tests/vm/init as /init
# The initramfs is rebuilt only when one of its inputs is newer than it.
#
# Usage: scripts/build-vm.sh
#   HEADROOM_BIN=PATH   the headroom binary to put in the VM
#                       (default target/release/headroom; tests/vm.rs passes the
#                       binary cargo built for the test)
# Needs: scripts/install-vm-deps.sh (busybox-static, apt lists) and
#        scripts/install-test-deps.sh (Go, to build gohog).
set -euo pipefail

log() { echo "build-vm: $*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/target/vm
vm_src=$root/tests/vm
headroom_bin=${HEADROOM_BIN:-$root/target/release/headroom}
gohog=$root/target/test-programs/gohog
busybox=/bin/busybox
unshare_bin=/usr/bin/unshare

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- kernel --------------------------------------------------------------
if [[ ! -s $out/vmlinuz ]]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }')
    if [[ -z $pkg ]]; then
        log "apt does not know linux-image-cloud-amd64; run scripts/install-vm-deps.sh (as root)"
        exit 1
    fi
    log "fetching kernel $pkg"
    mkdir -p "$tmp/deb"
    # apt's download sandbox user must be able to write there.
    chmod 777 "$tmp/deb"
    if ! (cd "$tmp/deb" && apt-get download -qq "$pkg") >"$tmp/apt.log" 2>&1; then
        cat "$tmp/apt.log" >&2
        log "apt-get download $pkg failed"
        exit 1
    fi
    dpkg -x "$tmp"/deb/*.deb "$tmp/kernel"
    vmlinuz=$(find "$tmp/kernel/boot" -name 'vmlinuz-*' | head -n 1)
    if [[ -z $vmlinuz ]]; then
        log "no vmlinuz in $pkg"
        exit 1
    fi
    cp "$vmlinuz" "$out/vmlinuz.tmp"
    mv -f "$out/vmlinuz.tmp" "$out/vmlinuz"
    dpkg-deb -f "$tmp"/deb/*.deb Package Version | tr '\n' ' ' >"$out/kernel.txt"
    echo >>"$out/kernel.txt"
    rm -rf "$tmp/deb" "$tmp/kernel"
fi

# --- inputs of the initramfs ---------------------------------------------
"$root/scripts/build-test-programs.sh" gohog
for f in "$busybox" "$unshare_bin" "$headroom_bin" "$gohog" "$vm_src/init"; do
    if [[ ! -e $f ]]; then
        case $f in
        "$busybox") log "$f missing: run scripts/install-vm-deps.sh (busybox-static)" ;;
        "$headroom_bin") log "$f missing: run cargo build --release (or set HEADROOM_BIN)" ;;
        *) log "$f missing" ;;
        esac
        exit 1
    fi
done
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
    && ldd "$busybox" >/dev/null 2>&1; then
    log "$busybox is not static: install busybox-static (scripts/install-vm-deps.sh)"
    exit 1
fi

cpio_out=$out/initramfs.cpio
stamp=$out/initramfs.inputs
# The headroom binary chosen is an input too: switching binaries rebuilds.
inputs_id="headroom=$(readlink -f "$headroom_bin")"
if [[ -s $cpio_out && -f $stamp && $(cat "$stamp") == "$inputs_id" ]] \
    && [[ -z $(find "$busybox" "$unshare_bin" "$headroom_bin" "$gohog" "$vm_src" \
        "${BASH_SOURCE[0]}" -newer "$cpio_out" -print -quit) ]]; then
    exit 0
fi

# --- initramfs tree --------------------------------------------------------
tree=$tmp/root
mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc,vm}

cp "$busybox" "$tree/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$tree/$(dirname "$applet")"
    ln -sf /bin/busybox "$tree/$applet"
done

# Dynamically linked programs, with every library ldd lists at its path.
add_dynamic() {
    local src=$1 dst=$2 lib
    cp "$src" "$tree$dst"
    ldd "$src" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }' | while read -r lib; do
        mkdir -p "$tree$(dirname "$lib")"
        cp -L "$lib" "$tree$lib"
    done
}
# util-linux's unshare replaces busybox's applet: it has --cgroup.
rm -f "$tree/usr/bin/unshare"
add_dynamic "$unshare_bin" /usr/bin/unshare
add_dynamic "$headroom_bin" /usr/bin/headroom
# A debug build carries ~80 MiB of debug info: the VM needs none of it.
strip "$tree/usr/bin/headroom" 2>/dev/null || true

cp "$gohog" "$tree/usr/bin/gohog"
# The sidecar scenario's target, found by name (--process gohog-target).
ln -s gohog "$tree/usr/bin/gohog-target"

cp -r "$vm_src"/. "$tree/vm/"
rm -f "$tree/vm/README.md"
mv "$tree/vm/init" "$tree/init"
chmod 755 "$tree/init" "$tree"/vm/*.sh 2>/dev/null || true
# The kernel opens /dev/console for init before anything is mounted.
mknod -m 600 "$tree/dev/console" c 5 1 2>/dev/null || true

(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) >"$cpio_out.tmp"
mv -f "$cpio_out.tmp" "$cpio_out"
echo "$inputs_id" >"$stamp"
log "built target/vm/initramfs.cpio ($(($(stat -c %s "$cpio_out") / 1024 / 1024)) MiB, headroom from $headroom_bin)"
