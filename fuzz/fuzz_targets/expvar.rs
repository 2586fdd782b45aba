//! expvar JSON (`/debug/vars`): the streaming decoder gives the same answer
//! whatever the chunking, and on valid JSON the same sample as decoding the
//! whole document into a `serde_json::Value` (the obvious, unbounded way).
//!
//! Input: one byte choosing the chunk sizes, then the body.
#![no_main]

use headroom::parse::go_runtime::{parse_expvar, ExpvarDecoder, GoFormat, GoParseError, GoSample};
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

/// The reference: the whole body as a Value.
fn via_value(body: &str) -> Result<GoSample, GoParseError> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| GoParseError::Json(e.to_string()))?;
    let ms = v
        .get("memstats")
        .and_then(|m| m.as_object())
        .ok_or(GoParseError::NoMemstats)?;
    let field = |name: &str| -> Result<Option<u64>, GoParseError> {
        match ms.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(u) => Ok(Some(u)),
                None => Err(GoParseError::Field {
                    field: name.into(),
                    reason: format!("{n} is not a non-negative integer"),
                }),
            },
            Some(other) => Err(GoParseError::Field {
                field: name.into(),
                reason: format!(
                    "expected a number, found {}",
                    match other {
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::String(_) => "a string",
                        serde_json::Value::Array(_) => "an array",
                        _ => "an object",
                    }
                ),
            }),
        }
    };
    let s = GoSample {
        format: Some(GoFormat::Expvar),
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
        gc_cpu_fraction: ms
            .get("GCCPUFraction")
            .and_then(|v| v.as_f64())
            .filter(|f| (0.0..=1.0).contains(f)),
        ..GoSample::default()
    };
    if s.heap_alloc.is_none() || s.heap_inuse.is_none() {
        return Err(GoParseError::Field {
            field: "HeapAlloc/HeapInuse".into(),
            reason: "missing".into(),
        });
    }
    Ok(s)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut d = ExpvarDecoder::new();
        d.feed(body).and_then(|()| d.finish())
    };
    let streamed = {
        let mut d = ExpvarDecoder::new();
        let mut r = Ok(());
        for c in chunks(body, seed) {
            r = d.feed(c);
            if r.is_err() {
                break;
            }
        }
        r.and_then(|()| d.finish())
    };
    // Errors may be found at another byte when chunked; their kind is the same.
    match (&whole, &streamed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(GoParseError::Json(_)), Err(GoParseError::Json(_))) => {}
        (a, b) => assert_eq!(a, b),
    }
    if let Ok(text) = std::str::from_utf8(body) {
        assert_eq!(parse_expvar(text), whole);
        if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            let reference = via_value(text);
            match (&whole, &reference) {
                (Err(GoParseError::Json(a)), Err(GoParseError::Json(b))) => panic!("{a} / {b}"),
                _ => assert_eq!(whole, reference, "{text:?}"),
            }
        }
    }
});
