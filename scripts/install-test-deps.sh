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

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

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

# Keep maintainer scripts from starting services (no systemd in containers, and
# tests start their own instances). Only add a policy-rc.d if there is none,
# and only remove the one we added.
policy=/usr/sbin/policy-rc.d
created_policy=0
created_log=0
apt_log=
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        $SUDO rm -f "$policy"
    fi
    if [[ $created_log -eq 1 ]]; then
        rm -f "$apt_log"
    fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from headroom scripts/install-test-deps.sh\nexit 101\n' \
        | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi

log "installing ${missing[*]}"
# apt's chatter goes to a log that is shown only if something fails.
apt_log=$(mktemp)
created_log=1
if ! { $SUDO apt-get update -qq &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    log "apt-get failed installing ${missing[*]}"
    exit 1
fi

# Stop any daemon that the install started despite policy-rc.d (by PID file,
# never by process name), leaving ones that were running before alone.
for svc in "${services[@]}"; do
    pid=$(running_pid "$svc")
    if [[ -n $pid && $pid != "${before[$svc]}" ]]; then
        log "stopping $svc (pid $pid) started by the install"
        $SUDO kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
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
