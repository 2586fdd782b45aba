//! Target tracking: which process is watched, which cgroup it is charged to,
//! and the one place that decides "this is a new target instance".
//!
//! A new instance is a new PID for the target (a restart, or `--process`
//! finding the process again under another PID) — and, for the Go runtime,
//! also its counters going back (NumGC or TotalAlloc: the runtime restarted
//! behind the same URL). Consumers (the Go live-heap tracker, the analyzer,
//! the kernel counters) read the instance numbers in the [`Sample`] and reset
//! what they keep when these change; none of them detects restarts itself.
//!
//! [`Sample`]: crate::sample::Sample

use super::health::{Health, Source};
use crate::config::{Config, Target as TargetSpec};
use crate::parse::go_runtime::GoSample;
use crate::sample::Target;
use crate::source::cgroup::{locate_auto, locate_explicit, CgroupError, Located};
use crate::source::proc::find_process;
use std::path::PathBuf;
use std::time::Instant;

/// What changed at the start of a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidChange {
    /// The PID read this poll (`None`: no target process now).
    pub pid: Option<u32>,
    /// It differs from the previous poll's: readers of the old one go.
    pub changed: bool,
}

#[derive(Debug)]
pub struct TargetTracker {
    spec: TargetSpec,
    /// `--cgroup PATH`; `None` = auto (from the target's PID, else our own).
    cgroup_path: Option<PathBuf>,
    cgroup_root: PathBuf,
    proc_root: PathBuf,
    own_pid: u32,
    pid: Option<u32>,
    /// The last PID the target had, kept while it is gone.
    last_pid: Option<u32>,
    instance: u64,
    go_epoch: u64,
    /// The Go runtime's NumGC and TotalAlloc at the last scrape.
    go_counters: (Option<u64>, Option<u64>),
    located: Option<Located>,
}

impl TargetTracker {
    pub fn new(cfg: &Config) -> TargetTracker {
        TargetTracker {
            spec: cfg.target.clone(),
            cgroup_path: cfg.cgroup.clone(),
            cgroup_root: cfg.cgroup_root.clone(),
            proc_root: cfg.proc_root.clone(),
            own_pid: std::process::id(),
            pid: None,
            last_pid: None,
            instance: 0,
            go_epoch: 0,
            go_counters: (None, None),
            located: None,
        }
    }

    /// A target process is configured (`--pid` or `--process`).
    pub fn wants_process(&self) -> bool {
        self.spec != TargetSpec::Own
    }

    /// The cgroup follows the target's PID (`--cgroup auto` with a target):
    /// a new instance may live in a new cgroup.
    pub fn cgroup_follows_pid(&self) -> bool {
        self.cgroup_path.is_none()
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn go_epoch(&self) -> u64 {
        self.go_epoch
    }

    /// Finds the target's PID for this poll (`--process` is resolved again
    /// once a read found the process gone) and says whether it changed.
    pub fn resolve(&mut self, health: &mut Health, now: Instant) -> PidChange {
        let pid = match &self.spec {
            TargetSpec::Own => None,
            TargetSpec::Pid(p) => Some(*p),
            // Kept until a read finds the process gone (see `gone`).
            TargetSpec::Process(_) if self.pid.is_some() => self.pid,
            TargetSpec::Process(name) => match find_process(&self.proc_root, name, Some(self.own_pid)) {
                Ok(p) => Some(p),
                Err(e) => {
                    health.fail(Source::Proc, e.to_string(), now);
                    None
                }
            },
        };
        let changed = pid != self.pid;
        if changed {
            if let Some(new) = pid {
                // The old PID may have been gone for some polls: compare with
                // the last one seen.
                if self.last_pid != Some(new) {
                    if let Some(old) = self.last_pid {
                        tracing::info!(old_pid = old, new_pid = new, "target restarted with a new PID");
                        self.go_epoch += 1;
                    }
                    self.instance += 1;
                    self.go_counters = (None, None);
                }
            }
            self.last_pid = pid.or(self.last_pid);
            self.pid = pid;
        }
        PidChange { pid, changed }
    }

    /// A read found the target process gone: `--process` looks for it
    /// again at the next poll.
    pub fn gone(&mut self) {
        if matches!(self.spec, TargetSpec::Process(_)) {
            self.pid = None;
        }
    }

    /// Whether there is a cgroup to locate this poll: the target's (when
    /// its PID is known), the configured one, or our own.
    pub fn can_locate(&self) -> bool {
        self.pid.is_some() || !self.wants_process() || self.cgroup_path.is_some()
    }

    /// Finds the cgroup to read. Returns it and whether it is another
    /// directory than the one read before (the kernel counters start afresh).
    pub fn locate(&mut self) -> Result<(Located, bool), CgroupError> {
        let loc = match &self.cgroup_path {
            Some(p) => locate_explicit(&self.cgroup_root, p)?,
            None => {
                let pid_dir = match self.pid {
                    Some(p) => self.proc_root.join(p.to_string()),
                    None => self.proc_root.join("self"),
                };
                locate_auto(&self.cgroup_root, &self.proc_root, &pid_dir)?
            }
        };
        let moved = match &self.located {
            Some(old) if old.dir == loc.dir => false,
            Some(_) => true,
            None => false,
        };
        if self.located.as_ref().map(|l| &l.dir) != Some(&loc.dir) {
            tracing::info!(cgroup = %loc.dir.display(), version = ?loc.version, "watching cgroup: {}", loc.how);
        }
        self.located = Some(loc.clone());
        Ok((loc, moved))
    }

    /// Takes the counters of one Go scrape; returns true when they went back
    /// (the Go runtime restarted behind the same URL and PID).
    pub fn observe_go(&mut self, s: &GoSample) -> bool {
        let went_back = |now: Option<u64>, before: Option<u64>| matches!((now, before), (Some(n), Some(b)) if n < b);
        let (num_gc, total_alloc) = self.go_counters;
        let restarted = went_back(s.num_gc, num_gc) || went_back(s.total_alloc, total_alloc);
        if restarted {
            self.go_epoch += 1;
        }
        self.go_counters = (s.num_gc, s.total_alloc);
        restarted
    }

    pub fn snapshot(&self) -> Target {
        Target {
            pid: self.pid,
            process: match &self.spec {
                TargetSpec::Process(n) => Some(n.clone()),
                _ => None,
            },
            instance: self.instance,
            go_epoch: self.go_epoch,
            cgroup: self.located.as_ref().map(|l| l.dir.clone()),
            cgroup_version: self.located.as_ref().map(|l| l.version),
            cgroup_found: self.located.as_ref().map(|l| l.how.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tracker(spec: &[(&str, &str)]) -> TargetTracker {
        let map: BTreeMap<String, String> = spec.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TargetTracker::new(&Config::from_map(&map).unwrap())
    }

    fn go(num_gc: u64, total: u64) -> GoSample {
        GoSample {
            num_gc: Some(num_gc),
            total_alloc: Some(total),
            ..GoSample::default()
        }
    }

    #[test]
    fn a_new_pid_is_a_new_instance_and_a_new_go_runtime() {
        let mut t = tracker(&[("pid", "7")]);
        let mut h = Health::new(|_| true);
        let now = Instant::now();
        let c = t.resolve(&mut h, now);
        assert_eq!(c, PidChange { pid: Some(7), changed: true });
        assert_eq!((t.snapshot().instance, t.go_epoch()), (1, 0), "first sight is no restart");
        assert!(!t.resolve(&mut h, now).changed);
        // The same PID is found again: not a restart. A new one is.
        t.spec = TargetSpec::Pid(9);
        assert!(t.resolve(&mut h, now).changed);
        assert_eq!((t.snapshot().instance, t.go_epoch()), (2, 1));
    }

    #[test]
    fn go_counters_going_back_is_a_new_runtime_but_not_compared_across_instances() {
        let mut t = tracker(&[("pid", "7")]);
        let mut h = Health::new(|_| true);
        t.resolve(&mut h, Instant::now());
        assert!(!t.observe_go(&go(5, 1000)));
        assert!(!t.observe_go(&go(6, 2000)));
        assert!(t.observe_go(&go(1, 3000)), "NumGC went back");
        assert!(t.observe_go(&go(2, 10)), "TotalAlloc went back");
        assert!(!t.observe_go(&go(3, 30)));
        assert_eq!(t.go_epoch(), 2);
        // A restart with a new PID: the new runtime's small counters are not
        // compared with the old one's (that restart is counted once).
        t.spec = TargetSpec::Pid(8);
        t.resolve(&mut h, Instant::now());
        assert_eq!(t.go_epoch(), 3);
        assert!(!t.observe_go(&go(0, 5)));
        assert_eq!(t.go_epoch(), 3);
    }
}
