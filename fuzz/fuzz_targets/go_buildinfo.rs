//! The Go build-info reader over arbitrary bytes: as an ELF image (header,
//! section table, names, `.go.buildinfo`) and as a `.go.buildinfo`
//! section whose pointers resolve into the same bytes. Never a panic, and
//! any version found is one `go version` could print.
#![no_main]

use headroom::source::go_binary::{go_build_of, parse_buildinfo, MAX_READ};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = go_build_of(data) {
        assert!(info.version.starts_with("go"));
    }
    let resolve = |addr: u64, len: usize| -> Option<Vec<u8>> {
        assert!(len <= 2 * MAX_READ);
        let start = usize::try_from(addr).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    };
    if let Some(info) = parse_buildinfo(data, &resolve) {
        assert!(info.version.starts_with("go") && info.version.len() <= 256);
    }
});
