//! A bounded history of one series over the analysis window.
//!
//! At most [`MAX_POINTS`] points are kept whatever the window: when the
//! window holds more polls than that, polls are merged into buckets of
//! window / MAX_POINTS, keeping the last value and the maximum (the peak the
//! kernel would have seen). Memory does not grow with uptime.

use std::collections::VecDeque;

pub const MAX_POINTS: usize = 600;

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
}

impl Series {
    pub fn new(window_ms: u64) -> Series {
        let bucket_ms = (window_ms / MAX_POINTS as u64).max(1);
        Series {
            points: VecDeque::with_capacity(MAX_POINTS.min(64)),
            window_ms,
            bucket_ms,
        }
    }

    /// Adds a value; a time that goes backwards (clock step) clears the series.
    pub fn push(&mut self, t_ms: u64, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(last) = self.points.back_mut() {
            if t_ms < last.t_ms {
                self.points.clear();
            } else if t_ms / self.bucket_ms == last.t_ms / self.bucket_ms {
                last.t_ms = t_ms;
                last.last = v;
                last.max = last.max.max(v);
                return;
            }
        }
        self.points.push_back(Point { t_ms, last: v, max: v });
        let oldest = t_ms.saturating_sub(self.window_ms);
        while self.points.front().is_some_and(|p| p.t_ms < oldest) || self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
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
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => (b.t_ms - a.t_ms) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// Bytes of memory the points take (for the benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
    }
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
}
