//! Flat keyed cgroup files (`memory.stat`, `memory.events`,
//! `memory.oom_control`): every kept pair prints back to itself, every line
//! is accounted for at most once, and the typed views never panic.
#![no_main]

use headroom::parse::cgroup_files::{MemoryEvents, MemoryStat, OomControl};
use headroom::parse::parse_flat_keyed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let kv = parse_flat_keyed(text);
    let lines = text.lines().count();
    assert!(kv.values.len() + kv.bad.len() <= lines, "{kv:?}");
    for b in &kv.bad {
        assert!(b.line >= 1 && b.line <= lines);
        assert!(b.text.chars().count() <= 80);
    }
    for (k, v) in &kv.values {
        let again = parse_flat_keyed(&format!("{k} {v}\n"));
        assert_eq!(again.values.get(k), Some(v));
        assert!(again.bad.is_empty());
    }
    let v2 = MemoryStat::from_v2(&kv);
    assert_eq!(v2.anon, kv.get("anon"));
    let v1 = MemoryStat::from_v1(&kv);
    assert!(v1.anon.is_none() || v1.anon == kv.get("rss") || v1.anon == kv.get("total_rss"));
    MemoryEvents::from_kv(&kv);
    OomControl::from_kv(&kv);
});
