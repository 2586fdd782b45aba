#!/usr/bin/env bash
# Measures what one scrape of the Go runtime costs the target, per source:
# `/debug/pprof/heap?debug=1` (the text heap profile and its MemStats
# trailer) against `/debug/vars` (expvar). For each: the response bytes,
# the latency seen by the scraper (median and 90th percentile), and the CPU
# time the target spent (utime + stime from /proc/PID/stat over SCRAPES
# scrapes, divided by SCRAPES; the target is otherwise idle).
#
# The target is gohog holding HEAP_MIB of Go heap, measured twice: as
# started (a handful of profile records), and after allocations from more
# sites. A heap profile has one record per (call stack, object size) that
# the sampler caught, and the debug=1 page symbolises every record's stack:
# its cost grows with the records. gohog allocates from a few call sites,
# so the extra records come from sizes: /hold with a different remainder
# each time (each rounded to its own 8 KiB page multiple), /fragment's 20
# size classes and the garbage churn. The record count is printed; a large
# service has thousands, so read the per-record cost too.
#
#   scripts/bench-pprof-scrape.sh [HEAP_MIB] [SCRAPES]     (default 256 200)
set -euo pipefail
cd "$(dirname "$0")/.."
heap=${1:-256}
scrapes=${2:-200}
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
scripts/build-test-programs.sh gohog >/dev/null
hz=$(getconf CLK_TCK)
out=$(mktemp)
hog_pid=""
cleanup() {
  [ -n "$hog_pid" ] && kill "$hog_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT

target/test-programs/gohog -listen 127.0.0.1:0 -hold "$heap" > "$out" &
hog_pid=$!
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
base=$(sed -n 's/^listening //p' "$out")
[ -n "$base" ] || { echo "gohog did not start" >&2; exit 1; }

# CPU ticks (user + system) the target has used.
ticks() { awk '{print $14 + $15}' "/proc/$hog_pid/stat"; }

# Profile records on the text page: lines like `1: 8192 [1: 8192] @ 0x...`.
records() { curl -s "$base/debug/pprof/heap?debug=1" | grep -cE '^[0-9]+: [0-9]+ \[[0-9]+: [0-9]+\] @' || true; }

# measure LABEL PATH: one table row.
measure() {
  local label=$1 path=$2 t0 t1 lat
  curl -s -o /dev/null "$base$path" # warm
  lat=$(mktemp)
  t0=$(ticks)
  for _ in $(seq "$scrapes"); do
    curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "$base$path" >> "$lat"
  done
  t1=$(ticks)
  sort -k2 -g "$lat" | awk -v n="$scrapes" -v d=$((t1 - t0)) -v hz="$hz" -v label="$label" -v path="$path" '
    { bytes += $1; t[NR] = $2 }
    END {
      med = t[int((n + 1) / 2)]; p90 = t[int(n * 0.9)]
      printf "| %s | `%s` | %d | %.2f ms | %.2f ms | %.2f ms |\n",
        label, path, bytes / n, med * 1000, p90 * 1000, d / hz / n * 1000
    }'
  rm -f "$lat"
}

# Idle CPU of the target, for scale.
t0=$(ticks); sleep 5; t1=$(ticks)
echo "gohog pid $hog_pid, $heap MiB held; idle CPU $(awk -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN{printf "%.1f", d / hz / 5 * 1000}') ms/s; $scrapes scrapes per row"
echo
echo "| records | page | bytes | latency p50 | latency p90 | target CPU per scrape |"
echo "|---|---|---|---|---|---|"
n=$(records)
measure "$n" "/debug/vars"
measure "$n" "/debug/pprof/heap?debug=1"

# More records: sizes from 8 KiB to 1016 KiB past whole MiBs (held, then
# dropped: a record stays in the profile after its objects are freed).
for i in $(seq 1 127); do
  curl -s -o /dev/null "$base/hold?mib=$(awk -v i="$i" 'BEGIN{printf "%.6f", 1 + i * 8 / 1024}')"
done
curl -s -o /dev/null "$base/fragment?mib=32"
curl -s -o /dev/null "$base/garbage?mib_per_s=50"
sleep 2
curl -s -o /dev/null "$base/garbage?mib_per_s=0"
curl -s -o /dev/null "$base/drop"
curl -s -o /dev/null "$base/hold?mib=$heap"
curl -s -o /dev/null "$base/freeos"
n=$(records)
measure "$n" "/debug/vars"
measure "$n" "/debug/pprof/heap?debug=1"
