#!/usr/bin/env bash
# Measures the daemon's own cost: RSS and CPU seconds of `headroom run` after
# DURATION (default 300 s) at 1 s polling, against a real v1 memory cgroup
# holding a Go process (gohog) with 100 MiB of heap, with a /metrics scrape
# every 15 s like Prometheus. Needs root and the v1 memory controller.
#   scripts/bench-daemon.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-300}
mem=/sys/fs/cgroup/memory
[ -f "$mem/memory.usage_in_bytes" ] || { echo "needs the cgroup v1 memory controller at $mem (as root)" >&2; exit 1; }
scripts/build-test-programs.sh >/dev/null
cargo build --release --quiet
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
cg="$mem${own%/}/headroom-bench-$$"
hog_pid=""; hr_pid=""; port_file=$(mktemp)
cleanup() {
  [ -n "$hr_pid" ] && kill "$hr_pid" 2>/dev/null || true
  [ -n "$hog_pid" ] && kill "$hog_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -d "$cg" ]; then
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do echo "$p" > "$(dirname "$cg")/cgroup.procs" || true; done
    rmdir "$cg" 2>/dev/null || true
  fi
  rm -f "$port_file"
}
trap cleanup EXIT
mkdir "$cg"
echo $((512 * 1024 * 1024)) > "$cg/memory.limit_in_bytes"
sh -c 'echo $$ > "$0/cgroup.procs" && exec "$1" -hold 100' "$cg" target/test-programs/gohog > "$port_file" &
hog_pid=$!
for _ in $(seq 50); do grep -q listening "$port_file" && break; sleep 0.1; done
target/release/headroom run --pid "$hog_pid" --listen 127.0.0.1:0 --interval 1s --log-format json 2> "$port_file.log" &
hr_pid=$!
addr=""
for _ in $(seq 50); do
  addr=$(grep -o '"addr":"[^"]*"' "$port_file.log" | head -1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break; sleep 0.1
done
[ -n "$addr" ] || { echo "headroom did not start" >&2; cat "$port_file.log" >&2; exit 1; }
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$duration" ]; do
  curl -fsS "http://$addr/metrics" > /dev/null
  sleep 15
done
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$hr_pid/stat")
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$hr_pid/status")
hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$hr_pid/status")
polls=$(curl -fsS "http://$addr/metrics" | awk '/^headroom_poll_duration_seconds_count/ {print $2}')
psum=$(curl -fsS "http://$addr/metrics" | awk '/^headroom_poll_duration_seconds_sum/ {print $2}')
cpu=$(echo "scale=3; ($utime + $stime) / $ticks" | bc)
echo "duration_s=$duration polls=$polls"
echo "rss_mib=$(echo "scale=2; $rss_kb/1024" | bc) hwm_mib=$(echo "scale=2; $hwm_kb/1024" | bc)"
echo "cpu_seconds=$cpu cpu_per_poll_us=$(echo "scale=1; $cpu * 1000000 / $polls" | bc)"
echo "mean_poll_wall_us=$(echo "scale=1; $psum * 1000000 / $polls" | bc)"
rm -f "$port_file.log"
