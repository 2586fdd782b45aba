//! The collector: the only place that calls the readers. Each poll it
//! finds the target and its cgroup (through [`target`]), reads the cgroup
//! and /proc, keeps the kernel counters across resets ([`counters`]) and the
//! sources' health ([`health`]), and returns a [`Sample`]. Go scrapes come in
//! apart from the polls ([`Collector::ingest_go`]).

pub mod counters;
pub mod go;
pub mod health;
pub mod kills;
pub mod target;

use crate::analysis::breakdown::lazyfree_from_lru;
use crate::analysis::gc_pace::age_from_start;
use crate::config::TargetConfig;
use crate::sample::MemoryEvent;
use crate::sample::{Access, CgroupSample, GoReading, LimitBasis, LimitSource, ProcSample, Sample, SmapsSample};
use crate::source::cgroup::{CgroupError, CgroupReader};
use crate::source::events::KillWatch;
use crate::source::proc::{comm, read_procs, NodeReader, ProcReader, ProcSourceError};
use counters::KernelCounters;
use go::{age_from_ticks, parse_gogc, parse_gomemlimit, since_boot, GoEnv, GoScrape, GoState};
use health::{Health, HealthSnapshot, Source};
use kills::{Counts, Death, ExitJudge};
use std::time::{Duration, Instant};
use target::TargetTracker;

/// A move of the cgroup's lazy-free estimate by more than this since the
/// last smaps_rollup read calls for another read before its time ...
pub const SMAPS_REREAD_BYTES: u64 = 16 << 20;
/// ... but not sooner than this after the last one (a read walks the
/// target's page tables under its mmap lock).
pub const SMAPS_MIN_GAP: Duration = Duration::from_secs(1);

/// `smaps_rollup` is read at its own, slower pace.
#[derive(Debug, Default)]
struct Smaps {
    last: Option<SmapsSample>,
    due: Option<Instant>,
    read_at: Option<Instant>,
    denied_logged: bool,
}

/// The watcher of the current instance's cgroup and exit.
struct ActiveWatch {
    watch: KillWatch,
    instance: u64,
    pid: u32,
}

pub struct Collector {
    cfg: TargetConfig,
    /// The monotonic clock's zero for [`Sample::mono_ms`]: the first instant
    /// seen.
    epoch: Option<Instant>,
    target: TargetTracker,
    health: Health,
    counters: KernelCounters,
    cgroup: Option<CgroupReader>,
    proc: Option<ProcReader>,
    smaps: Smaps,
    last_warnings: Vec<String>,
    go: GoState,
    watch: Option<ActiveWatch>,
    /// The instance whose watcher could not start (not retried).
    watch_failed: Option<u64>,
    node: Option<NodeReader>,
    kills: ExitJudge,
    /// When the cgroup's counters were last taken (by a poll's read, or
    /// from the watcher).
    cgroup_read_at: Option<Instant>,
    /// The times of the poll under way.
    now_mono_ms: u64,
    now_ms: u64,
}

impl Collector {
    pub fn new(cfg: TargetConfig) -> Collector {
        let target = TargetTracker::new(&cfg);
        let wants_process = target.wants_process();
        let cfg_proc_root = cfg.proc_root.clone();
        let has_go = cfg.go_url.is_some();
        let counters = KernelCounters::new(cfg.appeared_after_start);
        Collector {
            health: Health::new(|s| match s {
                Source::Cgroup => true,
                Source::Proc => wants_process,
                Source::Go => has_go,
            }),
            target,
            cfg,
            epoch: None,
            counters,
            cgroup: None,
            proc: None,
            smaps: Smaps::default(),
            last_warnings: Vec::new(),
            go: GoState::default(),
            watch: None,
            watch_failed: None,
            node: wants_process.then(|| NodeReader::new(&cfg_proc_root)),
            kills: ExitJudge::default(),
            cgroup_read_at: None,
            now_mono_ms: 0,
            now_ms: 0,
        }
    }

    fn mono_ms(&mut self, at: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(at);
        at.saturating_duration_since(epoch).as_millis() as u64
    }

    /// The sources' health now.
    pub fn health(&self) -> HealthSnapshot {
        self.health.snapshot()
    }

    /// GOGC and GOMEMLIMIT from the target's environment, read once per
    /// process (the runtime reads them at start).
    fn go_env(&mut self) -> GoEnv {
        let Some(pid) = self.target.pid() else {
            return GoEnv::default();
        };
        if let Some((p, v)) = self.go.env {
            if p == pid {
                return v;
            }
        }
        let Some(proc) = self.proc.as_mut() else {
            return GoEnv::default();
        };
        // Read until a read works (then once per process): a failure may
        // be passing (the process just started, a permission granted since).
        match proc.read_env(["GOGC", "GOMEMLIMIT"]) {
            Ok([gogc, memlimit]) => {
                let v = GoEnv {
                    gogc: parse_gogc(gogc.as_deref()),
                    gomemlimit: parse_gomemlimit(memlimit.as_deref()),
                };
                self.go.env = Some((pid, v));
                v
            }
            Err(_) => GoEnv::default(),
        }
    }

    /// Takes the result of one scrape of the target's Go runtime (scraped
    /// apart from the cgroup polls, every `--go-interval`).
    pub fn ingest_go(&mut self, scrape: GoScrape) {
        let mono = self.mono_ms(scrape.at);
        match scrape.result {
            Ok(sample) => {
                let env = self.go_env();
                if self.target.observe_go(&sample) {
                    tracing::info!(
                        source = "go",
                        "the Go runtime restarted (NumGC or TotalAlloc went back): its history starts afresh"
                    );
                }
                let epoch = self.target.go_epoch();
                let d = self.go.tracker.ingest(&sample, epoch, env.gogc, env.gomemlimit);
                // The process's age at the scrape: from its start time in
                // /proc, else from the start time its source exports.
                let ago = Instant::now().saturating_duration_since(scrape.at);
                let age = self
                    .proc
                    .as_ref()
                    .and_then(ProcReader::start_time)
                    .zip(since_boot())
                    .and_then(|(start, now)| age_from_ticks(start, now.saturating_sub(ago)))
                    .or_else(|| sample.process_start_s.and_then(|st| age_from_start(scrape.at_ms, st)));
                let pace = self.go.pace.ingest(&sample, epoch, mono, age);
                self.go.reading = Some(GoReading {
                    sample,
                    scraped_at_ms: scrape.at_ms,
                    scraped_mono_ms: mono,
                    heap_live: d.heap_live,
                    heap_live_method: d.heap_live_method,
                    gogc_env: env.gogc,
                    gomemlimit_env: env.gomemlimit,
                    gogc_estimate: d.gogc_estimate,
                    gomemlimit_binds: d.gomemlimit_binds,
                    restarts: epoch,
                    gc_cycles_per_second: pace.cycles_per_second,
                    gc_cpu_fraction: pace.cpu_fraction,
                    gc_pace_span_ms: pace.span_ms,
                });
                self.health.ok(Source::Go);
            }
            Err(msg) => {
                self.go.reading = None;
                self.health.fail(Source::Go, msg, scrape.at);
            }
        }
    }

    /// One poll. `now_ms` is the wall-clock time stamped on the sample (for
    /// display); `now` is the monotonic time the analysis measures with, and
    /// paces smaps reads and log rate limits.
    pub fn poll(&mut self, now_ms: u64, now: Instant) -> Sample {
        let mono_ms = self.mono_ms(now);
        self.now_mono_ms = mono_ms;
        self.now_ms = now_ms;
        // What the watcher read since the last poll, before anything moves.
        self.drain_watch();
        let old_instance = self.target.instance();
        let old_pid = self.target.pid();
        let change = self.target.resolve(&mut self.health, now);
        if change.changed {
            if old_pid.is_some() {
                // The process we watched is gone: read its cgroup a last time
                // if it is still there, then judge the death.
                let direct = self.read_last_time();
                let status = self.proc.as_ref().and_then(ProcReader::exit_status);
                self.judge_death(old_instance, old_pid, direct, status);
            }
            self.watch = None;
            self.proc = change.pid.map(|p| ProcReader::new(&self.cfg.proc_root, p));
            self.smaps = Smaps {
                denied_logged: self.smaps.denied_logged,
                ..Smaps::default()
            };
            // A new process may live in a new cgroup.
            if self.target.cgroup_follows_pid() {
                self.cgroup = None;
            }
        }
        let cgroup = self.read_cgroup(change.pid, now);
        let lru = cgroup.as_ref().and_then(lazyfree_from_lru);
        let process = self.read_proc(now_ms, now, cgroup.is_some(), lru);
        if let Some(c) = &cgroup {
            self.counters.observe(c);
            self.start_watch(c);
        }
        let (limit, limit_source) = match (self.cfg.memory_limit, &cgroup) {
            (Some(l), _) => (Some(l), Some(LimitSource::Override)),
            (None, Some(c)) => (Some(c.path_limit), Some(LimitSource::Cgroup)),
            (None, None) => (None, None),
        };
        // Without the cgroup (unprivileged), the target's RSS stands in for
        // its usage in judging a death.
        let usage = cgroup
            .as_ref()
            .map(|c| c.usage)
            .or(process.as_ref().and_then(|p| p.vm_rss));
        // /proc/vmstat, ~25 µs a read (shared by the targets of a node):
        // every poll, so that a jump to the kill within one poll is judged
        // against the count before it.
        let node = self.node.as_mut().and_then(NodeReader::oom_kills);
        self.kills.observe(cgroup.as_ref(), usage, limit, node, mono_ms);
        if let Some(c) = &cgroup {
            self.read_cgroup_procs(&c.path);
        }
        let alive = self.target.pid().filter(|_| process.is_some());
        let alive = alive.map(|pid| (self.target.instance(), pid));
        self.kills.poll_end(self.counts(), alive, mono_ms, now_ms);
        let counted = self.counters.oom_kills_total();
        let limit_basis = match self.target.access() {
            Access::Unprivileged => LimitBasis::Rss,
            Access::Full => self.cfg.limit_basis,
        };
        Sample {
            time_ms: now_ms,
            mono_ms,
            target: self.target.snapshot(),
            limit_basis,
            limit,
            limit_source,
            cgroup,
            process,
            smaps: self.smaps.last.clone(),
            go: self.go.reading.clone(),
            oom_kills_total: counted + self.kills.inferred(),
            oom_kills_inferred: self.kills.inferred(),
            oom_kills_before_start: self.counters.oom_kills_before_start(),
            last_oom_kill: self.kills.last_kill().cloned(),
            exits_total: self.kills.exits().clone(),
            last_exit: self.kills.last_exit().cloned(),
            events_total: self.counters.events_total(),
        }
    }

    /// Takes what the watcher read; a target that exited is judged now.
    fn drain_watch(&mut self) {
        let Some(active) = &self.watch else {
            return;
        };
        let seen = active.watch.latest();
        // Only a read newer than the poll's own last read is news.
        if seen.read_at > self.cgroup_read_at {
            self.cgroup_read_at = seen.read_at;
            if let Some(k) = seen.oom_kills {
                self.counters.observe_oom_kills(k);
            }
            if let Some(ev) = &seen.events {
                self.counters.observe_events(ev);
            }
        }
        if seen.exited {
            let (instance, pid) = (active.instance, active.pid);
            self.judge_death(instance, Some(pid), seen.read_after_exit, seen.exit_status);
            self.watch = None;
        }
    }

    /// Reads the current cgroup once more (the target just changed); true
    /// when it could be read, its counters then taken.
    fn read_last_time(&mut self) -> bool {
        let Some(reader) = self.cgroup.as_mut() else {
            return false;
        };
        self.cgroup_read_at = Some(Instant::now());
        match reader.read() {
            Ok(s) => {
                self.counters.observe(&s);
                self.kills.observe_cgroup(&s);
                true
            }
            Err(_) => false,
        }
    }

    /// The kill counts now, as the exit judge weighs them.
    fn counts(&self) -> Counts {
        let v2 = self.counters.has_events();
        Counts {
            oom_kills: self.counters.oom_kills_total(),
            group_kills: v2.then(|| self.counters.event_total(MemoryEvent::OomGroupKill)),
            ooms: v2.then(|| self.counters.event_total(MemoryEvent::Oom)),
        }
    }

    /// The processes of the cgroup now, with their names (known ones
    /// reused, new ones read): the victim of a child's OOM kill is named
    /// from them.
    fn read_cgroup_procs(&mut self, dir: &std::path::Path) {
        let known = self.kills.procs();
        let procs = read_procs(&dir.join("cgroup.procs"))
            .into_iter()
            .take(kills::MAX_PROCS)
            .map(|pid| {
                let name = known
                    .iter()
                    .find(|(p, _)| *p == pid)
                    .map(|(_, c)| c.clone())
                    .or_else(|| comm(&self.cfg.proc_root, pid))
                    .unwrap_or_default();
                (pid, name)
            })
            .collect();
        self.kills.observe_procs(procs);
    }

    /// The target instance `instance` died. `direct`: its cgroup could be
    /// read after the death, so its own counter already says whether it was
    /// an OOM kill. Otherwise the judgement may infer one from the node's
    /// count. `status`: how it ended, where read.
    fn judge_death(
        &mut self,
        instance: u64,
        pid: Option<u32>,
        direct: bool,
        status: Option<crate::sample::WaitStatus>,
    ) {
        if !self.kills.should_judge(instance) {
            return;
        }
        let node_now = self.node.as_mut().and_then(NodeReader::oom_kills);
        let death = Death {
            instance,
            pid,
            status,
            direct,
        };
        let counts = self.counts();
        self.kills.judge(death, counts, node_now, self.now_mono_ms, self.now_ms);
    }

    /// Starts the watcher of the current instance's cgroup and exit, once.
    fn start_watch(&mut self, c: &CgroupSample) {
        let instance = self.target.instance();
        if self.watch.is_some() || self.watch_failed == Some(instance) || self.kills.judged() == Some(instance) {
            return;
        }
        let Some(pid) = self.target.pid() else {
            return;
        };
        // A pidfd names a PID of our own namespace: only for the real /proc.
        let pidfd_pid = (self.cfg.proc_root == std::path::Path::new("/proc")).then_some(pid);
        match KillWatch::start(pidfd_pid, &c.path, c.version) {
            Ok(watch) => {
                tracing::debug!(path = %watch.path.display(), "watching for the target's exit and OOM kills");
                self.watch = Some(ActiveWatch { watch, instance, pid });
            }
            Err(e) => {
                tracing::debug!("no kernel notifications for the target: {e}; OOM kills are read at each poll");
                self.watch_failed = Some(instance);
            }
        }
    }

    fn read_cgroup(&mut self, pid: Option<u32>, now: Instant) -> Option<CgroupSample> {
        if self.cgroup.is_none() && self.target.can_locate() && self.target.access() == Access::Full {
            match self.target.locate() {
                Ok((loc, moved)) => {
                    if moved {
                        self.counters.rebase();
                    }
                    self.cgroup = Some(CgroupReader::new(&loc));
                }
                Err(CgroupError::NoAccess { .. }) if self.cfg.memory_limit.is_some() => {
                    self.target.set_unprivileged();
                    self.health.set_configured(Source::Cgroup, false);
                }
                Err(e) => self.health.fail(Source::Cgroup, e.to_string(), now),
            }
        }
        let Some(reader) = self.cgroup.as_mut() else {
            if self.target.wants_process() && pid.is_none() {
                let msg = "no target process, so no cgroup to read".to_owned();
                self.health.fail(Source::Cgroup, msg, now);
            }
            return None;
        };
        self.cgroup_read_at = Some(Instant::now());
        match reader.read() {
            Ok(s) => {
                if !s.warnings.is_empty() && s.warnings != self.last_warnings {
                    for w in &s.warnings {
                        tracing::warn!(source = "cgroup", "ignored malformed data: {w}");
                    }
                }
                self.last_warnings = s.warnings.clone();
                self.health.ok(Source::Cgroup);
                Some(s)
            }
            Err(e) => {
                if matches!(e, CgroupError::Vanished { .. }) {
                    self.cgroup = None;
                }
                self.health.fail(Source::Cgroup, e.to_string(), now);
                None
            }
        }
    }

    /// Reads /proc/PID/status (and smaps_rollup when due). A target found
    /// gone is a death to judge (`cgroup_read`: its cgroup was read this
    /// poll, after the death, so its counter already tells).
    fn read_proc(&mut self, now_ms: u64, now: Instant, cgroup_read: bool, lru: Option<u64>) -> Option<ProcSample> {
        let reader = self.proc.as_mut()?;
        match reader.read_status() {
            Ok(p) => {
                if let Some(start) = reader.start_time() {
                    if self.target.observe_start_time(start) {
                        // Another process under the same PID: the old one died.
                        let old = self.target.instance() - 1;
                        let pid = self.target.pid();
                        self.judge_death(old, pid, cgroup_read, None);
                        self.watch = None;
                    }
                }
                self.health.ok(Source::Proc);
                self.read_smaps_if_due(now_ms, now, lru);
                Some(p)
            }
            Err(e) => {
                let gone = matches!(e, ProcSourceError::Gone { .. });
                self.health.fail(Source::Proc, e.to_string(), now);
                if gone {
                    let instance = self.target.instance();
                    let direct = cgroup_read || self.read_last_time();
                    let pid = self.target.pid();
                    let status = self.proc.as_ref().and_then(ProcReader::exit_status);
                    self.judge_death(instance, pid, direct, status);
                    self.watch = None;
                    self.target.gone();
                    if self.target.pid().is_none() {
                        self.proc = None;
                    }
                }
                None
            }
        }
    }

    /// Reads smaps_rollup at `--smaps-interval`, and sooner when the
    /// cgroup's LRU estimate of lazy-free memory (`lru`, this poll's) moved
    /// by more than [`SMAPS_REREAD_BYTES`] since the last read: a release
    /// or a reclaim is then confirmed at once, at most once per
    /// [`SMAPS_MIN_GAP`].
    fn read_smaps_if_due(&mut self, now_ms: u64, now: Instant, lru: Option<u64>) {
        let moved = match (lru, self.smaps.last.as_ref().and_then(|l| l.cgroup_lru_estimate)) {
            (Some(a), Some(b)) => a.abs_diff(b) > SMAPS_REREAD_BYTES,
            _ => false,
        };
        let recent = self.smaps.read_at.is_some_and(|t| now < t + SMAPS_MIN_GAP);
        let due = self.smaps.due.is_none_or(|due| now >= due);
        if !(due || moved && !recent) {
            return;
        }
        self.smaps.due = Some(now + self.cfg.smaps_interval);
        self.smaps.read_at = Some(now);
        let Some(reader) = self.proc.as_mut() else {
            return;
        };
        match reader.read_smaps_rollup(now_ms) {
            Ok(s) => {
                self.smaps.last = Some(SmapsSample {
                    read_mono_ms: self.now_mono_ms,
                    cgroup_lru_estimate: lru,
                    ..s
                })
            }
            Err(e @ ProcSourceError::PermissionDenied { .. }) => {
                if !self.smaps.denied_logged {
                    tracing::warn!(
                        source = "proc",
                        "{e}; LazyFree will be estimated from the cgroup instead"
                    );
                    self.smaps.denied_logged = true;
                }
                self.smaps.last = None;
            }
            Err(e) => {
                self.smaps.last = None;
                self.health.fail(Source::Proc, e.to_string(), now);
            }
        }
    }
}
