//! OOM kills of the target, each counted once. A kill is read from the
//! cgroup's own counter — at a poll, or by the watcher the moment the kernel
//! signals ([`crate::source::events`]) — whenever the cgroup can still be
//! read after the target died. When it cannot (the runtime removed the
//! killed container's cgroup before anything read it), the kill is inferred
//! from what the kernel still shows: the node's OOM kill count rose since
//! the last poll, and the target's cgroup was near its limit. A `kill -9`
//! or a container stopped by its runtime leaves the node's count alone and
//! is never counted.

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
}
