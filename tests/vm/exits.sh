# Scenario exits: every exit of the target classified and every OOM kill
# counted once on the real v2 kernel, with the runtime removing each dead
# container's cgroup 30 ms after the death and restarting it in a new one.
# Played twice: with a pidfd for the target's exit (--proc-root /proc), and
# without (--proc-root a link to /proc: its PIDs need not be ours). Steps,
# in pod/<mode>-ctrN (memory.max 64M), gohog the target (--process gohog):
#   1. a leak to the OOM kill;
#   2. a kill -9 at ~70 % of the limit;
#   3. a child (hogchild, the same cgroup) leaks and is OOM-killed while
#      the target lives;
#   4. a jump from ~40 % to the kill within one poll (2 s polls);
#   5. memory.oom.group = 1: the target's leak kills it and the child.
# Each mode's counts and exits are written as <mode>_* keys, with the
# kernel's own count of the kills in the mode's pod cgroup after each step
# (<mode>_kernel_kills_after_N: memory.events of the pod is hierarchical
# and keeps the counts of removed children).
SCEN=exits
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
cp "$(command -v gohog)" "$d/hogchild"
ln -s /proc "$d/proc"

# start_child CGROUP PORT ARGS...: hogchild in CGROUP; sets CHILD_PID.
start_child() {
    local cg="$1" port="$2"
    shift 2
    sh -c 'cg=$1; shift; echo $$ >"$cg/cgroup.procs" && exec "$@"' sh \
        "$cg" "$d/hogchild" -listen "127.0.0.1:$port" "$@" >"$d/child.out" 2>&1 &
    CHILD_PID=$!
    track "$CHILD_PID"
    wait_until 60 "hogchild listening" grep -q '^listening ' "$d/child.out"
}

# play MODE PORT HEADROOM_ARGS...
play() {
    local mode="$1" port="$2" m
    shift 2
    pod=/sys/fs/cgroup/exits-$mode
    mkdir -p "$pod"
    echo +memory >"$pod/cgroup.subtree_control"
    kernel_kills() { kv "${mode}_kernel_kills_after_$1" "$(awk '$1 == "oom_kill" { print $2 }' "$pod/memory.events")"; }
    m="http://127.0.0.1:$port"
    pid_followed() { get "$m/api/v1/status" | grep -q "\"pid\": $1,"; }
    c=$(container ctr1)
    start_gohog "$c" 6071 || return 1
    RUST_LOG=info headroom run --listen "127.0.0.1:$port" --interval 2s --process gohog "$@" \
        >"$d/$mode.log" 2>&1 &
    local hr=$!
    track "$hr"
    wait_until 60 "headroom follows gohog" pid_followed "$GOHOG_PID" || { file_blob "$d/$mode.log" "$mode.log"; return 1; }
    wait_until 30 "headroom reads the cgroup" metric_ge "$port" headroom_memory_usage_bytes 1 || return 1

    # 1. A leak to the OOM kill.
    get "http://127.0.0.1:6071/leak?mib_per_s=32" >/dev/null
    reap "$GOHOG_PID" "$c"
    kernel_kills 1
    c=$(container ctr2)
    start_gohog "$c" 6072 || return 1
    wait_until 30 "headroom follows the restart" pid_followed "$GOHOG_PID" || return 1

    # 2. kill -9 at ~70 % of the limit.
    get "http://127.0.0.1:6072/hold?mib=40" >/dev/null
    sleep 4.5
    kill -9 "$GOHOG_PID"
    reap "$GOHOG_PID" "$c"
    kernel_kills 2
    c=$(container ctr3)
    start_gohog "$c" 6073 || return 1
    local target=$GOHOG_PID
    wait_until 30 "headroom follows the second restart" pid_followed "$target" || return 1

    # 3. A child's OOM kill; the target lives.
    start_child "$c" 6081 || return 1
    sleep 2.5 # seen by a poll: a victim is named from the processes polls saw
    get "http://127.0.0.1:6081/leak?mib_per_s=40" >/dev/null
    while alive "$CHILD_PID"; do sleep 0.01; done
    wait "$CHILD_PID" 2>/dev/null
    sleep 4.5
    kernel_kills 3
    kv "${mode}_target_alive_after_child" "$(alive "$target" && echo 1 || echo 0)"

    # 4. From ~40 % to the kill within one poll.
    get "http://127.0.0.1:6073/hold?mib=18" >/dev/null
    sleep 4.5
    kv "${mode}_usage_before_jump" "$(get "$m/metrics" | metric headroom_memory_usage_bytes)"
    get "http://127.0.0.1:6073/hold?mib=100" >/dev/null
    reap "$target" "$c"
    kernel_kills 4
    c=$(container ctr4)
    echo 1 >"$c/memory.oom.group"
    start_gohog "$c" 6074 || return 1
    wait_until 30 "headroom follows the third restart" pid_followed "$GOHOG_PID" || return 1

    # 5. A group kill: the target's leak takes the child with it.
    start_child "$c" 6082 || return 1
    sleep 2.5
    get "http://127.0.0.1:6074/leak?mib_per_s=32" >/dev/null
    while alive "$CHILD_PID"; do sleep 0.01; done
    wait "$CHILD_PID" 2>/dev/null
    reap "$GOHOG_PID" "$c"
    kernel_kills 5
    c=$(container ctr5)
    start_gohog "$c" 6075 || return 1
    wait_until 30 "headroom follows the fourth restart" pid_followed "$GOHOG_PID" || return 1
    sleep 4.5

    local body
    body=$(get "$m/metrics")
    kv "${mode}_oom_kills" "$(echo "$body" | metric headroom_oom_kills_total)"
    kv "${mode}_inferred" "$(echo "$body" | metric headroom_oom_kills_inferred_total)"
    for r in oom_kill oom_group_kill node_oom signal exit unknown; do
        kv "${mode}_exits_$r" "$(echo "$body" | metric "headroom_target_exits_total{reason=\"$r\"}")"
    done
    get "$m/api/v1/status" >"$d/$mode.status"
    file_blob "$d/$mode.status" "$mode.status"
    file_blob "$d/$mode.log" "$mode.log"
    stop "$GOHOG_PID" "$hr"
    rmdir "$c" "$pod" || kv warning "could not remove $c or $pod"
}

play pidfd 9185 || exit 1
play nopidfd 9186 --proc-root "$d/proc" || exit 1
exit 0
