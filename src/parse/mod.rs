//! Pure parsers: `&str` in, typed structs out. No I/O, no clock.
//!
//! The readers in `crate::source` read the files; these functions only parse
//! what was read, so every edge case is tested on inline strings.

pub mod cgroup_files;
pub mod cgroup_paths;
pub mod go_body;
pub mod go_runtime;
pub mod kubepods;
pub mod pprof_heap;
pub mod proc_files;
pub mod psi;

use std::collections::BTreeMap;

/// What was wrong with one line of a key/value file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// The offending text, cut to 80 characters.
    pub text: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// A flat keyed file (`memory.stat`, `memory.events`, `memory.oom_control`):
/// one `key value` pair per line. Every well-formed pair is kept, known or
/// not; malformed lines are collected, not fatal, so one bad line never hides
/// the rest of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatKeyed {
    pub values: BTreeMap<String, u64>,
    pub bad: Vec<BadLine>,
}

impl FlatKeyed {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.values.get(key).copied()
    }
}

/// Parses a flat keyed file such as
/// ```text
/// anon 1617920
/// file 4096
/// ```
pub fn parse_flat_keyed(text: &str) -> FlatKeyed {
    let mut out = FlatKeyed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_ascii_whitespace();
        let (Some(key), value, extra) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let bad = |reason| BadLine {
            line: i + 1,
            text: line.chars().take(80).collect(),
            reason,
        };
        match (value, extra) {
            (None, _) => out.bad.push(bad("no value")),
            (Some(_), Some(_)) => out.bad.push(bad("more than one value")),
            (Some(v), None) => match v.parse::<u64>() {
                Ok(n) => {
                    out.values.insert(key.to_owned(), n);
                }
                Err(e) => out.bad.push(bad(match e.kind() {
                    std::num::IntErrorKind::PosOverflow => "value above 2^64-1",
                    _ => "value is not a non-negative integer",
                })),
            },
        }
    }
    out
}

/// Errors of single-value files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("file is empty")]
    Empty,
    #[error("{0:?} is not a non-negative integer")]
    NotANumber(String),
}

/// Parses a file holding one unsigned integer (`memory.current`,
/// `memory.usage_in_bytes`): `"4096\n"`.
pub fn parse_u64(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::Empty);
    }
    t.parse::<u64>()
        .map_err(|_| ValueError::NotANumber(t.chars().take(40).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_table() {
        struct Case {
            name: &'static str,
            text: &'static str,
            want: &'static [(&'static str, u64)],
            bad: &'static [(usize, &'static str)],
        }
        let cases = [
            Case {
                name: "empty",
                text: "",
                want: &[],
                bad: &[],
            },
            Case {
                name: "blank lines",
                text: "\n\n",
                want: &[],
                bad: &[],
            },
            Case {
                name: "two keys, trailing space",
                text: "anon 10 \nfile 20\n",
                want: &[("anon", 10), ("file", 20)],
                bad: &[],
            },
            Case {
                name: "unknown keys kept",
                text: "zswap_future_key 7\n",
                want: &[("zswap_future_key", 7)],
                bad: &[],
            },
            Case {
                name: "non-numeric value",
                text: "anon abc\nfile 3\n",
                want: &[("file", 3)],
                bad: &[(1, "value is not a non-negative integer")],
            },
            Case {
                name: "negative",
                text: "anon -1\n",
                want: &[],
                bad: &[(1, "value is not a non-negative integer")],
            },
            Case {
                name: "above i64 still fits u64",
                text: "hierarchical_memory_limit 9223372036854775807\nx 18446744073709551615\n",
                want: &[("hierarchical_memory_limit", 9223372036854775807), ("x", u64::MAX)],
                bad: &[],
            },
            Case {
                name: "above u64",
                text: "anon 99999999999999999999999\n",
                want: &[],
                bad: &[(1, "value above 2^64-1")],
            },
            Case {
                name: "no value",
                text: "under_\n",
                want: &[],
                bad: &[(1, "no value")],
            },
            Case {
                name: "two values",
                text: "a 1 2\n",
                want: &[],
                bad: &[(1, "more than one value")],
            },
            Case {
                name: "tabs and CRLF",
                text: "a\t5\r\nb 6\r\n",
                want: &[("a", 5), ("b", 6)],
                bad: &[],
            },
        ];
        for c in cases {
            let got = parse_flat_keyed(c.text);
            let want: BTreeMap<String, u64> = c.want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            assert_eq!(got.values, want, "{}", c.name);
            let bad: Vec<(usize, &str)> = got.bad.iter().map(|b| (b.line, b.reason)).collect();
            assert_eq!(bad, c.bad, "{}", c.name);
        }
    }

    #[test]
    fn single_values() {
        assert_eq!(parse_u64("4096\n"), Ok(4096));
        assert_eq!(parse_u64("  12 \n"), Ok(12));
        assert_eq!(parse_u64(""), Err(ValueError::Empty));
        assert_eq!(parse_u64("\n"), Err(ValueError::Empty));
        assert!(matches!(parse_u64("max\n"), Err(ValueError::NotANumber(_))));
        assert!(matches!(parse_u64("-5"), Err(ValueError::NotANumber(_))));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_u64("18446744073709551616").is_err());
    }
}
