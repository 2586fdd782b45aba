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

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

log "installing ${missing[*]}"
# apt's chatter goes to a log that is shown only if something fails.
apt_log=$(mktemp)
trap 'rm -f "$apt_log"' EXIT
if ! { $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
           --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    log "apt-get failed installing ${missing[*]}"
    exit 1
fi

[[ -x /usr/bin/chromium ]] || { log "chromium still missing after install"; exit 1; }
log "done ($(/usr/bin/chromium --version 2>/dev/null || echo chromium))"
