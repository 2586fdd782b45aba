#!/usr/bin/env bash
# Soak: runs the release binary for HOURS (default 1; fractions allowed) at
# 1 s polls against a real Go service (gohog) in a real v1 memory cgroup with
# a 512 MiB limit. Every cycle (RESTART_EVERY, default 300 s) the service is
# killed by PID and started again in the same cgroup; within a cycle it
# holds 50 MiB, leaks 1 MiB/s and churns 20 MiB/s of garbage (GOMEMLIMIT
# 450 MiB), so the risk rises (to critical within minutes) and falls back
# at each restart: webhook alerts are sent to a loopback receiver and heap
# profiles are captured into a --profile-dir.
# /metrics, /api/v1/status and / are scraped every 5 s. headroom's RSS,
# peak RSS and open descriptors are sampled every SAMPLE_EVERY (default 5) s
# into a CSV; a summary (start/end/max, the RSS slope over the second half)
# is printed at the end. Needs root and the v1 memory controller. Not part
# of the test command.
#
#   scripts/soak.sh [HOURS]
#   env: RESTART_EVERY=300 SAMPLE_EVERY=5 SOAK_DIR=target/soak
#        HEADROOM_BIN (default: the release binary, built here)
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:-1}
restart_every=${RESTART_EVERY:-300}
sample_every=${SAMPLE_EVERY:-5}
soak_dir=${SOAK_DIR:-target/soak}
duration=$(awk -v h="$hours" 'BEGIN { printf "%d", h * 3600 }')
[ "$duration" -gt 0 ] || { echo "soak: HOURS must be a positive number, got '$hours'" >&2; exit 64; }
mem=/sys/fs/cgroup/memory
[ -f "$mem/memory.usage_in_bytes" ] || { echo "soak: needs the cgroup v1 memory controller at $mem (as root)" >&2; exit 1; }
for p in python3 curl; do
  command -v "$p" >/dev/null || { echo "soak: '$p' not found: run scripts/install-test-deps.sh" >&2; exit 1; }
done
scripts/build-test-programs.sh >/dev/null
if [ -z "${HEADROOM_BIN:-}" ]; then
  cargo build --release --quiet
  HEADROOM_BIN=${CARGO_TARGET_DIR:-target}/release/headroom
fi
gohog_src=target/test-programs/gohog

own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
cg="$mem${own%/}/headroom-soak-$$"
work=$(mktemp -d)
mkdir -p "$soak_dir"
csv="$soak_dir/soak-$(date -u +%Y%m%dT%H%M%SZ).csv"
# A name of this run alone (at most 15 bytes, the kernel's comm), so that
# two runs side by side each find their own.
hog_name=soak$$
gohog=$work/$hog_name
cp "$gohog_src" "$gohog"
hog_pid=""; hr_pid=""; hook_pid=""

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
  for p in "$hr_pid" "$hog_pid" "$hook_pid"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "$hr_pid" "$hog_pid" "$hook_pid"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  if [ -d "$cg" ]; then
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do echo "$p" > "$(dirname "$cg")/cgroup.procs" || true; done
    rmdir "$cg" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$cg"
echo $((512 * 1024 * 1024)) > "$cg/memory.limit_in_bytes"
echo 0 > "$cg/memory.swappiness" 2>/dev/null || true

# The webhook receiver: counts POSTs into a file.
cat > "$work/hook.py" <<'EOF'
import http.server, sys
count_file = sys.argv[2]
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global n
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n += 1
        with open(count_file, "w") as f:
            f.write(str(n))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
hook_port=$(free_port)
echo 0 > "$work/hooks"
python3 "$work/hook.py" "$hook_port" "$work/hooks" &
hook_pid=$!

go_port=$(free_port)
restarts=0
# The service keeps its port across restarts (headroom's --go-url names
# it). While it is down another program on the machine may take that port
# for a moment: the start is tried again, for up to a minute.
start_hog() {
  local try
  for try in $(seq 60); do
    GOMEMLIMIT=450MiB sh -c 'echo $$ > "$0/cgroup.procs" && exec "$1" -listen "$2" -hold 50 -leak 1 -garbage 20' \
      "$cg" "$gohog" "127.0.0.1:$go_port" > "$work/hog.out" 2>&1 &
    hog_pid=$!
    for _ in $(seq 100); do
      grep -q listening "$work/hog.out" && return 0
      kill -0 "$hog_pid" 2>/dev/null || break
      sleep 0.1
    done
    if grep -q "address already in use" "$work/hog.out"; then
      wait "$hog_pid" 2>/dev/null || true
      echo "soak: port $go_port taken by another program, starting gohog again (try $try)" >&2
      sleep 1
      continue
    fi
    break
  done
  echo "soak: gohog did not start:" >&2
  cat "$work/hog.out" >&2
  exit 1
}
start_hog

mkdir "$work/profiles"
"$HEADROOM_BIN" run --process "$hog_name" --go-url "http://127.0.0.1:$go_port/debug/vars" \
  --listen 127.0.0.1:0 --interval 1s --window 2m --warn-within 30m --critical-within 5m \
  --webhook-url "http://127.0.0.1:$hook_port/hook" --profile-dir "$work/profiles" \
  --log-format json 2> "$work/headroom.log" &
hr_pid=$!
addr=""
for _ in $(seq 100); do
  addr=$(grep -o '"addr":"[^"]*"' "$work/headroom.log" | head -1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break; sleep 0.1
done
[ -n "$addr" ] || { echo "soak: headroom did not start" >&2; cat "$work/headroom.log" >&2; exit 1; }

metric() { awk -v m="$1" '$1 == m {print $2; exit}' "$work/scrape"; }

echo "elapsed_s,rss_kib,hwm_kib,fds,threads,polls,go_up,risk,restarts,webhook_posts,profiles,scrape_failures" > "$csv"
echo "soak: ${hours} h (${duration} s), restart every ${restart_every} s, samples every ${sample_every} s -> $csv"
start=$(date +%s); last_restart=$start; next_sample=$start; failures=0
while :; do
  now=$(date +%s); elapsed=$((now - start))
  [ "$elapsed" -ge "$duration" ] && break
  kill -0 "$hr_pid" 2>/dev/null || { echo "soak: headroom exited at ${elapsed} s" >&2; tail -20 "$work/headroom.log" >&2; exit 1; }
  if [ $((now - last_restart)) -ge "$restart_every" ]; then
    kill "$hog_pid" 2>/dev/null || true
    wait "$hog_pid" 2>/dev/null || true
    restarts=$((restarts + 1)); last_restart=$now
    start_hog
  fi
  curl -fsS "http://$addr/api/v1/status" > /dev/null || failures=$((failures + 1))
  curl -fsS "http://$addr/" > /dev/null || failures=$((failures + 1))
  if curl -fsS "http://$addr/metrics" > "$work/scrape"; then :; else failures=$((failures + 1)); : > "$work/scrape"; fi
  if [ "$now" -ge "$next_sample" ]; then
    next_sample=$((now + sample_every))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$hr_pid/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$hr_pid/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$hr_pid/status")
    fds=$(ls "/proc/$hr_pid/fd" | wc -l)
    polls=$(metric headroom_poll_duration_seconds_count)
    go_up=$(metric 'headroom_source_up{source="go"}')
    risk=$(metric headroom_oom_risk)
    profiles=$(find "$work/profiles" -maxdepth 1 -type f ! -name '*.tmp' | wc -l)
    echo "$elapsed,$rss,$hwm,$fds,$threads,${polls:-},${go_up:-},${risk:-},$restarts,$(cat "$work/hooks"),$profiles,$failures" >> "$csv"
  fi
  sleep 5
done

awk -F, 'NR == 1 { next }
  { n++; t[n] = $1; r[n] = $2; f[n] = $4
    if ($2 > rmax) rmax = $2; if ($3 > hmax) hmax = $3; if ($4 > fmax) fmax = $4
    if (fmin == "" || $4 < fmin) fmin = $4 }
  END {
    if (n < 4) { print "soak: too few samples for a summary"; exit }
    # Least-squares slope of RSS over the second half (after warm-up).
    for (i = int(n / 2) + 1; i <= n; i++) { m++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i] }
    slope = (m * sxy - sx * sy) / (m * sxx - sx * sx)
    printf "samples=%d duration_s=%d\n", n, t[n]
    printf "rss_mib start=%.2f end=%.2f max=%.2f hwm_max=%.2f\n", r[1] / 1024, r[n] / 1024, rmax / 1024, hmax / 1024
    printf "rss_slope_second_half_kib_per_hour=%.1f\n", slope * 3600
    printf "fds start=%d end=%d min=%d max=%d\n", f[1], f[n], fmin, fmax
    printf "polls=%s restarts=%s webhook_posts=%s profiles=%s scrape_failures=%s\n", $6, $9, $10, $11, $12
  }' "$csv"
echo "csv: $csv"
