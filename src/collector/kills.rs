//! Every exit of the target classified, and every OOM kill counted once.
//!
//! A kill is read from the cgroup's own counter — at a poll, or by the
//! watcher the moment the kernel signals ([`crate::source::events`]). Kills
//! read are *unattributed* until a death or the target's survival explains
//! them: the target's death then was that kill (read, never inferred
//! again); a kill the target outlived by a whole poll was of another
//! process of its cgroup (a child), named from the cgroup's process list.
//!
//! When the runtime removed the killed container's cgroup before anything
//! read it, the kill is inferred from what the kernel still shows: the
//! node's OOM kill count rose since the last poll, and the cgroup was on
//! its way to its limit — its usage at least [`INFER_FRACTION`] of it (a
//! jump from there to the limit within one poll is caught), or the limit
//! hit since the read before (a rise of failcnt or `max`, never a lifetime
//! total). A `kill -9`, an exit, or a death far from the limit while
//! another pod is OOM-killed is no OOM kill.
//!
//! How an OOM kill is named: `oom_group_kill` when v2's `oom_group_kill`
//! rose; `oom_kill` when the cgroup was at its limit (v2: its `oom` count
//! rose; v1: under_oom, failcnt rose, or usage within [`NEAR_LIMIT`]);
//! otherwise `node_oom`, the node-wide OOM killer (or a pod-level limit
//! the container was not near: the kernel does not tell them apart here).

use crate::parse::cgroup_files::Limit;
use crate::sample::{CgroupSample, ExitReason, KillHow, OomKill, TargetExit, WaitStatus};
use std::collections::BTreeMap;

/// The usage at or above this fraction of the limit is "at the limit" when
/// naming a kill read from a v1 cgroup (which has no `oom` count).
pub const NEAR_LIMIT: f64 = 0.75;

/// A death no cgroup read explains, with the node's OOM kill count rising,
/// is an inferred OOM kill when the usage (extrapolated to the death) was
/// at least this fraction of the limit: low enough that a jump from under
/// half the limit to the kill within one poll is counted, high enough that
/// a `kill -9` of an idle target is not blamed on another pod's kill.
pub const INFER_FRACTION: f64 = 1.0 / 3.0;

/// SIGKILL: the OOM killer's signal.
const SIGKILL: i32 = 9;

/// What the kernel showed around a death no cgroup read explained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeathEvidence {
    /// The node's `oom_kill` (/proc/vmstat) at the poll before the death ...
    pub node_oom_kills_before: Option<u64>,
    /// ... and at the poll that saw it.
    pub node_oom_kills_now: Option<u64>,
    /// The target's usage at its last read, extrapolated to the death at
    /// the pace of its last two reads, and the effective limit.
    pub last_usage: Option<u64>,
    pub limit: Option<u64>,
    /// The limit was hit between the last two reads (failcnt or v2 `max`
    /// rose), or v1 `under_oom` was set at the last.
    pub hit_limit: bool,
}

/// Whether a death that no cgroup read could explain was an OOM kill.
pub fn infer_oom_kill(e: &DeathEvidence) -> bool {
    let node_rose = matches!((e.node_oom_kills_before, e.node_oom_kills_now), (Some(a), Some(b)) if b > a);
    let on_the_way =
        e.hit_limit || matches!((e.last_usage, e.limit), (Some(u), Some(l)) if u as f64 >= INFER_FRACTION * l as f64);
    node_rose && on_the_way
}

/// What the kernel showed at the last poll, kept to judge a death.
#[derive(Debug, Default, Clone, Copy)]
struct LastSeen {
    node_oom_kills: Option<u64>,
    /// Monotonic ms of the last usage read, and the usage's growth from
    /// the read before it (bytes per second, never negative).
    read_ms: Option<u64>,
    growth: f64,
    usage: Option<u64>,
    limit: Option<u64>,
    failcnt: Option<u64>,
    max_events: Option<u64>,
    /// failcnt or `max` rose between the last two cgroup reads.
    limit_hit_recently: bool,
    under_oom: bool,
}

/// The kill counts as the collector keeps them (since headroom started),
/// at the moment of a judgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// OOM kills read from the cgroups.
    pub oom_kills: u64,
    /// v2 `oom_group_kill` and `oom`; `None` on v1.
    pub group_kills: Option<u64>,
    pub ooms: Option<u64>,
}

/// A death to judge.
#[derive(Debug, Clone, Copy)]
pub struct Death {
    pub instance: u64,
    pub pid: Option<u32>,
    /// Its wait status, where it was read before the process was reaped.
    pub status: Option<WaitStatus>,
    /// Its cgroup was read after the death: a kill that caused it is in
    /// `counts` already, so none is inferred.
    pub direct: bool,
}

/// The exit judge: keeps what the kernel showed at each poll, judges each
/// target instance's death once, attributes each kill read once, and
/// counts what it inferred. It is fed the evidence and reads nothing.
#[derive(Debug, Default)]
pub struct ExitJudge {
    seen: LastSeen,
    inferred: u64,
    /// The counts already explained by a death or a child's kill.
    attributed: Counts,
    /// Kills read while the target lived, not yet explained: the instance
    /// and the monotonic ms they were first seen at.
    pending: Option<(u64, u64)>,
    last_kill: Option<OomKill>,
    last_exit: Option<TargetExit>,
    exits: BTreeMap<ExitReason, u64>,
    /// The last instance whose death was judged (each is judged once).
    judged: Option<u64>,
    /// The last instance seen alive: a target never seen alive (a `--pid`
    /// that does not exist) has no exit to count.
    seen_alive: Option<u64>,
    /// The processes of the cgroup at the last poll (PID, comm), to name
    /// the victim of a child's kill ...
    procs: Vec<(u32, String)>,
    /// ... which is one of those that left it since the kill was read.
    left: Vec<(u32, String)>,
}

/// Processes of the cgroup remembered, at most.
pub const MAX_PROCS: usize = 64;

impl ExitJudge {
    /// Keeps what a later death will be judged by: this poll's cgroup (if
    /// read), the usage (the cgroup's, else the target's RSS), the limit,
    /// the node's OOM kill count, at monotonic `mono_ms`.
    pub fn observe(
        &mut self,
        c: Option<&CgroupSample>,
        usage: Option<u64>,
        limit: Option<Limit>,
        node: Option<u64>,
        mono_ms: u64,
    ) {
        let seen = &mut self.seen;
        if let Some(now) = usage {
            seen.growth = match (seen.read_ms, seen.usage) {
                (Some(t), Some(u)) if mono_ms > t => (now as f64 - u as f64).max(0.0) / ((mono_ms - t) as f64 / 1000.0),
                _ => 0.0,
            };
            seen.read_ms = Some(mono_ms);
            seen.usage = Some(now);
            seen.limit = limit.and_then(Limit::bytes);
        }
        if let Some(c) = c {
            self.observe_cgroup(c);
        }
        self.seen.node_oom_kills = node;
    }

    /// Takes the limit evidence of a cgroup read (also one made after a
    /// death, apart from a poll).
    pub fn observe_cgroup(&mut self, c: &CgroupSample) {
        let seen = &mut self.seen;
        let max = c.events.as_ref().and_then(|e| e.max);
        let rose = |before: Option<u64>, now: Option<u64>| matches!((before, now), (Some(a), Some(b)) if b > a);
        seen.limit_hit_recently = rose(seen.failcnt, c.failcnt) || rose(seen.max_events, max);
        seen.failcnt = c.failcnt;
        seen.max_events = max;
        seen.under_oom = c.oom_control.as_ref().and_then(|o| o.under_oom) == Some(true);
    }

    /// The processes of the cgroup now (PID, comm), read each poll.
    pub fn observe_procs(&mut self, mut procs: Vec<(u32, String)>) {
        procs.truncate(MAX_PROCS);
        let left = self.procs.iter().filter(|(p, _)| !procs.iter().any(|(q, _)| q == p));
        self.left.extend(left.cloned());
        let excess = self.left.len().saturating_sub(MAX_PROCS);
        self.left.drain(..excess);
        self.procs = procs;
    }

    /// The processes of the cgroup last seen, to reuse their names.
    pub fn procs(&self) -> &[(u32, String)] {
        &self.procs
    }

    /// Whether the death of `instance` is still to be judged.
    pub fn should_judge(&self, instance: u64) -> bool {
        self.judged != Some(instance)
    }

    /// Judges a death once: returns its reason (`None` when that instance
    /// was judged already). `node_now`: the node's OOM kill count now.
    pub fn judge(
        &mut self,
        d: Death,
        counts: Counts,
        node_now: Option<u64>,
        now_mono_ms: u64,
        now_ms: u64,
    ) -> Option<ExitReason> {
        if !self.should_judge(d.instance) {
            return None;
        }
        self.judged = Some(d.instance);
        self.pending = None;
        if self.seen_alive.is_none_or(|i| i < d.instance) {
            return None;
        }
        let unread = counts.oom_kills.saturating_sub(self.attributed.oom_kills);
        // Only a SIGKILL (or a status not read) can be an OOM kill.
        let could_be_oom = matches!(d.status, None | Some(WaitStatus::Signaled(SIGKILL)));
        let comm = self.comm_of(d.pid);
        let (reason, how) = if unread > 0 && could_be_oom {
            (self.name_kill(counts, node_now), Some(KillHow::Cgroup))
        } else if unread == 0 && !d.direct && could_be_oom && infer_oom_kill(&self.evidence(node_now, now_mono_ms)) {
            self.inferred += 1;
            tracing::warn!(
                inferred_total = self.inferred,
                "the target died and its cgroup was gone before it could be read; the node's OOM kill count rose and \
                 the cgroup was on its way to its limit: counted as an OOM kill (inferred)"
            );
            (ExitReason::OomKill, Some(KillHow::Inferred))
        } else {
            if unread > 0 {
                // Kills read, yet the target was not killed: a child's.
                self.child_kills(counts, d.pid, now_ms);
            }
            let reason = match d.status {
                Some(WaitStatus::Exited(_)) => ExitReason::Exit,
                Some(WaitStatus::Signaled(_)) => ExitReason::Signal,
                None => ExitReason::Unknown,
            };
            (reason, None)
        };
        self.attributed = counts;
        if let Some(how) = how {
            self.last_kill = Some(OomKill {
                time_ms: now_ms,
                how,
                pid: d.pid,
                comm: comm.clone(),
                child: false,
            });
        }
        let (code, signal) = match d.status {
            Some(WaitStatus::Exited(c)) => (Some(c), None),
            Some(WaitStatus::Signaled(s)) => (None, Some(s)),
            None => (None, None),
        };
        *self.exits.entry(reason).or_default() += 1;
        self.last_exit = Some(TargetExit {
            time_ms: now_ms,
            reason,
            pid: d.pid,
            code,
            signal,
            how,
        });
        match reason {
            r if r.is_oom() => tracing::warn!(pid = d.pid, comm, reason = r.as_str(), "the target was OOM-killed"),
            r => tracing::info!(
                pid = d.pid,
                comm,
                reason = r.as_str(),
                code,
                signal,
                "the target exited"
            ),
        }
        Some(reason)
    }

    /// The name of a kill read from the cgroup that took the target.
    fn name_kill(&self, counts: Counts, node_now: Option<u64>) -> ExitReason {
        let rose = |now: Option<u64>, before: Option<u64>| now.unwrap_or(0) > before.unwrap_or(0);
        if rose(counts.group_kills, self.attributed.group_kills) {
            return ExitReason::OomGroupKill;
        }
        let seen = self.seen;
        let at_limit = match counts.ooms {
            Some(_) => rose(counts.ooms, self.attributed.ooms),
            None => {
                seen.under_oom
                    || seen.limit_hit_recently
                    || matches!((seen.usage, seen.limit), (Some(u), Some(l)) if u as f64 >= NEAR_LIMIT * l as f64)
            }
        };
        let node_rose = matches!((seen.node_oom_kills, node_now), (Some(a), Some(b)) if b > a);
        if !at_limit && node_rose {
            ExitReason::NodeOom
        } else {
            ExitReason::OomKill
        }
    }

    fn evidence(&self, node_now: Option<u64>, now_mono_ms: u64) -> DeathEvidence {
        let seen = self.seen;
        let since_s = match seen.read_ms {
            Some(t) if now_mono_ms > t => (now_mono_ms - t) as f64 / 1000.0,
            _ => 0.0,
        };
        DeathEvidence {
            node_oom_kills_before: seen.node_oom_kills,
            node_oom_kills_now: node_now,
            last_usage: seen.usage.map(|u| u.saturating_add((seen.growth * since_s) as u64)),
            limit: seen.limit,
            hit_limit: seen.limit_hit_recently || seen.under_oom,
        }
    }

    fn comm_of(&self, pid: Option<u32>) -> Option<String> {
        let pid = pid?;
        self.procs.iter().find(|(p, _)| *p == pid).map(|(_, c)| c.clone())
    }

    /// Kills read that no death explains: another process of the cgroup,
    /// one of those that left its process list, was killed.
    fn child_kills(&mut self, counts: Counts, target: Option<u32>, now_ms: u64) {
        let n = counts.oom_kills.saturating_sub(self.attributed.oom_kills);
        self.attributed.oom_kills = counts.oom_kills;
        let left = std::mem::take(&mut self.left);
        let victim = left.into_iter().find(|(p, _)| Some(*p) != target);
        let (pid, comm) = victim.map_or((None, None), |(p, c)| (Some(p), Some(c)));
        tracing::warn!(
            pid,
            comm,
            kills = n,
            "another process of the target's cgroup was OOM-killed; the target lives"
        );
        self.last_kill = Some(OomKill {
            time_ms: now_ms,
            how: KillHow::Cgroup,
            pid,
            comm,
            child: true,
        });
    }

    /// The end of a poll in which the target (`instance`, `pid`) lives:
    /// kills read that it outlived by a whole poll were a child's, the
    /// victim one of the processes that left the cgroup meanwhile.
    pub fn poll_end(&mut self, counts: Counts, alive: Option<(u64, u32)>, now_mono_ms: u64, now_ms: u64) {
        if let Some((instance, _)) = alive {
            self.seen_alive = Some(instance);
        }
        let unread = counts.oom_kills > self.attributed.oom_kills;
        let Some((instance, pid)) = alive.filter(|_| unread) else {
            if !unread {
                self.pending = None;
                self.left.clear();
                // Keep the other counts current: a later kill is named by
                // their rise from here.
                self.attributed = counts;
            }
            return;
        };
        match self.pending {
            Some((i, since)) if i == instance && now_mono_ms > since => {
                self.child_kills(counts, Some(pid), now_ms);
                self.attributed = counts;
                self.pending = None;
            }
            Some((i, _)) if i == instance => {}
            _ => self.pending = Some((instance, now_mono_ms)),
        }
    }

    /// The instance whose death was judged last.
    pub fn judged(&self) -> Option<u64> {
        self.judged
    }

    pub fn inferred(&self) -> u64 {
        self.inferred
    }

    pub fn last_kill(&self) -> Option<&OomKill> {
        self.last_kill.as_ref()
    }

    pub fn last_exit(&self) -> Option<&TargetExit> {
        self.last_exit.as_ref()
    }

    pub fn exits(&self) -> &BTreeMap<ExitReason, u64> {
        &self.exits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Option<Limit> = Some(Limit::Bytes(100));

    fn counts(k: u64) -> Counts {
        Counts {
            oom_kills: k,
            ..Counts::default()
        }
    }

    fn death(instance: u64, status: Option<WaitStatus>, direct: bool) -> Death {
        Death {
            instance,
            pid: Some(40 + instance as u32),
            status,
            direct,
        }
    }

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
                "another pod's kill while ours was at 20 %",
                DeathEvidence {
                    last_usage: Some(25),
                    ..near
                },
                false,
            ),
            (
                "a jump from 40 % to the kill within one poll",
                DeathEvidence {
                    last_usage: Some(52),
                    ..near
                },
                true,
            ),
            (
                "at 20 % at the last read, but the limit was hit since the read before",
                DeathEvidence {
                    last_usage: Some(25),
                    hit_limit: true,
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
    fn a_kill_read_before_the_death_is_not_inferred_again() {
        // v2, no pidfd: the watcher read the kill, then the cgroup went.
        let mut j = ExitJudge::default();
        j.observe(None, Some(90), LIM, Some(7), 0);
        j.poll_end(counts(0), Some((1, 41)), 0, 0);
        let c = Counts {
            oom_kills: 1,
            ooms: Some(1),
            group_kills: Some(0),
        };
        // The death, seen at the next poll; the node's count rose too.
        let r = j.judge(death(1, None, false), c, Some(8), 1000, 1_000);
        assert_eq!(r, Some(ExitReason::OomKill));
        assert_eq!(j.inferred(), 0, "read, so not inferred");
        assert_eq!(j.last_kill().unwrap().how, KillHow::Cgroup);
        assert_eq!(
            j.judge(death(1, None, false), c, Some(8), 1000, 1_000),
            None,
            "judged once"
        );
        assert_eq!(j.exits()[&ExitReason::OomKill], 1);
        // The next instance dies with no new kill: not an OOM kill.
        j.poll_end(c, Some((2, 42)), 1500, 1500);
        j.observe(None, Some(90), LIM, Some(8), 2000);
        let r = j.judge(death(2, Some(WaitStatus::Signaled(9)), false), c, Some(8), 3000, 3_000);
        assert_eq!(r, Some(ExitReason::Signal));
        assert_eq!(j.last_exit().unwrap().signal, Some(9));
    }

    /// A judge that saw instances up to `n` alive.
    fn judge_seeing(n: u64) -> ExitJudge {
        let mut j = ExitJudge::default();
        j.poll_end(Counts::default(), Some((n, 40 + n as u32)), 0, 0);
        j
    }

    #[test]
    fn a_target_never_seen_alive_has_no_exit() {
        let mut j = ExitJudge::default();
        assert_eq!(j.judge(death(0, None, false), counts(0), None, 0, 0), None);
        assert!(j.exits().is_empty() && j.last_exit().is_none());
    }

    #[test]
    fn kills_are_named_by_what_rose() {
        let judge = |ooms_rose: bool, group_rose: bool, node_rose: bool| {
            let mut j = ExitJudge::default();
            j.observe(None, Some(10), LIM, Some(5), 0);
            j.poll_end(
                Counts {
                    oom_kills: 0,
                    ooms: Some(0),
                    group_kills: Some(0),
                },
                Some((1, 41)),
                0,
                0,
            );
            let c = Counts {
                oom_kills: 1,
                ooms: Some(u64::from(ooms_rose)),
                group_kills: Some(u64::from(group_rose)),
            };
            j.judge(death(1, None, true), c, Some(5 + u64::from(node_rose)), 1000, 1000)
        };
        assert_eq!(judge(true, false, true), Some(ExitReason::OomKill));
        assert_eq!(judge(true, true, true), Some(ExitReason::OomGroupKill));
        assert_eq!(judge(false, false, true), Some(ExitReason::NodeOom));
        // v1: no `oom` count; far from the limit with the node's count rising.
        let mut j = judge_seeing(1);
        j.observe(None, Some(10), LIM, Some(5), 0);
        assert_eq!(
            j.judge(death(1, None, true), counts(1), Some(6), 1000, 1000),
            Some(ExitReason::NodeOom)
        );
        let mut j = judge_seeing(1);
        j.observe(None, Some(80), LIM, Some(5), 0);
        assert_eq!(
            j.judge(death(1, None, true), counts(1), Some(6), 1000, 1000),
            Some(ExitReason::OomKill)
        );
    }

    #[test]
    fn exits_and_signals_are_never_oom_kills() {
        let mut j = judge_seeing(3);
        j.observe(None, Some(95), LIM, Some(5), 0);
        // The node's count rose (another pod), ours near its limit, but the
        // target exited with a code: an exit.
        let r = j.judge(
            death(1, Some(WaitStatus::Exited(2)), false),
            counts(0),
            Some(6),
            500,
            500,
        );
        assert_eq!(r, Some(ExitReason::Exit));
        assert_eq!(j.last_exit().unwrap().code, Some(2));
        let r = j.judge(
            death(2, Some(WaitStatus::Signaled(15)), false),
            counts(0),
            Some(7),
            600,
            600,
        );
        assert_eq!(r, Some(ExitReason::Signal));
        // Status unknown and no evidence: unknown.
        j.observe(None, Some(5), LIM, Some(7), 700);
        let r = j.judge(death(3, None, false), counts(0), Some(7), 800, 800);
        assert_eq!(r, Some(ExitReason::Unknown));
        assert_eq!(j.inferred(), 0);
    }

    #[test]
    fn a_kill_the_target_outlives_is_a_childs_named_from_the_process_list() {
        let mut j = ExitJudge::default();
        j.observe_procs(vec![(41, "app".into()), (77, "worker".into())]);
        j.poll_end(counts(0), Some((1, 41)), 0, 0);
        // The kill is read; the target still lives at this poll: pending.
        j.poll_end(counts(1), Some((1, 41)), 1000, 1000);
        assert_eq!(j.last_kill(), None);
        // A poll later it still lives: the child that left was killed.
        j.observe_procs(vec![(41, "app".into())]);
        j.poll_end(counts(1), Some((1, 41)), 2000, 2000);
        let k = j.last_kill().unwrap();
        assert!(
            k.child && k.pid == Some(77) && k.comm.as_deref() == Some("worker"),
            "{k:?}"
        );
        // The target's later death is not that kill.
        let r = j.judge(
            death(1, Some(WaitStatus::Exited(0)), false),
            counts(1),
            None,
            3000,
            3000,
        );
        assert_eq!(r, Some(ExitReason::Exit));
        assert!(j.exits().get(&ExitReason::OomKill).is_none());
    }
}
