//! Where the charged memory is: fragmentation, idle heap, memory the Go
//! runtime released that the kernel still charges (MADV_FREE), anonymous
//! memory in transparent huge pages, and the kernel's own memory charged to
//! the cgroup.

use crate::parse::go_runtime::GoSample;
use crate::sample::{CgroupSample, CgroupVersion, SmapsSample};
use serde::Serialize;
use std::collections::BTreeMap;

/// Kernel memory charged to the cgroup, by kind, as
/// `headroom_memory_kernel_bytes{kind}` names it. v2 breaks it down in
/// memory.stat; v1 has `shmem` in memory.stat and the rest only as one
/// total, `memory.kmem.usage_in_bytes` (kind `kmem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// Network transmission buffers (v2 `sock`).
    Sock,
    /// Slab objects the kernel cannot reclaim (v2 `slab_unreclaimable`).
    SlabUnreclaimable,
    /// Kernel stacks of the cgroup's threads (v2 `kernel_stack`).
    KernelStack,
    /// Page tables (v2 `pagetables`).
    Pagetables,
    /// tmpfs and shared memory (v2 `shmem`, v1 `total_shmem`).
    Shmem,
    /// Per-CPU kernel data (v2 `percpu`, Linux 5.9+).
    Percpu,
    /// v1 only: all kernel memory, `memory.kmem.usage_in_bytes`.
    Kmem,
}

impl KernelKind {
    pub const ALL: [KernelKind; 7] = [
        KernelKind::Sock,
        KernelKind::SlabUnreclaimable,
        KernelKind::KernelStack,
        KernelKind::Pagetables,
        KernelKind::Shmem,
        KernelKind::Percpu,
        KernelKind::Kmem,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KernelKind::Sock => "sock",
            KernelKind::SlabUnreclaimable => "slab_unreclaimable",
            KernelKind::KernelStack => "kernel_stack",
            KernelKind::Pagetables => "pagetables",
            KernelKind::Shmem => "shmem",
            KernelKind::Percpu => "percpu",
            KernelKind::Kmem => "kmem",
        }
    }
}

/// The kernel memory of one cgroup sample, by kind; a kind the kernel does
/// not report is absent (never 0).
pub fn kernel_memory(c: &CgroupSample) -> BTreeMap<KernelKind, u64> {
    let mut out = BTreeMap::new();
    let Some(s) = c.stat.as_ref() else {
        if let Some(k) = c.kmem {
            out.insert(KernelKind::Kmem, k);
        }
        return out;
    };
    let kinds = [
        (KernelKind::Sock, s.sock),
        (KernelKind::SlabUnreclaimable, s.slab_unreclaimable),
        (KernelKind::KernelStack, s.kernel_stack),
        (KernelKind::Pagetables, s.pagetables),
        (KernelKind::Shmem, s.shmem),
        (KernelKind::Percpu, s.percpu),
        (KernelKind::Kmem, c.kmem.filter(|_| c.version == CgroupVersion::V1)),
    ];
    out.extend(kinds.into_iter().filter_map(|(k, v)| Some((k, v?))));
    out
}

/// The kernel memory that is not reclaimed before an OOM kill, summed over
/// the kinds read (shmem included: tmpfs pages can only be swapped).
pub fn kernel_total(kinds: &BTreeMap<KernelKind, u64>) -> Option<u64> {
    (!kinds.is_empty()).then(|| kinds.values().sum())
}

/// Where the huge-page figures were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HugePagesSource {
    /// v1 memory.stat: `total_rss_huge` of `total_rss` (the whole cgroup).
    CgroupV1,
    /// v2 memory.stat: `anon_thp` of `anon` (the whole cgroup).
    CgroupV2,
    /// The target's smaps_rollup: `AnonHugePages` of `Anonymous`, at its
    /// last read.
    Smaps,
}

impl HugePagesSource {
    /// In words, for the diagnosis's evidence.
    pub fn describe(self) -> &'static str {
        match self {
            HugePagesSource::CgroupV1 => "the cgroup's memory.stat rss_huge of rss",
            HugePagesSource::CgroupV2 => "the cgroup's memory.stat anon_thp of anon",
            HugePagesSource::Smaps => "the target's smaps_rollup AnonHugePages of Anonymous",
        }
    }
}

/// Anonymous memory in transparent huge pages (`bytes`) and the anonymous
/// memory it is part of (`anon`), both read from one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HugePages {
    pub bytes: u64,
    pub anon: u64,
    pub source: HugePagesSource,
}

/// The anonymous huge pages of one poll: the cgroup's figures (the whole
/// container, read every poll) where the kernel has them, else the
/// target's smaps_rollup; `None` when neither has both numbers.
pub fn huge_pages(cgroup: Option<&CgroupSample>, smaps: Option<&SmapsSample>) -> Option<HugePages> {
    let from_cgroup = cgroup.and_then(|c| {
        let s = c.stat.as_ref()?;
        let source = match c.version {
            CgroupVersion::V1 => HugePagesSource::CgroupV1,
            CgroupVersion::V2 => HugePagesSource::CgroupV2,
        };
        Some(HugePages {
            bytes: s.anon_thp?,
            anon: s.anon?,
            source,
        })
    });
    from_cgroup.or_else(|| {
        let s = smaps?;
        Some(HugePages {
            bytes: s.anon_huge_pages?,
            anon: s.anonymous?,
            source: HugePagesSource::Smaps,
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimableMethod {
    /// The target's LazyFree from /proc/PID/smaps_rollup, read this poll.
    SmapsLazyfree,
    /// The last smaps_rollup LazyFree carried to this poll by how much the
    /// cgroup's LRU estimate moved since that read.
    SmapsLruAdjusted,
    /// Anonymous pages that moved to the file LRU, from the cgroup:
    /// active_file + inactive_file − (file − shmem).
    CgroupLru,
    /// The last smaps_rollup LazyFree, not read this poll and with no cgroup
    /// to carry it forward (see `smaps_age_s`).
    SmapsLazyfreeStale,
}

impl ReclaimableMethod {
    /// In words, for the diagnosis's evidence.
    pub fn describe(self) -> &'static str {
        match self {
            ReclaimableMethod::SmapsLazyfree => "LazyFree in smaps_rollup",
            ReclaimableMethod::SmapsLruAdjusted => "smaps_rollup LazyFree, moved by the cgroup's LRU lists since",
            ReclaimableMethod::CgroupLru => "estimated from the cgroup's LRU lists",
            ReclaimableMethod::SmapsLazyfreeStale => "LazyFree in smaps_rollup at its last read",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// HeapInuse − HeapAlloc: an upper bound on heap fragmentation.
    pub fragmentation_bound: Option<u64>,
    /// HeapIdle − HeapReleased: free heap the runtime keeps for reuse.
    pub idle_retained: Option<u64>,
    /// Freed by the Go runtime but still charged by the kernel, now.
    pub reclaimable_unreleased: Option<u64>,
    pub reclaimable_method: Option<ReclaimableMethod>,
    /// The cgroup-level estimate, also when LazyFree was measured.
    pub reclaimable_cgroup_estimate: Option<u64>,
    /// Seconds since smaps_rollup was read, when it has been.
    pub smaps_age_s: Option<f64>,
    pub heap_released: Option<u64>,
    /// The reclaimable amount exceeds HeapReleased by more than 16 MiB: some
    /// lazy-free memory is not the Go heap's (cgo, another allocator).
    pub exceeds_heap_released: Option<bool>,
    /// Kernel memory charged to the cgroup, by kind (see [`KernelKind`]).
    pub kernel: BTreeMap<KernelKind, u64>,
    /// Its sum; `None` when no kind is readable.
    pub kernel_total: Option<u64>,
    /// Anonymous memory in transparent huge pages (see [`huge_pages`]).
    pub huge_pages: Option<HugePages>,
}

const SLACK: u64 = 16 * 1024 * 1024;

/// active_file + inactive_file − (file − shmem), floored at 0: anonymous
/// pages freed with MADV_FREE sit on the file LRU while still counted as anon.
pub fn lazyfree_from_lru(c: &CgroupSample) -> Option<u64> {
    let s = c.stat.as_ref()?;
    let lru = s.active_file?.checked_add(s.inactive_file?)?;
    let page_cache = s.file?.saturating_sub(s.shmem?);
    Some(lru.saturating_sub(page_cache))
}

/// Reclaimable-but-unreleased memory now (at `now_mono_ms`), and how it was
/// found. smaps_rollup walks the target's page tables, so it is read at its
/// own pace; the cgroup's LRU estimate is read every poll. Between reads the
/// smaps figure is carried forward by the estimate's change since the read:
/// the estimate moves with MADV_FREE and reclaim at once, smaps corrects what
/// it cannot see (another process's page cache, pages of other processes).
fn reclaimable(
    estimate: Option<u64>,
    smaps: Option<&SmapsSample>,
    now_mono_ms: u64,
) -> (Option<u64>, Option<ReclaimableMethod>) {
    let measured = smaps.and_then(|s| Some((s.lazy_free?, s)));
    match (measured, estimate) {
        (Some((l, s)), _) if s.read_mono_ms >= now_mono_ms => (Some(l), Some(ReclaimableMethod::SmapsLazyfree)),
        (Some((l, s)), Some(now)) => match s.cgroup_lru_estimate {
            Some(then) => {
                let moved = l as i128 + now as i128 - then as i128;
                (
                    Some(moved.clamp(0, u64::MAX as i128) as u64),
                    Some(ReclaimableMethod::SmapsLruAdjusted),
                )
            }
            None => (Some(now), Some(ReclaimableMethod::CgroupLru)),
        },
        (Some((l, _)), None) => (Some(l), Some(ReclaimableMethod::SmapsLazyfreeStale)),
        (None, Some(e)) => (Some(e), Some(ReclaimableMethod::CgroupLru)),
        (None, None) => (None, None),
    }
}

/// The breakdown of one poll's sample taken at `now_mono_ms`.
pub fn breakdown(
    cgroup: Option<&CgroupSample>,
    smaps: Option<&SmapsSample>,
    go: Option<&GoSample>,
    now_mono_ms: u64,
) -> Breakdown {
    let sub = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
    let estimate = cgroup.and_then(lazyfree_from_lru);
    let (reclaimable, method) = reclaimable(estimate, smaps, now_mono_ms);
    let released = go.and_then(|g| g.heap_released);
    let kernel = cgroup.map(kernel_memory).unwrap_or_default();
    Breakdown {
        huge_pages: huge_pages(cgroup, smaps),
        kernel_total: kernel_total(&kernel),
        kernel,
        fragmentation_bound: go.and_then(|g| sub(g.heap_inuse, g.heap_alloc)),
        idle_retained: go.and_then(|g| sub(g.heap_idle, g.heap_released)),
        reclaimable_unreleased: reclaimable,
        reclaimable_method: method,
        reclaimable_cgroup_estimate: estimate,
        smaps_age_s: smaps.map(|s| now_mono_ms.saturating_sub(s.read_mono_ms) as f64 / 1000.0),
        heap_released: released,
        exceeds_heap_released: match (reclaimable, released) {
            (Some(r), Some(h)) => Some(r > h.saturating_add(SLACK)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cgroup_files::MemoryStat;

    fn cg(active_file: u64, inactive_file: u64, file: u64, shmem: u64) -> CgroupSample {
        CgroupSample {
            stat: Some(MemoryStat {
                active_file: Some(active_file),
                inactive_file: Some(inactive_file),
                file: Some(file),
                shmem: Some(shmem),
                ..MemoryStat::default()
            }),
            ..CgroupSample::all_anonymous("/x", 0)
        }
    }

    #[test]
    fn kernel_memory_by_kind() {
        // v2: the kinds memory.stat has; percpu missing on an older kernel.
        let mut c = CgroupSample::all_anonymous("/x", 0);
        c.stat = Some(MemoryStat {
            sock: Some(1),
            slab_unreclaimable: Some(2),
            kernel_stack: Some(4),
            pagetables: Some(8),
            shmem: Some(16),
            ..MemoryStat::default()
        });
        let k = kernel_memory(&c);
        assert_eq!(
            k.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [
                ("sock", 1),
                ("slab_unreclaimable", 2),
                ("kernel_stack", 4),
                ("pagetables", 8),
                ("shmem", 16)
            ]
        );
        assert_eq!(kernel_total(&k), Some(31));
        // v1: shmem from memory.stat and the kmem total.
        c.version = CgroupVersion::V1;
        c.stat = Some(MemoryStat {
            shmem: Some(16),
            ..MemoryStat::default()
        });
        c.kmem = Some(1000);
        let k = kernel_memory(&c);
        assert_eq!(k.get(&KernelKind::Kmem), Some(&1000));
        assert_eq!(k.get(&KernelKind::Sock), None);
        assert_eq!(kernel_total(&k), Some(1016));
        // Nothing readable: unknown, not 0.
        c.stat = None;
        c.kmem = None;
        assert!(kernel_memory(&c).is_empty());
        assert_eq!(kernel_total(&kernel_memory(&c)), None);
    }

    #[test]
    fn huge_pages_from_the_cgroup_else_smaps() {
        const M: u64 = 1 << 20;
        let with_thp = |version, anon: Option<u64>, thp: Option<u64>| CgroupSample {
            version,
            stat: Some(MemoryStat {
                anon,
                anon_thp: thp,
                ..MemoryStat::default()
            }),
            ..CgroupSample::all_anonymous("/x", 0)
        };
        let smaps = SmapsSample {
            anonymous: Some(310 * M),
            anon_huge_pages: Some(300 * M),
            ..SmapsSample::default()
        };
        let h = |bytes, anon, source| Some(HugePages { bytes, anon, source });
        type Case<'a> = (
            &'a str,
            Option<CgroupSample>,
            Option<&'a SmapsSample>,
            Option<HugePages>,
        );
        let cases: &[Case] = &[
            (
                "v1: the cgroup's, over the target's",
                Some(with_thp(CgroupVersion::V1, Some(330 * M), Some(302 * M))),
                Some(&smaps),
                h(302 * M, 330 * M, HugePagesSource::CgroupV1),
            ),
            (
                "v2",
                Some(with_thp(CgroupVersion::V2, Some(330 * M), Some(0))),
                Some(&smaps),
                h(0, 330 * M, HugePagesSource::CgroupV2),
            ),
            (
                "a memory.stat without the key: smaps",
                Some(with_thp(CgroupVersion::V2, Some(330 * M), None)),
                Some(&smaps),
                h(300 * M, 310 * M, HugePagesSource::Smaps),
            ),
            (
                "no anon to hold it against: smaps",
                Some(with_thp(CgroupVersion::V1, None, Some(302 * M))),
                Some(&smaps),
                h(300 * M, 310 * M, HugePagesSource::Smaps),
            ),
            (
                "no cgroup (unprivileged)",
                None,
                Some(&smaps),
                h(300 * M, 310 * M, HugePagesSource::Smaps),
            ),
            (
                "neither",
                Some(with_thp(CgroupVersion::V1, Some(330 * M), None)),
                None,
                None,
            ),
        ];
        for (what, c, s, want) in cases {
            assert_eq!(huge_pages(c.as_ref(), *s), *want, "{what}");
        }
        let partial = SmapsSample {
            anon_huge_pages: None,
            ..smaps.clone()
        };
        assert_eq!(huge_pages(None, Some(&partial)), None);
        assert_eq!(
            breakdown(None, Some(&smaps), None, 0).huge_pages,
            h(300 * M, 310 * M, HugePagesSource::Smaps)
        );
    }

    #[test]
    fn lru_estimate() {
        // The v1 fixture: file LRU 84893696 = cache 42991616 + LazyFree 41902080.
        assert_eq!(lazyfree_from_lru(&cg(16777216, 68116480, 42991616, 0)), Some(41902080));
        // shmem is on the anon LRU: it does not count as page cache here.
        assert_eq!(lazyfree_from_lru(&cg(10, 10, 30, 10)), Some(0));
        // Floors at 0.
        assert_eq!(lazyfree_from_lru(&cg(1, 1, 100, 0)), Some(0));
    }

    #[test]
    fn prefers_measured_lazyfree_and_cross_checks() {
        let go = GoSample {
            heap_alloc: Some(100),
            heap_inuse: Some(150),
            heap_idle: Some(500),
            heap_released: Some(400),
            ..GoSample::default()
        };
        let smaps = SmapsSample {
            lazy_free: Some(390),
            read_mono_ms: 5000,
            cgroup_lru_estimate: Some(400),
            ..SmapsSample::default()
        };
        let c = cg(0, 500, 100, 0);
        let b = breakdown(Some(&c), Some(&smaps), Some(&go), 5000);
        assert_eq!(b.fragmentation_bound, Some(50));
        assert_eq!(b.idle_retained, Some(100));
        assert_eq!(b.reclaimable_unreleased, Some(390));
        assert_eq!(b.reclaimable_method, Some(ReclaimableMethod::SmapsLazyfree));
        assert_eq!(b.reclaimable_cgroup_estimate, Some(400));
        assert_eq!(b.smaps_age_s, Some(0.0));
        assert_eq!(b.exceeds_heap_released, Some(false));
        let b = breakdown(Some(&c), None, None, 5000);
        assert_eq!(b.reclaimable_method, Some(ReclaimableMethod::CgroupLru));
        assert_eq!((b.fragmentation_bound, b.smaps_age_s), (None, None));
        let big = SmapsSample {
            lazy_free: Some(400 + SLACK + 1),
            ..SmapsSample::default()
        };
        assert_eq!(
            breakdown(None, Some(&big), Some(&go), 0).exceeds_heap_released,
            Some(true)
        );
    }

    #[test]
    fn an_older_smaps_read_is_carried_forward_by_the_lru_estimate() {
        let smaps = SmapsSample {
            lazy_free: Some(390),
            read_mono_ms: 1000,
            cgroup_lru_estimate: Some(400),
            ..SmapsSample::default()
        };
        // The estimate rose by 100 since the read (a release with MADV_FREE):
        // the figure follows at once.
        let b = breakdown(Some(&cg(0, 600, 100, 0)), Some(&smaps), None, 26_000);
        assert_eq!(b.reclaimable_unreleased, Some(490));
        assert_eq!(b.reclaimable_method, Some(ReclaimableMethod::SmapsLruAdjusted));
        assert_eq!(b.smaps_age_s, Some(25.0));
        // It fell below what the read saw (reclaimed): floored at 0.
        let b = breakdown(Some(&cg(0, 100, 100, 0)), Some(&smaps), None, 26_000);
        assert_eq!(b.reclaimable_unreleased, Some(0));
        // No estimate at the read: the estimate now stands alone.
        let bare = SmapsSample {
            cgroup_lru_estimate: None,
            ..smaps.clone()
        };
        let b = breakdown(Some(&cg(0, 600, 100, 0)), Some(&bare), None, 26_000);
        assert_eq!(
            (b.reclaimable_unreleased, b.reclaimable_method),
            (Some(500), Some(ReclaimableMethod::CgroupLru))
        );
        // No cgroup (unprivileged): the old read, said to be old.
        let b = breakdown(None, Some(&smaps), None, 26_000);
        assert_eq!(
            (b.reclaimable_unreleased, b.reclaimable_method, b.smaps_age_s),
            (Some(390), Some(ReclaimableMethod::SmapsLazyfreeStale), Some(25.0))
        );
    }
}
