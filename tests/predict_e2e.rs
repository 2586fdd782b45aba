//! Prediction end to end: real Go programs in real v1 memory cgroups, leaking
//! to a real OOM kill, and the workloads that must never raise an alarm.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// headroom's pacing in these tests: Go scraped every 2 s.
const PACING: &[&str] = &["--go-interval", "2s", "--smaps-interval", "5s"];

fn headroom_for(hog: &GoHog, extra: &[&str]) -> Headroom {
    let mut args = PACING.to_vec();
    args.extend_from_slice(extra);
    headroom_watching(hog, &args)
}

/// One run of a leaking gohog to its real OOM kill with headroom watching
/// at this file's pacing (Go every 2 s).
fn to_the_kill(
    name: &str,
    limit_mib: u64,
    env: &[(&str, &str)],
    args: &[&str],
    max: Duration,
    each: impl FnMut(&V1Cgroup, &Headroom, f64),
) -> ToTheKill {
    ToTheKill::run(name, limit_mib, env, args, PACING, max, each)
}

#[test]
fn heap_leak_to_a_real_oom_kill_is_predicted_early_and_right() {
    // The incident's shape: a 2 MiB/s leak under a GC sawtooth (garbage) in a
    // 512 MiB cgroup. The kernel runs out when the heap's peak before a GC
    // (about twice the live heap) reaches the limit, long before the live
    // heap does.
    // headroom predicts when the limit-basis value (unreclaimable, by
    // default) reaches the limit: the run watches that in the kernel's own
    // files (`out_at`); the kill follows, at once or after a reclaim stall of
    // up to ~90 s.
    let run = to_the_kill(
        "leak",
        512,
        &[],
        &["-leak", "2", "-garbage", "40"],
        Duration::from_secs(300),
        |_, _, _| {},
    );
    let (ticks, killed_at, tl) = (&run.ticks, run.killed_at, &run.tl);
    let out_at = run.out_at;
    eprintln!("out of memory at {out_at:.1} s, killed at {killed_at:.1} s");
    let (warn, crit) = (run.first(1), run.first(2));
    assert!(
        out_at - warn >= 45.0,
        "warning only {:.0} s before running out:\n{tl}",
        out_at - warn
    );
    assert!(
        out_at - crit >= 30.0,
        "critical only {:.0} s before running out:\n{tl}",
        out_at - crit
    );
    // Once the window has data, the prediction is within 35 % of the truth,
    // or within 8 s near the end: the last GC cycle fills the heap from live
    // to its goal in ~6 s at this workload's 42 MiB/s of allocation, so when
    // in that cycle the limit is crossed is known to about that much (and the
    // Go runtime is scraped every 2 s).
    let mut checked = 0;
    for k in ticks.iter().filter(|k| k.t >= 45.0 && out_at - k.t >= 10.0) {
        let real = out_at - k.t;
        let tto = k.tto.unwrap_or_else(|| panic!("no prediction at {:.0} s:\n{tl}", k.t));
        let tolerance = (0.35 * real).max(8.0);
        assert!(
            (tto - real).abs() <= tolerance,
            "at {:.0} s predicted {tto:.0} s, real {real:.0} s:\n{tl}",
            k.t
        );
        checked += 1;
    }
    assert!(checked >= 20, "too few predictions checked ({checked}):\n{tl}");
    let before = ticks
        .iter()
        .filter(|k| k.t < out_at)
        .rev()
        .find(|k| !k.causes.is_empty())
        .expect("a diagnosis");
    assert!(before.causes.contains(&"heap_leak".to_owned()), "{tl}");
    assert!(!before.causes.contains(&"off_heap_growth".to_owned()), "{tl}");
    eprintln!("ran out at {out_at:.0} s, killed at {killed_at:.0} s, warning at {warn:.0} s, critical at {crit:.0} s");
}

#[test]
fn off_heap_growth_to_a_real_oom_kill_is_warned_and_told_apart() {
    // A steady heap; anonymous mmaps kept by the program grow 2 MiB/s.
    let run = to_the_kill(
        "offheap",
        192,
        &[],
        &["-hold", "16", "-mmap-leak", "2"],
        Duration::from_secs(200),
        |_, _, _| {},
    );
    let (ticks, killed_at, tl) = (&run.ticks, run.killed_at, &run.tl);
    let warn = run.first(1);
    assert!(
        killed_at - warn >= 20.0,
        "warning only {:.0} s before the kill:\n{tl}",
        killed_at - warn
    );
    let diagnosed = ticks
        .iter()
        .filter(|k| k.t < killed_at - 5.0)
        .rev()
        .find(|k| !k.causes.is_empty());
    let causes = &diagnosed.unwrap_or_else(|| panic!("no diagnosis:\n{tl}")).causes;
    assert!(causes.contains(&"off_heap_growth".to_owned()), "{causes:?}\n{tl}");
    assert!(!causes.contains(&"heap_leak".to_owned()), "{causes:?}\n{tl}");
    // Once established, the diagnosis holds: no flicker.
    let has = |k: &Tick| k.causes.iter().any(|c| c == "off_heap_growth");
    let from = ticks.iter().position(has).expect("diagnosed above");
    let span: Vec<&Tick> = ticks[from..].iter().filter(|k| k.t < killed_at - 5.0).collect();
    let held = span.iter().filter(|k| has(k)).count();
    assert!(
        held as f64 >= 0.9 * span.len() as f64,
        "off_heap_growth at {held} of {} polls once established:\n{tl}",
        span.len()
    );
}

/// A leak under GOMEMLIMIT (set below the cgroup's limit): the memory limit
/// sets the GC goal, so NextGC stays flat while the live heap grows; the
/// live heap is read from HeapAlloc then, the leak is diagnosed and warned
/// of before the kill.
#[test]
fn heap_leak_under_gomemlimit_is_diagnosed_and_warned_before_the_kill() {
    let mut binds = false;
    let mut env_limit = None;
    let run = to_the_kill(
        "memlimit",
        256,
        &[("GOMEMLIMIT", "160MiB")],
        &["-leak", "3", "-garbage", "30"],
        Duration::from_secs(240),
        |_, hr, _| {
            let st = hr.status();
            binds |= st["go"]["gomemlimit_binds"] == true;
            if let Some(m) = st["go"]["gomemlimit_env"].as_u64() {
                env_limit = Some(m);
            }
        },
    );
    let (ticks, killed_at, tl) = (&run.ticks, run.killed_at, &run.tl);
    assert_eq!(env_limit, Some(160 * MIB), "GOMEMLIMIT read from the environment");
    assert!(binds, "the memory limit was never seen to bind:\n{tl}");
    let warn = run.first(1);
    assert!(
        killed_at - warn >= 20.0,
        "warning only {:.0} s before the kill:\n{tl}",
        killed_at - warn
    );
    // From the first warning to the kill, the leak is diagnosed and a time
    // to OOM given at (nearly) every poll: while the memory limit binds,
    // NextGC stays flat, and NextGC / (1 + GOGC/100) would say the live
    // heap stopped growing.
    let span: Vec<&Tick> = ticks.iter().filter(|k| k.t >= warn && k.t < killed_at - 2.0).collect();
    let leak = span
        .iter()
        .filter(|k| k.causes.iter().any(|c| c == "heap_leak"))
        .count();
    let predicted = span.iter().filter(|k| k.tto.is_some()).count();
    assert!(
        leak as f64 >= 0.9 * span.len() as f64 && predicted as f64 >= 0.9 * span.len() as f64,
        "heap_leak at {leak}, a prediction at {predicted} of {} polls from the warning:\n{tl}",
        span.len()
    );
    eprintln!("GOMEMLIMIT leak: warning at {warn:.0} s, killed at {killed_at:.0} s");
}

/// A fast leak, killed about half a minute after the start: the start-up
/// rule calls it once the live heap has risen steadily across GC cycles,
/// where the former fixed 30 s grace left no warning before the kill.
#[test]
fn fast_leak_is_warned_within_the_first_half_minute() {
    let run = to_the_kill(
        "fastleak",
        256,
        &[],
        &["-leak", "4", "-garbage", "40"],
        Duration::from_secs(120),
        |_, _, _| {},
    );
    let (killed_at, tl) = (run.killed_at, &run.tl);
    let warn = run.first(1);
    eprintln!("fast leak: first warning at {warn:.1} s, killed at {killed_at:.1} s");
    assert!(
        warn < 30.0,
        "first warning at {warn:.0} s: no earlier than the former 30 s grace:\n{tl}"
    );
    assert!(
        killed_at - warn >= 8.0,
        "warning only {:.0} s before the kill:\n{tl}",
        killed_at - warn
    );
}

/// Writes a `mib` MiB file from inside the cgroup and reads it in a loop;
/// headroom watches the cgroup. Returns the last working set.
fn page_cache(c: &Calm, cg_name: &str, file: &std::path::Path, mib: u64, pause: &str) -> f64 {
    let cg = V1Cgroup::create(cg_name, c.limit_mib * MIB);
    let script = format!(
        "head -c {mib}M /dev/zero > {f} && while :; do cat {f} > /dev/null; {pause} done",
        f = file.display()
    );
    let mut reader = cg
        .command(std::path::Path::new("/bin/sh"))
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let hr = Headroom::start(&["--cgroup", cg.dir.to_str().unwrap()]);
    let ticks = watch_calm(&hr, CALM_SECS);
    let ws = hr.metrics()["headroom_memory_working_set_bytes"];
    let _ = reader.kill();
    let _ = reader.wait();
    assert_calm(c, &ticks);
    ws
}

/// How long each calm workload is watched (the trend grace is 30 s).
const CALM_SECS: u64 = 75;

#[test]
fn no_false_alarm_on_calm_workloads_start_up_included() {
    let scratch = tempfile::tempdir_in(project_root().join("target")).expect("scratch dir on disk");
    let big = scratch.path().join("big.bin");
    let small = scratch.path().join("small.bin");
    std::thread::scope(|scope| {
        // 1. A steady live heap with heavy garbage: a GC sawtooth, RSS ratcheting.
        scope.spawn(|| {
            let c = Calm {
                name: "sawtooth",
                limit_mib: 512,
                expect: &[],
            };
            let cg = V1Cgroup::create("calm-saw", c.limit_mib * MIB);
            let hog = GoHog::start(&cg, &[], &["-live", "100", "-garbage", "100"]);
            let hr = headroom_for(&hog, &[]);
            assert_calm(&c, &watch_calm(&hr, CALM_SECS));
        });
        // 2. Page cache: a file larger than the limit read in a loop.
        scope.spawn(|| {
            let c = Calm {
                name: "page cache, file larger than the limit",
                limit_mib: 256,
                expect: &["page_cache"],
            };
            page_cache(&c, "calm-cache-big", &big, 320, "");
        });
        // 3. Page cache that fits: it stays in active_file, working set high.
        scope.spawn(|| {
            let c = Calm {
                name: "page cache that fits",
                limit_mib: 256,
                expect: &[],
            };
            let ws = page_cache(&c, "calm-cache-fits", &small, 180, "sleep 0.2;");
            assert!(
                ws > 0.5 * (c.limit_mib * MIB) as f64,
                "the working set is high ({ws}) yet no alarm"
            );
        });
        // 4. Lazy free: 400 MiB released with MADV_FREE stays charged.
        scope.spawn(|| {
            let c = Calm {
                name: "lazy free",
                limit_mib: 512,
                expect: &["lazy_free"],
            };
            let cg = V1Cgroup::create("calm-lazy", c.limit_mib * MIB);
            let hog = GoHog::start(&cg, &[("GODEBUG", "madvdontneed=0")], &[]);
            let hr = headroom_for(&hog, &[]);
            hog.call("/hold?mib=400");
            hog.call("/drop");
            hog.call("/freeos");
            assert_calm(&c, &watch_calm(&hr, CALM_SECS));
        });
        // 6. A heap warming up to 200 MiB (a cache filling: fast, then
        //    slower, levelling) under a GC sawtooth.
        scope.spawn(|| {
            let c = Calm {
                name: "warm-up",
                limit_mib: 512,
                expect: &[],
            };
            let cg = V1Cgroup::create("calm-warm", c.limit_mib * MIB);
            let hog = GoHog::start(&cg, &[], &["-warm", "200", "-garbage", "40"]);
            let hr = headroom_for(&hog, &[]);
            assert_calm(&c, &watch_calm(&hr, CALM_SECS));
        });
        // 5. A fragmented heap.
        scope.spawn(|| {
            let c = Calm {
                name: "fragmented heap",
                limit_mib: 512,
                expect: &["fragmentation"],
            };
            let cg = V1Cgroup::create("calm-frag", c.limit_mib * MIB);
            let hog = GoHog::start(&cg, &[], &[]);
            let hr = headroom_for(&hog, &[]);
            hog.call("/fragment?mib=150");
            assert_calm(&c, &watch_calm(&hr, CALM_SECS));
        });
    });
}

/// Each shipped rule's alert name and its `severity` label, read from
/// deploy/prometheus/headroom-rules.yaml.
fn rule_severities() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(project_root().join("deploy/prometheus/headroom-rules.yaml")).unwrap();
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("- alert:") {
            name = Some(n.trim().to_owned());
        } else if let (Some(sev), Some(n)) = (line.strip_prefix("severity:"), &name) {
            out.insert(n.clone(), sev.trim().to_owned());
            name = None;
        }
    }
    out
}

#[test]
fn alerts_reach_alertmanager_and_the_webhook_and_a_profile_is_saved() {
    let am = Alertmanager::start();
    let hook = Webhook::start(1); // the first delivery fails: it must be retried
    let profiles = tempfile::tempdir().unwrap();
    let cg = V1Cgroup::create("alerts", 256 * MIB);
    let hog = GoHog::start(&cg, &[("GODEBUG", "madvdontneed=1")], &[]);
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    let (am_url, hook_url) = (am.url(), hook.url());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.env("POD_NAME", "shop-7d9f")
        .env("POD_NAMESPACE", "prod")
        .env("CONTAINER_NAME", "api");
    let hr = Headroom::start_with(
        cmd,
        &[
            "--pid",
            &pid,
            "--go-url",
            &url,
            "--go-interval",
            "1s",
            "--alertmanager-url",
            &am_url,
            "--webhook-url",
            &hook_url,
            "--profile-dir",
            profiles.path().to_str().unwrap(),
            "--alert-label",
            "cluster=prod, region=eu-west-1",
            "--runbook-base-url",
            "https://runbooks.example/headroom/docs",
        ],
    );
    // Fill the cgroup to ~94 %: a warning from how close the basis is.
    hog.call("/hold?mib=225");
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        if let Some(a) = am
            .alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HeadroomOOMRiskWarning")
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no alert in Alertmanager; headroom log:\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(alert["labels"]["severity"], "warning", "{alert:#}");
    // The shipped rule of that name has that severity: the pushed alert and
    // the rule's group together and page once.
    let rules = rule_severities();
    assert_eq!(
        rules.get("HeadroomOOMRiskWarning").map(String::as_str),
        Some("warning"),
        "{rules:?}"
    );
    assert_eq!(alert["labels"]["cluster"], "prod", "static labels: {alert:#}");
    assert_eq!(alert["labels"]["region"], "eu-west-1");
    let extra: Vec<&String> = alert["labels"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            ![
                "alertname",
                "severity",
                "namespace",
                "pod",
                "container",
                "process",
                "cluster",
                "region",
            ]
            .contains(&k.as_str())
        })
        .collect();
    assert!(extra.is_empty(), "labels the rules do not have: {extra:?}");
    let runbook = alert["annotations"]["runbook_url"].as_str().unwrap_or("");
    assert_eq!(
        runbook,
        "https://runbooks.example/headroom/docs/troubleshooting.md#oom-risk"
    );
    assert!(
        std::fs::read_to_string(project_root().join("docs/troubleshooting.md"))
            .unwrap()
            .contains("\n### OOM risk\n"),
        "the runbook section the link names exists"
    );
    assert_eq!(alert["labels"]["pod"], "shop-7d9f");
    assert_eq!(alert["labels"]["namespace"], "prod");
    assert_eq!(alert["labels"]["container"], "api");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("% of the limit"),
        "{alert:#}"
    );
    assert!(
        alert["annotations"]["diagnosis"]
            .as_str()
            .unwrap()
            .contains("gc_headroom"),
        "{alert:#}"
    );
    assert_eq!(alert["status"]["state"], "active");

    // The webhook: retried after the 503, then the risk change arrives.
    let deadline = Instant::now() + Duration::from_secs(15);
    while hook.events().is_empty() {
        assert!(Instant::now() < deadline, "no webhook delivery; log:\n{}", hr.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let ev = &hook.events()[0];
    assert_eq!(
        (ev["risk"].as_str(), ev["previous"].as_str()),
        (Some("warning"), Some("ok")),
        "{ev:#}"
    );
    assert_eq!(ev["labels"]["pod"], "shop-7d9f");
    assert_eq!(ev["labels"]["cluster"], "prod");
    assert_eq!(ev["alertname"], "HeadroomOOMRiskWarning");
    assert_eq!(ev["runbook_url"], runbook);
    assert!(*hook.requests.lock().unwrap() >= 2, "retried after the failure");

    // The heap profile taken when the risk rose: a real pprof profile.
    let deadline = Instant::now() + Duration::from_secs(15);
    let saved = loop {
        let st = hr.status();
        if let Some(p) = st["profiles"].as_array().and_then(|l| l.first()).cloned() {
            break p;
        }
        assert!(Instant::now() < deadline, "no profile listed; log:\n{}", hr.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let path = std::path::PathBuf::from(saved["path"].as_str().unwrap());
    assert!(path.starts_with(profiles.path()) && path.exists(), "{saved:#}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");
    let go = require_program("go");
    let out = std::process::Command::new(go)
        .args(["tool", "pprof", "-raw"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("PeriodType: space bytes"),
        "go tool pprof: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Memory returned: after the hysteresis period the alert resolves.
    hog.call("/drop");
    hog.call("/freeos");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active = am
            .alerts()
            .into_iter()
            .any(|a| a["labels"]["alertname"] == "HeadroomOOMRiskWarning" && a["status"]["state"] == "active");
        if !active {
            break;
        }
        assert!(Instant::now() < deadline, "alert not resolved; log:\n{}", hr.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hook
        .events()
        .iter()
        .any(|e| e["risk"] == "ok" && e["previous"] == "warning")
    {
        assert!(
            Instant::now() < deadline,
            "no webhook for the all-clear: {:?}",
            hook.events()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
