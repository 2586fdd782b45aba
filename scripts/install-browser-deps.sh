#!/usr/bin/env bash
# Install what the dashboard's browser test (tests/browser.rs) needs on a
# Debian bookworm machine (as root):
#   chromium           headless Chromium, driven by the test over loopback
#   fonts-dejavu-core  a font for the page's text in screenshots
#
# Idempotent and quiet: when everything is present it prints nothing and
# touches nothing. `apt-get update` runs at most once, and only when something
# must be installed.
set -euo pipefail

log() { echo "install-browser-deps: $*" >&2; }

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

apt_install install-browser-deps "${missing[@]}"

[[ -x /usr/bin/chromium ]] || { log "chromium still missing after install"; exit 1; }
log "done ($(/usr/bin/chromium --version 2>/dev/null || echo chromium))"
