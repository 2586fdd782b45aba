//! OOM kills of the target, each counted once. A kill is read from the
//! cgroup's own counter — at a poll, or by the watcher the moment the kernel
//! signals ([`crate::source::events`]) — whenever the cgroup can still be
//! read after the target died. When it cannot (the runtime removed the
//! killed container's cgroup before anything read it), the kill is inferred
//! from what the kernel still shows: the node's OOM kill count rose since
//! the last poll, and the target's cgroup was near its limit. A `kill -9`
//! or a container stopped by its runtime leaves the node's count alone and
//! is never counted.

use crate::parse::cgroup_files::Limit;
use crate::sample::{CgroupSample, KillHow, OomKill};

/// The cgroup's usage, at its last read or extrapolated from there at the
/// pace it grew to the moment the death was seen, was at least this
/// fraction of its limit (or it had hit the limit: failcnt, under_oom): a
/// death then, with the node's OOM kill count rising, is an OOM kill.
pub const NEAR_LIMIT: f64 = 0.75;

/// What the kernel showed around the target's death.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeathEvidence {
    /// The node's `oom_kill` (/proc/vmstat) at the poll before the death ...
    pub node_oom_kills_before: Option<u64>,
    /// ... and at the poll that saw it.
    pub node_oom_kills_now: Option<u64>,
    /// The target's cgroup at its last read: usage (extrapolated to the
    /// death at the pace of its last two reads) and the effective limit.
    pub last_usage: Option<u64>,
    pub limit: Option<u64>,
    /// v1 `memory.failcnt` (the usage hit the limit this many times).
    pub failcnt: Option<u64>,
    /// v1 `under_oom`, v2 `memory.events` `max` > 0: the limit was reached.
    pub hit_limit: bool,
}

/// Whether a death that no cgroup read could explain was an OOM kill.
pub fn infer_oom_kill(e: &DeathEvidence) -> bool {
    let node_rose = matches!((e.node_oom_kills_before, e.node_oom_kills_now), (Some(a), Some(b)) if b > a);
    let near_limit = e.hit_limit
        || e.failcnt.is_some_and(|f| f > 0)
        || matches!((e.last_usage, e.limit), (Some(u), Some(l)) if u as f64 >= NEAR_LIMIT * l as f64);
    node_rose && near_limit
}

/// What the kernel showed at the last poll, kept to judge a death.
#[derive(Debug, Default, Clone, Copy)]
struct LastSeen {
    node_oom_kills: Option<u64>,
    /// Monotonic ms of the last cgroup read, and the usage's growth from
    /// the read before it (bytes per second, never negative).
    read_ms: Option<u64>,
    growth: f64,
    usage: Option<u64>,
    limit: Option<u64>,
    failcnt: Option<u64>,
    hit_limit: bool,
}

/// The death judgement: keeps what the kernel showed at each poll, judges
/// each target instance's death once, and counts the kills it inferred.
/// It is fed the evidence and reads nothing itself.
#[derive(Debug, Default)]
pub struct DeathJudge {
    seen: LastSeen,
    inferred: u64,
    last: Option<OomKill>,
    /// The counted total at the last poll, to tell when it rose (kills
    /// counted before headroom started are not "the last kill").
    counted_before: Option<u64>,
    /// The last instance whose death was judged (each is judged once).
    judged: Option<u64>,
    /// The PID of the instance that died in this poll.
    dying_pid: Option<u32>,
}

impl DeathJudge {
    /// Keeps what a later death will be judged by: this poll's cgroup (if
    /// read), the usage (the cgroup's, else the target's RSS), the limit,
    /// at monotonic `mono_ms`. Returns whether the node's OOM kill count
    /// should be read now (then given to [`DeathJudge::node_count`]): only
    /// while a death could be taken for an OOM kill, the memory within
    /// [`NEAR_LIMIT`] of the limit at its pace over the next `ahead_s`
    /// seconds, or the limit already hit. Otherwise the count "before" is
    /// unknown, and a death then is no inferred kill, as the judgement
    /// would find anyway.
    pub fn observe(
        &mut self,
        c: Option<&CgroupSample>,
        usage: Option<u64>,
        limit: Option<Limit>,
        mono_ms: u64,
        ahead_s: f64,
    ) -> bool {
        if let Some(now) = usage {
            let seen = &mut self.seen;
            seen.growth = match (seen.read_ms, seen.usage) {
                (Some(t), Some(u)) if mono_ms > t => (now as f64 - u as f64).max(0.0) / ((mono_ms - t) as f64 / 1000.0),
                _ => 0.0,
            };
            seen.read_ms = Some(mono_ms);
            seen.usage = Some(now);
            seen.limit = limit.and_then(Limit::bytes);
        }
        if let Some(c) = c {
            self.seen.failcnt = c.failcnt;
            self.seen.hit_limit = c.oom_control.as_ref().and_then(|o| o.under_oom) == Some(true)
                || c.events.as_ref().and_then(|e| e.max).is_some_and(|m| m > 0);
        }
        let seen = self.seen;
        let near_soon = seen.hit_limit
            || seen.failcnt.is_some_and(|f| f > 0)
            || matches!((seen.usage, seen.limit), (Some(u), Some(l))
                if u as f64 + seen.growth * ahead_s >= NEAR_LIMIT * l as f64);
        if !near_soon {
            self.seen.node_oom_kills = None;
        }
        near_soon
    }

    /// The node's OOM kill count read this poll (see [`DeathJudge::observe`]).
    pub fn node_count(&mut self, count: Option<u64>) {
        self.seen.node_oom_kills = count;
    }

    /// The target instance `instance` (PID `pid`) died: true when its death
    /// is still to be judged (each is judged once).
    pub fn begin(&mut self, instance: u64, pid: Option<u32>) -> bool {
        if self.judged == Some(instance) {
            return false;
        }
        self.judged = Some(instance);
        self.dying_pid = pid;
        true
    }

    /// Whether the death begun was an OOM kill, when no cgroup read after it
    /// could tell: `node_now` is the node's OOM kill count now, the times
    /// those of the poll that saw the death. An inferred kill is counted.
    pub fn infer(&mut self, node_now: Option<u64>, now_mono_ms: u64, now_ms: u64) -> bool {
        let seen = self.seen;
        let since_s = match seen.read_ms {
            Some(t) if now_mono_ms > t => (now_mono_ms - t) as f64 / 1000.0,
            _ => 0.0,
        };
        let evidence = DeathEvidence {
            node_oom_kills_before: seen.node_oom_kills,
            node_oom_kills_now: node_now,
            last_usage: seen.usage.map(|u| u.saturating_add((seen.growth * since_s) as u64)),
            limit: seen.limit,
            failcnt: seen.failcnt,
            hit_limit: seen.hit_limit,
        };
        if !infer_oom_kill(&evidence) {
            tracing::info!("the target exited (not an OOM kill: {evidence:?})");
            return false;
        }
        self.inferred += 1;
        self.last = Some(OomKill {
            time_ms: now_ms,
            how: KillHow::Inferred,
            pid: self.dying_pid,
        });
        tracing::warn!(
            inferred_total = self.inferred,
            "the target died and its cgroup was gone before it could be read; the node's OOM kill count rose and \
             the cgroup was near its limit: counted as an OOM kill (inferred)"
        );
        true
    }

    /// The end of a poll: `counted` is the kills read from the cgroups so
    /// far; a rise is the last kill, of the instance that died this poll
    /// (else of `pid`).
    pub fn poll_end(&mut self, counted: u64, now_ms: u64, pid: Option<u32>) {
        if self.counted_before.is_some_and(|before| counted > before) {
            self.last = Some(OomKill {
                time_ms: now_ms,
                how: KillHow::Cgroup,
                pid: self.dying_pid.take().or(pid),
            });
        }
        self.counted_before = Some(counted);
        self.dying_pid = None;
    }

    /// The instance whose death was judged last.
    pub fn judged(&self) -> Option<u64> {
        self.judged
    }

    pub fn inferred(&self) -> u64 {
        self.inferred
    }

    pub fn last(&self) -> Option<OomKill> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_table() {
        let near = DeathEvidence {
            node_oom_kills_before: Some(4),
            node_oom_kills_now: Some(5),
            last_usage: Some(120),
            limit: Some(128),
            ..DeathEvidence::default()
        };
        let cases = [
            ("OOM: node count rose, near the limit", near, true),
            (
                "kill -9 near the limit: the node's count did not move",
                DeathEvidence {
                    node_oom_kills_now: Some(4),
                    ..near
                },
                false,
            ),
            (
                "another cgroup's kill while ours was far from its limit",
                DeathEvidence {
                    last_usage: Some(20),
                    ..near
                },
                false,
            ),
            (
                "far from the limit at the last poll, but it had hit it (failcnt)",
                DeathEvidence {
                    last_usage: Some(20),
                    failcnt: Some(3),
                    ..near
                },
                true,
            ),
            ("no limit and nothing hit", DeathEvidence { limit: None, ..near }, false),
            (
                "vmstat unreadable",
                DeathEvidence {
                    node_oom_kills_before: None,
                    ..near
                },
                false,
            ),
        ];
        for (what, e, want) in cases {
            assert_eq!(infer_oom_kill(&e), want, "{what}: {e:?}");
        }
    }

    #[test]
    fn the_judge_asks_for_the_node_count_only_near_the_limit_and_judges_each_death_once() {
        let mut j = DeathJudge::default();
        let lim = Some(Limit::Bytes(100));
        // Far from the limit and not growing: no node count wanted.
        assert!(!j.observe(None, Some(10), lim, 0, 3.0));
        // Growing 60 B/s: 3 s ahead passes the limit.
        assert!(j.observe(None, Some(70), lim, 1000, 3.0));
        j.node_count(Some(7));
        assert!(j.begin(1, Some(42)));
        assert!(!j.begin(1, Some(42)), "a death is judged once");
        // The node's count rose and the usage was near: an inferred kill.
        assert!(j.infer(Some(8), 2000, 5_000));
        assert_eq!(j.inferred(), 1);
        assert_eq!(
            j.last(),
            Some(OomKill {
                time_ms: 5_000,
                how: KillHow::Inferred,
                pid: Some(42)
            })
        );
        // A second instance killed with the node's count unchanged: no kill.
        assert!(j.begin(2, Some(43)));
        assert!(!j.infer(Some(7), 3000, 6_000));
        assert_eq!(j.inferred(), 1);
    }

    #[test]
    fn a_rise_of_the_counted_kills_is_the_last_kill_of_the_dying_instance() {
        let mut j = DeathJudge::default();
        // Kills counted before the first poll are not "the last kill".
        j.poll_end(3, 1_000, Some(9));
        assert_eq!(j.last(), None);
        assert!(j.begin(0, Some(9)));
        j.poll_end(4, 2_000, Some(10));
        assert_eq!(
            j.last(),
            Some(OomKill {
                time_ms: 2_000,
                how: KillHow::Cgroup,
                pid: Some(9)
            })
        );
        // Later rises with no death this poll belong to the current PID.
        j.poll_end(5, 3_000, Some(10));
        assert_eq!(j.last().and_then(|k| k.pid), Some(10));
    }
}
