# Scenario node: `headroom node` on cgroup v2, with the kubelet's systemd
# driver layout: a Burstable pod with a Go container (gohog holding 64 MiB
# under a 160M memory.max), a Guaranteed pod with a calm Go container, and
# a BestEffort pod whose container is no Go program (busybox sleep).
# headroom must find the two Go containers, read each one's own cgroup, and
# skip the third.
SCEN=node
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
R=/sys/fs/cgroup
UID1=6f1c2b9e-0d4a-4c4e-9f57-1a2b3c4d5e6f
UID2=0e9d8c7b-6a59-4483-b271-605f4e3d2c1b
UID3=11111111-2222-4333-8444-555555555555
ID1=a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90
ID2=c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00
ID3=5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e
u() { echo "$1" | tr - _; }

# mkslice PATH: makes PATH below the root, each level delegating memory.
mkslice() {
    local p=$R part
    for part in $(echo "$1" | tr / ' '); do
        echo +memory >"$p/cgroup.subtree_control" 2>/dev/null
        p=$p/$part
        mkdir -p "$p"
    done
    echo "$p"
}
c1=$(mkslice "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod$(u $UID1).slice/cri-containerd-$ID1.scope")
c2=$(mkslice "kubepods.slice/kubepods-pod$(u $UID2).slice/cri-containerd-$ID2.scope")
c3=$(mkslice "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod$(u $UID3).slice/cri-containerd-$ID3.scope")
echo 160M >"$c1/memory.max"
echo 96M >"$c2/memory.max"
kv c1 "$c1"
kv c2 "$c2"

start_gohog "$c1" 6065 || exit 1
HOG1=$GOHOG_PID
start_gohog "$c2" 6066 || exit 1
HOG2=$GOHOG_PID
sh -c 'echo $$ >"$1/cgroup.procs" && exec sleep 600' sh "$c3" &
SLEEP=$!
track "$SLEEP"
get "http://127.0.0.1:6065/hold?mib=64" >"$d/hold.json"

RUST_LOG=info headroom node --listen 127.0.0.1:9185 --interval 200ms --cgroup-root $R \
    >"$d/headroom.log" 2>&1 &
HR_PID=$!
track "$HR_PID"
m=http://127.0.0.1:9185
wait_until 60 "headroom node serving /healthz" serving "$m/healthz" || {
    file_blob "$d/headroom.log" headroom.log
    exit 1
}
two_watched() { get "$m/metrics" | grep -q '^headroom_targets{state="watched"} 2$'; }
wait_until 60 "two Go containers watched" two_watched
sleep 2
kv current1 "$(cat "$c1/memory.current")"
get "$m/metrics" >"$d/metrics"
get "$m/api/v1/targets" >"$d/targets"
kv current1_after "$(cat "$c1/memory.current")"
kv current2 "$(cat "$c2/memory.current")"
kv go_pids "$HOG1 $HOG2"
kv status_code "$(http_code "$m/api/v1/status")"
for f in metrics targets; do
    file_blob "$d/$f" "$f"
done
file_blob "$d/headroom.log" headroom.log
stop "$HR_PID" "$HOG1" "$HOG2" "$SLEEP"
for c in "$c1" "$c2" "$c3"; do rmdir "$c" || kv warning "could not remove $c"; done
exit 0
