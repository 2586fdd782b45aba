//! The collector: the only place that calls the readers. Each poll it
//! finds the target and its cgroup (through [`target`]), reads the cgroup
//! and /proc, keeps the kernel counters across resets ([`counters`]) and the
//! sources' health ([`health`]), and returns a [`Sample`]. Go scrapes come in
//! apart from the polls ([`Collector::ingest_go`]).

pub mod counters;
pub mod go;
pub mod health;
pub mod target;

use crate::config::Config;
use crate::sample::{CgroupSample, GoReading, LimitSource, ProcSample, Sample, SmapsSample};
use crate::source::cgroup::{CgroupError, CgroupReader};
use crate::source::proc::{ProcReader, ProcSourceError};
use counters::KernelCounters;
use go::{parse_gogc, GoScrape, GoState};
use health::{Health, HealthSnapshot, Source};
use std::time::{Duration, Instant};
use target::TargetTracker;

/// `smaps_rollup` is read at its own, slower pace.
#[derive(Debug, Default)]
struct Smaps {
    last: Option<SmapsSample>,
    due: Option<Instant>,
    denied_logged: bool,
}

pub struct Collector {
    cfg: Config,
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
}

impl Collector {
    pub fn new(cfg: Config) -> Collector {
        let target = TargetTracker::new(&cfg);
        let wants_process = target.wants_process();
        let has_go = cfg.go_url.is_some();
        Collector {
            health: Health::new(|s| match s {
                Source::Cgroup => true,
                Source::Proc => wants_process,
                Source::Go => has_go,
            }),
            target,
            cfg,
            epoch: None,
            counters: KernelCounters::default(),
            cgroup: None,
            proc: None,
            smaps: Smaps::default(),
            last_warnings: Vec::new(),
            go: GoState::default(),
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

    fn gogc(&mut self) -> Option<i64> {
        let pid = self.target.pid()?;
        if let Some((p, v)) = self.go.gogc_env {
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
        self.go.gogc_env = Some((pid, v));
        v
    }

    /// Takes the result of one scrape of the target's Go runtime (scraped
    /// apart from the cgroup polls, every `--go-interval`).
    pub fn ingest_go(&mut self, scrape: GoScrape) {
        let mono = self.mono_ms(scrape.at);
        match scrape.result {
            Ok(sample) => {
                let gogc = self.gogc();
                if self.target.observe_go(&sample) {
                    tracing::info!(
                        source = "go",
                        "the Go runtime restarted (NumGC or TotalAlloc went back): its history starts afresh"
                    );
                }
                let epoch = self.target.go_epoch();
                let d = self.go.tracker.ingest(&sample, epoch, gogc);
                self.go.reading = Some(GoReading {
                    sample,
                    scraped_at_ms: scrape.at_ms,
                    scraped_mono_ms: mono,
                    heap_live: d.heap_live,
                    heap_live_method: d.heap_live_method,
                    gogc_env: gogc,
                    restarts: epoch,
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
        let change = self.target.resolve(&mut self.health, now);
        if change.changed {
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
        if let Some(c) = &cgroup {
            self.counters.observe(c);
        }
        let process = self.read_proc(now_ms, now);
        let (limit, limit_source) = match (self.cfg.memory_limit, &cgroup) {
            (Some(l), _) => (Some(l), Some(LimitSource::Override)),
            (None, Some(c)) => (Some(c.path_limit), Some(LimitSource::Cgroup)),
            (None, None) => (None, None),
        };
        Sample {
            time_ms: now_ms,
            mono_ms,
            target: self.target.snapshot(),
            limit,
            limit_source,
            cgroup,
            process,
            smaps: self.smaps.last.clone(),
            go: self.go.reading.clone(),
            oom_kills_total: self.counters.oom_kills_total(),
            events_total: self.counters.events_total(),
        }
    }

    fn read_cgroup(&mut self, pid: Option<u32>, now: Instant) -> Option<CgroupSample> {
        if self.cgroup.is_none() && self.target.can_locate() {
            match self.target.locate() {
                Ok((loc, moved)) => {
                    if moved {
                        self.counters.rebase();
                    }
                    self.cgroup = Some(CgroupReader::new(&loc));
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

    fn read_proc(&mut self, now_ms: u64, now: Instant) -> Option<ProcSample> {
        let reader = self.proc.as_mut()?;
        match reader.read_status() {
            Ok(p) => {
                self.health.ok(Source::Proc);
                self.read_smaps_if_due(now_ms, now);
                Some(p)
            }
            Err(e) => {
                let gone = matches!(e, ProcSourceError::Gone { .. });
                self.health.fail(Source::Proc, e.to_string(), now);
                if gone {
                    self.target.gone();
                    if self.target.pid().is_none() {
                        self.proc = None;
                    }
                }
                None
            }
        }
    }

    fn read_smaps_if_due(&mut self, now_ms: u64, now: Instant) {
        if self.smaps.due.is_some_and(|due| now < due) {
            return;
        }
        self.smaps.due = Some(now + self.smaps_interval());
        let Some(reader) = self.proc.as_mut() else {
            return;
        };
        match reader.read_smaps_rollup(now_ms) {
            Ok(s) => self.smaps.last = Some(s),
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

    fn smaps_interval(&self) -> Duration {
        self.cfg.smaps_interval
    }
}
