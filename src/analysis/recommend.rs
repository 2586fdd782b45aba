//! The memory limit and the GOMEMLIMIT to set, from the peaks the service
//! reached over the window.
//!
//! Polls of the cgroup see a Go service at random points of its GC
//! sawtooth, so the highest usage polled misses the peak the heap reaches
//! just before each GC. The runtime states that peak: the heap grows to the
//! cycle's goal (NextGC, capped by GOMEMLIMIT's goal) before it collects.
//! With Go data the limit is
//!
//! ```text
//! limit      = ⌈(1 + GO_MARGIN) × max(heap_peak + runtime_other + outside, observed_peak)⌉ MiB
//! gomemlimit = ⌊limit − outside − GOMEMLIMIT_SLACK × limit⌋ MiB
//! ```
//!
//! - `heap_peak`: the highest goal over the window (HeapAlloc where higher,
//!   or alone where the source exports no goal);
//! - `runtime_other`: the highest Sys − HeapSys (stacks, GC metadata, span
//!   structures, other runtime memory) plus HeapInuse − HeapAlloc (room in
//!   the heap's spans that objects do not fill), as measured at each scrape;
//! - `outside`: the limit basis less the runtime's resident memory (Sys −
//!   HeapReleased): cgo, mmap, other processes of the container, kernel
//!   memory; page cache only as far as the basis counts it (`unreclaimable`,
//!   the default, does not: the kernel reclaims it before an OOM kill). It is
//!   the median over the window, because the cgroup and the runtime are read
//!   up to one poll apart and their difference swings with the heap between;
//! - `observed_peak`: the basis's highest value polled, a floor.
//!
//! GOMEMLIMIT governs the runtime's memory only, so it leaves the outside
//! part and a slack below the limit; it stays above the runtime's own peak,
//! a backstop that does not make the GC run more often in the service's
//! ordinary course.
//!
//! Without Go data the limit is the basis's highest value polled with a
//! larger margin ([`CGROUP_MARGIN`]): polls miss the peaks between them.
//! Nothing is recommended before [`MIN_HISTORY_S`] of history (or the whole
//! window, if shorter) since the target (and its Go runtime) started.

use super::window::{Series, Window};
use crate::sample::LimitBasis;
use serde::Serialize;

/// The margin over the peak with the runtime's numbers.
pub const GO_MARGIN: f64 = 0.10;
/// The margin over the basis's highest poll without them.
pub const CGROUP_MARGIN: f64 = 0.30;
/// GOMEMLIMIT's distance below the limit beyond the outside part, as a
/// share of the limit: the runtime overshoots its soft limit a little, and
/// memory outside it moves.
pub const GOMEMLIMIT_SLACK: f64 = 0.05;
/// History needed before a recommendation (or the window, if shorter).
pub const MIN_HISTORY_S: f64 = 30.0;

const MIB: u64 = 1 << 20;

/// What the recommendation was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationBasis {
    /// The Go heap's goal (NextGC) before each GC, from the runtime.
    GoHeapGoal,
    /// The Go heap's HeapAlloc maxima at the scrapes (the source exports no
    /// goal): between scrapes the heap may have gone higher.
    GoHeapAlloc,
    /// The cgroup's limit-basis value at its highest poll; no Go data.
    CgroupPeak,
}

impl RecommendationBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            RecommendationBasis::GoHeapGoal => "go_heap_goal",
            RecommendationBasis::GoHeapAlloc => "go_heap_alloc",
            RecommendationBasis::CgroupPeak => "cgroup_peak",
        }
    }
}

/// The limit and the GOMEMLIMIT to set, with what they were made from
/// (bytes; the formula in the module's header and docs/metrics.md).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Recommendation {
    pub basis: RecommendationBasis,
    /// The memory limit to set, whole MiB.
    pub memory_limit_bytes: u64,
    /// The GOMEMLIMIT to set, whole MiB; only with Go data.
    pub gomemlimit_bytes: Option<u64>,
    /// The margin over the peak (0.10 is 10 %).
    pub margin: f64,
    /// The heap's highest goal (or HeapAlloc) over the window.
    pub heap_peak_bytes: Option<u64>,
    /// The runtime's memory beside heap objects, at its highest.
    pub runtime_other_bytes: Option<u64>,
    /// Charged memory outside the Go runtime, as the limit basis counts it
    /// (median over the window).
    pub outside_runtime_bytes: Option<u64>,
    /// Of the charged memory, the kernel's now (it is part of the outside
    /// part when the runtime's numbers are known).
    pub kernel_bytes: Option<u64>,
    /// The limit basis's highest value polled over the window.
    pub observed_peak_bytes: u64,
    /// The basis those values measure (`--limit-basis`).
    pub limit_basis: LimitBasis,
    /// Seconds of history the recommendation covers.
    pub history_s: f64,
}

/// The window's peaks, with the seconds of history behind them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Peaks {
    /// The basis's highest value, and seconds since its stretch began.
    pub basis: Option<(f64, f64)>,
    /// The heap's highest peak, and seconds since the Go runtime's first
    /// scrape.
    pub heap: Option<(f64, f64)>,
    /// Whether the heap's peaks are goals (NextGC) or HeapAlloc alone.
    pub heap_from_goal: bool,
    pub runtime_other: Option<f64>,
    pub outside_median: Option<f64>,
}

/// Where the current stretches begin (monotonic ms): the points read are
/// those at or after `since` (the target's) and `go_since` (its Go
/// runtime's); the history counts from the first value of the basis
/// (`basis_from`) and the first scrape (`go_from`) of those stretches,
/// which may lie beyond the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stretch {
    pub since: u64,
    pub go_since: u64,
    pub basis_from: Option<u64>,
    pub go_from: Option<u64>,
}

fn highest(s: &Series, since: u64) -> Option<f64> {
    s.points_since(since).map(|p| p.max).reduce(f64::max)
}

fn median(s: &Series, since: u64, scratch: &mut Vec<f64>) -> Option<f64> {
    scratch.clear();
    scratch.extend(s.points_since(since).map(|p| p.last));
    if scratch.is_empty() {
        return None;
    }
    let mid = scratch.len() / 2;
    let (_, m, _) = scratch.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

impl Peaks {
    /// The peaks of window `w` over stretch `st`, at monotonic `now`.
    pub fn of(w: &Window, st: Stretch, now: u64, scratch: &mut Vec<f64>) -> Peaks {
        let age = |from: Option<u64>| from.map(|f| now.saturating_sub(f) as f64 / 1000.0);
        Peaks {
            basis: highest(w.basis(), st.since).zip(age(st.basis_from)),
            heap: highest(&w.go_heap_peak, st.go_since).zip(age(st.go_from)),
            heap_from_goal: w.go_next_gc.points_since(st.go_since).next().is_some(),
            runtime_other: highest(&w.go_runtime_other, st.go_since),
            outside_median: median(&w.off_heap, st.go_since, scratch),
        }
    }
}

fn ceil_mib(b: f64) -> u64 {
    (b.max(0.0).round() as u64).div_ceil(MIB) * MIB
}

/// ... or down.
fn floor_mib(b: f64) -> u64 {
    (b.max(0.0).round() as u64) / MIB * MIB
}

/// The recommendation from the window's peaks; `None` before `required_s`
/// of history, or while a Go runtime's history is shorter than that.
/// `kernel` is the cgroup's kernel memory now.
pub fn recommend(p: &Peaks, required_s: f64, limit_basis: LimitBasis, kernel: Option<u64>) -> Option<Recommendation> {
    let (observed, basis_s) = p.basis.filter(|(_, s)| *s >= required_s)?;
    let Some((heap, go_s)) = p.heap else {
        let limit = ceil_mib(observed * (1.0 + CGROUP_MARGIN));
        return Some(Recommendation {
            basis: RecommendationBasis::CgroupPeak,
            memory_limit_bytes: limit,
            gomemlimit_bytes: None,
            margin: CGROUP_MARGIN,
            heap_peak_bytes: None,
            runtime_other_bytes: None,
            outside_runtime_bytes: None,
            kernel_bytes: kernel,
            observed_peak_bytes: observed as u64,
            limit_basis,
            history_s: basis_s,
        });
    };
    if go_s < required_s {
        return None;
    }
    let other = p.runtime_other.unwrap_or(0.0).max(0.0);
    let outside = p.outside_median.unwrap_or(0.0).max(0.0);
    let peak = (heap + other + outside).max(observed);
    let limit = ceil_mib(peak * (1.0 + GO_MARGIN));
    let gomemlimit = floor_mib(limit as f64 * (1.0 - GOMEMLIMIT_SLACK) - outside);
    Some(Recommendation {
        basis: if p.heap_from_goal {
            RecommendationBasis::GoHeapGoal
        } else {
            RecommendationBasis::GoHeapAlloc
        },
        memory_limit_bytes: limit,
        gomemlimit_bytes: Some(gomemlimit),
        margin: GO_MARGIN,
        heap_peak_bytes: Some(heap as u64),
        runtime_other_bytes: p.runtime_other.map(|o| o.max(0.0) as u64),
        outside_runtime_bytes: p.outside_median.map(|o| o.max(0.0) as u64),
        kernel_bytes: kernel,
        observed_peak_bytes: observed as u64,
        limit_basis,
        history_s: basis_s.min(go_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: f64 = MIB as f64;

    fn go_peaks(heap: f64, other: f64, outside: f64, observed: f64, s: f64) -> Peaks {
        Peaks {
            basis: Some((observed * M, s)),
            heap: Some((heap * M, s)),
            heap_from_goal: true,
            runtime_other: Some(other * M),
            outside_median: Some(outside * M),
        }
    }

    #[test]
    fn the_formula_with_go_data() {
        let r = recommend(
            &go_peaks(300.0, 20.0, 30.0, 340.0, 60.0),
            30.0,
            LimitBasis::Unreclaimable,
            None,
        )
        .unwrap();
        assert_eq!(r.basis, RecommendationBasis::GoHeapGoal);
        // ⌈1.1 × 350⌉ = 385 MiB; ⌊0.95 × 385 − 30⌋ = 335 MiB.
        assert_eq!(r.memory_limit_bytes, 385 * MIB);
        assert_eq!(r.gomemlimit_bytes, Some(335 * MIB));
        assert_eq!(r.heap_peak_bytes, Some(300 * MIB));
        assert_eq!(r.outside_runtime_bytes, Some(30 * MIB));
        // GOMEMLIMIT stays above the runtime's own peak (heap + other).
        assert!(r.gomemlimit_bytes.unwrap() >= 320 * MIB);
    }

    #[test]
    fn the_observed_peak_is_a_floor() {
        // The runtime's numbers explain less than the cgroup was seen at.
        let r = recommend(
            &go_peaks(100.0, 10.0, 0.0, 200.0, 60.0),
            30.0,
            LimitBasis::Unreclaimable,
            None,
        )
        .unwrap();
        assert_eq!(r.memory_limit_bytes, 220 * MIB);
    }

    #[test]
    fn whole_mib_up_for_the_limit_down_for_gomemlimit() {
        let mut p = go_peaks(100.0, 0.0, 0.0, 0.0, 60.0);
        p.heap = Some((100.0 * M + 1.0, 60.0));
        let r = recommend(&p, 30.0, LimitBasis::Unreclaimable, None).unwrap();
        assert_eq!(r.memory_limit_bytes % MIB, 0);
        assert_eq!(r.memory_limit_bytes, 111 * MIB);
        assert_eq!(r.gomemlimit_bytes.unwrap() % MIB, 0);
        assert_eq!(r.gomemlimit_bytes, Some(105 * MIB));
    }

    #[test]
    fn without_go_data_the_cgroup_peak_with_a_larger_margin() {
        let p = Peaks {
            basis: Some((200.0 * M, 45.0)),
            ..Peaks::default()
        };
        let r = recommend(&p, 30.0, LimitBasis::WorkingSet, Some(5 * MIB)).unwrap();
        assert_eq!(r.basis, RecommendationBasis::CgroupPeak);
        assert_eq!(r.memory_limit_bytes, 260 * MIB);
        assert_eq!(r.gomemlimit_bytes, None);
        assert_eq!(r.margin, CGROUP_MARGIN);
        assert_eq!(r.limit_basis, LimitBasis::WorkingSet);
    }

    #[test]
    fn too_little_history_is_no_recommendation() {
        for (basis_s, go_s) in [(29.0, 29.0), (29.0, 60.0), (60.0, 10.0)] {
            let mut p = go_peaks(300.0, 20.0, 30.0, 340.0, basis_s);
            p.heap = Some((300.0 * M, go_s));
            assert_eq!(
                recommend(&p, 30.0, LimitBasis::Unreclaimable, None),
                None,
                "{basis_s} {go_s}"
            );
        }
        assert_eq!(
            recommend(&Peaks::default(), 30.0, LimitBasis::Unreclaimable, None),
            None
        );
    }

    #[test]
    fn heap_alloc_maxima_without_a_goal() {
        let mut p = go_peaks(300.0, 20.0, 30.0, 340.0, 60.0);
        p.heap_from_goal = false;
        let r = recommend(&p, 30.0, LimitBasis::Unreclaimable, None).unwrap();
        assert_eq!(r.basis, RecommendationBasis::GoHeapAlloc);
    }
}
