#!/usr/bin/env bash
# Install what the VM test suite (tests/vm.rs, tests/vm/) needs on a Debian
# bookworm machine, as root:
#   busybox-static      the VM's userland (static, so it runs in a bare initramfs)
#   qemu-system-x86     from bookworm-backports: bookworm's own 7.2 would remove
#                       the machine's qemu-utils from backports
# and makes sure apt knows Debian's cloud kernel package, which
# scripts/build-vm.sh downloads.
#
# Idempotent and quiet: when everything is present it prints nothing and touches
# nothing. `apt-get update` runs only when apt lacks a package it needs.
#
# bookworm-backports is used only for these apt calls, through an extra source
# at the same archive URI that the machine's own Debian source uses (read from
# /etc/apt/sources.list and /etc/apt/sources.list.d/, one-line or deb822
# format); nothing under /etc/apt is changed.
set -euo pipefail

log() { echo "install-vm-deps: $*" >&2; }

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

have_qemu() { command -v qemu-system-x86_64 >/dev/null 2>&1; }
have_busybox() { dpkg -s busybox-static >/dev/null 2>&1 && [[ -x /bin/busybox ]]; }
kernel_known() { apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; }
cached_kernel() { [[ -s $(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/vm/vmlinuz ]]; }

if have_qemu && have_busybox && { cached_kernel || kernel_known; }; then
    exit 0
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [[ -z $codename ]]; then
    log "cannot tell the Debian release from /etc/os-release (VERSION_CODENAME)"
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The enabled source files, as apt reads them.
sources=()
[[ -f /etc/apt/sources.list ]] && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && sources+=("$f")
done

# Prints "URI<TAB>SIGNED-BY" for each Debian source of suite $1, one-line
# format (`deb [signed-by=...] URI SUITE COMPONENTS...`) or deb822 stanzas.
sources_of_suite() {
    local suite=$1 f
    for f in "${sources[@]}"; do
        case $f in
        *.sources)
            awk -v want="$suite" '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && enabled != "no")
                        for (i = 1; i <= n; i++) printf "%s\t%s\n", uris[i], signed
                    types = ""; suites = ""; signed = ""; enabled = ""; n = 0
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                {
                    key = tolower($1); sub(/:$/, "", key)
                    val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                    if (key == "types") types = val
                    else if (key == "suites") suites = val
                    else if (key == "signed-by") signed = val
                    else if (key == "enabled") enabled = tolower(val)
                    else if (key == "uris") n = split(val, uris, /[ \t]+/)
                }
                END { flush() }
            ' "$f"
            ;;
        *)
            awk -v want="$suite" '
                /^[ \t]*deb[ \t]/ {
                    signed = ""; i = 2
                    if ($2 ~ /^\[/) {
                        while (i <= NF) {
                            if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
                            if ($i ~ /\]$/) { i++; break }
                            i++
                        }
                    }
                    if ($(i + 1) == want) printf "%s\t%s\n", $i, signed
                }
            ' "$f"
            ;;
        esac
    done
}

# Is bookworm-backports already configured? Then plain apt calls see it.
apt_opts=()
if [[ -z $(sources_of_suite "$codename-backports") ]]; then
    line=$(sources_of_suite "$codename" | head -n 1)
    if [[ -z $line ]]; then
        log "no Debian source for suite '$codename' in /etc/apt/sources.list or /etc/apt/sources.list.d/;"
        log "cannot add $codename-backports for qemu-system-x86"
        exit 1
    fi
    uri=${line%%$'\t'*}
    signed=${line#*$'\t'}
    # A copy of the machine's sources plus backports at the same archive URI,
    # used only through -o options, so /etc/apt stays as it is and the lists
    # of the existing sources are kept by `apt-get update`.
    parts=$tmp/sources.list.d
    mkdir -p "$parts"
    for f in "${sources[@]}"; do
        [[ $f == /etc/apt/sources.list ]] && continue
        cp "$f" "$parts/"
    done
    {
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: $codename-backports"
        echo "Components: main"
        [[ -n $signed ]] && echo "Signed-By: $signed"
    } >"$parts/headroom-vm-backports.sources"
    apt_opts=(-o "Dir::Etc::sourceparts=$parts")
fi

apt_log=$tmp/apt.log
run_apt() {
    if ! "$@" >>"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        log "failed: $*"
        exit 1
    fi
}

# apt-get update only when apt does not know a package it needs yet.
need_update=0
if ! have_qemu; then
    apt-cache "${apt_opts[@]}" policy qemu-system-x86 2>/dev/null | grep -q " $codename-backports/" \
        || need_update=1
fi
if ! have_busybox; then
    apt-cache "${apt_opts[@]}" show busybox-static >/dev/null 2>&1 || need_update=1
fi
if ! cached_kernel && ! kernel_known; then
    need_update=1
fi
if [[ $need_update -eq 1 ]]; then
    log "apt-get update"
    run_apt $SUDO apt-get "${apt_opts[@]}" update -qq
fi

missing=()
have_busybox || missing+=(busybox-static)
have_qemu || missing+=(qemu-system-x86)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} (qemu-system-x86 from $codename-backports)"
    run_apt $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
        --no-install-recommends -t "$codename-backports" "${missing[@]}"
fi

have_qemu || { log "qemu-system-x86_64 still missing after install"; exit 1; }
have_busybox || { log "busybox-static still missing after install"; exit 1; }
cached_kernel || kernel_known || { log "apt still does not know linux-image-cloud-amd64"; exit 1; }
if [[ ${#missing[@]} -gt 0 ]]; then
    log "done ($(qemu-system-x86_64 --version | head -n 1))"
fi
