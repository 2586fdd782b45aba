# Scenario oom_kill: gohog leaks Go heap at 1.5 MiB/s in a cgroup with
# memory.max 96M until the kernel OOM-kills it (about a minute: long enough
# for headroom's 30 s trend grace and a warning before the kill). While it
# runs, /metrics is polled every 0.5 s into a `timeline` section (usage, oom
# kills, headroom_oom_risk, time to OOM). Then headroom must count exactly
# one kill and keep serving.
SCEN=oom_kill
# shellcheck source=lib.sh
. /vm/lib.sh
d=$(work)
cg=$(new_cgroup oom_kill 96M)
kv cgroup "$cg"
kv memory_max "$(cat "$cg/memory.max")"

start_gohog "$cg" 6062 || exit 1
start_headroom 9182 --pid "$GOHOG_PID" || exit 1
m=http://127.0.0.1:9182
wait_until 60 "headroom usage" metric_ge 9182 headroom_memory_usage_bytes 1 || exit 1
file_blob "$cg/memory.events" events.before
get "$m/metrics" >"$d/metrics.before"
file_blob "$d/metrics.before" metrics.before

get "http://127.0.0.1:6062/leak?mib_per_s=1.5" >"$d/leak.json"
kv leak_response "$(cat "$d/leak.json")"
t0=$(uptime_s)
kv leak_start_s "$t0"

# timeline: t (s since the leak began) and the series headroom exports.
sample() {
    local t body
    t=$(awk -v a="$(uptime_s)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    body=$(get "$m/metrics")
    say timeline "t=$t gohog_alive=$1 $(echo "$body" | awk '
        function v(n) { return (n in val) ? val[n] : "absent" }
        !/^#/ && NF == 2 { val[$1] = $2 }
        END {
            printf "usage=%s unreclaimable=%s limit=%s oom_kills=%s oom_risk=%s time_to_oom=%s",
                v("headroom_memory_usage_bytes"), v("headroom_memory_unreclaimable_bytes"),
                v("headroom_memory_limit_bytes"), v("headroom_oom_kills_total"),
                v("headroom_oom_risk"), v("headroom_time_to_oom_seconds")
        }')"
}
start=$(date +%s)
while alive "$GOHOG_PID"; do
    if [ $(($(date +%s) - start)) -ge 120 ]; then
        kv timeout "gohog still alive 120 s into the leak"
        break
    fi
    sample 1
    sleep 0.5
done
wait "$GOHOG_PID"
kv gohog_exit "$?"
kv killed_after_s "$(awk -v a="$(uptime_s)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"
wait_until 20 "headroom_oom_kills_total >= 1" metric_ge 9182 headroom_oom_kills_total 1
# Polls go on after the kill: the count must stay at one.
for _ in 1 2 3 4; do
    sample 0
    sleep 0.5
done

get "$m/metrics" >"$d/metrics"
get "$m/api/v1/status" >"$d/status"
cat "$cg/memory.events" >"$d/events"
cat "$cg/memory.events.local" >"$d/events.local"
cat "$cg/memory.pressure" >"$d/pressure"
kv current "$(cat "$cg/memory.current")"
kv peak "$(cat "$cg/memory.peak" 2>/dev/null)"
for f in events events.local pressure metrics status; do
    file_blob "$d/$f" "$f"
done
kv healthz "$(http_code "$m/healthz")"
dmesg | grep -iE 'out of memory|oom-kill|killed process' | blob dmesg
file_blob "$d/headroom.log" headroom.log
stop "$HR_PID"
rmdir "$cg" || kv warning "could not remove $cg"
exit 0
