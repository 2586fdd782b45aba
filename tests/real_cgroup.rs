//! End to end on a real cgroup v1 memory cgroup: the real `headroom` binary
//! against a real Go process, compared with the kernel's own files.

mod common;

use common::*;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

fn gauge(m: &std::collections::BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} missing from scrape: {m:#?}"))
}

#[test]
fn matches_the_kernel_then_counts_the_oom_kill_and_keeps_serving() {
    let cg = V1Cgroup::create("oom", 256 * MIB);
    let hog = GoHog::start(&cg, &[], &[]);
    hog.call("/hold?mib=100");
    let pid = hog.pid().to_string();
    let hr = Headroom::start(&["--pid", &pid, "--interval", "100ms", "--smaps-interval", "1s"]);
    hr.wait_metrics(Duration::from_secs(10), "rss above 100 MiB", |m| {
        m.get("headroom_memory_rss_bytes")
            .is_some_and(|v| *v > 100.0 * MIB as f64)
    });
    // Let one more poll land, then read the kernel and headroom together.
    std::thread::sleep(Duration::from_millis(300));
    let kernel_usage = cg.read_u64("memory.usage_in_bytes") as f64;
    let stat = cg.stat();
    let kernel_rss = vm_rss(hog.pid()).expect("VmRSS") as f64;
    let m = hr.metrics();
    assert_eq!(gauge(&m, "headroom_memory_limit_bytes"), (256 * MIB) as f64);
    assert_close("usage", gauge(&m, "headroom_memory_usage_bytes"), kernel_usage, 3.0);
    assert_close("rss", gauge(&m, "headroom_memory_rss_bytes"), kernel_rss, 3.0);
    let ws = kernel_usage - stat["total_inactive_file"] as f64;
    assert_close("working set", gauge(&m, "headroom_memory_working_set_bytes"), ws, 3.0);
    let unrec = kernel_usage - (stat["total_inactive_file"] + stat["total_active_file"]) as f64;
    assert_close(
        "unreclaimable",
        gauge(&m, "headroom_memory_unreclaimable_bytes"),
        unrec,
        3.0,
    );
    assert_close(
        "anon",
        gauge(&m, "headroom_memory_anon_bytes"),
        stat["total_rss"] as f64,
        3.0,
    );
    assert!(
        m.contains_key("headroom_memory_lazyfree_bytes"),
        "smaps_rollup read as root"
    );
    assert_eq!(gauge(&m, "headroom_source_up{source=\"cgroup\"}"), 1.0);
    assert_eq!(gauge(&m, "headroom_source_up{source=\"proc\"}"), 1.0);
    assert_eq!(gauge(&m, "headroom_oom_kills_total"), 0.0);
    let status = hr.status();
    assert_eq!(status["target"]["cgroup"].as_str(), Some(cg.dir.to_str().unwrap()));
    assert_eq!(status["target"]["cgroup_version"], "v1");

    // Leak past the limit: the kernel kills gohog.
    let _ = common::http_get(hog.addr, "/leak?mib_per_s=100");
    let mut hog = hog;
    let exit = wait_exit(&mut hog.child, Duration::from_secs(30));
    assert!(!exit.success(), "gohog should have been killed");
    assert!(
        cg.read("memory.oom_control").contains("oom_kill 1"),
        "{}",
        cg.read("memory.oom_control")
    );
    hr.wait_metrics(Duration::from_secs(10), "headroom_oom_kills_total 1", |m| {
        m.get("headroom_oom_kills_total") == Some(&1.0)
    });
    // Exactly one, and still serving after the target is gone.
    std::thread::sleep(Duration::from_millis(500));
    let m = hr.metrics();
    assert_eq!(gauge(&m, "headroom_oom_kills_total"), 1.0);
    assert_eq!(gauge(&m, "headroom_source_up{source=\"proc\"}"), 0.0);
    assert_eq!(gauge(&m, "headroom_source_up{source=\"cgroup\"}"), 1.0);
    assert_eq!(hr.get("/healthz").0, 200);
    assert!(
        !m.contains_key("headroom_memory_rss_bytes"),
        "no RSS for a dead process, not 0"
    );
}

#[test]
fn process_name_follows_a_restart_into_a_new_cgroup_and_keeps_the_oom_count() {
    let name = format!("hogr{}", std::process::id());
    let (_dir, exe) = named_gohog(&name);
    let first = V1Cgroup::create("restart-a", 128 * MIB);
    let mut a = start_named(&first, &exe, &[]);
    let hr = Headroom::start(&["--process", &name, "--interval", "100ms"]);
    hr.wait_metrics(Duration::from_secs(10), "first target found", |m| {
        m.get("headroom_source_up{source=\"proc\"}") == Some(&1.0)
    });
    assert_eq!(hr.status()["target"]["pid"].as_u64(), Some(a.id() as u64));

    // Kill it with a real OOM kill: move a leaker into the same cgroup.
    let leaker = GoHog::start(&first, &[], &["-leak", "100"]);
    let mut leaker = leaker;
    let _ = wait_exit(&mut leaker.child, Duration::from_secs(30));
    hr.wait_metrics(Duration::from_secs(10), "one OOM kill", |m| {
        m.get("headroom_oom_kills_total") == Some(&1.0)
    });
    let _ = a.kill();
    let _ = a.wait();
    // A restart takes a while: headroom sees the target gone first.
    hr.wait_metrics(Duration::from_secs(10), "the target gone", |m| {
        m.get("headroom_source_up{source=\"proc\"}") == Some(&0.0)
    });

    // The container restarts: a new process in a new cgroup, whose kernel count is 0.
    let second = V1Cgroup::create("restart-b", 128 * MIB);
    let mut b = start_named(&second, &exe, &[]);
    let want = second.dir.to_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st = hr.status();
        if st["target"]["cgroup"].as_str() == Some(want.as_str()) && st["target"]["pid"].as_u64() == Some(b.id() as u64)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not follow the restart: {st:#}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = hr.metrics();
    assert_eq!(m["headroom_oom_kills_total"], 1.0, "the count survives the restart");
    assert!(hr.log().contains("new PID"), "{}", hr.log());
    let _ = b.kill();
    let _ = b.wait();
}

#[test]
fn cgroup_that_vanishes_mid_run_is_reported_and_polling_goes_on() {
    let cg = V1Cgroup::create("vanish", 128 * MIB);
    let dir = cg.dir.clone();
    let hr = Headroom::start(&["--cgroup", dir.to_str().unwrap(), "--interval", "100ms"]);
    hr.wait_metrics(Duration::from_secs(10), "cgroup up", |m| {
        m.get("headroom_source_up{source=\"cgroup\"}") == Some(&1.0)
    });
    drop(cg); // rmdir: the container exited
    let m = hr.wait_metrics(Duration::from_secs(10), "cgroup down", |m| {
        m.get("headroom_source_up{source=\"cgroup\"}") == Some(&0.0)
    });
    assert!(m["headroom_source_errors_total{source=\"cgroup\"}"] >= 1.0);
    assert!(
        !m.contains_key("headroom_memory_usage_bytes"),
        "a failed read is not a zero"
    );
    let st = hr.status();
    let err = st["sources"]["cgroup"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains(dir.to_str().unwrap()), "error names the path: {err}");
    assert_eq!(hr.get("/healthz").0, 200);
    assert!(hr.log().contains(dir.to_str().unwrap()), "{}", hr.log());
    assert!(hr.terminate().success(), "clean exit on SIGTERM");
}

#[test]
fn smaps_rollup_denied_is_reported_once_and_the_rest_goes_on() {
    use std::os::unix::process::CommandExt;
    let cg = V1Cgroup::create("denied", 256 * MIB);
    let hog = GoHog::start(&cg, &[], &[]);
    let pid = hog.pid().to_string();
    // As nobody, root's /proc/PID/smaps_rollup is denied (ptrace read check),
    // while /proc/PID/status and the cgroup files stay readable.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.uid(65534).gid(65534);
    let hr = Headroom::start_with(cmd, &["--pid", &pid, "--interval", "100ms", "--smaps-interval", "1s"]);
    hr.wait_metrics(Duration::from_secs(10), "rss", |m| {
        m.contains_key("headroom_memory_rss_bytes")
    });
    std::thread::sleep(Duration::from_millis(2500)); // several smaps periods
    let m = hr.metrics();
    assert_eq!(m["headroom_source_up{source=\"proc\"}"], 1.0);
    assert_eq!(m["headroom_source_up{source=\"cgroup\"}"], 1.0);
    assert!(!m.contains_key("headroom_memory_lazyfree_bytes"));
    let log = hr.log();
    let denied: Vec<_> = log
        .lines()
        .filter(|l| l.contains("smaps_rollup: permission denied"))
        .collect();
    assert_eq!(denied.len(), 1, "reported once:\n{log}");
    assert!(
        denied[0].contains("CAP_SYS_PTRACE"),
        "says what is needed: {}",
        denied[0]
    );
}
