//! `headroom node` end to end on real v1 memory cgroups laid out as the
//! kubelet's cgroupfs driver lays them out (`kubepods/<qos>/pod<uid>/<id>`):
//! a Go leak to its real OOM kill, a calm Go service, a non-Go container and
//! a pod sandbox (a `pause` process), each in its own cgroup.

mod common;

use common::kubetree::{KubeTree, Proc};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

const LEAK_POD: &str = "6f1c2b9e-0d4a-4c4e-9f57-1a2b3c4d5e6f";
const LEAK_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const CALM_POD: &str = "0e9d8c7b-6a59-4483-b271-605f4e3d2c1b";
const CALM_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const PLAIN_POD: &str = "11111111-2222-4333-8444-555555555555";
const PLAIN_ID: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const PAUSE_ID: &str = "9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a";

fn key_labels(pod: &str, id: &str) -> String {
    format!("container=\"{}\",pod=\"{pod}\"", &id[..12])
}

fn series(m: &BTreeMap<String, f64>, name: &str, pod: &str, id: &str) -> Option<f64> {
    m.get(&format!("{name}{{{}}}", key_labels(pod, id))).copied()
}

fn targets(hr: &Headroom) -> Vec<Value> {
    let (code, body) = hr.get("/api/v1/targets");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("targets JSON");
    v["targets"].as_array().cloned().unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], pod: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["pod"] == pod)
}

#[test]
fn node_mode_watches_every_go_container_apart_and_counts_the_kill_on_the_leak_alone() {
    let mut tree = KubeTree::new();
    let tmp = tempfile::tempdir().unwrap();
    // The sandbox's process is called pause, as the kubelet's is.
    let pause = tmp.path().join("pause");
    std::fs::copy("/bin/sleep", &pause).expect("copy sleep");
    let leak_cg = tree.container("burstable", LEAK_POD, LEAK_ID, Some(160 * MIB));
    let sandbox_cg = tree.container("burstable", LEAK_POD, PAUSE_ID, None);
    let calm_cg = tree.container("besteffort", CALM_POD, CALM_ID, Some(512 * MIB));
    let plain_cg = tree.container("", PLAIN_POD, PLAIN_ID, Some(64 * MIB));
    let _sandbox = Proc::start(&sandbox_cg, &pause, &["600"]);
    let _plain = Proc::start(&plain_cg, Path::new("/bin/sleep"), &["600"]);
    let _calm = GoHog::start(&calm_cg, &[], &["-hold", "40"]);

    let root = tree.cgroup_root().display().to_string();
    let hook = Webhook::start(0);
    let hook_url = hook.url();
    let hr = Headroom::start_node(&[
        "--cgroup-root",
        &root,
        "--interval",
        "1s",
        "--window",
        "30s",
        "--webhook-url",
        &hook_url,
    ]);
    let m = hr.wait_metrics(Duration::from_secs(15), "the calm target watched", |m| {
        series(m, "headroom_memory_usage_bytes", CALM_POD, CALM_ID).is_some()
            && m.get("headroom_targets{state=\"skipped_sandbox\"}") == Some(&1.0)
    });
    assert_eq!(
        m.get("headroom_targets{state=\"skipped_not_go\"}"),
        Some(&1.0),
        "{m:#?}"
    );
    assert!(
        !m.keys().any(|k| k.contains(PLAIN_POD) || k.contains(&PAUSE_ID[..12])),
        "the non-Go container and the sandbox are not watched: {m:#?}"
    );
    // No runtime answers for these cgroups: keyed by pod UID and short ID,
    // and the listing says why.
    let (_, body) = hr.get("/api/v1/targets");
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["names"]["source"], "cgroup", "{listing:#}");
    assert!(
        listing["names"]["problem"].as_str().is_some_and(|p| !p.is_empty()),
        "{listing:#}"
    );
    // The calm one's numbers are its cgroup's.
    let usage = series(&m, "headroom_memory_usage_bytes", CALM_POD, CALM_ID).unwrap();
    let kernel = calm_cg.read_u64("memory.usage_in_bytes") as f64;
    assert_close("calm usage", usage, kernel, 10.0);
    assert_eq!(
        series(&m, "headroom_memory_limit_bytes", CALM_POD, CALM_ID),
        Some(512.0 * MIB as f64)
    );

    // The leak starts after discovery settled: a new container, found
    // within a round or two.
    let mut leak = GoHog::start(&leak_cg, &[], &["-leak", "3"]);
    let started = Instant::now();
    hr.wait_metrics(Duration::from_secs(10), "the leak watched", |m| {
        series(m, "headroom_memory_usage_bytes", LEAK_POD, LEAK_ID).is_some()
    });
    let rows = targets(&hr);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let go_version = Command::new(gohog_go()).arg("version").output().expect("go version");
    let go_version = String::from_utf8_lossy(&go_version.stdout).to_string();
    for (pod, id) in [(LEAK_POD, LEAK_ID), (CALM_POD, CALM_ID)] {
        let r = row(&rows, pod).unwrap_or_else(|| panic!("{pod} not listed: {rows:#?}"));
        assert_eq!(r["namespace"], "");
        assert_eq!(r["container"], &id[..12]);
        assert_eq!(r["pod_uid"], pod);
        assert_eq!(r["container_id"], id);
        let go = r["go"].as_str().unwrap_or_else(|| panic!("no Go version: {r}"));
        assert!(
            go.starts_with("go1.") && go_version.contains(go),
            "{go} vs {go_version}"
        );
        assert!(r["cgroup"].as_str().unwrap().ends_with(id), "{r}");
    }

    // To the kill: the leak is warned before it, the calm one never.
    let mut first_warning = None;
    let mut killed_at = None;
    while killed_at.is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "no kill within 120 s");
        let m = hr.metrics();
        if let Some(r) = series(&m, "headroom_oom_risk", LEAK_POD, LEAK_ID) {
            if r >= 1.0 && first_warning.is_none() {
                first_warning = Some(started.elapsed().as_secs_f64());
            }
        }
        let calm = series(&m, "headroom_oom_risk", CALM_POD, CALM_ID);
        assert_eq!(calm, Some(0.0), "the calm target raised a risk: {m:#?}");
        if leak.child.try_wait().expect("wait").is_some() {
            killed_at = Some(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let killed_at = killed_at.unwrap();
    let first_warning =
        first_warning.unwrap_or_else(|| panic!("no warning before the kill at {killed_at:.1} s\n{}", hr.log()));
    assert!(
        first_warning + 5.0 <= killed_at,
        "warned at {first_warning:.1} s, killed at {killed_at:.1} s"
    );
    assert!(
        leak_cg.read("memory.oom_control").contains("oom_kill 1"),
        "not an OOM kill: {}",
        leak_cg.read("memory.oom_control")
    );
    // The alert names the leaking container, and only it was alerted on.
    let events = hook.events();
    let leak_alert = events
        .iter()
        .find(|e| e["labels"]["pod"] == LEAK_POD)
        .unwrap_or_else(|| panic!("no alert for the leak: {events:#?}\n{}", hr.log()));
    assert_eq!(leak_alert["labels"]["container"], &LEAK_ID[..12], "{leak_alert:#}");
    assert!(leak_alert["labels"].get("namespace").is_none(), "{leak_alert:#}");
    assert!(
        events.iter().all(|e| e["labels"]["pod"] == LEAK_POD),
        "an alert for another target: {events:#?}"
    );
    let m = hr.wait_metrics(Duration::from_secs(10), "the kill counted", |m| {
        series(m, "headroom_oom_kills_total", LEAK_POD, LEAK_ID) == Some(1.0)
    });
    assert_eq!(series(&m, "headroom_oom_kills_total", CALM_POD, CALM_ID), Some(0.0));

    // The runtime removes the killed container's cgroup: listed as gone,
    // its series leave after the window, its kill stays with its pod.
    drop(leak);
    tree.remove(&leak_cg.dir.clone());
    std::mem::forget(leak_cg);
    let gone_at = Instant::now();
    wait_for_targets(&hr, "the leak listed as gone", |rows| {
        row(rows, LEAK_POD).is_some_and(|r| r["state"] == "gone")
    });
    // Its series other than the kill and exit counters: still there while gone
    // (its usage is not: the cgroup can no longer be read), then none.
    let others = |m: &BTreeMap<String, f64>| {
        m.keys()
            .filter(|k| {
                k.contains(LEAK_POD) && !k.starts_with("headroom_oom_kills") && !k.starts_with("headroom_target_exits")
            })
            .count()
    };
    let m = hr.metrics();
    assert!(others(&m) > 0, "the leak's series left at once: {m:#?}");
    assert!(m
        .keys()
        .any(|k| k.starts_with("headroom_target_info") && k.contains(LEAK_POD)));
    let m = hr.wait_metrics(
        Duration::from_secs(45),
        "the leak's series gone after the window",
        |m| others(m) == 0,
    );
    assert!(
        gone_at.elapsed() >= Duration::from_secs(25),
        "series left after {:?}, before the 30 s window",
        gone_at.elapsed()
    );
    assert_eq!(
        series(&m, "headroom_oom_kills_total", LEAK_POD, LEAK_ID),
        Some(1.0),
        "{m:#?}"
    );
    let exits = m.iter().find(|(k, _)| {
        k.starts_with("headroom_target_exits_total{") && k.contains(LEAK_POD) && k.contains("\"oom_kill\"")
    });
    assert_eq!(
        exits.map(|(_, v)| *v),
        Some(1.0),
        "the leak's exit, kept with its kill: {m:#?}"
    );
    assert!(series(&m, "headroom_memory_usage_bytes", CALM_POD, CALM_ID).is_some());
    assert!(row(&targets(&hr), LEAK_POD).is_none());
    // The pod goes: so does its kill.
    drop(_sandbox);
    tree.remove(&sandbox_cg.dir.clone());
    std::mem::forget(sandbox_cg);
    let pod_dir = tree.base.dir.join(format!("kubepods/burstable/pod{LEAK_POD}"));
    tree.remove(&pod_dir);
    hr.wait_metrics(Duration::from_secs(10), "the kill gone with its pod", |m| {
        series(m, "headroom_oom_kills_total", LEAK_POD, LEAK_ID).is_none()
    });
}

fn wait_for_targets(hr: &Headroom, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = targets(hr);
        if pred(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {rows:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `go` that built gohog (on PATH, as the test programs' build uses).
fn gohog_go() -> PathBuf {
    require_program("go")
}

#[test]
fn the_targets_api_and_the_per_target_routes() {
    let mut tree = KubeTree::new();
    let cg = tree.container("burstable", CALM_POD, CALM_ID, Some(256 * MIB));
    let _hog = GoHog::start(&cg, &[], &["-hold", "20"]);
    let root = tree.cgroup_root().display().to_string();
    let hr = Headroom::start_node(&["--cgroup-root", &root, "--interval", "500ms"]);
    let rows = wait_for_targets(&hr, "one target", |rows| rows.len() == 1);
    let path = rows[0]["status_url"].as_str().unwrap().to_owned();
    assert_eq!(path, format!("/api/v1/targets/_/{CALM_POD}/{}/status", &CALM_ID[..12]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status: Value = loop {
        let (code, body) = hr.get(&path);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["memory"]["usage"].as_u64().is_some() {
            break v;
        }
        assert!(Instant::now() < deadline, "no usage in {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["target"]["pid"].as_u64(), Some(_hog.pid() as u64));
    let (code, body) = hr.get(rows[0]["history_url"].as_str().unwrap());
    assert_eq!(code, 200, "{body}");
    for missing in [
        format!("/api/v1/targets/_/{CALM_POD}/nope/status"),
        "/api/v1/targets/x/y/z/history".to_owned(),
    ] {
        let (code, body) = hr.get(&missing);
        assert_eq!(code, 404, "{missing}: {body}");
        assert!(body.contains("/api/v1/targets"), "{body}");
    }
    // Node mode has no single target at the sidecar's routes.
    let (code, body) = hr.get("/api/v1/status");
    assert_eq!(code, 404);
    assert!(body.contains("/api/v1/targets"), "{body}");
    let (code, _) = hr.get("/readyz");
    assert_eq!(code, 200);
    let (code, _) = hr.get("/healthz");
    assert_eq!(code, 200);
}

#[test]
fn node_flags_are_checked_and_target_flags_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "node",
            "--max-targets",
            "0",
            "--all-containers",
            "maybe",
            "--cri-socket",
            "",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["--max-targets \"0\"", "--all-containers \"maybe\"", "--cri-socket"] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["node", "--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["node", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for f in headroom::config::NODE_FLAGS {
        assert!(help.contains(&format!("--{}", f.name)), "{help}");
    }
    for f in headroom::config::TARGET_ONLY {
        assert!(!help.contains(&format!("--{f} ")), "node --help offers --{f}: {help}");
    }
    assert!(help.contains("Default 5s in node mode"), "{help}");
}

/// A target whose cgroup file never answers: its `memory.usage_in_bytes` is
/// a FIFO with no writer, so opening it blocks its poller for real. The
/// other target is polled on time, `/healthz` stays 200, the stuck one is
/// listed `stalled`, and it is watched again once the read returns; SIGTERM
/// still stops headroom while a read is stuck.
#[test]
fn a_stuck_read_of_one_target_marks_it_alone_and_delays_no_other() {
    const STUCK_POD: &str = "5a5a5a5a-0000-4000-8000-000000000001";
    const STUCK_ID: &str = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";
    const FINE_POD: &str = "5a5a5a5a-0000-4000-8000-000000000002";
    const FINE_ID: &str = "e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2";
    // A tree of plain directories laid out as the kubelet's, both
    // containers holding the same real Go process.
    let root = tempfile::tempdir().unwrap();
    let hog = Proc(
        Command::new(gohog_path())
            .args(["-hold", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start gohog"),
    );
    let dir = |pod: &str, id: &str| root.path().join(format!("memory/kubepods/burstable/pod{pod}/{id}"));
    for (pod, id) in [(STUCK_POD, STUCK_ID), (FINE_POD, FINE_ID)] {
        std::fs::create_dir_all(dir(pod, id)).unwrap();
        std::fs::write(dir(pod, id).join("cgroup.procs"), format!("{}\n", hog.0.id())).unwrap();
        std::fs::write(dir(pod, id).join("memory.limit_in_bytes"), "268435456\n").unwrap();
    }
    std::fs::write(dir(FINE_POD, FINE_ID).join("memory.usage_in_bytes"), "1048576\n").unwrap();
    let fifo = dir(STUCK_POD, STUCK_ID).join("memory.usage_in_bytes");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");

    let root_arg = root.path().display().to_string();
    let hr = Headroom::start_node(&["--cgroup-root", &root_arg, "--interval", "500ms"]);
    let state = |rows: &[Value], pod: &str| row(rows, pod).map(|r| r["state"].as_str().unwrap().to_owned());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = targets(&hr);
        if state(&rows, STUCK_POD).as_deref() == Some("stalled") && state(&rows, FINE_POD).as_deref() == Some("watched")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stalled/watched: {rows:#?}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The other target's polls go on, on time.
    let last = |hr: &Headroom| {
        series(&hr.metrics(), "headroom_last_poll_timestamp_seconds", FINE_POD, FINE_ID)
            .expect("fine target's last poll")
    };
    let t0 = last(&hr);
    std::thread::sleep(Duration::from_secs(2));
    let t1 = last(&hr);
    assert!(t1 - t0 >= 1.0, "the fine target's polls stopped: {t0} then {t1}");
    assert_eq!(
        series(&hr.metrics(), "headroom_memory_usage_bytes", FINE_POD, FINE_ID),
        Some(1048576.0)
    );
    assert_eq!(hr.metrics().get("headroom_targets{state=\"stalled\"}"), Some(&1.0));
    assert_eq!(
        hr.get("/healthz").0,
        200,
        "one stuck target never fails the daemon's liveness"
    );

    // The read returns (a writer opens and closes the FIFO): watched again.
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO for writing");
    drop(w);
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, "2097152\n").unwrap();
    hr.wait_metrics(Duration::from_secs(10), "the stuck target watched again", |m| {
        m.get("headroom_targets{state=\"stalled\"}") == Some(&0.0)
            && series(m, "headroom_memory_usage_bytes", STUCK_POD, STUCK_ID) == Some(2097152.0)
    });

    // Stuck again: SIGTERM still stops headroom.
    std::fs::remove_file(&fifo).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::thread::sleep(Duration::from_secs(2));
    let st = hr.terminate();
    assert!(st.success(), "{st:?}");
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    drop(hog);
}
