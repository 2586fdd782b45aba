//! Robust trend: the Theil–Sen slope (the median of pairwise slopes), with
//! Kendall's tau as the measure of how consistently the series moves.
//!
//! Theil–Sen ignores up to ~29 % of outliers and a step near either end of
//! the window; tau is near 1 for a steady rise, near 0 for a flat or noisy
//! series and ~0.5 for a single step in the middle, which is why a leak needs
//! a high tau (see `predict`). At most [`MAX_FIT_POINTS`] evenly spaced points
//! enter a fit, so its cost is bounded whatever the window.

pub const MAX_FIT_POINTS: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Units per second.
    pub slope: f64,
    /// The fitted value at the last point's time.
    pub at_end: f64,
    /// Kendall's tau in [-1, 1].
    pub tau: f64,
    pub n: usize,
    pub span_s: f64,
}

/// Fits `(t_seconds, value)` points, oldest first. `None` for fewer than 3
/// points or no time span.
pub fn theil_sen(points: &[(f64, f64)], scratch: &mut Vec<f64>) -> Option<Fit> {
    let n_all = points.len();
    if n_all < 3 {
        return None;
    }
    let step = n_all.div_ceil(MAX_FIT_POINTS).max(1);
    // Keep the newest point in the subsample.
    let idx: Vec<usize> = (0..n_all)
        .rev()
        .step_by(step)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let n = idx.len();
    if n < 3 {
        return None;
    }
    let t_end = points[n_all - 1].0;
    let span_s = t_end - points[idx[0]].0;
    if span_s <= 0.0 {
        return None;
    }
    scratch.clear();
    let (mut concordant, mut discordant) = (0i64, 0i64);
    for a in 0..n {
        let (ta, va) = points[idx[a]];
        for &ib in &idx[a + 1..] {
            let (tb, vb) = points[ib];
            let dt = tb - ta;
            if dt <= 0.0 {
                continue;
            }
            let dv = vb - va;
            scratch.push(dv / dt);
            if dv > 0.0 {
                concordant += 1;
            } else if dv < 0.0 {
                discordant += 1;
            }
        }
    }
    if scratch.is_empty() {
        return None;
    }
    let pairs = scratch.len() as f64;
    let slope = median(scratch);
    scratch.clear();
    scratch.extend(idx.iter().map(|&i| points[i].1 - slope * (points[i].0 - t_end)));
    let at_end = median(scratch);
    Some(Fit {
        slope,
        at_end,
        tau: (concordant - discordant) as f64 / pairs,
        n,
        span_s,
    })
}

fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(f: impl Fn(f64) -> f64, n: usize) -> Fit {
        let pts: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, f(i as f64))).collect();
        theil_sen(&pts, &mut Vec::new()).unwrap()
    }

    #[test]
    fn linear_exact() {
        let f = fit(|t| 100.0 + 2.0 * t, 50);
        assert!((f.slope - 2.0).abs() < 1e-9);
        assert!((f.at_end - (100.0 + 2.0 * 49.0)).abs() < 1e-9);
        assert_eq!(f.tau, 1.0);
    }

    #[test]
    fn flat_and_noise() {
        let f = fit(|_| 7.0, 30);
        assert_eq!((f.slope, f.tau), (0.0, 0.0));
        // Deterministic noise of ±50 around a flat line.
        let f = fit(|t| 1000.0 + 50.0 * ((t * 12.9898).sin() * 43758.5453).fract(), 200);
        assert!(f.slope.abs() < 1.0, "{f:?}");
        assert!(f.tau.abs() < 0.2, "{f:?}");
    }

    #[test]
    fn outliers_do_not_move_it() {
        let f = fit(|t| if t as usize % 10 == 3 { 1e9 } else { 5.0 * t }, 100);
        assert!((f.slope - 5.0).abs() < 0.01, "{f:?}");
    }

    #[test]
    fn step_in_the_middle_has_a_low_tau() {
        let f = fit(|t| if t < 50.0 { 0.0 } else { 100.0 }, 100);
        assert!(f.tau < 0.6, "{f:?}");
    }

    #[test]
    fn subsampled_fit_is_bounded_and_still_right() {
        let f = fit(|t| 3.0 * t, 5000);
        assert!(f.n <= MAX_FIT_POINTS + 1, "{}", f.n);
        assert!((f.slope - 3.0).abs() < 1e-9);
        assert!((f.at_end - 3.0 * 4999.0).abs() < 1e-6);
    }

    #[test]
    fn too_little_data() {
        assert!(theil_sen(&[(0.0, 1.0), (1.0, 2.0)], &mut Vec::new()).is_none());
        assert!(theil_sen(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], &mut Vec::new()).is_none());
    }
}
