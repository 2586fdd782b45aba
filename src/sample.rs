//! One poll's data: plain serde structs, filled by `crate::source`.

use crate::parse::cgroup_files::{Limit, MemoryEvents, MemoryStat, OomControl};
use crate::parse::psi::Pressure;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

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
    /// Unix time in milliseconds when it was read (it is read less often
    /// than the rest).
    pub read_at_ms: u64,
}
