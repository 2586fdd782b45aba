//! The daemon's targets: every target's [`Slot`] in a map keyed by its
//! [`TargetKey`], and the one metrics registry that renders them all. The
//! sidecar has one slot; node mode's discovery loop adds and removes them.
//! The HTTP server reads it; the pollers write only their own slot.

use super::slot::{Identity, Presence, Published, Slot};
use crate::analysis::diagnosis::Cause;
use crate::analysis::risk::Risk;
use crate::analysis::window::SharedWindow;
use crate::key::TargetKey;
use crate::metrics::Metrics;
use axum::body::Bytes;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `/healthz` fails when no poll has finished for this many intervals ...
pub const STALE_INTERVALS: u32 = 3;
/// ... and at least this long.
pub const STALE_MIN: Duration = Duration::from_secs(3);

/// How long without a finished poll makes the daemon unhealthy:
/// max([`STALE_INTERVALS`] × `interval`, [`STALE_MIN`]).
pub fn stale_after(interval: Duration) -> Duration {
    interval.saturating_mul(STALE_INTERVALS).max(STALE_MIN)
}

/// Which daemon this is: one target, or every container of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sidecar,
    Node,
}

/// The Prometheus text, re-encoded when a slot published since.
struct MetricsCache {
    metrics: Metrics,
    /// The generation of each target's status the registry holds.
    applied: HashMap<TargetKey, u64>,
    text: Option<(u64, Bytes)>,
    /// The same text gzipped, made on the first request that accepts it.
    gzip: Option<(u64, Bytes)>,
}

/// The daemon's shared state: every target's [`Slot`], keyed, and the one
/// registry that renders them all. The sidecar has one slot.
pub struct Shared {
    mode: Mode,
    targets: RwLock<BTreeMap<TargetKey, Arc<Slot>>>,
    metrics: Mutex<MetricsCache>,
    /// Counts every publish of every slot and every change of the map.
    changes: Arc<AtomicU64>,
    pub(crate) started: Instant,
    /// Node mode: when the discovery loop last finished a round.
    last_round: Mutex<Option<Instant>>,
    stale_after: Duration,
    /// Node mode: where the targets' names come from (`/api/v1/targets`).
    names: Mutex<serde_json::Value>,
}

impl Shared {
    /// The sidecar's state: one target, keyed by the default key until
    /// [`Shared::with_key`].
    pub fn new(metrics: Metrics) -> Shared {
        let shared = Shared {
            mode: Mode::Sidecar,
            ..Shared::node(metrics)
        };
        shared.insert(shared.new_slot(TargetKey::default(), Identity::default(), None));
        shared
    }

    /// Node mode's state: no target until discovery adds them.
    pub fn node(metrics: Metrics) -> Shared {
        Shared {
            mode: Mode::Node,
            targets: RwLock::new(BTreeMap::new()),
            metrics: Mutex::new(MetricsCache {
                metrics,
                applied: HashMap::new(),
                text: None,
                gzip: None,
            }),
            changes: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            last_round: Mutex::new(None),
            stale_after: STALE_MIN,
            names: Mutex::new(serde_json::Value::Null),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A slot for a target of this daemon (not yet listed: [`Shared::insert`]).
    pub fn new_slot(&self, key: TargetKey, identity: Identity, history: Option<SharedWindow>) -> Slot {
        Slot::new(key, identity, history, self.changes.clone())
    }

    /// Serves `history` at `/api/v1/history` (the sidecar).
    pub fn with_history(self, history: SharedWindow) -> Shared {
        let old = self.slot();
        let slot = Slot::new(
            old.key.clone(),
            old.identity.clone(),
            Some(history),
            self.changes.clone(),
        );
        self.replace_sole(slot)
    }

    fn replace_sole(self, slot: Slot) -> Shared {
        self.targets.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.insert(slot);
        self
    }

    /// `/healthz` fails after [`stale_after`]`(interval)` without a poll.
    pub fn with_interval(mut self, interval: Duration) -> Shared {
        self.stale_after = stale_after(interval);
        self
    }

    /// Lists a target (the sidecar's one target: replaces it). In node
    /// mode a new instance of a key already counted (its container
    /// restarted) first has its predecessor's last status counted, then
    /// adds its own counts to the key's kill and exit counters.
    pub fn insert(&self, slot: Slot) -> Arc<Slot> {
        let slot = Arc::new(slot);
        let mut c = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if self.mode == Mode::Sidecar {
            targets.clear();
        }
        let old = targets.insert(slot.key.clone(), slot.clone());
        drop(targets);
        if self.mode == Mode::Node {
            if let Some(old) = old {
                let seen = old.generation();
                if c.applied.get(&old.key) != Some(&seen) {
                    c.metrics.update(&old.key, &old.latest().status);
                }
            }
            c.metrics.carry_over(&slot.key);
            c.applied.remove(&slot.key);
            c.text = None;
        }
        drop(c);
        self.changes.fetch_add(1, Ordering::Release);
        slot
    }

    /// Forgets a target and its series; `keep_kills` keeps its OOM-kill
    /// counters (its pod is still there).
    pub fn remove(&self, key: &TargetKey, keep_kills: bool) {
        self.targets.write().unwrap_or_else(|e| e.into_inner()).remove(key);
        let mut c = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        c.metrics.remove(key, keep_kills);
        c.applied.remove(key);
        c.text = None;
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Every target's slot, in key order.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, key: &TargetKey) -> Option<Arc<Slot>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// The sidecar's one target (node mode: the first, or an empty one).
    pub fn slot(&self) -> Arc<Slot> {
        self.slots()
            .into_iter()
            .next()
            .unwrap_or_else(|| Arc::new(self.new_slot(TargetKey::default(), Identity::default(), None)))
    }

    /// Publishes the status of the sidecar's poll that just finished.
    pub fn publish(&self, p: Published) {
        self.slot().publish(p);
    }

    /// The sidecar's latest snapshot.
    pub fn latest(&self) -> Arc<Published> {
        self.slot().latest()
    }

    /// Changes the node-level series (targets by state, discovery), then
    /// has the text re-encoded.
    pub fn with_metrics(&self, f: impl FnOnce(&Metrics)) {
        let c = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        f(&c.metrics);
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Node mode: says where the targets' names come from.
    pub fn set_names(&self, names: serde_json::Value) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }

    /// Node mode: the discovery loop finished a round.
    pub fn round_finished(&self) {
        *self.last_round.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The Prometheus text of every target's latest snapshot, encoded again
    /// only when something was published since.
    pub fn metrics_text(&self) -> Bytes {
        let mut c = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        self.metrics_text_locked(&mut c).1
    }

    /// The Prometheus text gzipped (for a scraper that sends
    /// `Accept-Encoding: gzip`, as Prometheus does), compressed at most once
    /// per change: a node's text is about 3 KiB per target.
    pub fn metrics_gzip(&self) -> Bytes {
        let mut c = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, text) = self.metrics_text_locked(&mut c);
        if let Some((g, gz)) = &c.gzip {
            if *g == generation {
                return gz.clone();
            }
        }
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 8), flate2::Compression::fast());
        enc.write_all(&text).expect("gzip into memory");
        let gz: Bytes = enc.finish().expect("gzip into memory").into();
        c.gzip = Some((generation, gz.clone()));
        gz
    }

    fn metrics_text_locked(&self, c: &mut MetricsCache) -> (u64, Bytes) {
        let generation = self.changes.load(Ordering::Acquire);
        if let Some((g, text)) = &c.text {
            if *g == generation {
                return (generation, text.clone());
            }
        }
        for slot in self.slots() {
            let seen = slot.generation();
            if c.applied.get(&slot.key) != Some(&seen) {
                c.metrics.update(&slot.key, &slot.latest().status);
                c.applied.insert(slot.key.clone(), seen);
            }
        }
        let text: Bytes = c.metrics.encode().into();
        c.text = Some((generation, text.clone()));
        (generation, text)
    }

    /// The JSON of the sidecar's latest snapshot.
    pub fn status_json(&self) -> Bytes {
        self.slot().status_json()
    }

    /// The JSON of the sidecar's history.
    pub fn history_json(&self) -> Option<Bytes> {
        self.slot().history_json()
    }

    /// When the poller (node mode: the discovery loop) last finished.
    pub fn last_beat(&self) -> Option<Instant> {
        match self.mode {
            Mode::Sidecar => self.slot().last_poll(),
            Mode::Node => *self.last_round.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// `Err(why)` when no poll (node mode: no discovery round) has finished
    /// for too long (at `now`). In node mode one stuck target does not make
    /// the daemon unhealthy: it is listed as stalled.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        let last = self.last_beat();
        let age = now.saturating_duration_since(last.unwrap_or(self.started));
        if age <= self.stale_after {
            return Ok(());
        }
        let (who, last_one, none) = match self.mode {
            Mode::Sidecar => ("the poller", "the last poll", "no poll has"),
            Mode::Node => ("the discovery loop", "its last round", "no round has"),
        };
        Err(match last {
            Some(_) => format!(
                "{who} is stalled: {last_one} finished {:.1} s ago (allowed: {:.1} s)",
                age.as_secs_f64(),
                self.stale_after.as_secs_f64()
            ),
            None => format!(
                "{who} is stalled: {none} finished in the {:.1} s since start (allowed: {:.1} s)",
                age.as_secs_f64(),
                self.stale_after.as_secs_f64()
            ),
        })
    }

    /// Every target, most at risk first: `GET /api/v1/targets`.
    pub fn targets_json(&self, now: Instant) -> Bytes {
        let mut rows: Vec<TargetRow> = self
            .slots()
            .iter()
            .map(|s| TargetRow::of(s, s.stalled(now, self.stale_after)))
            .collect();
        rows.sort_by(TargetRow::order);
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        serde_json::to_vec_pretty(&serde_json::json!({ "names": names, "targets": rows }))
            .expect("targets serialize")
            .into()
    }
}

/// One row of `GET /api/v1/targets`.
#[derive(Debug, Serialize)]
pub struct TargetRow {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: String,
    pub container_id: String,
    pub cgroup: String,
    /// The Go version of the watched process; `null`: not a Go program.
    pub go: Option<String>,
    /// `cri` (names from the container runtime) or `cgroup` (the pod UID
    /// and short container ID).
    pub names: &'static str,
    /// The runtime's restart attempt of the container.
    pub restart_attempt: Option<u32>,
    /// The Go endpoint scraped (from the pod's `headroom.dev/go-url`
    /// annotation); `go_url_hint` says why none is and how to add one.
    pub go_url: Option<String>,
    pub go_url_hint: Option<String>,
    /// How the runtime says the container ended (exit code, reason), once
    /// it is gone.
    pub runtime_exit: Option<crate::source::cri::RuntimeExit>,
    /// `watched`, `stalled` (a read of it is stuck) or `gone`.
    pub state: &'static str,
    pub risk: Option<Risk>,
    pub time_to_oom_seconds: Option<f64>,
    pub causes: Vec<&'static str>,
    pub usage_bytes: Option<u64>,
    /// `null` when unknown; unlimited is the string "max".
    pub limit_bytes: Option<serde_json::Value>,
    /// Where this target's status and history are served.
    pub status_url: String,
    pub history_url: String,
}

impl TargetRow {
    fn of(slot: &Slot, stalled: bool) -> TargetRow {
        let p = slot.latest();
        let st = &p.status;
        let a = st.analysis.as_ref();
        let path = slot.key.path();
        TargetRow {
            namespace: slot.key.namespace.clone(),
            pod: slot.key.pod.clone(),
            container: slot.key.container.clone(),
            pod_uid: slot.identity.pod_uid.clone(),
            container_id: slot.identity.container_id.clone(),
            cgroup: if slot.identity.cgroup.is_empty() {
                st.target.cgroup.clone().unwrap_or_default()
            } else {
                slot.identity.cgroup.clone()
            },
            go: slot.identity.go.clone(),
            names: if slot.identity.names.is_empty() {
                "cgroup"
            } else {
                slot.identity.names
            },
            restart_attempt: slot.identity.attempt,
            go_url: slot.identity.go_url.clone(),
            go_url_hint: slot.identity.go_url_hint.clone(),
            runtime_exit: slot.runtime_exit(),
            state: match (slot.presence(), stalled) {
                (Presence::Gone(_), _) => "gone",
                (Presence::Watched, true) => "stalled",
                (Presence::Watched, false) => "watched",
            },
            risk: a.map(|a| a.risk),
            time_to_oom_seconds: a.and_then(|a| a.time_to_oom_s),
            causes: a
                .map(|a| Cause::ALL.iter().filter(|c| a.has(**c)).map(|c| c.as_str()).collect())
                .unwrap_or_default(),
            usage_bytes: st.memory.usage,
            limit_bytes: st.memory.limit.map(|l| match l.bytes() {
                Some(b) => serde_json::Value::from(b),
                None => serde_json::Value::from("max"),
            }),
            status_url: format!("/api/v1/targets/{path}/status"),
            history_url: format!("/api/v1/targets/{path}/history"),
        }
    }

    /// Highest risk first, then the soonest OOM, then the key.
    fn order(a: &TargetRow, b: &TargetRow) -> std::cmp::Ordering {
        let tto = |r: &TargetRow| r.time_to_oom_seconds.unwrap_or(f64::INFINITY);
        b.risk
            .cmp(&a.risk)
            .then(tto(a).total_cmp(&tto(b)))
            .then_with(|| (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::status::Status;

    fn kills(shared: &Shared) -> String {
        let text = String::from_utf8(shared.metrics_text().to_vec()).unwrap();
        text.lines()
            .filter(|l| l.starts_with("headroom_oom_kills_total{") || l.starts_with("headroom_target_exits_total{"))
            .filter(|l| !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn publish(slot: &Slot, oom_kills: u64) {
        let mut s = Status::default();
        s.memory.oom_kills_total = oom_kills;
        if oom_kills > 0 {
            s.memory
                .exits_total
                .insert(crate::sample::ExitReason::OomKill, oom_kills);
        }
        slot.publish(Published::new(s));
    }

    #[test]
    fn a_restarted_container_counts_on_from_its_old_instance_and_each_kill_once() {
        let shared = Shared::node(Metrics::for_node());
        let key = TargetKey::new("shop", "cart", "app");
        let first = shared.insert(shared.new_slot(key.clone(), Identity::default(), None));
        publish(&first, 0);
        assert_eq!(kills(&shared), "");
        // Killed: its last poll read the kill; no scrape came before the
        // kubelet's restart, and the new instance's first status has none.
        publish(&first, 1);
        let second = shared.insert(shared.new_slot(key.clone(), Identity::default(), None));
        publish(&second, 0);
        let want1 = "headroom_oom_kills_total{container=\"app\",namespace=\"shop\",pod=\"cart\"} 1";
        assert!(kills(&shared).contains(want1), "{}", kills(&shared));
        // The old instance publishing again changes nothing.
        publish(&first, 1);
        assert!(kills(&shared).contains(want1), "{}", kills(&shared));
        // Killed again: 2, and the exits by reason with it.
        publish(&second, 1);
        let text = kills(&shared);
        assert!(
            text.contains("headroom_oom_kills_total{container=\"app\",namespace=\"shop\",pod=\"cart\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "headroom_target_exits_total{container=\"app\",namespace=\"shop\",pod=\"cart\",reason=\"oom_kill\"} 2"
            ),
            "{text}"
        );
        // Gone, its kills kept while the pod is there; back again later.
        shared.remove(&key, true);
        let third = shared.insert(shared.new_slot(key.clone(), Identity::default(), None));
        publish(&third, 0);
        assert!(kills(&shared).contains("} 2"), "{}", kills(&shared));
        publish(&third, 1);
        assert!(
            kills(&shared).contains("headroom_oom_kills_total{container=\"app\",namespace=\"shop\",pod=\"cart\"} 3")
        );
        // The pod gone: the key forgotten, a new pod of the same name starts at 0.
        shared.remove(&key, false);
        let fresh = shared.insert(shared.new_slot(key, Identity::default(), None));
        publish(&fresh, 1);
        assert!(
            kills(&shared).contains("headroom_oom_kills_total{container=\"app\",namespace=\"shop\",pod=\"cart\"} 1")
        );
    }
}
