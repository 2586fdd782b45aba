#!/usr/bin/env bash
# Install what headroom's test suite needs on a Debian bookworm machine (as root):
#   golang-go                                   Go toolchain (1.19) to build tests/go programs
#   golang-github-prometheus-client-golang-dev  client_golang for GOPATH-mode builds of gohog
#   prometheus                                  promtool, to check the shipped alert rules
#   prometheus-alertmanager                     a real Alertmanager for the alerting tests
#   protobuf-compiler                           protoc, for the tests' CRI client (the k8s-cri crate)
#
# Idempotent and quiet: when everything is present it prints nothing and touches
# nothing. `apt-get update` runs at most once, and only when something must be
# installed. Services that the Debian packages would start are kept from starting
# (policy-rc.d), and any daemon the install did start anyway is stopped by PID file.
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
dpkg -s golang-github-prometheus-client-golang-dev >/dev/null 2>&1 \
    || missing+=(golang-github-prometheus-client-golang-dev)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

# Daemons this script may cause to be installed, with the PID files Debian's
# init scripts use for them.
services=(prometheus prometheus-alertmanager)
pidfile_of() { echo "/run/prometheus/$1.pid"; }

# PID of a running daemon of service $1 according to its PID file, or nothing.
running_pid() {
    local pidfile pid
    pidfile=$(pidfile_of "$1")
    [[ -r $pidfile ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] || return 0
    # Only trust the PID file if that PID really is this service's binary.
    if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "/usr/bin/$1" ]]; then
        echo "$pid"
    fi
}

declare -A before=()
for svc in "${services[@]}"; do
    before[$svc]=$(running_pid "$svc")
done

apt_install install-test-deps "${missing[@]}"

# Stop any daemon that the install started despite policy-rc.d (by PID file,
# never by process name), leaving ones that were running before alone.
for svc in "${services[@]}"; do
    pid=$(running_pid "$svc")
    if [[ -n $pid && $pid != "${before[$svc]}" ]]; then
        stop_pid install-test-deps "$pid" "$svc"
    fi
done

# Verify.
command -v go >/dev/null || { log "go still missing after install"; exit 1; }
command -v promtool >/dev/null || { log "promtool still missing after install"; exit 1; }
command -v prometheus-alertmanager >/dev/null \
    || { log "prometheus-alertmanager still missing after install"; exit 1; }
dpkg -s golang-github-prometheus-client-golang-dev >/dev/null 2>&1 \
    || { log "golang-github-prometheus-client-golang-dev still missing after install"; exit 1; }
log "done ($(go version | awk '{print $3}'))"
