# Scenario memory_high: memory.high 48M below memory.max 160M. gohog holds
# 48 MiB of heap on top of its runtime, so the cgroup goes over memory.high:
# the kernel throttles it and counts `high` events, which headroom must
# export as headroom_memory_events_total{event="high"}; the status JSON must
# state the limit it uses (memory.limit, memory.limit_source) and memory.high.
# The throttling sleeps count as memory stalls: PSI totals grow, and
# headroom's must lie between a read before the hold and one after the scrape.
SCEN=memory_high
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
cg=$(new_cgroup memory_high 160M)
echo 48M >"$cg/memory.high"
kv cgroup "$cg"

start_gohog "$cg" 6064 || exit 1
start_headroom 9184 --pid "$GOHOG_PID" || exit 1
m=http://127.0.0.1:9184
wait_until 60 "headroom usage" metric_ge 9184 headroom_memory_usage_bytes 1 || exit 1
file_blob "$cg/memory.events" events.before
file_blob "$cg/memory.pressure" pressure.before
# Throttled allocations are slow: do not wait for the reply here.
get "http://127.0.0.1:6064/hold?mib=48" >"$d/hold.json" &
HOLD=$!
track "$HOLD"
wait_until 90 "headroom_memory_events_total{event=\"high\"} >= 1" \
    metric_ge 9184 'headroom_memory_events_total{event="high"}' 1
gone() { ! alive "$1"; }
wait_until 60 "hold request answered" gone "$HOLD"
sleep 1

cat "$cg/memory.events" >"$d/events.a"
get "$m/metrics" >"$d/metrics"
get "$m/api/v1/status" >"$d/status"
cat "$cg/memory.events" >"$d/events.b"
cat "$cg/memory.pressure" >"$d/pressure.after"
kv current "$(cat "$cg/memory.current")"
kv memory_high "$(cat "$cg/memory.high")"
kv memory_max "$(cat "$cg/memory.max")"
kv hold_response "$(cat "$d/hold.json")"
for f in events.a events.b pressure.after metrics status; do
    file_blob "$d/$f" "$f"
done
kv healthz "$(http_code "$m/healthz")"
file_blob "$d/headroom.log" headroom.log
stop "$GOHOG_PID" "$HR_PID"
rmdir "$cg" || kv warning "could not remove $cg"
exit 0
