//! The target's Go runtime, from either of the two formats Go services serve:
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
//! Told apart by content, not by path.

use serde::Serialize;
use std::collections::BTreeMap;

/// Where a [`GoSample`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoFormat {
    Expvar,
    Prometheus,
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
    pub go_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoParseError {
    #[error("an HTML page, not expvar JSON or Prometheus text (is the URL right? expected /debug/vars or /metrics)")]
    Html,
    #[error("empty body")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expvar JSON without a \"memstats\" object (is expvar imported, and is this /debug/vars?)")]
    NoMemstats,
    #[error("memstats.{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("Prometheus text without Go runtime metrics (no go_memstats_* or go_memory_classes_* series: is the Go collector registered?)")]
    NoGoMetrics,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Parses either format, deciding by content.
pub fn parse_go_body(body: &str) -> Result<GoSample, GoParseError> {
    let t = body.trim_start_matches('\u{feff}').trim_start();
    if t.is_empty() {
        return Err(GoParseError::Empty);
    }
    if t.starts_with('{') {
        parse_expvar(t)
    } else if t.starts_with('<') {
        Err(GoParseError::Html)
    } else {
        parse_prometheus(t)
    }
}

/// expvar `/debug/vars`.
pub fn parse_expvar(body: &str) -> Result<GoSample, GoParseError> {
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
                reason: format!("expected a number, found {}", json_type(other)),
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

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

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

/// client_golang `/metrics`. Accepts the older `go_memstats_*` set and the
/// runtime/metrics names (`go_gc_heap_live_bytes`, `go_gc_heap_goal_bytes`,
/// `go_gc_gomemlimit_bytes`, `go_gc_gogc_percent`, `go_memory_classes_*`).
/// Unlabelled series only (plus `go_info{version}`); malformed lines are an
/// error, since a truncated or foreign body must not be half-believed.
pub fn parse_prometheus(body: &str) -> Result<GoSample, GoParseError> {
    let mut vals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut version = None;
    for (i, line) in body.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let s = parse_prom_line(l).map_err(|reason| GoParseError::Line { line: i + 1, reason })?;
        if s.name == "go_info" {
            version = s.labels.and_then(|ls| {
                let v = ls.split("version=\"").nth(1)?;
                Some(v.split('"').next()?.to_owned())
            });
        } else if s.labels.is_none() && s.name.starts_with("go_") {
            vals.insert(s.name, s.value);
        }
    }
    let any_go = vals
        .keys()
        .any(|k| k.starts_with("go_memstats_") || k.starts_with("go_memory_classes_"));
    if !any_go {
        return Err(GoParseError::NoGoMetrics);
    }
    let b = |k: &str| vals.get(k).copied().and_then(bytes_of);
    let sum = |ks: &[&str]| -> Option<u64> { ks.iter().map(|k| b(k)).sum() };
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
    let gogc = vals
        .get("go_gc_gogc_percent")
        .copied()
        .filter(|v| v.is_finite())
        .map(|v| v as i64);
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
        num_gc: vals
            .get("go_gc_cycles_total_gc_cycles_total")
            .or_else(|| vals.get("go_gc_duration_seconds_count"))
            .copied()
            .and_then(bytes_of),
        total_alloc: b("go_memstats_alloc_bytes_total").or_else(|| b("go_gc_heap_allocs_bytes_total")),
        pause_total_ns: None,
        last_gc_ns: vals
            .get("go_memstats_last_gc_time_seconds")
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|s| (s * 1e9) as u64),
        heap_live: b("go_gc_heap_live_bytes"),
        heap_goal: b("go_gc_heap_goal_bytes"),
        goroutines: vals.get("go_goroutines").copied().and_then(bytes_of),
        gomemlimit: b("go_gc_gomemlimit_bytes"),
        gogc_percent: gogc,
        go_version: version,
    };
    if s.heap_alloc.is_none() || s.heap_inuse.is_none() {
        return Err(GoParseError::NoGoMetrics);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/go/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn real_expvar_body() {
        let s = parse_go_body(&fixture("expvar-go1.19.json")).unwrap();
        assert_eq!(s.format, Some(GoFormat::Expvar));
        assert_eq!(s.heap_alloc, Some(21320936));
        assert_eq!(s.heap_inuse, Some(22151168));
        assert_eq!(s.heap_idle, Some(2752512));
        assert_eq!(s.heap_released, Some(2621440));
        assert_eq!(s.next_gc, Some(30131176));
        assert_eq!(s.sys, Some(35763464));
        assert_eq!(s.heap_live, None);
        assert!(s.num_gc.is_some() && s.total_alloc.is_some());
    }

    #[test]
    fn real_client_golang_body() {
        let s = parse_go_body(&fixture("client_golang-1.14-go1.19.prom")).unwrap();
        assert_eq!(s.format, Some(GoFormat::Prometheus));
        assert_eq!(s.heap_alloc, Some(21345512));
        assert_eq!(s.heap_inuse, Some(22290432));
        assert_eq!(s.heap_released, Some(2514944));
        assert_eq!(s.next_gc, Some(30131176));
        assert_eq!(s.goroutines, Some(10));
        assert_eq!(s.go_version.as_deref(), Some("go1.19.8"));
        assert_eq!(s.heap_live, None, "Go 1.19 has no /gc/heap/live");
    }

    #[test]
    fn newer_names_only() {
        // runtime/metrics names as client_golang >= 1.17 exports them on Go >= 1.21.
        let body = fixture("client_golang-runtime-metrics-go1.22.prom");
        let s = parse_go_body(&body).unwrap();
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
            ("<html><body>502 Bad Gateway</body></html>", "HTML page"),
            ("{\"memstats\": {\"HeapAlloc\": 5", "invalid JSON"),
            ("{\"cmdline\": []}", "without a \"memstats\""),
            (
                "{\"memstats\": {\"HeapAlloc\": \"lots\", \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: expected a number, found a string",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": -1, \"HeapInuse\": 1}}",
                "memstats.HeapAlloc: -1 is not a non-negative integer",
            ),
            (
                "{\"memstats\": {\"HeapAlloc\": 1.5e300, \"HeapInuse\": 1}}",
                "not a non-negative integer",
            ),
            ("{\"memstats\": {\"HeapAlloc\": NaN}}", "invalid JSON"),
            ("{\"memstats\": {}}", "HeapAlloc/HeapInuse: missing"),
            ("http_requests_total 5\n", "without Go runtime metrics"),
            ("go_memstats_heap_alloc_bytes\n", "line 1: no value"),
            ("go_memstats_heap_alloc_bytes abc\n", "line 1: \"abc\" is not a number"),
            ("go_memstats_heap_alloc_bytes{a=\"x\" 1\n", "unterminated label set"),
            ("9bad 1\n", "is not a metric name"),
            ("go_memstats_heap_alloc_bytes 1 2 3\n", "text after the timestamp"),
        ];
        for (body, want) in cases {
            let e = parse_go_body(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn nan_and_inf_samples_are_not_bytes() {
        let body =
            "go_memstats_heap_alloc_bytes NaN\ngo_memstats_heap_inuse_bytes +Inf\ngo_memstats_heap_idle_bytes 5\n";
        // NaN/Inf values are parsed but are not byte counts: the sample lacks them.
        assert_eq!(parse_go_body(body).unwrap_err(), GoParseError::NoGoMetrics);
        let body = "go_memstats_heap_alloc_bytes 10\ngo_memstats_heap_inuse_bytes 20 1700000000000\ngo_memstats_sys_bytes -Inf\n";
        let s = parse_go_body(body).unwrap();
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
    }
}
