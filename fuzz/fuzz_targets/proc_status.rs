//! `/proc/PID/status` as headroom reads it (procfs): no panic, and every
//! value is whole KiB in bytes (or saturated).
#![no_main]

use headroom::parse::proc_files::parse_status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(s) = parse_status(text) {
        for v in [s.vm_rss, s.vm_hwm, s.rss_anon, s.rss_file, s.rss_shmem, s.vm_swap]
            .into_iter()
            .flatten()
        {
            assert!(v % 1024 == 0 || v == u64::MAX, "{s:?}");
        }
    }
});
