//! Findings with hysteresis, like the risk: a cause is called as soon as
//! its evidence shows, and once called it stays until its evidence has been
//! gone for [`HOLD_MS`], so a cause whose evidence hovers at a threshold
//! does not flicker on and off from one poll to the next.

use super::diagnosis::{Cause, Finding};
use std::collections::BTreeMap;

/// How long a cause stays after its evidence was last seen.
pub const HOLD_MS: u64 = 60_000;

#[derive(Debug, Clone)]
struct Held {
    finding: Finding,
    last_seen_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FindingsState {
    held: BTreeMap<Cause, Held>,
}

impl FindingsState {
    /// Forgets every cause: a new target instance starts afresh.
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// `now` are the causes this poll's evidence shows; returns the causes
    /// to report, sorted. A held cause keeps its last evidence, said to be
    /// that old.
    pub fn update(&mut self, now: Vec<Finding>, now_ms: u64) -> Vec<Finding> {
        for f in now {
            self.held.insert(
                f.cause,
                Held {
                    finding: f,
                    last_seen_ms: now_ms,
                },
            );
        }
        self.held.retain(|_, h| now_ms.saturating_sub(h.last_seen_ms) < HOLD_MS);
        self.held
            .values()
            .map(|h| {
                let age_s = now_ms.saturating_sub(h.last_seen_ms) / 1000;
                let mut f = h.finding.clone();
                if now_ms > h.last_seen_ms {
                    f.evidence = format!("{} (as last seen {age_s} s ago)", f.evidence);
                }
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(cause: Cause, evidence: &str) -> Finding {
        Finding {
            cause,
            evidence: evidence.into(),
            advice: "a".into(),
        }
    }

    fn causes(v: &[Finding]) -> Vec<Cause> {
        v.iter().map(|f| f.cause).collect()
    }

    #[test]
    fn called_at_once_and_held_through_gaps() {
        let mut st = FindingsState::default();
        assert_eq!(
            causes(&st.update(vec![f(Cause::OffHeapGrowth, "x")], 0)),
            [Cause::OffHeapGrowth]
        );
        // Evidence flickers off for 59 s: the cause stays, its evidence dated.
        let held = st.update(vec![], 59_000);
        assert_eq!(causes(&held), [Cause::OffHeapGrowth]);
        assert_eq!(held[0].evidence, "x (as last seen 59 s ago)");
        // Seen again: fresh evidence, and the hold starts over.
        let again = st.update(vec![f(Cause::OffHeapGrowth, "y")], 60_000);
        assert_eq!(again[0].evidence, "y");
        assert_eq!(causes(&st.update(vec![], 119_999)), [Cause::OffHeapGrowth]);
        // Gone for the whole hold: dropped.
        assert!(st.update(vec![], 120_000).is_empty());
    }

    #[test]
    fn sorted_and_cleared() {
        let mut st = FindingsState::default();
        st.update(vec![f(Cause::PageCache, "p")], 0);
        let out = st.update(vec![f(Cause::HeapLeak, "h")], 1000);
        assert_eq!(causes(&out), [Cause::HeapLeak, Cause::PageCache]);
        st.clear();
        assert!(st.update(vec![], 2000).is_empty());
    }
}
