//! Kernel counters kept across resets: a new cgroup after the container
//! restarted counts from 0 again, and what was counted before is kept.

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

/// The cgroup's OOM kills and v2 memory events, kept across restarts.
#[derive(Debug, Default, Clone)]
pub struct KernelCounters {
    oom_kills: ResetCounter,
    events: BTreeMap<MemoryEvent, ResetCounter>,
}

impl KernelCounters {
    /// Takes one read of the cgroup.
    pub fn observe(&mut self, c: &CgroupSample) {
        if let Some(k) = c.oom_kills() {
            self.oom_kills.observe(k);
        }
        if let Some(ev) = c.events.as_ref() {
            self.observe_events(ev);
        }
    }

    /// Takes an OOM kill count read apart from a poll (by the watcher).
    pub fn observe_oom_kills(&mut self, count: u64) {
        self.oom_kills.observe(count);
    }

    /// Takes v2 `memory.events` read apart from a poll (by the watcher).
    pub fn observe_events(&mut self, ev: &crate::parse::cgroup_files::MemoryEvents) {
        for e in MemoryEvent::ALL {
            if let Some(v) = e.count(ev) {
                self.events.entry(e).or_default().observe(v);
            }
        }
    }

    /// The cgroup read is another one now: keep the totals, start afresh.
    pub fn rebase(&mut self) {
        self.oom_kills.rebase();
        self.events.values_mut().for_each(ResetCounter::rebase);
    }

    pub fn oom_kills_total(&self) -> u64 {
        self.oom_kills.total()
    }

    pub fn events_total(&self) -> BTreeMap<MemoryEvent, u64> {
        self.events.iter().map(|(k, c)| (*k, c.total())).collect()
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
    fn events_are_kept_across_a_new_cgroup() {
        let mut k = KernelCounters::default();
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
