//! Prometheus text (client_golang `/metrics`): the streaming decoder gives
//! the same answer whatever the chunking (lines across chunks, the line
//! length cap), skipped lines are at most the lines there are, and a page
//! is accepted only with the heap series the analysis needs. Also through
//! the format-sniffing decoder.
//!
//! Input: one byte choosing the chunk sizes, then the body.
#![no_main]

use headroom::parse::go_body::{parse_go_body, GoBodyDecoder};
use headroom::parse::go_runtime::{parse_prometheus, GoFormat, PromDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut d = PromDecoder::new();
        d.feed(body);
        d.finish()
    };
    let size = usize::from(seed % 32) + 1;
    let streamed = {
        let mut d = PromDecoder::new();
        for c in body.chunks(size) {
            d.feed(c);
        }
        d.finish()
    };
    assert_eq!(whole, streamed);
    if let Ok(s) = &whole {
        assert_eq!(s.format, Some(GoFormat::Prometheus));
        assert!(s.heap_alloc.is_some() && s.heap_inuse.is_some());
        let lines = body.split(|&b| b == b'\n').count() as u64;
        assert!(s.skipped_lines <= lines, "{} > {lines}", s.skipped_lines);
    }
    // The sniffing decoder, chunked, agrees with itself whole.
    let sniffed = {
        let mut d = GoBodyDecoder::new();
        let mut r = Ok(());
        for c in body.chunks(size) {
            r = d.feed(c);
            if r.is_err() {
                break;
            }
        }
        r.and_then(|()| d.finish())
    };
    if let Ok(text) = std::str::from_utf8(body) {
        assert_eq!(parse_prometheus(text), whole);
        let at_once = parse_go_body(text);
        match (&at_once, &sniffed) {
            (
                Err(headroom::parse::go_runtime::GoParseError::Json(_)),
                Err(headroom::parse::go_runtime::GoParseError::Json(_)),
            ) => {}
            _ => assert_eq!(at_once, sniffed),
        }
    }
});
