//! Prometheus exposition of every target's [`Status`], on a registry of our
//! own.
//!
//! Every per-target series carries the target's key as the labels
//! [`KEY_LABELS`] (namespace, pod, container); nothing else grows with the
//! number of targets. An empty key label is left out of the text (the
//! exposition format treats an empty label as absent), so a sidecar without
//! the downward API scrapes as before. A value that is missing (a source
//! down, a file the kernel lacks) is left out of the scrape, never exported
//! as 0. The text is encoded at most once per change and served as is: a
//! scrape never triggers a poll.

use crate::analysis::breakdown::KernelKind;
use crate::analysis::diagnosis::Cause;
use crate::analysis::misconfig::Check;
use crate::analysis::predict::SlopeSeries;
use crate::collector::health::Source;
use crate::key::TargetKey;
use crate::parse::cgroup_files::Limit;
use crate::parse::go_runtime::GO_NO_MEMORY_LIMIT;
use crate::sample::ExitReason;
use crate::status::Status;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// The labels of every per-target series: the watched container's names,
/// as cAdvisor and kube-state-metrics spell them.
pub const KEY_LABELS: [&str; 3] = ["namespace", "pod", "container"];

/// The key labels followed by `extra`.
fn labels_with(extra: &[&'static str]) -> Vec<&'static str> {
    KEY_LABELS.iter().chain(extra).copied().collect()
}

/// The key's label values followed by `extra`.
fn values_with<'a>(key: &'a TargetKey, extra: &[&'a str]) -> Vec<&'a str> {
    key.labels().into_iter().chain(extra.iter().copied()).collect()
}

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
        "headroom_go_gc_cycles_per_second",
        "GC cycles per second over the last 30 s of Go scrapes (the rise of NumGC over its time).",
        |s| s.go.as_ref().and_then(|g| g.gc_cycles_per_second),
    ),
    (
        "headroom_go_gc_cpu_fraction",
        "The GC's share of the CPU available to the target (GOMAXPROCS × wall time) over the last 30 s of Go scrapes: from runtime/metrics CPU classes where exported, else from GCCPUFraction and the process's age.",
        |s| s.go.as_ref().and_then(|g| g.gc_cpu_fraction),
    ),
    (
        "headroom_go_effective_gogc",
        "The effective GOGC, percent: 100 × (goal − live heap) / live heap, the goal being NextGC capped by a binding GOMEMLIMIT. GOGC=100 leaves 100; near 0 the GC runs back to back.",
        |s| s.go.as_ref().and_then(crate::analysis::go_heap::effective_gogc),
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
            Some(if m >= GO_NO_MEMORY_LIMIT { f64::INFINITY } else { m as f64 })
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
        "headroom_recommended_memory_limit_bytes",
        "The memory limit to set, whole MiB: the peak the Go heap reached before GC over the window plus the runtime's other memory and what is charged outside it, with a 10 % margin; without Go data the limit basis's highest poll with 30 % (basis and inputs under analysis.recommendation in the status). Absent before 30 s of history.",
        |s| bytes(s.analysis.as_ref()?.recommendation.as_ref().map(|r| r.memory_limit_bytes)),
    ),
    (
        "headroom_recommended_gomemlimit_bytes",
        "The GOMEMLIMIT to set with the recommended limit, whole MiB: below it by what is charged outside the Go runtime and 5 % of the limit. Absent without Go data.",
        |s| bytes(s.analysis.as_ref()?.recommendation.as_ref()?.gomemlimit_bytes),
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
    kernel: GaugeVec,
    misconfiguration: IntGaugeVec,
    oom_kills: IntCounterVec,
    oom_kills_inferred: IntCounterVec,
    exits: IntCounterVec,
    target_info: IntGaugeVec,
    /// Each target's `headroom_target_info` label values, to replace or
    /// remove its one series.
    info_labels: Mutex<HashMap<TargetKey, Vec<String>>>,
    /// Node mode: what a target's earlier instances left in its kill and
    /// exit counters (a container restarted under the same key).
    carried: Mutex<HashMap<TargetKey, Carried>>,
    poll_duration: Histogram,
    node: Option<NodeMetrics>,
}

/// Counts of a target's earlier instances, added to its current one's.
#[derive(Debug, Clone, Default)]
struct Carried {
    oom_kills: u64,
    inferred: u64,
    exits: HashMap<ExitReason, u64>,
}

/// Node mode's own series: they describe the daemon, not a target.
pub struct NodeMetrics {
    pub targets: IntGaugeVec,
    pub discovery_errors: IntCounter,
    pub discovery_duration: Histogram,
}

/// The states `headroom_targets{state}` counts.
pub const TARGET_STATES: [&str; 7] = [
    "watched",
    "stalled",
    "gone",
    "empty",
    "skipped_not_go",
    "skipped_sandbox",
    "over_limit",
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c).expect("unique metric names");
        let mut gauges = Vec::new();
        for (name, help, get) in GAUGES {
            let g = GaugeVec::new(Opts::new(*name, *help), &KEY_LABELS).expect("valid metric");
            reg(Box::new(g.clone()));
            gauges.push((g, *get));
        }
        let source_up = IntGaugeVec::new(
            Opts::new(
                "headroom_source_up",
                "1 when the last read of the source worked, 0 when it failed.",
            ),
            &labels_with(&["source"]),
        )
        .expect("valid metric");
        let source_errors = IntCounterVec::new(
            Opts::new("headroom_source_errors_total", "Failed reads of the source."),
            &labels_with(&["source"]),
        )
        .expect("valid metric");
        let high_events = IntCounterVec::new(
            Opts::new(
                "headroom_memory_events_total",
                "Memory events of the cgroup since headroom started (v2 memory.events: high = throttled above memory.high, max = reached memory.max, oom, oom_kill, oom_group_kill), kept across the target's restarts.",
            ),
            &labels_with(&["event"]),
        )
        .expect("valid metric");
        let oom_kills = IntCounterVec::new(
            Opts::new(
                "headroom_oom_kills_total",
                "OOM kills in the target's cgroups since headroom started (kills from before are in the status, oom_kills_before_start), each counted once across its restarts and cgroups, whichever way it was seen first: read from its cgroup (v2 memory.events oom_kill, v1 memory.oom_control oom_kill), or inferred when the runtime removed the cgroup before it could be read (see headroom_oom_kills_inferred_total). Includes kills of other processes of the cgroup while the target lived (status: last_oom_kill.child). Kept for the pod's life after the container is gone.",
            ),
            &KEY_LABELS,
        )
        .expect("valid metric");
        let oom_kills_inferred = IntCounterVec::new(
            Opts::new(
                "headroom_oom_kills_inferred_total",
                "Of headroom_oom_kills_total, the kills inferred: the target died by SIGKILL or an unread status, its cgroup was gone before it could be read, the node's OOM kill count (/proc/vmstat oom_kill) rose since the poll before, and the cgroup was on its way to its limit (at least a third of it, or the limit hit since the read before).",
            ),
            &KEY_LABELS,
        )
        .expect("valid metric");
        let exits = IntCounterVec::new(
            Opts::new(
                "headroom_target_exits_total",
                "Exits of the target since headroom started, by reason: oom_kill (its memory cgroup's OOM killer), oom_group_kill (v2 memory.oom.group), node_oom (the node-wide OOM killer: the cgroup counted the kill but was not at its limit), signal (a signal not from the OOM killer), exit (it exited; the code is in the status), unknown (reaped before its status could be read, no OOM evidence). Kept for the pod's life after the container is gone.",
            ),
            &labels_with(&["reason"]),
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "headroom_build_info",
                "The running build of headroom: always 1. Labels: version, commit (the git commit's first 12 hex digits, unknown when built without git), rustc (the compiler's version).",
            ),
            &["version", "commit", "rustc"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                crate::build_info::VERSION,
                crate::build_info::COMMIT,
                crate::build_info::RUSTC,
            ])
            .set(1);
        let target_info = IntGaugeVec::new(
            Opts::new(
                "headroom_target_info",
                "What is watched and how its cgroup was found: always 1. Labels: the target's namespace, pod and container, process (--process), cgroup_version, found_via (explicit, own_mount, target_root), access (full, unprivileged).",
            ),
            &labels_with(&["process", "cgroup_version", "found_via", "access"]),
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
            &labels_with(&["series"]),
        )
        .expect("valid metric");
        let diagnosis = IntGaugeVec::new(
            Opts::new(
                "headroom_diagnosis",
                "1 where the cause is present: heap_leak, lazy_free, fragmentation, gc_headroom, off_heap_growth, page_cache, gc_thrash, thp_bloat, goroutine_leak.",
            ),
            &labels_with(&["cause"]),
        )
        .expect("valid metric");
        let kernel = GaugeVec::new(
            Opts::new(
                "headroom_memory_kernel_bytes",
                "Kernel memory charged to the cgroup, by kind: sock, slab_unreclaimable, kernel_stack, pagetables, shmem, percpu (v2 memory.stat); on v1, shmem (memory.stat total_shmem) and kmem (memory.kmem.usage_in_bytes, all kernel memory as one total). A kind the kernel does not report is absent.",
            ),
            &labels_with(&["kind"]),
        )
        .expect("valid metric");
        let misconfiguration = IntGaugeVec::new(
            Opts::new(
                "headroom_misconfiguration",
                "1 while the check fails, 0 otherwise (also when its inputs are unknown): gomemlimit_above_limit (GOMEMLIMIT at or above the container's memory limit), no_memory_limit (no limit on the cgroup's path), gogc_off_without_gomemlimit (GOGC=off and no GOMEMLIMIT). The fix is in the status (misconfigurations).",
            ),
            &labels_with(&["check"]),
        )
        .expect("valid metric");
        reg(Box::new(leak_slope.clone()));
        reg(Box::new(diagnosis.clone()));
        reg(Box::new(kernel.clone()));
        reg(Box::new(misconfiguration.clone()));
        reg(Box::new(source_up.clone()));
        reg(Box::new(source_errors.clone()));
        reg(Box::new(high_events.clone()));
        reg(Box::new(oom_kills.clone()));
        reg(Box::new(oom_kills_inferred.clone()));
        reg(Box::new(exits.clone()));
        reg(Box::new(build_info));
        reg(Box::new(target_info.clone()));
        reg(Box::new(poll_duration.clone()));
        reg(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        let delivery = crate::alert::sender::delivery_metrics();
        reg(Box::new(delivery.delivered.clone()));
        reg(Box::new(delivery.failed.clone()));
        reg(Box::new(delivery.pending.clone()));
        Metrics {
            leak_slope,
            diagnosis,
            kernel,
            misconfiguration,
            registry,
            gauges,
            source_up,
            source_errors,
            high_events,
            oom_kills,
            oom_kills_inferred,
            exits,
            target_info,
            info_labels: Mutex::new(HashMap::new()),
            carried: Mutex::new(HashMap::new()),
            poll_duration,
            node: None,
        }
    }

    /// The registry of node mode: every target's series, and the daemon's
    /// own (targets by state, discovery errors and cost).
    pub fn for_node() -> Metrics {
        let mut m = Metrics::new();
        let targets = IntGaugeVec::new(
            Opts::new(
                "headroom_targets",
                "Containers found on the node, by state: watched, stalled (a read of it is stuck), gone (series kept for one window), empty (a container cgroup with no process yet), skipped_not_go, skipped_sandbox, over_limit (beyond --max-targets).",
            ),
            &["state"],
        )
        .expect("valid metric");
        let discovery_errors = IntCounter::new(
            "headroom_discovery_errors_total",
            "Directories of the cgroup tree that discovery could not read.",
        )
        .expect("valid metric");
        let discovery_duration = Histogram::with_opts(
            HistogramOpts::new(
                "headroom_discovery_duration_seconds",
                "Time taken by one discovery round: the walk of the cgroup tree and the check of new containers' processes.",
            )
            .buckets(vec![100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.5]),
        )
        .expect("valid metric");
        for c in [
            Box::new(targets.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(discovery_errors.clone()),
            Box::new(discovery_duration.clone()),
        ] {
            m.registry.register(c).expect("unique metric names");
        }
        m.node = Some(NodeMetrics {
            targets,
            discovery_errors,
            discovery_duration,
        });
        m
    }

    /// Node mode's own series (`None` in the sidecar).
    pub fn node(&self) -> Option<&NodeMetrics> {
        self.node.as_ref()
    }

    /// Removes every series of `key`; `keep_kills` keeps its OOM-kill
    /// counters (a kill stays counted for its pod's life).
    pub fn remove(&self, key: &TargetKey, keep_kills: bool) {
        let k = key.labels();
        for (g, _) in &self.gauges {
            let _ = g.remove_label_values(&k);
        }
        for source in Source::ALL {
            let v = values_with(key, &[source.as_str()]);
            let _ = self.source_up.remove_label_values(&v);
            let _ = self.source_errors.remove_label_values(&v);
        }
        for series in SlopeSeries::EXPORTED {
            let _ = self
                .leak_slope
                .remove_label_values(&values_with(key, &[series.as_str()]));
        }
        for cause in Cause::ALL {
            let _ = self.diagnosis.remove_label_values(&values_with(key, &[cause.as_str()]));
        }
        for kind in KernelKind::ALL {
            let _ = self.kernel.remove_label_values(&values_with(key, &[kind.as_str()]));
        }
        for check in Check::ALL {
            let _ = self
                .misconfiguration
                .remove_label_values(&values_with(key, &[check.as_str()]));
        }
        for event in crate::sample::MemoryEvent::ALL {
            let _ = self
                .high_events
                .remove_label_values(&values_with(key, &[event.as_str()]));
        }
        if let Some(old) = self.info_labels.lock().unwrap_or_else(|e| e.into_inner()).remove(key) {
            let _ = self
                .target_info
                .remove_label_values(&old.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if !keep_kills {
            self.carried.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            let _ = self.oom_kills.remove_label_values(&k);
            let _ = self.oom_kills_inferred.remove_label_values(&k);
            for reason in ExitReason::ALL {
                let _ = self.exits.remove_label_values(&values_with(key, &[reason.as_str()]));
            }
        }
    }

    /// A new instance of the target `key` starts (node mode: its container
    /// restarted, or came back after its series left while its pod stayed):
    /// the kill and exit counters keep what they hold, and the new
    /// instance's counts are added to it, so each kill is counted once
    /// across restarts and `increase()` never sees a reset.
    pub fn carry_over(&self, key: &TargetKey) {
        let k = key.labels();
        let exits = ExitReason::ALL
            .iter()
            .map(|r| (*r, self.exits.with_label_values(&values_with(key, &[r.as_str()])).get()))
            .collect();
        let carried = Carried {
            oom_kills: self.oom_kills.with_label_values(&k).get(),
            inferred: self.oom_kills_inferred.with_label_values(&k).get(),
            exits,
        };
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), carried);
    }

    /// The poll-duration histogram, for the poller to observe into.
    pub fn poll_histogram(&self) -> Histogram {
        self.poll_duration.clone()
    }

    /// Brings the series of the target `key` in line with its `status`.
    pub fn update(&self, key: &TargetKey, status: &Status) {
        let k = key.labels();
        for (g, get) in &self.gauges {
            match get(status) {
                Some(v) => g.with_label_values(&k).set(v),
                None => {
                    let _ = g.remove_label_values(&k);
                }
            }
        }
        for source in Source::ALL {
            let v = values_with(key, &[source.as_str()]);
            let st = status.source(source).cloned().unwrap_or_default();
            match st.up {
                Some(up) => {
                    self.source_up.with_label_values(&v).set(i64::from(up));
                    let c = self.source_errors.with_label_values(&v);
                    c.inc_by(st.errors_total.saturating_sub(c.get()));
                }
                None => {
                    let _ = self.source_up.remove_label_values(&v);
                    let _ = self.source_errors.remove_label_values(&v);
                }
            }
        }
        let carried = self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default();
        let c = self.oom_kills.with_label_values(&k);
        c.inc_by((carried.oom_kills + status.memory.oom_kills_total).saturating_sub(c.get()));
        let c = self.oom_kills_inferred.with_label_values(&k);
        c.inc_by((carried.inferred + status.memory.oom_kills_inferred).saturating_sub(c.get()));
        // Every reason from 0, so that increase() sees the first exit.
        for reason in ExitReason::ALL {
            let c = self.exits.with_label_values(&values_with(key, &[reason.as_str()]));
            let total = status.memory.exits_total.get(&reason).copied().unwrap_or(0)
                + carried.exits.get(&reason).copied().unwrap_or(0);
            c.inc_by(total.saturating_sub(c.get()));
        }
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
        let labels: Vec<String> = values_with(
            key,
            &[
                t.process.as_deref().unwrap_or(""),
                version,
                t.cgroup_found_via.unwrap_or(""),
                access,
            ],
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        // One series per target: a change of any label replaces it.
        let mut info = self.info_labels.lock().unwrap_or_else(|e| e.into_inner());
        if info.get(key) != Some(&labels) {
            if let Some(old) = info.insert(key.clone(), labels.clone()) {
                let _ = self
                    .target_info
                    .remove_label_values(&old.iter().map(String::as_str).collect::<Vec<_>>());
            }
            self.target_info
                .with_label_values(&labels.iter().map(String::as_str).collect::<Vec<_>>())
                .set(1);
        }
        drop(info);
        for series in SlopeSeries::EXPORTED {
            let v = values_with(key, &[series.as_str()]);
            match status.analysis.as_ref().and_then(|a| a.slopes.get(&series)) {
                Some(t) => self.leak_slope.with_label_values(&v).set(t.bytes_per_second),
                None => {
                    let _ = self.leak_slope.remove_label_values(&v);
                }
            }
        }
        for cause in Cause::ALL {
            let v = values_with(key, &[cause.as_str()]);
            match &status.analysis {
                Some(a) => self.diagnosis.with_label_values(&v).set(i64::from(a.has(cause))),
                None => {
                    let _ = self.diagnosis.remove_label_values(&v);
                }
            }
        }
        for kind in KernelKind::ALL {
            let v = values_with(key, &[kind.as_str()]);
            match status.breakdown.kernel.get(&kind) {
                Some(b) => self.kernel.with_label_values(&v).set(*b as f64),
                None => {
                    let _ = self.kernel.remove_label_values(&v);
                }
            }
        }
        for check in Check::ALL {
            let v = values_with(key, &[check.as_str()]);
            match &status.analysis {
                Some(_) => {
                    let failing = status.misconfigurations.iter().any(|m| m.check == check);
                    self.misconfiguration.with_label_values(&v).set(i64::from(failing));
                }
                None => {
                    let _ = self.misconfiguration.remove_label_values(&v);
                }
            }
        }
        for (event, total) in &status.memory.events_total {
            let c = self.high_events.with_label_values(&values_with(key, &[event.as_str()]));
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// The text exposition of everything registered.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics");
        drop_empty_key_labels(spell_infinities(out))
    }
}

/// Leaves out the key labels whose value is empty (`pod=""`): the
/// exposition format reads an empty label as an absent one, and a sidecar
/// outside Kubernetes then scrapes without them.
fn drop_empty_key_labels(text: Vec<u8>) -> Vec<u8> {
    if !text.windows(4).any(|w| w == b"=\"\"," || w == b"=\"\"}") {
        return text;
    }
    let text = String::from_utf8(text).expect("the encoder writes UTF-8");
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match (line.starts_with('#'), line.find('{')) {
            (false, Some(open)) => {
                let Some(close) = label_block_end(line, open) else {
                    out.push_str(line);
                    continue;
                };
                let kept: Vec<&str> = label_pairs(&line[open + 1..close])
                    .into_iter()
                    .filter(|pair| !KEY_LABELS.iter().any(|k| pair.strip_prefix(k) == Some("=\"\"")))
                    .collect();
                out.push_str(&line[..open]);
                if !kept.is_empty() {
                    out.push('{');
                    out.push_str(&kept.join(","));
                    out.push('}');
                }
                out.push_str(&line[close + 1..]);
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// The index of the `}` that closes the label block opened at `open`,
/// skipping quoted values (which may hold `}` and escaped quotes).
fn label_block_end(line: &str, open: usize) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, ch) in line[open + 1..].char_indices() {
        match (quoted, escaped, ch) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => quoted = !quoted,
            (false, _, '}') => return Some(open + 1 + i),
            _ => {}
        }
    }
    None
}

/// `a="x",b="y,z"` → `["a=\"x\"", "b=\"y,z\""]`, quotes honoured.
fn label_pairs(block: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, ch) in block.char_indices() {
        match (quoted, escaped, ch) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => quoted = !quoted,
            (false, _, ',') => {
                pairs.push(&block[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < block.len() {
        pairs.push(&block[start..]);
    }
    pairs
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
    fn empty_key_labels_are_left_out_and_others_kept() {
        let cases = [
            ("a{container=\"\",namespace=\"\",pod=\"\"} 1\n", "a 1\n"),
            (
                "a{container=\"app\",namespace=\"\",pod=\"p\",source=\"go\"} 1\n",
                "a{container=\"app\",pod=\"p\",source=\"go\"} 1\n",
            ),
            // Another label's empty value stays; quoted commas and braces too.
            (
                "i{access=\"\",container=\"\",process=\"a,}\\\"b\"} 1\n",
                "i{access=\"\",process=\"a,}\\\"b\"} 1\n",
            ),
            (
                "# HELP x pod=\"\", kept\nx{pod=\"\"} 2\n",
                "# HELP x pod=\"\", kept\nx 2\n",
            ),
            ("h_bucket{le=\"0.1\",namespace=\"\"} 3\n", "h_bucket{le=\"0.1\"} 3\n"),
        ];
        for (input, want) in cases {
            let out = String::from_utf8(drop_empty_key_labels(input.as_bytes().to_vec())).unwrap();
            assert_eq!(out, want, "{input}");
        }
    }

    #[test]
    fn each_target_has_its_series_and_a_removed_one_leaves_but_its_kills() {
        let m = Metrics::new();
        let (a, b) = (TargetKey::new("ns", "p1", "app"), TargetKey::new("ns", "p2", "app"));
        let mut s = Status::default();
        s.memory.usage = Some(5);
        s.memory.oom_kills_total = 2;
        m.update(&a, &s);
        s.memory.usage = Some(7);
        s.memory.oom_kills_total = 0;
        m.update(&b, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains("\nheadroom_memory_usage_bytes{container=\"app\",namespace=\"ns\",pod=\"p1\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("\nheadroom_memory_usage_bytes{container=\"app\",namespace=\"ns\",pod=\"p2\"} 7\n"),
            "{text}"
        );
        m.remove(&a, true);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("pod=\"p1\"} 5"), "{text}");
        assert!(
            !text.contains("headroom_target_info{container=\"app\",namespace=\"ns\",pod=\"p1\""),
            "{text}"
        );
        assert!(
            text.contains("\nheadroom_oom_kills_total{container=\"app\",namespace=\"ns\",pod=\"p1\"} 2\n"),
            "{text}"
        );
        m.remove(&a, false);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("pod=\"p1\""), "{text}");
        assert!(text.contains("pod=\"p2\"} 7"), "{text}");
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
            ..Default::default()
        };
        s.go = Some(go.clone());
        m.update(&TargetKey::default(), &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_go_gomemlimit_bytes +Inf\n"), "{text}");
        go.sample.gomemlimit = Some(1 << 30);
        s.go = Some(go);
        m.update(&TargetKey::default(), &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_go_gomemlimit_bytes 1073741824\n"), "{text}");
    }

    #[test]
    fn the_gc_pace_carries_the_key_labels_and_is_absent_until_measured() {
        let m = Metrics::new();
        let key = TargetKey::new("ns", "p", "app");
        let mut s = Status::default();
        let mut go = crate::sample::GoReading {
            sample: Default::default(),
            ..Default::default()
        };
        s.go = Some(go.clone());
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("headroom_go_gc_cycles_per_second{"), "{text}");
        assert!(!text.contains("headroom_go_gc_cpu_fraction{"), "{text}");
        go.gc_cycles_per_second = Some(9.5);
        go.gc_cpu_fraction = Some(0.25);
        // 150 MiB live, the goal 160 MiB: 6.7 % of room.
        go.heap_live = Some(150 << 20);
        go.sample.next_gc = Some(160 << 20);
        s.go = Some(go);
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        for line in [
            "headroom_go_gc_cycles_per_second{container=\"app\",namespace=\"ns\",pod=\"p\"} 9.5",
            "headroom_go_gc_cpu_fraction{container=\"app\",namespace=\"ns\",pod=\"p\"} 0.25",
            "headroom_go_effective_gogc{container=\"app\",namespace=\"ns\",pod=\"p\"} 6.666666666666667",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} not in {text}");
        }
    }

    #[test]
    fn kernel_memory_by_kind_and_misconfigurations_by_check() {
        let m = Metrics::new();
        let key = TargetKey::new("ns", "p", "app");
        let mut s = Status::default();
        s.breakdown.kernel.insert(KernelKind::Sock, 4096);
        s.breakdown.kernel.insert(KernelKind::Shmem, 8192);
        s.analysis = Some(Default::default());
        s.misconfigurations.push(crate::analysis::misconfig::Misconfiguration {
            check: Check::NoMemoryLimit,
            evidence: "e".into(),
            fix: "f".into(),
        });
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        let has = |line: &str| text.contains(&format!("\n{line}\n"));
        assert!(
            has("headroom_memory_kernel_bytes{container=\"app\",kind=\"sock\",namespace=\"ns\",pod=\"p\"} 4096"),
            "{text}"
        );
        assert!(
            has("headroom_memory_kernel_bytes{container=\"app\",kind=\"shmem\",namespace=\"ns\",pod=\"p\"} 8192"),
            "{text}"
        );
        assert!(!text.contains("kind=\"percpu\""), "an unread kind is absent: {text}");
        for (check, v) in [
            ("no_memory_limit", 1),
            ("gomemlimit_above_limit", 0),
            ("gogc_off_without_gomemlimit", 0),
        ] {
            assert!(
                has(&format!(
                    "headroom_misconfiguration{{check=\"{check}\",container=\"app\",namespace=\"ns\",pod=\"p\"}} {v}"
                )),
                "{check}: {text}"
            );
        }
        // Fixed, then the target goes: its series go with it.
        s.misconfigurations.clear();
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains(
            "headroom_misconfiguration{check=\"no_memory_limit\",container=\"app\",namespace=\"ns\",pod=\"p\"} 0"
        ));
        m.remove(&key, false);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("headroom_misconfiguration{"), "{text}");
        assert!(!text.contains("headroom_memory_kernel_bytes{"), "{text}");
    }

    #[test]
    fn recommended_limit_and_gomemlimit_only_once_recommended() {
        use crate::analysis::recommend::{Recommendation, RecommendationBasis};
        let m = Metrics::new();
        let key = TargetKey::new("", "", "");
        let mut s = Status {
            analysis: Some(Default::default()),
            ..Status::default()
        };
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("\nheadroom_recommended_"), "{text}");
        s.analysis.as_mut().unwrap().recommendation = Some(Recommendation {
            basis: RecommendationBasis::GoHeapGoal,
            memory_limit_bytes: 385 << 20,
            gomemlimit_bytes: Some(335 << 20),
            margin: 0.1,
            heap_peak_bytes: Some(300 << 20),
            runtime_other_bytes: Some(20 << 20),
            outside_runtime_bytes: Some(30 << 20),
            kernel_bytes: None,
            observed_peak_bytes: 300 << 20,
            limit_basis: crate::sample::LimitBasis::Unreclaimable,
            history_s: 60.0,
        });
        m.update(&key, &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains("\nheadroom_recommended_memory_limit_bytes 403701760\n"),
            "{text}"
        );
        assert!(
            text.contains("\nheadroom_recommended_gomemlimit_bytes 351272960\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_values_are_absent_not_zero() {
        let m = Metrics::new();
        let mut s = Status::default();
        s.memory.usage = Some(5);
        s.memory.limit = Some(Limit::Unlimited);
        m.update(&TargetKey::default(), &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\nheadroom_memory_usage_bytes 5\n"), "{text}");
        assert!(text.contains("\nheadroom_memory_limit_bytes +Inf\n"), "{text}");
        assert!(!text.contains("headroom_memory_rss_bytes"), "{text}");
        // The source goes away: the gauge goes away with it.
        s.memory.usage = None;
        m.update(&TargetKey::default(), &s);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("headroom_memory_usage_bytes "), "{text}");
    }
}
