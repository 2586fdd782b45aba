//! Kernel counters kept across resets: a new cgroup after the container
//! restarted counts from 0 again, and what was counted before is kept.
//! They count from headroom's start: the first cgroup's counts at its first
//! read are kills from before (shown apart, in the status), so that a
//! restart of headroom re-counts nothing and `increase()` over it is 0.

use crate::sample::{CgroupSample, MemoryEvent};
use std::collections::BTreeMap;

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

/// The cgroup's OOM kills and v2 memory events since headroom started,
/// kept across restarts.
#[derive(Debug, Default, Clone)]
pub struct KernelCounters {
    oom_kills: ResetCounter,
    events: BTreeMap<MemoryEvent, ResetCounter>,
    /// Count the first read in full: the target's cgroup is new (a
    /// container found after headroom started).
    count_existing: bool,
    /// The first read's counts, subtracted from the totals (0 when
    /// `count_existing`).
    kills_before: Option<u64>,
    events_before: BTreeMap<MemoryEvent, u64>,
}

impl KernelCounters {
    /// `count_existing`: the counts at the first read happened after
    /// headroom started (a container that appeared since), and count.
    pub fn new(count_existing: bool) -> KernelCounters {
        KernelCounters {
            count_existing,
            ..KernelCounters::default()
        }
    }

    /// Takes one read of the cgroup.
    pub fn observe(&mut self, c: &CgroupSample) {
        if let Some(k) = c.oom_kills() {
            self.observe_oom_kills(k);
        }
        if let Some(ev) = c.events.as_ref() {
            self.observe_events(ev);
        }
    }

    /// Takes an OOM kill count read apart from a poll (by the watcher).
    pub fn observe_oom_kills(&mut self, count: u64) {
        let existing = self.count_existing;
        self.kills_before.get_or_insert(if existing { 0 } else { count });
        self.oom_kills.observe(count);
    }

    /// Takes v2 `memory.events` read apart from a poll (by the watcher).
    pub fn observe_events(&mut self, ev: &crate::parse::cgroup_files::MemoryEvents) {
        for e in MemoryEvent::ALL {
            if let Some(v) = e.count(ev) {
                let existing = self.count_existing;
                self.events_before.entry(e).or_insert(if existing { 0 } else { v });
                self.events.entry(e).or_default().observe(v);
            }
        }
    }

    /// The cgroup read is another one now: keep the totals, start afresh.
    pub fn rebase(&mut self) {
        self.oom_kills.rebase();
        self.events.values_mut().for_each(ResetCounter::rebase);
    }

    /// OOM kills since headroom started.
    pub fn oom_kills_total(&self) -> u64 {
        self.oom_kills.total() - self.kills_before.unwrap_or(0)
    }

    /// The cgroup's OOM kill count at headroom's first read of it, when
    /// those kills happened before headroom started.
    pub fn oom_kills_before_start(&self) -> Option<u64> {
        self.kills_before.filter(|_| !self.count_existing)
    }

    /// v2 memory events since headroom started.
    pub fn events_total(&self) -> BTreeMap<MemoryEvent, u64> {
        self.events
            .iter()
            .map(|(k, c)| (*k, c.total() - self.events_before.get(k).copied().unwrap_or(0)))
            .collect()
    }

    /// Whether v2 memory events were ever read (a v2 cgroup).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// One event's count since headroom started (0 when never read).
    pub fn event_total(&self, e: MemoryEvent) -> u64 {
        self.events
            .get(&e)
            .map_or(0, |c| c.total() - self.events_before.get(&e).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cgroup_files::MemoryEvents;

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

    #[test]
    fn kills_before_headroom_started_are_not_counted_unless_the_cgroup_is_new() {
        let mut k = KernelCounters::new(false);
        k.observe_oom_kills(3);
        assert_eq!((k.oom_kills_total(), k.oom_kills_before_start()), (0, Some(3)));
        k.observe_oom_kills(4);
        assert_eq!(k.oom_kills_total(), 1);
        // The container restarted in a new cgroup: its kills all count.
        k.rebase();
        k.observe_oom_kills(1);
        assert_eq!(k.oom_kills_total(), 2);
        let mut fresh = KernelCounters::new(true);
        fresh.observe_oom_kills(1);
        assert_eq!((fresh.oom_kills_total(), fresh.oom_kills_before_start()), (1, None));
        let mut ev = KernelCounters::new(false);
        let mut c = CgroupSample::all_anonymous("/a", 1);
        c.events = Some(MemoryEvents {
            max: Some(7),
            ..MemoryEvents::default()
        });
        ev.observe(&c);
        assert_eq!(ev.event_total(MemoryEvent::Max), 0);
        c.events = Some(MemoryEvents {
            max: Some(9),
            ..MemoryEvents::default()
        });
        ev.observe(&c);
        assert_eq!(ev.event_total(MemoryEvent::Max), 2);
    }

    #[test]
    fn events_are_kept_across_a_new_cgroup() {
        let mut k = KernelCounters::new(true);
        let mut c = CgroupSample::all_anonymous("/a", 1);
        c.events = Some(MemoryEvents {
            high: Some(4),
            oom_kill: Some(1),
            ..MemoryEvents::default()
        });
        k.observe(&c);
        k.rebase();
        c.events = Some(MemoryEvents {
            high: Some(1),
            oom_kill: Some(1),
            ..MemoryEvents::default()
        });
        k.observe(&c);
        assert_eq!(k.oom_kills_total(), 2);
        let ev = k.events_total();
        assert_eq!(ev[&MemoryEvent::High], 5);
        assert_eq!(ev.get(&MemoryEvent::Max), None);
    }
}
