# Helpers shared by the VM scenarios (busybox sh). Sourced by each
# tests/vm/<scenario>.sh, which /init runs as `sh /vm/<scenario>.sh`.
#
# Every result line on the console reads
#     =HR= SCENARIO SECTION TEXT
# SECTION `kv` carries `key=value`; any other SECTION is a captured file or
# scrape, one line per console line (tests/vm.rs puts them back together).
# Nothing else a scenario starts writes to the console: their output goes to
# files under /tmp/SCENARIO/, shown as sections when useful.

SCEN=${SCEN:-unknown}

say() { printf '=HR= %s %s %s\n' "$SCEN" "$1" "$2"; }
kv() { say kv "$1=$2"; }
# cmd | blob NAME (a last line without a newline gets one)
blob() { awk -v p="=HR= $SCEN $1 " '{ print p $0 }'; }
# file_blob PATH NAME
file_blob() {
    if [ -e "$1" ]; then blob "$2" <"$1"; else kv "missing" "$1"; fi
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }

work() {
    mkdir -p "/tmp/$SCEN"
    echo "/tmp/$SCEN"
}

# A child of the root cgroup with memory.max $2 (and no swap).
new_cgroup() {
    local cg="/sys/fs/cgroup/$1"
    mkdir -p "$cg"
    echo "$2" >"$cg/memory.max"
    [ -e "$cg/memory.swap.max" ] && echo 0 >"$cg/memory.swap.max"
    echo "$cg"
}

# Remembered for /init, which kills whatever a scenario leaves behind.
track() { echo "$1" >>/tmp/vm-pids; }

# True while PID runs (not gone, not a zombie).
alive() {
    [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# get URL: the body, or nothing (and non-zero) on error or non-2xx. Bounded
# by timeout(1): this busybox's `wget -T` crashes.
get() { timeout 30 wget -q -O - "$1" 2>/dev/null; }

serving() { get "$1" >/dev/null; }

# http_code URL: the status code of a GET ("000" when nothing answered).
http_code() {
    local c
    c=$(timeout 30 wget -S -q -O /dev/null "$1" 2>&1 | awk '/^ *HTTP\// { print $2; exit }')
    echo "${c:-000}"
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s; on time-out records
# `timeout=WHAT` and fails.
wait_until() {
    local limit="$1" what="$2" start
    shift 2
    start=$(date +%s)
    until "$@"; do
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            kv timeout "$what"
            return 1
        fi
        sleep 0.2
    done
}

# metric NAME < exposition: the sample's value (first match), or nothing.
metric() { awk -v n="$1" '$1 == n { print $2; exit }'; }

# metric_ge PORT NAME MIN: headroom on PORT exports NAME >= MIN.
metric_ge() {
    get "http://127.0.0.1:$1/metrics" | awk -v n="$2" -v min="$3" '
        $1 == n { found = 1; ok = ($2 + 0 >= min + 0) }
        END { exit !(found && ok) }'
}

# start_gohog CGROUP PORT ARGS...: gohog in CGROUP on 127.0.0.1:PORT; sets
# GOHOG_PID and waits for it to listen.
start_gohog() {
    local cg="$1" port="$2" dir
    shift 2
    dir=$(work)
    sh -c 'cg=$1; shift; echo $$ >"$cg/cgroup.procs" && exec "$@"' sh \
        "$cg" gohog -listen "127.0.0.1:$port" "$@" >"$dir/gohog.out" 2>&1 &
    GOHOG_PID=$!
    track "$GOHOG_PID"
    kv gohog_pid "$GOHOG_PID"
    if ! wait_until 60 "gohog listening" grep -q '^listening ' "$dir/gohog.out"; then
        file_blob "$dir/gohog.out" gohog.out
        return 1
    fi
}

# start_headroom PORT ARGS...: `headroom run` on 127.0.0.1:PORT polling every
# 200 ms; sets HR_PID and waits for /healthz.
start_headroom() {
    local port="$1" dir
    shift
    dir=$(work)
    RUST_LOG=info headroom run --listen "127.0.0.1:$port" --interval 200ms "$@" \
        >"$dir/headroom.log" 2>&1 &
    HR_PID=$!
    track "$HR_PID"
    kv headroom_pid "$HR_PID"
    if ! wait_until 60 "headroom serving /healthz" serving "http://127.0.0.1:$port/healthz"; then
        file_blob "$dir/headroom.log" headroom.log
        return 1
    fi
}

# stop PID...: SIGTERM, then reap.
stop() {
    local p
    for p in "$@"; do
        kill "$p" 2>/dev/null
    done
    for p in "$@"; do
        wait "$p" 2>/dev/null
    done
}

# container NAME: a container's cgroup $pod/NAME (memory.max 64M, no swap),
# as a runtime makes one; prints its path.
container() {
    local cg="$pod/$1"
    mkdir -p "$cg"
    echo 64M >"$cg/memory.max"
    [ -e "$cg/memory.swap.max" ] && echo 0 >"$cg/memory.swap.max"
    echo "$cg"
}

# reap PID CGROUP: waits for the death, collects it, removes the cgroup
# 30 ms after the death (as runtimes do); its wait status in REAPED.
reap() {
    while alive "$1"; do sleep 0.01; done
    sleep 0.03
    wait "$1" 2>/dev/null
    REAPED=$?
    rmdir "$2" || kv warning "could not remove $2"
}
