#!/usr/bin/env bash
# Runs every coverage-guided fuzz target (fuzz/fuzz_targets/*) for SECONDS
# each (default 60), seeded from the test fixtures and fuzz/seeds/.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 10         # a short run (the test command does this)
#   scripts/fuzz.sh 600 expvar prometheus pprof_heap   # longer, some targets only
#
# Needs cargo-fuzz (installed here when absent) and libFuzzer, which
# cargo-fuzz builds from its libfuzzer-sys crate. The toolchain is stable;
# RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz passes.
# Built without a sanitizer (the parsers are safe Rust: a finding is a
# panic, including integer overflow, enabled with -a), which builds and runs
# several times faster than with AddressSanitizer.
#
# A finding stops the run with the failing input saved under
# fuzz/artifacts/TARGET/ (kept out of git); reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-...
# from fuzz/, fix it and add the input as a unit test. The corpus grows in
# fuzz/corpus/TARGET/ (kept out of git) and is reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 64 ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions)

all_targets=(cgroup_values flat_keyed psi proc_status smaps_rollup proc_cgroup mountinfo expvar prometheus pprof_heap config_toml go_buildinfo inject)
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=("${all_targets[@]}")
fi

# Seeds: the fixture files each target parses, found by name.
seed_files() {
  local f=tests/fixtures
  case "$1" in
    cgroup_values)
      find "$f" -type f \( -name memory.current -o -name memory.max -o -name memory.high -o -name memory.peak \
        -o -name memory.swap.current -o -name memory.limit_in_bytes -o -name memory.usage_in_bytes \
        -o -name memory.max_usage_in_bytes -o -name memory.soft_limit_in_bytes -o -name memory.failcnt \) ;;
    flat_keyed)
      find "$f" -type f \( -name memory.stat -o -name memory.events -o -name memory.events.local \
        -o -name memory.oom_control -o -name memory.numa_stat \) ;;
    psi) find "$f" -type f -name '*.pressure' ;;
    proc_status) find "$f" -type f -path '*/proc/*/status' ;;
    smaps_rollup) find "$f" -type f -name smaps_rollup ;;
    proc_cgroup) find "$f" -type f -path '*/proc/*/cgroup' ;;
    mountinfo) find "$f" -type f -name mountinfo ;;
    expvar) find "$f/go" -type f -name '*.json' ;;
    prometheus) find "$f/go" scripts/testdata -type f -name '*.prom' ;;
    pprof_heap) find "$f/go" -type f -name 'pprof-heap-*.txt' ;;
    inject) find "$f/inject" deploy/kubernetes deploy/kustomize -type f -name '*.yaml' ;;
    config_toml | go_buildinfo) ;;
  esac
}

# Targets whose input starts with one byte choosing the chunking.
prefixed() { [ "$1" = expvar ] || [ "$1" = prometheus ] || [ "$1" = pprof_heap ]; }

echo "== building the fuzz targets"
(cd fuzz && cargo fuzz build "${flags[@]}")

failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  while IFS= read -r file; do
    name="seed-$(echo "$file" | tr '/' '_')"
    if prefixed "$t"; then
      { printf '\007'; cat "$file"; } >"$corpus/$name"
    else
      cp "$file" "$corpus/$name"
    fi
  done < <(seed_files "$t")
  if [ -d "fuzz/seeds/$t" ]; then
    cp fuzz/seeds/"$t"/* "$corpus/"
  fi
  echo "== fuzzing $t for ${seconds}s ($(find "$corpus" -type f | wc -l) inputs in the corpus)"
  log="fuzz/target/$t.log"
  mkdir -p fuzz/target
  if (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$log" | tr '\n' ' ' | sed "s/^/   $t: /"
    echo
  else
    echo "!! $t failed; the end of its log ($log):"
    tail -40 "$log"
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each, no failure"
