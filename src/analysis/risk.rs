//! OOM risk with hysteresis: raised after two polls in a row, lowered only
//! after the lower level has held for [`CLEAR_AFTER_MS`], so it does not flap.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    #[default]
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Ok => "ok",
            Risk::Warning => "warning",
            Risk::Critical => "critical",
        }
    }

    /// The inverse of [`Risk::as_str`].
    pub fn parse(s: &str) -> Option<Risk> {
        [Risk::Ok, Risk::Warning, Risk::Critical]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Polls in a row a higher level must be seen before it is raised.
pub const RAISE_POLLS: u32 = 2;
/// How long a lower level must hold before the risk is lowered.
pub const CLEAR_AFTER_MS: u64 = 60_000;

#[derive(Debug, Clone, Default)]
pub struct RiskState {
    level: Risk,
    up_streak: u32,
    /// Since when the (margin-adjusted) level has been below `level`.
    lower_since_ms: Option<u64>,
}

impl RiskState {
    pub fn level(&self) -> Risk {
        self.level
    }

    /// `raw` is the level the thresholds give now; `raw_with_margin` the
    /// level with the thresholds widened (a lower level must clear those).
    pub fn update(&mut self, raw: Risk, raw_with_margin: Risk, now_ms: u64) -> Risk {
        if raw > self.level {
            self.up_streak += 1;
            if self.up_streak >= RAISE_POLLS {
                self.level = raw;
                self.up_streak = 0;
                self.lower_since_ms = None;
            }
        } else {
            self.up_streak = 0;
        }
        if raw_with_margin < self.level {
            let since = *self.lower_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= CLEAR_AFTER_MS {
                self.level = raw_with_margin;
                self.lower_since_ms = None;
            }
        } else {
            self.lower_since_ms = None;
        }
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Risk::*;

    #[test]
    fn raises_after_two_polls_and_ignores_a_blip() {
        let mut s = RiskState::default();
        assert_eq!(s.update(Critical, Critical, 0), Ok);
        assert_eq!(s.update(Ok, Ok, 1000), Ok, "a single blip is not an alert");
        assert_eq!(s.update(Warning, Warning, 2000), Ok);
        assert_eq!(s.update(Warning, Warning, 3000), Warning);
        assert_eq!(s.update(Critical, Critical, 4000), Warning);
        assert_eq!(s.update(Critical, Critical, 5000), Critical);
    }

    #[test]
    fn lowers_only_after_holding_clear() {
        let mut s = RiskState::default();
        s.update(Critical, Critical, 0);
        s.update(Critical, Critical, 1000);
        // Below the threshold but not below it with the margin: stays.
        assert_eq!(s.update(Warning, Critical, 2000), Critical);
        assert_eq!(s.update(Ok, Ok, 3000), Critical);
        assert_eq!(s.update(Ok, Ok, 3000 + CLEAR_AFTER_MS - 1), Critical);
        // Back at the level (with the margin): the clock starts again.
        assert_eq!(s.update(Ok, Critical, 3000 + CLEAR_AFTER_MS - 1), Critical);
        assert_eq!(s.update(Ok, Ok, 3000 + CLEAR_AFTER_MS + 1000), Critical);
        assert_eq!(s.update(Ok, Ok, 3000 + 2 * CLEAR_AFTER_MS), Critical);
        // Held clear for long enough: lowered to the level it held at.
        assert_eq!(s.update(Ok, Warning, 3000 + 2 * CLEAR_AFTER_MS + 1000), Warning);
    }
}
