# Scenario runtime_restart: this script plays a container runtime the way
# podman and kubelets behave. gohog runs in pod/ctr1 (memory.max 64M) and
# leaks until the kernel OOM-kills it; within 30 ms of its death the script
# removes ctr1 and restarts gohog in a new pod/ctr2. Then gohog is killed
# with a plain SIGKILL (not an OOM kill), ctr2 removed at once and gohog
# restarted in pod/ctr3. headroom (--process gohog, 1 s polls, so every
# cgroup is gone before a poll could read it) must count exactly one kill,
# read from the cgroup (its watcher reads memory.events the moment the
# kernel signals), and none for the SIGKILL.
SCEN=runtime_restart
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
pod=/sys/fs/cgroup/pod
mkdir -p "$pod"
echo +memory >"$pod/cgroup.subtree_control"

# pid_followed PID: headroom's status names PID as the target.
pid_followed() { get "http://127.0.0.1:9183/api/v1/status" | grep -q "\"pid\": $1,"; }

# status_kv PREFIX: the kill counts and how the last kill was known.
status_kv() {
    local body
    body=$(get "http://127.0.0.1:9183/metrics")
    kv "$1_oom_kills" "$(echo "$body" | metric headroom_oom_kills_total)"
    kv "$1_inferred" "$(echo "$body" | metric headroom_oom_kills_inferred_total)"
    get "http://127.0.0.1:9183/api/v1/status" >"$d/$1.status"
    kv "$1_last_how" "$(tr -d ' \n' <"$d/$1.status" | sed -n 's/.*"last_oom_kill":{[^}]*"how":"\([a-z]*\)".*/\1/p')"
}

c1=$(container ctr1)
start_gohog "$c1" 6063 || exit 1
first=$GOHOG_PID
RUST_LOG=info headroom run --listen 127.0.0.1:9183 --interval 1s --process gohog >"$d/headroom.log" 2>&1 &
HR_PID=$!
track "$HR_PID"
wait_until 60 "headroom follows gohog" pid_followed "$first" || { file_blob "$d/headroom.log" headroom.log; exit 1; }
wait_until 30 "headroom reads the cgroup" metric_ge 9183 headroom_memory_usage_bytes 1 || exit 1

# 1. An OOM kill, the cgroup removed at once, a restart in a new one.
get "http://127.0.0.1:6063/leak?mib_per_s=32" >/dev/null
reap "$first" "$c1"
kv exit_status "$REAPED"
kv ctr1_removed 1
c2=$(container ctr2)
start_gohog "$c2" 6064 || exit 1
second=$GOHOG_PID
wait_until 30 "headroom follows the restart" pid_followed "$second" || exit 1
sleep 2
status_kv after_oom

# 2. A plain SIGKILL, the cgroup removed at once, a restart in a new one.
kill -9 "$second"
reap "$second" "$c2"
kv exit_status "$REAPED"
c3=$(container ctr3)
start_gohog "$c3" 6065 || exit 1
third=$GOHOG_PID
wait_until 30 "headroom follows the second restart" pid_followed "$third" || exit 1
sleep 2
status_kv after_kill9

cat "$pod/memory.events" >"$d/pod.events"
file_blob "$d/pod.events" pod.events
file_blob "$d/headroom.log" headroom.log
stop "$third" "$HR_PID"
rmdir "$c3" "$pod" || kv warning "could not remove $c3 or $pod"
exit 0
