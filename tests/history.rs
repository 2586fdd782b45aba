//! The binary's `/api/v1/history` (docs/api.md), saved profiles at
//! `/profiles/NAME`, and its liveness gauge, end to end on a fixture tree.

mod common;

use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn start_on_v2(extra: &[&str]) -> Headroom {
    let mut args = vec!["--pid", "4242"];
    args.extend_from_slice(extra);
    start_on_fixture("v2", &args)
}

/// `[[t_ms, bytes], …]` of one series.
fn points(h: &serde_json::Value, series: &str) -> Vec<(u64, Option<u64>)> {
    h["series"][series]
        .as_array()
        .unwrap_or_else(|| panic!("no series {series}: {h}"))
        .iter()
        .map(|p| (p[0].as_u64().expect("t_ms"), p[1].as_u64()))
        .collect()
}

/// Waits until the usage series has at least `n` points (503 until the
/// first poll has finished).
fn history_with(hr: &Headroom, n: usize) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = hr.get("/api/v1/history");
        let h: serde_json::Value = match code {
            503 => serde_json::Value::Null,
            200 => serde_json::from_str(&body).unwrap_or_else(|e| panic!("history JSON: {e}: {body}")),
            _ => panic!("GET /api/v1/history: {code} {body}"),
        };
        if !h.is_null() && points(&h, "usage").len() >= n {
            return h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} points after 20 s: {h}\nlog:\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn history_grows_in_order_with_the_values_read() {
    let started = unix_ms_now();
    // A one-minute window: buckets of 100 ms, about a point a poll.
    let hr = start_on_v2(&["--window", "1m"]);
    let first = history_with(&hr, 3);
    let second = history_with(&hr, points(&first, "usage").len() + 3);
    let now = unix_ms_now();
    for h in [&first, &second] {
        assert_eq!(h["window_s"], 60);
        assert_eq!(h["limit_basis"], "unreclaimable");
        let t = h["time_ms"].as_u64().unwrap();
        assert!((started..=now).contains(&t), "time_ms {t} outside [{started}, {now}]");
        // The fixture's values (tests/fixtures/README.md), in bytes.
        for (series, bytes) in [
            ("usage", 271310848),
            ("working_set", 148725760),
            ("unreclaimable", 136220672),
            ("rss", 245268480),
            ("limit", 402653184),
        ] {
            let p = points(h, series);
            assert!(!p.is_empty(), "{series}: {h}");
            assert!(
                p.windows(2).all(|w| w[0].0 < w[1].0),
                "{series} not oldest first: {p:?}"
            );
            assert!(p.iter().all(|x| x.1 == Some(bytes)), "{series}: {p:?}");
            assert!(p.iter().all(|x| (started..=t).contains(&x.0)), "{series}: {p:?}");
            assert_eq!(p.last().unwrap().0, t, "{series} ends at the last poll");
        }
        // No --go-url: the Go series are there and empty.
        assert_eq!(points(h, "go_heap_live"), vec![]);
        assert_eq!(points(h, "go_next_gc"), vec![]);
        assert_eq!(h["events"], serde_json::json!([]));
        assert!(h["prediction"].is_null(), "a flat series predicts nothing: {h}");
    }
    // The second answer extends the first; only the newest bucket of the
    // first may have taken more polls since.
    let (a, b) = (points(&first, "usage"), points(&second, "usage"));
    assert!(b.len() > a.len(), "{} then {} points", a.len(), b.len());
    let kept = a.len() - 1;
    assert_eq!(&b[..kept], &a[..kept], "the older points stay as they were");

    // Liveness: the gauge is the end of a recent poll, /healthz is happy.
    let m = hr.metrics();
    let last = m["headroom_last_poll_timestamp_seconds"] * 1000.0;
    let t = second["time_ms"].as_u64().unwrap() as f64;
    assert!(
        last >= t && last <= unix_ms_now() as f64,
        "last poll {last}, history {t}"
    );
    assert_eq!(hr.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(hr.get("/readyz").0, 200);
    assert!(hr.terminate().success(), "a SIGTERM is a clean stop");
}

#[test]
fn saved_profiles_are_served_by_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let name = "heap-1764500000000-critical.pb.gz";
    // Printable bytes, as the test client reads bodies as text; more than
    // one read chunk (64 KiB) of them.
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (32 + i * 7 % 95) as u8).collect();
    std::fs::write(dir.path().join(name), &bytes).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a profile").unwrap();
    let hr = start_on_v2(&["--profile-dir", dir.path().to_str().unwrap()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hr.status()["profiles"].as_array().is_none_or(|p| p.is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "profile not listed: {}",
            hr.status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = hr.get(&format!("/profiles/{name}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.len(), bytes.len());
    assert!(body.as_bytes() == bytes, "the profile served differs from the file");
    for bad in [
        "/profiles/notes.txt",
        "/profiles/..%2fnotes.txt",
        "/profiles/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/profiles/../../etc/passwd",
    ] {
        assert_eq!(hr.get(bad).0, 404, "{bad}");
    }
}
