//! The collector: the only place that calls the readers. It finds the target
//! and its cgroup, reads them on each poll, and builds the [`Status`].

use crate::analysis::breakdown::breakdown;
use crate::analysis::go_heap::GoTracker;
use crate::analysis::predict::{AnalysisConfig, Analyzer};
use crate::config::{Config, Target};
use crate::parse::go_runtime::GoSample;
use crate::sample::SmapsSample;
use crate::source::cgroup::{locate_auto, locate_explicit, CgroupError, CgroupReader, Located};
use crate::source::proc::{find_process, ProcReader, ProcSourceError};
use crate::status::{GoStatus, Memory, SourceStatus, Status, TargetStatus, SOURCES};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A counter that survives resets: when the kernel's count goes down (a new
/// cgroup after the container restarted), what was counted before is kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResetCounter {
    base: u64,
    last: Option<u64>,
}

impl ResetCounter {
    /// Records the kernel's current count and returns the running total.
    pub fn observe(&mut self, current: u64) -> u64 {
        if let Some(last) = self.last {
            if current < last {
                self.base += last;
            }
        }
        self.last = Some(current);
        self.total()
    }

    /// The source changed (another cgroup): keep the total, start afresh.
    pub fn rebase(&mut self) {
        if let Some(last) = self.last.take() {
            self.base += last;
        }
    }

    pub fn total(&self) -> u64 {
        self.base + self.last.unwrap_or(0)
    }
}

/// Logs an error when it first appears or changes, then at most once a
/// minute while it persists.
#[derive(Debug, Default)]
struct SourceState {
    status: SourceStatus,
    logged_at: Option<Instant>,
    logged_msg: Option<String>,
}

const RELOG_EVERY: Duration = Duration::from_secs(60);

impl SourceState {
    fn ok(&mut self, name: &str) {
        if self.status.up == Some(false) {
            tracing::info!(source = name, "source recovered");
        }
        self.status.up = Some(true);
        self.status.last_error = None;
        self.logged_msg = None;
    }

    fn fail(&mut self, name: &str, msg: String, now: Instant) {
        self.status.up = Some(false);
        self.status.errors_total += 1;
        let changed = self.logged_msg.as_deref() != Some(msg.as_str());
        let due = self.logged_at.is_none_or(|t| now.duration_since(t) >= RELOG_EVERY);
        if changed || due {
            tracing::warn!(source = name, errors_total = self.status.errors_total, "{msg}");
            self.logged_at = Some(now);
            self.logged_msg = Some(msg.clone());
        }
        self.status.last_error = Some(msg);
    }
}

pub struct Collector {
    cfg: Config,
    own_pid: u32,
    pid: Option<u32>,
    /// The last PID the target had, kept while it is gone.
    last_pid: Option<u32>,
    located: Option<Located>,
    cgroup: Option<CgroupReader>,
    proc: Option<ProcReader>,
    smaps: Option<SmapsSample>,
    smaps_due: Option<Instant>,
    smaps_denied_logged: bool,
    oom: ResetCounter,
    events: BTreeMap<&'static str, ResetCounter>,
    ready: bool,
    sources: BTreeMap<&'static str, SourceState>,
    last_warnings: Vec<String>,
    go: Option<GoStatus>,
    go_tracker: GoTracker,
    /// GOGC from the target's environment, read once per PID.
    gogc_env: Option<(u32, Option<i64>)>,
    analyzer: Analyzer,
    profiles: Option<crate::alert::Profiles>,
}

pub fn analysis_config(cfg: &Config) -> AnalysisConfig {
    AnalysisConfig {
        window_ms: cfg.window.as_millis() as u64,
        warn_within_s: cfg.warn_within.as_secs_f64(),
        critical_within_s: cfg.critical_within.as_secs_f64(),
        thresholds: Default::default(),
    }
}

/// GOGC as the Go runtime reads it: unset or empty is 100, `off` is -1.
pub fn parse_gogc(v: Option<&str>) -> Option<i64> {
    match v.map(str::trim) {
        None | Some("") => Some(100),
        Some("off") => Some(-1),
        Some(n) => n.parse().ok(),
    }
}

impl Collector {
    pub fn new(cfg: Config) -> Collector {
        let mut sources = BTreeMap::new();
        for s in SOURCES {
            sources.insert(s, SourceState::default());
        }
        Collector {
            analyzer: Analyzer::new(analysis_config(&cfg)),
            cfg,
            own_pid: std::process::id(),
            pid: None,
            last_pid: None,
            located: None,
            cgroup: None,
            proc: None,
            smaps: None,
            smaps_due: None,
            smaps_denied_logged: false,
            oom: ResetCounter::default(),
            events: BTreeMap::new(),
            ready: false,
            sources,
            last_warnings: Vec::new(),
            go: None,
            go_tracker: GoTracker::default(),
            gogc_env: None,
            profiles: None,
        }
    }

    /// The heap profiles saved by the alert task, listed in the status.
    pub fn set_profiles(&mut self, profiles: crate::alert::Profiles) {
        self.profiles = Some(profiles);
    }

    fn gogc(&mut self) -> Option<i64> {
        let pid = self.pid?;
        if let Some((p, v)) = self.gogc_env {
            if p == pid {
                return v;
            }
        }
        let v = self
            .proc
            .as_mut()?
            .read_env("GOGC")
            .ok()
            .and_then(|v| parse_gogc(v.as_deref()));
        self.gogc_env = Some((pid, v));
        v
    }

    /// Takes the result of one scrape of the target's Go runtime (scraped
    /// apart from the cgroup polls, every `--go-interval`).
    pub fn ingest_go(&mut self, result: Result<GoSample, String>, at_ms: u64, now: Instant) {
        match result {
            Ok(sample) => {
                let gogc = self.gogc();
                let d = self.go_tracker.ingest(&sample, self.pid, gogc);
                if d.restarted {
                    tracing::info!(source = "go", "the Go runtime restarted (NumGC or TotalAlloc went back, or a new PID): its history starts afresh");
                }
                self.go = Some(GoStatus {
                    sample,
                    scraped_at_ms: at_ms,
                    heap_live: d.heap_live,
                    heap_live_method: d.heap_live_method,
                    gogc_env: gogc,
                    restarts: self.go_tracker.restarts,
                });
                self.state("go").ok("go");
            }
            Err(msg) => {
                self.go = None;
                self.state("go").fail("go", msg, now);
            }
        }
    }

    fn state(&mut self, name: &'static str) -> &mut SourceState {
        self.sources.get_mut(name).expect("known source")
    }

    /// Finds the target PID; `--process` is resolved again once the process
    /// is gone.
    fn resolve_pid(&mut self, now: Instant) -> Option<u32> {
        let name = match &self.cfg.target {
            Target::Own => return None,
            Target::Pid(p) => return Some(*p),
            // Kept until a read finds the process gone (see `poll`).
            Target::Process(_) if self.pid.is_some() => return self.pid,
            Target::Process(name) => name,
        };
        match find_process(&self.cfg.proc_root, name, Some(self.own_pid)) {
            Ok(p) => Some(p),
            Err(e) => {
                self.state("proc").fail("proc", e.to_string(), now);
                None
            }
        }
    }

    fn locate(&self, pid: Option<u32>) -> Result<Located, CgroupError> {
        match &self.cfg.cgroup {
            Some(p) => locate_explicit(&self.cfg.cgroup_root, p),
            None => {
                let pid_dir = match pid {
                    Some(p) => self.cfg.proc_root.join(p.to_string()),
                    None => self.cfg.proc_root.join("self"),
                };
                locate_auto(&self.cfg.cgroup_root, &self.cfg.proc_root, &pid_dir)
            }
        }
    }

    /// One poll. `now_ms` is the wall-clock time stamped on the status;
    /// `now` paces smaps reads and log rate limits.
    pub fn poll(&mut self, now_ms: u64, now: Instant) -> Status {
        let pid = self.resolve_pid(now);
        if pid != self.pid {
            // The old PID may have been gone for some polls: compare with the
            // last one seen.
            if let (Some(old), Some(new)) = (self.last_pid, pid) {
                if old != new {
                    tracing::info!(old_pid = old, new_pid = new, "target restarted with a new PID");
                }
            }
            self.last_pid = pid.or(self.last_pid);
            self.pid = pid;
            self.proc = pid.map(|p| ProcReader::new(&self.cfg.proc_root, p));
            self.smaps = None;
            self.smaps_due = None;
            // A new process may live in a new cgroup.
            if self.cfg.cgroup.is_none() {
                self.cgroup = None;
            }
        }
        let want_target = self.cfg.target != Target::Own;

        // cgroup
        let mut cgroup_sample = None;
        if self.cgroup.is_none() && (pid.is_some() || !want_target || self.cfg.cgroup.is_some()) {
            match self.locate(pid) {
                Ok(loc) => {
                    if self.located.as_ref().map(|l| &l.dir) != Some(&loc.dir) {
                        tracing::info!(cgroup = %loc.dir.display(), version = ?loc.version, "watching cgroup: {}", loc.how);
                        if self.located.is_some() {
                            self.oom.rebase();
                            self.events.values_mut().for_each(ResetCounter::rebase);
                        }
                    }
                    self.cgroup = Some(CgroupReader::new(&loc));
                    self.located = Some(loc);
                }
                Err(e) => self.state("cgroup").fail("cgroup", e.to_string(), now),
            }
        }
        if let Some(reader) = self.cgroup.as_mut() {
            match reader.read() {
                Ok(s) => {
                    if !s.warnings.is_empty() && s.warnings != self.last_warnings {
                        for w in &s.warnings {
                            tracing::warn!(source = "cgroup", "ignored malformed data: {w}");
                        }
                    }
                    self.last_warnings = s.warnings.clone();
                    self.state("cgroup").ok("cgroup");
                    self.ready = true;
                    cgroup_sample = Some(s);
                }
                Err(e) => {
                    if matches!(e, CgroupError::Vanished { .. }) {
                        self.cgroup = None;
                    }
                    self.state("cgroup").fail("cgroup", e.to_string(), now);
                }
            }
        } else if want_target && pid.is_none() {
            let msg = "no target process, so no cgroup to read".to_owned();
            self.state("cgroup").fail("cgroup", msg, now);
        }
        if let Some(k) = cgroup_sample.as_ref().and_then(|s| s.oom_kills()) {
            self.oom.observe(k);
        }
        if let Some(ev) = cgroup_sample.as_ref().and_then(|s| s.events.as_ref()) {
            for (name, v) in [
                ("high", ev.high),
                ("max", ev.max),
                ("oom", ev.oom),
                ("oom_kill", ev.oom_kill),
            ] {
                if let Some(v) = v {
                    self.events.entry(name).or_default().observe(v);
                }
            }
        }

        // /proc
        let mut proc_sample = None;
        if let Some(reader) = self.proc.as_mut() {
            match reader.read_status() {
                Ok(p) => proc_sample = Some(p),
                Err(e) => {
                    let gone = matches!(e, ProcSourceError::Gone { .. });
                    self.state("proc").fail("proc", e.to_string(), now);
                    if gone && matches!(self.cfg.target, Target::Process(_)) {
                        self.pid = None;
                        self.proc = None;
                    }
                }
            }
            if proc_sample.is_some() {
                self.state("proc").ok("proc");
                self.read_smaps_if_due(now_ms, now);
            }
        }

        let mut status = self.build(now_ms, cgroup_sample, proc_sample);
        status.analysis = Some(self.analyzer.update(&status));
        status
    }

    fn read_smaps_if_due(&mut self, now_ms: u64, now: Instant) {
        if self.smaps_due.is_some_and(|due| now < due) {
            return;
        }
        self.smaps_due = Some(now + self.cfg.smaps_interval);
        let Some(reader) = self.proc.as_mut() else {
            return;
        };
        match reader.read_smaps_rollup(now_ms) {
            Ok(s) => self.smaps = Some(s),
            Err(e @ ProcSourceError::PermissionDenied { .. }) => {
                if !self.smaps_denied_logged {
                    tracing::warn!(
                        source = "proc",
                        "{e}; LazyFree will be estimated from the cgroup instead"
                    );
                    self.smaps_denied_logged = true;
                }
                self.smaps = None;
            }
            Err(e) => {
                self.smaps = None;
                self.state("proc").fail("proc", e.to_string(), now);
            }
        }
    }

    fn build(
        &self,
        now_ms: u64,
        cgroup: Option<crate::sample::CgroupSample>,
        process: Option<crate::sample::ProcSample>,
    ) -> Status {
        let (limit, limit_source) = match (self.cfg.memory_limit, &cgroup) {
            (Some(l), _) => (Some(l), Some("override")),
            (None, Some(c)) => (Some(c.path_limit), Some("cgroup")),
            (None, None) => (None, None),
        };
        let stat = cgroup.as_ref().and_then(|c| c.stat.as_ref());
        let memory = Memory {
            usage: cgroup.as_ref().map(|c| c.usage),
            limit,
            limit_source,
            high: cgroup.as_ref().and_then(|c| c.high),
            working_set: cgroup.as_ref().and_then(|c| c.working_set()),
            unreclaimable: cgroup.as_ref().and_then(|c| c.unreclaimable()),
            rss: process.as_ref().and_then(|p| p.vm_rss),
            anon: stat.and_then(|s| s.anon),
            file: stat.and_then(|s| s.file),
            lazy_free: self.smaps.as_ref().and_then(|s| s.lazy_free),
            oom_kills_total: self.oom.total(),
            events_total: self.events.iter().map(|(k, c)| (*k, c.total())).collect(),
        };
        let want_target = self.cfg.target != Target::Own;
        let go_sample = self.go.as_ref().map(|g| &g.sample);
        let breakdown = breakdown(cgroup.as_ref(), self.smaps.as_ref(), go_sample);
        let mut sources: BTreeMap<&'static str, SourceStatus> =
            self.sources.iter().map(|(k, v)| (*k, v.status.clone())).collect();
        if !want_target {
            sources.insert("proc", SourceStatus::default());
        }
        if self.cfg.go_url.is_none() {
            sources.insert("go", SourceStatus::default());
        }
        Status {
            time_ms: now_ms,
            ready: self.ready,
            limit_basis: Some(self.cfg.limit_basis),
            target: TargetStatus {
                pid: self.pid,
                process: match &self.cfg.target {
                    Target::Process(n) => Some(n.clone()),
                    _ => None,
                },
                cgroup: self.located.as_ref().map(|l| l.dir.display().to_string()),
                cgroup_version: self.located.as_ref().map(|l| l.version),
                cgroup_found: self.located.as_ref().map(|l| l.how.clone()),
            },
            memory,
            cgroup,
            process,
            smaps: self.smaps.clone(),
            go: self.go.clone(),
            breakdown,
            analysis: None,
            profiles: self
                .profiles
                .as_ref()
                .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect())
                .unwrap_or_default(),
            sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gogc_values() {
        assert_eq!(parse_gogc(None), Some(100));
        assert_eq!(parse_gogc(Some("")), Some(100));
        assert_eq!(parse_gogc(Some("off")), Some(-1));
        assert_eq!(parse_gogc(Some("200")), Some(200));
        assert_eq!(parse_gogc(Some("lots")), None);
    }

    #[test]
    fn reset_counter() {
        let mut c = ResetCounter::default();
        assert_eq!(c.total(), 0);
        assert_eq!(c.observe(2), 2);
        assert_eq!(c.observe(3), 3);
        // Container restarted: a new cgroup counting from 0.
        assert_eq!(c.observe(0), 3);
        assert_eq!(c.observe(1), 4);
        c.rebase();
        assert_eq!(c.total(), 4);
        assert_eq!(c.observe(1), 5);
    }
}
