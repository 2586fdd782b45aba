//! The trend analysis: history over the window, robust slopes, time to OOM,
//! risk and the growth-based causes. Pure: a [`Sample`] (with its monotonic
//! time) in, an [`Analysis`] out.
//!
//! Time to OOM counts the peaks the heap reaches before each GC. The kernel
//! kills when charged memory reaches the limit, and a Go heap grows to NextGC
//! before each collection, so with Go data the prediction is:
//! - the heap may grow into the room left, limit − basis, less
//!   [`HEAP_GROWTH_OVERHEAD`] for what the runtime charges beside it: to
//!   `target` = resident heap spans + room / (1 + overhead);
//! - if NextGC ≥ target, this very cycle reaches the limit: time =
//!   (target − HeapAlloc) / allocation rate (the slope of TotalAlloc);
//! - else the live heap must first grow until a cycle's goal reaches the
//!   target: live_needed = target / (NextGC / live), reached at the live
//!   heap's slope; then the heap fills up to the target at the allocation rate;
//! - memory outside the Go runtime growing on its own (cgo, mmap; basis −
//!   (Sys − HeapReleased)) gives a second estimate: the room left after the
//!   heap's growth to NextGC, over its slope;
//!   the prediction is the smaller.
//!
//! Without Go data it is the basis's own robust line to the limit.

use super::breakdown::{breakdown, Breakdown, KernelKind};
use super::diagnosis::{diagnose_now, gc_thrash, mib, Cause, Finding, Thresholds};
use super::findings::FindingsState;
pub use super::go_heap::HEAP_GROWTH_OVERHEAD;
use super::go_heap::{
    beyond_memlimit, cycle_goal, heap_spans_resident, memlimit_heap_goal, runtime_resident, stacks_in_goal,
};
use super::recommend::{recommend, Peaks, Recommendation, Stretch, MIN_HISTORY_S};
use super::risk::{Risk, RiskState};
use super::slope::{theil_sen, Fit};
use super::window::{EventKind, PredictedLine, Series, SharedWindow, Window};
use crate::sample::{GoReading, KillHow, LimitBasis, Sample};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A trend spanning this long is judged by the ordinary rule (tau, no
/// levelling off). Before, the start-up rule applies: a heap warming up to
/// its steady size after a (re)start rises too, so a rise is called only
/// once it is established (see [`EARLY_SPAN_S`]).
pub const MIN_SPAN_S: f64 = 30.0;
/// The start-up rule: from this much history, a rise is called before
/// [`MIN_SPAN_S`] when it is established: near-monotonic (tau at least
/// [`EARLY_TAU`]), not slowing (the recent half at least
/// [`EARLY_DECELERATION`] of the older half's pace) and, for a Go target,
/// in the live heap across at least [`EARLY_GC_CYCLES`] collections. A
/// warming heap rises, then decelerates and levels; a leak keeps its pace.
pub const EARLY_SPAN_S: f64 = 10.0;
pub const EARLY_TAU: f64 = 0.85;
pub const EARLY_DECELERATION: f64 = 0.75;
pub const EARLY_GC_CYCLES: u64 = 3;
/// Fewest points for a trend of a series read every poll ...
pub const MIN_POINTS: usize = 8;
/// ... and of one read at each Go scrape (every 5 s by default, so 4
/// points span 15 s: the start-up rule may call an established rise within
/// 20 s of start-up). So few points tell a warm-up from a leak poorly: a
/// start-up call on fewer than [`MIN_POINTS`] needs the limit-basis value,
/// read every poll, to rise established by the same rule.
pub const MIN_GO_POINTS: usize = 4;
/// A trend that was significant this recently (ms) and still rises with tau
/// of at least [`MIN_TAU`] stays significant: three Go scrapes at the
/// default pacing.
pub const TREND_HOLD_MS: u64 = 15_000;
/// Kendall's tau a rise needs to count as a trend (a single step in the
/// middle of the window scores ~0.5, noise ~0).
pub const MIN_TAU: f64 = 0.55;
/// A rise whose recent half is slower than this fraction of its older half
/// is levelling off, not leaking.
pub const DECELERATION: f64 = 0.5;
/// Proximity: the basis at this fraction of the limit is a warning ...
pub const PROXIMITY_WARN: f64 = 0.90;
/// ... and at this fraction critical.
pub const PROXIMITY_CRITICAL: f64 = 0.97;
/// A lower risk must clear the thresholds widened by this factor (and the
/// proximity ones lowered by [`PROXIMITY_MARGIN`]).
pub const TTO_MARGIN: f64 = 1.25;
pub const PROXIMITY_MARGIN: f64 = 0.03;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AnalysisConfig {
    pub window_ms: u64,
    pub warn_within_s: f64,
    pub critical_within_s: f64,
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    pub bytes_per_second: f64,
    pub tau: f64,
    pub span_s: f64,
    pub points: usize,
    /// A real, sustained rise: enough data, consistent (tau), not levelling off.
    pub significant: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Too little history yet for trend-based calls.
    pub warming_up: bool,
    pub history_s: f64,
    /// Robust slopes over the window: unreclaimable, working_set, go_heap_live,
    /// and basis / off_heap where known.
    pub slopes: BTreeMap<SlopeSeries, Trend>,
    /// The memory breakdown of this sample (fragmentation bound, reclaimable
    /// but unreleased, …); the status shows it beside the analysis.
    #[serde(skip)]
    pub breakdown: Breakdown,
    /// The limit the prediction is made against (bytes), `None` if unlimited.
    pub limit: Option<u64>,
    pub basis: Option<u64>,
    /// Seconds to the OOM kill; `None` when nothing grows toward the limit.
    pub time_to_oom_s: Option<f64>,
    /// How the prediction was made, in words.
    pub prediction: String,
    /// The level the thresholds give this poll, before hysteresis.
    pub risk_now: Risk,
    pub risk: Risk,
    pub risk_reason: String,
    pub findings: Vec<Finding>,
    /// The memory limit and GOMEMLIMIT to set, with their inputs; `None`
    /// before enough history (see [`super::recommend`]).
    pub recommendation: Option<Recommendation>,
}

impl Analysis {
    pub fn has(&self, c: Cause) -> bool {
        self.findings.iter().any(|f| f.cause == c)
    }
}

pub struct Analyzer {
    cfg: AnalysisConfig,
    window: SharedWindow,
    /// Monotonic ms where the current target instance's (and cgroup's)
    /// history starts: the fits read only what came after it.
    since: u64,
    /// The same for the current Go runtime ...
    go_since: u64,
    /// ... and for the current limit basis.
    basis_since: u64,
    last_go_ms: Option<u64>,
    /// NumGC at the first scrape of the current Go runtime.
    go_first_num_gc: Option<u64>,
    /// When each series' trend was last significant: a trend that still
    /// rises is held through a brief dip (see [`TREND_HOLD_MS`]).
    significant_at: BTreeMap<SlopeSeries, u64>,
    limit_basis: Option<LimitBasis>,
    /// When the current stretch of basis values, and of Go scrapes, began:
    /// the history behind a recommendation.
    basis_from: Option<u64>,
    go_from: Option<u64>,
    go_epoch: u64,
    instance: Option<u64>,
    last_pid: Option<u32>,
    cgroup: Option<PathBuf>,
    oom_kills: Option<u64>,
    risk: RiskState,
    findings: FindingsState,
    pts: Vec<(f64, f64)>,
    scratch: Vec<f64>,
}

impl Analyzer {
    pub fn new(cfg: AnalysisConfig) -> Analyzer {
        Analyzer {
            window: SharedWindow::new(Window::new(cfg.window_ms)),
            cfg,
            since: 0,
            go_since: 0,
            basis_since: 0,
            last_go_ms: None,
            go_first_num_gc: None,
            significant_at: BTreeMap::new(),
            limit_basis: None,
            basis_from: None,
            go_from: None,
            go_epoch: 0,
            instance: None,
            last_pid: None,
            cgroup: None,
            oom_kills: None,
            risk: RiskState::default(),
            findings: FindingsState::default(),
            pts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The history, shared for `/api/v1/history`.
    pub fn history(&self) -> SharedWindow {
        self.window.clone()
    }

    /// Bytes the history holds (for the benchmark).
    pub fn history_bytes(&self) -> usize {
        self.window.lock().heap_bytes()
    }

    fn fit(&mut self, w: &Window, which: Which, use_max: bool) -> Option<Fit> {
        let (s, since) = match which {
            Which::Basis => (w.basis(), self.since.max(self.basis_since)),
            Which::Unreclaimable => (&w.unreclaimable, self.since),
            Which::WorkingSet => (&w.working_set, self.since),
            Which::Live => (&w.go_heap_live, self.go_since),
            Which::TotalAlloc => (&w.total_alloc, self.go_since),
            Which::Nonheap => (&w.off_heap, self.go_since),
            Which::Kernel => (&w.kernel, self.since.max(self.go_since)),
            Which::Stack => (&w.go_stack, self.go_since),
        };
        let end = s.last()?.t_ms;
        self.pts.clear();
        self.pts.extend(s.points_since(since).map(|p| {
            (
                (p.t_ms as f64 - end as f64) / 1000.0,
                if use_max { p.max } else { p.last },
            )
        }));
        theil_sen(&self.pts, &mut self.scratch)
    }

    /// The trend of one series. `early_ok`: the start-up rule may call it
    /// before [`MIN_SPAN_S`] (see [`EARLY_SPAN_S`]); `few_ok`: a series read
    /// at each Go scrape may be called on fewer than [`MIN_POINTS`] points
    /// (see [`MIN_GO_POINTS`]).
    fn trend(&mut self, w: &Window, which: Which, early_ok: bool, few_ok: bool) -> Option<Trend> {
        let fit = self.fit(w, which, which == Which::Basis)?;
        let settled = fit.span_s >= MIN_SPAN_S;
        let early = !settled && early_ok && fit.span_s >= EARLY_SPAN_S && fit.tau >= EARLY_TAU;
        let min_points = if which.per_go_scrape() && few_ok {
            MIN_GO_POINTS
        } else {
            MIN_POINTS
        };
        let mut significant = fit.n >= min_points && (settled || early) && fit.tau >= MIN_TAU && fit.slope > 0.0;
        let slowing = if settled { DECELERATION } else { EARLY_DECELERATION };
        if significant && self.pts.len() >= min_points {
            // Levelling off (a warm-up reaching its plateau): the recent half
            // rises at a smaller pace than the older half.
            let half = self.pts.len() / 2;
            let (older, recent) = self.pts.split_at(half);
            if let (Some(o), Some(r)) = (
                theil_sen(older, &mut self.scratch),
                theil_sen(recent, &mut self.scratch),
            ) {
                if o.slope > 0.0 && r.slope < slowing * o.slope {
                    significant = false;
                }
            }
        }
        Some(Trend {
            bytes_per_second: fit.slope,
            tau: fit.tau,
            span_s: fit.span_s,
            points: fit.n,
            significant,
        })
    }

    /// Takes the sample of one poll (its `mono_ms` is now) and returns the
    /// analysis of the window that ends with it.
    pub fn update(&mut self, s: &Sample) -> Analysis {
        let now = s.mono_ms;
        let shared = self.window.clone();
        let mut win = shared.lock();
        win.set_now(now, s.time_ms);
        let fresh = self.track_instance(s, &mut win, now);
        let go = s.go.as_ref();
        let new_go = go.filter(|g| self.last_go_ms != Some(g.scraped_mono_ms));
        self.restart_trends(s, &mut win, fresh, new_go, now);
        let basis = s.basis_value(s.limit_basis);
        let breakdown = breakdown(s.cgroup.as_ref(), s.smaps.as_ref(), go.map(|g| &g.sample), now);
        self.record(s, &mut win, new_go, basis, breakdown.kernel_total, now);
        let (slopes, alloc_rate) = self.trends(&win, go, new_go, now);
        // How much of memory outside the heap is the kernel's: its growth
        // over the same stretch.
        let kernel_slope = slopes
            .contains_key(&SlopeSeries::OffHeap)
            .then(|| self.fit(&win, Which::Kernel, false))
            .flatten()
            .map(|f| f.slope);
        let limit = s.limit_bytes();
        let history_s = win.basis().span_since_s(self.since.max(self.basis_since));
        // Warming up: too little history for the ordinary rule and no rise
        // established by the start-up rule.
        let established = slopes.values().any(|t| t.significant);
        let warming_up = history_s < EARLY_SPAN_S || (history_s < MIN_SPAN_S && !established);
        let (tto, prediction) = predict(s, limit, basis, &slopes, alloc_rate, warming_up, history_s);
        let (risk_now, risk, risk_reason) = self.assess_risk(tto, limit, basis, now);
        let since = self.since.max(self.basis_since);
        let stretch = Stretch {
            since,
            go_since: self.go_since.max(self.since),
            basis_from: self.basis_from,
            go_from: self.go_from,
        };
        let peaks = Peaks::of(&win, stretch, now, &mut self.scratch);
        win.set_prediction(match (tto, limit, basis) {
            (Some(t), Some(l), Some(b)) => Some(PredictedLine {
                from_ms: now,
                from_bytes: b,
                to_ms: now.saturating_add((t * 1000.0) as u64),
                to_bytes: l,
            }),
            _ => None,
        });
        drop(win);

        let mut seen = diagnose_now(s, &breakdown, &self.cfg.thresholds);
        seen.extend(growth_findings(s, limit, &slopes, kernel_slope, &breakdown));
        let findings = self.findings.update(seen, now);
        let required_s = MIN_HISTORY_S.min(self.cfg.window_ms as f64 / 1000.0);
        let recommendation = recommend(&peaks, required_s, s.limit_basis, breakdown.kernel_total);
        Analysis {
            warming_up,
            history_s,
            slopes,
            limit,
            basis,
            time_to_oom_s: tto,
            prediction,
            risk_now,
            risk,
            risk_reason,
            findings,
            breakdown,
            recommendation,
        }
    }

    /// A new target instance (the collector says so) or a move to another
    /// cgroup: true when the trends start afresh. Marks restarts and OOM
    /// kills in the history, which stays for display.
    fn track_instance(&mut self, s: &Sample, win: &mut Window, now: u64) -> bool {
        let mut fresh = false;
        if s.target.pid.is_some() && Some(s.target.instance) != self.instance {
            if self.instance.is_some() {
                fresh = true;
                let detail = match (self.last_pid, s.target.pid) {
                    (Some(old), Some(new)) if old != new => format!("pid {old} \u{2192} {new}"),
                    (_, Some(new)) => format!("a new process with pid {new}"),
                    _ => "a new process".to_owned(),
                };
                win.event(now, EventKind::TargetRestart, detail);
            }
            self.instance = Some(s.target.instance);
        }
        if s.target.pid.is_some() {
            self.last_pid = s.target.pid;
        }
        if s.target.cgroup.is_some() && s.target.cgroup != self.cgroup {
            fresh |= self.cgroup.is_some();
            self.cgroup = s.target.cgroup.clone();
        }
        if let Some(before) = self.oom_kills.filter(|b| s.oom_kills_total > *b) {
            let n = s.oom_kills_total - before;
            let what = if n == 1 {
                "an OOM kill".to_owned()
            } else {
                format!("{n} OOM kills")
            };
            let how = match s.last_oom_kill.as_ref() {
                Some(k) if k.how == KillHow::Inferred => {
                    "inferred: the target died with its cgroup near the limit".to_owned()
                }
                Some(k) if k.child => format!(
                    "of another process of the target's cgroup ({}), counted by the kernel",
                    match (&k.comm, k.pid) {
                        (Some(c), Some(p)) => format!("{c}, PID {p}"),
                        (None, Some(p)) => format!("PID {p}"),
                        _ => "unnamed".to_owned(),
                    }
                ),
                _ => "counted by the kernel in the target's cgroup".to_owned(),
            };
            win.event(
                now,
                EventKind::OomKill,
                format!("{what}, {how} ({} in all)", s.oom_kills_total),
            );
        }
        self.oom_kills = Some(s.oom_kills_total);
        fresh
    }

    /// Starts the trends afresh after [`Analyzer::track_instance`] said so,
    /// their Go part after a new Go runtime, the basis' after a change of
    /// basis. The fits read what follows the start.
    fn restart_trends(&mut self, s: &Sample, win: &mut Window, fresh: bool, new_go: Option<&GoReading>, now: u64) {
        if fresh {
            self.since = now;
            self.basis_from = None;
            self.findings.clear();
            self.significant_at.clear();
            win.cut(false);
        }
        if fresh || s.target.go_epoch != self.go_epoch {
            self.go_epoch = s.target.go_epoch;
            // A reading taken before this poll belongs to the new runtime
            // only if it is new.
            self.go_since = new_go.map_or(now, |g| g.scraped_mono_ms.min(now));
            self.go_from = None;
            self.go_first_num_gc = None;
            self.significant_at
                .retain(|series, _| !Which::from(*series).per_go_scrape());
            win.cut(true);
        }
        // The basis may change (the cgroup became unreadable): its trend
        // starts afresh.
        if self.limit_basis != Some(s.limit_basis) {
            if self.limit_basis.is_some() {
                self.basis_since = now;
                self.basis_from = None;
            }
            self.limit_basis = Some(s.limit_basis);
        }
    }

    /// Adds this poll's values (and a new Go reading's) to the window;
    /// `kernel`: the cgroup's kernel memory, from the poll's breakdown.
    fn record(
        &mut self,
        s: &Sample,
        win: &mut Window,
        new_go: Option<&GoReading>,
        basis: Option<u64>,
        kernel: Option<u64>,
        now: u64,
    ) {
        win.limit_basis = s.limit_basis;
        if basis.is_some() {
            self.basis_from.get_or_insert(now);
        }
        if let Some(g) = new_go {
            self.go_from.get_or_insert(g.scraped_mono_ms.min(now));
        }
        let at_now = |series: &mut Series, v: Option<u64>| {
            if let Some(v) = v {
                series.push(now, v as f64);
            }
        };
        at_now(&mut win.usage, s.usage());
        at_now(&mut win.unreclaimable, s.unreclaimable());
        at_now(&mut win.working_set, s.working_set());
        at_now(&mut win.rss, s.rss());
        at_now(&mut win.kernel, kernel);
        if let Some(l) = s.limit {
            win.limit.push(now, l.bytes().map_or(f64::INFINITY, |b| b as f64));
        }
        if let Some(g) = new_go {
            self.last_go_ms = Some(g.scraped_mono_ms);
            let t = g.scraped_mono_ms;
            if let Some(l) = g.heap_live {
                win.go_heap_live.push(t, l as f64);
            }
            if let Some(n) = g.sample.next_gc {
                win.go_next_gc.push(t, n as f64);
            }
            if let Some(a) = g.sample.total_alloc {
                win.total_alloc.push(t, a as f64);
            }
            if let (Some(b), Some(r)) = (basis, heap_resident(s)) {
                win.off_heap.push(t, b.saturating_sub(r) as f64);
            }
            let gs = &g.sample;
            if let Some(p) = cycle_goal(gs, g.gomemlimit()).max(gs.heap_alloc) {
                win.go_heap_peak.push(t, p as f64);
            }
            if let Some(st) = gs.stack_inuse {
                win.go_stack.push(t, st as f64);
            }
            if let Some(n) = gs.goroutines {
                win.go_goroutines.push(t, n as f64);
            }
            let beside_heap = gs.sys.zip(gs.heap_sys).map(|(s, h)| s.saturating_sub(h));
            let unfilled = gs.heap_inuse.zip(gs.heap_alloc).map(|(i, a)| i.saturating_sub(a));
            if beside_heap.is_some() || unfilled.is_some() {
                win.go_runtime_other
                    .push(t, (beside_heap.unwrap_or(0) + unfilled.unwrap_or(0)) as f64);
            }
        }
    }

    /// Each series' trend, and the Go allocation rate. The start-up rule's
    /// evidence: for a Go target, only the live heap rising across several
    /// collections; without Go, the basis itself.
    fn trends(
        &mut self,
        win: &Window,
        go: Option<&GoReading>,
        new_go: Option<&GoReading>,
        now: u64,
    ) -> (BTreeMap<SlopeSeries, Trend>, Option<f64>) {
        let num_gc = go.and_then(|g| g.sample.num_gc);
        if new_go.is_some() && self.go_first_num_gc.is_none() {
            self.go_first_num_gc = num_gc;
        }
        let gc_cycles = match (num_gc, self.go_first_num_gc) {
            (Some(n), Some(first)) => n.saturating_sub(first),
            _ => 0,
        };
        // The basis rising established by the start-up rule: what a Go
        // series' start-up call on few points needs beside its own.
        let basis_rises = self
            .trend(win, Which::Basis, true, false)
            .is_some_and(|t| t.significant);
        let mut slopes = BTreeMap::new();
        for series in SlopeSeries::ALL {
            let early_ok = match series {
                SlopeSeries::GoHeapLive => gc_cycles >= EARLY_GC_CYCLES,
                SlopeSeries::Basis | SlopeSeries::Unreclaimable | SlopeSeries::WorkingSet => go.is_none(),
                SlopeSeries::OffHeap => false,
                // Goroutines parked for ever rise steadily from the start; a
                // pool warming up levels off (the rule's deceleration test).
                SlopeSeries::GoStack => true,
            };
            if let Some(mut t) = self.trend(win, series.into(), early_ok, basis_rises) {
                if t.significant {
                    self.significant_at.insert(series, now);
                } else if self
                    .significant_at
                    .get(&series)
                    .is_some_and(|at| now.saturating_sub(*at) <= TREND_HOLD_MS)
                    && t.bytes_per_second > 0.0
                    && t.tau >= MIN_TAU
                {
                    // Held: a new scrape that bends the line a little (a
                    // changed GOGC estimate, the live heap's method changing
                    // as GOMEMLIMIT starts to bind) does not drop a rise
                    // that was established a moment ago.
                    t.significant = true;
                }
                slopes.insert(series, t);
            }
        }
        let alloc_rate = self
            .fit(win, Which::TotalAlloc, false)
            .map(|f| f.slope)
            .filter(|r| *r > 0.0);
        (slopes, alloc_rate)
    }

    /// The risk now and with hysteresis, and why.
    fn assess_risk(
        &mut self,
        tto: Option<f64>,
        limit: Option<u64>,
        basis: Option<u64>,
        now: u64,
    ) -> (Risk, Risk, String) {
        let frac = match (limit, basis) {
            (Some(l), Some(b)) => b as f64 / l.max(1) as f64,
            _ => 0.0,
        };
        let (w, c) = (self.cfg.warn_within_s, self.cfg.critical_within_s);
        let raw = level(tto, frac, w, c, PROXIMITY_WARN, PROXIMITY_CRITICAL);
        let raw_margin = level(
            tto,
            frac,
            w * TTO_MARGIN,
            c * TTO_MARGIN,
            PROXIMITY_WARN - PROXIMITY_MARGIN,
            PROXIMITY_CRITICAL - PROXIMITY_MARGIN,
        );
        let risk = self.risk.update(raw, raw_margin, now);
        let risk_reason = match (risk, tto) {
            (Risk::Ok, _) => "no OOM kill predicted within --warn-within, and the basis is not near the limit".into(),
            (_, Some(t)) if t <= if risk == Risk::Critical { c } else { w } * TTO_MARGIN => {
                format!("OOM kill predicted in {:.0} s", t)
            }
            _ => format!("the limit-basis value is at {:.1} % of the limit", 100.0 * frac),
        };

        (raw, risk, risk_reason)
    }
}

/// The time to OOM and the prediction's words: none while warming up or
/// without a limit or a basis; the Go model for a Go target, else a line.
fn predict(
    s: &Sample,
    limit: Option<u64>,
    basis: Option<u64>,
    slopes: &BTreeMap<SlopeSeries, Trend>,
    alloc_rate: Option<f64>,
    warming_up: bool,
    history_s: f64,
) -> (Option<f64>, String) {
    let go = s.go.as_ref();
    match (limit, basis) {
        (None, _) => (None, "no limit on the cgroup's path: nothing to run out of".to_owned()),
        (_, None) => (None, "the limit-basis value is not readable".to_owned()),
        (Some(_), Some(_)) if warming_up => (
            None,
            format!(
                "warming up: {history_s:.0} s of history; a rise is called before {MIN_SPAN_S:.0} s only once \
                     established (steady, not slowing{})",
                if go.is_some() {
                    ", in the live heap across GC cycles"
                } else {
                    ""
                }
            ),
        ),
        (Some(l), Some(b)) => match go {
            Some(_) => go_model(s, l, b, slopes, alloc_rate),
            None => linear_model(l, b, slopes.get(&SlopeSeries::Basis)),
        },
    }
}

/// The series the analysis fits a trend to, as named in the status JSON
/// (`slopes`) and the `series` label of `headroom_leak_slope_bytes_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlopeSeries {
    /// The limit-basis value.
    Basis,
    GoHeapLive,
    /// Charged memory outside the Go runtime: basis − (Sys − HeapReleased).
    OffHeap,
    /// Goroutine stacks (StackInuse).
    GoStack,
    Unreclaimable,
    WorkingSet,
}

impl SlopeSeries {
    pub const ALL: [SlopeSeries; 6] = [
        SlopeSeries::Unreclaimable,
        SlopeSeries::WorkingSet,
        SlopeSeries::Basis,
        SlopeSeries::GoHeapLive,
        SlopeSeries::OffHeap,
        SlopeSeries::GoStack,
    ];
    /// The ones exported as `headroom_leak_slope_bytes_per_second{series}`.
    pub const EXPORTED: [SlopeSeries; 3] = [
        SlopeSeries::Unreclaimable,
        SlopeSeries::WorkingSet,
        SlopeSeries::GoHeapLive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlopeSeries::Basis => "basis",
            SlopeSeries::GoHeapLive => "go_heap_live",
            SlopeSeries::OffHeap => "off_heap",
            SlopeSeries::GoStack => "go_stack",
            SlopeSeries::Unreclaimable => "unreclaimable",
            SlopeSeries::WorkingSet => "working_set",
        }
    }
}

impl From<SlopeSeries> for Which {
    fn from(s: SlopeSeries) -> Which {
        match s {
            SlopeSeries::Basis => Which::Basis,
            SlopeSeries::GoHeapLive => Which::Live,
            SlopeSeries::OffHeap => Which::Nonheap,
            SlopeSeries::GoStack => Which::Stack,
            SlopeSeries::Unreclaimable => Which::Unreclaimable,
            SlopeSeries::WorkingSet => Which::WorkingSet,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Basis,
    Unreclaimable,
    WorkingSet,
    Live,
    TotalAlloc,
    Nonheap,
    Kernel,
    Stack,
}

impl Which {
    /// A series with a point at each Go scrape, not at each poll.
    fn per_go_scrape(self) -> bool {
        matches!(self, Which::Live | Which::TotalAlloc | Which::Nonheap | Which::Stack)
    }
}

/// Memory the Go runtime holds resident (see [`runtime_resident`]).
fn heap_resident(s: &Sample) -> Option<u64> {
    runtime_resident(&s.go.as_ref()?.sample)
}

fn level(tto: Option<f64>, frac: f64, warn_s: f64, crit_s: f64, prox_warn: f64, prox_crit: f64) -> Risk {
    let by_time = match tto {
        Some(t) if t <= crit_s => Risk::Critical,
        Some(t) if t <= warn_s => Risk::Warning,
        _ => Risk::Ok,
    };
    let by_prox = if frac >= prox_crit {
        Risk::Critical
    } else if frac >= prox_warn {
        Risk::Warning
    } else {
        Risk::Ok
    };
    by_time.max(by_prox)
}

fn linear_model(limit: u64, basis: u64, trend: Option<&Trend>) -> (Option<f64>, String) {
    if basis >= limit {
        return (Some(0.0), "the limit-basis value is at the limit".into());
    }
    match trend {
        Some(t) if t.significant => {
            let tto = (limit - basis) as f64 / t.bytes_per_second;
            (
                Some(tto),
                format!(
                    "the limit-basis value grows {:.1} KiB/s (robust line over {:.0} s)",
                    t.bytes_per_second / 1024.0,
                    t.span_s
                ),
            )
        }
        _ => (None, "the limit-basis value is not growing".into()),
    }
}

fn go_model(
    s: &Sample,
    limit: u64,
    basis: u64,
    slopes: &BTreeMap<SlopeSeries, Trend>,
    alloc_rate: Option<f64>,
) -> (Option<f64>, String) {
    let reading = s.go.as_ref().expect("go_model needs Go data");
    let g = &reading.sample;
    let memlimit = reading.gomemlimit();
    // GOMEMLIMIT makes the runtime collect before NextGC when it binds.
    let (Some(resident), Some(alloc), Some(goal)) = (heap_spans_resident(g), g.heap_alloc, cycle_goal(g, memlimit))
    else {
        return linear_model(limit, basis, slopes.get(&SlopeSeries::Basis));
    };
    if basis >= limit {
        return (Some(0.0), "the limit-basis value is at the limit".into());
    }
    // The heap may grow into the room left, less what the runtime charges
    // beside each new heap byte.
    let room = (limit - basis) as f64 / (1.0 + HEAP_GROWTH_OVERHEAD);
    let target = resident.saturating_add(room as u64);
    // The goal's part that goroutine stacks make (Go 1.18+: stacks ×
    // GOGC/100, not while the memory limit sets the goal): it does not grow
    // with the live heap.
    let gogc = reading
        .sample
        .gogc_percent
        .or(reading.gogc_env)
        .or(reading.gogc_estimate)
        .unwrap_or(100);
    let k = if stacks_in_goal(g.go_version.as_deref()) && gogc > 0 && reading.gomemlimit_binds != Some(true) {
        gogc as f64 / 100.0
    } else {
        0.0
    };
    let stacks_share = g.stack_inuse.unwrap_or(0) as f64 * k;
    let mut best: Option<(f64, String)> = None;
    let mut consider = |t: f64, why: String| {
        if t.is_finite() && best.as_ref().is_none_or(|(b, _)| t < *b) {
            best = Some((t.max(0.0), why));
        }
    };
    if goal >= target {
        if let Some(r) = alloc_rate {
            consider(
                target.saturating_sub(alloc) as f64 / r,
                format!(
                    "the heap's next GC goal {} is beyond the {} the heap can reach before the limit; allocating {}/s",
                    mib(goal),
                    mib(target),
                    mib(r as u64)
                ),
            );
        }
    } else if let (Some(t), Some(live)) = (
        // Grown as much as `heap_leak` asks: a time to OOM (and a warning)
        // never stands on a rise too small to be called a leak.
        slopes.get(&SlopeSeries::GoHeapLive).filter(|t| grew(t, Some(limit))),
        s.go.as_ref().and_then(|g| g.heap_live),
    ) {
        let ratio = ((goal as f64 - stacks_share).max(0.0) / live.max(1) as f64).max(1.0);
        // Under a memory limit that holds the goal below the target, the
        // heap reaches the target only when the live heap itself does (the
        // GC then runs without end and frees nothing).
        let capped = memlimit
            .and_then(|m| memlimit_heap_goal(g, m))
            .is_some_and(|m| m < target);
        let mut live_needed = if capped {
            target as f64 / (1.0 + SPIRAL_ROOM)
        } else {
            (target as f64 - stacks_share).max(0.0) / ratio
        };
        // Once the GC runs back to back under the limit (gc_thrash: the
        // live heap near the limit's goal, the GC's pace high) and the heap
        // has gone past the limit, the heap holds the live heap plus what
        // is allocated during each cycle: the charge grows with the live
        // heap from now on, not only once the spans resident now are full.
        // (The pace, not the live heap's nearness alone: under a binding
        // limit the live heap is read from a 3-scrape envelope, which can
        // sit well above it for a while. And past the limit, not the pace
        // alone: a GC slowed by a busy CPU looks back to back while the
        // limit still holds the heap, and the charge, where they are.)
        let past_limit = memlimit.is_some_and(|m| beyond_memlimit(g, m));
        if capped && past_limit && gc_thrash(reading, Some(limit)).is_some() {
            live_needed = live_needed.min(live as f64 + room);
        }
        let t1 = (live_needed - live as f64).max(0.0) / t.bytes_per_second;
        let fill = alloc_rate.unwrap_or(t.bytes_per_second).max(t.bytes_per_second);
        let t2 = (target as f64 - live_needed).max(0.0) / fill;
        consider(
            t1 + t2,
            format!(
                "the live heap grows {:.1} KiB/s; at {} live its GC goal ({:.2}× live) reaches the {} the heap can use",
                t.bytes_per_second / 1024.0,
                mib(live_needed as u64),
                ratio,
                mib(target)
            ),
        );
    }
    if let Some(t) = slopes.get(&SlopeSeries::GoStack).filter(|t| grew(t, Some(limit))) {
        // Goroutine stacks (grown enough to be goroutine_leak) are charged
        // as they grow and raise the GC goal by k = GOGC/100 of their
        // growth: the heap's peak before each GC rises with them.
        let rate = t.bytes_per_second * (1.0 + k * (1.0 + HEAP_GROWTH_OVERHEAD));
        let heap_growth = goal.saturating_sub(resident) as f64 * (1.0 + HEAP_GROWTH_OVERHEAD);
        let peak = basis.saturating_add(heap_growth as u64);
        consider(
            limit.saturating_sub(peak) as f64 / rate,
            format!(
                "goroutine stacks grow {:.1} KiB/s{}; the heap's peak before each GC rises {:.1} KiB/s with them",
                t.bytes_per_second / 1024.0,
                if k > 0.0 { " and raise the GC goal" } else { "" },
                rate / 1024.0
            ),
        );
    }
    if let Some(t) = slopes.get(&SlopeSeries::OffHeap).filter(|t| t.significant) {
        let heap_growth = goal.saturating_sub(resident) as f64 * (1.0 + HEAP_GROWTH_OVERHEAD);
        let peak = basis.saturating_add(heap_growth as u64);
        consider(
            limit.saturating_sub(peak) as f64 / t.bytes_per_second,
            format!(
                "memory outside the Go heap grows {:.1} KiB/s",
                t.bytes_per_second / 1024.0
            ),
        );
    }
    match best {
        Some((t, why)) => (Some(t), why),
        None => (
            None,
            "neither the live heap nor memory outside it grows toward the limit".into(),
        ),
    }
}

fn growth_findings(
    s: &Sample,
    limit: Option<u64>,
    slopes: &BTreeMap<SlopeSeries, Trend>,
    kernel_slope: Option<f64>,
    b: &Breakdown,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let grew = |t: &Trend| grew(t, limit);
    let stacks = slopes.get(&SlopeSeries::GoStack).filter(|t| grew(t));
    let live = slopes.get(&SlopeSeries::GoHeapLive).filter(|t| grew(t));
    // The heap growing slower than the stacks is what the leaked goroutines
    // reference: part of the goroutine leak, not a leak of its own.
    let heap_of_goroutines = stacks
        .zip(live)
        .is_some_and(|(st, l)| l.bytes_per_second < st.bytes_per_second);
    if let Some(t) = stacks {
        out.push(goroutine_leak(s, t, live.filter(|_| heap_of_goroutines)));
    }
    if let Some(t) = live.filter(|_| !heap_of_goroutines) {
        out.push(Finding {
            cause: Cause::HeapLeak,
            evidence: format!(
                "the live Go heap grew {} in {:.0} s ({:.1} KiB/s, tau {:.2}){}",
                mib((t.bytes_per_second * t.span_s) as u64),
                t.span_s,
                t.bytes_per_second / 1024.0,
                t.tau,
                s.go.as_ref()
                    .and_then(|g| g.heap_live)
                    .map_or(String::new(), |l| format!("; now {}", mib(l)))
            ),
            advice: "Live objects accumulate: take a heap profile (go tool pprof -sample_index=inuse_space \
                     http://TARGET/debug/pprof/heap) twice a few minutes apart and compare them (-base) to find \
                     what keeps growing: caches without eviction, maps never pruned, goroutines that never exit."
                .into(),
        });
    }
    if let Some(t) = slopes.get(&SlopeSeries::OffHeap).filter(|t| grew(t)) {
        out.push(off_heap_finding(t, kernel_slope, b));
    }
    out
}

/// A significant trend that grew at least 4 MiB and 1 % of the limit over
/// its span: enough to name a cause.
fn grew(t: &Trend, limit: Option<u64>) -> bool {
    let min_growth = ((4u64 << 20) as f64).max(0.01 * limit.unwrap_or(0) as f64);
    t.significant && t.bytes_per_second * t.span_s >= min_growth
}

/// `goroutine_leak`: goroutine stacks rising; `heap`: the live heap's
/// growth when it is the goroutines' (slower than the stacks').
fn goroutine_leak(s: &Sample, t: &Trend, heap: Option<&Trend>) -> Finding {
    let g = s.go.as_ref().map(|g| &g.sample);
    let now = g
        .and_then(|g| g.stack_inuse)
        .map_or(String::new(), |st| format!("; now {} of stacks", mib(st)));
    let count = g
        .and_then(|g| g.goroutines)
        .map_or(String::new(), |n| format!(", {n} goroutines"));
    let heap = heap.map_or(String::new(), |h| {
        format!(
            "; the live heap grew {:.1} KiB/s with them (what the goroutines hold)",
            h.bytes_per_second / 1024.0
        )
    });
    Finding {
        cause: Cause::GoroutineLeak,
        evidence: format!(
            "goroutine stacks (StackInuse) grew {} in {:.0} s ({:.1} KiB/s, tau {:.2}){now}{count}{heap}",
            mib((t.bytes_per_second * t.span_s) as u64),
            t.span_s,
            t.bytes_per_second / 1024.0,
            t.tau,
        ),
        advice: "Goroutines start and never exit: each keeps its stack and what it references. Take the goroutine \
                 profile (go tool pprof http://TARGET/debug/pprof/goroutine, or curl \
                 'http://TARGET/debug/pprof/goroutine?debug=1') twice a minute apart and look for the stacks whose \
                 count keeps rising: a channel send or receive nobody completes, a missing context cancel or \
                 timeout, a ticker never stopped. Stacks are outside the heap: a heap profile does not show them."
            .into(),
    }
}

/// A kernel growth at least this share of the growth outside the heap makes
/// `off_heap_growth` the kernel's.
pub const KERNEL_SHARE: f64 = 0.5;

/// Under a memory limit that holds the goal, the heap at the end holds the
/// live heap and what is allocated during each GC cycle (the runtime's GC
/// CPU limiter lets it pass the goal): this share of the live heap above
/// it. Measured 7–10 % with 30 MiB/s of garbage on Go 1.19.
pub const SPIRAL_ROOM: f64 = 0.10;

/// `off_heap_growth`: whether what grows is the kernel's memory charged to
/// the cgroup (its growth over the same stretch, `kernel_slope`) or
/// anonymous memory outside the Go heap.
fn off_heap_finding(t: &Trend, kernel_slope: Option<f64>, b: &Breakdown) -> Finding {
    let grown = t.bytes_per_second * t.span_s;
    let head = format!(
        "charged memory outside the Go heap grew {} in {:.0} s ({:.1} KiB/s) while the heap did not explain it",
        mib(grown as u64),
        t.span_s,
        t.bytes_per_second / 1024.0
    );
    let now: Vec<String> = b
        .kernel
        .iter()
        .map(|(k, v)| format!("{} {}", k.as_str(), mib(*v)))
        .collect();
    let anon_advice = "The growth is not in the Go heap: look at cgo allocations (C libraries), syscall.Mmap or \
                       mmap'd files kept mapped, and goroutine stacks (go_goroutines). A Go heap profile will not \
                       show it; compare /proc/PID/smaps over time.";
    let Some(ks) = kernel_slope.filter(|_| b.kernel_total.is_some()) else {
        return Finding {
            cause: Cause::OffHeapGrowth,
            evidence: format!("{head}; the cgroup's kernel memory is not readable"),
            advice: anon_advice.into(),
        };
    };
    let kernel_grown = (ks * t.span_s).max(0.0);
    if kernel_grown >= KERNEL_SHARE * grown {
        let largest = b
            .kernel
            .iter()
            .filter(|(k, _)| **k != KernelKind::Kmem)
            .max_by_key(|(_, v)| **v)
            .map(|(k, _)| *k)
            .or_else(|| b.kernel.keys().next().copied());
        let focus = match largest {
            Some(KernelKind::Sock) => {
                "socket buffers are the largest: connections kept open with unread data or slow peers (ss -tm)"
            }
            Some(KernelKind::SlabUnreclaimable) => {
                "unreclaimable slab is the largest: kernel objects per connection, file, watch or timer"
            }
            Some(KernelKind::KernelStack) | Some(KernelKind::Pagetables) => {
                "kernel stacks and page tables are the largest: threads or processes accumulate (cgo calls \
                 blocking in C, LockOSThread, child processes never reaped)"
            }
            Some(KernelKind::Shmem) => {
                "shmem is the largest: files written to tmpfs (/dev/shm, an emptyDir with medium Memory) that \
                 stay charged until deleted"
            }
            _ => "look at the cgroup's memory.stat (v2 breaks kernel memory down by kind)",
        };
        Finding {
            cause: Cause::OffHeapGrowth,
            evidence: format!(
                "{head}; kernel memory grew {} of it (now {})",
                mib(kernel_grown as u64),
                now.join(", ")
            ),
            advice: format!(
                "The growth is kernel memory charged to the container, not the Go heap nor memory the process \
                 maps: {focus}. It counts toward the limit like the heap; neither a heap profile nor smaps shows it."
            ),
        }
    } else {
        Finding {
            cause: Cause::OffHeapGrowth,
            evidence: format!(
                "{head}; it is anonymous memory outside the heap: kernel memory grew only {} (now {})",
                mib(kernel_grown as u64),
                now.join(", ")
            ),
            advice: anon_advice.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cgroup_files::Limit;
    use crate::parse::go_runtime::GoSample;
    use crate::sample::{CgroupSample, GoReading};

    const MIB: f64 = 1048576.0;

    fn config(window_ms: u64) -> AnalysisConfig {
        AnalysisConfig {
            window_ms,
            warn_within_s: 1800.0,
            critical_within_s: 300.0,
            thresholds: Thresholds::default(),
        }
    }

    fn analyzer() -> Analyzer {
        Analyzer::new(config(600_000))
    }

    /// A poll at `t` seconds with the unreclaimable basis at `basis_mib`.
    fn st(t: f64, basis_mib: f64, limit_mib: f64) -> Sample {
        let b = (basis_mib * MIB) as u64;
        let mut s = Sample {
            time_ms: 1_700_000_000_000 + (t * 1000.0) as u64,
            mono_ms: (t * 1000.0) as u64,
            cgroup: Some(CgroupSample::all_anonymous("/cg", b)),
            limit: Some(Limit::Bytes((limit_mib * MIB) as u64)),
            ..Sample::default()
        };
        s.target.pid = Some(1);
        s.target.instance = 1;
        s.target.cgroup = Some("/cg".into());
        s
    }

    /// Go data: live heap, HeapAlloc, NextGC, resident heap (MiB), TotalAlloc (MiB).
    fn with_go(mut s: Sample, live: f64, alloc: f64, next_gc: f64, resident: f64, total: f64) -> Sample {
        let b = |m: f64| Some((m * MIB) as u64);
        s.go = Some(GoReading {
            sample: GoSample {
                heap_alloc: b(alloc),
                heap_inuse: b(alloc),
                heap_sys: b(resident),
                heap_released: Some(0),
                heap_idle: b(resident - alloc),
                next_gc: b(next_gc),
                total_alloc: b(total),
                ..GoSample::default()
            },
            scraped_at_ms: s.time_ms,
            scraped_mono_ms: s.mono_ms,
            heap_live: b(live),
            gogc_env: Some(100),
            ..Default::default()
        });
        s
    }

    fn run(a: &mut Analyzer, polls: impl IntoIterator<Item = Sample>) -> Vec<Analysis> {
        polls.into_iter().map(|s| a.update(&s)).collect()
    }

    #[test]
    fn linear_leak_without_go() {
        let mut a = analyzer();
        let out = run(&mut a, (0..=90).map(|t| st(t as f64, 100.0 + t as f64, 400.0)));
        // The start-up rule: nothing before 10 s of history; then a steady
        // rise is established at once, long before the 30 s of the
        // ordinary rule.
        assert!(out[..EARLY_SPAN_S as usize]
            .iter()
            .all(|x| x.warming_up && x.risk == Risk::Ok && x.time_to_oom_s.is_none()));
        let early = &out[EARLY_SPAN_S as usize];
        assert!(!early.warming_up, "{}", early.prediction);
        let tto = early.time_to_oom_s.expect("established at 10 s");
        assert!((tto - 290.0).abs() < 2.0, "{tto}");
        assert_eq!(
            out[EARLY_SPAN_S as usize + 1].risk,
            Risk::Critical,
            "raised after two polls"
        );
        let last = out.last().unwrap();
        let tto = last.time_to_oom_s.expect("predicted");
        assert!((tto - 210.0).abs() < 2.0, "{tto} {}", last.prediction);
        assert_eq!(last.risk, Risk::Critical, "210 s < --critical-within 5m");
        let slope = last.slopes[&SlopeSeries::Unreclaimable].bytes_per_second / MIB;
        assert!((slope - 1.0).abs() < 1e-6);
    }

    #[test]
    fn staircase_and_gaps() {
        // +10 MiB every 10 s, one poll a second, with a 60 s gap in the data.
        let mut a = analyzer();
        let polls = (0..=240)
            .filter(|t| !(100..160).contains(t))
            .map(|t| st(t as f64, 50.0 + 10.0 * (t / 10) as f64, 600.0));
        let last = run(&mut a, polls).pop().unwrap();
        let real = (600.0 - 290.0) / 1.0; // 1 MiB/s on average, 290 MiB now
        let tto = last.time_to_oom_s.expect("predicted");
        assert!((tto - real).abs() / real < 0.2, "{tto} vs {real}");
    }

    #[test]
    fn plateau_after_warm_up_is_not_a_leak() {
        // Rises toward 200 MiB with a 10 s time constant, then stays.
        let mut a = analyzer();
        let out = run(
            &mut a,
            (0..=300).map(|t| st(t as f64, 200.0 * (1.0 - (-(t as f64) / 10.0).exp()), 512.0)),
        );
        for (t, x) in out.iter().enumerate() {
            assert_eq!(x.risk, Risk::Ok, "t={t}: {x:?}");
            assert!(
                x.time_to_oom_s.is_none(),
                "t={t}: {:?} {}",
                x.time_to_oom_s,
                x.prediction
            );
        }
    }

    #[test]
    fn step_change_is_not_a_leak() {
        let mut a = analyzer();
        let out = run(
            &mut a,
            (0..=200).map(|t| st(t as f64, if t < 100 { 100.0 } else { 220.0 }, 512.0)),
        );
        assert!(
            out.iter().all(|x| x.risk == Risk::Ok),
            "{:?}",
            out.iter().find(|x| x.risk != Risk::Ok)
        );
    }

    #[test]
    fn noise_is_not_a_leak() {
        let mut a = analyzer();
        let noise = |t: f64| ((t * 12.9898).sin() * 43758.5453).fract() * 10.0;
        let out = run(&mut a, (0..=300).map(|t| st(t as f64, 150.0 + noise(t as f64), 512.0)));
        assert!(out.iter().all(|x| x.risk == Risk::Ok && x.time_to_oom_s.is_none()));
    }

    #[test]
    fn restart_starts_the_history_afresh() {
        let mut a = analyzer();
        let out = run(&mut a, (0..=60).map(|t| st(t as f64, 100.0 + t as f64, 400.0)));
        assert!(out.last().unwrap().time_to_oom_s.is_some());
        let mut s = st(61.0, 20.0, 400.0);
        s.target.pid = Some(2);
        s.target.instance = 2;
        let x = a.update(&s);
        assert!(x.warming_up && x.time_to_oom_s.is_none(), "{x:?}");
        assert_eq!(x.history_s, 0.0);
    }

    #[test]
    fn near_the_limit_without_growth_is_a_warning() {
        let mut a = analyzer();
        let out = run(&mut a, (0..=5).map(|t| st(t as f64, 470.0, 512.0)));
        assert_eq!(out.last().unwrap().risk, Risk::Warning, "91.8 % of the limit");
    }

    /// A Go service with a GC sawtooth: live heap `live(t)`, GOGC=100,
    /// garbage allocated at 100 MiB/s, the charged heap ratcheting to the
    /// highest NextGC seen, 20 MiB outside the heap.
    fn sawtooth(t: f64, live: f64, peak: &mut f64) -> Sample {
        let next_gc = 2.0 * live;
        let phase = (t * 0.37).fract();
        let alloc = live + phase * (next_gc - live);
        *peak = peak.max(alloc);
        let mut s = with_go(st(t, 20.0 + *peak, 512.0), live, alloc, next_gc, *peak, 100.0 * t);
        if let Some(g) = s.go.as_mut() {
            g.sample.num_gc = Some((t * 0.37) as u64);
        }
        s
    }

    /// A poll at `t` s of a GC sawtooth over `live(t)` MiB polled every
    /// second and scraped every 5 s (the default pacing): the Go reading is
    /// the last scrape's; the basis, read every poll, holds the heap at its
    /// goal (twice the live heap) and 20 MiB beside it.
    fn paced(t: u64, live: impl Fn(f64) -> f64) -> Sample {
        let now = st(t as f64, 20.0 + 2.0 * live(t as f64), 512.0);
        let at = (t - t % 5) as f64;
        let l = live(at);
        let alloc = l + (at * 0.37).fract() * l;
        let mut scraped = with_go(st(at, 0.0, 512.0), l, alloc, 2.0 * l, 2.0 * l, 100.0 * at);
        if let Some(g) = scraped.go.as_mut() {
            g.sample.num_gc = Some((at * 0.37) as u64);
        }
        Sample { go: scraped.go, ..now }
    }

    #[test]
    fn at_the_default_pacing_a_leak_is_called_within_20_s_and_a_warm_up_never() {
        // A leak of 2 MiB/s with Go scraped every 5 s: 4 scrapes span 15 s,
        // the basis read every second rises with it.
        let mut a = analyzer();
        let out = run(&mut a, (0..=40).map(|t| paced(t, |t| 40.0 + 2.0 * t)));
        let first = out.iter().position(|x| x.time_to_oom_s.is_some());
        assert!(first.is_some_and(|t| t <= 20), "first prediction at {first:?}");
        assert!(out[20].has(Cause::HeapLeak), "{:?}", out[20].findings);
        // A heap warming up to 150 MiB (time constant 8 s) at the same
        // pacing: four scrapes may rise in a line, the basis levels off.
        let mut a = analyzer();
        let warm = |t: f64| 10.0 + 140.0 * (1.0 - (-t / 8.0).exp());
        for (t, x) in run(&mut a, (0..=120).map(|t| paced(t, warm))).iter().enumerate() {
            assert_eq!(x.risk, Risk::Ok, "t={t}: {}", x.prediction);
            assert!(!x.has(Cause::HeapLeak), "t={t}: {:?}", x.findings);
        }
    }

    #[test]
    fn stacks_growing_a_little_beside_a_heap_leak_leave_its_prediction_alone() {
        // A leak of 1 MiB/s; the stacks creep up 1 KiB/s (a steady, tiny
        // trend): the prediction is the live heap's, as without them.
        let leak = |creep: bool| {
            let mut a = analyzer();
            let mut peak = 0.0;
            let out = run(
                &mut a,
                (0..=80).map(|t| {
                    let mut s = sawtooth(t as f64, 50.0 + t as f64, &mut peak);
                    if creep {
                        s.go.as_mut().unwrap().sample.stack_inuse = Some((1 << 20) + 1024 * t as u64);
                    }
                    s
                }),
            );
            out.last().unwrap().clone()
        };
        let (plain, creeping) = (leak(false), leak(true));
        assert!(creeping.slopes[&SlopeSeries::GoStack].significant);
        assert!(
            creeping.prediction.starts_with("the live heap grows"),
            "{}",
            creeping.prediction
        );
        assert!(!creeping.has(Cause::GoroutineLeak), "{:?}", creeping.findings);
        let (p, c) = (plain.time_to_oom_s.unwrap(), creeping.time_to_oom_s.unwrap());
        assert!((p - c).abs() / p < 0.02, "{p} vs {c}");
    }

    #[test]
    fn a_goroutine_leak_is_told_from_a_heap_leak() {
        // 30 MiB live and steady; stacks grow 1.5 MiB/s from 10 MiB and, as
        // on Go 1.18+, count in the goal (live + (live + stacks) × 100 %).
        let mut a = analyzer();
        let mut peak: f64 = 0.0;
        let out = run(
            &mut a,
            (0..=90).map(|t| {
                let t = t as f64;
                let (live, stacks) = (30.0, 10.0 + 1.5 * t);
                let goal = 2.0 * live + stacks;
                let alloc = live + (t * 0.37).fract() * (goal - live);
                peak = peak.max(alloc);
                let mut s = with_go(st(t, 20.0 + peak + stacks, 512.0), live, alloc, goal, peak, 100.0 * t);
                let g = s.go.as_mut().unwrap();
                g.sample.num_gc = Some((t * 0.37) as u64);
                g.sample.stack_inuse = Some((stacks * MIB) as u64);
                g.sample.sys = Some(((peak + stacks) * MIB) as u64);
                g.sample.goroutines = Some((stacks * 16.0) as u64);
                s
            }),
        );
        let last = out.last().unwrap();
        assert!(last.has(Cause::GoroutineLeak), "{:?}", last.findings);
        assert!(out
            .iter()
            .all(|x| !x.has(Cause::HeapLeak) && !x.has(Cause::OffHeapGrowth)));
        let f = last.findings.iter().find(|f| f.cause == Cause::GoroutineLeak).unwrap();
        assert!(
            f.evidence.contains("goroutine stacks (StackInuse) grew") && f.evidence.contains("goroutines"),
            "{f:?}"
        );
        assert!(f.advice.contains("/debug/pprof/goroutine"), "{f:?}");
        // The heap's peak before each GC rises with the stacks and their
        // share of the goal: 1.5 × (1 + 1.1) = 3.15 MiB/s. At 90 s the basis
        // is 20 + peak (~195) + 145 of stacks, the goal's growth ahead ~0:
        // the prediction follows the stacks, not the (flat) live heap.
        let tto = last.time_to_oom_s.expect("a time to OOM");
        assert!(last.prediction.contains("goroutine stacks grow"), "{}", last.prediction);
        assert!(tto > 0.0 && tto < 100.0, "{tto}: {}", last.prediction);
    }

    #[test]
    fn start_up_rule_calls_a_leak_across_gc_cycles_not_a_warm_up() {
        // A leak of 2 MiB/s in the live heap from the first second: called
        // once 10 s of history span 3 GC cycles, not after 30 s.
        let mut a = analyzer();
        let mut peak = 0.0;
        let out = run(
            &mut a,
            (0..=30).map(|t| sawtooth(t as f64, 40.0 + 2.0 * t as f64, &mut peak)),
        );
        let first = out.iter().position(|x| x.time_to_oom_s.is_some());
        assert!(
            first.is_some_and(|t| (10..=12).contains(&t)),
            "first prediction at {first:?}: {}",
            out[12].prediction
        );
        assert!(out[12].slopes[&SlopeSeries::GoHeapLive].significant);
        assert!(out.last().unwrap().has(Cause::HeapLeak));

        // The same rise without collections in between (one GC cycle that
        // fills with garbage and live data alike): not established before
        // the ordinary rule's 30 s.
        let mut a = analyzer();
        let mut peak = 0.0;
        let out = run(
            &mut a,
            (0..=29).map(|t| {
                let mut s = sawtooth(t as f64, 40.0 + 2.0 * t as f64, &mut peak);
                s.go.as_mut().unwrap().sample.num_gc = Some(1);
                s
            }),
        );
        assert!(out.iter().all(|x| x.time_to_oom_s.is_none() && x.warming_up));

        // A heap warming up to 150 MiB (a cache filling, fast then slower,
        // time constant 8 s): never called, start-up included.
        let mut a = analyzer();
        let mut peak = 0.0;
        let out = run(
            &mut a,
            (0..=120).map(|t| {
                let live = 10.0 + 140.0 * (1.0 - (-(t as f64) / 8.0).exp());
                sawtooth(t as f64, live, &mut peak)
            }),
        );
        for (t, x) in out.iter().enumerate() {
            assert_eq!(x.risk, Risk::Ok, "t={t}: {}", x.prediction);
            assert!(!x.has(Cause::HeapLeak), "t={t}: {:?}", x.findings);
        }
    }

    #[test]
    fn steady_sawtooth_is_not_a_leak() {
        let mut a = analyzer();
        let mut peak = 0.0;
        let out = run(&mut a, (0..=300).map(|t| sawtooth(t as f64, 100.0, &mut peak)));
        for x in &out {
            assert_eq!(x.risk, Risk::Ok, "{x:?}");
            assert!(!x.has(Cause::HeapLeak));
        }
        assert!(
            out.last().unwrap().time_to_oom_s.is_none(),
            "{}",
            out.last().unwrap().prediction
        );
    }

    #[test]
    fn sawtooth_leak_counts_the_peaks() {
        // The live heap grows 1 MiB/s from 50 MiB: the kernel kills when
        // 20 + NextGC (2 x live) reaches 512, at live 246 MiB, t = 196 s.
        let mut a = analyzer();
        let mut peak = 0.0;
        let out = run(
            &mut a,
            (0..=100).map(|t| sawtooth(t as f64, 50.0 + t as f64, &mut peak)),
        );
        for (t, x) in out.iter().enumerate().skip(40) {
            let real = 196.0 - t as f64;
            let tto = x.time_to_oom_s.unwrap_or_else(|| panic!("t={t}: {}", x.prediction));
            assert!(
                (tto - real).abs() / real < 0.35,
                "t={t}: predicted {tto:.0} s, real {real:.0} s ({})",
                x.prediction
            );
        }
        let last = out.last().unwrap();
        assert!(last.has(Cause::HeapLeak), "{:?}", last.findings);
        assert!(!last.has(Cause::OffHeapGrowth), "{:?}", last.findings);
        assert_eq!(last.risk, Risk::Critical);
    }

    #[test]
    fn off_heap_growth_is_told_apart() {
        // Steady heap, memory outside it growing 2 MiB/s.
        let mut a = analyzer();
        let out = run(
            &mut a,
            (0..=90).map(|t| {
                let t = t as f64;
                with_go(st(t, 100.0 + 2.0 * t, 512.0), 40.0, 50.0, 80.0, 80.0, 10.0 * t)
            }),
        );
        let last = out.last().unwrap();
        assert!(last.has(Cause::OffHeapGrowth), "{:?}", last.findings);
        assert!(!last.has(Cause::HeapLeak), "{:?}", last.findings);
        // 512 - (20 + 2*90 + 80) = 232 MiB to go at 2 MiB/s.
        let tto = last.time_to_oom_s.expect("predicted");
        assert!((tto - 116.0).abs() / 116.0 < 0.1, "{tto} ({})", last.prediction);
    }

    #[test]
    fn off_heap_growth_says_whether_it_is_kernel_memory() {
        // Memory outside a steady heap grows 2 MiB/s; `sock_rate` MiB/s of
        // it in socket buffers, 1 MiB of kernel stacks throughout.
        let off_heap = |sock_rate: f64, readable: bool| {
            let mut a = analyzer();
            let out = run(
                &mut a,
                (0..=90).map(|t| {
                    let t = t as f64;
                    let mut s = with_go(st(t, 100.0 + 2.0 * t, 512.0), 40.0, 50.0, 80.0, 80.0, 10.0 * t);
                    if readable {
                        let stat = s.cgroup.as_mut().unwrap().stat.as_mut().unwrap();
                        stat.sock = Some(((4.0 + sock_rate * t) * MIB) as u64);
                        stat.kernel_stack = Some(MIB as u64);
                    }
                    s
                }),
            );
            let findings = out.last().unwrap().findings.clone();
            findings
                .iter()
                .find(|f| f.cause == Cause::OffHeapGrowth)
                .cloned()
                .unwrap_or_else(|| panic!("no off_heap_growth: {findings:?}"))
        };
        let kernel = off_heap(2.0, true);
        assert!(
            kernel.evidence.contains("kernel memory grew 180 MiB of it"),
            "{}",
            kernel.evidence
        );
        assert!(kernel.evidence.contains("sock 184 MiB"), "{}", kernel.evidence);
        assert!(
            kernel.advice.starts_with("The growth is kernel memory"),
            "{}",
            kernel.advice
        );
        assert!(kernel.advice.contains("socket buffers"), "{}", kernel.advice);

        let anon = off_heap(0.0, true);
        assert!(
            anon.evidence
                .contains("it is anonymous memory outside the heap: kernel memory grew only 0 MiB"),
            "{}",
            anon.evidence
        );
        assert!(anon.advice.contains("cgo allocations"), "{}", anon.advice);

        let unknown = off_heap(0.0, false);
        assert!(
            unknown.evidence.ends_with("kernel memory is not readable"),
            "{}",
            unknown.evidence
        );
        assert!(unknown.advice.contains("cgo allocations"), "{}", unknown.advice);
    }

    #[test]
    fn goal_beyond_the_limit_is_imminent() {
        // NextGC 500 + 20 outside the heap > 512: this cycle reaches the limit.
        let mut a = analyzer();
        let out = run(
            &mut a,
            (0..=40).map(|t| {
                let t = t as f64;
                with_go(st(t, 300.0, 512.0), 250.0, 280.0, 500.0, 280.0, 10.0 * t)
            }),
        );
        let last = out.last().unwrap();
        // Room 212 MiB / 1.1 lets the heap reach 473 MiB: (473 - 280) / 10 MiB/s = 19.3 s.
        let tto = last.time_to_oom_s.expect("predicted");
        assert!((tto - 19.3).abs() < 0.5, "{tto} ({})", last.prediction);
        assert!(last.has(Cause::GcHeadroom), "{:?}", last.findings);
    }

    #[test]
    fn a_gc_back_to_back_under_a_limit_that_still_holds_the_heap_waits_for_the_live_heap() {
        // GOMEMLIMIT 200 MiB in a 320 MiB container, 10 MiB outside the
        // heap's spans; the GC at 3 cycles/s for 20 s with the live heap at
        // 150 MiB, 2 MiB/s (gc_thrash: 23 % of the live heap between
        // collections); 30 MiB/s allocated; the charge 191 MiB.
        let at = |released_mib: f64| {
            let b = |m: f64| Some((m * MIB) as u64);
            let mut s = st(60.0, 191.0, 320.0);
            s.go = Some(GoReading {
                sample: GoSample {
                    heap_alloc: b(170.0),
                    heap_inuse: b(175.0),
                    heap_sys: b(200.0),
                    heap_idle: b(25.0),
                    heap_released: b(released_mib),
                    sys: b(210.0),
                    next_gc: b(185.0),
                    gomemlimit: b(200.0),
                    ..GoSample::default()
                },
                heap_live: b(150.0),
                gogc_env: Some(100),
                gomemlimit_binds: Some(true),
                gc_cycles_per_second: Some(3.0),
                gc_pace_span_ms: 20_000,
                ..Default::default()
            });
            assert!(gc_thrash(s.go.as_ref().unwrap(), Some(320 << 20)).is_some());
            let live = Trend {
                bytes_per_second: 2.0 * MIB,
                tau: 1.0,
                span_s: 60.0,
                points: 12,
                significant: true,
            };
            let slopes = BTreeMap::from([(SlopeSeries::GoHeapLive, live)]);
            go_model(&s, 320 << 20, 191 << 20, &slopes, Some(30.0 * MIB))
                .0
                .expect("predicted")
        };
        // The limit holds (resident spans 185 of the 190 MiB it leaves
        // them): the heap stays where it is until the live heap and one
        // cycle's allocation fill the room. The room (320 − 191) / 1.1 on top
        // of the 185 resident: the heap can reach 302.3 MiB, which the live
        // heap fills at 302.3 / 1.1 = 274.8 MiB: (274.8 − 150) / 2 s, then the
        // last 27.5 MiB at 30 MiB/s.
        let held = at(15.0);
        assert!((held - 63.3).abs() < 0.5, "{held}");
        // Past the limit (200 MiB resident): the charge grows with the live
        // heap from now on: the room at 2 MiB/s, then the 50 MiB left of the
        // 317.3 MiB the heap can reach at 30 MiB/s.
        let past = at(0.0);
        assert!((past - (117.3 / 2.0 + 50.0 / 30.0)).abs() < 0.5, "{past}");
    }

    #[test]
    fn a_live_heap_rise_too_small_to_be_a_leak_predicts_nothing() {
        // A goroutine pool filling at start-up: the live heap rose 52 KiB/s
        // for 26 s (1.3 MiB, a steady rise) in a 256 MiB container. Under
        // the 4 MiB heap_leak asks, it is no leak and gives no time to OOM
        // (which would warn, at 1,500 s, with no cause to name).
        let s = with_go(st(26.0, 88.0, 256.0), 78.0, 90.0, 156.0, 100.0, 900.0);
        let rise = |span_s: f64| {
            let t = Trend {
                bytes_per_second: 52.0 * 1024.0,
                tau: 0.9,
                span_s,
                points: 6,
                significant: true,
            };
            let slopes = BTreeMap::from([(SlopeSeries::GoHeapLive, t)]);
            go_model(&s, 256 << 20, 88 << 20, &slopes, Some(MIB)).0
        };
        assert_eq!(rise(26.0), None);
        // The same rise for 100 s (5.1 MiB) is one.
        assert!(rise(100.0).is_some_and(|t| t > 1000.0), "{:?}", rise(100.0));
    }

    #[test]
    fn unlimited_never_predicts_and_history_is_bounded() {
        let mut a = Analyzer::new(config(86_400_000));
        // 50 hours at one poll a minute: twice the window.
        for t in (0..3000u64).map(|i| i * 60) {
            let mut s = st(t as f64, 100.0 + t as f64, 512.0);
            s.limit = Some(Limit::Unlimited);
            let x = a.update(&s);
            assert!(x.time_to_oom_s.is_none());
        }
        assert!(a.history_bytes() < 200 * 1024, "{}", a.history_bytes());
    }

    #[test]
    fn history_keeps_restarts_kills_and_the_prediction() {
        let mut a = analyzer();
        let mut polls: Vec<Sample> = (0..=60).map(|t| st(t as f64, 100.0 + t as f64, 400.0)).collect();
        // Killed at 61 s (the kernel's count rises), back as pid 2 at 62 s.
        for (t, pid, kills) in [(61, 1, 1), (62, 2, 1), (63, 2, 1)] {
            let mut s = st(t as f64, 20.0, 400.0);
            s.oom_kills_total = kills;
            s.target.pid = Some(pid);
            s.target.instance = u64::from(pid);
            polls.push(s);
        }
        // Kills before the first poll are no event.
        polls[0].oom_kills_total = 0;
        let mut first = st(-1.0, 100.0, 400.0);
        first.mono_ms = 0;
        first.oom_kills_total = 5;
        let mut b = analyzer();
        b.update(&first);
        assert_eq!(b.history().lock().events().count(), 0);

        let out = run(&mut a, polls);
        let v = serde_json::to_value(a.history().lock().view().unwrap()).unwrap();
        // The climb before the kill is still shown after the restart.
        let unreclaimable = v["series"]["unreclaimable"].as_array().unwrap();
        assert_eq!(unreclaimable.len(), 64);
        assert_eq!(unreclaimable[60][1], 160 * 1048576);
        assert_eq!(unreclaimable[63][1], 20 * 1048576);
        assert_eq!(v["series"]["limit"][0][1], 400 * 1048576);
        assert_eq!(v["time_ms"], 1_700_000_063_000u64);
        let events: Vec<(u64, &str, &str)> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["t_ms"].as_u64().unwrap(),
                    e["kind"].as_str().unwrap(),
                    e["detail"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            events,
            vec![
                (
                    1_700_000_061_000,
                    "oom_kill",
                    "an OOM kill, counted by the kernel in the target's cgroup (1 in all)"
                ),
                (1_700_000_062_000, "target_restart", "pid 1 \u{2192} 2"),
            ]
        );
        // ... but the trends start afresh.
        assert!(out[62].warming_up && out[62].time_to_oom_s.is_none());
        assert!(v["prediction"].is_null());

        // A prediction runs from now at the basis to the limit.
        let mut a = analyzer();
        let last = run(&mut a, (0..=90).map(|t| st(t as f64, 100.0 + t as f64, 400.0)))
            .pop()
            .unwrap();
        let tto = last.time_to_oom_s.unwrap();
        let v = serde_json::to_value(a.history().lock().view().unwrap()).unwrap();
        let p = &v["prediction"];
        assert_eq!(p["from_ms"], 1_700_000_090_000u64);
        assert_eq!(p["from_bytes"], 190 * 1048576);
        assert_eq!(p["to_ms"], 1_700_000_090_000u64 + (tto * 1000.0) as u64);
        assert_eq!(p["to_bytes"], 400 * 1048576);
    }

    /// A steady GC sawtooth: NextGC at `p` MiB; the heap's objects cycle
    /// between p/3 − 50 and p − 50 MiB at the polls, idle spans released at
    /// once; the runtime holds 20 MiB beside the heap and 30 MiB is charged
    /// outside the runtime, so the basis polled runs from p/3 to p.
    fn goal_sawtooth(t: f64, p: f64) -> Sample {
        let phase = (t * 0.37).fract();
        let alloc = p / 3.0 - 50.0 + phase * (p - p / 3.0);
        let mut s = with_go(st(t, alloc + 20.0 + 30.0, 1024.0), p / 2.0, alloc, p, p, 100.0 * t);
        let g = &mut s.go.as_mut().unwrap().sample;
        let b = |m: f64| Some((m * MIB) as u64);
        g.heap_released = b(p - alloc);
        g.sys = b(p + 20.0);
        s
    }

    #[test]
    fn recommendation_counts_the_peak_before_gc_not_the_polls() {
        let p = 300.0;
        let mut a = analyzer();
        let out = run(&mut a, (0..=60).map(|t| goal_sawtooth(t as f64, p)));
        let polled = out.iter().filter_map(|x| x.basis).max().unwrap() as f64 / MIB;
        assert!(polled <= p, "the polls never see the peak: {polled}");
        // Too little history: nothing before 30 s.
        assert!(out[..30].iter().all(|x| x.recommendation.is_none()));
        let r = out[60].recommendation.as_ref().expect("a recommendation after 60 s");
        assert_eq!(r.basis, super::super::recommend::RecommendationBasis::GoHeapGoal);
        let near = |v: Option<u64>, mib: f64| (v.unwrap() as f64 / MIB - mib).abs() < 0.01;
        assert!(near(r.heap_peak_bytes, p), "{r:?}");
        assert!(near(r.outside_runtime_bytes, 30.0), "{r:?}");
        assert!(near(r.runtime_other_bytes, 20.0), "{r:?}");
        let limit = r.memory_limit_bytes as f64 / MIB;
        assert!(limit >= p + 30.0 + 20.0 && limit <= 3.0 * p, "{limit} MiB");
        let gomemlimit = r.gomemlimit_bytes.unwrap() as f64 / MIB;
        assert!(gomemlimit < limit - 30.0, "{gomemlimit} MiB");
        // Above the runtime's own peak: it does not bind in the ordinary course.
        assert!(gomemlimit >= p + 20.0, "{gomemlimit} MiB");
    }

    #[test]
    fn recommendation_without_go_is_the_cgroup_peak_with_its_margin() {
        let mut a = analyzer();
        let out = run(
            &mut a,
            (0..=45).map(|t| st(t as f64, 100.0 + 100.0 * (t as f64 * 0.37).fract(), 1024.0)),
        );
        let peak = out.iter().filter_map(|x| x.basis).max().unwrap() as f64;
        assert!(out[..30].iter().all(|x| x.recommendation.is_none()));
        let r = out[45].recommendation.as_ref().unwrap();
        assert_eq!(r.basis, super::super::recommend::RecommendationBasis::CgroupPeak);
        assert_eq!(r.observed_peak_bytes, peak as u64);
        let want = (peak * 1.3 / MIB).ceil() * MIB;
        assert_eq!(r.memory_limit_bytes, want as u64);
        assert_eq!(r.gomemlimit_bytes, None);
    }

    #[test]
    fn recommendation_starts_afresh_with_the_target() {
        let mut a = analyzer();
        run(&mut a, (0..=40).map(|t| goal_sawtooth(t as f64, 300.0)));
        let mut restarted = goal_sawtooth(41.0, 300.0);
        restarted.target.instance = 2;
        restarted.target.pid = Some(2);
        restarted.target.go_epoch = 1;
        assert!(a.update(&restarted).recommendation.is_none());
    }
}
