//! The live Go heap across scrapes.
//!
//! Live heap is exact where the runtime exports it (`go_gc_heap_live_bytes`,
//! Go 1.21+ through client_golang). Otherwise it is estimated:
//! - from the GC goal when GOGC is known (exported, or read from the target's
//!   environment): Go sets NextGC to live + (live + stacks + globals) ×
//!   GOGC/100 at the end of each GC, so NextGC / (1 + GOGC/100) is the live
//!   heap of the last GC, slightly over (stacks and globals), and current to
//!   within one GC cycle; capped at HeapAlloc;
//! - else from the lower envelope of HeapAlloc over the last
//!   [`ENVELOPE_SAMPLES`] scrapes (HeapAlloc is smallest right after a GC),
//!   which lags a growing heap by up to that many scrapes.

use crate::parse::go_runtime::GoSample;
use serde::Serialize;
use std::collections::VecDeque;

/// Scrapes in the HeapAlloc envelope (1 minute at the default 5 s).
pub const ENVELOPE_SAMPLES: usize = 12;

pub use crate::sample::LiveMethod;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoDerived {
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<LiveMethod>,
}

/// The HeapAlloc envelope of one Go runtime. It forgets the envelope when
/// the collector's target tracker says a new runtime started (a new
/// `go_epoch`); it never decides that itself.
#[derive(Debug, Clone, Default)]
pub struct GoTracker {
    recent: VecDeque<u64>,
    epoch: u64,
}

impl GoTracker {
    /// Takes one scrape of the runtime numbered `epoch`. `gogc` is GOGC from
    /// the target's environment when known (`None` for unset means the
    /// default 100 is NOT assumed here: pass `Some(100)` when the variable is
    /// known to be unset).
    pub fn ingest(&mut self, s: &GoSample, epoch: u64, gogc: Option<i64>) -> GoDerived {
        if epoch != self.epoch {
            self.recent.clear();
            self.epoch = epoch;
        }
        if let Some(a) = s.heap_alloc {
            if self.recent.len() == ENVELOPE_SAMPLES {
                self.recent.pop_front();
            }
            self.recent.push_back(a);
        }
        if let Some(live) = s.heap_live {
            return GoDerived {
                heap_live: Some(live),
                heap_live_method: Some(LiveMethod::Exact),
            };
        }
        let envelope = self.recent.iter().min().copied();
        let gogc = s.gogc_percent.or(gogc).filter(|g| *g > 0);
        let from_goal = match (s.next_gc, gogc) {
            (Some(goal), Some(g)) => Some((goal as f64 / (1.0 + g as f64 / 100.0)) as u64),
            _ => None,
        };
        // A binding GOMEMLIMIT lowers the goal below live × (1 + GOGC/100).
        let memlimit_binds = s.gomemlimit.is_some_and(|m| m < i64::MAX as u64);
        let (heap_live, method) = match (envelope, from_goal, s.heap_alloc) {
            (_, Some(g), Some(a)) if !memlimit_binds => (Some(g.min(a)), Some(LiveMethod::Goal)),
            (Some(e), _, _) => (Some(e), Some(LiveMethod::Envelope)),
            (None, _, _) => (None, None),
        };
        GoDerived {
            heap_live,
            heap_live_method: method,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(alloc: u64, next_gc: u64, num_gc: u64, total: u64) -> GoSample {
        GoSample {
            heap_alloc: Some(alloc),
            next_gc: Some(next_gc),
            num_gc: Some(num_gc),
            total_alloc: Some(total),
            ..GoSample::default()
        }
    }

    #[test]
    fn exact_when_exported() {
        let mut t = GoTracker::default();
        let mut x = s(50, 100, 1, 50);
        x.heap_live = Some(40);
        let d = t.ingest(&x, 1, None);
        assert_eq!((d.heap_live, d.heap_live_method), (Some(40), Some(LiveMethod::Exact)));
    }

    #[test]
    fn sawtooth_envelope_and_goal() {
        // Live 100, GOGC 100: HeapAlloc saws between 100 and 200, NextGC 200.
        let mut t = GoTracker::default();
        let allocs = [180, 130, 160, 110, 190];
        let mut last = None;
        for (i, a) in allocs.iter().enumerate() {
            last = Some(t.ingest(&s(*a, 200, i as u64, 1000 * i as u64), 1, None));
        }
        let d = last.unwrap();
        assert_eq!(
            (d.heap_live, d.heap_live_method),
            (Some(110), Some(LiveMethod::Envelope))
        );
        let d = t.ingest(&s(150, 200, 9, 9000), 1, Some(100));
        assert_eq!((d.heap_live, d.heap_live_method), (Some(100), Some(LiveMethod::Goal)));
        // Never above HeapAlloc (right after a GC they meet).
        let d = t.ingest(&s(90, 200, 10, 9100), 1, Some(100));
        assert_eq!(d.heap_live, Some(90));
        // A binding GOMEMLIMIT lowers the goal: the envelope is used instead.
        let mut x = s(150, 120, 11, 9200);
        x.gomemlimit = Some(1 << 30);
        assert_eq!(t.ingest(&x, 1, Some(100)).heap_live_method, Some(LiveMethod::Envelope));
        // The envelope is bounded: old minima age out.
        let mut t = GoTracker::default();
        t.ingest(&s(10, 20, 1, 10), 1, None);
        for i in 0..ENVELOPE_SAMPLES as u64 {
            t.ingest(&s(500, 1000, 2 + i, 100 + i), 1, None);
        }
        assert_eq!(t.ingest(&s(600, 1000, 50, 999), 1, None).heap_live, Some(500));
    }

    #[test]
    fn a_new_epoch_forgets_the_envelope() {
        let mut t = GoTracker::default();
        t.ingest(&s(10, 20, 5, 1000), 1, None);
        assert_eq!(t.ingest(&s(300, 400, 6, 2000), 1, None).heap_live, Some(10));
        let d = t.ingest(&s(300, 400, 1, 2000), 2, None);
        assert_eq!(d.heap_live, Some(300), "old minimum forgotten");
    }

    #[test]
    fn gogc_off_or_unknown_uses_the_envelope() {
        let mut t = GoTracker::default();
        let d = t.ingest(&s(70, 200, 1, 1), 1, Some(-1));
        assert_eq!(
            (d.heap_live, d.heap_live_method),
            (Some(70), Some(LiveMethod::Envelope))
        );
    }
}
