//! Alert receivers that are down for minutes: the real binary on a copy of
//! a fixture tree whose memory the test moves (at the limit → critical,
//! well below → ok after the risk's clearing time), a webhook receiver that
//! refuses connections, then answers 503, then takes the alerts, and a real
//! Alertmanager behind a switch. Each receiver must end at the current
//! state, in order, and the webhook URL's secret path and query must appear
//! in no line headroom prints.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The fixture's container cgroup (the target's, from its /proc/PID/cgroup).
const SCOPE: &str = "sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7f3c2a1e_5b8d_4c6f_9e2a_1d4b6c8e0f12.slice/cri-containerd-3b1f9d7c5a2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d.scope";
/// The fixture's usage; less its file LRU it is 136220672 bytes
/// unreclaimable: 97 % of the 140 MB limit the tests set, critical.
const USAGE_CRITICAL: u64 = 271_310_848;
/// 30 MiB less: 75 % of the limit, ok.
const USAGE_OK: u64 = USAGE_CRITICAL - 30 * 1024 * 1024;

/// A copy of the v2 fixture tree that the test can change.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture("v2").join("."))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// Sets the target's memory usage (in place: headroom may keep the file open).
fn set_usage(tree: &Path, bytes: u64) {
    std::fs::write(tree.join(SCOPE).join("memory.current"), format!("{bytes}\n")).unwrap();
}

fn start(tree: &Path, receiver_flags: &[&str]) -> Headroom {
    let mut args = vec!["--pid", "4242", "--memory-limit", "140000000"];
    args.extend_from_slice(receiver_flags);
    start_on_tree(tree, &args)
}

fn risk(hr: &Headroom) -> String {
    hr.status()["analysis"]["risk"].as_str().unwrap_or("").to_owned()
}

/// Waits up to `timeout` for `pred`, saying `what` and the log otherwise.
fn wait(hr: &Headroom, timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(r: &Received) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

#[test]
fn a_webhook_down_for_minutes_ends_at_the_current_state_in_order_and_its_secret_is_never_printed() {
    let tree = tree();
    let hook = Receiver::down();
    let url = format!(
        "http://127.0.0.1:{}/services/T000/B000/SECRETXYZ?token=SECRET2",
        hook.port
    );
    let hr = start(tree.path(), &["--webhook-url", &url]);
    let down_since = Instant::now();

    // ok → critical while nothing listens, then back to ok (after the
    // minute the risk takes to clear), still while nothing listens.
    wait(&hr, Duration::from_secs(20), "critical", || risk(&hr) == "critical");
    set_usage(tree.path(), USAGE_OK);
    wait(&hr, Duration::from_secs(100), "the risk back to ok", || {
        risk(&hr) == "ok"
    });

    // Then it answers 503 for a while, and at last takes the alerts.
    hook.listen(Answer::Unavailable);
    wait(&hr, Duration::from_secs(90), "a retry answered 503", || {
        !hook.received().is_empty()
    });
    while down_since.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    hook.set(Answer::Ok);
    wait(&hr, Duration::from_secs(90), "a delivery after the outage", || {
        hook.received().iter().any(|r| r.status == 200)
    });
    let delivered: Vec<serde_json::Value> = hook.received().iter().filter(|r| r.status == 200).map(json).collect();
    let last = delivered.last().unwrap();
    assert_eq!(
        (last["risk"].as_str(), last["previous"].as_str()),
        (Some("ok"), Some("critical")),
        "the current state, not the one the outage began with: {delivered:#?}"
    );
    assert_eq!(risk(&hr), "ok");

    // Up now: the next change arrives, after the one before.
    set_usage(tree.path(), USAGE_CRITICAL);
    wait(&hr, Duration::from_secs(20), "critical again", || {
        risk(&hr) == "critical"
    });
    wait(&hr, Duration::from_secs(30), "the new state delivered", || {
        hook.received()
            .iter()
            .rfind(|r| r.status == 200)
            .is_some_and(|r| json(r)["risk"] == "critical")
    });
    assert_eq!(risk(&hr), "critical", "the receiver ends where the status is");

    // In order: no attempt carries an older event than one before it, and
    // every delivery is newer than the last.
    let all = hook.received();
    let times: Vec<(u64, u16)> = all
        .iter()
        .map(|r| (json(r)["time_ms"].as_u64().unwrap(), r.status))
        .collect();
    assert!(times.windows(2).all(|w| w[0].0 <= w[1].0), "out of order: {times:?}");
    let ok_times: Vec<u64> = times.iter().filter(|t| t.1 == 200).map(|t| t.0).collect();
    assert!(
        ok_times.windows(2).all(|w| w[0] < w[1]),
        "a delivery repeated or out of order: {times:?}"
    );

    // Secrets: in no line of stderr or stdout; the receiver is named by host.
    let log = hr.log();
    for secret in ["SECRETXYZ", "SECRET2", "T000", "B000", "/services"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} printed: {lines:#?}");
    }
    let shown = format!("webhook http://127.0.0.1:{}/…", hook.port);
    let failing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&shown) && l.contains("not delivered"))
        .collect();
    assert!(
        !failing.is_empty(),
        "the outage is logged, naming the receiver; log:\n{log}"
    );
    // Logged at the first failure and at most once a minute after it.
    assert!(
        failing.len() <= 4,
        "{} lines for a 2-minute outage: {failing:#?}",
        failing.len()
    );
    let recovered = log
        .lines()
        .find(|l| l.contains(&shown) && l.contains("delivering again"))
        .unwrap_or_else(|| panic!("the recovery is logged; log:\n{log}"));
    let attempts: u64 = recovered
        .split("after ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{recovered}"));
    assert!(
        attempts >= 6,
        "more attempts than the 5 it used to give up after: {recovered}"
    );
    assert!(failing.len() < attempts as usize, "not every attempt is logged");
    // The series say it too: the failed attempts, the deliveries, nothing
    // left waiting.
    let m = hr.metrics();
    let failed = m["headroom_alert_delivery_failures_total{receiver=\"webhook\"}"];
    assert!(
        failed >= attempts as f64,
        "{failed} failures counted, {attempts} logged"
    );
    assert!(m["headroom_alert_deliveries_total{receiver=\"webhook\"}"] >= 2.0);
    assert_eq!(m["headroom_alert_pending_targets{receiver=\"webhook\"}"], 0.0);
}

#[test]
fn an_alertmanager_resolve_sent_while_it_is_down_is_delivered_when_it_is_up() {
    let am = Alertmanager::start();
    let switch = Receiver::down();
    switch.listen(Answer::Forward(am.addr));
    let tree = tree();
    let am_url = format!("http://127.0.0.1:{}", switch.port);
    let hr = start(tree.path(), &["--alertmanager-url", &am_url]);
    let ours = |am: &Alertmanager| {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HeadroomOOMRiskCritical")
    };
    wait(&hr, Duration::from_secs(30), "the alert firing in Alertmanager", || {
        ours(&am).is_some()
    });
    let fired = Instant::now();
    let alert = ours(&am).unwrap();
    assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");

    // Down; the risk clears; the resolve fails.
    switch.set(Answer::Unavailable);
    set_usage(tree.path(), USAGE_OK);
    wait(&hr, Duration::from_secs(100), "the risk back to ok", || {
        risk(&hr) == "ok"
    });
    let refused_resolve = |r: &Received| r.status == 503 && json(r)[0].get("endsAt").is_some();
    wait(&hr, Duration::from_secs(30), "a resolve refused", || {
        switch.received().iter().any(refused_resolve)
    });
    assert!(ours(&am).is_some(), "Alertmanager still has it active while down");

    // Up: the resolve gets through, long before Alertmanager would time the
    // alert out by itself (resolve_timeout, 5 minutes after the last send).
    switch.set(Answer::Forward(am.addr));
    wait(
        &hr,
        Duration::from_secs(90),
        "the alert resolved in Alertmanager",
        || ours(&am).is_none(),
    );
    assert!(
        fired.elapsed() < Duration::from_secs(240),
        "resolved by the resolve, not by the timeout: {:?}",
        fired.elapsed()
    );
    let delivered: Vec<serde_json::Value> = switch.received().iter().filter(|r| r.status == 200).map(json).collect();
    let resolve = delivered
        .iter()
        .flat_map(|b| b.as_array().unwrap().iter())
        .find(|a| a.get("endsAt").is_some())
        .unwrap_or_else(|| panic!("no resolve taken: {delivered:#?}"));
    let time = |k: &str| humantime::parse_rfc3339(resolve[k].as_str().unwrap()).unwrap();
    assert!(time("endsAt") >= time("startsAt"), "{resolve:#}");
    assert_eq!(resolve["labels"]["severity"], "critical", "{resolve:#}");
}
