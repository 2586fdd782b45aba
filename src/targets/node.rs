//! Node mode's discovery loop: every `--interval` it walks the memory
//! cgroup tree for the kubelet's container cgroups, starts a unit for each
//! new container running a Go program (any container with
//! `--all-containers`), retires those that are gone, and keeps the node's
//! own series (targets by state, discovery errors and cost).
//!
//! A container is keyed by its namespace, pod and container name, from the
//! container runtime ([`super::names`]); without a runtime's answer, by its
//! pod's UID and its ID's first 12 hex digits. A container the kubelet
//! restarts (a new ID and cgroup, the same names) is a new instance of the
//! same key: its kill and exit counters go on from the old instance's. A
//! gone container's series stay for one window; its OOM-kill counters stay
//! while its pod's cgroup is there. The Go endpoint of a container is its
//! pod's `headroom.dev/go-url.<container>` or `headroom.dev/go-url`
//! annotation; a loopback URL is dialled inside the pod's network
//! namespace (`--enter-netns`).

use super::names::Names;
use super::registry::Shared;
use super::runner::{self, Common, TargetRun};
use super::slot::Identity;
use crate::config::{NodeConfig, Target, TargetConfig};
use crate::key::TargetKey;
use crate::monitor::Monitor;
use crate::source::cri::Named;
use crate::source::go_binary::go_build_of_pid;
use crate::source::kubepods::{discover, DiscoveredContainer};
use crate::source::proc::{comm, read_procs};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

/// Go scrapes running at once, at most, across every target of the node.
pub const MAX_CONCURRENT_SCRAPES: usize = 16;

/// A container's processes looked at, at most (the first in cgroup.procs).
const MAX_PROCS_LOOKED_AT: usize = 64;

/// What a container holds, as far as watching it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A Go program (PID, Go version).
    Go(u32, String),
    /// Processes, none of them Go.
    NotGo,
    /// The pod's sandbox (its `pause` process).
    Sandbox,
    /// No process (not started yet, or every process exited).
    Empty,
}

/// A watched container.
struct Running {
    run: TargetRun,
    pod_uid: String,
    container_id: String,
}

/// How long a restarted container's old instance may take over its last
/// poll before the new one starts anyway.
const LAST_POLL_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A container gone from the tree, its series kept a while.
struct Gone {
    since: Instant,
    pod_uid: String,
    container_id: String,
}

pub struct NodeLoop {
    cfg: NodeConfig,
    shared: Arc<Shared>,
    common: Common,
    running: BTreeMap<TargetKey, Running>,
    gone: BTreeMap<TargetKey, Gone>,
    /// Targets removed whose OOM-kill counters stay while their pod is.
    kept_kills: BTreeMap<TargetKey, String>,
    /// The Go version of each executable looked at, by (PID, start time,
    /// executable's device and inode).
    seen_exes: HashMap<(u32, u64, (u64, u64)), Option<String>>,
    logged: HashSet<String>,
    /// Discovery rounds done: containers found after the first appeared
    /// after headroom started, and their kills all count.
    rounds: u64,
    names: Names,
}

impl NodeLoop {
    pub fn new(cfg: NodeConfig, shared: Arc<Shared>, common: Common) -> NodeLoop {
        let names = Names::new(&cfg.cri_socket, common.runtime.clone());
        shared.set_names(names.json());
        NodeLoop {
            names,
            cfg,
            shared,
            common,
            running: BTreeMap::new(),
            gone: BTreeMap::new(),
            kept_kills: BTreeMap::new(),
            seen_exes: HashMap::new(),
            logged: HashSet::new(),
            rounds: 0,
        }
    }

    /// Runs rounds every `--interval` until `stop` says so (or is dropped).
    pub fn run(mut self, stop: Receiver<()>) {
        let interval = self.cfg.template.interval;
        let mut next = Instant::now();
        loop {
            self.round(Instant::now());
            self.shared.round_finished();
            next += interval;
            let now = Instant::now();
            if next < now {
                next = now + interval;
            }
            match stop.recv_timeout(next.saturating_duration_since(now)) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for r in self.running.values() {
            r.run.stop();
        }
    }

    /// Logs `msg` once for `what`.
    fn log_once(&mut self, what: String, msg: impl FnOnce() -> String) {
        if self.logged.len() < 10_000 && self.logged.insert(what) {
            tracing::warn!("{}", msg());
        }
    }

    /// One round: discover, start the new, retire the gone, count.
    pub fn round(&mut self, now: Instant) {
        let started = Instant::now();
        let root = self.cfg.template.cgroup_root.clone();
        let found = discover(&root);
        for e in &found.errors {
            self.log_once(format!("discovery {e}"), || format!("discovery: {e}"));
        }
        self.reap_panicked();
        let mut states: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut present = BTreeSet::new();
        let ids: Vec<&str> = found.containers.iter().map(|c| c.path.container_id.as_str()).collect();
        self.names.refresh(&ids);
        self.shared.set_names(self.names.json());
        // One instance a key: where two cgroups carry the same names (a
        // restart whose old cgroup is not removed yet), the later attempt.
        let mut chosen: BTreeMap<TargetKey, (&DiscoveredContainer, Option<Named>)> = BTreeMap::new();
        for c in &found.containers {
            if self.names.is_sandbox(&c.path.container_id) {
                *states.entry("skipped_sandbox").or_default() += 1;
                continue;
            }
            let named = self.names.get(&c.path.container_id).cloned();
            let key = match &named {
                Some(n) => TargetKey::new(n.namespace.clone(), n.pod.clone(), n.container.clone()),
                None => key_of(c),
            };
            let attempt = |n: &Option<Named>| n.as_ref().map_or(0, |n| n.attempt);
            match chosen.get(&key) {
                Some((_, other)) if attempt(other) >= attempt(&named) => {}
                _ => {
                    chosen.insert(key, (c, named));
                }
            }
        }
        for (key, (c, named)) in chosen {
            present.insert(key.clone());
            if let Some(r) = self.running.get(&key) {
                if r.container_id == c.path.container_id {
                    continue;
                }
                // The same names, another container: the kubelet restarted it.
                let old = self.running.remove(&key).expect("listed");
                self.end_instance(&key, old, named.as_ref().map(|n| n.attempt));
            }
            let verdict = self.classify(&c.dir);
            let state = match (&verdict, self.cfg.all_containers) {
                (Verdict::Go(..), _) => None,
                (Verdict::NotGo, true) => None,
                (Verdict::Sandbox, _) => Some("skipped_sandbox"),
                (Verdict::Empty, _) => Some("empty"),
                (Verdict::NotGo, false) => Some("skipped_not_go"),
            };
            if let Some(s) = state {
                *states.entry(s).or_default() += 1;
                continue;
            }
            if self.running.len() >= self.cfg.max_targets {
                *states.entry("over_limit").or_default() += 1;
                let max = self.cfg.max_targets;
                self.log_once("over_limit".into(), || {
                    format!("more containers than --max-targets {max}: the others are not watched (headroom_targets{{state=\"over_limit\"}})")
                });
                continue;
            }
            if let Some(g) = self.gone.remove(&key) {
                self.record_runtime_exit(&key, &g.container_id);
            }
            self.kept_kills.remove(&key);
            if let Err(e) = self.start(key.clone(), c, verdict, named.as_ref()) {
                self.log_once(format!("start {key}"), || format!("cannot watch {key}: {e:#}"));
            }
        }
        // The gone: one last poll, then their series stay one window.
        let vanished: Vec<TargetKey> = self.running.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for key in vanished {
            if let Some(r) = self.running.remove(&key) {
                tracing::info!(target_key = %key, "container gone: its series stay for one window");
                r.run.retire();
                r.run.slot.mark_gone(now);
                self.gone.insert(
                    key,
                    Gone {
                        since: now,
                        pod_uid: r.pod_uid,
                        container_id: r.container_id,
                    },
                );
            }
        }
        let pods: HashSet<&str> = found
            .containers
            .iter()
            .map(|c| c.path.pod_uid.as_str())
            .chain(found.pods.iter().map(String::as_str))
            .collect();
        let window = self.cfg.template.window;
        let expired: Vec<TargetKey> = self
            .gone
            .iter()
            .filter(|(_, g)| now.saturating_duration_since(g.since) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            let g = self.gone.remove(&key).expect("listed");
            self.record_runtime_exit(&key, &g.container_id);
            let killed = self
                .shared
                .get(&key)
                .is_some_and(|s| s.latest().status.memory.oom_kills_total > 0);
            let keep = killed && pods.contains(g.pod_uid.as_str());
            self.shared.remove(&key, keep);
            if keep {
                self.kept_kills.insert(key, g.pod_uid);
            }
        }
        let ended: Vec<TargetKey> = self
            .kept_kills
            .iter()
            .filter(|(_, pod)| !pods.contains(pod.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            self.kept_kills.remove(&key);
            self.shared.remove(&key, false);
        }
        let stale_after = super::registry::stale_after(self.cfg.template.interval);
        for r in self.running.values() {
            let s = if r.run.slot.stalled(now, stale_after) {
                "stalled"
            } else {
                "watched"
            };
            *states.entry(s).or_default() += 1;
        }
        states.insert("gone", self.gone.len() as i64);
        // Forget executables of processes no longer in a container we know.
        if self.seen_exes.len() > 4 * (found.containers.len() + 16) {
            self.seen_exes.clear();
        }
        self.rounds += 1;
        let errors = found.errors.len() as u64;
        let took = started.elapsed().as_secs_f64();
        self.shared.with_metrics(|m| {
            if let Some(n) = m.node() {
                for s in crate::metrics::TARGET_STATES {
                    n.targets
                        .with_label_values(&[s])
                        .set(states.get(s).copied().unwrap_or(0));
                }
                n.discovery_errors.inc_by(errors);
                n.discovery_duration.observe(took);
            }
        });
    }

    /// A unit whose poller panicked is dropped (and logged); the next round
    /// starts it afresh.
    fn reap_panicked(&mut self) {
        let mut dead = Vec::new();
        for (key, r) in self.running.iter_mut() {
            match r.run.end.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                Ok(Err(msg)) => {
                    tracing::error!(target_key = %key, "the target's poller panicked: {msg}; it is started afresh");
                    dead.push(key.clone());
                }
                Ok(Ok(())) | Err(_) => dead.push(key.clone()),
            }
        }
        for key in dead {
            self.running.remove(&key);
            self.shared.remove(&key, false);
        }
    }

    /// A restarted container's old instance: its last poll is taken (so a
    /// kill it saw is counted before the new instance's counts are added),
    /// and the runtime's word on how it ended is kept.
    fn end_instance(&mut self, key: &TargetKey, old: Running, attempt: Option<u32>) {
        tracing::info!(
            target_key = %key,
            attempt = attempt.unwrap_or(0),
            "container restarted: a new instance under the same names"
        );
        old.run.retire();
        let mut end = old.run.end;
        let deadline = Instant::now() + LAST_POLL_WAIT;
        while matches!(end.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)) {
            if Instant::now() >= deadline {
                old.run.slot.mark_gone(Instant::now());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Some(exit) = self.names.exit_of(&old.container_id) {
            self.cross_check(key, &old.run.slot, &exit);
            old.run.slot.set_runtime_exit(exit);
        }
    }

    /// Keeps the runtime's word on how the gone container `id` ended in the
    /// slot of `key` (shown in `/api/v1/targets`).
    fn record_runtime_exit(&mut self, key: &TargetKey, id: &str) {
        let Some(slot) = self.shared.get(key) else {
            return;
        };
        if slot.identity.container_id != id || slot.runtime_exit().is_some() {
            return;
        }
        if let Some(exit) = self.names.exit_of(id) {
            self.cross_check(key, &slot, &exit);
            slot.set_runtime_exit(exit);
        }
    }

    /// The kernel's count is the count; where the runtime's reason says
    /// otherwise, that is logged. (On cgroup v1 containerd marks the idle
    /// siblings of a pod-level OOM kill `OOMKilled` too, though none of
    /// their processes was killed.)
    fn cross_check(&mut self, key: &TargetKey, slot: &super::slot::Slot, exit: &crate::source::cri::RuntimeExit) {
        let kills = slot.latest().status.memory.oom_kills_total;
        let runtime_says = exit.reason == "OOMKilled" && exit.exit_code == 137;
        if runtime_says != (kills > 0) {
            tracing::info!(
                target_key = %key,
                exit_code = exit.exit_code,
                reason = %exit.reason,
                oom_kills_read = kills,
                "the runtime's reason and the kernel's OOM-kill count disagree; the kernel's is counted"
            );
        }
    }

    fn start(
        &mut self,
        key: TargetKey,
        c: &DiscoveredContainer,
        verdict: Verdict,
        named: Option<&Named>,
    ) -> anyhow::Result<()> {
        let (target, go, pid) = match verdict {
            Verdict::Go(pid, version) => (Target::Pid(pid), Some(version), Some(pid)),
            _ => (Target::Own, None, None),
        };
        let endpoint = self.go_endpoint(&key, named, pid);
        tracing::info!(
            target_key = %key,
            cgroup = %c.rel,
            go = go.as_deref().unwrap_or("no"),
            go_url = endpoint.url.as_deref().map(crate::httpc::redact_keep_path).unwrap_or_default(),
            "watching a container"
        );
        let go_url_hint = match (&go, &endpoint.url) {
            (Some(_), None) => Some(endpoint.hint.unwrap_or_else(|| annotation_hint(&key))),
            _ => None,
        };
        let cfg = TargetConfig {
            target,
            container: Some(key.container.clone()),
            cgroup: Some(c.dir.clone()),
            appeared_after_start: self.rounds > 0,
            go_url: endpoint.url.clone(),
            go_netns: endpoint.netns,
            ..self.cfg.template.clone()
        };
        let identity = Identity {
            pod_uid: c.path.pod_uid.clone(),
            container_id: c.path.container_id.clone(),
            cgroup: c.rel.clone(),
            go,
            names: if named.is_some() { "cri" } else { "cgroup" },
            attempt: named.map(|n| n.attempt),
            go_url: endpoint.url.as_deref().map(crate::httpc::redact_keep_path),
            go_url_hint,
        };
        let monitor = Monitor::new(cfg.clone());
        let slot = self
            .shared
            .insert(self.shared.new_slot(key.clone(), identity, Some(monitor.history())));
        let run = runner::start(cfg, monitor, slot, &self.common)?;
        self.running.insert(
            key,
            Running {
                run,
                pod_uid: c.path.pod_uid.clone(),
                container_id: c.path.container_id.clone(),
            },
        );
        Ok(())
    }

    /// The Go endpoint of a container, from its pod's annotation: a
    /// loopback URL is dialled in the pod's network namespace (or, with
    /// `--enter-netns false`, only when the pod shares the node's).
    fn go_endpoint(&mut self, key: &TargetKey, named: Option<&Named>, pid: Option<u32>) -> Endpoint {
        let (Some(url), Some(pid)) = (named.and_then(Named::go_url), pid) else {
            return Endpoint::default();
        };
        let shown = crate::httpc::redact_keep_path(url);
        let bad = match url.parse::<hyper::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => None,
            Ok(_) => Some("not an http:// or https:// URL with a host".to_owned()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = bad {
            let hint = format!("the pod's headroom.dev/go-url annotation {shown:?} is not usable: {why}");
            self.log_once(format!("go-url {key}"), || format!("{key}: {hint}"));
            return Endpoint {
                hint: Some(hint),
                ..Endpoint::default()
            };
        }
        if !crate::httpc::is_loopback_url(url) {
            return Endpoint {
                url: Some(url.to_owned()),
                ..Endpoint::default()
            };
        }
        let netns = self.cfg.template.proc_root.join(pid.to_string()).join("ns/net");
        if self.cfg.enter_netns {
            return Endpoint {
                url: Some(url.to_owned()),
                netns: Some(netns),
                hint: None,
            };
        }
        if crate::httpc::is_own_netns(&netns) {
            return Endpoint {
                url: Some(url.to_owned()),
                ..Endpoint::default()
            };
        }
        let hint = format!(
            "{shown} is a loopback address in the pod's own network namespace, and --enter-netns is false: \
             annotate an address the node can reach, or enable --enter-netns (CAP_SYS_ADMIN)"
        );
        self.log_once(format!("go-url {key}"), || format!("{key}: {hint}"));
        Endpoint {
            hint: Some(hint),
            ..Endpoint::default()
        }
    }

    /// What the container at `dir` runs: the first Go process among its
    /// first [`MAX_PROCS_LOOKED_AT`], else why it is not watched.
    fn classify(&mut self, dir: &Path) -> Verdict {
        let pids = read_procs(&dir.join("cgroup.procs"));
        if pids.is_empty() {
            return Verdict::Empty;
        }
        let proc_root = self.cfg.template.proc_root.clone();
        let mut sandbox = false;
        for &pid in pids.iter().take(MAX_PROCS_LOOKED_AT) {
            // A process is its PID, its start time and its executable: the
            // runtime's init (`runc init`) execs the container's program
            // under the same PID and start time.
            let Some(start) = start_time(&proc_root, pid) else {
                continue;
            };
            let exe = exe_identity(&proc_root, pid).unwrap_or_default();
            let go = match self.seen_exes.get(&(pid, start, exe)) {
                Some(v) => v.clone(),
                None => {
                    let v = match go_build_of_pid(&proc_root, pid) {
                        Ok(b) => b.map(|b| b.version),
                        Err(e) => {
                            let what = format!("exe {e}");
                            self.log_once(what, || format!("cannot tell whether PID {pid} is a Go program: {e}"));
                            None
                        }
                    };
                    self.seen_exes.insert((pid, start, exe), v.clone());
                    v
                }
            };
            if let Some(version) = go {
                return Verdict::Go(pid, version);
            }
            sandbox |= comm(&proc_root, pid).as_deref() == Some("pause");
        }
        if sandbox && pids.len() == 1 {
            Verdict::Sandbox
        } else {
            Verdict::NotGo
        }
    }
}

/// Where a container's Go runtime is scraped.
#[derive(Debug, Default)]
struct Endpoint {
    url: Option<String>,
    /// Dial inside this network namespace.
    netns: Option<std::path::PathBuf>,
    /// Why there is no URL.
    hint: Option<String>,
}

/// How to give a Go container an endpoint.
fn annotation_hint(key: &TargetKey) -> String {
    format!(
        "no Go endpoint: annotate the pod with headroom.dev/go-url.{}: http://127.0.0.1:PORT/debug/vars \
         (expvar; or /metrics, or /debug/pprof/heap?debug=1) for the GC, heap and goroutine figures",
        if key.container.is_empty() {
            "CONTAINER"
        } else {
            &key.container
        }
    )
}

/// The key of a container before names are known: no namespace, the pod's
/// UID, the container ID's first 12 hex digits.
pub fn key_of(c: &DiscoveredContainer) -> TargetKey {
    TargetKey::new("", c.path.pod_uid.clone(), c.path.short_id().to_owned())
}

/// The device and inode of a process's executable (`/proc/PID/exe`
/// followed); `None` when it cannot be read (gone, or no access).
fn exe_identity(proc_root: &Path, pid: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(proc_root.join(pid.to_string()).join("exe")).ok()?;
    Some((m.dev(), m.ino()))
}

/// A process's start time (clock ticks after boot), field 22 of
/// `/proc/PID/stat`: `4242 (my app) S 1 ... 22:starttime ...`.
fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_spaces_and_parens_in_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("7");
        std::fs::create_dir(&p).unwrap();
        let fields: Vec<String> = (3..=30).map(|i| i.to_string()).collect();
        std::fs::write(p.join("stat"), format!("7 (a) (b c) {}\n", fields.join(" "))).unwrap();
        assert_eq!(start_time(dir.path(), 7), Some(22));
        assert_eq!(start_time(dir.path(), 8), None);
        std::fs::write(p.join("stat"), "7 (a) S 1\n").unwrap();
        assert_eq!(start_time(dir.path(), 7), None);
    }
}
