//! The GC's recent pace: its cycle rate and its share of the CPU, from the
//! deltas of the runtime's cumulative counters between Go scrapes.
//!
//! NumGC counts cycles since the program started, so the rate is its rise
//! over the window's time. The CPU share comes from runtime/metrics where
//! the source exports it (`/cpu/classes/gc/total:cpu-seconds` against
//! `/cpu/classes/total:cpu-seconds`), else from MemStats.GCCPUFraction,
//! which is the GC's share since the program started: with the process's
//! age `a`, the GC used `f·a` of the available CPU-time (per unit of
//! GOMAXPROCS), so its share between two scrapes is
//! `(f₂·a₂ − f₁·a₁) / (a₂ − a₁)`. Both shares are of the CPU available to
//! the program (GOMAXPROCS × wall time), as the runtime states them.
//!
//! A counter that goes back is a new runtime: the history starts afresh,
//! never a negative rate.

use crate::parse::go_runtime::GoSample;
use serde::Serialize;
use std::collections::VecDeque;

/// The window the pace is measured over: the newest scrape against the
/// oldest not older than this.
pub const WINDOW_MS: u64 = 30_000;
/// Scrapes kept at most, whatever the scrape pacing.
pub const MAX_POINTS: usize = 128;

/// The CPU counters of one scrape: GC time and the time it is a share of,
/// in the same unit, and where they came from (a delta is only taken
/// between two of the same kind).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cpu {
    /// runtime/metrics CPU classes, CPU-seconds.
    Classes { gc: f64, total: f64 },
    /// GCCPUFraction × the process's age, seconds.
    Fraction { gc: f64, age: f64 },
}

impl Cpu {
    fn of(s: &GoSample, age_s: Option<f64>) -> Option<Cpu> {
        if let (Some(gc), Some(total)) = (s.gc_cpu_seconds, s.total_cpu_seconds) {
            return Some(Cpu::Classes { gc, total });
        }
        let (f, age) = (s.gc_cpu_fraction?, age_s.filter(|a| a.is_finite() && *a > 0.0)?);
        Some(Cpu::Fraction { gc: f * age, age })
    }

    /// The GC's share between `self` (earlier) and `later`, in [0, 1];
    /// `None` across kinds or when no time passed.
    fn share_until(self, later: Cpu) -> Option<f64> {
        let (g, t) = match (self, later) {
            (Cpu::Classes { gc: g1, total: t1 }, Cpu::Classes { gc: g2, total: t2 }) => (g2 - g1, t2 - t1),
            (Cpu::Fraction { gc: g1, age: a1 }, Cpu::Fraction { gc: g2, age: a2 }) => (g2 - g1, a2 - a1),
            _ => return None,
        };
        (t > 0.0).then(|| (g / t).clamp(0.0, 1.0))
    }

    /// A counter went back: another runtime.
    fn went_back_from(self, earlier: Cpu) -> bool {
        match (earlier, self) {
            (Cpu::Classes { gc: g1, total: t1 }, Cpu::Classes { gc: g2, total: t2 }) => g2 < g1 || t2 < t1,
            (Cpu::Fraction { age: a1, .. }, Cpu::Fraction { age: a2, .. }) => a2 < a1,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    mono_ms: u64,
    num_gc: Option<u64>,
    cpu: Option<Cpu>,
}

/// The GC's pace over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GcPace {
    /// GC cycles per second over the window.
    pub cycles_per_second: Option<f64>,
    /// The GC's share of the CPU available to the program over the window.
    pub cpu_fraction: Option<f64>,
    /// The time the window spans, ms: how long the pace was measured over.
    pub span_ms: u64,
}

/// The recent scrapes of one Go runtime. It forgets them when the collector
/// says a new runtime started (a new `go_epoch`) or when a counter goes
/// back.
#[derive(Debug, Clone, Default)]
pub struct GcPaceTracker {
    points: VecDeque<Point>,
    epoch: u64,
}

/// The process's age in seconds at `unix_ms`, from its start time as a Unix
/// time in seconds (`process_start_time_seconds`).
pub fn age_from_start(unix_ms: u64, start_s: f64) -> Option<f64> {
    let age = unix_ms as f64 / 1000.0 - start_s;
    (start_s.is_finite() && start_s > 0.0 && age > 0.0).then_some(age)
}

impl GcPaceTracker {
    /// Takes one scrape of the runtime numbered `epoch`, finished at
    /// `mono_ms` (a monotonic clock), when the process was `age_s` seconds
    /// old (`None` when unknown).
    pub fn ingest(&mut self, s: &GoSample, epoch: u64, mono_ms: u64, age_s: Option<f64>) -> GcPace {
        let p = Point {
            mono_ms,
            num_gc: s.num_gc,
            cpu: Cpu::of(s, age_s),
        };
        let restarted = self.points.back().is_some_and(|last| {
            matches!((last.num_gc, p.num_gc), (Some(a), Some(b)) if b < a)
                || matches!((last.cpu, p.cpu), (Some(a), Some(b)) if b.went_back_from(a))
                || p.mono_ms < last.mono_ms
        });
        if epoch != self.epoch || restarted {
            self.points.clear();
            self.epoch = epoch;
        }
        self.points.push_back(p);
        // Keep the newest point at or before the window's start, so the
        // window spans the whole of it once the history is long enough.
        while self.points.len() > 2 && (self.points[1].mono_ms + WINDOW_MS <= mono_ms || self.points.len() > MAX_POINTS)
        {
            self.points.pop_front();
        }
        self.pace()
    }

    fn pace(&self) -> GcPace {
        let (Some(first), Some(last)) = (self.points.front(), self.points.back()) else {
            return GcPace::default();
        };
        let span_ms = last.mono_ms - first.mono_ms;
        if span_ms == 0 {
            return GcPace::default();
        }
        let cycles_per_second = match (first.num_gc, last.num_gc) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1000.0 / span_ms as f64),
            _ => None,
        };
        let cpu_fraction = match (first.cpu, last.cpu) {
            (Some(a), Some(b)) => a.share_until(b),
            _ => None,
        };
        GcPace {
            cycles_per_second,
            cpu_fraction,
            span_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(num_gc: u64, fraction: f64) -> GoSample {
        GoSample {
            num_gc: Some(num_gc),
            gc_cpu_fraction: Some(fraction),
            ..GoSample::default()
        }
    }

    #[test]
    fn the_cycle_rate_is_numgc_over_the_window() {
        let mut t = GcPaceTracker::default();
        assert_eq!(t.ingest(&s(100, 0.0), 1, 1_000, None), GcPace::default());
        // 9 cycles a second for 5 s.
        let p = t.ingest(&s(145, 0.0), 1, 6_000, None);
        assert_eq!((p.cycles_per_second, p.span_ms), (Some(9.0), 5_000));
        // Past the window: the oldest scrapes age out, the pace is recent.
        for i in 1..=40u64 {
            t.ingest(&s(145 + i, 0.0), 1, 6_000 + i * 1_000, None);
        }
        let p = t.ingest(&s(186, 0.0), 1, 47_000, None);
        assert_eq!(p.span_ms, WINDOW_MS);
        assert!((p.cycles_per_second.unwrap() - 1.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn the_cpu_share_is_the_recent_one_not_the_lifetime_one() {
        // 100 s of a calm program at 1 %, then 10 s at 40 %: the lifetime
        // fraction reads 4.5 %, the recent share 40 %.
        let mut t = GcPaceTracker::default();
        let f1 = 0.01;
        t.ingest(&s(10, f1), 1, 0, Some(100.0));
        let f2 = (0.01 * 100.0 + 0.40 * 10.0) / 110.0;
        let p = t.ingest(&s(40, f2), 1, 10_000, Some(110.0));
        assert!((p.cpu_fraction.unwrap() - 0.40).abs() < 1e-9, "{p:?}");
        // Without the age, no share (never the lifetime fraction).
        let mut t = GcPaceTracker::default();
        t.ingest(&s(10, f1), 1, 0, None);
        assert_eq!(t.ingest(&s(40, f2), 1, 10_000, None).cpu_fraction, None);
    }

    #[test]
    fn the_cpu_classes_come_first_where_exported() {
        let at = |gc: f64, total: f64| GoSample {
            num_gc: Some(1),
            gc_cpu_seconds: Some(gc),
            total_cpu_seconds: Some(total),
            gc_cpu_fraction: Some(0.9),
            ..GoSample::default()
        };
        let mut t = GcPaceTracker::default();
        t.ingest(&at(1.0, 100.0), 1, 0, Some(50.0));
        let p = t.ingest(&at(6.0, 120.0), 1, 10_000, Some(60.0));
        assert_eq!(p.cpu_fraction, Some(0.25));
    }

    #[test]
    fn a_restart_starts_afresh_never_a_negative_rate() {
        let mut t = GcPaceTracker::default();
        t.ingest(&s(5000, 0.3), 1, 0, Some(600.0));
        t.ingest(&s(5090, 0.3), 1, 10_000, Some(610.0));
        // NumGC went back (the collector has not said so yet): a new runtime.
        let p = t.ingest(&s(3, 0.01), 1, 11_000, Some(1.0));
        assert_eq!(p, GcPace::default());
        let p = t.ingest(&s(13, 0.02), 1, 16_000, Some(6.0));
        assert_eq!(p.cycles_per_second, Some(2.0));
        assert!((p.cpu_fraction.unwrap() - (0.12 - 0.01) / 5.0).abs() < 1e-9);
        // A new epoch from the collector forgets too, even with NumGC higher.
        let p = t.ingest(&s(50, 0.02), 2, 17_000, Some(1.0));
        assert_eq!(p, GcPace::default());
        // The process's age going back (a new process, NumGC alike): afresh.
        t.ingest(&s(60, 0.02), 2, 18_000, Some(2.0));
        assert_eq!(t.ingest(&s(61, 0.5), 2, 19_000, Some(0.5)), GcPace::default());
        // CPU classes going back: afresh.
        let at = |gc: f64, total: f64| GoSample {
            num_gc: Some(100),
            gc_cpu_seconds: Some(gc),
            total_cpu_seconds: Some(total),
            ..GoSample::default()
        };
        let mut t = GcPaceTracker::default();
        t.ingest(&at(5.0, 100.0), 1, 0, None);
        assert_eq!(t.ingest(&at(0.1, 1.0), 1, 1_000, None), GcPace::default());
    }

    #[test]
    fn the_age_from_a_start_time() {
        assert_eq!(age_from_start(1_000_500, 900.0), Some(100.5));
        assert_eq!(age_from_start(1_000_000, 2000.0), None);
        assert_eq!(age_from_start(1_000_000, f64::NAN), None);
        assert_eq!(age_from_start(1_000_000, 0.0), None);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = GcPaceTracker::default();
        for i in 0..1000u64 {
            t.ingest(&s(i, 0.0), 1, i * 10, None);
        }
        assert!(t.points.len() <= MAX_POINTS);
    }
}
