# Scenario read_v2: headroom's /metrics and /api/v1/status against the
# kernel's own v2 files, for gohog holding 64 MiB of heap in a cgroup with
# memory.max 256M. The kernel files are read just before and just after the
# scrape (A and B); PSI totals a poll before the scrape and after it.
SCEN=read_v2
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
cg=$(new_cgroup read_v2 256M)
kv cgroup "$cg"

start_gohog "$cg" 6061 -hold 64 || exit 1
start_headroom 9181 --pid "$GOHOG_PID" --smaps-interval 1s || exit 1
m=http://127.0.0.1:9181
wait_until 60 "headroom usage >= 64 MiB" metric_ge 9181 headroom_memory_usage_bytes 67108864 || exit 1
sleep 1

cat "$cg/memory.pressure" >"$d/pressure.before"
# Several polls (200 ms) after the PSI read above.
sleep 1
cat "$cg/memory.current" >"$d/current.a"
cat "$cg/memory.stat" >"$d/stat.a"
get "$m/metrics" >"$d/metrics"
get "$m/api/v1/status" >"$d/status"
cat "$cg/memory.current" >"$d/current.b"
cat "$cg/memory.stat" >"$d/stat.b"
cat "$cg/memory.events" >"$d/events"
cat "$cg/memory.max" >"$d/max"
cat "$cg/memory.peak" >"$d/peak" 2>/dev/null
cat "$cg/memory.pressure" >"$d/pressure.after"

kv current_a "$(cat "$d/current.a")"
kv current_b "$(cat "$d/current.b")"
kv memory_max "$(cat "$d/max")"
kv peak "$(cat "$d/peak" 2>/dev/null)"
for f in stat.a stat.b events pressure.before pressure.after metrics status; do
    file_blob "$d/$f" "$f"
done
kv healthz "$(http_code "$m/healthz")"
file_blob "$d/headroom.log" headroom.log
stop "$GOHOG_PID" "$HR_PID"
rmdir "$cg" || kv warning "could not remove $cg"
exit 0
