//! The Go build-info reader over arbitrary bytes: as an ELF image (header,
//! section table, names, `.go.buildinfo`, pointers into other sections) and
//! as a `.go.buildinfo` section whose pointers resolve into the same bytes.
//! Never a panic, no read past the limit, and any version found is one
//! `go version` could print.
#![no_main]

use headroom::source::go_binary::{go_build_of, parse_buildinfo, GoBuildInfo, MAX_READ, MAX_VERSION};
use libfuzzer_sys::fuzz_target;

fn check(info: &GoBuildInfo) {
    let v = &info.version;
    assert!(
        !v.is_empty() && v.len() <= MAX_VERSION && !v.chars().any(char::is_control),
        "{v:?}"
    );
    if let Some(p) = &info.path {
        assert!(!p.is_empty() && !p.contains('\n'), "{p:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = go_build_of(data) {
        check(&info);
    }
    let resolve = |addr: u64, len: usize| -> Option<Vec<u8>> {
        assert!(len <= MAX_READ, "asked for {len} bytes");
        let start = usize::try_from(addr).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    };
    if let Some(info) = parse_buildinfo(data, &resolve) {
        check(&info);
    }
});
