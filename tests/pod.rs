//! The chart's example pod played by a real container runtime: the headroom
//! image built from the project's Dockerfile by podman (no registry: the base
//! images are local stand-ins, scripts/build-image.sh), the example
//! Deployment rendered by real Helm (tests/pod/kube.py) with gohog as the Go
//! service, and `podman kube play` on the host network with runc and v1
//! memory cgroups. headroom runs in its container exactly as the chart runs
//! it: its own UID, read-only root, no capabilities, the pod's shared PID
//! namespace, the target found by name.
//!
//! Each test plays one pod and removes it (by name) when it ends; the tests
//! run one at a time, because an OOM kill in one pod must not coincide with
//! another pod's events. The images stay in podman's store between runs:
//! the base stand-ins, localhost/headroom:VERSION (the product image) and
//! localhost/headroom-test-gohog (rebuilt only when gohog changes).
//!
//! Run alone: `cargo test --test pod -- --nocapture` (prints the timings).
//! Needs root, podman and runc (scripts/install-pod-deps.sh, which the test
//! runs), gohog (scripts/build-test-programs.sh) and the deploy-check venv
//! (scripts/check-deploy.sh --tools-only, which the test runs).

mod common;

use common::{free_port, gohog_path, http_get, parse_metrics, project_root};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// The Go service's container limit: small, so that gohog's leak reaches it
/// in seconds.
const APP_LIMIT_MIB: u64 = 128;
const HINT: &str = "run scripts/install-pod-deps.sh (podman, runc, debootstrap) and \
                    scripts/build-test-programs.sh (gohog); the README's test command does both";
const GOHOG_IMAGE: &str = "localhost/headroom-test-gohog";

/// One pod at a time (see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());
static SETUP: OnceLock<Setup> = OnceLock::new();

struct Setup {
    python: PathBuf,
    headroom_image: String,
}

fn podman() -> Command {
    let root = project_root();
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", root.join("tests/pod/containers.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", root.join("tests/pod/registries.conf"));
    cmd
}

/// Runs `cmd`, panicking with its output when it fails.
fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}; {HINT}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn script(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(project_root().join("scripts").join(name));
    cmd.args(args).current_dir(project_root());
    cmd
}

/// Installs what is missing and builds the images, once per test binary.
fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        let started = Instant::now();
        run(script("install-pod-deps.sh", &[]), "scripts/install-pod-deps.sh");
        gohog_path();
        run(
            script("check-deploy.sh", &["--tools-only"]),
            "scripts/check-deploy.sh --tools-only",
        );
        let python = project_root().join("target/deploy-venv/bin/python");
        assert!(
            python.exists(),
            "{} missing: run scripts/check-deploy.sh",
            python.display()
        );
        let headroom_image = format!("localhost/headroom:{}", env!("CARGO_PKG_VERSION"));
        let build = Instant::now();
        let mut cmd = script("build-image.sh", &["headroom", "gohog"]);
        cmd.env("HEADROOM_IMAGE", &headroom_image)
            .env("GOHOG_IMAGE", format!("{GOHOG_IMAGE}:latest"));
        run(cmd, "scripts/build-image.sh headroom gohog");
        eprintln!(
            "pod: setup {:.1} s (images {:.1} s)",
            started.elapsed().as_secs_f64(),
            build.elapsed().as_secs_f64()
        );
        Setup { python, headroom_image }
    })
}

/// Polls `f` every 200 ms until it returns Some, or panics after `timeout`
/// with `what` and the pod's logs.
fn wait_for<T>(pod: &Pod, timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", pod.diagnostics());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pod played from the chart's rendered example; removed on drop.
struct Pod {
    name: String,
    dir: tempfile::TempDir,
    headroom: SocketAddr,
    go_port: u16,
}

impl Pod {
    /// Renders the example with `values` (over the ones every pod here
    /// shares) and plays it.
    fn play(name: &str, leak_mib_per_s: f64, values: Value) -> Pod {
        let setup = setup();
        let hr_port = free_port();
        let go_port = free_port();
        let (repo, tag) = setup.headroom_image.rsplit_once(':').expect("image tag");
        let mut all = json!({
            "fullnameOverride": name,
            "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
            "port": hr_port,
            "env": [{"name": "RUST_LOG", "value": "info"}],
            "example": {
                "enabled": true,
                "image": {"repository": GOHOG_IMAGE, "tag": "latest", "pullPolicy": "Never"},
                "port": go_port,
                "resources": {
                    "requests": {"cpu": "10m", "memory": "32Mi"},
                    "limits": {"memory": format!("{APP_LIMIT_MIB}Mi")}
                },
                "sidecar": {
                    "target": {"process": "gohog", "containerName": "app"},
                    "goUrl": format!("http://127.0.0.1:{go_port}/debug/vars")
                }
            },
            "_podman": {
                "listen": format!("127.0.0.1:{hr_port}"),
                "namespace": "headroom-pod-test",
                "app_args": [
                    "-listen", format!("127.0.0.1:{go_port}"),
                    "-leak", leak_mib_per_s.to_string()
                ]
            }
        });
        merge(&mut all, values);
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = dir.path().join("pod.yaml");
        let mut render = Command::new(&setup.python);
        render
            .arg(project_root().join("tests/pod/kube.py"))
            .arg("render")
            .arg(project_root().join("helm/headroom"))
            .arg(all.to_string())
            .arg(&yaml);
        run(render, "rendering the chart's example (tests/pod/kube.py)");
        let pod = Pod {
            name: format!("{name}-example-pod-0"),
            dir,
            headroom: SocketAddr::from(([127, 0, 0, 1], hr_port)),
            go_port,
        };
        // A pod of that name left by an interrupted run goes first.
        pod.remove();
        let mut play = podman();
        // conmon, started from here (and restarting the containers later),
        // writes a file named `oom` into its working directory when the
        // kernel OOM-kills a container: keep it in the pod's temp dir.
        play.args(["kube", "play", "--network", "host"])
            .arg(&yaml)
            .current_dir(pod.dir.path());
        run(play, "podman kube play");
        pod
    }

    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    fn inspect(&self, container: &str) -> Value {
        let mut cmd = podman();
        cmd.args(["container", "inspect", &self.container(container)]);
        let out = run(cmd, "podman container inspect");
        let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
        v[0].clone()
    }

    /// The container's process as the host sees it, when it runs.
    fn host_pid(&self, container: &str) -> Option<u32> {
        let st = self.inspect(container);
        let pid = st["State"]["Pid"].as_u64()? as u32;
        (st["State"]["Running"] == true && pid > 0).then_some(pid)
    }

    fn restarts(&self, container: &str) -> u64 {
        self.inspect(container)["RestartCount"].as_u64().unwrap_or(0)
    }

    fn logs(&self, container: &str) -> String {
        let mut cmd = podman();
        cmd.args(["logs", &self.container(container)]);
        match cmd.output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(podman logs: {e})"),
        }
    }

    fn diagnostics(&self) -> String {
        let metrics = http_get(self.headroom, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_else(|e| format!("(GET /metrics: {e})"));
        let status = http_get(self.headroom, "/api/v1/status")
            .map(|(_, b)| b)
            .unwrap_or_else(|e| format!("(GET /api/v1/status: {e})"));
        let headroom_metrics: String = metrics
            .lines()
            .filter(|l| l.starts_with("headroom_") && !l.starts_with("headroom_go_"))
            .collect::<Vec<_>>()
            .join("\n");
        // The short, telling parts first: a CI log may keep only the head.
        format!(
            "--- threads\n{}{}--- headroom log\n{}\n--- app log\n{}\n--- headroom metrics\n{headroom_metrics}\n--- status\n{status}",
            self.threads("headroom"),
            self.threads("app"),
            tail(&self.logs("headroom"), 40),
            tail(&self.logs("app"), 20),
        )
    }

    /// Where each thread of a container's process waits in the kernel, and
    /// its cgroups: what a stall is made of.
    fn threads(&self, container: &str) -> String {
        let Some(pid) = self.host_pid(container) else {
            return format!("{container}: not running\n");
        };
        let mut out = format!("{container} (host pid {pid})\n");
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let p = t.path();
                let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
                let state = read("status")
                    .lines()
                    .find(|l| l.starts_with("State:"))
                    .unwrap_or("")
                    .to_owned();
                // The kernel stack (root only) says what a sleeping
                // thread waits for: a lock, a cgroup's OOM, the freezer.
                let stack: Vec<String> = read("stack")
                    .lines()
                    .take(6)
                    .map(|l| l.split_whitespace().nth(1).unwrap_or(l).to_owned())
                    .collect();
                // The CPU it last ran on: field 39 of stat, counted after
                // the command's closing parenthesis (field 2).
                let stat = read("stat");
                let cpu = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(36))
                    .unwrap_or("?")
                    .to_owned();
                out.push_str(&format!(
                    "  {} {} {state} cpu={cpu} wchan={} stack={}\n",
                    t.file_name().to_string_lossy(),
                    read("comm").trim(),
                    read("wchan"),
                    stack.join("<")
                ));
            }
        }
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        // CPU bandwidth, freezer and memory state: a pod that stopped as a
        // whole may have been throttled, frozen or stuck in a cgroup's OOM.
        for line in cgroups.lines() {
            let mut it = line.splitn(3, ':');
            let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            for (ctrl, files) in [
                ("cpu", &["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat"][..]),
                ("freezer", &["freezer.state"][..]),
                (
                    "memory",
                    &["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.oom_control"][..],
                ),
            ] {
                if ctrls.split(',').any(|c| c == ctrl) {
                    for f in files {
                        let p = format!("/sys/fs/cgroup/{ctrls}{path}/{f}");
                        let v = std::fs::read_to_string(&p).unwrap_or_default();
                        out.push_str(&format!(
                            "  {f}: {}\n",
                            v.split_whitespace().collect::<Vec<_>>().join(" ")
                        ));
                    }
                }
            }
        }
        out.push_str(&cgroups);
        out
    }

    fn metrics(&self) -> Option<BTreeMap<String, f64>> {
        let (code, body) = http_get(self.headroom, "/metrics").ok()?;
        (code == 200).then(|| parse_metrics(&body))
    }

    fn status(&self) -> Option<Value> {
        let (code, body) = http_get(self.headroom, "/api/v1/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// A GET to gohog's control endpoint on the host network.
    fn gohog(&self, path: &str) -> Option<Value> {
        let (code, body) = http_get(SocketAddr::from(([127, 0, 0, 1], self.go_port)), path).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    fn remove(&self) {
        let mut cmd = podman();
        cmd.args(["pod", "rm", "--force", "--time", "0", "--ignore", &self.name]);
        let _ = cmd.output();
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.remove();
        let _ = &self.dir;
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The v1 memory cgroup directory of a host process, from /proc/PID/cgroup.
fn memory_cgroup(host_pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{host_pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == "memory")
            .then(|| Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The PID of a host process in its own (the pod's) PID namespace: the last
/// field of /proc/PID/status `NSpid:`.
fn pid_in_pod(host_pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Whether a host process is alive (not gone, not a zombie).
fn alive(host_pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{host_pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The node's OOM kills so far: /proc/vmstat `oom_kill`.
fn node_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .expect("/proc/vmstat oom_kill")
}

/// The sidecar's one series `name` (whatever its key labels: namespace,
/// pod, container of the watched container), without other labels.
fn metric(m: &BTreeMap<String, f64>, name: &str) -> Option<f64> {
    m.iter()
        .find(|(k, _)| {
            k.as_str() == name
                || k.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('{'))
                    .and_then(|rest| rest.strip_suffix('}'))
                    .is_some_and(|labels| {
                        labels
                            .split(',')
                            .all(|l| ["namespace=", "pod=", "container="].iter().any(|p| l.starts_with(p)))
                    })
        })
        .map(|(_, v)| *v)
}

/// Waits for headroom to serve and to have found the Go process; its
/// series name the watched container: the pod's namespace and name from
/// the downward API, the app container's name.
fn wait_watching(pod: &Pod) -> BTreeMap<String, f64> {
    let m = wait_for(pod, Duration::from_secs(60), "headroom to serve and find gohog", || {
        let m = pod.metrics()?;
        (metric(&m, "headroom_memory_rss_bytes")? > 0.0).then_some(m)
    });
    let key = m
        .keys()
        .find(|k| k.starts_with("headroom_memory_rss_bytes{"))
        .unwrap_or_else(|| panic!("no key labels on the series: {m:#?}"));
    for label in ["container=\"app\"", "namespace=\"headroom-pod-test\"", "pod=\"hrpod-"] {
        assert!(key.contains(label), "{label} not in {key}");
    }
    m
}

/// What the OOM pod showed up to gohog's first kill.
struct FirstKill {
    pod: Pod,
    started: Instant,
    risk_before_kill: f64,
    usage: (f64, u64),
}

/// Plays the OOM pod and watches it to gohog's first OOM kill: the limit,
/// the usage and the warning headroom shows meanwhile.
fn play_to_first_kill() -> FirstKill {
    let pod = Pod::play("hrpod-oom", 2.0, json!({}));
    // The budget counts from the pod's start: the first pod played also
    // builds the images (over a minute after a source change).
    let started = Instant::now();
    wait_watching(&pod);
    let first = pod.host_pid("app").expect("the app runs");
    let app_cgroup = memory_cgroup(first).expect("the app's memory cgroup");
    let limit = read_u64(&app_cgroup.join("memory.limit_in_bytes")).expect("app limit");
    assert_eq!(
        limit,
        APP_LIMIT_MIB << 20,
        "the pod's app limit in {}",
        app_cgroup.display()
    );

    let mut risk_before_kill = 0.0_f64;
    let mut usage_matched = None;
    while alive(first) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "gohog was not OOM-killed within 120 s\n{}",
            pod.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
        let Some(m) = pod.metrics() else { continue };
        let host_usage = read_u64(&app_cgroup.join("memory.usage_in_bytes"));
        if !alive(first) {
            break; // this scrape may already show the kill
        }
        risk_before_kill = risk_before_kill.max(metric(&m, "headroom_oom_risk").unwrap_or(0.0));
        if let Some(l) = metric(&m, "headroom_memory_limit_bytes") {
            assert_eq!(l, limit as f64, "headroom's limit is not the app container's");
        }
        if let (Some(u), Some(h)) = (metric(&m, "headroom_memory_usage_bytes"), host_usage) {
            // Above 64 MiB the usage can only be the app's (headroom's own
            // limit is 32 MiB); a scrape is up to one poll behind the host's
            // read at 8 MiB/s.
            if u > 64.0 * MIB && (u - h as f64).abs() < 16.0 * MIB {
                usage_matched = Some((u, h));
            }
        }
    }
    let usage = usage_matched.unwrap_or_else(|| {
        panic!(
            "headroom never showed the app container's usage (> 64 MiB, within 16 MiB of {})\n{}",
            app_cgroup.display(),
            pod.diagnostics()
        )
    });
    FirstKill {
        pod,
        started,
        risk_before_kill,
        usage,
    }
}

/// The chart's default pod: headroom as the app's UID, so with ptrace-read
/// access. gohog leaks to its 128 MiB limit and is OOM-killed and restarted
/// by the runtime (restartPolicy Always) at least twice. headroom must read
/// the app container's limit and usage (not its own), warn before the first
/// kill, count each kill exactly once, follow each new process, and stay
/// within its own container's limit.
#[test]
fn example_pod_counts_each_oom_kill_once_through_restarts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let node_kills_before = node_oom_kills();
    let FirstKill {
        pod,
        started,
        risk_before_kill,
        usage: (u, h),
    } = play_to_first_kill();
    eprintln!(
        "pod: first kill after {:.1} s; usage {:.1} MiB (host {:.1} MiB); risk before it {risk_before_kill}",
        started.elapsed().as_secs_f64(),
        u / MIB,
        h as f64 / MIB
    );
    assert!(
        risk_before_kill >= 1.0,
        "no warning (headroom_oom_risk >= 1) before the OOM kill\n{}",
        pod.diagnostics()
    );

    // The second kill, then stop the leak in the third process so that the
    // number of kills stays put.
    wait_for(&pod, Duration::from_secs(120), "a second OOM kill and restart", || {
        (pod.restarts("app") >= 2).then_some(())
    });
    wait_for(
        &pod,
        Duration::from_secs(30),
        "the restarted gohog to stop leaking",
        || pod.gohog("/leak?mib_per_s=0"),
    );
    let kills = pod.restarts("app");
    // The kernel's count of OOM kills (the node's: other kills may add to
    // it, never take away) rose by at least as many.
    let node_kills = node_oom_kills() - node_kills_before;
    assert!(
        node_kills >= kills,
        "{kills} restarts but /proc/vmstat oom_kill rose by {node_kills}"
    );
    eprintln!("pod: {kills} OOM kills after {:.1} s", started.elapsed().as_secs_f64());

    // Counted once each, and not again on later polls.
    wait_for(
        &pod,
        Duration::from_secs(30),
        &format!("headroom_oom_kills_total = {kills}"),
        || (metric(&pod.metrics()?, "headroom_oom_kills_total")? == kills as f64).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let m = pod.metrics().expect("metrics");
    assert_eq!(
        metric(&m, "headroom_oom_kills_total"),
        Some(kills as f64),
        "the count moved after it had settled\n{}",
        pod.diagnostics()
    );
    assert_eq!(
        pod.restarts("app"),
        kills,
        "gohog was killed again after its leak stopped"
    );

    // The new process followed.
    let now = pod.host_pid("app").expect("the app runs again");
    let want = pid_in_pod(now).expect("NSpid of the app");
    wait_for(
        &pod,
        Duration::from_secs(15),
        &format!("status target.pid = {want}"),
        || (pod.status()?["target"]["pid"].as_u64()? == want as u64).then_some(()),
    );

    // headroom within its own container's limit, never restarted.
    let hr = pod.host_pid("headroom").expect("headroom runs");
    let hr_cgroup = memory_cgroup(hr).expect("headroom's memory cgroup");
    let hr_limit = read_u64(&hr_cgroup.join("memory.limit_in_bytes")).expect("headroom limit");
    let hr_peak = read_u64(&hr_cgroup.join("memory.max_usage_in_bytes")).expect("headroom peak");
    assert_eq!(hr_limit, 32 << 20, "the chart's 32Mi limit on headroom");
    assert!(
        hr_peak < hr_limit,
        "headroom peaked at {hr_peak} bytes, at its limit {hr_limit}"
    );
    assert_eq!(pod.restarts("headroom"), 0, "headroom itself was restarted");
    eprintln!(
        "pod: headroom peak {:.1} MiB of {:.0} MiB; test {:.1} s",
        hr_peak as f64 / MIB,
        hr_limit as f64 / MIB,
        started.elapsed().as_secs_f64()
    );
}

/// A plain SIGKILL of the app (`kill -9`, not the OOM killer) is no
/// OOM kill: the count stays 0, and the restarted process is followed.
#[test]
fn example_pod_counts_no_kill_for_a_plain_sigkill() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let pod = Pod::play("hrpod-kill", 0.0, json!({}));
    wait_watching(&pod);
    let first = pod.host_pid("app").expect("the app runs");
    // A plain SIGKILL of the process (`podman kill` would mark the
    // container as stopped by the user, and podman does not restart those).
    common::unsafe_kill(first as i32, 9);
    let now = wait_for(&pod, Duration::from_secs(30), "the app to be restarted", || {
        pod.host_pid("app").filter(|&p| p != first)
    });
    let want = pid_in_pod(now).expect("NSpid of the app");
    wait_for(
        &pod,
        Duration::from_secs(20),
        &format!("status target.pid = {want}"),
        || (pod.status()?["target"]["pid"].as_u64()? == want as u64).then_some(()),
    );
    // A few more polls for a late count to show.
    std::thread::sleep(Duration::from_secs(3));
    let m = pod.metrics().expect("metrics");
    assert_eq!(
        metric(&m, "headroom_oom_kills_total"),
        Some(0.0),
        "a SIGKILL was counted as an OOM kill\n{}",
        pod.diagnostics()
    );
    eprintln!("pod: SIGKILL test {:.1} s", started.elapsed().as_secs_f64());
}

/// headroom as another UID than the app, so with no ptrace access to it (no
/// /proc/PID/root, no smaps): it must say it runs unprivileged, take the
/// limit from HEADROOM_MEMORY_LIMIT (the downward API's limits.memory of the
/// app container), and keep predicting on the rss basis.
#[test]
fn example_pod_unprivileged_predicts_from_rss_and_the_downward_api_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // The app runs as the example's 65534; headroom as the image's 65532.
    let pod = Pod::play("hrpod-unpriv", 1.5, json!({"runAsUser": 65532, "runAsGroup": 65532}));
    wait_watching(&pod);
    let hr = pod.host_pid("headroom").expect("headroom runs");
    let app = pod.host_pid("app").expect("the app runs");
    let uid = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            })
            .unwrap_or_default()
    };
    assert_eq!(
        (uid(hr).as_str(), uid(app).as_str()),
        ("65532", "65534"),
        "the pod's UIDs"
    );
    let limit = (APP_LIMIT_MIB << 20) as f64;
    let (m, st) = wait_for(
        &pod,
        Duration::from_secs(60),
        "an rss-basis prediction against the downward API's limit, with target.access = \"unprivileged\"",
        || {
            let m = pod.metrics()?;
            let st = pod.status()?;
            let ok = st["target"]["access"] == "unprivileged"
                && metric(&m, "headroom_memory_limit_bytes")? == limit
                && metric(&m, "headroom_memory_rss_bytes")? > 0.0
                && metric(&m, "headroom_time_to_oom_seconds")?.is_finite();
            ok.then_some((m, st))
        },
    );
    assert!(alive(app), "gohog was killed before headroom predicted it");
    eprintln!(
        "pod: unprivileged: rss {:.1} MiB, time to OOM {:.0} s, limit basis {}; test {:.1} s",
        metric(&m, "headroom_memory_rss_bytes").unwrap_or(0.0) / MIB,
        metric(&m, "headroom_time_to_oom_seconds").unwrap_or(f64::NAN),
        st["limit_basis"],
        started.elapsed().as_secs_f64()
    );
}
