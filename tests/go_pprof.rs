//! The third Go source, net/http/pprof's text heap page
//! (`/debug/pprof/heap?debug=1`), against a real Go process in a real v1
//! memory cgroup: on the same quiescent process it gives the numbers and
//! the breakdown that expvar gives, the daemon reads it on its own, and the
//! pages that are not it (pprof's HTML index, the binary `debug=0` profile)
//! are refused with errors that say what to use instead.

mod common;

use common::*;
use std::time::Duration;

const MIB: f64 = 1048576.0;

/// `headroom check --json` on the hog with `--go-url` at `path`.
fn check_json(hog: &GoHog, path: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "check",
            "--json",
            "--pid",
            &hog.pid().to_string(),
            "--go-url",
            &hog.url(path),
        ])
        .output()
        .expect("run headroom check");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json {path}: {e}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn num(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn pprof_heap_page_agrees_with_expvar_on_the_same_process() {
    let cg = V1Cgroup::create("pprof", 512 << 20);
    let hog = GoHog::start(&cg, &[], &["-hold", "64"]);
    // Quiescent: a GC, the free heap returned, nothing running in the background.
    hog.call("/freeos");
    std::thread::sleep(Duration::from_millis(300));

    let vars = check_json(&hog, "/debug/vars");
    let pprof = check_json(&hog, "/debug/pprof/heap?debug=1");
    let vars_again = check_json(&hog, "/debug/vars");

    let g = &pprof["status"]["go"]["sample"];
    assert_eq!(g["format"], "pprof", "{pprof:#}");
    assert_eq!(vars["status"]["go"]["sample"]["format"], "expvar");
    assert_eq!(
        pprof["status"]["sources"]["go"]["up"], true,
        "{:#}",
        pprof["status"]["sources"]
    );
    assert!(num(&g["heap_alloc"], "heap_alloc") > 64.0 * MIB, "{g:#}");
    assert_eq!(g["pause_total_ns"], serde_json::Value::Null, "not in the trailer");

    // Each scrape allocates a little in the target (its reply, the profile's
    // records): the pprof numbers lie within a small margin of the range the
    // two expvar scrapes around it span.
    let tol = MIB;
    let within = |section: &str, key: &str| {
        let a = num(&vars["status"][section].pointer(key).cloned().unwrap_or_default(), key);
        let b = num(
            &vars_again["status"][section].pointer(key).cloned().unwrap_or_default(),
            key,
        );
        let p = num(&pprof["status"][section].pointer(key).cloned().unwrap_or_default(), key);
        assert!(
            p >= a.min(b) - tol && p <= a.max(b) + tol,
            "{section}{key}: pprof {p} vs expvar {a} and {b}"
        );
    };
    for key in [
        "/sample/heap_alloc",
        "/sample/heap_inuse",
        "/sample/heap_idle",
        "/sample/heap_released",
        "/sample/heap_sys",
        "/sample/sys",
        "/sample/next_gc",
        "/sample/stack_inuse",
        "/sample/total_alloc",
    ] {
        within("go", key);
    }
    for key in ["/fragmentation_bound", "/idle_retained", "/heap_released"] {
        within("breakdown", key);
    }
    // No GC between the scrapes: the same cycle count and the same last GC.
    for key in ["num_gc", "last_gc_ns"] {
        assert_eq!(
            g[key], vars["status"]["go"]["sample"][key],
            "{key}: a GC ran between the scrapes?"
        );
    }
    assert_eq!(pprof["risk"], vars["risk"]);

    // The daemon scrapes it on its own.
    let hr = Headroom::start(&[
        "--pid",
        &hog.pid().to_string(),
        "--go-url",
        &hog.url("/debug/pprof/heap?debug=1"),
        "--interval",
        "100ms",
        "--go-interval",
        "300ms",
    ]);
    let m = hr.wait_metrics(Duration::from_secs(10), "go over pprof", |m| {
        m.contains_key("headroom_go_heap_inuse_bytes") && m.contains_key("headroom_fragmentation_bound_bytes")
    });
    assert_eq!(m["headroom_source_up{source=\"go\"}"], 1.0);
    assert_close(
        "heap inuse",
        m["headroom_go_heap_inuse_bytes"],
        num(&g["heap_inuse"], "heap_inuse"),
        5.0,
    );
    assert_eq!(hr.status()["go"]["sample"]["format"], "pprof");
}

#[test]
fn pages_that_are_not_the_text_heap_profile_say_what_to_use() {
    let cg = V1Cgroup::create("pprofbad", 256 << 20);
    let hog = GoHog::start(&cg, &[], &[]);
    let cases = [
        // pprof's HTML index.
        ("/debug/pprof/", &["HTML", "/debug/pprof/heap?debug=1"][..]),
        // The default binary profile: gzip'd protobuf.
        ("/debug/pprof/heap", &["gzip", "?debug=1"][..]),
        ("/debug/pprof/heap?debug=0", &["gzip", "?debug=1"][..]),
    ];
    for (path, wants) in cases {
        let r = check_json(&hog, path);
        let go = &r["status"]["sources"]["go"];
        assert_eq!(go["up"], false, "{path}: {go:#}");
        let err = go["last_error"].as_str().unwrap_or_default();
        for want in wants {
            assert!(err.contains(want), "{path}: {err:?} lacks {want:?}");
        }
        assert!(err.contains(path), "{path}: the error names the URL: {err:?}");
        assert_eq!(
            r["status"]["go"],
            serde_json::Value::Null,
            "{path}: a failed scrape is not a zero"
        );
        assert!(
            r["status"]["memory"]["usage"].as_u64().is_some(),
            "the cgroup is still read"
        );
    }
}
