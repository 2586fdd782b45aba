# Scenario sidecar: the topology Kubernetes builds with shareProcessNamespace.
# One PID namespace; gohog (as gohog-target) in cgroup /pod/target
# (memory.max 96M) with its own cgroup and mount namespaces; headroom in
# /pod/sidecar (memory.max 400M) with namespaces of its own, started with
# --process gohog-target. From headroom's namespace the target's cgroup reads
# 0::/../target, outside its /sys/fs/cgroup mount: it must fall back to
# /proc/PID/root/sys/fs/cgroup and report the target's memory, not its own.
SCEN=sidecar
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
pod=/sys/fs/cgroup/pod
mkdir -p "$pod"
echo +memory >"$pod/cgroup.subtree_control"
mkdir -p "$pod/target" "$pod/sidecar"
echo 96M >"$pod/target/memory.max"
echo 400M >"$pod/sidecar/memory.max"
for c in target sidecar; do
    [ -e "$pod/$c/memory.swap.max" ] && echo 0 >"$pod/$c/memory.swap.max"
done

sh /vm/container.sh "$pod/target" target gohog-target -listen 127.0.0.1:6063 -hold 32 \
    >"$d/gohog.out" 2>&1 &
TARGET=$!
track "$TARGET"
kv target_pid "$TARGET"
wait_until 60 "gohog-target listening" grep -q '^listening ' "$d/gohog.out" || {
    file_blob "$d/gohog.out" gohog.out
    exit 1
}

VIEW_PID=$TARGET RUST_LOG=info sh /vm/container.sh "$pod/sidecar" sidecar \
    headroom run --listen 127.0.0.1:9183 --interval 200ms --process gohog-target \
    >"$d/headroom.log" 2>&1 &
HR_PID=$!
track "$HR_PID"
kv headroom_pid "$HR_PID"
m=http://127.0.0.1:9183
wait_until 60 "headroom serving" serving "$m/healthz" || {
    file_blob "$d/headroom.log" headroom.log
    exit 1
}
wait_until 60 "headroom usage >= 32 MiB" metric_ge 9183 headroom_memory_usage_bytes 33554432
sleep 1

cat "$pod/target/memory.current" >"$d/target.current.a"
cat "$pod/sidecar/memory.current" >"$d/sidecar.current.a"
get "$m/metrics" >"$d/metrics"
get "$m/api/v1/status" >"$d/status"
cat "$pod/target/memory.current" >"$d/target.current.b"
kv target_current_a "$(cat "$d/target.current.a")"
kv target_current_b "$(cat "$d/target.current.b")"
kv sidecar_current "$(cat "$d/sidecar.current.a")"
kv target_memory_max "$(cat "$pod/target/memory.max")"
kv sidecar_memory_max "$(cat "$pod/sidecar/memory.max")"
kv target_procs "$(tr '\n' ' ' <"$pod/target/cgroup.procs")"
kv sidecar_procs "$(tr '\n' ' ' <"$pod/sidecar/cgroup.procs")"
kv init_view_of_target "$(cat "/proc/$TARGET/cgroup")"
file_blob /tmp/views/target view.target
file_blob /tmp/views/sidecar view.sidecar
file_blob "$d/metrics" metrics
file_blob "$d/status" status
kv healthz "$(http_code "$m/healthz")"
file_blob "$d/headroom.log" headroom.log
stop "$TARGET" "$HR_PID"
rmdir "$pod/target" "$pod/sidecar" "$pod" || kv warning "could not remove $pod"
exit 0
