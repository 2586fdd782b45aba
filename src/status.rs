//! The one snapshot that /metrics, /api/v1/status, the dashboard, `headroom
//! check` and the alert planning all render: assembled after the analysis
//! from the sample, the analysis, the sources' health and the saved profiles.

use crate::alert::profile::SavedProfile;
use crate::analysis::breakdown::Breakdown;
use crate::analysis::misconfig::{misconfigurations, Misconfiguration};
use crate::analysis::predict::Analysis;
use crate::collector::health::{HealthSnapshot, Source, SourceStatus};
use crate::parse::cgroup_files::Limit;
use crate::sample::{
    Access, CgroupSample, CgroupVersion, ExitReason, GoReading, LimitBasis, LimitSource, MemoryEvent, OomKill,
    ProcSample, Sample, SmapsSample, TargetExit,
};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub cgroup: Option<String>,
    pub cgroup_version: Option<CgroupVersion>,
    /// How the cgroup was found (which path, and why).
    pub cgroup_found: Option<String>,
    /// explicit, own_mount or target_root.
    pub cgroup_found_via: Option<&'static str>,
    /// `full`, or `unprivileged` (no ptrace access: /proc/PID/status, the Go
    /// endpoint and --memory-limit only; the limit basis is then rss).
    pub access: Access,
    /// The target container's name (--target-container), for joins with
    /// cAdvisor and kube-state-metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The headline numbers, in bytes; `None` where the source is missing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub usage: Option<u64>,
    /// Effective limit: the override, else the smallest limit on the path.
    pub limit: Option<Limit>,
    pub limit_source: Option<LimitSource>,
    /// v2 memory.high when set: the kernel throttles above it.
    pub high: Option<Limit>,
    pub working_set: Option<u64>,
    pub unreclaimable: Option<u64>,
    pub rss: Option<u64>,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub lazy_free: Option<u64>,
    /// OOM kills in the target's cgroups since headroom started, each
    /// counted once, kept across the target's restarts.
    pub oom_kills_total: u64,
    /// Of those, the kills inferred (the cgroup was gone before it could be
    /// read); the others were read from the cgroup's counter.
    pub oom_kills_inferred: u64,
    /// The cgroup's count when headroom first read it: kills from before
    /// headroom started (not in `oom_kills_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kills_before_start: Option<u64>,
    /// The last OOM kill known: how it was known (cgroup or inferred), the
    /// PID and name, and whether it was of another process of the cgroup.
    pub last_oom_kill: Option<OomKill>,
    /// The target's exits since headroom started, by reason.
    pub exits_total: BTreeMap<ExitReason, u64>,
    /// The last exit: its reason, PID, exit code or signal.
    pub last_exit: Option<TargetExit>,
    /// v2 memory.events counts (high, max, oom, oom_kill, oom_group_kill)
    /// since headroom started, kept across the target's restarts.
    pub events_total: BTreeMap<MemoryEvent, u64>,
}

/// The latest successful scrape of the target's Go runtime.
pub type GoStatus = GoReading;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Unix time of the poll, milliseconds.
    pub time_ms: u64,
    /// Unix time the daemon's poll finished, milliseconds (absent in `check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_finished_ms: Option<u64>,
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
    /// The misconfiguration checks failing now, each with its evidence and
    /// fix; a check whose inputs are unknown is not listed.
    pub misconfigurations: Vec<Misconfiguration>,
    /// Trends, time to OOM, risk and diagnosis; `None` before the first poll.
    pub analysis: Option<Analysis>,
    /// Heap profiles saved when the risk rose (--profile-dir), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<SavedProfile>,
    pub sources: BTreeMap<Source, SourceStatus>,
}

impl Status {
    /// The status of one poll: what was read, what the analysis made of it,
    /// the sources' health and the profiles saved so far.
    pub fn assemble(sample: Sample, analysis: Analysis, health: HealthSnapshot, profiles: Vec<SavedProfile>) -> Status {
        let stat = sample.cgroup.as_ref().and_then(|c| c.stat.as_ref());
        let memory = Memory {
            usage: sample.usage(),
            limit: sample.limit,
            limit_source: sample.limit_source,
            high: sample.cgroup.as_ref().and_then(|c| c.high),
            working_set: sample.working_set(),
            unreclaimable: sample.unreclaimable(),
            rss: sample.rss(),
            anon: stat.and_then(|s| s.anon),
            file: stat.and_then(|s| s.file),
            lazy_free: sample.lazy_free(),
            oom_kills_total: sample.oom_kills_total,
            oom_kills_inferred: sample.oom_kills_inferred,
            oom_kills_before_start: sample.oom_kills_before_start,
            last_oom_kill: sample.last_oom_kill.clone(),
            exits_total: sample.exits_total.clone(),
            last_exit: sample.last_exit.clone(),
            events_total: sample.events_total.clone(),
        };
        let t = &sample.target;
        let target = TargetStatus {
            pid: t.pid,
            process: t.process.clone(),
            cgroup: t.cgroup.as_ref().map(|p| p.display().to_string()),
            cgroup_version: t.cgroup_version,
            cgroup_found: t.cgroup_found.clone(),
            cgroup_found_via: t.cgroup_found_via,
            access: t.access,
            container: t.container.clone(),
        };
        let misconfigurations = misconfigurations(&sample);
        Status {
            time_ms: sample.time_ms,
            poll_finished_ms: None,
            ready: health.ready,
            limit_basis: Some(sample.limit_basis),
            target,
            memory,
            cgroup: sample.cgroup,
            process: sample.process,
            smaps: sample.smaps,
            go: sample.go,
            breakdown: analysis.breakdown.clone(),
            misconfigurations,
            analysis: Some(analysis),
            profiles,
            sources: health.sources,
        }
    }

    /// The value the killer measures, per the limit basis, as the analysis
    /// read it off the sample.
    pub fn basis_value(&self) -> Option<u64> {
        self.analysis.as_ref()?.basis
    }

    pub fn source(&self, s: Source) -> Option<&SourceStatus> {
        self.sources.get(&s)
    }
}
