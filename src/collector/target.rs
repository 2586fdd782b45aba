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
use crate::config::{Target as TargetSpec, TargetConfig};
use crate::parse::go_runtime::GoSample;
use crate::sample::{Access, Target};
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
    container: Option<String>,
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
    /// The current instance's start time (/proc/PID/stat), once read.
    start_time: Option<u64>,
    located: Option<Located>,
    /// The target's cgroup directory's identity (device, inode): the same
    /// cgroup seen through another path (a new PID's /proc/PID/root) is
    /// not another cgroup.
    located_id: Option<(u64, u64)>,
    access: Access,
}

impl TargetTracker {
    pub fn new(cfg: &TargetConfig) -> TargetTracker {
        TargetTracker {
            spec: cfg.target.clone(),
            container: cfg.container.clone(),
            cgroup_path: cfg.cgroup.clone(),
            cgroup_root: cfg.cgroup_root.clone(),
            proc_root: cfg.proc_root.clone(),
            own_pid: std::process::id(),
            pid: None,
            last_pid: None,
            instance: 0,
            go_epoch: 0,
            go_counters: (None, None),
            start_time: None,
            located: None,
            located_id: None,
            access: Access::Full,
        }
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// The target's cgroup is closed to us (no ptrace access): say so once.
    pub fn set_unprivileged(&mut self) {
        if self.access != Access::Unprivileged {
            tracing::warn!(
                "no ptrace access to the target: watching it unprivileged, from /proc/PID/status (VmRSS), \
                 the Go endpoint and --memory-limit; the limit basis is rss"
            );
            self.access = Access::Unprivileged;
        }
    }

    /// Takes the start time of the process just read. A different one
    /// under the same PID is another process (the PID was reused): a new
    /// instance. Returns true then.
    pub fn observe_start_time(&mut self, start: u64) -> bool {
        match self.start_time.replace(start) {
            Some(old) if old != start => {
                tracing::info!(
                    pid = self.pid,
                    "the target's PID now belongs to another process (start time {old} → {start}): a new target"
                );
                self.instance += 1;
                self.go_epoch += 1;
                self.go_counters = (None, None);
                true
            }
            _ => false,
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
                    self.start_time = None;
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
        let id = dir_id(&loc.dir);
        let moved = match (&self.located, self.located_id, id) {
            (None, _, _) => false,
            (Some(_), Some(old), Some(new)) => old != new,
            (Some(old), _, _) => old.dir != loc.dir,
        };
        self.located_id = id;
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
            container: self.container.clone(),
            instance: self.instance,
            go_epoch: self.go_epoch,
            cgroup: self.located.as_ref().map(|l| l.dir.clone()),
            cgroup_version: self.located.as_ref().map(|l| l.version),
            cgroup_found: self.located.as_ref().map(|l| l.how.clone()),
            cgroup_found_via: self.located.as_ref().map(|l| l.via.as_str()),
            access: self.access,
        }
    }
}

fn dir_id(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tracker(spec: &[(&str, &str)]) -> TargetTracker {
        let map: BTreeMap<String, String> = spec.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TargetTracker::new(&crate::config::Config::from_map(&map).unwrap().target_config())
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
        assert_eq!(
            c,
            PidChange {
                pid: Some(7),
                changed: true
            }
        );
        assert_eq!(
            (t.snapshot().instance, t.go_epoch()),
            (1, 0),
            "first sight is no restart"
        );
        assert!(!t.resolve(&mut h, now).changed);
        // The same PID is found again: not a restart. A new one is.
        t.spec = TargetSpec::Pid(9);
        assert!(t.resolve(&mut h, now).changed);
        assert_eq!((t.snapshot().instance, t.go_epoch()), (2, 1));
    }

    #[test]
    fn the_same_cgroup_through_another_path_is_not_a_move() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("cg");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("memory.current"), "1\n").unwrap();
        let other = t.path().join("cg2");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("memory.current"), "1\n").unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("via-another-root")).unwrap();
        let root = t.path().display().to_string();
        let mut tr = tracker(&[("cgroup", "cg"), ("cgroup-root", &root)]);
        assert!(!tr.locate().unwrap().1, "first sight");
        tr.cgroup_path = Some("via-another-root".into());
        assert!(!tr.locate().unwrap().1, "the same directory through a symlink");
        tr.cgroup_path = Some("cg2".into());
        assert!(tr.locate().unwrap().1, "another cgroup");
    }

    #[test]
    fn a_reused_pid_is_a_new_instance() {
        let mut t = tracker(&[("pid", "7")]);
        let mut h = Health::new(|_| true);
        t.resolve(&mut h, Instant::now());
        assert!(!t.observe_start_time(100));
        assert!(!t.observe_start_time(100));
        assert!(t.observe_start_time(250), "another process under PID 7");
        assert_eq!((t.instance(), t.go_epoch()), (2, 1));
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
