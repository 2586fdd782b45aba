#!/usr/bin/env bash
# Measures `headroom node` watching N real Go containers (default 100) in a
# kubepods-shaped tree of real v1 memory cgroups (cgroupfs driver, Burstable
# pods, a gohog holding 8 MiB in each) at node mode's default 5 s interval:
# its CPU (share of one core) and RSS over DURATION seconds (default 300, with
# --window DURATION so the history is full at the end), the memory each target
# adds, then /metrics requests per second with headroom pinned to core 0 and
# the load generator (examples/http_load.rs, 4 keep-alive connections) on
# core 1, plain and gzipped (as Prometheus asks for it). Needs root and the v1 memory controller.
#   scripts/bench-node.sh [N] [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
duration=${2:-300}
mem=/sys/fs/cgroup/memory
[ -f "$mem/memory.usage_in_bytes" ] || { echo "needs the cgroup v1 memory controller at $mem (as root)" >&2; exit 1; }
scripts/build-test-programs.sh >/dev/null
cargo build --release --quiet --bin headroom --example http_load
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
base="$mem${own%/}/headroom-bench-node-$$"
root=$(mktemp -d)
pids=(); hr_pid=""
cleanup() {
  [ -n "$hr_pid" ] && kill "$hr_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -d "$base" ]; then
    find "$base" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "$base" 2>/dev/null || true
  fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$base/kubepods/burstable"
ln -s "$base" "$root/memory"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$hr_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$hr_pid/stat"; }
watched() { curl -fsS "http://$addr/metrics" | awk '/^headroom_targets\{state="watched"\}/ {print $2}'; }

taskset -c 0 target/release/headroom node --cgroup-root "$root" --listen 127.0.0.1:0 \
  --window "${duration}s" --log-format json 2> "$root/log" &
hr_pid=$!
addr=""
for _ in $(seq 100); do
  addr=$(grep -o '"addr":"[^"]*"' "$root/log" | head -1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break; sleep 0.1
done
[ -n "$addr" ] || { echo "headroom did not start" >&2; cat "$root/log" >&2; exit 1; }
sleep 6
rss0=$(rss_kb)
for i in $(seq "$n"); do
  d="$base/kubepods/burstable/pod$(printf '%08x' "$i")-0000-4000-8000-000000000000/$(printf '%064x' "$i")"
  mkdir -p "$d"
  echo $((256 * 1024 * 1024)) > "$d/memory.limit_in_bytes"
  sh -c 'echo $$ > "$0/cgroup.procs" && exec "$1" -hold 8' "$d" target/test-programs/gohog > /dev/null 2>&1 &
  pids+=($!)
done
for _ in $(seq 120); do [ "$(watched)" = "$n" ] && break; sleep 1; done
[ "$(watched)" = "$n" ] || { echo "headroom watches $(watched) of $n containers" >&2; tail -5 "$root/log" >&2; exit 1; }
ticks=$(getconf CLK_TCK)
c0=$(cpu_ticks); t0=$(date +%s.%N)
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -fsS "http://$addr/metrics" > /dev/null
  sleep 15
done
c1=$(cpu_ticks); t1=$(date +%s.%N)
rss1=$(rss_kb)
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$hr_pid/status")
scrape=$(curl -fsS "http://$addr/metrics")
polls=$(awk '/^headroom_poll_duration_seconds_count/ {print $2}' <<<"$scrape")
dsum=$(awk '/^headroom_discovery_duration_seconds_sum/ {print $2}' <<<"$scrape")
dcount=$(awk '/^headroom_discovery_duration_seconds_count/ {print $2}' <<<"$scrape")
awk -v n="$n" -v d="$duration" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tk="$ticks" \
    -v r0="$rss0" -v r1="$rss1" -v h="$hwm" -v p="$polls" -v ds="$dsum" -v dc="$dcount" -v bytes="${#scrape}" 'BEGIN {
  printf "targets=%d duration_s=%d interval_s=5 window_s=%d polls=%d\n", n, d, d, p
  printf "cpu_percent_of_one_core=%.2f\n", 100 * (c1 - c0) / tk / (t1 - t0)
  printf "rss_mib=%.2f hwm_mib=%.2f rss_before_targets_mib=%.2f\n", r1 / 1024, h / 1024, r0 / 1024
  printf "memory_per_target_kib=%.1f\n", (r1 - r0) / n
  printf "discovery_round_mean_ms=%.2f metrics_bytes=%d\n", 1000 * ds / dc, bytes
}'
taskset -c 1 target/release/examples/http_load "http://$addr/metrics" 10 4
taskset -c 1 target/release/examples/http_load "http://$addr/metrics" 10 4 gzip
