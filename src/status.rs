//! The one snapshot that /metrics, /api/v1/status, the dashboard and
//! `headroom check` all render.

use crate::analysis::breakdown::Breakdown;
use crate::analysis::go_heap::LiveMethod;
use crate::config::LimitBasis;
use crate::parse::cgroup_files::Limit;
use crate::parse::go_runtime::GoSample;
use crate::sample::{CgroupSample, CgroupVersion, ProcSample, SmapsSample};
use serde::Serialize;
use std::collections::BTreeMap;

/// Names of the sources, as in `headroom_source_up{source}`.
pub const SOURCES: [&str; 3] = ["cgroup", "proc", "go"];

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `None` when the source is not configured (no target, no --go-url).
    pub up: Option<bool>,
    pub errors_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub cgroup: Option<String>,
    pub cgroup_version: Option<CgroupVersion>,
    /// How the cgroup was found (which path, and why).
    pub cgroup_found: Option<String>,
}

/// The headline numbers, in bytes; `None` where the source is missing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub usage: Option<u64>,
    /// Effective limit: the override, else the smallest limit on the path.
    pub limit: Option<Limit>,
    /// `override` (--memory-limit) or `cgroup`.
    pub limit_source: Option<&'static str>,
    /// v2 memory.high when set: the kernel throttles above it.
    pub high: Option<Limit>,
    pub working_set: Option<u64>,
    pub unreclaimable: Option<u64>,
    pub rss: Option<u64>,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub lazy_free: Option<u64>,
    /// OOM kills of the target's cgroup as the kernel counts them (including
    /// those before headroom started), kept across the target's restarts.
    pub oom_kills_total: u64,
    /// v2 memory.events counts (high, max, oom, oom_kill) as the kernel
    /// counts them, kept across the target's restarts like `oom_kills_total`.
    pub events_total: BTreeMap<&'static str, u64>,
}

/// The latest successful scrape of the target's Go runtime.
#[derive(Debug, Clone, Serialize)]
pub struct GoStatus {
    pub sample: GoSample,
    pub scraped_at_ms: u64,
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<LiveMethod>,
    /// GOGC as read from the target's environment (-1 = off), when readable.
    pub gogc_env: Option<i64>,
    /// Restarts of the Go runtime seen (NumGC or TotalAlloc going back, new PID).
    pub restarts: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Unix time of the poll, milliseconds.
    pub time_ms: u64,
    /// True once a cgroup read has worked.
    pub ready: bool,
    pub limit_basis: Option<LimitBasis>,
    pub target: TargetStatus,
    pub memory: Memory,
    pub cgroup: Option<CgroupSample>,
    pub process: Option<ProcSample>,
    pub smaps: Option<SmapsSample>,
    pub go: Option<GoStatus>,
    pub breakdown: Breakdown,
    /// Trends, time to OOM, risk and diagnosis; `None` before the first poll.
    pub analysis: Option<crate::analysis::predict::Analysis>,
    /// Heap profiles saved when the risk rose (--profile-dir), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<crate::alert::SavedProfile>,
    pub sources: BTreeMap<&'static str, SourceStatus>,
}

impl Status {
    /// The value the killer measures, per `--limit-basis`.
    pub fn basis_value(&self) -> Option<u64> {
        match self.limit_basis? {
            LimitBasis::Unreclaimable => self.memory.unreclaimable,
            LimitBasis::WorkingSet => self.memory.working_set,
            LimitBasis::Usage => self.memory.usage,
            LimitBasis::Rss => self.memory.rss,
        }
    }

    pub fn source(&self, name: &str) -> Option<&SourceStatus> {
        self.sources.get(name)
    }
}
