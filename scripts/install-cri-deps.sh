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

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

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

apt_install install-cri-deps "${missing[@]}"

# Stop a system containerd the install started despite policy-rc.d, by PID.
for pid in $(system_containerd_pids); do
    [[ $before == *" $pid "* ]] && continue
    stop_pid install-cri-deps "$pid" "the system containerd"
done

for tool in containerd ctr containerd-shim-runc-v2 runc; do
    command -v "$tool" >/dev/null || { log "$tool still missing after install"; exit 1; }
done
log "done ($(containerd --version | awk '{print $3}'), $(runc --version | head -n1))"
