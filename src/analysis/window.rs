//! The analyzer's bounded history over the analysis window: one [`Series`]
//! per quantity, the events (OOM kills, target restarts) and the latest
//! prediction, kept in monotonic milliseconds and rendered in Unix time.
//!
//! At most [`MAX_POINTS`] points are kept per series whatever the window:
//! when the window holds more polls than that, polls are merged into buckets
//! of window / MAX_POINTS, keeping the last value and the maximum (the peak
//! the kernel would have seen). Memory does not grow with uptime.

use crate::sample::LimitBasis;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

pub const MAX_POINTS: usize = 600;
/// The events kept, at most (older ones also age out with the window).
pub const MAX_EVENTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_ms: u64,
    pub last: f64,
    pub max: f64,
}

#[derive(Debug, Clone)]
pub struct Series {
    points: VecDeque<Point>,
    window_ms: u64,
    bucket_ms: u64,
    /// The next value starts a point of its own, even within the bucket.
    cut: bool,
}

impl Series {
    pub fn new(window_ms: u64) -> Series {
        let bucket_ms = (window_ms / MAX_POINTS as u64).max(1);
        Series {
            points: VecDeque::with_capacity(MAX_POINTS.min(64)),
            window_ms,
            bucket_ms,
            cut: false,
        }
    }

    /// Adds a value; a time that goes backwards (clock step) clears the
    /// series. NaN and −∞ are dropped; +∞ stands for "no limit".
    pub fn push(&mut self, t_ms: u64, v: f64) {
        if v.is_nan() || v == f64::NEG_INFINITY {
            return;
        }
        let cut = std::mem::take(&mut self.cut);
        if let Some(last) = self.points.back_mut() {
            if t_ms < last.t_ms {
                self.points.clear();
            } else if !cut && t_ms / self.bucket_ms == last.t_ms / self.bucket_ms {
                last.t_ms = t_ms;
                last.last = v;
                last.max = last.max.max(v);
                return;
            }
        }
        if self.points.len() == self.points.capacity() {
            // Grow by doubling, but never past what the series can hold.
            let want = (self.points.capacity() * 2).clamp(1, MAX_POINTS + 1);
            self.points.reserve_exact(want.saturating_sub(self.points.len()));
        }
        self.points.push_back(Point { t_ms, last: v, max: v });
        let oldest = t_ms.saturating_sub(self.window_ms);
        while self.points.front().is_some_and(|p| p.t_ms < oldest) || self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
    }

    /// The next value starts a point of its own: what follows a restart is
    /// never merged with what came before it.
    pub fn cut(&mut self) {
        self.cut = true;
    }

    pub fn clear(&mut self) {
        self.points.clear();
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<Point> {
        self.points.back().copied()
    }

    /// Seconds between the first and the last point.
    pub fn span_s(&self) -> f64 {
        self.span_since_s(0)
    }

    /// Seconds between the first point at or after `since_ms` and the last.
    pub fn span_since_s(&self, since_ms: u64) -> f64 {
        match (self.points_since(since_ms).next(), self.points.back()) {
            (Some(a), Some(b)) => (b.t_ms - a.t_ms) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The points at or after `since_ms`, oldest first.
    pub fn points_since(&self, since_ms: u64) -> impl Iterator<Item = &Point> {
        let start = self.points.partition_point(|p| p.t_ms < since_ms);
        self.points.range(start..)
    }

    /// Bytes of memory the points take (for the benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
    }
}

/// What happened to the target, as marked on the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The kernel's OOM kill count of the cgroup rose.
    OomKill,
    /// A new target instance (the collector's `instance` changed).
    TargetRestart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Monotonic time, ms (the clock of [`crate::sample::Sample::mono_ms`]).
    pub t_ms: u64,
    pub kind: EventKind,
    pub detail: String,
}

/// The predicted line to the OOM kill, monotonic ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedLine {
    pub from_ms: u64,
    pub from_bytes: u64,
    pub to_ms: u64,
    pub to_bytes: u64,
}

/// The analyzer's whole history: what the fits read and what
/// `/api/v1/history` shows. Times are monotonic ms; `offset_ms` turns them
/// into Unix ms for display.
#[derive(Debug, Clone)]
pub struct Window {
    pub window_ms: u64,
    /// The limit basis of the last sample.
    pub limit_basis: LimitBasis,
    pub usage: Series,
    pub working_set: Series,
    pub unreclaimable: Series,
    pub rss: Series,
    /// The effective limit; +∞ when unlimited.
    pub limit: Series,
    pub go_heap_live: Series,
    pub go_next_gc: Series,
    /// Go TotalAlloc (for the allocation rate; not shown).
    pub total_alloc: Series,
    /// Charged memory outside the Go runtime (not shown).
    pub off_heap: Series,
    /// Kernel memory charged to the cgroup, all kinds (not shown).
    pub kernel: Series,
    /// The heap's size before the next GC at each Go scrape: the cycle's
    /// goal, or HeapAlloc where higher or without a goal (not shown).
    pub go_heap_peak: Series,
    /// What the Go runtime holds beside heap objects that the heap's growth
    /// does not use up: Sys − HeapSys (stacks, GC metadata, span structures,
    /// other) plus HeapInuse − HeapAlloc (not shown).
    pub go_runtime_other: Series,
    /// Goroutine stacks, StackInuse (not shown).
    pub go_stack: Series,
    /// Goroutines, where the source exports their number (not shown).
    pub go_goroutines: Series,
    events: VecDeque<Event>,
    /// Unix ms − monotonic ms of the last sample.
    offset_ms: i64,
    /// Monotonic ms of the last sample; `None` before the first.
    now_ms: Option<u64>,
    prediction: Option<PredictedLine>,
}

/// How far the wall clock may wander from the monotonic one before the
/// history's Unix times follow it (see [`Window::set_now`]).
const OFFSET_JITTER_MS: i64 = 100;

impl Window {
    pub fn new(window_ms: u64) -> Window {
        let s = || Series::new(window_ms);
        Window {
            window_ms,
            limit_basis: LimitBasis::default(),
            usage: s(),
            working_set: s(),
            unreclaimable: s(),
            rss: s(),
            limit: s(),
            go_heap_live: s(),
            go_next_gc: s(),
            total_alloc: s(),
            off_heap: s(),
            kernel: s(),
            go_heap_peak: s(),
            go_runtime_other: s(),
            go_stack: s(),
            go_goroutines: s(),
            events: VecDeque::new(),
            offset_ms: 0,
            now_ms: None,
            prediction: None,
        }
    }

    fn all(&self) -> [&Series; 14] {
        [
            &self.usage,
            &self.working_set,
            &self.unreclaimable,
            &self.rss,
            &self.limit,
            &self.go_heap_live,
            &self.go_next_gc,
            &self.total_alloc,
            &self.off_heap,
            &self.kernel,
            &self.go_heap_peak,
            &self.go_runtime_other,
            &self.go_stack,
            &self.go_goroutines,
        ]
    }

    /// The series of the limit basis (what the prediction is about).
    pub fn basis(&self) -> &Series {
        match self.limit_basis {
            LimitBasis::Unreclaimable => &self.unreclaimable,
            LimitBasis::WorkingSet => &self.working_set,
            LimitBasis::Usage => &self.usage,
            LimitBasis::Rss => &self.rss,
        }
    }

    /// Starts a new stretch: the next value of every series (or of the Go
    /// ones only) is a point of its own.
    pub fn cut(&mut self, go_only: bool) {
        for s in [
            &mut self.go_heap_live,
            &mut self.go_next_gc,
            &mut self.total_alloc,
            &mut self.off_heap,
            &mut self.go_heap_peak,
            &mut self.go_runtime_other,
            &mut self.go_stack,
            &mut self.go_goroutines,
        ] {
            s.cut();
        }
        if !go_only {
            for s in [
                &mut self.usage,
                &mut self.working_set,
                &mut self.unreclaimable,
                &mut self.rss,
                &mut self.limit,
                &mut self.kernel,
            ] {
                s.cut();
            }
        }
    }

    /// Marks the time of the sample being added: `now_ms` monotonic,
    /// `unix_ms` its wall-clock time (for display only). Ages events out.
    pub fn set_now(&mut self, now_ms: u64, unix_ms: u64) {
        // The two clocks are read one after the other, each truncated to
        // the ms: their difference jitters by a ms or so from poll to poll.
        // Held unless it moves by more (the wall clock stepped, or slewed
        // that far), so a point keeps its label from one answer to the next.
        let offset = unix_ms as i64 - now_ms as i64;
        if self.now_ms.is_none() || (offset - self.offset_ms).abs() > OFFSET_JITTER_MS {
            self.offset_ms = offset;
        }
        self.now_ms = Some(now_ms);
        let oldest = now_ms.saturating_sub(self.window_ms);
        while self.events.front().is_some_and(|e| e.t_ms < oldest) {
            self.events.pop_front();
        }
    }

    pub fn event(&mut self, t_ms: u64, kind: EventKind, detail: String) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event { t_ms, kind, detail });
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn set_prediction(&mut self, p: Option<PredictedLine>) {
        self.prediction = p;
    }

    /// Bytes of memory the history holds (for the benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.all().iter().map(|s| s.heap_bytes()).sum::<usize>()
            + self.events.capacity() * std::mem::size_of::<Event>()
            + self.events.iter().map(|e| e.detail.capacity()).sum::<usize>()
    }

    /// Monotonic ms to Unix ms, for display.
    fn unix(&self, mono_ms: u64) -> u64 {
        (mono_ms as i64).saturating_add(self.offset_ms).max(0) as u64
    }

    /// The history as `/api/v1/history` shows it (see docs/api.md);
    /// `None` before the first sample.
    pub fn view(&self) -> Option<HistoryView<'_>> {
        self.now_ms.map(|now| HistoryView { w: self, now })
    }
}

/// The window shared between the analyzer, which writes it on each poll,
/// and the HTTP server, which renders it on request.
#[derive(Debug, Clone)]
pub struct SharedWindow(Arc<Mutex<Window>>);

impl SharedWindow {
    pub fn new(w: Window) -> SharedWindow {
        SharedWindow(Arc::new(Mutex::new(w)))
    }

    /// The window, for as long as the guard lives (a panic elsewhere does
    /// not make the history unreadable).
    pub fn lock(&self) -> MutexGuard<'_, Window> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The history in Unix ms, serialized without building it first.
pub struct HistoryView<'a> {
    w: &'a Window,
    now: u64,
}

impl Serialize for HistoryView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let w = self.w;
        let mut st = ser.serialize_struct("History", 6)?;
        st.serialize_field("time_ms", &w.unix(self.now))?;
        if w.window_ms % 1000 == 0 {
            st.serialize_field("window_s", &(w.window_ms / 1000))?;
        } else {
            st.serialize_field("window_s", &(w.window_ms as f64 / 1000.0))?;
        }
        st.serialize_field("limit_basis", &w.limit_basis)?;
        st.serialize_field("series", &SeriesView(w))?;
        st.serialize_field("events", &EventsView(w))?;
        st.serialize_field(
            "prediction",
            &w.prediction.map(|p| PredictionJson {
                from_ms: w.unix(p.from_ms),
                from_bytes: p.from_bytes,
                to_ms: w.unix(p.to_ms),
                to_bytes: p.to_bytes,
            }),
        )?;
        st.end()
    }
}

struct SeriesView<'a>(&'a Window);

impl Serialize for SeriesView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        let mut st = ser.serialize_struct("Series", 7)?;
        st.serialize_field("usage", &PointsView(w, &w.usage))?;
        st.serialize_field("working_set", &PointsView(w, &w.working_set))?;
        st.serialize_field("unreclaimable", &PointsView(w, &w.unreclaimable))?;
        st.serialize_field("rss", &PointsView(w, &w.rss))?;
        st.serialize_field("limit", &PointsView(w, &w.limit))?;
        st.serialize_field("go_heap_live", &PointsView(w, &w.go_heap_live))?;
        st.serialize_field("go_next_gc", &PointsView(w, &w.go_next_gc))?;
        st.end()
    }
}

/// `[[t_ms, bytes], …]`: each bucket's last time and its peak; a peak that
/// is not a number of bytes (+∞, no limit) is `null`.
struct PointsView<'a>(&'a Window, &'a Series);

impl Serialize for PointsView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.1.len()))?;
        for p in self.1.points() {
            let bytes = p.max.is_finite().then_some(p.max as u64);
            seq.serialize_element(&(self.0.unix(p.t_ms), bytes))?;
        }
        seq.end()
    }
}

struct EventsView<'a>(&'a Window);

#[derive(Serialize)]
struct EventJson<'a> {
    t_ms: u64,
    kind: EventKind,
    detail: &'a str,
}

impl Serialize for EventsView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        ser.collect_seq(w.events.iter().map(|e| EventJson {
            t_ms: w.unix(e.t_ms),
            kind: e.kind,
            detail: &e.detail,
        }))
    }
}

#[derive(Serialize)]
struct PredictionJson {
    from_ms: u64,
    from_bytes: u64,
    to_ms: u64,
    to_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_windowed() {
        let mut s = Series::new(10_000);
        for i in 0..100u64 {
            s.push(i * 1000, i as f64);
        }
        // Only the last 10 s (11 points, both ends included).
        assert_eq!(s.len(), 11);
        assert_eq!(s.span_s(), 10.0);
        // A day at 1 s is merged into MAX_POINTS buckets keeping the peaks.
        let mut s = Series::new(86_400_000);
        for i in 0..86_400u64 {
            s.push(i * 1000, if i % 7 == 0 { 100.0 } else { 1.0 });
        }
        assert!(s.len() <= MAX_POINTS, "{}", s.len());
        assert!(s.points().all(|p| p.max == 100.0));
    }

    #[test]
    fn clock_step_back_and_non_finite() {
        let mut s = Series::new(10_000);
        s.push(5000, 1.0);
        s.push(6000, f64::NAN);
        assert_eq!(s.len(), 1);
        s.push(1000, 2.0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.last().unwrap().last, 2.0);
    }

    const DAY_MS: u64 = 86_400_000;
    /// 2023-11-14T22:13:20Z, a Unix time in ms.
    const UNIX0: u64 = 1_700_000_000_000;

    fn json(w: &Window) -> serde_json::Value {
        serde_json::to_value(w.view().expect("a sample was added")).unwrap()
    }

    /// `[[t_ms, bytes], …]` of one series of the JSON.
    fn pairs(v: &serde_json::Value, series: &str) -> Vec<(u64, Option<u64>)> {
        v["series"][series]
            .as_array()
            .unwrap_or_else(|| panic!("{series}: {v}"))
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64()))
            .collect()
    }

    fn strictly_ordered(points: &[(u64, Option<u64>)]) -> bool {
        points.windows(2).all(|p| p[0].0 < p[1].0)
    }

    #[test]
    fn capacity_stops_at_what_a_series_holds() {
        let mut s = Series::new(DAY_MS);
        for i in 0..10 * MAX_POINTS as u64 {
            s.push(i * DAY_MS / MAX_POINTS as u64, 1.0);
        }
        assert_eq!(s.len(), MAX_POINTS);
        assert!(
            s.heap_bytes() <= (MAX_POINTS + 1) * std::mem::size_of::<Point>(),
            "{}",
            s.heap_bytes()
        );
    }

    #[test]
    fn a_day_of_polls_every_second_is_bounded_ordered_and_in_unix_ms() {
        // One poll a second for 30 h (a Go scrape every 5 s): 144 polls
        // merge into each of the 600 buckets of a 24 h window.
        let mut w = Window::new(DAY_MS);
        let polls = 30 * 3600;
        for i in 0..polls {
            let mono = i * 1000;
            w.set_now(mono, UNIX0 + mono);
            // A sawtooth peaking at 300 MiB once a minute.
            let v = if i % 60 == 0 { 300u64 << 20 } else { 100 << 20 };
            w.usage.push(mono, v as f64);
            w.limit.push(mono, (512u64 << 20) as f64);
            if i % 5 == 0 {
                w.go_heap_live.push(mono, (50u64 << 20) as f64);
            }
            if i % 10_000 == 0 {
                w.event(mono, EventKind::OomKill, format!("kill {i}"));
            }
        }
        let v = json(&w);
        let now = UNIX0 + (polls - 1) * 1000;
        assert_eq!(v["time_ms"], now);
        assert_eq!(v["window_s"], 86_400);
        assert_eq!(v["limit_basis"], "unreclaimable");
        for series in ["usage", "limit", "go_heap_live"] {
            let p = pairs(&v, series);
            assert!(!p.is_empty() && p.len() <= MAX_POINTS, "{series}: {} points", p.len());
            assert!(strictly_ordered(&p), "{series} not oldest first");
            let last = if series == "go_heap_live" { now - 4000 } else { now };
            assert_eq!(p.last().unwrap().0, last, "{series}: the newest point");
            assert!(
                p.iter().all(|x| x.0 >= now - DAY_MS && x.0 <= now),
                "{series}: a point outside the window"
            );
        }
        // Each bucket keeps its peak, in bytes.
        assert!(pairs(&v, "usage").iter().all(|p| p.1 == Some(300 << 20)));
        assert!(pairs(&v, "limit").iter().all(|p| p.1 == Some(512 << 20)));
        // The series nobody fed are there, empty.
        for series in ["working_set", "unreclaimable", "rss", "go_next_gc"] {
            assert_eq!(pairs(&v, series), vec![], "{series}");
        }
        // Events: only those within the window, oldest first.
        let events = v["events"].as_array().unwrap();
        assert!(!events.is_empty() && events.len() <= MAX_EVENTS);
        let times: Vec<u64> = events.iter().map(|e| e["t_ms"].as_u64().unwrap()).collect();
        assert!(times.windows(2).all(|t| t[0] < t[1]));
        assert!(times.iter().all(|t| *t >= now - DAY_MS), "{times:?}");
        assert_eq!(events[0]["kind"], "oom_kill");
        assert!(v["prediction"].is_null());
        assert!(w.heap_bytes() < 150 * 1024, "{}", w.heap_bytes());
    }

    #[test]
    fn events_age_out_and_are_bounded() {
        let mut w = Window::new(60_000);
        w.set_now(0, UNIX0);
        w.event(0, EventKind::TargetRestart, "pid 41 \u{2192} 57".into());
        w.set_now(60_000, UNIX0 + 60_000);
        assert_eq!(w.events().count(), 1, "still within the window");
        w.set_now(60_001, UNIX0 + 60_001);
        assert_eq!(w.events().count(), 0, "aged out");
        for i in 0..(MAX_EVENTS as u64 + 10) {
            w.event(60_001, EventKind::OomKill, format!("{i}"));
        }
        assert_eq!(w.events().count(), MAX_EVENTS);
        assert_eq!(w.events().next().unwrap().detail, "10", "the oldest go first");
    }

    #[test]
    fn a_ms_of_jitter_between_the_clocks_leaves_every_label_as_it_was() {
        let mut w = Window::new(60_000);
        let mut answers = Vec::new();
        for i in 0..20u64 {
            let mono = 5_000 + i * 500;
            // Read a ms apart, either way round.
            let unix = UNIX0 + mono + (i % 3);
            w.set_now(mono, unix);
            w.usage.push(mono, (100u64 << 20) as f64);
            answers.push(pairs(&json(&w), "usage"));
        }
        for pair in answers.windows(2) {
            assert_eq!(pair[1][..pair[0].len()], pair[0][..], "labels moved");
        }
        // A step beyond the jitter is followed.
        w.set_now(20_000, UNIX0 + 20_000 + 5_000);
        assert_eq!(pairs(&json(&w), "usage")[0].0, UNIX0 + 5_000 + 5_000);
    }

    #[test]
    fn a_wall_clock_step_moves_the_labels_not_the_order() {
        // The wall clock jumps back an hour after 30 polls and forward a day
        // after 60: the monotonic history keeps every point, in order, and
        // shows them in the clock of the last sample.
        let mut w = Window::new(600_000);
        for i in 0..90u64 {
            let mono = 5_000 + i * 1000;
            let unix = match i {
                0..30 => UNIX0 + mono,
                30..60 => UNIX0 + mono - 3_600_000,
                _ => UNIX0 + mono + DAY_MS,
            };
            w.set_now(mono, unix);
            w.working_set.push(mono, ((100 + i) << 20) as f64);
            if i == 10 {
                w.event(mono, EventKind::OomKill, "before the step".into());
            }
        }
        w.set_prediction(Some(PredictedLine {
            from_ms: 94_000,
            from_bytes: 189 << 20,
            to_ms: 194_000,
            to_bytes: 512 << 20,
        }));
        let v = json(&w);
        let p = pairs(&v, "working_set");
        assert_eq!(p.len(), 90, "no point dropped");
        assert!(strictly_ordered(&p));
        let now = UNIX0 + 94_000 + DAY_MS;
        assert_eq!(v["time_ms"], now);
        assert_eq!(p.last().unwrap(), &(now, Some(189 << 20)));
        assert_eq!(p[0], (now - 89_000, Some(100 << 20)));
        assert_eq!(v["events"][0]["t_ms"], now - 79_000);
        assert_eq!(v["events"][0]["detail"], "before the step");
        let pred = &v["prediction"];
        assert_eq!(
            (&pred["from_ms"], &pred["to_ms"], &pred["from_bytes"], &pred["to_bytes"]),
            (
                &now.into(),
                &(now + 100_000).into(),
                &(189u64 << 20).into(),
                &(512u64 << 20).into()
            )
        );
    }

    #[test]
    fn no_limit_is_null_and_a_cut_starts_a_point() {
        let mut w = Window::new(DAY_MS);
        w.set_now(1000, UNIX0);
        w.limit.push(1000, f64::INFINITY);
        w.limit.push(2000, f64::INFINITY);
        w.cut(false);
        // Same 144 s bucket, but after a cut: a point of its own.
        w.limit.push(3000, (256u64 << 20) as f64);
        w.set_now(3000, UNIX0 + 2000);
        let v = json(&w);
        assert_eq!(
            pairs(&v, "limit"),
            vec![(UNIX0 + 1000, None), (UNIX0 + 2000, Some(256 << 20))]
        );
        assert_eq!(v["series"]["limit"][0][1], serde_json::Value::Null);
        assert!(Window::new(1000).view().is_none(), "nothing to show before a sample");
        let mut w = Window::new(1500);
        w.set_now(0, UNIX0);
        assert_eq!(json(&w)["window_s"], 1.5);
    }
}
