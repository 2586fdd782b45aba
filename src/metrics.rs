//! Prometheus exposition of the [`Status`], on a registry of our own.
//!
//! A value that is missing (a source down, a file the kernel lacks) is left
//! out of the scrape, never exported as 0. The text is encoded once per poll
//! and served as is: a scrape never triggers a poll.

use crate::analysis::diagnosis::Cause;
use crate::analysis::predict::SlopeSeries;
use crate::collector::health::Source;
use crate::parse::cgroup_files::Limit;
use crate::status::Status;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

type Getter = fn(&Status) -> Option<f64>;

fn bytes(v: Option<u64>) -> Option<f64> {
    v.map(|b| b as f64)
}

/// Unlimited is exported as +Inf: "no limit" is not a number of bytes.
fn limit(v: Option<Limit>) -> Option<f64> {
    v.map(|l| l.bytes().map_or(f64::INFINITY, |b| b as f64))
}

/// The unlabelled gauges: name, help, and how to read them off a status.
const GAUGES: &[(&str, &str, Getter)] = &[
    (
        "headroom_memory_usage_bytes",
        "Memory charged to the cgroup (v2 memory.current, v1 memory.usage_in_bytes).",
        |s| bytes(s.memory.usage),
    ),
    (
        "headroom_memory_limit_bytes",
        "Effective memory limit: --memory-limit if given, else the smallest limit on the cgroup's path; +Inf when unlimited.",
        |s| limit(s.memory.limit),
    ),
    (
        "headroom_memory_high_bytes",
        "The cgroup's memory.high throttling threshold (v2); +Inf when unset.",
        |s| limit(s.memory.high),
    ),
    (
        "headroom_memory_working_set_bytes",
        "Usage minus inactive_file, as the kubelet computes the working set.",
        |s| bytes(s.memory.working_set),
    ),
    (
        "headroom_memory_unreclaimable_bytes",
        "Usage minus the file LRU (active_file + inactive_file): what the kernel cannot reclaim before an OOM kill.",
        |s| bytes(s.memory.unreclaimable),
    ),
    (
        "headroom_memory_rss_bytes",
        "The target process's resident set size (VmRSS), what RSS-based platform killers measure.",
        |s| bytes(s.memory.rss),
    ),
    (
        "headroom_memory_anon_bytes",
        "Anonymous memory of the cgroup (v2 anon, v1 total_rss of memory.stat).",
        |s| bytes(s.memory.anon),
    ),
    (
        "headroom_memory_file_bytes",
        "Page cache of the cgroup (v2 file, v1 total_cache of memory.stat).",
        |s| bytes(s.memory.file),
    ),
    (
        "headroom_memory_lazyfree_bytes",
        "The target's LazyFree from /proc/PID/smaps_rollup: freed with MADV_FREE but still resident.",
        |s| bytes(s.memory.lazy_free),
    ),
    (
        "headroom_memory_peak_bytes",
        "Highest usage the kernel recorded for the cgroup (v2 memory.peak, v1 memory.max_usage_in_bytes).",
        |s| bytes(s.cgroup.as_ref().and_then(|c| c.peak)),
    ),
    (
        "headroom_memory_swap_bytes",
        "Swap used by the cgroup (v2 memory.swap.current, v1 total_swap).",
        |s| bytes(s.cgroup.as_ref().and_then(|c| c.swap)),
    ),
    (
        "headroom_go_heap_alloc_bytes",
        "Go runtime HeapAlloc: bytes of allocated heap objects, live and not yet collected.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.heap_alloc)),
    ),
    (
        "headroom_go_heap_inuse_bytes",
        "Go runtime HeapInuse: bytes in in-use heap spans.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.heap_inuse)),
    ),
    (
        "headroom_go_heap_idle_bytes",
        "Go runtime HeapIdle: bytes in idle heap spans, released or not.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.heap_idle)),
    ),
    (
        "headroom_go_heap_released_bytes",
        "Go runtime HeapReleased: bytes of idle spans returned to the OS (MADV_FREE or MADV_DONTNEED).",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.heap_released)),
    ),
    (
        "headroom_go_sys_bytes",
        "Go runtime Sys: bytes obtained from the OS by the Go runtime.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.sys)),
    ),
    (
        "headroom_go_next_gc_bytes",
        "Go runtime NextGC: the heap size at which the next GC starts.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.next_gc)),
    ),
    (
        "headroom_go_heap_live_bytes",
        "Live Go heap after the last GC: exact from go_gc_heap_live_bytes, else an upper-bound estimate (see heap_live_method in /api/v1/status).",
        |s| bytes(s.go.as_ref().and_then(|g| g.heap_live)),
    ),
    (
        "headroom_go_goroutines",
        "Goroutines of the target, where its source exports them.",
        |s| bytes(s.go.as_ref().and_then(|g| g.sample.goroutines)),
    ),
    (
        "headroom_go_gomemlimit_bytes",
        "The target's GOMEMLIMIT, where its source exports it; +Inf when unset (Go reports math.MaxInt64 for no limit).",
        |s| {
            let m = s.go.as_ref()?.sample.gomemlimit?;
            Some(if m >= i64::MAX as u64 { f64::INFINITY } else { m as f64 })
        },
    ),
    (
        "headroom_fragmentation_bound_bytes",
        "HeapInuse minus HeapAlloc: an upper bound on Go heap fragmentation.",
        |s| bytes(s.breakdown.fragmentation_bound),
    ),
    (
        "headroom_reclaimable_unreleased_bytes",
        "Memory freed by the Go runtime (MADV_FREE) that the kernel still charges: LazyFree when readable, else estimated from the cgroup's LRU lists.",
        |s| bytes(s.breakdown.reclaimable_unreleased),
    ),
    (
        "headroom_time_to_oom_seconds",
        "Predicted seconds until the limit-basis value reaches the limit, counting the peaks the heap reaches before each GC; +Inf when nothing grows toward the limit.",
        |s| {
            let a = s.analysis.as_ref()?;
            a.basis?;
            Some(a.time_to_oom_s.unwrap_or(f64::INFINITY))
        },
    ),
    (
        "headroom_last_poll_timestamp_seconds",
        "Unix time at which the last poll finished; /healthz fails when it is older than max(3 x --interval, 3 s).",
        |s| s.poll_finished_ms.map(|ms| ms as f64 / 1000.0),
    ),
    (
        "headroom_oom_risk",
        "OOM risk: 0 ok, 1 warning, 2 critical (with hysteresis).",
        |s| s.analysis.as_ref().map(|a| a.risk as i64 as f64),
    ),
];

pub struct Metrics {
    registry: Registry,
    gauges: Vec<(GaugeVec, Getter)>,
    source_up: IntGaugeVec,
    source_errors: IntCounterVec,
    high_events: IntCounterVec,
    leak_slope: GaugeVec,
    diagnosis: IntGaugeVec,
    oom_kills: IntCounter,
    oom_kills_inferred: IntCounter,
    target_info: IntGaugeVec,
    poll_duration: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c).expect("unique metric names");
        let mut gauges = Vec::new();
        for (name, help, get) in GAUGES {
            let g = GaugeVec::new(Opts::new(*name, *help), &[]).expect("valid metric");
            reg(Box::new(g.clone()));
            gauges.push((g, *get));
        }
        let source_up = IntGaugeVec::new(
            Opts::new(
                "headroom_source_up",
                "1 when the last read of the source worked, 0 when it failed.",
            ),
            &["source"],
        )
        .expect("valid metric");
        let source_errors = IntCounterVec::new(
            Opts::new("headroom_source_errors_total", "Failed reads of the source."),
            &["source"],
        )
        .expect("valid metric");
        let high_events = IntCounterVec::new(
            Opts::new(
                "headroom_memory_events_total",
                "Memory events of the cgroup (v2 memory.events: high = throttled above memory.high, max = reached memory.max), as the kernel counts them, kept across the target's restarts.",
            ),
            &["event"],
        )
        .expect("valid metric");
        let oom_kills = IntCounter::new(
            "headroom_oom_kills_total",
            "OOM kills of the target, each counted once across its restarts and cgroups: read from its cgroup (v2 memory.events oom_kill, v1 memory.oom_control oom_kill), or inferred when the runtime removed the cgroup before it could be read (see headroom_oom_kills_inferred_total).",
        )
        .expect("valid metric");
        let oom_kills_inferred = IntCounter::new(
            "headroom_oom_kills_inferred_total",
            "Of headroom_oom_kills_total, the kills inferred: the target died, its cgroup was gone before it could be read, the node's OOM kill count (/proc/vmstat oom_kill) rose and the cgroup was near its limit.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("headroom_build_info", "The running build of headroom: always 1."),
            &["version"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let target_info = IntGaugeVec::new(
            Opts::new(
                "headroom_target_info",
                "What is watched and how its cgroup was found: always 1. Labels: container (--target-container), process (--process), cgroup_version, found_via (explicit, own_mount, target_root), access (full, unprivileged).",
            ),
            &["container", "process", "cgroup_version", "found_via", "access"],
        )
        .expect("valid metric");
        let poll_duration = Histogram::with_opts(
            HistogramOpts::new(
                "headroom_poll_duration_seconds",
                "Time taken by one poll of the cgroup and /proc.",
            )
            .buckets(vec![25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.1]),
        )
        .expect("valid metric");
        let leak_slope = GaugeVec::new(
            Opts::new(
                "headroom_leak_slope_bytes_per_second",
                "Robust (Theil-Sen) slope over the window of the series: unreclaimable, working_set, go_heap_live.",
            ),
            &["series"],
        )
        .expect("valid metric");
        let diagnosis = IntGaugeVec::new(
            Opts::new(
                "headroom_diagnosis",
                "1 where the cause is present: heap_leak, lazy_free, fragmentation, gc_headroom, off_heap_growth, page_cache.",
            ),
            &["cause"],
        )
        .expect("valid metric");
        reg(Box::new(leak_slope.clone()));
        reg(Box::new(diagnosis.clone()));
        reg(Box::new(source_up.clone()));
        reg(Box::new(source_errors.clone()));
        reg(Box::new(high_events.clone()));
        reg(Box::new(oom_kills.clone()));
        reg(Box::new(oom_kills_inferred.clone()));
        reg(Box::new(build_info));
        reg(Box::new(target_info.clone()));
        reg(Box::new(poll_duration.clone()));
        reg(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        Metrics {
            leak_slope,
            diagnosis,
            registry,
            gauges,
            source_up,
            source_errors,
            high_events,
            oom_kills,
            oom_kills_inferred,
            target_info,
            poll_duration,
        }
    }

    /// The poll-duration histogram, for the poller to observe into.
    pub fn poll_histogram(&self) -> Histogram {
        self.poll_duration.clone()
    }

    /// Brings every metric in line with `status`.
    pub fn update(&self, status: &Status) {
        for (g, get) in &self.gauges {
            match get(status) {
                Some(v) => g.with_label_values::<&str>(&[]).set(v),
                None => g.reset(),
            }
        }
        for source in Source::ALL {
            let name = source.as_str();
            let st = status.source(source).cloned().unwrap_or_default();
            match st.up {
                Some(up) => {
                    self.source_up.with_label_values(&[name]).set(i64::from(up));
                    let c = self.source_errors.with_label_values(&[name]);
                    c.inc_by(st.errors_total.saturating_sub(c.get()));
                }
                None => {
                    let _ = self.source_up.remove_label_values(&[name]);
                    let _ = self.source_errors.remove_label_values(&[name]);
                }
            }
        }
        let total = status.memory.oom_kills_total;
        self.oom_kills.inc_by(total.saturating_sub(self.oom_kills.get()));
        let inferred = status.memory.oom_kills_inferred;
        self.oom_kills_inferred
            .inc_by(inferred.saturating_sub(self.oom_kills_inferred.get()));
        let t = &status.target;
        let version = match t.cgroup_version {
            Some(crate::sample::CgroupVersion::V1) => "v1",
            Some(crate::sample::CgroupVersion::V2) => "v2",
            None => "",
        };
        let access = match t.access {
            crate::sample::Access::Full => "full",
            crate::sample::Access::Unprivileged => "unprivileged",
        };
        let labels = [
            t.container.as_deref().unwrap_or(""),
            t.process.as_deref().unwrap_or(""),
            version,
            t.cgroup_found_via.unwrap_or(""),
            access,
        ];
        // One series: a change of any label replaces it.
        if self.target_info.with_label_values(&labels).get() != 1 {
            self.target_info.reset();
            self.target_info.with_label_values(&labels).set(1);
        }
        match &status.analysis {
            Some(a) => {
                for series in SlopeSeries::EXPORTED {
                    let label = series.as_str();
                    match a.slopes.get(&series) {
                        Some(t) => self.leak_slope.with_label_values(&[label]).set(t.bytes_per_second),
                        None => {
                            let _ = self.leak_slope.remove_label_values(&[label]);
                        }
                    }
                }
                for cause in Cause::ALL {
                    self.diagnosis
                        .with_label_values(&[cause.as_str()])
                        .set(i64::from(a.has(cause)));
                }
            }
            None => {
                self.leak_slope.reset();
                self.diagnosis.reset();
            }
        }
        for (event, total) in &status.memory.events_total {
            let c = self.high_events.with_label_values(&[event.as_str()]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// The text exposition of everything registered.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics");
        spell_infinities(out)
    }
}

/// The prometheus crate writes infinite sample values as Rust prints them
/// (`inf`); the exposition format spells them `+Inf` and `-Inf`.
fn spell_infinities(text: Vec<u8>) -> Vec<u8> {
    if !text.windows(4).any(|w| w == b" inf" || w == b"-inf") {
        return text;
    }
    let text = String::from_utf8(text).expect("the encoder writes UTF-8");
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let fixed = if body.starts_with('#') {
            None
        } else if let Some(head) = body.strip_suffix(" inf") {
            Some(format!("{head} +Inf"))
        } else {
            body.strip_suffix(" -inf").map(|head| format!("{head} -Inf"))
        };
        match fixed {
            Some(f) => {
                out.push_str(&f);
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    out.into_bytes()
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinities_are_spelled_as_the_format_wants() {
        let text = b"# HELP a_bytes inf here\na_bytes inf\nb{x=\"inf\"} -inf\nc 1\n".to_vec();
        let out = String::from_utf8(spell_infinities(text)).unwrap();
        assert_eq!(out, "# HELP a_bytes inf here\na_bytes +Inf\nb{x=\"inf\"} -Inf\nc 1\n");
    }

    #[test]
    fn an_unset_gomemlimit_is_no_limit_like_every_other() {
        let m = Metrics::new();
        let mut s = Status::default();
        let mut go = crate::sample::GoReading {
            sample: crate::parse::go_runtime::GoSample {
                gomemlimit: Some(i64::MAX as u64),
                ..Default::default()
            },
            scraped_at_ms: 0,
            scraped_mono_ms: 0,
            heap_live: None,
            heap_live_method: None,
            gogc_env: None,
            gomemlimit_env: None,
            gomemlimit_binds: None,
            restarts: 0,
        };
        s.go = Some(go.clone());
        m.update(&s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_go_gomemlimit_bytes +Inf\n"), "{text}");
        go.sample.gomemlimit = Some(1 << 30);
        s.go = Some(go);
        m.update(&s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_go_gomemlimit_bytes 1073741824\n"), "{text}");
    }

    #[test]
    fn missing_values_are_absent_not_zero() {
        let m = Metrics::new();
        let mut s = Status::default();
        s.memory.usage = Some(5);
        s.memory.limit = Some(Limit::Unlimited);
        m.update(&s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_memory_usage_bytes 5\n"), "{text}");
        assert!(text.contains("\nheadroom_memory_limit_bytes +Inf\n"), "{text}");
        assert!(!text.contains("headroom_memory_rss_bytes"), "{text}");
        // The source goes away: the gauge goes away with it.
        s.memory.usage = None;
        m.update(&s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("headroom_memory_usage_bytes "), "{text}");
    }
}
