//! Why memory is where it is: causes with evidence and plain-words advice.
//!
//! This module judges one sample (what is true now); growth-based causes
//! (`heap_leak`, `off_heap_growth`) need the history and come from the trend
//! analysis.

use super::breakdown::{Breakdown, HugePages};
use super::go_heap::{cycle_goal, go_release, heap_spans_resident, peak_before_gc, runtime_resident};
use crate::sample::{GoReading, Sample};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    HeapLeak,
    LazyFree,
    Fragmentation,
    GcHeadroom,
    OffHeapGrowth,
    PageCache,
    GcThrash,
    ThpBloat,
    GoroutineLeak,
}

impl Cause {
    pub const ALL: [Cause; 9] = [
        Cause::HeapLeak,
        Cause::LazyFree,
        Cause::Fragmentation,
        Cause::GcHeadroom,
        Cause::OffHeapGrowth,
        Cause::PageCache,
        Cause::GcThrash,
        Cause::ThpBloat,
        Cause::GoroutineLeak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::HeapLeak => "heap_leak",
            Cause::LazyFree => "lazy_free",
            Cause::Fragmentation => "fragmentation",
            Cause::GcHeadroom => "gc_headroom",
            Cause::OffHeapGrowth => "off_heap_growth",
            Cause::PageCache => "page_cache",
            Cause::GcThrash => "gc_thrash",
            Cause::ThpBloat => "thp_bloat",
            Cause::GoroutineLeak => "goroutine_leak",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub cause: Cause,
    /// The numbers that made the call.
    pub evidence: String,
    pub advice: String,
}

/// Thresholds of the snapshot causes. Defaults are what an SRE would call
/// "worth acting on"; all are documented in docs/metrics.md.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// lazy_free: reclaimable-but-unreleased at least this many bytes ...
    pub lazy_free_min_bytes: u64,
    /// ... and at least this fraction of the limit (of usage when unlimited).
    pub lazy_free_min_fraction: f64,
    /// fragmentation: HeapInuse − HeapAlloc at least this many bytes ...
    pub fragmentation_min_bytes: u64,
    /// ... and at least this fraction of HeapInuse.
    pub fragmentation_min_fraction: f64,
    /// page_cache: usage at least this fraction of the limit ...
    pub page_cache_usage_fraction: f64,
    /// ... with at least this fraction of usage on the file LRU.
    pub page_cache_min_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            lazy_free_min_bytes: 64 << 20,
            lazy_free_min_fraction: 0.10,
            fragmentation_min_bytes: 32 << 20,
            fragmentation_min_fraction: 0.30,
            page_cache_usage_fraction: 0.80,
            page_cache_min_fraction: 0.25,
        }
    }
}

/// gc_thrash: GC cycles per second at least this, over the window ...
pub const GC_THRASH_MIN_CYCLES_PER_S: f64 = 2.0;
/// ... or the GC's share of the CPU available to the target at least this ...
pub const GC_THRASH_MIN_CPU_FRACTION: f64 = 0.25;
/// ... measured over at least this long (the pace's window is 30 s) ...
pub const GC_THRASH_MIN_SPAN_MS: u64 = 10_000;
/// ... while GOMEMLIMIT sets the goal and the effective GOGC, the room
/// between the live heap and the goal, (goal − live) / live, is below this
/// (GOGC=100 leaves 1.0).
pub const GC_THRASH_MAX_ROOM: f64 = 0.25;

/// The GC running back to back under a binding GOMEMLIMIT (the death
/// spiral, golang/go#58106): the live heap so close to the limit's goal
/// that each cycle frees little, so the next one starts at once. `limit`
/// is the container's memory limit, for the advice.
pub fn gc_thrash(r: &GoReading, limit: Option<u64>) -> Option<Finding> {
    if r.gomemlimit_binds != Some(true) || r.gc_pace_span_ms < GC_THRASH_MIN_SPAN_MS {
        return None;
    }
    let memlimit = r.gomemlimit()?;
    let live = r.heap_live.filter(|l| *l > 0)?;
    let goal = cycle_goal(&r.sample, Some(memlimit))?;
    let room = goal.saturating_sub(live) as f64 / live as f64;
    let rate = r.gc_cycles_per_second;
    let cpu = r.gc_cpu_fraction;
    let fast = rate.is_some_and(|c| c >= GC_THRASH_MIN_CYCLES_PER_S);
    let costly = cpu.is_some_and(|c| c >= GC_THRASH_MIN_CPU_FRACTION);
    if room >= GC_THRASH_MAX_ROOM || !(fast || costly) {
        return None;
    }
    let pace = [
        rate.map(|c| format!("{c:.1} GC cycles/s")),
        cpu.map(|c| format!("{:.0} % of the CPU in the GC", 100.0 * c)),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let container = limit.map_or(String::new(), |l| format!(" ({} now)", mib(l)));
    Some(Finding {
        cause: Cause::GcThrash,
        evidence: format!(
            "{pace} over the last {} s; live heap {} against GOMEMLIMIT {} (heap goal {}): room for {:.0} % of \
             the live heap between collections (effective GOGC {:.0})",
            r.gc_pace_span_ms / 1000,
            mib(live),
            mib(memlimit),
            mib(goal),
            100.0 * room,
            100.0 * room
        ),
        advice: format!(
            "The live heap is close to GOMEMLIMIT, so the GC runs back to back to stay under it (the GOMEMLIMIT \
             death spiral, golang/go#58106): each collection frees little, and with a live heap of many pointers the \
             service spends its CPU collecting instead of serving. Raise \
             GOMEMLIMIT if the container's limit{container} leaves room for it; keep a GOGC floor (GOGC set, not \
             off) so the heap grows a little rather than the GC spinning once the live heap no longer fits; or \
             find what grows the live heap (the heap profile's inuse_space)."
        ),
    })
}

/// thp_bloat: anonymous memory in transparent huge pages at least this
/// share of all the anonymous memory ...
pub const THP_BLOAT_MIN_HUGE_FRACTION: f64 = 0.25;
/// ... and the anonymous memory beyond what the Go runtime holds resident
/// (Sys − HeapReleased), as far as the huge pages can account for it (the
/// smaller of the two), at least this many bytes ...
pub const THP_BLOAT_MIN_BYTES: u64 = 64 << 20;
/// ... and at least this share of the anonymous memory.
pub const THP_BLOAT_MIN_EXCESS_FRACTION: f64 = 0.10;

/// Transparent huge pages holding memory the Go runtime does not account
/// for: a huge page is faulted in and charged 2 MiB at a time, and
/// khugepaged collapses ranges the Go scavenger released (4 KiB pages
/// returned with MADV_DONTNEED) back into whole huge pages
/// (golang/go#64332), so the anonymous charge sits far above the runtime's
/// Sys − HeapReleased. A Go heap that itself sits in huge pages is no
/// bloat: the runtime counts those bytes. Needs the Go runtime's numbers;
/// without them huge pages the heap uses cannot be told from bloat.
pub fn thp_bloat(h: &HugePages, r: &GoReading) -> Option<Finding> {
    let g = &r.sample;
    let runtime = runtime_resident(g)?;
    let anon = h.anon;
    let huge = h.bytes.min(anon);
    let beyond = anon.saturating_sub(runtime);
    let excess = huge.min(beyond);
    if anon == 0
        || (huge as f64) < THP_BLOAT_MIN_HUGE_FRACTION * anon as f64
        || excess < THP_BLOAT_MIN_BYTES
        || (excess as f64) < THP_BLOAT_MIN_EXCESS_FRACTION * anon as f64
    {
        return None;
    }
    let runtime_is = match (g.sys, g.heap_released) {
        (Some(sys), Some(rel)) => format!("Sys {} − HeapReleased {}", mib(sys), mib(rel)),
        (Some(sys), None) => format!("Sys {}; HeapReleased not exported", mib(sys)),
        _ => "its heap spans; Sys not exported".to_owned(),
    };
    let version = g.go_version.as_deref();
    let runtime_advice = match version.and_then(|v| Some((v, go_release(v)?))) {
        Some((v, rel)) if has_disablethp(rel) => {
            format!("Run the service with GODEBUG=disablethp=1 ({v} has it): the Go heap then stays in 4 KiB pages.")
        }
        Some((v, (1, 21, _))) => format!(
            "{v} lacks GODEBUG=disablethp=1: build with Go 1.21.6 or later (1.22+) and run with it, so the Go heap \
             stays in 4 KiB pages."
        ),
        Some((v, _)) => format!(
            "{v} marks the heap memory it releases MADV_NOHUGEPAGE, so khugepaged does not refill its heap: the \
             huge pages are more likely cgo or mmap'd memory (GODEBUG=disablethp=1, from Go 1.21.6, covers only \
             the heap)."
        ),
        None => "If the service is built with Go 1.21.6 or later (1.22+), run it with GODEBUG=disablethp=1 so the \
                 Go heap stays in 4 KiB pages."
            .to_owned(),
    };
    Some(Finding {
        cause: Cause::ThpBloat,
        evidence: format!(
            "{} of {} anonymous memory in transparent huge pages ({:.0} %; {}); the Go runtime holds {} resident \
             ({runtime_is}), so {} lies beyond it, {} of which huge pages can account for",
            mib(huge),
            mib(anon),
            100.0 * huge as f64 / anon as f64,
            h.source.describe(),
            mib(runtime),
            mib(beyond),
            if excess == beyond {
                "all".to_owned()
            } else {
                mib(excess)
            }
        ),
        advice: format!(
            "Transparent huge pages are faulted in and charged 2 MiB at a time, and khugepaged collapses memory the \
             Go runtime released back into whole huge pages (golang/go#64332): the container can be charged for much \
             more than the service uses. {runtime_advice} On the node, `echo madvise > \
             /sys/kernel/mm/transparent_hugepage/enabled` keeps huge pages to memory that asks for them \
             (MADV_HUGEPAGE), and `echo 0 > /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none` stops \
             khugepaged from filling released pages back in. Where the node cannot be changed, the process can \
             call prctl(PR_SET_THP_DISABLE) at start, which covers cgo and mmap'd memory too."
        ),
    })
}

/// `GODEBUG=disablethp=1` exists from Go 1.21.6 (and so in 1.22 on).
fn has_disablethp(release: (u32, u32, u32)) -> bool {
    release >= (1, 21, 6)
}

pub fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1048576.0)
}

/// The causes visible in one sample.
pub fn diagnose_now(s: &Sample, b: &Breakdown, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let limit = s.limit_bytes();
    let go = s.go.as_ref().map(|g| &g.sample);

    if let Some(r) = b.reclaimable_unreleased {
        let base = limit.or(s.usage()).unwrap_or(0) as f64;
        if r >= t.lazy_free_min_bytes && r as f64 >= t.lazy_free_min_fraction * base {
            let method = b.reclaimable_method.map_or("estimated", |m| m.describe());
            let released = b
                .heap_released
                .map_or(String::new(), |h| format!(", Go HeapReleased {}", mib(h)));
            out.push(Finding {
                cause: Cause::LazyFree,
                evidence: format!(
                    "{} freed with MADV_FREE but still charged ({method}){released}; RSS {}",
                    mib(r),
                    s.rss().map_or("–".into(), mib)
                ),
                advice: "Run the service with GODEBUG=madvdontneed=1 (the default since Go 1.16) so released heap \
                         leaves RSS at once. The kernel reclaims these pages under memory pressure, so they do not \
                         cause a kernel OOM kill; it is RSS-based killers (App Engine, some platforms) and RSS or \
                         usage alerts that they trip."
                    .into(),
            });
        }
    }

    if let (Some(f), Some(inuse)) = (b.fragmentation_bound, go.and_then(|g| g.heap_inuse)) {
        if f >= t.fragmentation_min_bytes && f as f64 >= t.fragmentation_min_fraction * inuse as f64 {
            out.push(Finding {
                cause: Cause::Fragmentation,
                evidence: format!(
                    "HeapInuse − HeapAlloc = {} of {} in-use heap spans ({:.0} %)",
                    mib(f),
                    mib(inuse),
                    100.0 * f as f64 / inuse.max(1) as f64
                ),
                advice: "The heap is fragmented: a few live small objects pin whole spans. Go's GC does not \
                         compact; avoid keeping a sparse subset of many short-lived small objects (copy survivors \
                         into fresh slices or maps, batch allocations by lifetime). A restart returns the memory."
                    .into(),
            });
        }
    }

    // The heap may grow to its cycle's goal before the next collection: the
    // same heap model as the prediction (idle spans are charged already; a
    // binding GOMEMLIMIT caps the goal).
    let reading = s.go.as_ref();
    let memlimit = reading.and_then(|r| r.gomemlimit());
    if let (Some(l), Some(g), Some(basis)) = (limit, go, s.basis_value(s.limit_basis)) {
        if let Some((peak, goal)) = peak_before_gc(g, basis, memlimit) {
            if peak >= l {
                let advice = match memlimit {
                    Some(m) => format!(
                        "GOMEMLIMIT is {} but the heap's goal still takes it past the container limit: set \
                         GOMEMLIMIT lower, to about 90 % of the limit less the memory outside the Go heap, or \
                         lower GOGC.",
                        mib(m)
                    ),
                    None => "Before its next GC the heap may grow past the limit. Set GOMEMLIMIT to about 90 % of \
                             the container limit (Go ≥ 1.19) so the GC runs before the limit, or lower GOGC."
                        .to_owned(),
                };
                out.push(Finding {
                    cause: Cause::GcHeadroom,
                    evidence: format!(
                        "{} {} + heap growth to this cycle's goal {} (from {} of resident heap spans, with the \
                         runtime's overhead) = {} ≥ limit {}",
                        s.limit_basis.as_str(),
                        mib(basis),
                        mib(goal),
                        mib(heap_spans_resident(g).unwrap_or(0)),
                        mib(peak),
                        mib(l)
                    ),
                    advice,
                });
            }
        }
    }

    if let Some(f) = reading.and_then(|r| gc_thrash(r, limit)) {
        out.push(f);
    }

    if let Some(f) = b.huge_pages.as_ref().zip(reading).and_then(|(h, r)| thp_bloat(h, r)) {
        out.push(f);
    }

    if let (Some(l), Some(usage), Some(unrec)) = (limit, s.usage(), s.unreclaimable()) {
        let file_lru = usage.saturating_sub(unrec);
        let lazy = b.reclaimable_unreleased.unwrap_or(0);
        let cache = file_lru.saturating_sub(lazy);
        if usage as f64 >= t.page_cache_usage_fraction * l as f64
            && cache as f64 >= t.page_cache_min_fraction * usage as f64
        {
            out.push(Finding {
                cause: Cause::PageCache,
                evidence: format!(
                    "usage {} is {:.0} % of the limit, {} of it page cache the kernel can drop",
                    mib(usage),
                    100.0 * usage as f64 / l.max(1) as f64,
                    mib(cache)
                ),
                advice: "Not a risk: the kernel drops page cache before it OOM-kills. Alert on unreclaimable memory \
                         (or the working set for kubelet eviction), not on usage."
                    .into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::go_runtime::{GoSample, GO_NO_MEMORY_LIMIT};

    const M: u64 = 1 << 20;

    /// A reading of a heap with `live` MiB live and its goal at NextGC
    /// `next_gc` MiB, under a GOMEMLIMIT of `memlimit` MiB (`None`: unset),
    /// collecting at `rate` cycles/s with `cpu` of the CPU over 30 s.
    fn reading(live: u64, next_gc: u64, memlimit: Option<u64>, rate: f64, cpu: f64) -> GoReading {
        let sample = GoSample {
            heap_alloc: Some((live + 2) * M),
            heap_inuse: Some((live + 4) * M),
            heap_idle: Some(4 * M),
            heap_released: Some(0),
            heap_sys: Some((live + 8) * M),
            sys: Some((live + 16) * M),
            next_gc: Some(next_gc * M),
            gomemlimit: Some(memlimit.map_or(GO_NO_MEMORY_LIMIT, |m| m * M)),
            ..GoSample::default()
        };
        let binds = memlimit.map(|m| super::super::go_heap::memlimit_binds(&sample, m * M, Some(100)));
        GoReading {
            sample,
            heap_live: Some(live * M),
            gogc_env: Some(100),
            gomemlimit_binds: binds,
            gc_cycles_per_second: Some(rate),
            gc_cpu_fraction: Some(cpu),
            gc_pace_span_ms: 30_000,
            ..Default::default()
        }
    }

    /// A reading whose runtime holds `sys − released` MiB resident, built
    /// with `version`.
    fn runtime(sys: u64, released: u64, version: Option<&str>) -> GoReading {
        GoReading {
            sample: GoSample {
                heap_sys: Some(sys.saturating_sub(8) * M),
                heap_released: Some(released * M),
                sys: Some(sys * M),
                go_version: version.map(str::to_owned),
                ..GoSample::default()
            },
            ..Default::default()
        }
    }

    fn huge(bytes: u64, anon: u64, source: HugePagesSource) -> HugePages {
        HugePages {
            bytes: bytes * M,
            anon: anon * M,
            source,
        }
    }

    use super::super::breakdown::HugePagesSource::{self, CgroupV1, CgroupV2, Smaps};

    #[test]
    fn thp_bloat_is_huge_pages_beyond_what_the_runtime_holds() {
        let cases: &[(&str, HugePages, GoReading, Option<&str>)] = &[
            (
                "a sparsely touched huge-page region outside the heap (v1)",
                huge(302, 330, CgroupV1),
                runtime(20, 4, None),
                Some("302 MiB of 330 MiB anonymous memory in transparent huge pages (92 %; the cgroup's memory.stat rss_huge of rss); the Go runtime holds 16 MiB resident (Sys 20 MiB − HeapReleased 4 MiB), so 314 MiB lies beyond it, 302 MiB of which huge pages can account for"),
            ),
            (
                "the same on v2",
                huge(302, 330, CgroupV2),
                runtime(20, 4, None),
                Some("(92 %; the cgroup's memory.stat anon_thp of anon)"),
            ),
            (
                "the same from smaps_rollup alone",
                huge(300, 310, Smaps),
                runtime(20, 4, None),
                Some("300 MiB of 310 MiB anonymous memory in transparent huge pages (97 %; the target's smaps_rollup AnonHugePages of Anonymous)"),
            ),
            (
                "released heap collapsed again by khugepaged (golang/go#64332)",
                huge(900, 1024, CgroupV2),
                runtime(1000, 600, Some("go1.22.3")),
                Some("the Go runtime holds 400 MiB resident (Sys 1000 MiB − HeapReleased 600 MiB), so 624 MiB lies beyond it, all of which huge pages can account for"),
            ),
            ("no huge pages", huge(0, 330, CgroupV1), runtime(20, 4, None), None),
            (
                "a Go heap in huge pages that the runtime accounts for",
                huge(400, 500, CgroupV1),
                runtime(510, 20, Some("go1.19.8")),
                None,
            ),
            (
                "memory beyond the runtime, but few huge pages (off-heap, not THP)",
                huge(200, 1000, CgroupV2),
                runtime(300, 0, None),
                None,
            ),
            ("too little to act on", huge(60, 100, CgroupV1), runtime(10, 0, None), None),
            (
                "a large service: little beyond the runtime for its size",
                huge(10 << 10, 20 << 10, CgroupV2),
                runtime(19_968, 0, None),
                None,
            ),
            (
                "huge pages above anon (reads a moment apart): at most all of it",
                huge(120, 100, CgroupV1),
                runtime(10, 0, None),
                Some("100 MiB of 100 MiB anonymous memory in transparent huge pages (100 %;"),
            ),
            (
                "nothing charged",
                huge(0, 0, CgroupV1),
                runtime(10, 0, None),
                None,
            ),
            (
                "the runtime's memory unknown",
                huge(302, 330, CgroupV1),
                GoReading::default(),
                None,
            ),
        ];
        for (what, h, r, want) in cases {
            let f = thp_bloat(h, r);
            assert_eq!(f.is_some(), want.is_some(), "{what}: {f:?}");
            if let (Some(f), Some(want)) = (f, want) {
                assert_eq!(f.cause, Cause::ThpBloat);
                assert!(f.evidence.contains(want), "{what}: {}", f.evidence);
                for must in ["GODEBUG=disablethp=1", "madvise", "max_ptes_none", "golang/go#64332"] {
                    assert!(f.advice.contains(must), "{what}: {must}: {}", f.advice);
                }
            }
        }
    }

    #[test]
    fn thp_bloat_advice_follows_the_go_version() {
        let cases: &[(Option<&str>, &str)] = &[
            (
                Some("go1.22.3"),
                "Run the service with GODEBUG=disablethp=1 (go1.22.3 has it)",
            ),
            (Some("go1.21.6"), "(go1.21.6 has it)"),
            (Some("go1.23rc1"), "(go1.23rc1 has it)"),
            (
                Some("go1.21.5"),
                "go1.21.5 lacks GODEBUG=disablethp=1: build with Go 1.21.6 or later",
            ),
            (
                Some("go1.19.8"),
                "go1.19.8 marks the heap memory it releases MADV_NOHUGEPAGE",
            ),
            (
                None,
                "If the service is built with Go 1.21.6 or later (1.22+), run it with GODEBUG=disablethp=1",
            ),
            (Some("devel go1.24-abcdef"), "If the service is built with Go 1.21.6"),
        ];
        for (version, want) in cases {
            let f = thp_bloat(&huge(302, 330, CgroupV1), &runtime(20, 4, *version)).unwrap();
            assert!(f.advice.contains(want), "{version:?}: {}", f.advice);
        }
        type Release = (u32, u32, u32);
        let releases: &[(&str, Option<Release>)] = &[
            ("go1.21.6", Some((1, 21, 6))),
            ("go1.22", Some((1, 22, 0))),
            ("go1.22rc1", Some((1, 22, 0))),
            ("go1.22.0 X:boringcrypto", Some((1, 22, 0))),
            ("devel go1.24-abcdef", None),
            ("go1", None),
            ("go1.x", None),
            ("1.21.6", None),
            ("", None),
        ];
        for (v, want) in releases {
            assert_eq!(go_release(v), *want, "{v:?}");
        }
        assert!(!has_disablethp((1, 21, 5)) && has_disablethp((1, 21, 6)) && has_disablethp((1, 22, 0)));
        assert!(!has_disablethp((1, 20, 14)) && has_disablethp((2, 0, 0)));
    }

    #[test]
    fn thp_bloat_needs_the_go_runtime() {
        let b = Breakdown {
            huge_pages: Some(huge(302, 330, CgroupV1)),
            ..Breakdown::default()
        };
        let mut s = Sample::default();
        let called = |s: &Sample| {
            diagnose_now(s, &b, &Thresholds::default())
                .iter()
                .any(|f| f.cause == Cause::ThpBloat)
        };
        assert!(
            !called(&s),
            "without Go data the heap's own huge pages cannot be told apart"
        );
        s.go = Some(runtime(20, 4, Some("go1.19.8")));
        assert!(called(&s));
        // Huge pages unreadable (a kernel without THP): nothing to call.
        let none = diagnose_now(&s, &Breakdown::default(), &Thresholds::default());
        assert!(none.iter().all(|f| f.cause != Cause::ThpBloat), "{none:?}");
    }

    #[test]
    fn gc_thrash_only_under_a_binding_limit_with_no_room() {
        let cases: &[(&str, GoReading, bool)] = &[
            (
                "150 MiB live under GOMEMLIMIT=170MiB, 9 cycles/s, 60 % CPU",
                reading(150, 155, Some(170), 9.0, 0.60),
                true,
            ),
            (
                "the same pace measured by the CPU share alone",
                reading(150, 155, Some(170), 1.0, 0.40),
                true,
            ),
            (
                "the same cycles without a CPU share readable",
                GoReading {
                    gc_cpu_fraction: None,
                    ..reading(150, 155, Some(170), 9.0, 0.0)
                },
                true,
            ),
            (
                "GOGC=100 small heap churning: many cycles, plenty of room",
                reading(20, 40, None, 9.0, 0.10),
                false,
            ),
            (
                "many cycles under a GOMEMLIMIT far above the heap",
                reading(20, 40, Some(1024), 9.0, 0.30),
                false,
            ),
            (
                "no GOMEMLIMIT, a heap near its GOGC goal",
                reading(150, 160, None, 9.0, 0.60),
                false,
            ),
            (
                "a binding limit with room: the heap well under it",
                reading(80, 155, Some(170), 3.0, 0.30),
                false,
            ),
            (
                "a binding limit and no room, but a calm GC",
                reading(150, 155, Some(170), 0.5, 0.05),
                false,
            ),
            (
                "a pace measured over too short a time",
                GoReading {
                    gc_pace_span_ms: 5_000,
                    ..reading(150, 155, Some(170), 9.0, 0.60)
                },
                false,
            ),
        ];
        for (what, r, want) in cases {
            let f = gc_thrash(r, Some(320 * M));
            assert_eq!(f.is_some(), *want, "{what}: {f:?}");
            if let Some(f) = f {
                assert_eq!(f.cause, Cause::GcThrash);
                assert!(
                    f.evidence.contains("live heap 150 MiB against GOMEMLIMIT 170 MiB"),
                    "{}",
                    f.evidence
                );
                assert!(
                    f.advice.contains("Raise GOMEMLIMIT") && f.advice.contains("320 MiB"),
                    "{}",
                    f.advice
                );
            }
        }
    }
}
