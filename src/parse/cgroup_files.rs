//! Typed views of the cgroup memory files (v1 and v2).
//!
//! ```text
//! memory.max (v2)             max            | 536870912
//! memory.limit_in_bytes (v1)  9223372036854771712   (v1's page-rounded "unlimited")
//! memory.stat (v2)            anon 1617920\nfile 4096\n...\nanon_thp 0\n...
//! memory.stat (v1)            cache 4304896\nrss 1683456\nrss_huge 0\n...\ntotal_cache 4304896\n...
//! memory.kmem.usage_in_bytes (v1)  2785280
//! memory.events (v2)          low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0
//! memory.oom_control (v1)     oom_kill_disable 0\nunder_oom 0\noom_kill 2
//! ```

use super::{parse_u64, FlatKeyed, ValueError};
use serde::Serialize;
use std::collections::BTreeMap;

/// A memory limit. `max` (v2) and v1's page-rounded "unlimited" are
/// [`Limit::Unlimited`], never a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

impl Limit {
    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Bytes(b) => Some(b),
            Limit::Unlimited => None,
        }
    }

    /// The smaller of two limits (`Unlimited` is larger than any number).
    pub fn min(self, other: Limit) -> Limit {
        std::cmp::min(self, other)
    }
}

/// v1 reports "no limit" as `PAGE_COUNTER_MAX * PAGE_SIZE`, which is
/// `i64::MAX` rounded down to the page size (9223372036854771712 with 4 KiB
/// pages). Anything at or above `i64::MAX` rounded down to 64 KiB (the
/// largest page size Linux uses) is that value.
pub const V1_UNLIMITED_FROM: u64 = (i64::MAX as u64) & !(64 * 1024 - 1);

/// Parses a v2 limit file (`memory.max`, `memory.high`, `memory.swap.max`).
pub fn parse_limit_v2(text: &str) -> Result<Limit, ValueError> {
    if text.trim() == "max" {
        return Ok(Limit::Unlimited);
    }
    parse_u64(text).map(Limit::Bytes)
}

/// Parses a v1 limit file (`memory.limit_in_bytes`, `memory.soft_limit_in_bytes`).
pub fn parse_limit_v1(text: &str) -> Result<Limit, ValueError> {
    parse_u64(text).map(limit_v1)
}

/// Interprets a v1 limit value (also `hierarchical_memory_limit`).
pub fn limit_v1(value: u64) -> Limit {
    if value >= V1_UNLIMITED_FROM {
        Limit::Unlimited
    } else {
        Limit::Bytes(value)
    }
}

/// `memory.stat`, with the keys headroom uses typed and every key kept raw.
/// On v1 the hierarchical `total_*` keys are preferred over the local ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStat {
    /// v2 `anon`, v1 `total_rss`.
    pub anon: Option<u64>,
    /// The part of `anon` in transparent huge pages: v2 `anon_thp`, v1
    /// `total_rss_huge`.
    pub anon_thp: Option<u64>,
    /// v2 `file`, v1 `total_cache`.
    pub file: Option<u64>,
    /// tmpfs and shared memory (v2 `shmem`, v1 `total_shmem`): page cache
    /// that cannot be dropped, only swapped.
    pub shmem: Option<u64>,
    /// Kernel memory, v2 only (v1's memory.stat has no such keys; its
    /// kernel memory is one total, `memory.kmem.usage_in_bytes`): network
    /// transmission buffers ...
    pub sock: Option<u64>,
    /// ... slab objects the kernel cannot reclaim ...
    pub slab_unreclaimable: Option<u64>,
    /// ... the kernel stacks of the cgroup's threads ...
    pub kernel_stack: Option<u64>,
    /// ... the page tables of its processes ...
    pub pagetables: Option<u64>,
    /// ... and per-CPU kernel data (Linux 5.9+).
    pub percpu: Option<u64>,
    pub file_mapped: Option<u64>,
    pub active_anon: Option<u64>,
    pub inactive_anon: Option<u64>,
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
    pub unevictable: Option<u64>,
    /// v1 only: the smallest limit on the path, as the kernel computes it.
    pub hierarchical_memory_limit: Option<Limit>,
    /// Every well-formed key of the file, as read.
    #[serde(skip_serializing)]
    pub raw: BTreeMap<String, u64>,
}

impl MemoryStat {
    pub fn from_v2(kv: &FlatKeyed) -> MemoryStat {
        MemoryStat {
            anon: kv.get("anon"),
            anon_thp: kv.get("anon_thp"),
            file: kv.get("file"),
            shmem: kv.get("shmem"),
            sock: kv.get("sock"),
            slab_unreclaimable: kv.get("slab_unreclaimable"),
            kernel_stack: kv.get("kernel_stack"),
            pagetables: kv.get("pagetables"),
            percpu: kv.get("percpu"),
            file_mapped: kv.get("file_mapped"),
            active_anon: kv.get("active_anon"),
            inactive_anon: kv.get("inactive_anon"),
            active_file: kv.get("active_file"),
            inactive_file: kv.get("inactive_file"),
            unevictable: kv.get("unevictable"),
            hierarchical_memory_limit: None,
            raw: kv.values.clone(),
        }
    }

    /// v1: the hierarchical `total_*` keys when the file has them (a
    /// malformed `total_` line then leaves the value `None` rather than
    /// falling back to the local, non-hierarchical key); else the local keys.
    pub fn from_v1(kv: &FlatKeyed) -> MemoryStat {
        let hierarchical =
            kv.values.keys().any(|k| k.starts_with("total_")) || kv.bad.iter().any(|b| b.text.starts_with("total_"));
        let get = |key: &str| {
            if hierarchical {
                kv.get(&format!("total_{key}"))
            } else {
                kv.get(key)
            }
        };
        MemoryStat {
            anon: get("rss"),
            anon_thp: get("rss_huge"),
            file: get("cache"),
            shmem: get("shmem"),
            sock: None,
            slab_unreclaimable: None,
            kernel_stack: None,
            pagetables: None,
            percpu: None,
            file_mapped: get("mapped_file"),
            active_anon: get("active_anon"),
            inactive_anon: get("inactive_anon"),
            active_file: get("active_file"),
            inactive_file: get("inactive_file"),
            unevictable: get("unevictable"),
            hierarchical_memory_limit: kv.get("hierarchical_memory_limit").map(limit_v1),
            raw: kv.values.clone(),
        }
    }
}

/// v2 `memory.events` / `memory.events.local`. Keys a kernel does not print
/// stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub oom_group_kill: Option<u64>,
}

impl MemoryEvents {
    pub fn from_kv(kv: &FlatKeyed) -> MemoryEvents {
        MemoryEvents {
            low: kv.get("low"),
            high: kv.get("high"),
            max: kv.get("max"),
            oom: kv.get("oom"),
            oom_kill: kv.get("oom_kill"),
            oom_group_kill: kv.get("oom_group_kill"),
        }
    }
}

/// v1 `memory.oom_control`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OomControl {
    pub oom_kill_disable: Option<bool>,
    pub under_oom: Option<bool>,
    /// Since Linux 4.13.
    pub oom_kill: Option<u64>,
}

impl OomControl {
    pub fn from_kv(kv: &FlatKeyed) -> OomControl {
        OomControl {
            oom_kill_disable: kv.get("oom_kill_disable").map(|v| v != 0),
            under_oom: kv.get("under_oom").map(|v| v != 0),
            oom_kill: kv.get("oom_kill"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_flat_keyed;

    #[test]
    fn limits() {
        let table: &[(&str, Result<Limit, ()>)] = &[
            ("max\n", Ok(Limit::Unlimited)),
            ("max", Ok(Limit::Unlimited)),
            ("536870912\n", Ok(Limit::Bytes(536870912))),
            ("0\n", Ok(Limit::Bytes(0))),
            ("", Err(())),
            ("maximum\n", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(parse_limit_v2(text).map_err(|_| ()), *want, "{text:?}");
        }
        let v1: &[(&str, Result<Limit, ()>)] = &[
            ("9223372036854771712\n", Ok(Limit::Unlimited)),
            // 64 KiB pages round lower.
            ("9223372036854710272\n", Ok(Limit::Unlimited)),
            ("9223372036854775807\n", Ok(Limit::Unlimited)),
            ("268435456\n", Ok(Limit::Bytes(268435456))),
            ("max\n", Err(())),
        ];
        for (text, want) in v1 {
            assert_eq!(parse_limit_v1(text).map_err(|_| ()), *want, "{text:?}");
        }
    }

    #[test]
    fn limit_ordering() {
        assert_eq!(Limit::Bytes(5).min(Limit::Unlimited), Limit::Bytes(5));
        assert_eq!(Limit::Unlimited.min(Limit::Bytes(5)), Limit::Bytes(5));
        assert_eq!(Limit::Bytes(5).min(Limit::Bytes(3)), Limit::Bytes(3));
        assert_eq!(Limit::Unlimited.min(Limit::Unlimited), Limit::Unlimited);
    }

    #[test]
    fn v1_prefers_total_keys() {
        let kv = parse_flat_keyed(
            "cache 10\nrss 20\ninactive_file 3\nactive_file 4\n\
             hierarchical_memory_limit 268435456\n\
             total_cache 100\ntotal_rss 200\ntotal_inactive_file 30\ntotal_active_file 40\n",
        );
        let s = MemoryStat::from_v1(&kv);
        assert_eq!(s.file, Some(100));
        assert_eq!(s.anon, Some(200));
        assert_eq!(s.inactive_file, Some(30));
        assert_eq!(s.active_file, Some(40));
        assert_eq!(s.hierarchical_memory_limit, Some(Limit::Bytes(268435456)));
        assert_eq!(s.shmem, None);
        // v1's memory.stat has shmem, but no breakdown of kernel memory.
        let s = MemoryStat::from_v1(&parse_flat_keyed(
            "shmem 7\nsock 1\nkernel_stack 2\ntotal_shmem 70\ntotal_rss 1\n",
        ));
        assert_eq!(s.shmem, Some(70));
        assert_eq!(
            (s.sock, s.slab_unreclaimable, s.kernel_stack, s.pagetables, s.percpu),
            (None, None, None, None, None)
        );
        // Without total_* keys (use_hierarchy=0 kernels), the local ones.
        let s = MemoryStat::from_v1(&parse_flat_keyed("cache 10\nrss 20\n"));
        assert_eq!((s.file, s.anon), (Some(10), Some(20)));
        // A malformed total_ line is unknown, not the local value.
        let s = MemoryStat::from_v1(&parse_flat_keyed("rss 20\ntotal_rss 2x\ntotal_cache 5\n"));
        assert_eq!((s.anon, s.file), (None, Some(5)));
    }

    #[test]
    fn v2_stat_and_events() {
        let kv = parse_flat_keyed("anon 1\nfile 2\nactive_file 3\ninactive_file 4\nshmem 5\n");
        let s = MemoryStat::from_v2(&kv);
        assert_eq!(
            (s.anon, s.file, s.active_file, s.inactive_file, s.shmem),
            (Some(1), Some(2), Some(3), Some(4), Some(5))
        );
        let e = MemoryEvents::from_kv(&parse_flat_keyed(
            "low 0\nhigh 3\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        ));
        assert_eq!(e.high, Some(3));
        assert_eq!(e.oom_kill, Some(1));
        let s = MemoryStat::from_v2(&parse_flat_keyed(
            "sock 4096\nslab_reclaimable 9\nslab_unreclaimable 8192\nkernel_stack 16384\n\
             pagetables 32768\npercpu 640\nshmem 1\n",
        ));
        assert_eq!(
            (
                s.sock,
                s.slab_unreclaimable,
                s.kernel_stack,
                s.pagetables,
                s.percpu,
                s.shmem
            ),
            (Some(4096), Some(8192), Some(16384), Some(32768), Some(640), Some(1))
        );
        // Kernels before 5.9 lack percpu: unknown, not 0.
        let s = MemoryStat::from_v2(&parse_flat_keyed("sock 0\nkernel_stack 1\n"));
        assert_eq!((s.sock, s.percpu, s.pagetables), (Some(0), None, None));
        // Older kernels lack oom_group_kill.
        let e = MemoryEvents::from_kv(&parse_flat_keyed("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"));
        assert_eq!(e.oom_group_kill, None);
    }

    #[test]
    fn anonymous_huge_pages() {
        // v2: anon_thp, part of anon; file_thp and shmem_thp are page cache.
        let s = MemoryStat::from_v2(&parse_flat_keyed(
            "anon 335544320\nfile 4096\nanon_thp 314572800\nfile_thp 2097152\nshmem_thp 0\n",
        ));
        assert_eq!((s.anon, s.anon_thp), (Some(335544320), Some(314572800)));
        // v1: the hierarchical total_rss_huge, as for the other keys ...
        let s = MemoryStat::from_v1(&parse_flat_keyed(
            "rss 10\nrss_huge 2097152\ntotal_rss 335544320\ntotal_rss_huge 314572800\n",
        ));
        assert_eq!((s.anon, s.anon_thp), (Some(335544320), Some(314572800)));
        // ... else the local rss_huge.
        let s = MemoryStat::from_v1(&parse_flat_keyed("rss 4194304\nrss_huge 2097152\n"));
        assert_eq!(s.anon_thp, Some(2097152));
        // A kernel without THP, or a malformed line: unknown, never 0.
        let s = MemoryStat::from_v2(&parse_flat_keyed("anon 1\nfile 2\n"));
        assert_eq!(s.anon_thp, None);
        let s = MemoryStat::from_v1(&parse_flat_keyed("total_rss 1\ntotal_rss_huge 2 MiB\nrss_huge 0\n"));
        assert_eq!((s.anon, s.anon_thp), (Some(1), None));
        let s = MemoryStat::from_v2(&parse_flat_keyed("anon_thp -1\n"));
        assert_eq!(s.anon_thp, None);
    }

    #[test]
    fn oom_control() {
        let o = OomControl::from_kv(&parse_flat_keyed("oom_kill_disable 0\nunder_oom 1\noom_kill 2\n"));
        assert_eq!(o.oom_kill_disable, Some(false));
        assert_eq!(o.under_oom, Some(true));
        assert_eq!(o.oom_kill, Some(2));
        // Truncated file: what is there is kept, the rest is None.
        let kv = parse_flat_keyed("oom_kill_disable 0\nunder_");
        let o = OomControl::from_kv(&kv);
        assert_eq!((o.oom_kill_disable, o.under_oom, o.oom_kill), (Some(false), None, None));
        assert_eq!(kv.bad.len(), 1);
    }
}
