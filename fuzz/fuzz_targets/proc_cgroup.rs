//! `/proc/PID/cgroup`: no panic, and the cgroup path found is one of the
//! file's lines.
#![no_main]

use headroom::parse::cgroup_paths::parse_proc_cgroup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(m) = parse_proc_cgroup(text) {
        assert!(
            text.lines().any(|l| l.ends_with(&format!(":{}", m.path))),
            "{m:?} not in {text:?}"
        );
    }
});
