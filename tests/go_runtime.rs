//! The Go side against a real Go process in a real v1 memory cgroup: the
//! lazy-free case and its control, fragmentation, both exposition formats,
//! a Go source that is down, and `headroom check` end to end.

mod common;

use common::*;
use std::time::Duration;

const MIB: f64 = 1048576.0;

fn lazy_free(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("LazyFree:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("LazyFree line");
    kb * 1024.0
}

/// hold 400 MiB, drop it, FreeOSMemory: with MADV_FREE the pages stay charged.
fn released_400(hog: &GoHog) -> serde_json::Value {
    hog.call("/hold?mib=400");
    hog.call("/drop");
    hog.call("/freeos")
}

fn start_headroom(hog: &GoHog, go_path: &str) -> Headroom {
    let pid = hog.pid().to_string();
    let url = hog.url(go_path);
    Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &url,
        "--interval",
        "100ms",
        "--go-interval",
        "300ms",
        "--smaps-interval",
        "1s",
    ])
}

#[test]
fn lazy_free_is_measured_and_diagnosed_and_the_control_is_not() {
    let cg = V1Cgroup::create("lazyfree", 1 << 30);
    let hog = GoHog::start(&cg, &[("GODEBUG", "madvdontneed=0")], &[]);
    let ms = released_400(&hog);
    let released = ms["memstats"]["HeapReleased"].as_f64().unwrap();
    assert!(released > 390.0 * MIB, "HeapReleased {released}");
    let hr = start_headroom(&hog, "/debug/vars");
    // Wait for a smaps read that follows the release.
    std::thread::sleep(Duration::from_millis(1500));
    let m = hr.wait_metrics(Duration::from_secs(10), "go and lazyfree", |m| {
        m.contains_key("headroom_go_heap_released_bytes") && m.contains_key("headroom_memory_lazyfree_bytes")
    });
    let kernel_lazy = lazy_free(hog.pid());
    let usage = cg.read_u64("memory.usage_in_bytes") as f64;
    assert!(kernel_lazy > 380.0 * MIB, "LazyFree {kernel_lazy}");
    assert!(usage > 400.0 * MIB, "usage stays where it was: {usage}");
    let got = m["headroom_reclaimable_unreleased_bytes"];
    let tol = (0.10 * kernel_lazy).max(16.0 * MIB);
    assert!(
        (got - kernel_lazy).abs() <= tol,
        "reclaimable {got} vs LazyFree {kernel_lazy}"
    );
    assert!((m["headroom_go_heap_released_bytes"] - released).abs() <= 16.0 * MIB);
    assert_eq!(m["headroom_source_up{source=\"go\"}"], 1.0);
    // The pages sit on the file LRU: unreclaimable is small although usage is high.
    assert!(m["headroom_memory_unreclaimable_bytes"] < 100.0 * MIB, "{m:#?}");
    let st = hr.status();
    // Read this poll, or carried from the last read (1 s ago at most).
    let method = st["breakdown"]["reclaimable_method"].as_str().unwrap();
    assert!(["smaps_lazyfree", "smaps_lru_adjusted"].contains(&method), "{method}");
    assert_eq!(st["go"]["sample"]["format"], "expvar");
    // The cgroup-level estimate agrees with LazyFree (it is the fallback).
    let est = st["breakdown"]["reclaimable_cgroup_estimate"].as_f64().unwrap();
    assert!(
        (est - kernel_lazy).abs() <= tol,
        "LRU estimate {est} vs LazyFree {kernel_lazy}"
    );

    // headroom check tells the operator what it is and what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "check",
            "--pid",
            &hog.pid().to_string(),
            "--go-url",
            &hog.url("/debug/vars"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "no risk: {text}");
    for needle in [
        "Go heap released",
        "reclaimable unreleased",
        "cause    lazy_free",
        "GODEBUG=madvdontneed=1",
        "RSS-based",
    ] {
        assert!(text.contains(needle), "check output lacks {needle:?}:\n{text}");
    }

    // The control: madvdontneed=1 returns the pages at once.
    let cg2 = V1Cgroup::create("dontneed", 1 << 30);
    let hog2 = GoHog::start(&cg2, &[("GODEBUG", "madvdontneed=1")], &[]);
    released_400(&hog2);
    let hr2 = start_headroom(&hog2, "/debug/vars");
    std::thread::sleep(Duration::from_millis(1500));
    let m2 = hr2.wait_metrics(Duration::from_secs(10), "go", |m| {
        m.contains_key("headroom_go_heap_released_bytes")
    });
    assert!(m2["headroom_reclaimable_unreleased_bytes"] <= 16.0 * MIB, "{m2:#?}");
    assert!(m2["headroom_memory_usage_bytes"] < 64.0 * MIB, "usage fell: {m2:#?}");
    assert!(
        m2["headroom_go_heap_released_bytes"] > 390.0 * MIB,
        "HeapReleased is the same as with MADV_FREE"
    );
}

#[test]
fn fragmentation_bound_matches_the_runtime_over_prometheus_text() {
    let cg = V1Cgroup::create("frag", 1 << 30);
    let hog = GoHog::start(&cg, &[], &[]);
    hog.call("/fragment?mib=100");
    let hr = start_headroom(&hog, "/metrics");
    hr.wait_metrics(Duration::from_secs(10), "go", |m| {
        m.contains_key("headroom_fragmentation_bound_bytes")
    });
    std::thread::sleep(Duration::from_millis(700));
    let m = hr.metrics();
    let ms = hog.call("/memstats");
    let want = ms["HeapInuse"].as_f64().unwrap() - ms["HeapAlloc"].as_f64().unwrap();
    assert!(want > 32.0 * MIB, "the heap is fragmented: {want}");
    assert_close(
        "fragmentation bound",
        m["headroom_fragmentation_bound_bytes"],
        want,
        5.0,
    );
    assert_close(
        "heap inuse",
        m["headroom_go_heap_inuse_bytes"],
        ms["HeapInuse"].as_f64().unwrap(),
        5.0,
    );
    assert!(
        m.contains_key("headroom_go_goroutines"),
        "client_golang exports goroutines"
    );
    let st = hr.status();
    assert_eq!(st["go"]["sample"]["format"], "prometheus");
    assert_eq!(
        st["go"]["heap_live_method"], "goal",
        "Go 1.19: estimated, GOGC from environ"
    );
    let live = m["headroom_go_heap_live_bytes"];
    assert!(live <= m["headroom_go_heap_alloc_bytes"] + 1.0 && live > 0.0, "{m:#?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "check",
            "--json",
            "--pid",
            &hog.pid().to_string(),
            "--go-url",
            &hog.url("/metrics"),
        ])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    let causes: Vec<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["cause"].as_str())
        .collect();
    assert!(causes.contains(&"fragmentation"), "{causes:?}");
}

#[test]
fn a_go_source_that_is_down_or_not_go_never_stops_the_cgroup() {
    let cg = V1Cgroup::create("godown", 256 << 20);
    let hog = GoHog::start(&cg, &[], &[]);
    let pid = hog.pid().to_string();
    // An HTML page (pprof's index) is not a Go runtime page.
    let html = hog.url("/debug/pprof/");
    let hr = Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &html,
        "--interval",
        "100ms",
        "--go-interval",
        "200ms",
    ]);
    let m = hr.wait_metrics(Duration::from_secs(10), "go down", |m| {
        m.get("headroom_source_up{source=\"go\"}") == Some(&0.0)
    });
    assert_eq!(m["headroom_source_up{source=\"cgroup\"}"], 1.0);
    assert!(
        !m.contains_key("headroom_go_heap_alloc_bytes"),
        "a failed scrape is not a zero"
    );
    let err = hr.status()["sources"]["go"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("HTML") && err.contains("/debug/pprof/"), "{err}");
    // Nothing listening: connection refused, named.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/debug/vars", l.local_addr().unwrap())
    };
    let hr2 = Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &closed,
        "--interval",
        "100ms",
        "--go-interval",
        "200ms",
    ]);
    let m = hr2.wait_metrics(Duration::from_secs(10), "go errors", |m| {
        m.get("headroom_source_errors_total{source=\"go\"}")
            .is_some_and(|v| *v >= 2.0)
    });
    assert_eq!(m["headroom_source_up{source=\"cgroup\"}"], 1.0);
    assert!(hr2.log().contains(&closed), "{}", hr2.log());
}

/// Issue: reclaimable memory read 0 for up to `--smaps-interval` after a
/// release. With headroom already watching at its default smaps pace (30 s),
/// every poll from the first after the release shows the reclaimable memory
/// within 10 % (or 16 MiB) of the kernel's LazyFree, and `lazy_free`.
#[test]
fn reclaimable_is_fresh_from_the_first_poll_after_a_release() {
    let cg = V1Cgroup::create("lazyfresh", 1 << 30);
    let hog = GoHog::start(&cg, &[("GODEBUG", "madvdontneed=0")], &[]);
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    let hr = Headroom::start(&["--pid", &pid, "--go-url", &url, "--interval", "500ms"]);
    // Watching, with its first smaps read behind it.
    hr.wait_metrics(Duration::from_secs(10), "go and smaps", |m| {
        m.contains_key("headroom_go_heap_released_bytes") && m.contains_key("headroom_memory_lazyfree_bytes")
    });
    std::thread::sleep(Duration::from_secs(2));
    released_400(&hog);
    // Polls stamped later than this started after the release.
    let released_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let kernel = lazy_free(hog.pid());
    assert!(kernel > 380.0 * MIB, "LazyFree {kernel}");
    let tol = (0.10 * kernel).max(16.0 * MIB);
    let mut polls = Vec::new();
    let mut last_time = released_at;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        let st = hr.status();
        let t = st["time_ms"].as_u64().unwrap();
        if t > last_time {
            last_time = t;
            polls.push(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(polls.len() >= 10, "only {} polls in 8 s", polls.len());
    // LazyFree stays put while nothing presses on memory.
    let kernel_after = lazy_free(hog.pid());
    assert!((kernel_after - kernel).abs() < 16.0 * MIB, "{kernel} → {kernel_after}");
    for (i, st) in polls.iter().enumerate() {
        let b = &st["breakdown"];
        let got = b["reclaimable_unreleased"].as_f64().unwrap_or(0.0);
        assert!(
            (got - kernel).abs() <= tol,
            "poll {i} after the release: reclaimable {got} vs LazyFree {kernel} ({})",
            b
        );
        let causes: Vec<&str> = st["analysis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["cause"].as_str())
            .collect();
        assert!(causes.contains(&"lazy_free"), "poll {i}: {causes:?}");
        let method = b["reclaimable_method"].as_str().unwrap();
        assert!(
            ["smaps_lazyfree", "smaps_lru_adjusted"].contains(&method),
            "poll {i}: {method}"
        );
        assert!(b["smaps_age_s"].as_f64().is_some(), "poll {i}: the smaps read's age");
    }
    // The move of the LRU estimate called for a smaps read at once: the
    // first poll's figure is LazyFree itself, not the carried one.
    let first = &polls[0]["breakdown"];
    assert_eq!(first["reclaimable_method"], "smaps_lazyfree", "{first}");
    assert_eq!(first["smaps_age_s"], 0.0);
    let smaps_lazy = polls[0]["smaps"]["lazy_free"].as_f64().unwrap();
    assert!((smaps_lazy - kernel).abs() <= tol, "smaps {smaps_lazy} vs {kernel}");
    // Later polls carry it with the smaps read's age rising.
    let last = &polls.last().unwrap()["breakdown"];
    assert_eq!(last["reclaimable_method"], "smaps_lru_adjusted", "{last}");
    assert!(last["smaps_age_s"].as_f64().unwrap() >= 3.0, "{last}");
}
