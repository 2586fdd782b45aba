#!/usr/bin/env bash
# Build the Go programs that headroom's end-to-end tests run (tests/go/<name>/)
# into target/test-programs/<name>, with Debian's Go in GOPATH mode so that
# client_golang and its dependencies come from Debian's golang-*-dev packages
# (no network, no go.mod). CGO_ENABLED=0 makes every binary static, so that the
# CRI test bed (tests/common/cri.rs) can ship one alone as a container image. A
# program is rebuilt only when one of its sources is newer than its binary.
# Quiet on success apart from one line per build.
#
# Usage: scripts/build-test-programs.sh [NAME...]   (default: every tests/go/*/ and tests/c/*.c)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src_dir=$root/tests/go
out_dir=$root/target/test-programs

if ! command -v go >/dev/null 2>&1; then
    echo "build-test-programs: 'go' not found; install the test dependencies with" >&2
    echo "  scripts/install-test-deps.sh   (Debian: golang-go golang-github-prometheus-client-golang-dev)" >&2
    exit 1
fi
gopath=/usr/share/gocode
if [[ ! -d $gopath/src/github.com/prometheus/client_golang ]]; then
    echo "build-test-programs: client_golang not found under $gopath; install it with" >&2
    echo "  scripts/install-test-deps.sh   (Debian: golang-github-prometheus-client-golang-dev)" >&2
    exit 1
fi

export GO111MODULE=off GOPATH=$gopath CGO_ENABLED=0 GOFLAGS= GOPROXY=off
export GOCACHE=$root/target/go-cache
mkdir -p "$out_dir" "$GOCACHE"

if [[ $# -gt 0 ]]; then
    names=("$@")
else
    names=()
    for d in "$src_dir"/*/; do
        compgen -G "$d*.go" >/dev/null && names+=("$(basename "$d")")
    done
fi

for name in "${names[@]}"; do
    dir=$src_dir/$name
    bin=$out_dir/$name
    if ! compgen -G "$dir/*.go" >/dev/null; then
        echo "build-test-programs: no Go sources in $dir" >&2
        exit 1
    fi
    # Up to date when the binary exists and no source is newer than it.
    if [[ -x $bin ]] && [[ -z $(find "$dir" -name '*.go' -newer "$bin" -print -quit) ]]; then
        continue
    fi
    # Build to a temporary name so a failed build never leaves a stale binary
    # that looks fresh.
    if ! (cd "$dir" && go build -trimpath -o "$bin.tmp" .); then
        rm -f "$bin.tmp"
        echo "build-test-programs: building $name failed" >&2
        exit 1
    fi
    mv -f "$bin.tmp" "$bin"
    echo "build-test-programs: built target/test-programs/$name"
done

# The C programs of tests/c/ (static, for the CRI test bed's images): built
# with the default build, when a source is newer than its binary.
if [[ $# -eq 0 ]]; then
    for src in "$root"/tests/c/*.c; do
        [[ -e $src ]] || continue
        name=$(basename "$src" .c)
        bin=$out_dir/$name
        [[ -x $bin && ! $src -nt $bin ]] && continue
        if ! cc -static -O2 -o "$bin.tmp" "$src"; then
            rm -f "$bin.tmp"
            echo "build-test-programs: building $name (static C) failed" >&2
            exit 1
        fi
        mv -f "$bin.tmp" "$bin"
        echo "build-test-programs: built target/test-programs/$name"
    done
fi
