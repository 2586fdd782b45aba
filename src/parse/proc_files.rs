//! The target's `/proc/PID/status` (parsed by the procfs crate) and
//! `/proc/PID/smaps_rollup`, the fields headroom uses, from text already read:
//!
//! ```text
//! status:        VmRSS:      123456 kB
//! smaps_rollup:  LazyFree:              0 kB
//!                AnonHugePages:    307200 kB
//! ```
//! Values are converted from kB to bytes.

use procfs::FromBufRead;

/// Memory lines of `/proc/PID/status`, bytes. Lines a kernel does not
/// print (a kernel thread has no VmRSS) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusMemory {
    pub vm_rss: Option<u64>,
    pub vm_hwm: Option<u64>,
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub vm_swap: Option<u64>,
}

/// Parses `/proc/PID/status`.
pub fn parse_status(text: &str) -> Result<StatusMemory, String> {
    let st = procfs::process::Status::from_buf_read(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(status_memory(&st))
}

/// The memory lines of a parsed status, converted from kB to bytes.
pub fn status_memory(st: &procfs::process::Status) -> StatusMemory {
    let kb = |v: Option<u64>| v.map(|k| k.saturating_mul(1024));
    StatusMemory {
        vm_rss: kb(st.vmrss),
        vm_hwm: kb(st.vmhwm),
        rss_anon: kb(st.rssanon),
        rss_file: kb(st.rssfile),
        rss_shmem: kb(st.rssshmem),
        vm_swap: kb(st.vmswap),
    }
}

/// The totals of `/proc/PID/smaps_rollup` (Linux 4.14+), bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmapsRollupMemory {
    pub rss: Option<u64>,
    pub anonymous: Option<u64>,
    pub lazy_free: Option<u64>,
    pub swap: Option<u64>,
    /// `AnonHugePages`: anonymous memory mapped with transparent huge pages.
    pub anon_huge_pages: Option<u64>,
}

/// Parses `/proc/PID/smaps_rollup`: a mapping header line ending in
/// `[rollup]`, then `Key:   N kB` lines. Parsed here rather than by the
/// procfs crate, whose conversion to bytes overflows (a panic in a debug
/// build, a wrapped value in a release build) on values above 2^54 kB;
/// here they saturate. A line of a key headroom uses that does not parse
/// is an error; other lines are not looked at.
pub fn parse_smaps_rollup(text: &str) -> Result<SmapsRollupMemory, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(header) if header.trim_end().ends_with("[rollup]") => {}
        Some(header) => {
            return Err(format!(
                "the first line {:?} is not the [rollup] mapping header",
                header.chars().take(80).collect::<String>()
            ))
        }
        None => return Err("empty file".into()),
    }
    let mut out = SmapsRollupMemory::default();
    for line in lines {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "Rss" => &mut out.rss,
            "Anonymous" => &mut out.anonymous,
            "LazyFree" => &mut out.lazy_free,
            "Swap" => &mut out.swap,
            "AnonHugePages" => &mut out.anon_huge_pages,
            _ => continue,
        };
        let mut words = value.split_ascii_whitespace();
        let bytes = match (words.next().map(str::parse::<u64>), words.next(), words.next()) {
            (Some(Ok(kb)), Some("kB"), None) => kb.saturating_mul(1024),
            _ => {
                return Err(format!(
                    "{}: {:?} is not \"N kB\"",
                    key.trim(),
                    value.trim().chars().take(40).collect::<String>()
                ))
            }
        };
        *slot = Some(bytes);
    }
    Ok(out)
}

/// The state (field 3) and, once the process has exited, the wait status
/// (field 52, `exit_code`, Linux 3.5+) of a `/proc/PID/stat` line:
/// `4242 (my app) Z 1 ... 52:exit_code`. The name may hold spaces and
/// parentheses: fields are counted after its last `)`.
pub fn stat_state_and_exit_code(text: &str) -> Option<(char, Option<i32>)> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 52 is the 50th after the state (field 3).
    let code = fields.nth(48).and_then(|f| f.parse().ok());
    Some((state, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_gives_the_state_and_the_zombies_wait_status() {
        let mut fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
        fields[52 - 4] = "2304".into(); // exit(9) << 8
        let line = format!("4242 (a (weird) name) Z {}\n", fields.join(" "));
        assert_eq!(stat_state_and_exit_code(&line), Some(('Z', Some(2304))));
        // An older kernel's shorter line: no exit code.
        assert_eq!(stat_state_and_exit_code("7 (sh) S 1 7 7"), Some(('S', None)));
        assert_eq!(stat_state_and_exit_code("garbage"), None);
        assert_eq!(stat_state_and_exit_code("7 (sh)"), None);
    }

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn fixtures() {
        for tree in ["v1", "v2", "hybrid", "v2-max"] {
            let s = parse_status(&fixture(&format!("{tree}/proc/4242/status"))).unwrap();
            let rss = s.vm_rss.unwrap();
            assert!(rss > 0 && rss % 1024 == 0, "{tree}: {s:?}");
            let r = parse_smaps_rollup(&fixture(&format!("{tree}/proc/4242/smaps_rollup"))).unwrap();
            assert!(r.rss.is_some() && r.lazy_free.is_some(), "{tree}: {r:?}");
            assert_eq!(r.anon_huge_pages, Some(0), "{tree}");
        }
    }

    #[test]
    fn inline() {
        // procfs wants every line a kernel prints; change the memory ones.
        let base = fixture("v2/proc/4242/status");
        let with = |lines: &[(&str, &str)]| -> String {
            base.lines()
                .filter(|l| !lines.iter().any(|(k, _)| l.starts_with(&format!("{k}:"))))
                .map(str::to_owned)
                .chain(
                    lines
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| format!("{k}:\t{v}")),
                )
                .collect::<Vec<_>>()
                .join("\n")
        };
        let s = parse_status(&with(&[
            ("VmHWM", "10 kB"),
            ("VmRSS", "8 kB"),
            ("RssAnon", "6 kB"),
            ("VmSwap", ""),
        ]))
        .unwrap();
        assert_eq!(
            (s.vm_rss, s.vm_hwm, s.rss_anon, s.vm_swap),
            (Some(8192), Some(10240), Some(6144), None)
        );
        // Saturates instead of overflowing.
        let s = parse_status(&with(&[("VmRSS", "18446744073709551615 kB")])).unwrap();
        assert_eq!(s.vm_rss, Some(u64::MAX));
        assert!(parse_status(&with(&[("VmRSS", "lots kB")])).is_err());
        assert!(parse_status("").is_err());
        assert!(parse_status("garbage").is_err());
        let r = parse_smaps_rollup(
            "00400000-7ffc0000 ---p 00000000 00:00 0                                  [rollup]\nRss:  100 kB\nLazyFree:  4 kB\n",
        )
        .unwrap();
        assert_eq!((r.rss, r.lazy_free, r.swap), (Some(102400), Some(4096), None));
        assert!(parse_smaps_rollup("").is_err());
        assert!(parse_smaps_rollup("Rss: 1 kB\n").unwrap_err().contains("[rollup]"));
        let e = parse_smaps_rollup("0-1 ---p 0 00:00 0 [rollup]\nLazyFree: x kB\n").unwrap_err();
        assert!(e.contains("LazyFree"), "{e}");
        // Found by fuzzing (procfs multiplied by 1024 without a check): saturates.
        let r = parse_smaps_rollup(
            "00400000-7ffe6600 ---p 00000000 00:00 0 [rollup]\nRss:      000000000000746331336732224170 kB\n\
             Pss_Anon:   10    4 kB\n",
        )
        .unwrap();
        assert_eq!(r.rss, Some(u64::MAX));
        let r = parse_smaps_rollup("0-1 ---p 0 00:00 0 [rollup]\nRss: 18014398509481984 kB\nSwap: 0 kB\n").unwrap();
        assert_eq!((r.rss, r.swap, r.lazy_free), (Some(u64::MAX), Some(0), None));
    }

    #[test]
    fn anon_huge_pages() {
        let head = "7ffd0000-7ffe0000 ---p 00000000 00:00 0                          [rollup]\n";
        let table: &[(&str, Result<Option<u64>, &str>)] = &[
            // A kernel with THP: the whole line as Linux prints it.
            (
                "Anonymous:        309760 kB\nAnonHugePages:    307200 kB\n",
                Ok(Some(307200 * 1024)),
            ),
            ("AnonHugePages:         0 kB\n", Ok(Some(0))),
            // A kernel built without THP prints no line: unknown, not 0.
            ("Anonymous:        309760 kB\n", Ok(None)),
            // Its neighbours are not it.
            ("ShmemPmdMapped:     2048 kB\nFilePmdMapped:  4096 kB\n", Ok(None)),
            ("AnonHugePages: 18014398509481984 kB\n", Ok(Some(u64::MAX))),
            ("AnonHugePages: 2048\n", Err("AnonHugePages")),
            ("AnonHugePages: -2048 kB\n", Err("AnonHugePages")),
            ("AnonHugePages: 2048 MB\n", Err("AnonHugePages")),
            ("AnonHugePages:\n", Err("AnonHugePages")),
        ];
        for (body, want) in table {
            let got = parse_smaps_rollup(&format!("{head}{body}"));
            match (got, want) {
                (Ok(r), Ok(w)) => assert_eq!(r.anon_huge_pages, *w, "{body:?}"),
                (Err(e), Err(key)) => assert!(e.contains(key), "{body:?}: {e}"),
                (got, want) => panic!("{body:?}: {got:?}, want {want:?}"),
            }
        }
    }
}
