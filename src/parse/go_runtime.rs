//! The target's Go runtime, from any of the three formats Go services serve:
//!
//! expvar JSON (`/debug/vars`):
//! ```text
//! {"cmdline": [...], "memstats": {"Alloc":21320936,"HeapAlloc":21320936,"HeapInuse":22151168,...}}
//! ```
//! Prometheus text from client_golang (`/metrics`):
//! ```text
//! go_memstats_heap_alloc_bytes 2.1345512e+07
//! go_gc_heap_live_bytes 1.9e+07          (runtime/metrics names, newer client_golang)
//! ```
//! net/http/pprof's text heap profile (`/debug/pprof/heap?debug=1`), whose
//! `# runtime.MemStats` trailer is read by [`super::pprof_heap`] (and
//! [`super::go_body`] tells the three apart):
//! ```text
//! heap profile: 26: 24117808 [26: 24117808] @ heap/1048576
//! ...
//! # HeapAlloc = 67457328
//! ```
//! Told apart by content, not by path.
//!
//! Both are decoded as a stream, chunk by chunk, in memory bounded by a
//! chunk and a few small buffers whatever the body's size: a service that
//! publishes a large expvar map (megabytes of JSON) must not make the
//! sidecar that watches its memory grow. Only what is used is kept: the
//! expvar top-level object is scanned (and validated) without building it,
//! and only the `memstats` value is buffered and decoded into a typed
//! struct; the Prometheus text is read line by line, lines that are not
//! understood are skipped and counted; the pprof page's stack records are
//! passed over unkept.

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a [`GoSample`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoFormat {
    Expvar,
    Prometheus,
    /// `/debug/pprof/heap?debug=1`.
    Pprof,
}

/// Go runtime memory statistics, bytes (MemStats semantics). Fields a
/// source does not export are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GoSample {
    pub format: Option<GoFormat>,
    pub heap_alloc: Option<u64>,
    pub heap_inuse: Option<u64>,
    pub heap_idle: Option<u64>,
    pub heap_released: Option<u64>,
    pub heap_sys: Option<u64>,
    pub sys: Option<u64>,
    pub next_gc: Option<u64>,
    pub stack_inuse: Option<u64>,
    pub num_gc: Option<u64>,
    pub total_alloc: Option<u64>,
    pub pause_total_ns: Option<u64>,
    /// Unix time of the last GC, nanoseconds.
    pub last_gc_ns: Option<u64>,
    /// Live heap after the last GC (`go_gc_heap_live_bytes`, Go 1.21+).
    pub heap_live: Option<u64>,
    pub heap_goal: Option<u64>,
    pub goroutines: Option<u64>,
    /// GOMEMLIMIT; `None` when not exported. Go reports "no limit" as
    /// math.MaxInt64, kept as is here.
    pub gomemlimit: Option<u64>,
    pub gogc_percent: Option<i64>,
    /// MemStats.GCCPUFraction: the GC's share of the CPU available to the
    /// program (GOMAXPROCS × wall time) since it started; cumulative.
    pub gc_cpu_fraction: Option<f64>,
    /// CPU seconds the GC used since the program started
    /// (`go_cpu_classes_gc_total_cpu_seconds_total`, runtime/metrics).
    pub gc_cpu_seconds: Option<f64>,
    /// CPU seconds available to the program since it started
    /// (`go_cpu_classes_total_cpu_seconds_total`: GOMAXPROCS × wall time).
    pub total_cpu_seconds: Option<f64>,
    /// Unix time the process started, seconds (`process_start_time_seconds`).
    pub process_start_s: Option<f64>,
    pub go_version: Option<String>,
    /// Lines of a Prometheus page that were skipped: syntax this parser does
    /// not support (Prometheus 3 quoted names, exemplars, native histograms),
    /// comments other than `# HELP`/`# TYPE` (`# UNIT`, `# EOF`), lines that
    /// are not UTF-8 or longer than [`MAX_LINE_BYTES`]. For a pprof page, the
    /// lines of its MemStats trailer that are not `# Name = value` (the stack
    /// records before it are not counted). Always 0 for expvar.
    pub skipped_lines: u64,
}

/// The expvar `memstats` value is buffered to be decoded; Go's is ~5 KB.
pub const MAX_MEMSTATS_BYTES: usize = 1 << 20;
/// A Prometheus line (or a line of the pprof page's MemStats trailer)
/// longer than this is skipped (and counted) unread.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// JSON nested deeper than this is refused (serde_json's own limit).
pub const MAX_JSON_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoParseError {
    #[error("an HTML page, not expvar JSON, Prometheus text or a pprof heap profile (is the URL right? expected /debug/vars, /metrics or /debug/pprof/heap?debug=1)")]
    Html,
    #[error("empty body")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expvar JSON without a \"memstats\" object (is expvar imported, and is this /debug/vars?)")]
    NoMemstats,
    #[error("expvar \"memstats\" is larger than {MAX_MEMSTATS_BYTES} bytes: not the Go runtime's MemStats")]
    MemstatsTooLarge,
    #[error("memstats.{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("Prometheus text without Go runtime metrics (no go_memstats_* or go_memory_classes_* series: is the Go collector registered?)")]
    NoGoMetrics,
    #[error("a pprof heap page without its '# runtime.MemStats' trailer (use /debug/pprof/heap?debug=1)")]
    PprofNoTrailer,
    #[error("a gzip'd binary pprof profile, which carries no MemStats (add ?debug=1: /debug/pprof/heap?debug=1)")]
    PprofGzip,
}

/// Go's "no memory limit": math.MaxInt64, what the runtime reports when
/// GOMEMLIMIT is unset or `off`.
pub const GO_NO_MEMORY_LIMIT: u64 = i64::MAX as u64;

/// `go_gc_gogc_percent` at or above this is GOGC=off: the runtime keeps
/// GOGC as an int32 and exports it as a uint64, so -1 reads as 2^64 − 1.
const GOGC_OFF_FROM: f64 = 2147483648.0;

/// The GOMEMLIMIT in force: the runtime's own export (a
/// `debug.SetMemoryLimit` call shows there), else the target's environment
/// (as [`GO_NO_MEMORY_LIMIT`] when unset); `None` when there is no limit.
/// The one place this rule is written.
pub fn effective_gomemlimit(exported: Option<u64>, env: Option<u64>) -> Option<u64> {
    exported.or(env).filter(|m| *m < GO_NO_MEMORY_LIMIT)
}

/// expvar `/debug/vars`, the whole body at once.
pub fn parse_expvar(body: &str) -> Result<GoSample, GoParseError> {
    let mut d = ExpvarDecoder::new();
    d.feed(body.as_bytes())?;
    d.finish()
}

/// client_golang `/metrics`, the whole body at once.
pub fn parse_prometheus(body: &str) -> Result<GoSample, GoParseError> {
    let mut d = PromDecoder::new();
    d.feed(body.as_bytes());
    d.finish()
}

/// Streaming expvar decoder: validates the JSON as it arrives (UTF-8,
/// grammar, nesting depth) while keeping only the raw text of the top-level
/// `memstats` value, decoded at the end into a typed struct. Every other key
/// is scanned past without being built, whatever its size.
#[derive(Debug)]
pub struct ExpvarDecoder {
    utf8: Utf8Check,
    scan: JsonScan,
}

impl Default for ExpvarDecoder {
    fn default() -> ExpvarDecoder {
        ExpvarDecoder::new()
    }
}

impl ExpvarDecoder {
    pub fn new() -> ExpvarDecoder {
        ExpvarDecoder {
            utf8: Utf8Check::default(),
            scan: JsonScan::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), GoParseError> {
        self.utf8.feed(chunk)?;
        self.scan.feed(chunk)
    }

    pub fn finish(self) -> Result<GoSample, GoParseError> {
        self.utf8.finish()?;
        let raw = self.scan.finish()?;
        sample_from_memstats(&raw)
    }
}

/// UTF-8 validation across chunk boundaries.
#[derive(Debug, Default)]
struct Utf8Check {
    carry: [u8; 4],
    carried: usize,
    offset: u64,
}

impl Utf8Check {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), GoParseError> {
        let start = self.offset;
        self.offset += chunk.len() as u64;
        let mut rest = chunk;
        if self.carried > 0 {
            let width = match self.carry[0] {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let need = width - self.carried;
            if rest.len() < need {
                self.carry[self.carried..self.carried + rest.len()].copy_from_slice(rest);
                self.carried += rest.len();
                return Ok(());
            }
            self.carry[self.carried..width].copy_from_slice(&rest[..need]);
            if std::str::from_utf8(&self.carry[..width]).is_err() {
                return Err(not_utf8(start - self.carried as u64));
            }
            self.carried = 0;
            rest = &rest[need..];
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &rest[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len();
                Ok(())
            }
            Err(e) => Err(not_utf8(start + (chunk.len() - rest.len() + e.valid_up_to()) as u64)),
        }
    }

    fn finish(&self) -> Result<(), GoParseError> {
        if self.carried > 0 {
            return Err(not_utf8(self.offset - self.carried as u64));
        }
        Ok(())
    }
}

fn not_utf8(at: u64) -> GoParseError {
    GoParseError::Json(format!("at byte {at}: not UTF-8"))
}

/// What the scanner expects next, outside a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrClose,
    KeyOrClose,
    Key,
    Colon,
    CommaOrClose,
    Done,
}

/// The number grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumState {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    None,
    /// Inside a string; `esc`: 0 plain, 1 after a backslash, 2..=5 while
    /// `esc - 1` hex digits of a `\u` escape remain.
    Str {
        key: bool,
        esc: u8,
    },
    Num(NumState),
    Literal {
        word: &'static [u8],
        at: usize,
    },
}

/// The longest raw top-level key that can still spell `"memstats"` (each
/// character as a `\uXXXX` escape, with the quotes).
const MAX_KEY_RAW: usize = 2 + 8 * 6;

/// A validating JSON scanner that builds nothing: a stack of open
/// containers (bounded by [`MAX_JSON_DEPTH`]), the current token's state,
/// the raw text of the current top-level key (bounded) and of the
/// `memstats` value (bounded by [`MAX_MEMSTATS_BYTES`]).
#[derive(Debug)]
struct JsonScan {
    expect: Expect,
    token: Token,
    /// Open containers, `true` for an object.
    stack: Vec<bool>,
    /// Bytes consumed before the current chunk.
    offset: u64,
    key: Vec<u8>,
    key_too_long: bool,
    /// The next value at depth 1 belongs to a `memstats` key.
    want_capture: bool,
    capture: Option<Vec<u8>>,
    /// Where in the current chunk the capture continues.
    capture_from: usize,
    memstats: Option<Vec<u8>>,
}

impl JsonScan {
    fn new() -> JsonScan {
        JsonScan {
            expect: Expect::Value,
            token: Token::None,
            stack: Vec::new(),
            offset: 0,
            key: Vec::new(),
            key_too_long: false,
            want_capture: false,
            capture: None,
            capture_from: 0,
            memstats: None,
        }
    }

    fn err(&self, i: usize, what: &str) -> GoParseError {
        GoParseError::Json(format!("at byte {}: {what}", self.offset + i as u64))
    }

    fn at_top(&self) -> bool {
        self.stack.len() == 1
    }

    fn push_key(&mut self, bytes: &[u8]) {
        if self.key_too_long {
            return;
        }
        if self.key.len() + bytes.len() > MAX_KEY_RAW {
            self.key_too_long = true;
            self.key.clear();
        } else {
            self.key.extend_from_slice(bytes);
        }
    }

    fn key_is_memstats(&self) -> bool {
        if self.key_too_long {
            return false;
        }
        self.key == b"\"memstats\""
            || (self.key.contains(&b'\\') && serde_json::from_slice::<String>(&self.key).is_ok_and(|k| k == "memstats"))
    }

    fn append_capture(&mut self, chunk: &[u8], end: usize) -> Result<(), GoParseError> {
        if let Some(buf) = &mut self.capture {
            let part = &chunk[self.capture_from..end];
            if buf.len() + part.len() > MAX_MEMSTATS_BYTES {
                return Err(GoParseError::MemstatsTooLarge);
            }
            buf.extend_from_slice(part);
            self.capture_from = end;
        }
        Ok(())
    }

    fn begin_value(&mut self, i: usize) {
        if self.want_capture && self.at_top() {
            self.want_capture = false;
            self.capture = Some(Vec::new());
            self.capture_from = i;
        }
    }

    /// A value ended just before `end` in `chunk`.
    fn value_done(&mut self, chunk: &[u8], end: usize) -> Result<(), GoParseError> {
        self.expect = if self.stack.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrClose
        };
        if self.capture.is_some() && self.at_top() {
            self.append_capture(chunk, end)?;
            self.memstats = self.capture.take();
        }
        Ok(())
    }

    fn open(&mut self, object: bool, i: usize) -> Result<(), GoParseError> {
        if self.stack.len() >= MAX_JSON_DEPTH {
            return Err(self.err(i, &format!("nested deeper than {MAX_JSON_DEPTH} levels")));
        }
        self.stack.push(object);
        self.expect = if object {
            Expect::KeyOrClose
        } else {
            Expect::ValueOrClose
        };
        Ok(())
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), GoParseError> {
        self.capture_from = 0;
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.token {
                Token::Str { key, esc: 0 } => {
                    // Plain characters up to the next quote, backslash or control character.
                    let start = i;
                    while i < chunk.len() && !matches!(chunk[i], b'"' | b'\\' | 0..=0x1f) {
                        i += 1;
                    }
                    let top_key = key && self.at_top();
                    if i == chunk.len() {
                        if top_key {
                            self.push_key(&chunk[start..]);
                        }
                        break;
                    }
                    if top_key {
                        self.push_key(&chunk[start..=i]);
                    }
                    match chunk[i] {
                        b'"' => {
                            self.token = Token::None;
                            i += 1;
                            if key {
                                self.expect = Expect::Colon;
                                if top_key {
                                    self.want_capture = self.key_is_memstats();
                                }
                            } else {
                                self.value_done(chunk, i)?;
                            }
                        }
                        b'\\' => {
                            self.token = Token::Str { key, esc: 1 };
                            i += 1;
                        }
                        _ => return Err(self.err(i, "control character inside a string")),
                    }
                }
                Token::Str { key, esc } => {
                    let next = if esc == 1 {
                        match b {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                            b'u' => 5,
                            _ => return Err(self.err(i, "invalid escape in a string")),
                        }
                    } else if b.is_ascii_hexdigit() {
                        if esc == 2 {
                            0
                        } else {
                            esc - 1
                        }
                    } else {
                        return Err(self.err(i, "invalid \\u escape in a string"));
                    };
                    if key && self.at_top() {
                        self.push_key(&[b]);
                    }
                    self.token = Token::Str { key, esc: next };
                    i += 1;
                }
                Token::Num(st) => {
                    use NumState::*;
                    let next = match (st, b) {
                        (Minus, b'0') => Some(Zero),
                        (Minus, b'1'..=b'9') | (Int, b'0'..=b'9') => Some(Int),
                        (Zero | Int, b'.') => Some(Dot),
                        (Dot | Frac, b'0'..=b'9') => Some(Frac),
                        (Zero | Int | Frac, b'e' | b'E') => Some(E),
                        (E, b'+' | b'-') => Some(ESign),
                        (E | ESign | Exp, b'0'..=b'9') => Some(Exp),
                        _ => None,
                    };
                    match next {
                        Some(n) => {
                            self.token = Token::Num(n);
                            i += 1;
                        }
                        None if matches!(st, Zero | Int | Frac | Exp) => {
                            // The number ended before this byte, which is read again.
                            self.token = Token::None;
                            self.value_done(chunk, i)?;
                        }
                        None => return Err(self.err(i, "malformed number")),
                    }
                }
                Token::Literal { word, at } => {
                    if b != word[at] {
                        return Err(self.err(i, "expected a value"));
                    }
                    i += 1;
                    if at + 1 == word.len() {
                        self.token = Token::None;
                        self.value_done(chunk, i)?;
                    } else {
                        self.token = Token::Literal { word, at: at + 1 };
                    }
                }
                Token::None => {
                    if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                        i += 1;
                        continue;
                    }
                    match self.expect {
                        Expect::Value | Expect::ValueOrClose => {
                            if b == b']' && self.expect == Expect::ValueOrClose {
                                self.stack.pop();
                                i += 1;
                                self.value_done(chunk, i)?;
                                continue;
                            }
                            self.begin_value(i);
                            match b {
                                b'{' => self.open(true, i)?,
                                b'[' => self.open(false, i)?,
                                b'"' => self.token = Token::Str { key: false, esc: 0 },
                                b'-' => self.token = Token::Num(NumState::Minus),
                                b'0' => self.token = Token::Num(NumState::Zero),
                                b'1'..=b'9' => self.token = Token::Num(NumState::Int),
                                b't' => self.token = Token::Literal { word: b"true", at: 1 },
                                b'f' => self.token = Token::Literal { word: b"false", at: 1 },
                                b'n' => self.token = Token::Literal { word: b"null", at: 1 },
                                _ => return Err(self.err(i, "expected a value")),
                            }
                            i += 1;
                        }
                        Expect::KeyOrClose | Expect::Key => {
                            if b == b'}' && self.expect == Expect::KeyOrClose {
                                self.stack.pop();
                                i += 1;
                                self.value_done(chunk, i)?;
                                continue;
                            }
                            if b != b'"' {
                                return Err(self.err(i, "expected a string key"));
                            }
                            if self.at_top() {
                                self.key.clear();
                                self.key_too_long = false;
                                self.push_key(b"\"");
                            }
                            self.token = Token::Str { key: true, esc: 0 };
                            i += 1;
                        }
                        Expect::Colon => {
                            if b != b':' {
                                return Err(self.err(i, "expected ':' after a key"));
                            }
                            self.expect = Expect::Value;
                            i += 1;
                        }
                        Expect::CommaOrClose => {
                            let object = self.stack.last().copied().unwrap_or(false);
                            i += 1;
                            match b {
                                b',' if object => self.expect = Expect::Key,
                                b',' => self.expect = Expect::Value,
                                b'}' if object => {
                                    self.stack.pop();
                                    self.value_done(chunk, i)?;
                                }
                                b']' if !object => {
                                    self.stack.pop();
                                    self.value_done(chunk, i)?;
                                }
                                _ => return Err(self.err(i - 1, "expected ',' or the end of the object or array")),
                            }
                        }
                        Expect::Done => return Err(self.err(i, "text after the end of the JSON object")),
                    }
                }
            }
        }
        self.append_capture(chunk, chunk.len())?;
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// The raw `memstats` value, once the whole document was read.
    fn finish(mut self) -> Result<Vec<u8>, GoParseError> {
        // A number ends where the body does, when it is the whole document.
        if let Token::Num(NumState::Zero | NumState::Int | NumState::Frac | NumState::Exp) = self.token {
            if self.stack.is_empty() {
                self.token = Token::None;
                self.expect = Expect::Done;
            }
        }
        if self.expect != Expect::Done || self.token != Token::None {
            return Err(GoParseError::Json(format!(
                "at byte {}: the body ends inside the JSON object (truncated)",
                self.offset
            )));
        }
        self.memstats.ok_or(GoParseError::NoMemstats)
    }
}

/// The MemStats fields headroom reads, in the order they are checked.
pub(crate) const MEMSTATS_FIELDS: [&str; 12] = [
    "HeapAlloc",
    "HeapInuse",
    "HeapIdle",
    "HeapReleased",
    "HeapSys",
    "Sys",
    "NextGC",
    "StackInuse",
    "NumGC",
    "TotalAlloc",
    "PauseTotalNs",
    "LastGC",
];

/// One MemStats field as found: absent or null, a count, or why it is not one.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Count {
    #[default]
    Absent,
    Value(u64),
    Bad(String),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count::Absent)
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count::Absent)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count::Value(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(match u64::try_from(v) {
                    Ok(u) => Count::Value(u),
                    Err(_) => Count::Bad(format!("{v} is not a non-negative integer")),
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                // Printed as serde_json prints a float.
                let shown = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
                Ok(Count::Bad(format!("{shown} is not a non-negative integer")))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Bad("expected a number, found a boolean".into()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count::Bad("expected a number, found a string".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count::Bad("expected a number, found an array".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count::Bad("expected a number, found an object".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `memstats` value: the fields used, typed; every other key skipped
/// unbuilt. A later duplicate key wins, as in a JSON object. `None` when
/// the value is not an object.
#[derive(Debug, Default)]
struct Memstats(Option<([Count; MEMSTATS_FIELDS.len()], Option<f64>)>);

/// MemStats.GCCPUFraction: a number from 0 to 1 (Go prints 0 as `0`);
/// anything else is taken as absent, never as a failed scrape.
struct Fraction(Option<f64>);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fraction, D::Error> {
        struct V;
        fn fraction(f: f64) -> Fraction {
            Fraction(Some(f).filter(|f| (0.0..=1.0).contains(f)))
        }
        impl<'de> Visitor<'de> for V {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number from 0 to 1")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Fraction, E> {
                Ok(fraction(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Fraction, E> {
                Ok(fraction(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Fraction, E> {
                Ok(fraction(v))
            }
            fn visit_unit<E>(self) -> Result<Fraction, E> {
                Ok(Fraction(None))
            }
            fn visit_none<E>(self) -> Result<Fraction, E> {
                Ok(Fraction(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Fraction, E> {
                Ok(Fraction(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Fraction, E> {
                Ok(Fraction(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fraction, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Fraction(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fraction, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Fraction(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Memstats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Memstats, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Memstats;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the MemStats object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Memstats, A::Error> {
                let mut fields: [Count; MEMSTATS_FIELDS.len()] = Default::default();
                let mut gc_cpu = None;
                while let Some(key) = map.next_key::<String>()? {
                    match MEMSTATS_FIELDS.iter().position(|f| *f == key) {
                        Some(i) => fields[i] = map.next_value()?,
                        None if key == "GCCPUFraction" => gc_cpu = map.next_value::<Fraction>()?.0,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Memstats(Some((fields, gc_cpu))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Memstats, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Memstats(None))
            }
            fn visit_unit<E>(self) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Memstats, E> {
                Ok(Memstats(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn sample_from_memstats(raw: &[u8]) -> Result<GoSample, GoParseError> {
    let Memstats(Some((fields, gc_cpu_fraction))) =
        serde_json::from_slice::<Memstats>(raw).map_err(|e| GoParseError::Json(format!("memstats: {e}")))?
    else {
        return Err(GoParseError::NoMemstats);
    };
    Ok(GoSample {
        gc_cpu_fraction,
        ..memstats_sample(GoFormat::Expvar, &fields, 0, "")?
    })
}

/// A [`GoSample`] from the MemStats fields, found in the order of
/// [`MEMSTATS_FIELDS`], as the expvar and the pprof pages both give them.
/// HeapAlloc and HeapInuse are required; `where_` says where they were
/// missing from.
pub(crate) fn memstats_sample(
    format: GoFormat,
    fields: &[Count; MEMSTATS_FIELDS.len()],
    skipped_lines: u64,
    where_: &str,
) -> Result<GoSample, GoParseError> {
    let field = |name: &str| -> Result<Option<u64>, GoParseError> {
        let i = MEMSTATS_FIELDS.iter().position(|f| *f == name).unwrap_or(0);
        match &fields[i] {
            Count::Absent => Ok(None),
            Count::Value(v) => Ok(Some(*v)),
            Count::Bad(reason) => Err(GoParseError::Field {
                field: name.into(),
                reason: reason.clone(),
            }),
        }
    };
    let s = GoSample {
        format: Some(format),
        heap_alloc: field("HeapAlloc")?,
        heap_inuse: field("HeapInuse")?,
        heap_idle: field("HeapIdle")?,
        heap_released: field("HeapReleased")?,
        heap_sys: field("HeapSys")?,
        sys: field("Sys")?,
        next_gc: field("NextGC")?,
        stack_inuse: field("StackInuse")?,
        num_gc: field("NumGC")?,
        total_alloc: field("TotalAlloc")?,
        pause_total_ns: field("PauseTotalNs")?,
        last_gc_ns: field("LastGC")?,
        skipped_lines,
        ..GoSample::default()
    };
    if s.heap_alloc.is_none() || s.heap_inuse.is_none() {
        return Err(GoParseError::Field {
            field: "HeapAlloc/HeapInuse".into(),
            reason: format!("missing{where_}"),
        });
    }
    Ok(s)
}

// ------------------------------------------------------------ lines

/// One line of a streamed text body, or a line longer than the cap, which
/// is passed over without being kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Text(&'a [u8]),
    TooLong,
}

/// Splits a body that arrives in chunks into lines, with bounded memory:
/// the start of a line is kept until its end arrives only while it is at
/// most the cap long; a longer line is dropped as it streams and reported
/// as [`Line::TooLong`]. The Prometheus and the pprof decoders read through
/// it.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current line passed the cap: the rest of it is dropped.
    overlong: bool,
}

impl Lines {
    /// Calls `each` with every line `chunk` completes. `cap` is the longest
    /// line kept for the first; `each` returns the cap for the lines after
    /// it (a decoder may allow longer lines in one part of a page).
    pub(crate) fn feed(&mut self, chunk: &[u8], mut cap: usize, mut each: impl FnMut(Line<'_>) -> usize) {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..nl];
            rest = &rest[nl + 1..];
            if self.partial.is_empty() && !self.overlong {
                cap = each(if line.len() > cap {
                    Line::TooLong
                } else {
                    Line::Text(line)
                });
            } else {
                self.append(line, cap);
                if std::mem::take(&mut self.overlong) {
                    cap = each(Line::TooLong);
                } else {
                    let buf = std::mem::take(&mut self.partial);
                    cap = each(Line::Text(&buf));
                    self.partial = buf;
                    self.partial.clear();
                }
            }
        }
        self.append(rest, cap);
    }

    fn append(&mut self, bytes: &[u8], cap: usize) {
        if self.overlong {
            return;
        }
        if self.partial.len() + bytes.len() > cap {
            self.overlong = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The end of the body: a last line that had no newline, if any.
    pub(crate) fn finish(mut self, each: impl FnOnce(Line<'_>)) {
        if self.overlong {
            each(Line::TooLong);
        } else if !self.partial.is_empty() {
            each(Line::Text(&std::mem::take(&mut self.partial)));
        }
    }

    /// Bytes held for an unfinished line (for the tests of bounded memory).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.partial.capacity()
    }
}

// ------------------------------------------------------------ Prometheus

/// One sample line of the text exposition format: `name{labels} value [ts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample<'a> {
    pub name: &'a str,
    /// The raw label set between the braces, if any.
    pub labels: Option<&'a str>,
    pub value: f64,
}

/// Parses one non-comment line of the text format.
pub fn parse_prom_line(line: &str) -> Result<PromSample<'_>, String> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    let valid_name = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
    if !valid_name {
        return Err(format!(
            "{:?} is not a metric name",
            name.chars().take(40).collect::<String>()
        ));
    }
    let mut rest = &line[name_end..];
    let mut labels = None;
    if let Some(r) = rest.strip_prefix('{') {
        // Label values may contain '}' inside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in r.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label set")?;
        labels = Some(&r[..end]);
        rest = &r[end + 1..];
    }
    let mut parts = rest.split_ascii_whitespace();
    let v = parts.next().ok_or("no value")?;
    let value = match v {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse::<f64>()
            .map_err(|_| format!("{:?} is not a number", other.chars().take(40).collect::<String>()))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("{ts:?} is not a timestamp"))?;
    }
    if parts.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(PromSample { name, labels, value })
}

/// A byte count from a float sample: finite, non-negative, below 2^64.
fn bytes_of(v: f64) -> Option<u64> {
    (v.is_finite() && (0.0..1.8446744073709552e19).contains(&v)).then_some(v as u64)
}

/// The unlabelled series headroom reads; every other series is passed over.
const PROM_SERIES: [&str; 26] = [
    "go_memstats_heap_alloc_bytes",
    "go_memstats_heap_inuse_bytes",
    "go_memstats_heap_idle_bytes",
    "go_memstats_heap_released_bytes",
    "go_memstats_heap_sys_bytes",
    "go_memstats_sys_bytes",
    "go_memstats_next_gc_bytes",
    "go_memstats_stack_inuse_bytes",
    "go_memstats_alloc_bytes_total",
    "go_memstats_last_gc_time_seconds",
    "go_memory_classes_heap_objects_bytes",
    "go_memory_classes_heap_unused_bytes",
    "go_memory_classes_heap_free_bytes",
    "go_memory_classes_heap_released_bytes",
    "go_memory_classes_total_bytes",
    "go_gc_heap_live_bytes",
    "go_gc_heap_goal_bytes",
    "go_gc_gomemlimit_bytes",
    "go_gc_gogc_percent",
    "go_gc_cycles_total_gc_cycles_total",
    "go_gc_duration_seconds_count",
    "go_gc_heap_allocs_bytes_total",
    "go_goroutines",
    "go_cpu_classes_gc_total_cpu_seconds_total",
    "go_cpu_classes_total_cpu_seconds_total",
    "process_start_time_seconds",
];

/// Streaming client_golang `/metrics` decoder: lines are split as chunks
/// arrive (a line may span chunks; one longer than [`MAX_LINE_BYTES`] is
/// skipped), each parsed on its own. Accepts the older `go_memstats_*` set
/// and the runtime/metrics names (`go_gc_heap_live_bytes`,
/// `go_gc_heap_goal_bytes`, `go_gc_gomemlimit_bytes`, `go_gc_gogc_percent`,
/// `go_memory_classes_*`). Unlabelled series only (plus `go_info{version}`).
/// A line that cannot be parsed (a newer syntax, a foreign extension) is
/// skipped and counted in [`GoSample::skipped_lines`], never fatal; a page
/// without the Go runtime's series is an error.
#[derive(Debug, Default)]
pub struct PromDecoder {
    lines: Lines,
    values: [Option<f64>; PROM_SERIES.len()],
    version: Option<String>,
    /// Any unlabelled `go_memstats_*` or `go_memory_classes_*` series seen.
    any_go: bool,
    skipped: u64,
}

impl PromDecoder {
    pub fn new() -> PromDecoder {
        PromDecoder::default()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(chunk, MAX_LINE_BYTES, |line| {
            self.raw_line(line);
            MAX_LINE_BYTES
        });
        self.lines = lines;
    }

    fn raw_line(&mut self, line: Line<'_>) {
        match line {
            Line::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(l) => self.line(l),
                Err(_) => self.skipped += 1,
            },
            Line::TooLong => self.skipped += 1,
        }
    }

    fn line(&mut self, line: &str) {
        let l = line.trim();
        if l.is_empty() {
            return;
        }
        if let Some(comment) = l.strip_prefix('#') {
            let c = comment.trim_start();
            if !(c.starts_with("HELP ") || c.starts_with("TYPE ")) {
                self.skipped += 1;
            }
            return;
        }
        let Ok(s) = parse_prom_line(l) else {
            self.skipped += 1;
            return;
        };
        if s.name == "go_info" {
            self.version = s.labels.and_then(|ls| {
                let v = ls.split("version=\"").nth(1)?;
                Some(v.split('"').next()?.to_owned())
            });
        } else if s.labels.is_none() && (s.name.starts_with("go_") || s.name == "process_start_time_seconds") {
            if s.name.starts_with("go_memstats_") || s.name.starts_with("go_memory_classes_") {
                self.any_go = true;
            }
            if let Some(i) = PROM_SERIES.iter().position(|n| *n == s.name) {
                self.values[i] = Some(s.value);
            }
        }
    }

    pub fn finish(mut self) -> Result<GoSample, GoParseError> {
        std::mem::take(&mut self.lines).finish(|line| self.raw_line(line));
        if !self.any_go {
            return Err(GoParseError::NoGoMetrics);
        }
        let version = self.version.take();
        let raw = |k: &str| PROM_SERIES.iter().position(|n| *n == k).and_then(|i| self.values[i]);
        let b = |k: &str| raw(k).and_then(bytes_of);
        let sum = |ks: &[&str]| -> Option<u64> { ks.iter().map(|k| b(k)).sum() };
        let seconds = |k: &str| raw(k).filter(|v| v.is_finite() && *v >= 0.0);
        // Older names first; the runtime/metrics classes where the older are absent
        // (client_golang ≥ 1.12 with only the new collector).
        let heap_released = b("go_memstats_heap_released_bytes").or_else(|| b("go_memory_classes_heap_released_bytes"));
        let heap_alloc = b("go_memstats_heap_alloc_bytes").or_else(|| b("go_memory_classes_heap_objects_bytes"));
        let heap_inuse = b("go_memstats_heap_inuse_bytes").or_else(|| {
            sum(&[
                "go_memory_classes_heap_objects_bytes",
                "go_memory_classes_heap_unused_bytes",
            ])
        });
        let heap_idle = b("go_memstats_heap_idle_bytes").or_else(|| {
            sum(&[
                "go_memory_classes_heap_free_bytes",
                "go_memory_classes_heap_released_bytes",
            ])
        });
        // The runtime exports GOGC as a uint64: off (-1) reads as 2^64 − 1.
        let gogc = raw("go_gc_gogc_percent").filter(|v| v.is_finite()).map(|v| {
            if !(0.0..GOGC_OFF_FROM).contains(&v) {
                -1
            } else {
                v as i64
            }
        });
        let s = GoSample {
            format: Some(GoFormat::Prometheus),
            heap_alloc,
            heap_inuse,
            heap_idle,
            heap_released,
            heap_sys: b("go_memstats_heap_sys_bytes"),
            sys: b("go_memstats_sys_bytes").or_else(|| b("go_memory_classes_total_bytes")),
            next_gc: b("go_memstats_next_gc_bytes").or_else(|| b("go_gc_heap_goal_bytes")),
            stack_inuse: b("go_memstats_stack_inuse_bytes"),
            num_gc: raw("go_gc_cycles_total_gc_cycles_total")
                .or_else(|| raw("go_gc_duration_seconds_count"))
                .and_then(bytes_of),
            total_alloc: b("go_memstats_alloc_bytes_total").or_else(|| b("go_gc_heap_allocs_bytes_total")),
            pause_total_ns: None,
            last_gc_ns: raw("go_memstats_last_gc_time_seconds")
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|s| (s * 1e9) as u64),
            heap_live: b("go_gc_heap_live_bytes"),
            heap_goal: b("go_gc_heap_goal_bytes"),
            goroutines: raw("go_goroutines").and_then(bytes_of),
            gomemlimit: b("go_gc_gomemlimit_bytes"),
            gogc_percent: gogc,
            gc_cpu_fraction: None,
            gc_cpu_seconds: seconds("go_cpu_classes_gc_total_cpu_seconds_total"),
            total_cpu_seconds: seconds("go_cpu_classes_total_cpu_seconds_total"),
            process_start_s: seconds("process_start_time_seconds"),
            go_version: version,
            skipped_lines: self.skipped,
        };
        if s.heap_alloc.is_none() || s.heap_inuse.is_none() {
            return Err(GoParseError::NoGoMetrics);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::go_body::{parse_go_body, GoBodyDecoder};

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/go/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Decodes `body` fed in chunks of `size` bytes.
    fn chunked(body: &[u8], size: usize) -> Result<GoSample, GoParseError> {
        let mut d = GoBodyDecoder::new();
        for c in body.chunks(size.max(1)) {
            d.feed(c)?;
        }
        d.finish()
    }

    /// Every chunking gives the whole-body answer.
    fn same_in_chunks(body: &str) -> Result<GoSample, GoParseError> {
        let whole = parse_go_body(body);
        for size in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(chunked(body.as_bytes(), size), whole, "chunks of {size}: {body:?}");
        }
        whole
    }

    #[test]
    fn real_expvar_body() {
        let s = same_in_chunks(&fixture("expvar-go1.19.json")).unwrap();
        assert_eq!(s.format, Some(GoFormat::Expvar));
        assert_eq!(s.heap_alloc, Some(21320936));
        assert_eq!(s.heap_inuse, Some(22151168));
        assert_eq!(s.heap_idle, Some(2752512));
        assert_eq!(s.heap_released, Some(2621440));
        assert_eq!(s.next_gc, Some(30131176));
        assert_eq!(s.sys, Some(35763464));
        assert_eq!(s.heap_live, None);
        assert_eq!(s.skipped_lines, 0);
        assert!(s.num_gc.is_some() && s.total_alloc.is_some());
        assert_eq!(s.gc_cpu_fraction, Some(0.05575025168658496));
    }

    #[test]
    fn gc_cpu_fraction_from_expvar() {
        let body =
            |v: &str| format!("{{\"memstats\": {{\"HeapAlloc\": 5, \"HeapInuse\": 6, \"GCCPUFraction\": {v}}}}}");
        for (v, want) in [
            ("0", Some(0.0)),
            ("1.2e-05", Some(1.2e-5)),
            ("0.5", Some(0.5)),
            ("-0.1", None),
            ("2", None),
            ("\"x\"", None),
            ("null", None),
            ("[0.5]", None),
            ("{\"a\": 0.5}", None),
        ] {
            let s = same_in_chunks(&body(v)).unwrap();
            assert_eq!(s.gc_cpu_fraction, want, "{v}");
        }
    }

    #[test]
    fn real_client_golang_body() {
        let s = same_in_chunks(&fixture("client_golang-1.14-go1.19.prom")).unwrap();
        assert_eq!(s.format, Some(GoFormat::Prometheus));
        assert_eq!(s.heap_alloc, Some(21345512));
        assert_eq!(s.heap_inuse, Some(22290432));
        assert_eq!(s.heap_released, Some(2514944));
        assert_eq!(s.next_gc, Some(30131176));
        assert_eq!(s.goroutines, Some(10));
        assert_eq!(s.go_version.as_deref(), Some("go1.19.8"));
        assert_eq!(s.heap_live, None, "Go 1.19 has no /gc/heap/live");
        assert_eq!(s.skipped_lines, 0);
        assert_eq!(s.process_start_s, Some(1.79568849672e9));
        assert_eq!((s.gc_cpu_seconds, s.total_cpu_seconds), (None, None));
        let cpu = "go_cpu_classes_gc_total_cpu_seconds_total 1.5\ngo_cpu_classes_total_cpu_seconds_total 12\n";
        let s = same_in_chunks(&(fixture("client_golang-1.14-go1.19.prom") + cpu)).unwrap();
        assert_eq!((s.gc_cpu_seconds, s.total_cpu_seconds), (Some(1.5), Some(12.0)));
    }

    #[test]
    fn gogc_off_as_the_runtime_exports_it() {
        let body = fixture("client_golang-runtime-metrics-go1.22.prom");
        let line = body
            .lines()
            .find(|l| l.starts_with("go_gc_gogc_percent "))
            .expect("the fixture exports GOGC");
        for (value, want) in [
            ("1.8446744073709552e+19", -1),
            ("-1", -1),
            ("100", 100),
            ("2.147483647e+09", 2147483647),
        ] {
            let off = body.replace(line, &format!("go_gc_gogc_percent {value}"));
            assert_eq!(same_in_chunks(&off).unwrap().gogc_percent, Some(want), "{value}");
        }
    }

    #[test]
    fn newer_names_only() {
        // runtime/metrics names as client_golang >= 1.17 exports them on Go >= 1.21.
        let body = fixture("client_golang-runtime-metrics-go1.22.prom");
        let s = same_in_chunks(&body).unwrap();
        assert_eq!(s.heap_live, Some(18874368));
        assert_eq!(s.gomemlimit, Some(402653184));
        assert_eq!(s.gogc_percent, Some(100));
        assert_eq!(s.heap_alloc, Some(20971520));
        assert_eq!(s.heap_inuse, Some(20971520 + 1048576));
        assert_eq!(s.heap_idle, Some(4194304 + 8388608));
        assert_eq!(s.heap_released, Some(8388608));
        assert_eq!(s.next_gc, Some(37748736));
        assert_eq!(s.num_gc, Some(42));
    }

    #[test]
    fn hostile_bodies() {
        let cases: &[(&str, &str)] = &[
            ("", "empty body"),
            ("   \n", "empty body"),
            ("\u{feff}\u{feff} \n", "empty body"),
            ("<html><body>502 Bad Gateway</body></html>", "HTML page"),
            ("\u{feff}\n  <!DOCTYPE html>", "HTML page"),
            ("{\"memstats\": {\"HeapAlloc\": 5", "invalid JSON"),
            ("{\"memstats\": {\"HeapAlloc\": 5, \"HeapInuse\": 6}", "truncated"),
            ("{\"memstats\": {\"HeapAlloc\": 5, \"HeapInuse\": 6}}}", "after the end"),
            (
                "{\"memstats\": {\"HeapAlloc\": 5, \"HeapInuse\": 6}} x",
                "after the end",
            ),
            ("{\"cmdline\": []}", "without a \"memstats\""),
            ("{}", "without a \"memstats\""),
            (
                "{\"a\": {\"memstats\": {\"HeapAlloc\": 1, \"HeapInuse\": 1}}}",
                "without a \"memstats\"",
            ),
            ("{\"memstats\": [1, 2]}", "without a \"memstats\""),
            ("{\"memstats\": null}", "without a \"memstats\""),
            (
                "{\"memstats\": {\"HeapAlloc\": \"lots\", \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: expected a number, found a string",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": {\"x\": [1]}, \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: expected a number, found an object",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": true, \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: expected a number, found a boolean",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": -1, \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: -1 is not a non-negative integer",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": 1.5e300, \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: 1.5e+300 is not a non-negative integer",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": 18446744073709551616, \"HeapInuse\": 1}}",
                "not a non-negative integer",
            ),
            ("{\"memstats\": {\"HeapAlloc\": NaN}}", "invalid JSON"),
            ("{\"memstats\": {\"HeapAlloc\": 01, \"HeapInuse\": 1}}", "invalid JSON"),
            (
                "{\"memstats\": {\"HeapAlloc\": 1., \"HeapInuse\": 1}}",
                "malformed number",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": 1, \"HeapInuse\": 1,}}",
                "expected a string key",
            ),
            ("{\"a\": \"tab\there\", \"memstats\": {}}", "control character"),
            ("{\"a\": \"\\x\", \"memstats\": {}}", "invalid escape"),
            ("{\"a\": \"\\u12g4\"}", "invalid \\u escape"),
            ("{\"a\": tru}", "expected a value"),
            ("{\"a\" 1}", "expected ':'"),
            ("{\"memstats\": {}}", "HeapAlloc/HeapInuse: missing"),
            ("http_requests_total 5\n", "without Go runtime metrics"),
            ("go_memstats_heap_alloc_bytes\n", "without Go runtime metrics"),
            ("9bad 1\n", "without Go runtime metrics"),
            // Starts like the pprof header, and is not it.
            ("h", "without Go runtime metrics"),
            ("heap profile", "without Go runtime metrics"),
            ("heap_profile: 1\n", "without Go runtime metrics"),
            (
                "heap profile:",
                "without its '# runtime.MemStats' trailer (use /debug/pprof/heap?debug=1)",
            ),
            (
                "heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1\n",
                "without its '# runtime.MemStats' trailer",
            ),
            ("\u{1f}", "without Go runtime metrics"),
        ];
        for (body, want) in cases {
            let e = same_in_chunks(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn binary_pprof_is_refused_with_a_hint() {
        // `/debug/pprof/heap` without ?debug=1: gzip'd protobuf.
        let body = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xff, 0xe2, 0x0a];
        for at in 0..=body.len() {
            let mut d = GoBodyDecoder::new();
            let r = d.feed(&body[..at]).and_then(|()| d.feed(&body[at..]));
            let e = r.and_then(|()| d.finish()).unwrap_err();
            assert_eq!(e, GoParseError::PprofGzip, "split at {at}");
            assert!(e.to_string().contains("?debug=1"), "{e}");
        }
        // The magic's first byte alone is Prometheus text, as before.
        let e = chunked(b"\x1f\x8c go_memstats_heap_alloc_bytes 1\n", 1).unwrap_err();
        assert_eq!(e, GoParseError::NoGoMetrics);
    }

    #[test]
    fn prometheus_names_starting_with_h_are_not_held_back() {
        // A page whose first series starts with 'h' streams as before.
        let body = "heap_profile_count 3\nhttp_requests_total 5\ngo_memstats_heap_alloc_bytes 10\n\
                    go_memstats_heap_inuse_bytes 20\n";
        let s = same_in_chunks(body).unwrap();
        assert_eq!(s.format, Some(GoFormat::Prometheus));
        assert_eq!((s.heap_alloc, s.heap_inuse), (Some(10), Some(20)));
        for at in 0..body.len() {
            let mut d = GoBodyDecoder::new();
            d.feed(&body.as_bytes()[..at]).unwrap();
            d.feed(&body.as_bytes()[at..]).unwrap();
            assert_eq!(d.finish().unwrap(), s, "split at {at}");
        }
    }

    #[test]
    fn expvar_keeps_only_memstats_and_skips_the_rest() {
        // A huge, deeply nested, escape-laden neighbour is validated and skipped.
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let big = "x".repeat(200_000);
        let body = format!(
            "{{\"cmdline\":[\"/app\",\"-v\"],\"big\":\"{big}\",\"deep\":{nested},\
             \"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9 é 😀\",\"n\":[-0,1.5e-3,2E+2,0.0,true,false,null],\
             \"memstats\":{{\"HeapAlloc\":10,\"BySize\":[{{\"Size\":8}}],\"PauseNs\":[1,2],\"HeapInuse\":20,\
             \"HeapIdle\":null,\"Sys\":30}}}}"
        );
        let s = same_in_chunks(&body).unwrap();
        assert_eq!(
            (s.heap_alloc, s.heap_inuse, s.heap_idle, s.sys),
            (Some(10), Some(20), None, Some(30))
        );
    }

    #[test]
    fn expvar_depth_and_size_bounds() {
        let deep = |n: usize| format!("{{\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
        // The top-level object counts as one level.
        let e = parse_go_body(&deep(MAX_JSON_DEPTH)).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 128"), "{e}");
        assert_eq!(
            parse_go_body(&deep(MAX_JSON_DEPTH - 1)).unwrap_err(),
            GoParseError::NoMemstats
        );
        let huge = format!(
            "{{\"memstats\":{{\"HeapAlloc\":1,\"HeapInuse\":1,\"pad\":\"{}\"}}}}",
            "y".repeat(MAX_MEMSTATS_BYTES)
        );
        assert_eq!(
            chunked(huge.as_bytes(), 4096).unwrap_err(),
            GoParseError::MemstatsTooLarge
        );
        assert_eq!(parse_go_body(&huge).unwrap_err(), GoParseError::MemstatsTooLarge);
    }

    #[test]
    fn expvar_key_matching() {
        // Escaped spelling of the key is the same key; the last duplicate wins.
        let s = same_in_chunks("{\"mem\\u0073tats\":{\"HeapAlloc\":1,\"HeapInuse\":2}}").unwrap();
        assert_eq!(s.heap_inuse, Some(2));
        let s = same_in_chunks(
            "{\"memstats\":{\"HeapAlloc\":1,\"HeapInuse\":2},\"memstats\":{\"HeapAlloc\":3,\"HeapInuse\":4}}",
        )
        .unwrap();
        assert_eq!(s.heap_alloc, Some(3));
        let e = same_in_chunks("{\"memstats\":{\"HeapAlloc\":1,\"HeapInuse\":2},\"memstats\":7}").unwrap_err();
        assert_eq!(e, GoParseError::NoMemstats);
        // Duplicate fields inside memstats: the last one, as in a JSON object.
        let s = same_in_chunks("{\"memstats\":{\"HeapAlloc\":\"x\",\"HeapAlloc\":5,\"HeapInuse\":6}}").unwrap();
        assert_eq!(s.heap_alloc, Some(5));
        // A long key is not memstats, and is not kept.
        let long_key = format!(
            "{{\"{}memstats\":{{\"HeapAlloc\":1,\"HeapInuse\":2}}}}",
            "k".repeat(100)
        );
        assert_eq!(parse_go_body(&long_key).unwrap_err(), GoParseError::NoMemstats);
        // memstats as a value, not a key.
        let e = parse_go_body("{\"k\":\"memstats\",\"v\":{\"HeapAlloc\":1,\"HeapInuse\":2}}").unwrap_err();
        assert_eq!(e, GoParseError::NoMemstats);
    }

    #[test]
    fn expvar_decoder_on_documents_that_are_not_objects() {
        // Found by fuzzing: a bare number ends with the body (it was taken
        // for a truncated document). Like any non-object, it has no memstats.
        for body in ["2", "-0.5e3", " 0 ", "[1,{}]", "\"memstats\"", "null", "true"] {
            assert_eq!(parse_expvar(body).unwrap_err(), GoParseError::NoMemstats, "{body:?}");
            let mut d = ExpvarDecoder::new();
            for b in body.as_bytes() {
                d.feed(std::slice::from_ref(b)).unwrap();
            }
            assert_eq!(
                d.finish().unwrap_err(),
                GoParseError::NoMemstats,
                "{body:?} byte by byte"
            );
        }
        for body in ["-", "1.", "1e", "[1", "tru"] {
            let e = parse_expvar(body).unwrap_err().to_string();
            assert!(e.contains("invalid JSON"), "{body:?}: {e}");
        }
    }

    #[test]
    fn expvar_utf8_across_chunks() {
        let body = "{\"name\":\"é漢😀\",\"memstats\":{\"HeapAlloc\":1,\"HeapInuse\":2}}";
        same_in_chunks(body).unwrap();
        let mut bad = body.as_bytes().to_vec();
        bad[10] = 0xff;
        for size in [1, 2, 3, 5, 100] {
            let e = chunked(&bad, size).unwrap_err().to_string();
            assert!(e.contains("at byte 9: not UTF-8"), "{size}: {e}");
        }
        // A character cut off by the end of the body.
        let e = chunked(&body.as_bytes()[..12], 1).unwrap_err().to_string();
        assert!(e.contains("not UTF-8") || e.contains("truncated"), "{e}");
    }

    #[test]
    fn prometheus_skips_and_counts_what_it_does_not_understand() {
        let body = "# HELP go_memstats_heap_alloc_bytes Bytes.\n\
             # TYPE go_memstats_heap_alloc_bytes gauge\n\
             go_memstats_heap_alloc_bytes 10\n\
             {\"my.metric\", a=\"b\"} 1\n\
             {\"go_memstats_heap_inuse_bytes\"} 999\n\
             # UNIT go_memstats_heap_alloc_bytes bytes\n\
             http_requests_total{code=\"200\"} 5 # {trace_id=\"abc\"} 1 1700000000\n\
             go_memstats_heap_inuse_bytes 20\n\
             go_gc_duration_seconds{quantile=\"0.5\"} 1e-05\n\
             rpc_latency {count:3,sum:1.5,buckets:[1,2]}\n\
             go_memstats_heap_idle_bytes abc\n\
             9bad 1\n\
             go_memstats_sys_bytes 1 2 3\n\
             \n\
             # EOF\n";
        let s = same_in_chunks(body).unwrap();
        assert_eq!((s.heap_alloc, s.heap_inuse, s.heap_idle), (Some(10), Some(20), None));
        assert_eq!(s.sys, None);
        // Two quoted names, the UNIT comment, the exemplar, the native
        // histogram, "abc", "9bad", the extra fields, EOF.
        assert_eq!(s.skipped_lines, 9);
    }

    #[test]
    fn prometheus_lines_are_bounded() {
        let long = format!("x{{a=\"{}\"}} 1\n", "v".repeat(MAX_LINE_BYTES));
        let body = format!("go_memstats_heap_alloc_bytes 1\n{long}go_memstats_heap_inuse_bytes 2\n");
        let mut bytes = body.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe 3\n");
        // A line that is not UTF-8.
        bytes.extend_from_slice(b"go_memstats_sys_bytes \xff\n");
        // The last line without a newline.
        bytes.extend_from_slice(b"go_goroutines 7");
        let want = {
            let mut d = PromDecoder::new();
            d.feed(&bytes);
            d.finish().unwrap()
        };
        assert_eq!(
            (want.heap_alloc, want.heap_inuse, want.goroutines),
            (Some(1), Some(2), Some(7))
        );
        // The long line and the two that are not UTF-8.
        assert_eq!(want.skipped_lines, 3, "{want:?}");
        for size in [1, 100, 4096, MAX_LINE_BYTES + 1] {
            let mut d = PromDecoder::new();
            for c in bytes.chunks(size) {
                d.feed(c);
            }
            assert_eq!(d.finish().unwrap(), want, "chunks of {size}");
        }
        // The overlong line is not kept while it streams in.
        let mut d = PromDecoder::new();
        for _ in 0..100 {
            d.feed(&[b'x'; 4096]);
        }
        assert!(d.lines.held() <= MAX_LINE_BYTES, "{}", d.lines.held());
        d.feed(b"\ngo_memstats_heap_alloc_bytes 1\ngo_memstats_heap_inuse_bytes 1\n");
        assert_eq!(d.finish().unwrap().skipped_lines, 1);
    }

    #[test]
    fn nan_and_inf_samples_are_not_bytes() {
        let body =
            "go_memstats_heap_alloc_bytes NaN\ngo_memstats_heap_inuse_bytes +Inf\ngo_memstats_heap_idle_bytes 5\n";
        // NaN/Inf values are parsed but are not byte counts: the sample lacks them.
        assert_eq!(parse_go_body(body).unwrap_err(), GoParseError::NoGoMetrics);
        let body = "go_memstats_heap_alloc_bytes 10\ngo_memstats_heap_inuse_bytes 20 1700000000000\ngo_memstats_sys_bytes -Inf\n";
        let s = same_in_chunks(body).unwrap();
        assert_eq!((s.heap_alloc, s.heap_inuse, s.sys), (Some(10), Some(20), None));
    }

    #[test]
    fn prom_lines() {
        let s = parse_prom_line("a_b{x=\"}\",y=\"q\\\"\"} 1.5e3").unwrap();
        assert_eq!(
            (s.name, s.labels, s.value),
            ("a_b", Some("x=\"}\",y=\"q\\\"\""), 1500.0)
        );
        assert!(parse_prom_line("x NaN").unwrap().value.is_nan());
        assert_eq!(parse_prom_line("x -Inf").unwrap().value, f64::NEG_INFINITY);
        let errors: &[(&str, &str)] = &[
            ("go_memstats_heap_alloc_bytes", "no value"),
            ("go_memstats_heap_alloc_bytes abc", "\"abc\" is not a number"),
            ("go_memstats_heap_alloc_bytes{a=\"x\" 1", "unterminated label set"),
            ("9bad 1", "is not a metric name"),
            ("go_memstats_heap_alloc_bytes 1 2 3", "text after the timestamp"),
            ("{\"my.metric\"} 1", "is not a metric name"),
        ];
        for (line, want) in errors {
            let e = parse_prom_line(line).unwrap_err();
            assert!(e.contains(want), "{line:?}: got {e:?}, want {want:?}");
        }
    }
}
