//! `/proc/self/mountinfo`: finding the memory hierarchy's mount never
//! panics, and a v1 memory mount is never taken for the v2 one.
#![no_main]

use headroom::parse::cgroup_paths::find_cgroup_mount;
use headroom::sample::CgroupVersion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let v1 = find_cgroup_mount(text, CgroupVersion::V1);
    let v2 = find_cgroup_mount(text, CgroupVersion::V2);
    if v1.is_some() {
        assert!(text.contains(" - cgroup ") || text.contains("cgroup"), "{v1:?}");
    }
    if v2.is_some() {
        assert!(text.contains("cgroup2"), "{v2:?}");
    }
});
