//! The GOMEMLIMIT death spiral on a real Go process in a real cgroup v1
//! memory cgroup: a live heap just under GOMEMLIMIT with steady garbage
//! makes the GC run back to back; headroom calls `gc_thrash` early and holds
//! it, with no OOM kill. A calm GC sawtooth without GOMEMLIMIT stays silent.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const THRASH: &str = "headroom_diagnosis{cause=\"gc_thrash\"}";
const RATE: &str = "headroom_go_gc_cycles_per_second";
const CPU: &str = "headroom_go_gc_cpu_fraction";

fn causes(hr: &Headroom) -> Vec<String> {
    hr.status()["analysis"]["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["cause"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn gauge(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(name).unwrap_or(&f64::NAN)
}

#[test]
fn a_live_heap_just_under_gomemlimit_is_called_gc_thrash_and_held_without_a_kill() {
    let cg = V1Cgroup::create("gc-thrash", 320 * MIB);
    // 150 MiB live under GOMEMLIMIT=170MiB, 100 MiB/s of garbage: each GC
    // frees a few MiB, so the next starts at once.
    let hog = GoHog::start(&cg, &[("GOMEMLIMIT", "170MiB")], &["-live", "150", "-garbage", "100"]);
    let hr = headroom_fast(&hog, "/debug/vars");
    let started = Instant::now();
    let m = hr.wait_metrics(Duration::from_secs(30), "gc_thrash", |m| m.get(THRASH) == Some(&1.0));
    let called = started.elapsed();
    eprintln!(
        "gc_thrash after {called:?}: {:.1} cycles/s, GC CPU share {:.2}",
        gauge(&m, RATE),
        gauge(&m, CPU)
    );
    assert!(gauge(&m, RATE) >= 2.0, "{m:#?}");
    let st = hr.status();
    let f = st["analysis"]["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["cause"] == "gc_thrash"))
        .unwrap_or_else(|| panic!("no gc_thrash finding in the status: {st:#}"))
        .clone();
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("against GOMEMLIMIT 170 MiB") && evidence.contains("live heap 1"),
        "{f:#}"
    );
    assert!(f["advice"].as_str().unwrap().contains("Raise GOMEMLIMIT"), "{f:#}");
    let go = &st["go"];
    assert!(go["gc_cycles_per_second"].as_f64().unwrap() >= 2.0, "{go:#}");
    assert_eq!(go["gomemlimit_binds"], true, "{go:#}");
    // headroom check names it too, after sampling for 12 s (alongside).
    let check = spawn_check(&hog, "/debug/vars", 12);
    // The dashboard names it, and shows the GC pace (rendered alongside).
    let addr = hr.addr;
    let dom = std::thread::spawn(move || dashboard_dom(addr));
    // Held for 15 s more, the process alive and never OOM-killed.
    let hold_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < hold_until {
        let m = hr.metrics();
        assert_eq!(m.get(THRASH), Some(&1.0), "gc_thrash dropped: {m:#?}");
        assert_eq!(m.get("headroom_oom_kills_total"), Some(&0.0), "{m:#?}");
        assert!(!causes(&hr).contains(&"heap_leak".to_owned()), "{:?}", causes(&hr));
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = check.wait_with_output().expect("headroom check");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        text.contains("cause    gc_thrash: ") && text.contains("Raise GOMEMLIMIT") && text.contains("GC cycles"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = dom.join().expect("the dashboard render");
    let findings = &dom[dom.find("id=\"findings\"").expect("the findings list")..];
    assert!(
        findings.contains("class=\"gc_thrash\"") && findings.contains("The GC runs back to back under GOMEMLIMIT"),
        "{findings}"
    );
    let card = &dom[dom.find("id=\"go\"").expect("the Go card")..];
    let card = &card[..card.find("</dl>").unwrap()];
    assert!(card.contains("GC pace") && card.contains("cycles/s"), "{card}");
    let mut hog = hog;
    assert!(hog.child.try_wait().unwrap().is_none(), "gohog exited");
    assert_eq!(cg.read_u64("memory.failcnt"), 0, "the cgroup hit its limit");
}

#[test]
fn a_calm_gc_sawtooth_without_gomemlimit_is_not_gc_thrash() {
    let cg = V1Cgroup::create("gc-calm", 256 * MIB);
    let hog = GoHog::start(&cg, &[], &["-live", "20", "-garbage", "20"]);
    let hr = headroom_fast(&hog, "/debug/vars");
    // The GC pace is measured (not silent for want of numbers) ...
    let m = hr.wait_metrics(Duration::from_secs(20), "the GC pace over 10 s", |m| {
        m.contains_key(RATE) && hr.status()["go"]["gc_pace_span_ms"].as_u64().unwrap_or(0) >= 10_000
    });
    eprintln!(
        "calm: {:.1} cycles/s, GC CPU share {:.3}",
        gauge(&m, RATE),
        gauge(&m, CPU)
    );
    assert!(gauge(&m, RATE) > 0.0, "{m:#?}");
    // ... and never called gc_thrash.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let m = hr.metrics();
        assert_eq!(
            m.get(THRASH),
            Some(&0.0),
            "{m:#?}\n{:#}",
            hr.status()["analysis"]["findings"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
