//! The recommended limit and GOMEMLIMIT on a real Go process in a real
//! cgroup v1 memory cgroup: a GC sawtooth (garbage churned over a live
//! set), whose polls see the cgroup at random points between the GCs.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;

/// The highest usage headroom polled over its window (each history bucket
/// keeps its peak).
fn highest_usage_polled(hr: &Headroom) -> f64 {
    let h: serde_json::Value = serde_json::from_str(&hr.get("/api/v1/history").1).expect("history JSON");
    h["series"]["usage"]
        .as_array()
        .expect("usage series")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .fold(0.0, f64::max)
}

#[test]
fn recommendation_on_a_gc_sawtooth_lies_between_the_polled_peak_and_three_times_it() {
    let cg = V1Cgroup::create("recommend-sawtooth", 512 * 1024 * 1024);
    // 30 MiB live, 20 MiB/s of garbage: with GOGC=100 the heap climbs to
    // about twice the live set before each GC, every second or two.
    let hog = GoHog::start(&cg, &[], &["-live", "30", "-garbage", "20"]);
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    // A 20 s window: the recommendation needs the whole window's history.
    let hr = Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &url,
        "--interval",
        "200ms",
        "--go-interval",
        "500ms",
        "--window",
        "20s",
    ]);
    let started = Instant::now();
    let limit = "headroom_recommended_memory_limit_bytes";
    let gomemlimit = "headroom_recommended_gomemlimit_bytes";
    // Not before the window's history.
    let early = hr.wait_metrics(Duration::from_secs(10), "the Go source up", |m| {
        m.get("headroom_source_up{source=\"go\"}") == Some(&1.0)
    });
    assert!(!early.contains_key(limit), "recommended before 20 s of history");
    let m = hr.wait_metrics(Duration::from_secs(30), "a recommended limit", |m| {
        m.contains_key(limit)
    });
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(19), "recommended after only {waited:?}");
    let polled = highest_usage_polled(&hr);
    let st = hr.status();
    let r = &st["analysis"]["recommendation"];
    assert_eq!(r["basis"], "go_heap_goal", "{r:#}");
    let rec = m[limit];
    assert_eq!(rec, r["memory_limit_bytes"].as_f64().unwrap(), "{r:#}");
    assert_eq!(rec % MIB, 0.0, "whole MiB");
    assert!(
        polled > 30.0 * MIB && rec >= polled && rec <= 3.0 * polled,
        "recommended {:.1} MiB, highest usage polled {:.1} MiB: {r:#}",
        rec / MIB,
        polled / MIB
    );
    // The heap's peak before GC is above the live set, and what the runtime
    // holds beside it is counted.
    let heap_peak = r["heap_peak_bytes"].as_f64().unwrap();
    assert!(heap_peak >= 45.0 * MIB, "{r:#}");
    assert!(r["runtime_other_bytes"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(r["outside_runtime_bytes"].as_f64().is_some(), "{r:#}");
    eprintln!(
        "polled {:.1} MiB, recommended {:.1} MiB: {r:#}",
        polled / MIB,
        rec / MIB
    );
    let g = m[gomemlimit];
    assert_eq!(g, r["gomemlimit_bytes"].as_f64().unwrap());
    assert!(g < rec && g >= heap_peak, "GOMEMLIMIT {:.1} MiB: {r:#}", g / MIB);
    // The dashboard shows both, in the units Kubernetes and Go take.
    let dom = dashboard_dom(hr.addr);
    let card = &dom[dom.find("id=\"rec\"").expect("the recommendation card")..];
    let card = &card[..card.find("</dl>").unwrap()];
    for want in [
        format!("<code>{}Mi</code>", rec as u64 >> 20),
        format!("<code>GOMEMLIMIT={}MiB</code>", g as u64 >> 20),
        "go_heap_goal".to_owned(),
    ] {
        assert!(card.contains(&want), "{want} not in {card}");
    }
}
