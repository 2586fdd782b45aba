//! net/http/pprof's text heap profile (`/debug/pprof/heap?debug=1`): the
//! streaming decoder gives the same answer whatever the chunking (lines
//! across chunks, the two line caps), the same as a plain line-by-line
//! reading of the whole body, and the same through the format-sniffing
//! decoder when the body starts with the pprof header.
//!
//! Input: one byte choosing the chunk sizes, then the body.
#![no_main]

use headroom::parse::go_body::GoBodyDecoder;
use headroom::parse::go_runtime::{GoFormat, GoParseError, GoSample, MAX_LINE_BYTES};
use headroom::parse::pprof_heap::{parse_pprof_heap, PprofHeapDecoder, MARKER_LINE_BYTES, TRAILER};
use libfuzzer_sys::fuzz_target;

/// Splits `body` into chunks of varying sizes chosen by `seed`.
fn chunks(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = 1 + (usize::from(seed) * 31 + i * 17) % (usize::from(seed % 64) + 1);
        let (a, b) = rest.split_at(size.min(rest.len()));
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

/// The reference: the whole body split into lines, the trailer's fields
/// read from a table.
fn by_lines(body: &[u8]) -> Result<GoSample, GoParseError> {
    let names = [
        "HeapAlloc",
        "HeapInuse",
        "HeapIdle",
        "HeapReleased",
        "HeapSys",
        "Sys",
        "NextGC",
        "Stack",
        "NumGC",
        "TotalAlloc",
        "PauseTotalNs",
        "LastGC",
    ];
    let mut found: Vec<Option<Result<u64, String>>> = vec![None; names.len()];
    let mut gc_cpu_fraction = None;
    let mut in_trailer = false;
    let mut skipped = 0u64;
    for raw in body.split(|&b| b == b'\n') {
        let cap = if in_trailer { MAX_LINE_BYTES } else { MARKER_LINE_BYTES };
        let text = match std::str::from_utf8(raw) {
            Ok(t) if raw.len() <= cap => t.trim(),
            _ => {
                skipped += u64::from(in_trailer);
                continue;
            }
        };
        if text == TRAILER {
            in_trailer = true;
        } else if in_trailer && !text.is_empty() {
            let Some((name, value)) = text.strip_prefix('#').and_then(|f| f.split_once('=')) else {
                skipped += 1;
                continue;
            };
            if name.trim() == "GCCPUFraction" {
                gc_cpu_fraction = value.trim().parse::<f64>().ok().filter(|f| (0.0..=1.0).contains(f));
            } else if let Some(i) = names.iter().position(|n| *n == name.trim()) {
                let mut v = value.trim();
                if names[i] == "Stack" {
                    v = v.split('/').next().unwrap_or_default().trim();
                }
                let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                found[i] = Some(if ok {
                    v.parse::<u64>().map_err(|_| "overflow".into())
                } else {
                    Err("bad".into())
                });
            }
        }
    }
    if !in_trailer {
        return Err(GoParseError::PprofNoTrailer);
    }
    let mut vals = [None; 12];
    for (i, f) in found.into_iter().enumerate() {
        match f {
            None => {}
            Some(Ok(v)) => vals[i] = Some(v),
            Some(Err(_)) => {
                // The trailer's `Stack` is reported as the MemStats field
                // it gives, StackInuse.
                let field = if names[i] == "Stack" { "StackInuse" } else { names[i] };
                return Err(GoParseError::Field {
                    field: field.into(),
                    reason: String::new(),
                });
            }
        }
    }
    if vals[0].is_none() || vals[1].is_none() {
        return Err(GoParseError::Field {
            field: "HeapAlloc/HeapInuse".into(),
            reason: String::new(),
        });
    }
    Ok(GoSample {
        format: Some(GoFormat::Pprof),
        heap_alloc: vals[0],
        heap_inuse: vals[1],
        heap_idle: vals[2],
        heap_released: vals[3],
        heap_sys: vals[4],
        sys: vals[5],
        next_gc: vals[6],
        stack_inuse: vals[7],
        num_gc: vals[8],
        total_alloc: vals[9],
        pause_total_ns: vals[10],
        last_gc_ns: vals[11],
        gc_cpu_fraction,
        skipped_lines: skipped,
        ..GoSample::default()
    })
}

/// Errors compared by kind and field, not by wording.
fn same(a: &Result<GoSample, GoParseError>, b: &Result<GoSample, GoParseError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(GoParseError::Field { field: f, .. }), Err(GoParseError::Field { field: g, .. })) => f == g,
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut d = PprofHeapDecoder::new();
        d.feed(body);
        d.finish()
    };
    let streamed = {
        let mut d = PprofHeapDecoder::new();
        for c in chunks(body, seed) {
            d.feed(c);
        }
        d.finish()
    };
    assert_eq!(whole, streamed);
    let reference = by_lines(body);
    assert!(same(&whole, &reference), "{whole:?} / {reference:?}");
    if let Ok(s) = &whole {
        assert_eq!(s.format, Some(GoFormat::Pprof));
        assert!(s.heap_alloc.is_some() && s.heap_inuse.is_some());
        let lines = body.split(|&b| b == b'\n').count() as u64;
        assert!(s.skipped_lines <= lines, "{} > {lines}", s.skipped_lines);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        assert_eq!(parse_pprof_heap(text), whole);
    }
    // The sniffing decoder, chunked: the same answer for a pprof page.
    let sniffed = {
        let mut d = GoBodyDecoder::new();
        let mut r = Ok(());
        for c in chunks(body, seed) {
            r = d.feed(c);
            if r.is_err() {
                break;
            }
        }
        r.and_then(|()| d.finish())
    };
    if body.starts_with(b"heap profile:") {
        assert_eq!(sniffed, whole);
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        assert_eq!(sniffed, Err(GoParseError::PprofGzip));
    }
});
