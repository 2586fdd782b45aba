//! A Go runtime endpoint's body, in whichever format it comes: expvar JSON,
//! Prometheus text or the pprof text heap page ([`super::go_runtime`],
//! [`super::pprof_heap`]), told apart by its first characters and decoded
//! as a stream.

use super::go_runtime::{ExpvarDecoder, GoParseError, GoSample, PromDecoder};
use super::pprof_heap::{self, PprofHeapDecoder};

/// Parses any of the formats, deciding by content. The whole body at once; the
/// same decoder as [`GoBodyDecoder`] fed with one chunk.
pub fn parse_go_body(body: &str) -> Result<GoSample, GoParseError> {
    let mut d = GoBodyDecoder::new();
    d.feed(body.as_bytes())?;
    d.finish()
}

const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// Whitespace before the first character (what `str::trim_start` removes,
/// ASCII part).
fn is_leading_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The gzip magic that starts a `debug=0` pprof profile.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A streaming decoder for any of the formats: [`feed`](Self::feed) each
/// chunk as it arrives, then [`finish`](Self::finish). The format is decided
/// by the first character after byte-order marks and whitespace: `{`
/// expvar, `<` an HTML page (an error at once), `h` a pprof heap page when
/// the line starts with `heap profile:` (up to that many bytes are held
/// until it is known), the gzip magic a binary pprof profile (an error at
/// once), else Prometheus text.
#[derive(Debug, Default)]
pub struct GoBodyDecoder {
    state: BodyState,
    /// Bytes of a byte-order mark matched so far (one may span chunks).
    bom: usize,
}

#[derive(Debug, Default)]
enum BodyState {
    #[default]
    Start,
    /// The body starts with these bytes, a prefix of `want`: held until it
    /// is known whether they are all of it.
    Sniff {
        held: Vec<u8>,
        want: &'static [u8],
    },
    Expvar(Box<ExpvarDecoder>),
    Prometheus(Box<PromDecoder>),
    Pprof(Box<PprofHeapDecoder>),
}

/// Prometheus text that starts with `held`.
fn prometheus_from(held: &[u8]) -> BodyState {
    let mut d = Box::<PromDecoder>::default();
    d.feed(held);
    BodyState::Prometheus(d)
}

impl GoBodyDecoder {
    pub fn new() -> GoBodyDecoder {
        GoBodyDecoder::default()
    }

    /// The next chunk of the body. An error means the body is not worth
    /// reading further.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), GoParseError> {
        let mut rest = chunk;
        if let BodyState::Start = self.state {
            let mut i = 0;
            while i < chunk.len() {
                let b = chunk[i];
                if self.bom > 0 {
                    if b == BOM[self.bom] {
                        self.bom = (self.bom + 1) % BOM.len();
                        i += 1;
                        continue;
                    }
                    // A partial mark: the text starts with those bytes.
                    let mut d = Box::<PromDecoder>::default();
                    d.feed(&BOM[..self.bom]);
                    self.bom = 0;
                    self.state = BodyState::Prometheus(d);
                    break;
                }
                if b == BOM[0] {
                    self.bom = 1;
                    i += 1;
                    continue;
                }
                if is_leading_space(b) {
                    i += 1;
                    continue;
                }
                self.state = match b {
                    b'{' => BodyState::Expvar(Box::default()),
                    b'<' => return Err(GoParseError::Html),
                    b'h' => BodyState::Sniff {
                        held: Vec::with_capacity(pprof_heap::HEADER.len()),
                        want: pprof_heap::HEADER,
                    },
                    0x1f => BodyState::Sniff {
                        held: Vec::with_capacity(GZIP_MAGIC.len()),
                        want: &GZIP_MAGIC,
                    },
                    _ => BodyState::Prometheus(Box::default()),
                };
                break;
            }
            rest = &chunk[i..];
        }
        if let BodyState::Sniff { held, want } = &mut self.state {
            // Hold bytes while they spell a prefix of `want`.
            let mut i = 0;
            while i < rest.len() && held.len() < want.len() && rest[i] == want[held.len()] {
                held.push(rest[i]);
                i += 1;
            }
            let (held, want) = (std::mem::take(held), *want);
            rest = &rest[i..];
            if held.len() == want.len() {
                if want == GZIP_MAGIC {
                    return Err(GoParseError::PprofGzip);
                }
                let mut d = Box::<PprofHeapDecoder>::default();
                d.feed(&held);
                self.state = BodyState::Pprof(d);
            } else if rest.is_empty() {
                // All of the chunk matched: wait for the next one.
                self.state = BodyState::Sniff { held, want };
            } else {
                self.state = prometheus_from(&held);
            }
        }
        match &mut self.state {
            BodyState::Start | BodyState::Sniff { .. } => Ok(()),
            BodyState::Expvar(d) => d.feed(rest),
            BodyState::Prometheus(d) => {
                d.feed(rest);
                Ok(())
            }
            BodyState::Pprof(d) => {
                d.feed(rest);
                Ok(())
            }
        }
    }

    /// The end of the body.
    pub fn finish(self) -> Result<GoSample, GoParseError> {
        match self.state {
            BodyState::Start if self.bom > 0 => {
                let mut d = PromDecoder::new();
                d.feed(&BOM[..self.bom]);
                d.finish()
            }
            BodyState::Start => Err(GoParseError::Empty),
            // The body ended inside what could have been the pprof header.
            BodyState::Sniff { held, .. } => {
                let mut d = PromDecoder::new();
                d.feed(&held);
                d.finish()
            }
            BodyState::Expvar(d) => d.finish(),
            BodyState::Prometheus(d) => d.finish(),
            BodyState::Pprof(d) => d.finish(),
        }
    }
}

// ---------------------------------------------------------------- expvar
