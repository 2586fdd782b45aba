//! One poll's input ([`Sample`]): what the collector read from the cgroup,
//! /proc and the Go runtime, with the identity of the target it read. Plain
//! data; the analysis and the status are built from it.

use crate::parse::cgroup_files::{Limit, MemoryEvents, MemoryStat, OomControl};
use crate::parse::go_runtime::GoSample;
use crate::parse::psi::Pressure;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::parse::cgroup_paths::CgroupVersion;

/// The memory files of one cgroup, read in one poll. A file the kernel does
/// not provide is `None`.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupSample {
    pub version: CgroupVersion,
    pub path: PathBuf,
    /// v2 `memory.current`, v1 `memory.usage_in_bytes`.
    pub usage: u64,
    /// This cgroup's own limit (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    pub limit: Option<Limit>,
    /// The smallest limit on the cgroup and its visible ancestors (v1: also
    /// `hierarchical_memory_limit`). `Unlimited` when none is set.
    pub path_limit: Limit,
    /// v2 `memory.high` (throttling threshold).
    pub high: Option<Limit>,
    /// v1 `memory.soft_limit_in_bytes`.
    pub soft_limit: Option<Limit>,
    /// v2 `memory.peak`, v1 `memory.max_usage_in_bytes`.
    pub peak: Option<u64>,
    /// v2 `memory.swap.current`, v1 `total_swap` of memory.stat.
    pub swap: Option<u64>,
    /// v1 `memory.failcnt`.
    pub failcnt: Option<u64>,
    /// v1 `memory.kmem.usage_in_bytes`: all kernel memory charged to the
    /// cgroup (slab, kernel stacks, page tables, …) as one total, also
    /// counted in `usage`. v2 breaks it down in memory.stat instead.
    pub kmem: Option<u64>,
    pub stat: Option<MemoryStat>,
    pub events: Option<MemoryEvents>,
    pub events_local: Option<MemoryEvents>,
    pub pressure: Option<Pressure>,
    pub oom_control: Option<OomControl>,
    /// Lines or files that could not be parsed; the rest of the sample is good.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl CgroupSample {
    /// A v2 sample whose whole usage is anonymous memory (no page cache), so
    /// usage, working set and unreclaimable memory are equal: for synthetic
    /// series in tests and benchmarks.
    pub fn all_anonymous(path: impl Into<PathBuf>, usage: u64) -> CgroupSample {
        CgroupSample {
            version: CgroupVersion::V2,
            path: path.into(),
            usage,
            limit: None,
            path_limit: Limit::Unlimited,
            high: None,
            soft_limit: None,
            peak: None,
            swap: None,
            failcnt: None,
            kmem: None,
            stat: Some(MemoryStat {
                anon: Some(usage),
                active_file: Some(0),
                inactive_file: Some(0),
                ..MemoryStat::default()
            }),
            events: None,
            events_local: None,
            pressure: None,
            oom_control: None,
            warnings: Vec::new(),
        }
    }

    /// usage − inactive_file, floored at 0, as the kubelet computes it.
    pub fn working_set(&self) -> Option<u64> {
        let inactive = self.stat.as_ref()?.inactive_file?;
        Some(self.usage.saturating_sub(inactive))
    }

    /// usage − (active_file + inactive_file), floored at 0: what the kernel
    /// cannot reclaim before an OOM kill.
    pub fn unreclaimable(&self) -> Option<u64> {
        let s = self.stat.as_ref()?;
        let file_lru = s.active_file?.saturating_add(s.inactive_file?);
        Some(self.usage.saturating_sub(file_lru))
    }

    /// The cgroup's OOM kill count as the kernel reports it now (v2
    /// memory.events `oom_kill`, v1 memory.oom_control `oom_kill`).
    pub fn oom_kills(&self) -> Option<u64> {
        match self.version {
            CgroupVersion::V2 => self.events.as_ref()?.oom_kill,
            CgroupVersion::V1 => self.oom_control.as_ref()?.oom_kill,
        }
    }
}

/// The target's /proc entries. Bytes throughout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcSample {
    pub pid: u32,
    pub vm_rss: Option<u64>,
    pub vm_hwm: Option<u64>,
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub vm_swap: Option<u64>,
}

/// The target's /proc/PID/smaps_rollup, bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SmapsSample {
    pub rss: Option<u64>,
    pub anonymous: Option<u64>,
    pub lazy_free: Option<u64>,
    pub swap: Option<u64>,
    /// `AnonHugePages`: the target's anonymous memory in transparent huge
    /// pages (part of `anonymous`).
    pub anon_huge_pages: Option<u64>,
    /// Unix time in milliseconds when it was read (it is read less often
    /// than the rest).
    pub read_at_ms: u64,
    /// The collector's monotonic ms when it was read: its age at a poll is
    /// that poll's `mono_ms` minus this.
    #[serde(skip)]
    pub read_mono_ms: u64,
    /// The cgroup's LRU estimate of lazy-free memory at the same poll, which
    /// carries this figure forward until the next read.
    pub cgroup_lru_estimate: Option<u64>,
}

/// What the killer measures (`--limit-basis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitBasis {
    #[default]
    Unreclaimable,
    WorkingSet,
    Usage,
    Rss,
}

impl LimitBasis {
    pub const NAMES: &'static str = "unreclaimable, working_set, usage, rss";

    pub fn parse(s: &str) -> Option<LimitBasis> {
        Some(match s {
            "unreclaimable" => LimitBasis::Unreclaimable,
            "working_set" | "working-set" => LimitBasis::WorkingSet,
            "usage" => LimitBasis::Usage,
            "rss" => LimitBasis::Rss,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitBasis::Unreclaimable => "unreclaimable",
            LimitBasis::WorkingSet => "working_set",
            LimitBasis::Usage => "usage",
            LimitBasis::Rss => "rss",
        }
    }
}

/// Where the effective limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// `--memory-limit`.
    Override,
    /// The smallest limit on the cgroup's path.
    Cgroup,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Override => "override",
            LimitSource::Cgroup => "cgroup",
        }
    }
}

/// The v2 `memory.events` counters headroom keeps, in the order of their
/// names (the JSON and the `event` label spell them as [`MemoryEvent::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryEvent {
    High,
    Max,
    Oom,
    OomKill,
    OomGroupKill,
}

impl MemoryEvent {
    pub const ALL: [MemoryEvent; 5] = [
        MemoryEvent::High,
        MemoryEvent::Max,
        MemoryEvent::Oom,
        MemoryEvent::OomKill,
        MemoryEvent::OomGroupKill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryEvent::High => "high",
            MemoryEvent::Max => "max",
            MemoryEvent::Oom => "oom",
            MemoryEvent::OomKill => "oom_kill",
            MemoryEvent::OomGroupKill => "oom_group_kill",
        }
    }

    /// This event's count in a parsed `memory.events`.
    pub fn count(self, e: &MemoryEvents) -> Option<u64> {
        match self {
            MemoryEvent::High => e.high,
            MemoryEvent::Max => e.max,
            MemoryEvent::Oom => e.oom,
            MemoryEvent::OomKill => e.oom_kill,
            MemoryEvent::OomGroupKill => e.oom_group_kill,
        }
    }
}

/// How much of the target headroom may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Its cgroup, /proc/PID/smaps_rollup and /proc/PID/root.
    #[default]
    Full,
    /// No ptrace access (another UID, no CAP_SYS_PTRACE): only what any UID
    /// may read (/proc/PID/status, the Go endpoint) and the limit given with
    /// --memory-limit (the downward API's limits.memory in a pod).
    Unprivileged,
}

/// How an OOM kill of the target was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillHow {
    /// Read from the cgroup's own counter (memory.events, memory.oom_control).
    Cgroup,
    /// The target died and its cgroup could no longer be read; the node's
    /// OOM kill count rose meanwhile and the cgroup was near its limit.
    Inferred,
}

/// The last OOM kill headroom knows of: of the target, or of another
/// process of its cgroup while the target lived (`child`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OomKill {
    /// Unix time (ms) of the poll that learned of it.
    pub time_ms: u64,
    pub how: KillHow,
    /// The PID killed, where known.
    pub pid: Option<u32>,
    /// The killed process's name (`comm`), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Another process of the target's cgroup was killed, not the target.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub child: bool,
}

/// Why the target exited, as `headroom_target_exits_total{reason}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Killed by its memory cgroup's OOM killer (its own limit, or its
    /// pod's).
    OomKill,
    /// Killed with its whole cgroup (v2 `memory.oom.group`).
    OomGroupKill,
    /// Killed by the node-wide OOM killer: its cgroup counted the kill but
    /// was not at its limit.
    NodeOom,
    /// Killed by a signal that was not the OOM killer's (`kill -9`, a
    /// SIGTERM not handled).
    Signal,
    /// Exited by itself, with the code in the status.
    Exit,
    /// Gone before how could be read (reaped at once, no OOM evidence).
    Unknown,
}

impl ExitReason {
    pub const ALL: [ExitReason; 6] = [
        ExitReason::OomKill,
        ExitReason::OomGroupKill,
        ExitReason::NodeOom,
        ExitReason::Signal,
        ExitReason::Exit,
        ExitReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::OomKill => "oom_kill",
            ExitReason::OomGroupKill => "oom_group_kill",
            ExitReason::NodeOom => "node_oom",
            ExitReason::Signal => "signal",
            ExitReason::Exit => "exit",
            ExitReason::Unknown => "unknown",
        }
    }

    /// Whether an OOM killer took the target.
    pub fn is_oom(self) -> bool {
        matches!(
            self,
            ExitReason::OomKill | ExitReason::OomGroupKill | ExitReason::NodeOom
        )
    }
}

/// How the target ended: a wait status, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl WaitStatus {
    /// From the status as `waitpid` reports it (field 52 of /proc/PID/stat).
    pub fn from_raw(status: i32) -> WaitStatus {
        if status & 0x7f == 0 {
            WaitStatus::Exited((status >> 8) & 0xff)
        } else {
            WaitStatus::Signaled(status & 0x7f)
        }
    }
}

/// The last exit of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetExit {
    /// Unix time (ms) of the poll that learned of it.
    pub time_ms: u64,
    pub reason: ExitReason,
    pub pid: Option<u32>,
    /// The exit code (reason `exit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it, where read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// For an OOM kill: read from the cgroup or inferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<KillHow>,
}

/// The watched process and its cgroup, as the collector's target tracker
/// sees them in this poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub pid: Option<u32>,
    /// `--process NAME`, when the target is found by name.
    pub process: Option<String>,
    /// `--target-container NAME`: the target container's name, a label.
    pub container: Option<String>,
    /// Counts target instances: it changes when the target restarts (a new
    /// PID, or a PID reused by another process). Consumers compare it with
    /// the one they saw last; they never detect restarts themselves.
    pub instance: u64,
    /// Counts Go runtimes: it changes with `instance` and also when the Go
    /// runtime's own counters go back (NumGC or TotalAlloc).
    pub go_epoch: u64,
    /// The cgroup directory read, its version and how it was found.
    pub cgroup: Option<PathBuf>,
    pub cgroup_version: Option<CgroupVersion>,
    pub cgroup_found: Option<String>,
    /// The same, as a label value: explicit, own_mount, target_root.
    pub cgroup_found_via: Option<&'static str>,
    pub access: Access,
}

/// How the live heap was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveMethod {
    /// `go_gc_heap_live_bytes`, exported by the runtime.
    Exact,
    /// NextGC / (1 + GOGC/100), capped at HeapAlloc.
    Goal,
    /// The lowest HeapAlloc of the last scrapes.
    Envelope,
}

/// The latest successful scrape of the target's Go runtime, with what the
/// collector derived from it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GoReading {
    pub sample: GoSample,
    /// Unix time (ms) the scrape finished: for display.
    pub scraped_at_ms: u64,
    /// Monotonic time (ms, the same clock as [`Sample::mono_ms`]) the scrape
    /// finished: for the analysis.
    #[serde(skip)]
    pub scraped_mono_ms: u64,
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<LiveMethod>,
    /// GOGC as read from the target's environment (-1 = off), when readable.
    pub gogc_env: Option<i64>,
    /// GOMEMLIMIT as read from the target's environment, bytes, when
    /// readable; unset or `off` is math.MaxInt64 as the runtime has it.
    pub gomemlimit_env: Option<u64>,
    /// GOGC estimated from the runtime's numbers (the goal against the heap
    /// after each GC) when neither the runtime nor the environment tells it.
    pub gogc_estimate: Option<i64>,
    /// GOMEMLIMIT sets the GC goal now (the live heap is then read from the
    /// HeapAlloc envelope); `None` when no limit is known.
    pub gomemlimit_binds: Option<bool>,
    /// Restarts of the Go runtime seen (NumGC or TotalAlloc going back, new PID).
    pub restarts: u64,
    /// GC cycles per second over the last scrapes (see
    /// [`crate::analysis::gc_pace`]).
    pub gc_cycles_per_second: Option<f64>,
    /// The GC's share of the CPU available to the target over the last
    /// scrapes.
    pub gc_cpu_fraction: Option<f64>,
    /// The time the GC pace was measured over, ms.
    pub gc_pace_span_ms: u64,
}

impl GoReading {
    /// The Go runtime's memory limit, bytes, when one is set: as the runtime
    /// exports it (`go_gc_gomemlimit_bytes`; a `debug.SetMemoryLimit` call
    /// shows there), else from the target's environment.
    pub fn gomemlimit(&self) -> Option<u64> {
        crate::parse::go_runtime::effective_gomemlimit(self.sample.gomemlimit, self.gomemlimit_env)
    }
}

/// One poll's input: everything the collector read, with the identity of
/// what it read it from. The analysis reads this, never the status.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Unix time of the poll, ms: for display and alert timestamps only.
    pub time_ms: u64,
    /// Monotonic time of the poll, ms since the collector started: what the
    /// analysis measures time with (a wall-clock step moves neither).
    pub mono_ms: u64,
    pub target: Target,
    /// What the killer measures, as far as it can be read: `--limit-basis`,
    /// or `rss` when the target's cgroup cannot be read (unprivileged).
    pub limit_basis: LimitBasis,
    /// Effective limit: the override, else the smallest limit on the path.
    pub limit: Option<Limit>,
    pub limit_source: Option<LimitSource>,
    pub cgroup: Option<CgroupSample>,
    pub process: Option<ProcSample>,
    /// The last smaps_rollup read (it is read less often than the rest).
    pub smaps: Option<SmapsSample>,
    pub go: Option<GoReading>,
    /// OOM kills in the target's cgroups since headroom started, each
    /// counted once: read from the cgroup's count as the kernel keeps it,
    /// across the target's restarts and cgroups, or inferred.
    pub oom_kills_total: u64,
    /// Of `oom_kills_total`, those inferred (see [`KillHow::Inferred`]).
    pub oom_kills_inferred: u64,
    /// The cgroup's OOM kill count when headroom first read it: kills from
    /// before headroom started, not in `oom_kills_total`.
    pub oom_kills_before_start: Option<u64>,
    pub last_oom_kill: Option<OomKill>,
    /// The target's exits since headroom started, by reason.
    pub exits_total: BTreeMap<ExitReason, u64>,
    pub last_exit: Option<TargetExit>,
    /// v2 memory.events counts since headroom started, kept across restarts
    /// like `oom_kills_total`.
    pub events_total: BTreeMap<MemoryEvent, u64>,
}

impl Sample {
    pub fn usage(&self) -> Option<u64> {
        self.cgroup.as_ref().map(|c| c.usage)
    }

    pub fn working_set(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(CgroupSample::working_set)
    }

    pub fn unreclaimable(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(CgroupSample::unreclaimable)
    }

    /// The target's VmRSS.
    pub fn rss(&self) -> Option<u64> {
        self.process.as_ref().and_then(|p| p.vm_rss)
    }

    /// The value the killer measures, per `--limit-basis`.
    pub fn basis_value(&self, basis: LimitBasis) -> Option<u64> {
        match basis {
            LimitBasis::Unreclaimable => self.unreclaimable(),
            LimitBasis::WorkingSet => self.working_set(),
            LimitBasis::Usage => self.usage(),
            LimitBasis::Rss => self.rss(),
        }
    }

    /// The effective limit in bytes; `None` when unlimited or unknown.
    pub fn limit_bytes(&self) -> Option<u64> {
        self.limit.and_then(Limit::bytes)
    }

    pub fn lazy_free(&self) -> Option<u64> {
        self.smaps.as_ref().and_then(|s| s.lazy_free)
    }
}
