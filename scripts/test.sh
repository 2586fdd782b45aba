#!/usr/bin/env bash
# The whole test suite, on a fresh Debian bookworm machine (as root: the
# end-to-end tests create real memory cgroups). Installs what the tests need
# when absent, builds the Go test programs, checks formatting and lints, runs
# every Rust test (unit, fixture, real-cgroup, VM), then checks the
# deployment files. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "install test dependencies"
scripts/install-test-deps.sh
scripts/install-vm-deps.sh
scripts/install-pod-deps.sh
scripts/install-cri-deps.sh
scripts/install-browser-deps.sh

step "build the Go test programs"
scripts/build-test-programs.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo build --release (the VM tests boot the release binary)"
cargo build --release --quiet

step "cargo test"
cargo test --all-targets

step "fuzz every parser of outside input (10 s per target; longer: scripts/fuzz.sh 600)"
scripts/fuzz.sh 10

step "deployment files"
scripts/check-deploy.sh
