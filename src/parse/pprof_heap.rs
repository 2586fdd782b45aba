//! The Go runtime from net/http/pprof's text heap profile,
//! `/debug/pprof/heap?debug=1`: the profile's stack records, then a
//! `# runtime.MemStats` trailer that runtime/pprof prints after them
//! (`writeHeapInternal`), one `# Name = value` line per field:
//! ```text
//! heap profile: 26: 24117808 [26: 24117808] @ heap/1048576
//! 23: 24117248 [23: 24117248] @ 0x81657f 0x816517 0x81b134 0x43c612 0x46d121
//! #   0x81657e    main.allocHeap+0x9e    gohog/main.go:97     (tab-separated)
//! ...
//!
//! # runtime.MemStats
//! # Alloc = 67457328
//! # HeapAlloc = 67457328
//! # HeapInuse = 68214784
//! # Stack = 294912 / 294912
//! # NextGC = 118214432
//! # PauseNs = [77645 97081 15989 0 0 ...]
//! # NumGC = 5
//! # DebugGC = false
//! ```
//! For services that import net/http/pprof but publish neither expvar nor
//! Prometheus metrics. The stack records (megabytes on a large service) are
//! passed over without being kept: before the trailer only the first
//! [`MARKER_LINE_BYTES`] of a line are looked at. The default `debug=0`
//! page is a gzip'd protobuf without MemStats; [`GoBodyDecoder`] recognises
//! it and says to ask for `?debug=1`.
//!
//! [`GoBodyDecoder`]: super::go_body::GoBodyDecoder

use super::go_runtime::{
    memstats_sample, Count, GoFormat, GoParseError, GoSample, Line, Lines, MAX_LINE_BYTES, MEMSTATS_FIELDS,
};

/// The first line of the page.
pub const HEADER: &[u8] = b"heap profile:";
/// The line that starts the MemStats trailer.
pub const TRAILER: &str = "# runtime.MemStats";
/// Before the trailer, a line longer than this cannot be the trailer's
/// first line and is dropped unread.
pub const MARKER_LINE_BYTES: usize = 64;

/// The trailer's name for `StackInuse`: `Stack = inuse / sys`.
const STACK: &str = "Stack";

/// A streaming decoder of the text heap profile: [`feed`](Self::feed)
/// each chunk as it arrives, then [`finish`](Self::finish). Memory is
/// bounded whatever it is fed: one line of at most [`MARKER_LINE_BYTES`]
/// before the trailer, of at most [`MAX_LINE_BYTES`] in it (a longer line
/// is skipped and counted in [`GoSample::skipped_lines`]).
#[derive(Debug, Default)]
pub struct PprofHeapDecoder {
    lines: Lines,
    /// The `# runtime.MemStats` line was seen: the lines are fields.
    in_trailer: bool,
    values: [Count; MEMSTATS_FIELDS.len()],
    /// `# GCCPUFraction = 0.0123`, a number from 0 to 1 (else absent).
    gc_cpu_fraction: Option<f64>,
    /// Trailer lines that are not `# Name = value` (or not UTF-8, or too long).
    skipped: u64,
}

impl PprofHeapDecoder {
    pub fn new() -> PprofHeapDecoder {
        PprofHeapDecoder::default()
    }

    /// The longest line kept in the current part of the page.
    fn cap(&self) -> usize {
        if self.in_trailer {
            MAX_LINE_BYTES
        } else {
            MARKER_LINE_BYTES
        }
    }

    /// The next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(chunk, self.cap(), |line| {
            match line {
                Line::Text(bytes) => self.line(bytes),
                Line::TooLong => self.long_line(),
            }
            self.cap()
        });
        self.lines = lines;
    }

    /// A line longer than the cap: a stack record's before the trailer,
    /// not understood in it.
    fn long_line(&mut self) {
        if self.in_trailer {
            self.skipped += 1;
        }
    }

    fn line(&mut self, raw: &[u8]) {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.long_line();
            return;
        };
        let l = text.trim();
        if l == TRAILER {
            self.in_trailer = true;
            return;
        }
        if !self.in_trailer || l.is_empty() {
            return;
        }
        let Some((name, value)) = l.strip_prefix('#').and_then(|f| f.split_once('=')) else {
            self.skipped += 1;
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        // `Stack = inuse / sys`: the first number is StackInuse.
        let (name, value) = match name {
            STACK => (
                "StackInuse",
                value.split_once('/').map_or(value, |(inuse, _)| inuse.trim_end()),
            ),
            _ => (name, value),
        };
        if name == "GCCPUFraction" {
            self.gc_cpu_fraction = value.parse::<f64>().ok().filter(|f| (0.0..=1.0).contains(f));
            return;
        }
        let Some(i) = MEMSTATS_FIELDS.iter().position(|f| *f == name) else {
            // Lookups, Mallocs, PauseNs, DebugGC, MaxRSS, ...: not used.
            return;
        };
        self.values[i] = match count(value) {
            Count::Bad(why) if name == "StackInuse" => {
                Count::Bad(format!("{why} (the trailer's '{STACK} = inuse / sys')"))
            }
            c => c,
        };
    }

    /// The end of the body.
    pub fn finish(mut self) -> Result<GoSample, GoParseError> {
        std::mem::take(&mut self.lines).finish(|line| match line {
            Line::Text(bytes) => self.line(bytes),
            Line::TooLong => self.long_line(),
        });
        if !self.in_trailer {
            return Err(GoParseError::PprofNoTrailer);
        }
        let s = memstats_sample(
            GoFormat::Pprof,
            &self.values,
            self.skipped,
            &format!(" from the pprof page's '{TRAILER}' trailer"),
        )?;
        Ok(GoSample {
            gc_cpu_fraction: self.gc_cpu_fraction,
            ..s
        })
    }
}

/// A decimal count as runtime/pprof prints it (`%d` of an unsigned field).
fn count(v: &str) -> Count {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Count::Bad(format!(
            "{:?} is not a non-negative integer",
            v.chars().take(40).collect::<String>()
        ));
    }
    match v.parse::<u64>() {
        Ok(n) => Count::Value(n),
        Err(_) => Count::Bad(format!("{} is above 2^64-1", v.chars().take(40).collect::<String>())),
    }
}

/// The text heap profile, the whole body at once.
pub fn parse_pprof_heap(body: &str) -> Result<GoSample, GoParseError> {
    let mut d = PprofHeapDecoder::new();
    d.feed(body.as_bytes());
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::go_body::{parse_go_body, GoBodyDecoder};

    fn fixture() -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/go/pprof-heap-debug1-go1.19.txt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn chunked(body: &[u8], size: usize) -> Result<GoSample, GoParseError> {
        let mut d = PprofHeapDecoder::new();
        for c in body.chunks(size.max(1)) {
            d.feed(c);
        }
        d.finish()
    }

    /// The body cut in two at every byte, and in chunks of several sizes,
    /// gives the whole-body answer; so does the format-sniffing decoder.
    fn same_in_chunks(body: &str) -> Result<GoSample, GoParseError> {
        let whole = parse_pprof_heap(body);
        let b = body.as_bytes();
        for at in 0..=b.len() {
            let mut d = PprofHeapDecoder::new();
            d.feed(&b[..at]);
            d.feed(&b[at..]);
            assert_eq!(d.finish(), whole, "split at {at}");
        }
        for size in [1, 2, 3, 7, 64, 65, 4096] {
            assert_eq!(chunked(b, size), whole, "chunks of {size}");
        }
        if body.starts_with("heap profile:") {
            assert_eq!(parse_go_body(body), whole, "through the sniffing decoder");
        }
        whole
    }

    const SMALL: &str = "heap profile: 3: 1234 [45: 5678] @ heap/1048576\n\
        1: 8192 [1: 8192] @ 0x4a1b2c 0x4a1d3e\n\
        #\t0x4a1b2b\tmain.foo+0x2b\t/src/main.go:12\n\
        \n\
        \n\
        # runtime.MemStats\n\
        # Alloc = 1234\n\
        # TotalAlloc = 5678\n\
        # Sys = 9999\n\
        # Lookups = 0\n\
        # HeapAlloc = 1234\n\
        # HeapSys = 4000\n\
        # HeapIdle = 1000\n\
        # HeapInuse = 3000\n\
        # HeapReleased = 500\n\
        # HeapObjects = 7\n\
        # Stack = 1024 / 2048\n\
        # MSpan = 10 / 20\n\
        # NextGC = 4194304\n\
        # LastGC = 1700000000000000000\n\
        # PauseNs = [1 2 3 0 0]\n\
        # PauseEnd = [4 5 6 0 0]\n\
        # NumGC = 3\n\
        # NumForcedGC = 0\n\
        # GCCPUFraction = 1.8e-05\n\
        # DebugGC = false\n\
        # MaxRSS = 1000\n";

    fn small_want() -> GoSample {
        GoSample {
            format: Some(GoFormat::Pprof),
            heap_alloc: Some(1234),
            heap_inuse: Some(3000),
            heap_idle: Some(1000),
            heap_released: Some(500),
            heap_sys: Some(4000),
            sys: Some(9999),
            next_gc: Some(4194304),
            stack_inuse: Some(1024),
            num_gc: Some(3),
            total_alloc: Some(5678),
            pause_total_ns: None,
            last_gc_ns: Some(1700000000000000000),
            gc_cpu_fraction: Some(1.8e-5),
            ..GoSample::default()
        }
    }

    #[test]
    fn real_page_from_gohog() {
        let s = same_in_chunks(&fixture()).unwrap();
        assert_eq!(
            s,
            GoSample {
                format: Some(GoFormat::Pprof),
                heap_alloc: Some(89650488),
                heap_inuse: Some(95502336),
                heap_idle: Some(4833280),
                heap_released: Some(3227648),
                heap_sys: Some(100335616),
                sys: Some(114213144),
                next_gc: Some(137279960),
                stack_inuse: Some(327680),
                num_gc: Some(6),
                total_alloc: Some(101709712),
                pause_total_ns: None,
                last_gc_ns: Some(1796050878119543392),
                gc_cpu_fraction: Some(1.8108437343299146e-05),
                ..GoSample::default()
            }
        );
    }

    #[test]
    fn fields_map_as_memstats() {
        assert_eq!(same_in_chunks(SMALL).unwrap(), small_want());
        // CRLF line ends and trailing spaces.
        let crlf = SMALL.replace('\n', " \r\n");
        assert_eq!(same_in_chunks(&crlf).unwrap(), small_want());
        // The last line without its newline.
        let cut = SMALL.trim_end_matches('\n');
        assert_eq!(same_in_chunks(cut).unwrap(), small_want());
        // A later duplicate wins; PauseTotalNs is read when present.
        let more = format!("{SMALL}# HeapAlloc = 1\n# PauseTotalNs = 77\n");
        let s = same_in_chunks(&more).unwrap();
        assert_eq!((s.heap_alloc, s.pause_total_ns), (Some(1), Some(77)));
    }

    #[test]
    fn errors_tell_what_to_do() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "without its '# runtime.MemStats' trailer (use /debug/pprof/heap?debug=1)",
            ),
            (
                "heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1\n",
                "without its '# runtime.MemStats' trailer",
            ),
            // The marker inside a longer line is not the marker.
            (
                "heap profile: 1: 2 [3: 4] @ heap/1\n## runtime.MemStats\n# HeapAlloc = 1\n",
                "trailer",
            ),
            (
                "heap profile: 1: 2 [3: 4] @ heap/1\n# runtime.MemStats\n# Alloc = 1\n",
                "memstats.HeapAlloc/HeapInuse: missing from the pprof page's '# runtime.MemStats' trailer",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = 12x\n# HeapInuse = 1\n",
                "memstats.HeapAlloc: \"12x\" is not a non-negative integer",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = -1\n# HeapInuse = 1\n",
                "memstats.HeapAlloc: \"-1\" is not a non-negative integer",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = +1\n# HeapInuse = 1\n",
                "memstats.HeapAlloc: \"+1\" is not a non-negative integer",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = 1\n# HeapInuse =\n",
                "memstats.HeapInuse: \"\" is not a non-negative integer",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = 1\n# HeapInuse = 18446744073709551616\n",
                "memstats.HeapInuse: 18446744073709551616 is above 2^64-1",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = 1\n# HeapInuse = 2\n# Stack = x / 5\n",
                "memstats.StackInuse: \"x\" is not a non-negative integer (the trailer's 'Stack = inuse / sys')",
            ),
            (
                "heap profile:\n# runtime.MemStats\n# HeapAlloc = 1\n# HeapInuse = 2\n# NextGC = 1.5e9\n",
                "memstats.NextGC: \"1.5e9\" is not a non-negative integer",
            ),
        ];
        for (body, want) in cases {
            let e = same_in_chunks(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: got {e:?}, want {want:?}");
        }
        // A bad value in a field that is not read is no error.
        let ok = SMALL.replace("# DebugGC = false", "# DebugGC = maybe");
        assert_eq!(same_in_chunks(&ok).unwrap(), small_want());
    }

    #[test]
    fn lines_are_bounded_and_records_are_not_kept() {
        // A huge stack record line, and a long trailer line.
        let record = format!("1: 8 [1: 8] @{}\n", " 0x4a1b2c".repeat(100_000));
        let long_field = format!("# PauseNs = [{}]\n", "1 ".repeat(MAX_LINE_BYTES));
        let body = SMALL
            .replacen("\n", &format!("\n{record}"), 1)
            .replace("# NumGC = 3\n", &format!("# NumGC = 3\n{long_field}not a field\n"));
        let mut bytes = body.into_bytes();
        // A trailer line that is not UTF-8, and one before the trailer.
        bytes.splice(0..0, b"\xff\xfe\n".iter().copied());
        bytes.extend_from_slice(b"# Sys\xff = 1\n");
        let want = GoSample {
            skipped_lines: 3,
            ..small_want()
        };
        let whole = {
            let mut d = PprofHeapDecoder::new();
            d.feed(&bytes);
            d.finish().unwrap()
        };
        assert_eq!(whole, want);
        for size in [1, 100, 4096, MAX_LINE_BYTES + 1] {
            assert_eq!(chunked(&bytes, size).unwrap(), want, "chunks of {size}");
        }
        // Megabytes of records stream through a buffer of one short line.
        let mut d = PprofHeapDecoder::new();
        d.feed(b"heap profile: 1: 2 [3: 4] @ heap/1048576\n");
        for _ in 0..50 {
            d.feed(record.as_bytes());
            assert!(d.lines.held() <= 2 * MARKER_LINE_BYTES, "{}", d.lines.held());
        }
        d.feed(b"# runtime.MemStats\n");
        let tail = "x".repeat(MAX_LINE_BYTES / 2);
        for _ in 0..100 {
            d.feed(tail.as_bytes());
            assert!(d.lines.held() <= 2 * MAX_LINE_BYTES, "{}", d.lines.held());
        }
        d.feed(b"\n# HeapAlloc = 1\n# HeapInuse = 2\n");
        let s = d.finish().unwrap();
        assert_eq!((s.heap_alloc, s.heap_inuse, s.skipped_lines), (Some(1), Some(2), 1));
    }

    #[test]
    fn sniffed_by_its_first_line() {
        // Whitespace and a byte-order mark before the header.
        let s = parse_go_body(&format!("\u{feff}\n {SMALL}")).unwrap();
        assert_eq!(s, small_want());
        // The header split across chunks at every point, the whole page fed
        // through the sniffing decoder.
        let b = SMALL.as_bytes();
        for at in 0..=HEADER.len() + 1 {
            for size in [1, 2, 5, 4096] {
                let mut d = GoBodyDecoder::new();
                d.feed(&b[..at]).unwrap();
                for c in b[at..].chunks(size) {
                    d.feed(c).unwrap();
                }
                assert_eq!(
                    d.finish().unwrap(),
                    small_want(),
                    "split at {at}, then chunks of {size}"
                );
            }
        }
    }
}
