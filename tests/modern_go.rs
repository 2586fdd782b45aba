//! What takes Go containers down today, on real Go programs in real v1
//! memory cgroups at headroom's default pacing (cgroup every 1 s, Go every
//! 5 s): a goroutine leak to its OOM kill, a leak under a binding
//! GOMEMLIMIT, a plain leak called soon after start-up, and a leak watched
//! without the target's environment (GOGC and GOMEMLIMIT unknown).

mod common;

use common::*;
use std::time::Duration;

/// The error of the time to OOM at `fraction` of the way from the start to
/// running out of memory: |predicted − real| / real, with the prediction
/// and the truth.
fn error_at(run: &ToTheKill, fraction: f64) -> (f64, f64, f64) {
    let at = fraction * run.out_at;
    let k = run
        .ticks
        .iter()
        .rev()
        .find(|k| k.t <= at)
        .unwrap_or_else(|| panic!("no tick by {at:.0} s:\n{}", run.tl));
    let real = run.out_at - k.t;
    let tto = k
        .tto
        .unwrap_or_else(|| panic!("no prediction at {:.0} s:\n{}", k.t, run.tl));
    ((tto - real).abs() / real, tto, real)
}

fn has(k: &Tick, cause: &str) -> bool {
    k.causes.iter().any(|c| c == cause)
}

#[test]
fn a_goroutine_leak_is_told_from_a_heap_leak_and_predicted_to_its_kill() {
    // 25 goroutines/s parked for ever, each with a 64 KiB stack and 2 KiB of
    // heap: 1.6 MiB/s of stacks, outside the heap but in the GC goal.
    let profiles = tempfile::tempdir().expect("profile dir");
    let dir = profiles.path().to_str().expect("utf-8 path");
    let mut dom = None;
    let run = ToTheKill::run(
        "goroutines",
        256,
        &[],
        &["-goroutine-leak", "25", "-goroutine-stack-kib", "60", "-garbage", "10"],
        &["--profile-dir", dir],
        Duration::from_secs(240),
        |_, hr, _| {
            // Once called, the dashboard names it (rendered alongside).
            if dom.is_none()
                && hr.status()["analysis"]["findings"]
                    .to_string()
                    .contains("goroutine_leak")
            {
                let addr = hr.addr;
                dom = Some(std::thread::spawn(move || dashboard_dom(addr)));
            }
        },
    );
    let (ticks, killed_at, tl) = (&run.ticks, run.killed_at, &run.tl);
    let first = ticks
        .iter()
        .find(|k| has(k, "goroutine_leak"))
        .unwrap_or_else(|| panic!("goroutine_leak never called:\n{tl}"))
        .t;
    eprintln!("goroutine leak: called at {first:.0} s, killed at {killed_at:.0} s");
    assert!(first <= 25.0, "goroutine_leak only at {first:.0} s:\n{tl}");
    let span: Vec<&Tick> = ticks.iter().filter(|k| k.t >= first && k.t < killed_at - 2.0).collect();
    let held = span.iter().filter(|k| has(k, "goroutine_leak")).count();
    assert!(
        held as f64 >= 0.9 * span.len() as f64,
        "goroutine_leak at {held} of {} polls once called:\n{tl}",
        span.len()
    );
    let dom = dom
        .expect("the dashboard rendered")
        .join()
        .expect("the dashboard render");
    let findings = &dom[dom.find("id=\"findings\"").expect("the findings list")..];
    assert!(
        findings.contains("class=\"goroutine_leak\"") && findings.contains("Goroutines leak"),
        "{findings}"
    );
    let heap_leak = ticks.iter().filter(|k| has(k, "heap_leak")).count();
    assert_eq!(heap_leak, 0, "heap_leak called at {heap_leak} polls:\n{tl}");
    let warn = run.first(1);
    assert!(
        killed_at - warn >= 30.0,
        "warning only {:.0} s before the kill:\n{tl}",
        killed_at - warn
    );
    // The risk's rise saved the goroutine profile next to the heap profile.
    let mut saved: Vec<String> = std::fs::read_dir(profiles.path())
        .expect("the profile dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    let goroutine = saved
        .iter()
        .find(|n| n.starts_with("goroutine-") && n.ends_with(".pb.gz"))
        .unwrap_or_else(|| panic!("no goroutine profile saved: {saved:?}"));
    assert!(saved.iter().any(|n| n.starts_with("heap-")), "{saved:?}");
    let body = std::fs::read(profiles.path().join(goroutine)).expect("the goroutine profile");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip'd pprof profile");
    // Never on the dangerous side: the kill comes no sooner than the time
    // to OOM said, within 35 %. (It errs early: the heap's peak before each
    // GC is reached only at the end of a cycle, 5-9 s here.)
    for f in [0.4, 0.6, 0.8] {
        let (_, tto, real) = error_at(&run, f);
        eprintln!(
            "at {:.0} % of the way: predicted {tto:.0} s, real {real:.0} s",
            100.0 * f
        );
        assert!(
            tto <= 1.35 * real,
            "at {:.0} %: predicted {tto:.0} s, real {real:.0} s:\n{tl}",
            100.0 * f
        );
    }
}

/// Asserts the time to OOM at 40, 60 and 80 % of the way to the kill is
/// within `tolerance` of the truth.
fn assert_predicted(what: &str, run: &ToTheKill, tolerance: f64) {
    for f in [0.4, 0.6, 0.8] {
        let (err, tto, real) = error_at(run, f);
        eprintln!(
            "{what} at {:.0} % of the way: predicted {tto:.0} s, real {real:.0} s",
            100.0 * f
        );
        assert!(
            err <= tolerance,
            "{what} at {:.0} %: predicted {tto:.0} s, real {real:.0} s:\n{}",
            100.0 * f,
            run.tl
        );
    }
}

/// Prints the run and each fraction's error (measurement).
fn report(what: &str, run: &ToTheKill) {
    eprintln!("{what}:\n{}", run.tl);
    for f in [0.4, 0.6, 0.8] {
        if let Some(k) = run.ticks.iter().rev().find(|k| k.t <= f * run.out_at) {
            eprintln!(
                "{what} at {:.0} %: predicted {:?}, real {:.0} s (out of memory at {:.0} s, killed at {:.0} s)",
                100.0 * f,
                k.tto,
                run.out_at - k.t,
                run.out_at,
                run.killed_at
            );
        }
    }
}

/// A leak under GOMEMLIMIT=200MiB in a 320 MiB container: the limit holds
/// the heap for a while, then the GC runs back to back and the charge
/// grows with the live heap to the kill. The time to OOM is within 35 %
/// at 40, 60 and 80 % of the way.
#[test]
fn a_leak_under_a_binding_gomemlimit_is_predicted_within_35_percent() {
    let run = ToTheKill::run(
        "memlimit-tto",
        320,
        &[("GOMEMLIMIT", "200MiB")],
        &["-leak", "2", "-garbage", "30"],
        &[],
        Duration::from_secs(300),
        |_, _, _| {},
    );
    report("gomemlimit", &run);
    assert_predicted("GOMEMLIMIT leak", &run, 0.35);
}

/// A plain leak (2 MiB/s live under a GC sawtooth, 512 MiB) at the default
/// pacing is called within 20 s of start-up and predicted within 35 %.
#[test]
fn an_established_leak_is_called_within_20_s_at_the_default_pacing() {
    let run = ToTheKill::run(
        "plain-early",
        512,
        &[],
        &["-leak", "2", "-garbage", "40"],
        &[],
        Duration::from_secs(300),
        |_, _, _| {},
    );
    report("plain", &run);
    let called = run
        .ticks
        .iter()
        .find(|k| has(k, "heap_leak") && k.tto.is_some())
        .unwrap_or_else(|| panic!("no heap_leak:\n{}", run.tl))
        .t;
    eprintln!("plain leak: called at {called:.0} s, killed at {:.0} s", run.killed_at);
    assert!(called <= 20.0, "the leak called at {called:.0} s:\n{}", run.tl);
    assert_predicted("plain leak", &run, 0.35);
}

/// headroom unprivileged (another UID, so the target's environment is not
/// readable: GOGC and GOMEMLIMIT unknown) on a leak: GOGC is estimated from
/// the runtime's numbers and the prediction is within 50 %.
#[test]
fn unprivileged_leak_estimates_gogc_and_predicts_within_half() {
    let mut go = serde_json::Value::Null;
    let run = ToTheKill::run_with(
        "unpriv",
        256,
        &[],
        &["-leak", "3", "-garbage", "30"],
        |hog| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"));
            std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
            let (pid, url) = (hog.pid().to_string(), hog.url("/debug/vars"));
            Headroom::start_with(cmd, &["--pid", &pid, "--go-url", &url])
        },
        Duration::from_secs(200),
        |_, hr, _| {
            let st = hr.status();
            if st["go"]["gogc_estimate"].is_i64() {
                go = st["go"].clone();
            }
        },
    );
    report("unprivileged", &run);
    assert_eq!(go["gogc_env"], serde_json::Value::Null, "{go:#}");
    let estimate = go["gogc_estimate"].as_i64().unwrap_or(0);
    assert!(
        (60..=130).contains(&estimate),
        "GOGC estimated {estimate} (100 in fact): {go:#}"
    );
    assert_predicted("unprivileged", &run, 0.5);
}

/// At the default pacing (Go every 5 s, so the start-up rule may call a
/// rise from 4 Go scrapes), the calm Go workloads stay silent from their
/// start: a GC sawtooth, a heap warming up, and a pool of goroutines that
/// grows at start-up and then stays.
#[test]
fn calm_go_workloads_stay_silent_at_the_default_pacing() {
    const SECS: u64 = 60;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let c = Calm {
                name: "sawtooth at 5 s",
                limit_mib: 512,
                expect: &[],
            };
            let cg = V1Cgroup::create("calm5-saw", 512 << 20);
            let hog = GoHog::start(&cg, &[], &["-live", "100", "-garbage", "100"]);
            let hr = headroom_watching(&hog, &[]);
            assert_calm(&c, &watch_calm(&hr, SECS));
        });
        scope.spawn(|| {
            let c = Calm {
                name: "warm-up at 5 s",
                limit_mib: 512,
                expect: &[],
            };
            let cg = V1Cgroup::create("calm5-warm", 512 << 20);
            let hog = GoHog::start(&cg, &[], &["-warm", "200", "-garbage", "40"]);
            let hr = headroom_watching(&hog, &[]);
            assert_calm(&c, &watch_calm(&hr, SECS));
        });
        scope.spawn(|| {
            let c = Calm {
                name: "goroutine pool at 5 s",
                limit_mib: 256,
                expect: &[],
            };
            let cg = V1Cgroup::create("calm5-pool", 256 << 20);
            // 40 MiB of stacks started over 10 s, then no more.
            let hog = GoHog::start(
                &cg,
                &[],
                &["-goroutine-leak", "64", "-goroutine-stack-kib", "60", "-garbage", "10"],
            );
            let hr = headroom_watching(&hog, &[]);
            std::thread::sleep(Duration::from_secs(10));
            hog.call("/goroutine_leak?per_s=0");
            assert_calm(&c, &watch_calm(&hr, SECS));
        });
    });
}
