//! Single-value cgroup files and limits (`memory.current`, `memory.max`,
//! `memory.limit_in_bytes`): a parsed value prints back to itself.
#![no_main]

use headroom::parse::cgroup_files::{parse_limit_v1, parse_limit_v2, Limit, V1_UNLIMITED_FROM};
use headroom::parse::parse_u64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(n) = parse_u64(text) {
        assert_eq!(parse_u64(&format!("{n}\n")), Ok(n));
    }
    match parse_limit_v2(text) {
        Ok(Limit::Unlimited) => assert_eq!(text.trim(), "max"),
        Ok(Limit::Bytes(b)) => assert_eq!(parse_limit_v2(&b.to_string()), Ok(Limit::Bytes(b))),
        Err(_) => assert!(text.trim() != "max" && parse_u64(text).is_err()),
    }
    match parse_limit_v1(text) {
        Ok(Limit::Unlimited) => assert!(parse_u64(text).unwrap() >= V1_UNLIMITED_FROM),
        Ok(Limit::Bytes(b)) => {
            assert!(b < V1_UNLIMITED_FROM);
            assert_eq!(parse_limit_v1(&format!("{b}\n")), Ok(Limit::Bytes(b)));
        }
        Err(_) => assert!(parse_u64(text).is_err()),
    }
});
