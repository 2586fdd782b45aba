#!/bin/sh
# container.sh CGROUP NAME PROG ARGS...: runs PROG as a container runtime
# does: in CGROUP, in a cgroup namespace rooted there and a mount namespace
# of its own with cgroup2 mounted afresh on /sys/fs/cgroup (so it shows only
# CGROUP). Before exec'ing PROG it writes what it sees to /tmp/views/NAME:
# its /proc/self/cgroup, its cgroup2 mount, its own memory.max and, when
# VIEW_PID is set, /proc/VIEW_PID/cgroup as read from inside.
# util-linux unshare by path (busybox's applet, which the shell prefers, has
# no --cgroup); the PID stays the same
# from start to PROG.
cg=$1 name=$2
shift 2
if [ -z "$IN_CONTAINER" ]; then
    echo $$ >"$cg/cgroup.procs" || exit 1
    IN_CONTAINER=1 exec /usr/bin/unshare --cgroup --mount --propagation private sh /vm/container.sh "$cg" "$name" "$@"
fi
umount /sys/fs/cgroup || exit 1
mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 1
mkdir -p /tmp/views
{
    echo "self_cgroup=$(cat /proc/self/cgroup)"
    echo "cgroup2_mount=$(grep ' - cgroup2 ' /proc/self/mountinfo | tr '\n' ';')"
    echo "own_memory_max=$(cat /sys/fs/cgroup/memory.max)"
    echo "own_root_procs=$(tr '\n' ' ' </sys/fs/cgroup/cgroup.procs)"
    [ -n "$VIEW_PID" ] && echo "view_pid_cgroup=$(cat "/proc/$VIEW_PID/cgroup")"
} >"/tmp/views/$name"
unset IN_CONTAINER VIEW_PID
exec "$@"
