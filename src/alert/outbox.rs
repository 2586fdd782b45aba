//! The pure part of delivering to a receiver that may be down: an
//! [`Outbox`] holding one pending message per target (a newer one
//! supersedes it), the [`backoff`] between failed attempts, and the
//! [`FailureLog`] that says when an outage is worth a log line. No I/O, no
//! clock: times and random numbers come in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// A message that a newer one for the same target supersedes.
pub trait Pending {
    /// Folds `newer` into `self`; afterwards `self` is what must reach the
    /// receiver for it to know the target's current state.
    fn supersede(&mut self, newer: Self);
}

/// What the sender takes from the outbox: a copy of a target's pending
/// message and its generation, to tell later whether it was superseded.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken<K, V> {
    pub key: K,
    pub value: V,
    pub generation: u64,
}

/// One pending message per target, in the order targets first became
/// pending. A target's message is replaced (merged, see [`Pending`]) by a
/// newer one, so the receiver never gets an older state after a newer one
/// and memory is bounded by the number of targets (at most `capacity`).
#[derive(Debug)]
pub struct Outbox<K, V> {
    entries: HashMap<K, (V, u64)>,
    order: VecDeque<K>,
    capacity: usize,
    next_generation: u64,
}

impl<K: Eq + Hash + Clone, V: Pending + Clone> Outbox<K, V> {
    pub fn new(capacity: usize) -> Outbox<K, V> {
        Outbox {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_generation: 0,
        }
    }

    /// Queues `value` for `key`, superseding what is pending for it (which
    /// keeps its place in the order). A new target when `capacity` targets
    /// are pending pushes out the one pending longest: returned, to log.
    pub fn put(&mut self, key: K, value: V) -> Option<K> {
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some((pending, g)) = self.entries.get_mut(&key) {
            pending.supersede(value);
            *g = generation;
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity {
            let old = self.order.pop_front();
            if let Some(k) = &old {
                self.entries.remove(k);
            }
            old
        } else {
            None
        };
        self.entries.insert(key.clone(), (value, generation));
        self.order.push_back(key);
        evicted
    }

    /// The message to send next: the first target's, copied (it stays
    /// pending until [`Outbox::delivered`]).
    pub fn next(&self) -> Option<Taken<K, V>> {
        let key = self.order.front()?;
        let (value, generation) = self.entries.get(key)?;
        Some(Taken {
            key: key.clone(),
            value: value.clone(),
            generation: *generation,
        })
    }

    /// The receiver took `key`'s message of `generation`: it is no longer
    /// pending, unless a newer one came meanwhile (that one is next).
    pub fn delivered(&mut self, key: &K, generation: u64) {
        if self.entries.get(key).is_some_and(|(_, g)| *g == generation) {
            self.entries.remove(key);
            self.order.retain(|k| k != key);
        }
    }

    /// Sending `key`'s message failed: it stays pending, behind the other
    /// targets', so that one message the receiver refuses blocks no other.
    pub fn failed(&mut self, key: &K) {
        if let Some(pos) = self.order.iter().position(|k| k == key) {
            if let Some(k) = self.order.remove(pos) {
                self.order.push_back(k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The first wait after a failed attempt ...
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// ... doubling up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The wait after `failures` failed attempts in a row (≥ 1): the step
/// `BACKOFF_FIRST × 2^(failures−1)`, capped at [`BACKOFF_CAP`], of which a
/// random half is left out (`random` picks it) so that many senders that
/// failed together do not retry together.
pub fn backoff(failures: u32, random: u64) -> Duration {
    let step = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = step.as_millis() as u64 / 2;
    Duration::from_millis(step.as_millis() as u64 - random % (half + 1))
}

/// How often a continuing outage is logged again.
pub const LOG_EVERY_MS: u64 = 60_000;

/// A log line about a receiver's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first failure after a success (or at start).
    Failing,
    /// Still failing: `attempts` failed since the last report, over `for_ms`
    /// since the first failure.
    StillFailing { attempts: u64, for_ms: u64 },
    /// Delivered again after `attempts` failed attempts over `for_ms`.
    Recovered { attempts: u64, for_ms: u64 },
}

/// Decides which failures and recoveries are logged: the first failure, then
/// at most one line per [`LOG_EVERY_MS`] with the count of failed attempts,
/// and the recovery. Times are monotonic milliseconds.
#[derive(Debug, Default, Clone)]
pub struct FailureLog {
    /// Since when it has been failing, and the last report's time.
    failing: Option<(u64, u64)>,
    since_report: u64,
    total: u64,
}

impl FailureLog {
    pub fn failure(&mut self, now_ms: u64) -> Option<Report> {
        self.total += 1;
        match &mut self.failing {
            None => {
                self.failing = Some((now_ms, now_ms));
                self.since_report = 0;
                Some(Report::Failing)
            }
            Some((since, last)) => {
                self.since_report += 1;
                if now_ms.saturating_sub(*last) < LOG_EVERY_MS {
                    return None;
                }
                *last = now_ms;
                let attempts = std::mem::take(&mut self.since_report);
                Some(Report::StillFailing {
                    attempts,
                    for_ms: now_ms.saturating_sub(*since),
                })
            }
        }
    }

    pub fn success(&mut self, now_ms: u64) -> Option<Report> {
        let (since, _) = self.failing.take()?;
        let attempts = std::mem::take(&mut self.total);
        self.since_report = 0;
        Some(Report::Recovered {
            attempts,
            for_ms: now_ms.saturating_sub(since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message whose newer version replaces it: a list of the states it
    /// stands for (the last one wins), to check what was folded in.
    #[derive(Debug, Clone, PartialEq)]
    struct Latest(Vec<u32>);

    impl Pending for Latest {
        fn supersede(&mut self, newer: Latest) {
            self.0.extend(newer.0);
        }
    }

    fn take(o: &Outbox<&'static str, Latest>) -> (&'static str, Vec<u32>, u64) {
        let t = o.next().expect("pending");
        (t.key, t.value.0, t.generation)
    }

    #[test]
    fn a_newer_message_supersedes_and_keeps_its_place() {
        let mut o = Outbox::new(10);
        assert!(o.next().is_none() && o.is_empty());
        o.put("a", Latest(vec![1]));
        o.put("b", Latest(vec![10]));
        o.put("a", Latest(vec![2]));
        assert_eq!(o.len(), 2, "one entry per target");
        let (k, v, g) = take(&o);
        assert_eq!((k, v), ("a", vec![1, 2]), "a first, with its newer state folded in");
        o.delivered(&"a", g);
        let (k, v, g) = take(&o);
        assert_eq!((k, v), ("b", vec![10]));
        o.delivered(&"b", g);
        assert!(o.is_empty());
    }

    #[test]
    fn superseded_while_in_flight_is_sent_next_and_never_an_older_one() {
        let mut o = Outbox::new(10);
        o.put("a", Latest(vec![1]));
        o.put("b", Latest(vec![10]));
        let (_, v, g) = take(&o);
        assert_eq!(v, vec![1]);
        // While it is on the wire a newer state comes.
        o.put("a", Latest(vec![2]));
        o.delivered(&"a", g);
        let (k, v, g2) = take(&o);
        assert_eq!((k, v), ("a", vec![1, 2]), "the newer state is still pending, first");
        assert_ne!(g, g2);
        o.delivered(&"a", g2);
        assert_eq!(take(&o).0, "b");
    }

    #[test]
    fn a_failure_lets_the_other_targets_go_first() {
        let mut o = Outbox::new(10);
        o.put("a", Latest(vec![1]));
        o.put("b", Latest(vec![10]));
        o.failed(&"a");
        assert_eq!(take(&o).0, "b");
        o.failed(&"b");
        assert_eq!(take(&o).0, "a");
        // Failing never drops anything.
        for _ in 0..1000 {
            let k = take(&o).0;
            o.failed(&k);
        }
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn bounded_by_its_capacity() {
        let mut o = Outbox::new(3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(o.put(k, Latest(vec![i as u32])), None);
        }
        // Updates to pending targets never push anything out.
        for i in 0..100 {
            assert_eq!(o.put("b", Latest(vec![i])), None);
        }
        assert_eq!(o.put("d", Latest(vec![9])), Some("a"), "the one pending longest");
        assert_eq!(o.len(), 3);
        assert_eq!(take(&o).0, "b");
    }

    #[test]
    fn backoff_doubles_within_bounds_up_to_the_cap() {
        for failures in 1..=40u32 {
            let step = BACKOFF_FIRST
                .saturating_mul(2u32.saturating_pow(failures - 1))
                .min(BACKOFF_CAP);
            for random in [0, 1, 499, 500, 12_345, u64::MAX / 3, u64::MAX] {
                let d = backoff(failures, random);
                assert!(d <= step && d >= step / 2, "{failures} {random}: {d:?} vs {step:?}");
                assert!(d <= BACKOFF_CAP);
            }
        }
        assert_eq!(backoff(1, 0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0), Duration::from_secs(2));
        assert_eq!(backoff(3, 0), Duration::from_secs(4));
        assert_eq!(backoff(7, 0), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 0), BACKOFF_CAP);
        assert_eq!(backoff(7, 30_000), BACKOFF_CAP / 2, "the jitter leaves out up to half");
        assert_eq!(backoff(0, 0), BACKOFF_FIRST);
    }

    #[test]
    fn an_outage_is_logged_once_a_minute_with_its_count() {
        let mut l = FailureLog::default();
        assert_eq!(l.success(0), None, "nothing to say while it works");
        assert_eq!(l.failure(1_000), Some(Report::Failing));
        let mut lines = 0;
        let mut counted = 0;
        // Ten minutes of attempts every second.
        for s in 2..=600u64 {
            match l.failure(s * 1000) {
                None => {}
                Some(Report::StillFailing { attempts, for_ms }) => {
                    lines += 1;
                    counted += attempts;
                    assert_eq!(for_ms, s * 1000 - 1000);
                }
                Some(other) => panic!("{other:?}"),
            }
        }
        assert!((9..=10).contains(&lines), "{lines} lines in ten minutes");
        assert!((599 - 60..=599).contains(&counted), "{counted}");
        assert_eq!(
            l.success(601_000),
            Some(Report::Recovered {
                attempts: 600,
                for_ms: 600_000
            })
        );
        // A new outage starts over.
        assert_eq!(l.failure(700_000), Some(Report::Failing));
        assert_eq!(
            l.success(700_500),
            Some(Report::Recovered {
                attempts: 1,
                for_ms: 500
            })
        );
    }
}
