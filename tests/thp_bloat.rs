//! Transparent huge pages on a real Go process in a real cgroup v1 memory
//! cgroup: a region advised MADV_HUGEPAGE and touched once per 2 MiB is
//! charged whole while the Go runtime holds a few MiB; headroom calls
//! `thp_bloat` within a few polls and holds it, with no other cause and no
//! OOM kill. A Go heap that itself sits in huge pages (the runtime counts
//! it) and a calm GC sawtooth stay silent.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const THP: &str = "headroom_diagnosis{cause=\"thp_bloat\"}";
const POLLS: &str = "headroom_poll_duration_seconds_count";
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

fn causes(st: &serde_json::Value) -> Vec<String> {
    st["analysis"]["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["cause"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn mib(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0) / MIB
}

/// The cgroup's huge pages, after the kernel has had a moment: fails (with
/// the machine's THP mode) when it gave the region none.
fn require_huge_pages(cg: &V1Cgroup, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let huge = cg.stat().get("total_rss_huge").copied().unwrap_or(0);
        if huge >= at_least {
            return huge;
        }
        assert!(
            Instant::now() < deadline,
            "the kernel gave {} MiB of huge pages, not {} MiB: these tests need transparent huge pages \
             ({THP_ENABLED} = always or madvise; it reads {:?})",
            huge / MIB,
            at_least / MIB,
            std::fs::read_to_string(THP_ENABLED).unwrap_or_default().trim()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sparsely_touched_huge_page_region_is_called_thp_bloat_and_held_without_a_kill() {
    let cg = V1Cgroup::create("thp-bloat", 512 * MIB);
    // 300 MiB mapped MADV_HUGEPAGE, one byte written per 2 MiB: 150 bytes
    // used, 300 MiB charged, none of it on the Go heap.
    let hog = GoHog::start(&cg, &[], &["-thp-mib", "300"]);
    require_huge_pages(&cg, 290 * MIB);
    let hr = headroom_fast(&hog, "/metrics");
    let started = Instant::now();
    let m = hr.wait_metrics(Duration::from_secs(20), "thp_bloat", |m| m.get(THP) == Some(&1.0));
    let called = started.elapsed();
    let polls = m.get(POLLS).copied().unwrap_or(f64::NAN);
    let st = hr.status();
    let b = &st["breakdown"]["huge_pages"];
    let g = &st["go"]["sample"];
    eprintln!(
        "thp_bloat after {called:?} ({polls} polls): huge pages {} MiB of {} MiB anon ({}), usage {} MiB, \
         Go Sys {} MiB, HeapReleased {} MiB, HeapInuse {} MiB",
        mib(&b["bytes"]),
        mib(&b["anon"]),
        b["source"],
        mib(&st["memory"]["usage"]),
        mib(&g["sys"]),
        mib(&g["heap_released"]),
        mib(&g["heap_inuse"]),
    );
    assert!(polls <= 10.0, "called after {polls} polls");
    assert_eq!(b["source"], "cgroup_v1", "{b:#}");
    assert!(mib(&b["bytes"]) >= 290 && mib(&b["bytes"]) <= 310, "{b:#}");
    assert_eq!(
        st["cgroup"]["stat"]["anon_thp"], b["bytes"],
        "the cgroup's total_rss_huge in the status"
    );
    assert!(mib(&st["smaps"]["anon_huge_pages"]) >= 290, "{:#}", st["smaps"]);
    let f = st["analysis"]["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["cause"] == "thp_bloat"))
        .unwrap_or_else(|| panic!("no thp_bloat finding in the status: {st:#}"))
        .clone();
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("anonymous memory in transparent huge pages")
            && evidence.contains("rss_huge of rss")
            && evidence.contains("the Go runtime holds"),
        "{f:#}"
    );
    let advice = f["advice"].as_str().unwrap();
    assert!(
        advice.contains("GODEBUG=disablethp=1")
            && advice.contains("max_ptes_none")
            && advice.contains("go1.19")
            && advice.contains("MADV_NOHUGEPAGE"),
        "the advice for the Go version /metrics names: {f:#}"
    );
    // headroom check names it too, after sampling for 8 s (alongside).
    let check = spawn_check(&hog, "/metrics", 8);
    // The dashboard names it (rendered alongside).
    let addr = hr.addr;
    let dom = std::thread::spawn(move || dashboard_dom(addr));
    // Held for 15 s more, alone: a static region is no leak and no growth
    // outside the heap; the process alive and never OOM-killed.
    let hold_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < hold_until {
        let m = hr.metrics();
        assert_eq!(m.get(THP), Some(&1.0), "thp_bloat dropped: {m:#?}");
        assert_eq!(m.get("headroom_oom_kills_total"), Some(&0.0), "{m:#?}");
        let st = hr.status();
        assert_eq!(causes(&st), ["thp_bloat"], "{:#}", st["analysis"]["findings"]);
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = check.wait_with_output().expect("headroom check");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        text.contains("cause    thp_bloat: ")
            && text.contains("GODEBUG=disablethp=1")
            && text.contains("huge pages (THP)"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = dom.join().expect("the dashboard render");
    let findings = &dom[dom.find("id=\"findings\"").expect("the findings list")..];
    assert!(
        findings.contains("class=\"thp_bloat\"")
            && findings.contains("Transparent huge pages hold memory the Go runtime does not use"),
        "{findings}"
    );
    let mut hog = hog;
    assert!(hog.child.try_wait().unwrap().is_none(), "gohog exited");
    assert_eq!(cg.read_u64("memory.failcnt"), 0, "the cgroup hit its limit");
}

#[test]
fn a_go_heap_in_huge_pages_and_a_calm_sawtooth_are_not_thp_bloat() {
    // A 200 MiB Go heap object in huge pages, every page used: the runtime
    // counts it (HeapInuse, Sys). Beside it a GC sawtooth.
    let heap_cg = V1Cgroup::create("thp-heap", 1024 * MIB);
    let heap_hog = GoHog::start(
        &heap_cg,
        &[],
        &["-thp-heap-mib", "200", "-live", "20", "-garbage", "20"],
    );
    require_huge_pages(&heap_cg, 190 * MIB);
    // An ordinary sawtooth, no huge pages asked for.
    let calm_cg = V1Cgroup::create("thp-calm", 256 * MIB);
    let calm_hog = GoHog::start(&calm_cg, &[], &["-live", "20", "-garbage", "20"]);
    let runs = [
        ("Go heap in huge pages", headroom_fast(&heap_hog, "/metrics")),
        ("calm sawtooth", headroom_fast(&calm_hog, "/metrics")),
    ];
    // Measured (not silent for want of numbers): huge pages and the Go
    // runtime read ...
    for (what, hr) in &runs {
        hr.wait_metrics(Duration::from_secs(20), "huge pages and Go data", |_| {
            let st = hr.status();
            st["breakdown"]["huge_pages"]["bytes"].is_u64() && st["go"]["sample"]["sys"].is_u64()
        });
        let st = hr.status();
        let b = &st["breakdown"]["huge_pages"];
        let g = &st["go"]["sample"];
        eprintln!(
            "{what}: huge pages {} MiB of {} MiB anon, Go Sys {} MiB − HeapReleased {} MiB",
            mib(&b["bytes"]),
            mib(&b["anon"]),
            mib(&g["sys"]),
            mib(&g["heap_released"]),
        );
    }
    let heap = hr_huge(&runs[0].1);
    assert!(heap >= 190, "the heap's huge pages: {heap} MiB");
    // ... and never called thp_bloat.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        for (what, hr) in &runs {
            let m = hr.metrics();
            assert_eq!(
                m.get(THP),
                Some(&0.0),
                "{what}: {m:#?}\n{:#}",
                hr.status()["analysis"]["findings"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The huge pages a headroom reads, MiB.
fn hr_huge(hr: &Headroom) -> u64 {
    mib(&hr.status()["breakdown"]["huge_pages"]["bytes"])
}
