//! `/proc/PID/smaps_rollup` as headroom reads it: no panic (the procfs
//! crate's parser overflowed on large values), a result only with the
//! `[rollup]` header, and every value whole KiB in bytes (or saturated).
#![no_main]

use headroom::parse::proc_files::parse_smaps_rollup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(r) = parse_smaps_rollup(text) {
        assert!(text.contains("[rollup]"), "{r:?}");
        for v in [r.rss, r.anonymous, r.lazy_free, r.swap, r.anon_huge_pages].into_iter().flatten() {
            assert!(v % 1024 == 0 || v == u64::MAX, "{r:?}");
        }
    }
});
