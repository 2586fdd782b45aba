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
//!
//! When GOMEMLIMIT binds (the limit, not GOGC, sets the goal: NextGC is at
//! the memory-limit goal, see [`memlimit_heap_goal`]), NextGC says nothing of
//! the live heap and the GC runs often: the envelope over the last
//! [`BINDING_ENVELOPE_SAMPLES`] scrapes is used.

use crate::parse::go_runtime::{effective_gomemlimit, GoSample};
use serde::Serialize;
use std::collections::VecDeque;

/// Scrapes in the HeapAlloc envelope (1 minute at the default 5 s).
pub const ENVELOPE_SAMPLES: usize = 12;
/// Scrapes in the envelope while GOMEMLIMIT binds: the GC then runs every
/// time the heap reaches a goal just above the live heap.
pub const BINDING_ENVELOPE_SAMPLES: usize = 3;
/// NextGC at this fraction of the memory-limit goal or above: the limit
/// sets the goal.
pub const BINDS_AT: f64 = 0.90;
/// What the Go runtime charges beside each byte the heap grows by (GC
/// metadata, span structures, the scavenger's slack): measured 5–25 % on
/// Go 1.19 under a leak; 10 % errs on the early side for most.
pub const HEAP_GROWTH_OVERHEAD: f64 = 0.10;

pub use crate::sample::LiveMethod;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoDerived {
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<LiveMethod>,
    /// GOMEMLIMIT sets the GC goal now (`None` when no limit is known).
    pub gomemlimit_binds: Option<bool>,
}

/// The heap goal a memory limit of `memlimit` bytes allows: the limit less
/// what the runtime holds outside heap spans (Sys − HeapSys: stacks, GC
/// metadata, …) and the 3 % the runtime keeps as headroom.
pub fn memlimit_heap_goal(s: &GoSample, memlimit: u64) -> Option<u64> {
    let heap_sys = s.heap_sys.or_else(|| Some(s.heap_inuse? + s.heap_idle?))?;
    let outside = s.sys.map_or(0, |sys| sys.saturating_sub(heap_sys));
    Some((memlimit.saturating_sub(outside) as f64 * 0.97) as u64)
}

/// Whether the memory limit, not GOGC, sets the goal of this GC cycle.
pub fn memlimit_binds(s: &GoSample, memlimit: u64, gogc: Option<i64>) -> bool {
    if gogc.is_some_and(|g| g < 0) {
        return true; // GOGC=off: the limit is the only goal
    }
    match (s.next_gc, memlimit_heap_goal(s, memlimit)) {
        (Some(n), Some(g)) => n as f64 >= BINDS_AT * g as f64,
        _ => false,
    }
}

/// Heap spans resident: HeapSys − HeapReleased (or HeapInuse + HeapIdle −
/// HeapReleased from the runtime/metrics names).
pub fn heap_spans_resident(g: &GoSample) -> Option<u64> {
    let sys = g.heap_sys.or_else(|| Some(g.heap_inuse? + g.heap_idle?))?;
    Some(sys.saturating_sub(g.heap_released.unwrap_or(0)))
}

/// Memory the Go runtime holds resident: Sys − HeapReleased (heap spans,
/// stacks, GC metadata). Without Sys: HeapSys, or HeapInuse + HeapIdle.
pub fn runtime_resident(g: &GoSample) -> Option<u64> {
    let sys = g.sys.or(g.heap_sys).or_else(|| Some(g.heap_inuse? + g.heap_idle?))?;
    Some(sys.saturating_sub(g.heap_released.unwrap_or(0)))
}

/// The goal of this GC cycle: NextGC, capped by the memory limit's goal.
pub fn cycle_goal(g: &GoSample, memlimit: Option<u64>) -> Option<u64> {
    let next_gc = g.next_gc?;
    Some(match memlimit.and_then(|m| memlimit_heap_goal(g, m)) {
        Some(m) => next_gc.min(m.max(g.heap_alloc.unwrap_or(0))),
        None => next_gc,
    })
}

/// The charged memory at this cycle's peak, just before its GC: `basis`
/// now, plus the heap's growth from the spans it holds resident (idle spans
/// are charged already) to the cycle's goal, with the runtime's overhead.
/// The same model the prediction uses.
pub fn peak_before_gc(g: &GoSample, basis: u64, memlimit: Option<u64>) -> Option<(u64, u64)> {
    let goal = cycle_goal(g, memlimit)?;
    let resident = heap_spans_resident(g)?;
    let growth = goal.saturating_sub(resident) as f64 * (1.0 + HEAP_GROWTH_OVERHEAD);
    Some((basis.saturating_add(growth as u64), goal))
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
    /// known to be unset). `memlimit` is GOMEMLIMIT from the environment in
    /// bytes when known (math.MaxInt64 for none); the runtime's own export
    /// in the sample comes first.
    pub fn ingest(&mut self, s: &GoSample, epoch: u64, gogc: Option<i64>, memlimit: Option<u64>) -> GoDerived {
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
        let gogc = s.gogc_percent.or(gogc);
        let memlimit = effective_gomemlimit(s.gomemlimit, memlimit);
        let binds = memlimit.map(|m| memlimit_binds(s, m, gogc));
        if let Some(live) = s.heap_live {
            return GoDerived {
                heap_live: Some(live),
                heap_live_method: Some(LiveMethod::Exact),
                gomemlimit_binds: binds,
            };
        }
        let depth = match binds {
            Some(true) => BINDING_ENVELOPE_SAMPLES,
            _ => ENVELOPE_SAMPLES,
        };
        let envelope = self.recent.iter().rev().take(depth).min().copied();
        let from_goal = match (s.next_gc, gogc.filter(|g| *g > 0)) {
            (Some(goal), Some(g)) => Some((goal as f64 / (1.0 + g as f64 / 100.0)) as u64),
            _ => None,
        };
        let (heap_live, method) = match (envelope, from_goal, s.heap_alloc) {
            (_, Some(g), Some(a)) if binds != Some(true) => (Some(g.min(a)), Some(LiveMethod::Goal)),
            (Some(e), _, _) => (Some(e), Some(LiveMethod::Envelope)),
            (None, _, _) => (None, None),
        };
        GoDerived {
            heap_live,
            heap_live_method: method,
            gomemlimit_binds: binds,
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
        let d = t.ingest(&x, 1, None, None);
        assert_eq!((d.heap_live, d.heap_live_method), (Some(40), Some(LiveMethod::Exact)));
    }

    #[test]
    fn sawtooth_envelope_and_goal() {
        // Live 100, GOGC 100: HeapAlloc saws between 100 and 200, NextGC 200.
        let mut t = GoTracker::default();
        let allocs = [180, 130, 160, 110, 190];
        let mut last = None;
        for (i, a) in allocs.iter().enumerate() {
            last = Some(t.ingest(&s(*a, 200, i as u64, 1000 * i as u64), 1, None, None));
        }
        let d = last.unwrap();
        assert_eq!(
            (d.heap_live, d.heap_live_method),
            (Some(110), Some(LiveMethod::Envelope))
        );
        let d = t.ingest(&s(150, 200, 9, 9000), 1, Some(100), None);
        assert_eq!((d.heap_live, d.heap_live_method), (Some(100), Some(LiveMethod::Goal)));
        // Never above HeapAlloc (right after a GC they meet).
        let d = t.ingest(&s(90, 200, 10, 9100), 1, Some(100), None);
        assert_eq!(d.heap_live, Some(90));
        // A GOMEMLIMIT far above the goal does not bind: still the goal.
        let mut x = s(150, 200, 11, 9200);
        x.gomemlimit = Some(1 << 30);
        let d = t.ingest(&x, 1, Some(100), None);
        assert_eq!(
            (d.heap_live_method, d.gomemlimit_binds),
            (Some(LiveMethod::Goal), Some(false))
        );
        // The envelope is bounded: old minima age out.
        let mut t = GoTracker::default();
        t.ingest(&s(10, 20, 1, 10), 1, None, None);
        for i in 0..ENVELOPE_SAMPLES as u64 {
            t.ingest(&s(500, 1000, 2 + i, 100 + i), 1, None, None);
        }
        assert_eq!(t.ingest(&s(600, 1000, 50, 999), 1, None, None).heap_live, Some(500));
    }

    #[test]
    fn a_new_epoch_forgets_the_envelope() {
        let mut t = GoTracker::default();
        t.ingest(&s(10, 20, 5, 1000), 1, None, None);
        assert_eq!(t.ingest(&s(300, 400, 6, 2000), 1, None, None).heap_live, Some(10));
        let d = t.ingest(&s(300, 400, 1, 2000), 2, None, None);
        assert_eq!(d.heap_live, Some(300), "old minimum forgotten");
    }

    #[test]
    fn gogc_off_or_unknown_uses_the_envelope() {
        let mut t = GoTracker::default();
        let d = t.ingest(&s(70, 200, 1, 1), 1, Some(-1), None);
        assert_eq!(
            (d.heap_live, d.heap_live_method),
            (Some(70), Some(LiveMethod::Envelope))
        );
    }

    #[test]
    fn a_binding_memlimit_reads_the_live_heap_from_the_recent_envelope() {
        // GOMEMLIMIT 100 MiB, 4 MiB outside the heap: the limit's goal is
        // 0.97 × 96 MiB. The live heap grows 60 → 80 MiB; NextGC sits at the
        // limit's goal, so NextGC / 2 would say a flat 46 MiB.
        const M: u64 = 1 << 20;
        let goal = (96.0 * 0.97) as u64 * M;
        let at = |alloc: u64, n: u64| GoSample {
            heap_alloc: Some(alloc * M),
            heap_sys: Some(100 * M),
            sys: Some(104 * M),
            next_gc: Some(goal),
            num_gc: Some(n),
            total_alloc: Some(n * 100 * M),
            ..GoSample::default()
        };
        let mut t = GoTracker::default();
        let mut d = None;
        for (i, live) in (60..=80).step_by(2).enumerate() {
            // Each scrape lands somewhere in a short GC cycle.
            let alloc = live + [1, 6, 3][i % 3];
            d = Some(t.ingest(&at(alloc, i as u64), 1, Some(100), Some(100 * M)));
        }
        let d = d.unwrap();
        assert_eq!(d.gomemlimit_binds, Some(true));
        assert_eq!(d.heap_live_method, Some(LiveMethod::Envelope));
        let live = d.heap_live.unwrap() / M;
        assert!(
            (77..=81).contains(&live),
            "live {live} MiB, not the 12-scrape minimum nor NextGC/2"
        );
        // The same scrape without the limit known: the flat goal estimate.
        let mut t = GoTracker::default();
        let flat = t.ingest(&at(81, 1), 1, Some(100), None);
        assert_eq!(flat.heap_live_method, Some(LiveMethod::Goal));
        // GOGC=off with a limit: the limit always sets the goal.
        assert!(memlimit_binds(&at(10, 1), 1 << 40, Some(-1)));
    }

    #[test]
    fn the_peak_before_gc_counts_idle_spans_as_charged() {
        const M: u64 = 1 << 20;
        // 100 MiB of spans resident (60 in use, 40 idle), NextGC 150 MiB:
        // the heap grows 50 MiB more, not NextGC − HeapAlloc = 100.
        let g = GoSample {
            heap_alloc: Some(50 * M),
            heap_inuse: Some(60 * M),
            heap_idle: Some(40 * M),
            heap_released: Some(0),
            heap_sys: Some(100 * M),
            sys: Some(110 * M),
            next_gc: Some(150 * M),
            ..GoSample::default()
        };
        let (peak, goal) = peak_before_gc(&g, 200 * M, None).unwrap();
        assert_eq!(goal, 150 * M);
        assert_eq!(peak, 200 * M + (50.0 * M as f64 * 1.1) as u64);
        // A 120 MiB GOMEMLIMIT caps the goal at 0.97 × (120 − 10) MiB.
        let (_, goal) = peak_before_gc(&g, 200 * M, Some(120 * M)).unwrap();
        assert_eq!(goal, (110.0 * M as f64 * 0.97) as u64);
    }
}
