//! Why memory is where it is: causes with evidence and plain-words advice.
//!
//! This module judges one sample (what is true now); growth-based causes
//! (`heap_leak`, `off_heap_growth`) need the history and come from the trend
//! analysis.

use super::breakdown::Breakdown;
use super::go_heap::{heap_spans_resident, peak_before_gc};
use crate::sample::Sample;
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
}

impl Cause {
    pub const ALL: [Cause; 6] = [
        Cause::HeapLeak,
        Cause::LazyFree,
        Cause::Fragmentation,
        Cause::GcHeadroom,
        Cause::OffHeapGrowth,
        Cause::PageCache,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::HeapLeak => "heap_leak",
            Cause::LazyFree => "lazy_free",
            Cause::Fragmentation => "fragmentation",
            Cause::GcHeadroom => "gc_headroom",
            Cause::OffHeapGrowth => "off_heap_growth",
            Cause::PageCache => "page_cache",
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
