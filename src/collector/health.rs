//! Source health: whether each source's last read worked, how many failed,
//! and a log line when a failure first appears, then at most once a minute
//! for each distinct message (errors that alternate are not each logged
//! every poll).

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A source headroom reads, as named in `headroom_source_up{source}` and the
/// status JSON's `sources` (whose keys follow this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The memory cgroup's files.
    Cgroup,
    /// The target's Go runtime (`--go-url`).
    Go,
    /// The target's /proc entries.
    Proc,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Cgroup, Source::Proc, Source::Go];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cgroup => "cgroup",
            Source::Go => "go",
            Source::Proc => "proc",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `None` when the source is not configured (no target, no --go-url).
    pub up: Option<bool>,
    pub errors_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the collector knows of its sources' health, as the status shows it.
#[derive(Debug, Clone, Default)]
pub struct HealthSnapshot {
    /// True once a cgroup read has worked.
    pub ready: bool,
    pub sources: BTreeMap<Source, SourceStatus>,
}

const RELOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct SourceState {
    configured: bool,
    status: SourceStatus,
    /// When each distinct message was last logged (the most recent few).
    logged: Vec<(String, Instant)>,
}

/// Distinct messages of one source remembered for rate limiting.
const LOGGED_KEPT: usize = 8;

/// The health of every source, with rate-limited logging of failures.
#[derive(Debug)]
pub struct Health {
    states: BTreeMap<Source, SourceState>,
    ready: bool,
}

impl Health {
    /// `configured` says which sources this configuration reads; the others
    /// show as not configured (`up` absent) whatever happens.
    pub fn new(configured: impl Fn(Source) -> bool) -> Health {
        let states = Source::ALL
            .into_iter()
            .map(|s| {
                let state = SourceState {
                    configured: configured(s),
                    ..SourceState::default()
                };
                (s, state)
            })
            .collect();
        Health { states, ready: false }
    }

    /// Whether `s` is read at all (the cgroup is not, when the target's is
    /// closed to us: the unprivileged mode).
    pub fn set_configured(&mut self, s: Source, configured: bool) {
        self.state(s).configured = configured;
    }

    fn state(&mut self, s: Source) -> &mut SourceState {
        self.states.entry(s).or_default()
    }

    /// A read of `s` worked.
    pub fn ok(&mut self, s: Source) {
        // Ready once the memory is read: from the cgroup, or from /proc
        // when the cgroup is not ours to read.
        if s == Source::Cgroup || (s == Source::Proc && !self.state(Source::Cgroup).configured) {
            self.ready = true;
        }
        let st = self.state(s);
        if st.status.up == Some(false) {
            tracing::info!(source = s.as_str(), "source recovered");
        }
        st.status.up = Some(true);
        st.status.last_error = None;
        st.logged.clear();
    }

    /// A read of `s` failed with `msg`; `now` paces the log.
    pub fn fail(&mut self, s: Source, msg: String, now: Instant) {
        let st = self.state(s);
        st.status.up = Some(false);
        st.status.errors_total += 1;
        let seen = st.logged.iter().position(|(m, _)| *m == msg);
        let due = seen.is_none_or(|i| now.duration_since(st.logged[i].1) >= RELOG_EVERY);
        if due {
            tracing::warn!(source = s.as_str(), errors_total = st.status.errors_total, "{msg}");
            if let Some(i) = seen {
                st.logged.remove(i);
            } else if st.logged.len() >= LOGGED_KEPT {
                st.logged.remove(0);
            }
            st.logged.push((msg.clone(), now));
        }
        st.status.last_error = Some(msg);
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            ready: self.ready,
            sources: self
                .states
                .iter()
                .map(|(s, st)| {
                    let status = if st.configured {
                        st.status.clone()
                    } else {
                        SourceStatus::default()
                    };
                    (*s, status)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_and_recover_and_unconfigured_sources_stay_silent() {
        let mut h = Health::new(|s| s != Source::Go);
        let now = Instant::now();
        h.fail(Source::Cgroup, "gone".into(), now);
        h.fail(Source::Cgroup, "gone".into(), now);
        h.fail(Source::Go, "refused".into(), now);
        let snap = h.snapshot();
        assert!(!snap.ready);
        let cg = &snap.sources[&Source::Cgroup];
        assert_eq!(
            (cg.up, cg.errors_total, cg.last_error.as_deref()),
            (Some(false), 2, Some("gone"))
        );
        let go = &snap.sources[&Source::Go];
        assert_eq!((go.up, go.errors_total), (None, 0), "not configured");
        h.ok(Source::Cgroup);
        let snap = h.snapshot();
        assert!(snap.ready);
        let cg = &snap.sources[&Source::Cgroup];
        assert_eq!(
            (cg.up, cg.errors_total, cg.last_error.as_deref()),
            (Some(true), 2, None)
        );
        let names: Vec<_> = snap.sources.keys().map(|s| s.as_str()).collect();
        assert_eq!(names, ["cgroup", "go", "proc"], "the JSON's key order");
    }

    #[test]
    fn alternating_errors_are_each_logged_once_a_minute() {
        let mut h = Health::new(|_| true);
        let t0 = Instant::now();
        let logged = |h: &Health| h.states[&Source::Go].logged.iter().map(|(_, t)| *t).collect::<Vec<_>>();
        for i in 0..10u64 {
            let msg = if i % 2 == 0 { "refused" } else { "timed out" };
            h.fail(Source::Go, msg.into(), t0 + Duration::from_secs(i));
        }
        // Each message logged at its first appearance only.
        assert_eq!(logged(&h), [t0, t0 + Duration::from_secs(1)]);
        h.fail(Source::Go, "refused".into(), t0 + Duration::from_secs(61));
        assert_eq!(logged(&h), [t0 + Duration::from_secs(1), t0 + Duration::from_secs(61)]);
        assert_eq!(h.snapshot().sources[&Source::Go].errors_total, 11);
    }
}
