//! What one target publishes: the status of its last poll (with its JSON
//! encodings built on first request), its analyzer's history, when its last
//! poll finished, and whether it is still watched. The HTTP server and the
//! metrics read slots; only the target's poller writes its own.

use crate::analysis::window::SharedWindow;
use crate::key::TargetKey;
use crate::status::Status;
use axum::body::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// What one poll publishes. Its encodings are built on the first request
/// that needs them and then served as they are until the next poll.
#[derive(Debug, Default)]
pub struct Published {
    pub status: Status,
    status_json: OnceLock<Bytes>,
    history_json: OnceLock<Option<Bytes>>,
}

impl Published {
    pub fn new(status: Status) -> Published {
        Published {
            status,
            ..Published::default()
        }
    }
}

/// Where a target was found (node mode), for `/api/v1/targets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The pod's UID, from its cgroup's path.
    pub pod_uid: String,
    /// The container's full ID, from its cgroup's path.
    pub container_id: String,
    /// The container's memory cgroup, within the hierarchy.
    pub cgroup: String,
    /// The Go version that built the watched process, from its ELF build
    /// info; `None` when it is no Go program (`--all-containers`).
    pub go: Option<String>,
    /// Where the names came from: `cri` (the runtime's), `cgroup` (the pod
    /// UID and short container ID of the cgroup's path).
    pub names: &'static str,
    /// The runtime's restart attempt of the container (0 the first run).
    pub attempt: Option<u32>,
    /// The Go endpoint scraped (secrets redacted) and where it was given.
    pub go_url: Option<String>,
    /// Why no Go endpoint is scraped, and how to give one.
    pub go_url_hint: Option<String>,
}

/// Whether the target is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Watched,
    /// Its container was gone from the cgroup tree at this time; its series
    /// stay for one window, then leave.
    Gone(Instant),
}

/// One target's published state.
#[derive(Debug)]
pub struct Slot {
    pub key: TargetKey,
    pub identity: Identity,
    latest: RwLock<Arc<Published>>,
    history: Option<SharedWindow>,
    last_poll: Mutex<Option<Instant>>,
    /// When the target began to be watched: a poll stuck before the first
    /// one finished is measured from here.
    created: Instant,
    presence: Mutex<Presence>,
    /// How the runtime says the container ended, once it is gone.
    runtime_exit: Mutex<Option<crate::source::cri::RuntimeExit>>,
    /// Bumped at each publish, for the metrics to tell what changed.
    generation: AtomicU64,
    /// The daemon's count of publishes, shared by every slot.
    changes: Arc<AtomicU64>,
}

impl Slot {
    pub fn new(key: TargetKey, identity: Identity, history: Option<SharedWindow>, changes: Arc<AtomicU64>) -> Slot {
        Slot {
            key,
            identity,
            latest: RwLock::new(Arc::new(Published::default())),
            history,
            last_poll: Mutex::new(None),
            created: Instant::now(),
            presence: Mutex::new(Presence::Watched),
            runtime_exit: Mutex::new(None),
            generation: AtomicU64::new(0),
            changes,
        }
    }

    /// Publishes the status of a poll that just finished.
    pub fn publish(&self, p: Published) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.generation.fetch_add(1, Ordering::Release);
        self.changes.fetch_add(1, Ordering::Release);
    }

    pub fn latest(&self) -> Arc<Published> {
        self.latest.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Monotonic time the last published poll finished.
    pub fn last_poll(&self) -> Option<Instant> {
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the target is watched and its last poll (or, before the
    /// first, the time it began to be watched) is older than `stale_after`:
    /// a read of it is stuck.
    pub fn stalled(&self, now: Instant, stale_after: Duration) -> bool {
        self.presence() == Presence::Watched
            && now.saturating_duration_since(self.last_poll().unwrap_or(self.created)) > stale_after
    }

    pub fn presence(&self) -> Presence {
        *self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container is gone (at `now`): its series stay one window.
    pub fn mark_gone(&self, now: Instant) {
        let mut p = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        if *p == Presence::Watched {
            *p = Presence::Gone(now);
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    /// Records how the runtime says the container ended.
    pub fn set_runtime_exit(&self, exit: crate::source::cri::RuntimeExit) {
        *self.runtime_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit);
        self.changes.fetch_add(1, Ordering::Release);
    }

    pub fn runtime_exit(&self) -> Option<crate::source::cri::RuntimeExit> {
        self.runtime_exit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The JSON of the latest status.
    pub fn status_json(&self) -> Bytes {
        let p = self.latest();
        p.status_json
            .get_or_init(|| serde_json::to_vec_pretty(&p.status).expect("status serializes").into())
            .clone()
    }

    /// The JSON of the analyzer's history (docs/api.md), built at most once
    /// per poll; `None` before the first poll or without a history.
    pub fn history_json(&self) -> Option<Bytes> {
        let h = self.history.as_ref()?;
        let p = self.latest();
        p.history_json
            .get_or_init(|| {
                let w = h.lock();
                let view = w.view()?;
                Some(serde_json::to_vec(&view).expect("history serializes").into())
            })
            .clone()
    }
}
