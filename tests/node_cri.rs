//! `headroom node` on a Kubernetes node without a kubelet: a real containerd
//! runs real pods through its CRI, the test playing the kubelet (see
//! tests/common/cri.rs), and headroom reads names, annotations and exits
//! from the same CRI socket a DaemonSet would mount.
//!
//! Three pods, five containers: a Go leak to its OOM kill and the kubelet's
//! restart of it; a calm Go service beside a container that is no Go
//! program; a pod-level OOM kill with an idle Go sibling. Asserted: names as
//! the runtime has them, the Go endpoint found from the pod's annotation,
//! the leak warned before its kill and counted once on its container through
//! the restart, the sibling not counted, the sandboxes and the non-Go
//! container skipped, and the series gone after the pods are removed.

mod common;

use common::cri::*;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn labels(ns: &str, pod: &str, container: &str) -> String {
    format!("{{container=\"{container}\",namespace=\"{ns}\",pod=\"{pod}\"}}")
}

fn series(m: &BTreeMap<String, f64>, name: &str, ns: &str, pod: &str, container: &str) -> Option<f64> {
    m.get(&format!("{name}{}", labels(ns, pod, container))).copied()
}

fn targets(hr: &Headroom) -> Value {
    let (code, body) = hr.get("/api/v1/targets");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("targets JSON")
}

fn row(t: &Value, pod: &str, container: &str) -> Option<Value> {
    t["targets"]
        .as_array()?
        .iter()
        .find(|r| r["pod"] == pod && r["container"] == container)
        .cloned()
}

fn wait_row(hr: &Headroom, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let t = targets(hr);
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{t:#}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn annotated(mut spec: PodSpec, ns: &str, key: &str, url: &str) -> PodSpec {
    spec.namespace = ns.to_owned();
    spec.annotations.insert(key.to_owned(), url.to_owned());
    spec
}

#[test]
fn names_annotations_and_kills_per_container_through_a_restart_from_a_real_cri() {
    let bed = CriBed::start();
    let (leak_port, calm_port, worker_port, idle_port) = (free_port(), free_port(), free_port(), free_port());
    let leak_listen = format!("127.0.0.1:{leak_port}");

    // 1. shop/leaky: one Go container leaking toward its own 160 MiB limit.
    let leaky = bed.run_pod(&annotated(
        PodSpec::new("leaky"),
        "shop",
        "headroom.dev/go-url.app",
        &format!("http://{leak_listen}/debug/vars"),
    ));
    // 2. web/calm: a calm Go service and a container that is no Go program.
    let calm = bed.run_pod(&annotated(
        PodSpec::new("calm"),
        "web",
        "headroom.dev/go-url",
        &format!("http://127.0.0.1:{calm_port}/debug/vars"),
    ));
    // 3. batch/podlevel: the pod's limit binds; a leaking worker and an idle
    //    Go sibling without limits of their own.
    let mut pl = PodSpec::new("podlevel");
    pl.namespace = "batch".into();
    pl.memory_limit = Some(160 * MIB);
    let podlevel = bed.run_pod(&pl);

    let hold = |port: u16| ContainerSpec::gohog("x", &["-listen", &format!("127.0.0.1:{port}"), "-hold", "20"]);
    let calm_id = bed.create_container(
        &calm,
        &ContainerSpec {
            name: "api".into(),
            memory_limit: Some(512 * MIB),
            ..hold(calm_port)
        },
    );
    bed.start_container(&calm_id);
    let other_id = bed.create_container(&calm, &ContainerSpec::not_go("proxy"));
    bed.start_container(&other_id);
    let idle_id = bed.create_container(
        &podlevel,
        &ContainerSpec {
            name: "idle".into(),
            ..hold(idle_port)
        },
    );
    bed.start_container(&idle_id);

    let hook = Webhook::start(0);
    let hook_url = hook.url();
    let socket = bed.socket().display().to_string();
    let hr = Headroom::start_node(&[
        "--cri-socket",
        &socket,
        "--interval",
        "1s",
        "--go-interval",
        "1s",
        "--window",
        "30s",
        "--webhook-url",
        &hook_url,
    ]);

    // Names as the runtime has them; the sandboxes and the non-Go one skipped.
    let t = wait_row(&hr, "the calm pod's containers named", Duration::from_secs(20), |t| {
        row(t, "calm", "api").is_some() && row(t, "podlevel", "idle").is_some()
    });
    assert_eq!(t["names"]["source"], "cri", "{t:#}");
    let api = row(&t, "calm", "api").unwrap();
    assert_eq!(api["namespace"], "web");
    assert_eq!(api["names"], "cri");
    assert_eq!(api["restart_attempt"], 0);
    assert_eq!(api["container_id"], calm_id.as_str());
    assert_eq!(api["go_url"], format!("http://127.0.0.1:{calm_port}/debug/vars"));
    assert!(
        row(&t, "calm", "proxy").is_none(),
        "the non-Go container is not watched: {t:#}"
    );
    let idle = row(&t, "podlevel", "idle").unwrap();
    assert_eq!(idle["go_url"], Value::Null);
    assert!(
        idle["go_url_hint"]
            .as_str()
            .unwrap_or("")
            .contains("headroom.dev/go-url.idle"),
        "{idle:#}"
    );
    let m = hr.wait_metrics(Duration::from_secs(20), "the calm service's Go runtime read", |m| {
        series(m, "headroom_go_heap_inuse_bytes", "web", "calm", "api").is_some()
            && m.get("headroom_targets{state=\"skipped_not_go\"}") == Some(&1.0)
            && m.get("headroom_targets{state=\"skipped_sandbox\"}") == Some(&3.0)
    });
    assert!(
        m.keys()
            .all(|k| !k.contains("pod=\"calm\",") || !k.contains("container=\"proxy\"")),
        "no series for the non-Go container"
    );

    // The leak, to its kill; warned before it.
    let leak_id = bed.create_container(
        &leaky,
        &ContainerSpec {
            name: "app".into(),
            memory_limit: Some(160 * MIB),
            ..ContainerSpec::gohog("app", &["-listen", &leak_listen, "-leak", "6"])
        },
    );
    bed.start_container(&leak_id);
    let mut warned_at = None;
    let mut go_seen = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    let exit = loop {
        let st = bed.container_status(&leak_id);
        if st.state == k8s_cri::v1::ContainerState::ContainerExited {
            break st;
        }
        let m = hr.metrics();
        go_seen |= series(&m, "headroom_go_heap_inuse_bytes", "shop", "leaky", "app").is_some();
        if warned_at.is_none() && series(&m, "headroom_oom_risk", "shop", "leaky", "app").unwrap_or(0.0) >= 1.0 {
            warned_at = Some(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "the leak was not killed within 90 s\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!((exit.exit_code, exit.reason.as_str()), (137, "OOMKilled"), "{exit:?}");
    assert!(go_seen, "the leak's Go endpoint, from its annotation, was scraped");
    assert!(
        warned_at.is_some(),
        "the leak was not warned before its kill\n{}",
        hr.log()
    );

    // The kubelet's restart: attempt 1, a new cgroup, the same names.
    let again_id = bed.create_container(
        &leaky,
        &ContainerSpec {
            name: "app".into(),
            memory_limit: Some(160 * MIB),
            attempt: 1,
            ..ContainerSpec::gohog("app", &["-listen", &leak_listen, "-hold", "20"])
        },
    );
    bed.start_container(&again_id);
    let t = wait_row(&hr, "the restarted container watched", Duration::from_secs(20), |t| {
        row(t, "leaky", "app").is_some_and(|r| r["container_id"] == again_id.as_str() && r["state"] == "watched")
    });
    assert_eq!(row(&t, "leaky", "app").unwrap()["restart_attempt"], 1);
    let m = hr.wait_metrics(Duration::from_secs(20), "the restarted instance polled", |m| {
        series(m, "headroom_memory_usage_bytes", "shop", "leaky", "app").is_some_and(|u| u < 100.0 * MIB as f64)
    });
    assert_eq!(
        series(&m, "headroom_oom_kills_total", "shop", "leaky", "app"),
        Some(1.0),
        "the kill counted once on its container, through the restart\n{}",
        hr.log()
    );
    assert_eq!(
        m.get("headroom_target_exits_total{container=\"app\",namespace=\"shop\",pod=\"leaky\",reason=\"oom_kill\"}"),
        Some(&1.0)
    );

    // A pod-level kill: the worker dies, its idle sibling lives on.
    let worker_id = bed.create_container(
        &podlevel,
        &ContainerSpec {
            name: "worker".into(),
            ..ContainerSpec::gohog(
                "worker",
                &["-listen", &format!("127.0.0.1:{worker_port}"), "-leak", "20"],
            )
        },
    );
    bed.start_container(&worker_id);
    let st = bed.wait_exited(&worker_id, Duration::from_secs(60));
    assert_eq!(st.exit_code, 137, "{st:?}");
    let m = hr.wait_metrics(Duration::from_secs(20), "the pod-level kill counted", |m| {
        series(m, "headroom_oom_kills_total", "batch", "podlevel", "worker") == Some(1.0)
    });
    assert_eq!(
        series(&m, "headroom_oom_kills_total", "batch", "podlevel", "idle").unwrap_or(0.0),
        0.0,
        "the idle sibling was not killed"
    );
    assert_eq!(
        bed.container_status(&idle_id).state,
        k8s_cri::v1::ContainerState::ContainerRunning,
        "the sibling lives"
    );
    // Nothing counted twice on the leak meanwhile.
    assert_eq!(
        series(&m, "headroom_oom_kills_total", "shop", "leaky", "app"),
        Some(1.0)
    );
    let alerts = hook.events();
    assert!(
        alerts.iter().any(|e| e["labels"]["namespace"] == "shop"
            && e["labels"]["pod"] == "leaky"
            && e["labels"]["container"] == "app"),
        "an alert names namespace/pod/container: {alerts:#?}"
    );

    // The pods removed: every series of theirs leaves.
    bed.remove_pod(&leaky);
    bed.remove_pod(&calm);
    bed.remove_pod(&podlevel);
    hr.wait_metrics(Duration::from_secs(60), "the removed pods' series gone", |m| {
        m.keys()
            .all(|k| !(k.contains("pod=\"leaky\"") || k.contains("pod=\"calm\"") || k.contains("pod=\"podlevel\"")))
    });
}
