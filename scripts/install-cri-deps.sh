#!/usr/bin/env bash
# Install what headroom's CRI test bed (tests/common/cri.rs, tests/cri_bed.rs)
# needs on a Debian bookworm machine (as root), when absent:
#   containerd   containerd with its CRI plugin, `ctr`, and the runc v2 shim
#   runc         the OCI runtime the shim runs
#
# The tests start containerd themselves, with a configuration, root, state
# and socket of their own under a temp dir: nothing under /etc is changed and
# the system's containerd (if any) is never used.
#
# Idempotent and quiet: when everything is present it prints nothing and
# touches nothing. `apt-get update` runs only when something must be
# installed. Services the packages would start are kept from starting
# (policy-rc.d), and a system containerd that the install started anyway is
# stopped by its PID; one that ran before is left alone.
set -euo pipefail

log() { echo "install-cri-deps: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

missing=()
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v ctr >/dev/null 2>&1 || missing+=(containerd)
command -v containerd-shim-runc-v2 >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
# containerd may be listed more than once.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

# PIDs of system containerd daemons: /usr/bin/containerd run with no
# arguments, as the package's service starts it (a test bed always passes
# --config, so its daemons never match).
system_containerd_pids() {
    local d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $(readlink "$d/exe" 2>/dev/null) == /usr/bin/containerd ]] || continue
        [[ $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) == "/usr/bin/containerd " ]] || continue
        echo "$pid"
    done
}
before=" $(system_containerd_pids | tr '\n' ' ') "

policy=/usr/sbin/policy-rc.d
created_policy=0
apt_log=$(mktemp)
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        $SUDO rm -f "$policy"
    fi
    rm -f "$apt_log"
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from headroom scripts/install-cri-deps.sh\nexit 101\n' \
        | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi

log "installing ${missing[*]}"
if ! { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
           install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    log "apt-get failed installing ${missing[*]}"
    exit 1
fi

# Stop a system containerd the install started despite policy-rc.d, by PID.
for pid in $(system_containerd_pids); do
    [[ $before == *" $pid "* ]] && continue
    log "stopping the system containerd (pid $pid) started by the install"
    $SUDO kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
done

for tool in containerd ctr containerd-shim-runc-v2 runc; do
    command -v "$tool" >/dev/null || { log "$tool still missing after install"; exit 1; }
done
log "done ($(containerd --version | awk '{print $3}'), $(runc --version | head -n1))"
