#!/usr/bin/env bash
# Install what headroom's pod tests (tests/pod.rs, scripts/build-image.sh)
# need on a Debian bookworm machine (as root), when absent:
#   podman      plays the chart's pod (`podman kube play`) and builds the image
#               from the project's Dockerfile
#   runc        the OCI runtime (crun refuses the hybrid v1/v2 hierarchy)
#   catatonit   the init podman's local pause image is built from (no registry)
#   debootstrap a Debian bookworm root filesystem for the build stand-in
#
# podman's own configuration for the tests is a project file,
# tests/pod/containers.conf (with tests/pod/registries.conf), that the tests
# and scripts/build-image.sh point CONTAINERS_CONF and
# CONTAINERS_REGISTRIES_CONF at: nothing under /etc is changed.
#
# Idempotent and quiet: when everything is present it prints nothing and
# touches nothing. `apt-get update` runs only when something must be installed.
# Daemons the packages would start are kept from starting (policy-rc.d).
set -euo pipefail

log() { echo "install-pod-deps: $*" >&2; }

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[[ -x /usr/libexec/podman/catatonit || -x /usr/bin/catatonit ]] || missing+=(catatonit)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

apt_install install-pod-deps "${missing[@]}"

for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || { log "$tool still missing after install"; exit 1; }
done
log "done ($(podman --version), $(runc --version | head -n1))"
