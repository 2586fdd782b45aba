# shellcheck shell=bash
# Sourced by the install-*-deps scripts: installs Debian packages quietly,
# with the services they would start kept from starting.

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

# apt_install WHO PKG...: `apt-get update`, then install PKG... without
# recommends. apt's chatter goes to a log shown only when it fails (then the
# return is non-zero); WHO names the calling script in what is printed.
# Maintainer scripts are kept from starting services by a policy-rc.d that
# is added only where there is none, and removed after, even on interrupt.
apt_install() {
    local who=$1
    shift
    local policy=/usr/sbin/policy-rc.d created=0 log rc=0 prev
    log=$(mktemp)
    prev=$(trap -p EXIT)
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from headroom scripts/%s.sh\nexit 101\n' "$who" \
            | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        created=1
    fi
    # shellcheck disable=SC2064 # expanded now, on purpose
    if [[ $created -eq 1 ]]; then
        trap "$SUDO rm -f '$policy'; rm -f '$log'" EXIT
    else
        trap "rm -f '$log'" EXIT
    fi
    echo "$who: installing $*" >&2
    { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
            install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$log" >&2
        echo "$who: apt-get failed installing $*" >&2
    fi
    if [[ $created -eq 1 ]]; then
        $SUDO rm -f "$policy"
    fi
    rm -f "$log"
    if [[ -n $prev ]]; then
        eval "$prev"
    else
        trap - EXIT
    fi
    return $rc
}

# stop_pid WHO PID WHAT: stops a daemon the install started, by its PID
# (never by name), waiting up to 5 s for it to go.
stop_pid() {
    echo "$1: stopping $3 (pid $2) started by the install" >&2
    $SUDO kill "$2" 2>/dev/null || true
    for _ in $(seq 50); do
        [[ -d /proc/$2 ]] || break
        sleep 0.1
    done
}
