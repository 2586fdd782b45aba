#!/usr/bin/env bash
# Measures the daemon's own cost: RSS and CPU seconds of `headroom run` after
# DURATION (default 300 s) at 1 s polling, against a real v1 memory cgroup
# holding a Go process (gohog) with 100 MiB of heap, its expvar scraped every
# 5 s (the default), with a /metrics scrape every 15 s like Prometheus. Needs root and the v1 memory controller.
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
go_url="$(sed -n 's/^listening //p' "$port_file")/debug/vars"
target/release/headroom run --pid "$hog_pid" --go-url "$go_url" --listen 127.0.0.1:0 --interval 1s --log-format json 2> "$port_file.log" &
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
scrape=$(curl -fsS "http://$addr/metrics")
polls=$(awk '/^headroom_poll_duration_seconds_count/ {print $2}' <<<"$scrape")
psum=$(awk '/^headroom_poll_duration_seconds_sum/ {print $2}' <<<"$scrape")
awk -v d="$duration" -v p="$polls" -v u="$utime" -v s="$stime" -v t="$ticks" -v r="$rss_kb" -v h="$hwm_kb" -v ps="$psum" 'BEGIN {
  cpu = (u + s) / t
  printf "duration_s=%d polls=%d\n", d, p
  printf "rss_mib=%.2f hwm_mib=%.2f\n", r / 1024, h / 1024
  printf "cpu_seconds=%.3f cpu_per_poll_us=%.1f\n", cpu, cpu * 1e6 / p
  printf "mean_poll_wall_us=%.1f\n", ps * 1e6 / p
}'
rm -f "$port_file.log"
