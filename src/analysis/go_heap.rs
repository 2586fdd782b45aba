//! The live Go heap across scrapes.
//!
//! Live heap is exact where the runtime exports it (`go_gc_heap_live_bytes`,
//! Go 1.21+ through client_golang). Otherwise it is estimated:
//! - from the GC goal when GOGC is known (exported, read from the target's
//!   environment, or estimated, below): Go 1.18+ sets NextGC to live +
//!   (live + stacks + globals) × GOGC/100 at the end of each GC, so
//!   (NextGC − StackInuse × GOGC/100) / (1 + GOGC/100) is the live heap of
//!   the last GC (globals are small), current to within one GC cycle; capped
//!   at HeapAlloc. Before Go 1.18 stacks were not in the goal. Without the
//!   stacks' share a goroutine leak reads as a heap leak: NextGC rises with
//!   the stacks;
//! - else from the lower envelope of HeapAlloc over the last
//!   [`ENVELOPE_SAMPLES`] scrapes (HeapAlloc is smallest right after a GC),
//!   which lags a growing heap by up to that many scrapes.
//!
//! GOGC the environment does not tell (an unprivileged headroom cannot read
//! it) is estimated from the runtime's own numbers: the live heap of the
//! last GC is at most HeapAlloc, so each scrape gives GOGC/100 ≥ (NextGC −
//! HeapAlloc) / (HeapAlloc + stacks), nearly equal just after a GC; the
//! largest over the recent scrapes is the estimate (see [`GoTracker`]).
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

/// Scrapes the GOGC estimate needs (the largest bound so far: a first
/// estimate errs low, so the live heap it gives errs high, capped at
/// HeapAlloc, and the prediction, which follows the goal's growth, hardly
/// moves) ...
pub const GOGC_ESTIMATE_SAMPLES: usize = 1;
/// ... with a goal at least this large: the runtime's minimum heap goal
/// (4 MiB × GOGC/100) says nothing of GOGC.
pub const GOGC_ESTIMATE_MIN_GOAL: u64 = 16 << 20;

pub use crate::sample::LiveMethod;

/// A Go release's (major, minor, patch) from its version string (`go1.21.6`,
/// `go1.22rc1`, `go1.22.0 X:boringcrypto`); `None` for a development build
/// or anything else.
pub fn go_release(v: &str) -> Option<(u32, u32, u32)> {
    let rest = v.trim().strip_prefix("go")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let mut nums = rest[..end].split('.').map(|n| n.parse::<u32>().ok());
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// Whether the runtime counts goroutine stacks in the GC goal (Go 1.18+).
/// An unknown version (or a development build) is taken as a recent one.
pub fn stacks_in_goal(go_version: Option<&str>) -> bool {
    go_version.and_then(go_release).is_none_or(|r| r >= (1, 18, 0))
}

/// The stacks the GC goal counts, bytes: StackInuse on Go 1.18+, else 0.
fn goal_stacks(s: &GoSample) -> u64 {
    if stacks_in_goal(s.go_version.as_deref()) {
        s.stack_inuse.unwrap_or(0)
    } else {
        0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoDerived {
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<LiveMethod>,
    /// GOMEMLIMIT sets the GC goal now (`None` when no limit is known).
    pub gomemlimit_binds: Option<bool>,
    /// GOGC estimated from the runtime's numbers, when neither the runtime
    /// nor the environment tells it (see the module's notes).
    pub gogc_estimate: Option<i64>,
}

/// The heap goal a memory limit of `memlimit` bytes allows: the limit less
/// what the runtime holds outside heap spans (Sys − HeapSys: stacks, GC
/// metadata, …) and the 3 % the runtime keeps as headroom.
pub fn memlimit_heap_goal(s: &GoSample, memlimit: u64) -> Option<u64> {
    Some((memlimit_heap_room(s, memlimit)? as f64 * 0.97) as u64)
}

/// What a memory limit of `memlimit` bytes leaves the heap's spans: the
/// limit less what the runtime holds outside them (Sys − HeapSys).
fn memlimit_heap_room(s: &GoSample, memlimit: u64) -> Option<u64> {
    let heap_sys = s.heap_sys.or_else(|| Some(s.heap_inuse? + s.heap_idle?))?;
    let outside = s.sys.map_or(0, |sys| sys.saturating_sub(heap_sys));
    Some(memlimit.saturating_sub(outside))
}

/// Whether the heap's resident spans are beyond what the memory limit
/// leaves them: the runtime no longer holds the limit (the live heap and
/// what one cycle allocates exceed it, or the GC CPU limiter let the heap
/// overshoot), so the charge now grows with the live heap. While the
/// limit holds, the heap stays at it and each cycle frees less garbage
/// instead.
pub fn beyond_memlimit(s: &GoSample, memlimit: u64) -> bool {
    match (heap_spans_resident(s), memlimit_heap_room(s, memlimit)) {
        (Some(resident), Some(room)) => resident > room,
        _ => false,
    }
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

/// The effective GOGC, percent: the room between the live heap and this
/// cycle's goal (NextGC, capped by a binding GOMEMLIMIT), 100 × (goal −
/// live) / live. GOGC=100 leaves 100; under a binding memory limit it falls
/// toward 0 as the live heap nears the limit.
pub fn effective_gogc(r: &crate::sample::GoReading) -> Option<f64> {
    let live = r.heap_live.filter(|l| *l > 0)?;
    let goal = cycle_goal(&r.sample, r.gomemlimit())?;
    Some(100.0 * goal.saturating_sub(live) as f64 / live as f64)
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
    /// GOGC/100 lower bounds of the recent scrapes (see the module's notes).
    gogc_bounds: VecDeque<f64>,
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
            self.gogc_bounds.clear();
            self.epoch = epoch;
        }
        if let Some(a) = s.heap_alloc {
            if self.recent.len() == ENVELOPE_SAMPLES {
                self.recent.pop_front();
            }
            self.recent.push_back(a);
        }
        let memlimit = effective_gomemlimit(s.gomemlimit, memlimit);
        let known = s.gogc_percent.or(gogc);
        let gogc_estimate = match known {
            Some(_) => None,
            None => self.estimate_gogc(s, memlimit),
        };
        let gogc = known.or(gogc_estimate);
        let binds = memlimit.map(|m| memlimit_binds(s, m, gogc));
        if let Some(live) = s.heap_live {
            return GoDerived {
                heap_live: Some(live),
                heap_live_method: Some(LiveMethod::Exact),
                gomemlimit_binds: binds,
                gogc_estimate,
            };
        }
        let depth = match binds {
            Some(true) => BINDING_ENVELOPE_SAMPLES,
            _ => ENVELOPE_SAMPLES,
        };
        let envelope = self.recent.iter().rev().take(depth).min().copied();
        let from_goal = match (s.next_gc, gogc.filter(|g| *g > 0)) {
            (Some(goal), Some(g)) => {
                let k = g as f64 / 100.0;
                Some(((goal as f64 - goal_stacks(s) as f64 * k).max(0.0) / (1.0 + k)) as u64)
            }
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
            gogc_estimate,
        }
    }

    /// GOGC from the largest of the recent scrapes' lower bounds, once
    /// [`GOGC_ESTIMATE_SAMPLES`] scrapes with a goal of at least
    /// [`GOGC_ESTIMATE_MIN_GOAL`] and a memory limit that does not set it
    /// gave one.
    fn estimate_gogc(&mut self, s: &GoSample, memlimit: Option<u64>) -> Option<i64> {
        let (Some(goal), Some(alloc)) = (s.next_gc, s.heap_alloc) else {
            return None;
        };
        // A binding limit (or an unknown GOGC that might be off) sets the
        // goal: the scrape says nothing of GOGC. Judged as if GOGC were the
        // default; a goal near the limit's is the limit's.
        let limited = memlimit.is_some_and(|m| memlimit_binds(s, m, Some(100)));
        if goal >= GOGC_ESTIMATE_MIN_GOAL && goal > alloc && !limited {
            if self.gogc_bounds.len() == ENVELOPE_SAMPLES {
                self.gogc_bounds.pop_front();
            }
            let bound = (goal - alloc) as f64 / (alloc + goal_stacks(s)).max(1) as f64;
            self.gogc_bounds.push_back(bound);
        }
        if self.gogc_bounds.len() < GOGC_ESTIMATE_SAMPLES {
            return None;
        }
        let k = self.gogc_bounds.iter().copied().fold(0.0, f64::max);
        Some((100.0 * k).round().max(1.0) as i64)
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

    const M: u64 = 1 << 20;

    #[test]
    fn the_heap_is_beyond_the_memlimit_only_past_what_the_limit_leaves_its_spans() {
        // GOMEMLIMIT 200 MiB, 10 MiB outside the heap's spans (Sys − HeapSys):
        // the spans may hold 190 MiB resident.
        let mut x = s(150 * M, 180 * M, 9, 900 * M);
        x.sys = Some(210 * M);
        x.heap_sys = Some(200 * M);
        for (released, beyond) in [(20 * M, false), (10 * M, false), (9 * M, true), (0, true)] {
            x.heap_released = Some(released);
            assert_eq!(beyond_memlimit(&x, 200 * M), beyond, "released {released}");
        }
        // Unknown spans: never said to be beyond.
        x.heap_sys = None;
        assert!(!beyond_memlimit(&x, 0));
    }

    #[test]
    fn stacks_are_taken_out_of_the_goal_from_go_1_18() {
        // 20 MiB live, 100 MiB of stacks, GOGC=100: Go 1.18+ sets the goal to
        // 20 + (20 + 100) = 140 MiB; the heap holds 30 MiB now.
        let mut x = s(30 * M, 140 * M, 5, 500 * M);
        x.stack_inuse = Some(100 * M);
        for (version, live) in [
            (None, 20 * M),
            (Some("go1.19.8"), 20 * M),
            (Some("go1.22rc1"), 20 * M),
            (Some("devel go1.23-abc"), 20 * M),
            // Before 1.18 the goal had no stacks: 140 / 2, capped at HeapAlloc.
            (Some("go1.17.13"), 30 * M),
        ] {
            x.go_version = version.map(str::to_owned);
            let d = GoTracker::default().ingest(&x, 1, Some(100), None);
            assert_eq!(d.heap_live, Some(live), "{version:?}");
            assert_eq!(d.heap_live_method, Some(LiveMethod::Goal));
        }
        assert!(stacks_in_goal(Some("go1.18")) && !stacks_in_goal(Some("go1.16.15")));
        // A goal smaller than its stacks' share says the live heap is 0, not
        // a negative number.
        let mut odd = s(1 << 10, 8 * M, 1, M);
        odd.stack_inuse = Some(64 * M);
        assert_eq!(GoTracker::default().ingest(&odd, 1, Some(100), None).heap_live, Some(0));
    }

    #[test]
    fn gogc_is_estimated_when_no_one_tells_it() {
        // GOGC=200, 50 MiB live: the goal is 150 MiB; scrapes land at
        // several points of the cycle, the heap 50..140 MiB.
        let mut t = GoTracker::default();
        let mut last = None;
        for (i, alloc) in [120u64, 90, 140, 52, 70].iter().enumerate() {
            last = Some(t.ingest(&s(alloc * M, 150 * M, i as u64, 0), 1, None, None));
            // Each estimate is a lower bound: never above the truth.
            assert!(last.as_ref().unwrap().gogc_estimate.unwrap() <= 200, "{last:?}");
        }
        let d = last.unwrap();
        // The scrape just after a GC (52 MiB) gives (150 − 52) / 52 = 188 %.
        assert_eq!(d.gogc_estimate, Some(188));
        assert_eq!(d.heap_live_method, Some(LiveMethod::Goal));
        // 150 / 2.88 = 52 MiB: within 5 % of the truth.
        let live = d.heap_live.unwrap() as f64 / M as f64;
        assert!((live - 52.0).abs() < 1.0, "{live}");
        // Known GOGC is never overridden by an estimate.
        assert_eq!(
            t.ingest(&s(52 * M, 150 * M, 9, 0), 1, Some(200), None).gogc_estimate,
            None
        );
        // A new runtime forgets the bounds; small goals (the runtime's 4 MiB
        // minimum) and a goal the memory limit sets give none.
        assert_eq!(t.ingest(&s(M, 4 * M, 1, 0), 2, None, None).gogc_estimate, None);
        let mut near_limit = s(150 * M, 190 * M, 2, 0);
        near_limit.heap_sys = Some(190 * M);
        assert_eq!(t.ingest(&near_limit, 2, None, Some(200 * M)).gogc_estimate, None);
        assert_eq!(
            t.ingest(&s(100 * M, 200 * M, 3, 0), 2, None, None).gogc_estimate,
            Some(100)
        );
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
