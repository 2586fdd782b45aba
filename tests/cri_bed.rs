//! The CRI test bed itself: a private containerd driven through the CRI as
//! the kubelet drives it runs gohog pods in cgroupfs-driver cgroups, reports
//! an OOM kill as the kubelet sees it, restarts a container in its sandbox,
//! and leaves nothing behind when dropped.

mod common;

use common::cri::{cgroup_hierarchies, mounts_under, ContainerSpec, CriBed, PodSpec, ProcId, MEMORY_ROOT};
use common::{free_port, http_get};
use k8s_cri::v1::ContainerState as State;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn comm(pid: u32) -> String {
    read_trimmed(Path::new(&format!("/proc/{pid}/comm")))
}

/// Waits until the process's name is `want`: right after `RunPodSandbox` or
/// `StartContainer` the process may still be runc's init (`runc:[2:INIT]`),
/// not yet the image's entrypoint.
fn wait_comm(pid: u32, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let name = comm(pid);
        if name == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} is still {name:?}, not {want:?}, after 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The process's memory cgroup, from `/proc/PID/cgroup`.
fn memory_cgroup_of(pid: u32) -> String {
    let text = read_trimmed(Path::new(&format!("/proc/{pid}/cgroup")));
    text.lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, controllers, path) = (it.next()?, it.next()?, it.next()?);
            controllers.split(',').any(|c| c == "memory").then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no memory line in /proc/{pid}/cgroup:\n{text}"))
}

fn procs_of(cgroup: &Path) -> Vec<u32> {
    read_trimmed(&cgroup.join("cgroup.procs"))
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

fn wait_gone(dir: &Path, timeout: Duration) -> Duration {
    let start = Instant::now();
    while dir.exists() {
        assert!(
            start.elapsed() < timeout,
            "{} still exists {timeout:?} after its container exited",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[test]
fn a_pod_runs_gohog_in_the_cgroupfs_layout_with_the_kubelets_labels() {
    let bed = CriBed::start();
    assert!(bed.socket().exists(), "{} is not there", bed.socket().display());
    let mut spec = PodSpec::new("gohog-web");
    spec.namespace = "headroom-test".to_owned();
    spec.memory_limit = Some(512 * MIB);
    spec.labels.insert("app".to_owned(), "gohog".to_owned());
    let pod = bed.run_pod(&spec);

    // The pod's cgroup, made before the sandbox, in every hierarchy.
    let pod_rel = format!("kubepods/burstable/pod{}", spec.uid);
    assert_eq!(pod.memory_cgroup(), Path::new(MEMORY_ROOT).join(&pod_rel));
    let hierarchies = cgroup_hierarchies();
    assert!(hierarchies.len() > 1, "cgroup hierarchies: {hierarchies:?}");
    for h in &hierarchies {
        assert!(h.join(&pod_rel).is_dir(), "{} is missing", h.join(&pod_rel).display());
    }
    assert_eq!(
        read_trimmed(&pod.memory_cgroup().join("memory.limit_in_bytes")),
        (512 * MIB).to_string()
    );
    // The sandbox's process is the pause stand-in, in its own container cgroup.
    let pause = bed.sandbox_pid(&pod).expect("the sandbox's pid");
    wait_comm(pause, "pause");
    assert_eq!(memory_cgroup_of(pause), format!("/{pod_rel}/{}", pod.sandbox_id));

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut container = ContainerSpec::gohog("web", &["-listen", &listen]);
    container.memory_limit = Some(128 * MIB);
    let id = bed.create_container(&pod, &container);
    bed.start_container(&id);

    let status = bed.container_status(&id);
    assert_eq!(status.state, State::ContainerRunning, "{status:?}");
    assert_eq!(status.cgroup_dir, pod.memory_cgroup().join(&id));
    assert_eq!(
        read_trimmed(&status.cgroup_dir.join("memory.limit_in_bytes")),
        (128 * MIB).to_string(),
        "the container's limit"
    );
    let pid = status.pid.expect("a running container's pid");
    let gohog = ProcId::of(pid).expect("gohog runs");
    wait_comm(pid, "gohog");
    assert!(
        procs_of(&status.cgroup_dir).contains(&pid),
        "pid {pid} is not in {}",
        status.cgroup_dir.display()
    );
    assert_eq!(memory_cgroup_of(pid), format!("/{pod_rel}/{id}"));

    // On the host's network, its HTTP endpoint answers.
    let addr: SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let vars = loop {
        match http_get(addr, "/debug/vars") {
            Ok((200, body)) => break body,
            other => assert!(
                Instant::now() < deadline,
                "gohog in the pod does not answer on {addr}: {other:?}\ncontainer log:\n{}",
                bed.container_log(&id)
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let vars: serde_json::Value = serde_json::from_str(&vars).expect("expvar JSON");
    assert!(vars["memstats"]["HeapAlloc"].as_u64().is_some(), "{vars}");

    // ListContainers carries the kubelet's labels.
    let listed = bed
        .list_containers()
        .into_iter()
        .find(|c| c.id == id)
        .expect("the container in ListContainers");
    let label = |k: &str| listed.labels.get(k).cloned().unwrap_or_default();
    assert_eq!(label("io.kubernetes.pod.name"), "gohog-web");
    assert_eq!(label("io.kubernetes.pod.namespace"), "headroom-test");
    assert_eq!(label("io.kubernetes.pod.uid"), spec.uid);
    assert_eq!(label("io.kubernetes.container.name"), "web");
    assert_eq!(listed.pod_sandbox_id, pod.sandbox_id);
    let meta = listed.metadata.expect("metadata");
    assert_eq!((meta.name.as_str(), meta.attempt), ("web", 0));

    // StopContainer: SIGTERM ends gohog, and its cgroup goes with it.
    bed.stop_container(&id);
    let stopped = bed.container_status(&id);
    assert_eq!(stopped.state, State::ContainerExited, "{stopped:?}");
    assert_eq!(stopped.pid, None);
    assert!(!gohog.is_alive(), "gohog (pid {pid}) outlived StopContainer");
    wait_gone(&stopped.cgroup_dir, Duration::from_secs(5));

    bed.remove_pod(&pod);
    let errors = bed.log_errors();
    assert!(errors.is_empty(), "containerd logged errors:\n{}", errors.join("\n"));
    for dir in &pod.cgroup_dirs {
        assert!(!dir.exists(), "{} is still there after remove_pod", dir.display());
    }
}

#[test]
fn an_oom_killed_container_is_reported_as_the_kubelet_sees_it_and_restarts_in_its_sandbox() {
    let bed = CriBed::start();
    let mut spec = PodSpec::new("gohog-oom");
    spec.memory_limit = Some(256 * MIB);
    let pod = bed.run_pod(&spec);

    let mut leaker = ContainerSpec::gohog("leaker", &["-listen", "127.0.0.1:0", "-leak", "40"]);
    leaker.memory_limit = Some(64 * MIB);
    let first = bed.create_container(&pod, &leaker);
    bed.start_container(&first);
    let first_cgroup = pod.memory_cgroup().join(&first);
    assert!(first_cgroup.is_dir(), "{} is missing", first_cgroup.display());

    let started = Instant::now();
    let exited = bed.wait_exited(&first, Duration::from_secs(60));
    let killed_after = started.elapsed();
    assert_eq!(exited.exit_code, 137, "{exited:?}");
    assert_eq!(exited.reason, "OOMKilled", "{exited:?}");
    assert_eq!(exited.cgroup_dir, first_cgroup);
    let gone_after = wait_gone(&first_cgroup, Duration::from_secs(5));
    println!("OOM-killed {killed_after:?} after the start; its cgroup gone {gone_after:?} after the exit was seen");

    // The kubelet's restart: attempt 1 in the same sandbox, a new cgroup
    // under the same pod directory.
    let mut again = ContainerSpec::gohog("leaker", &["-listen", "127.0.0.1:0"]);
    again.memory_limit = Some(64 * MIB);
    again.attempt = 1;
    let second = bed.create_container(&pod, &again);
    assert_ne!(second, first);
    bed.start_container(&second);
    let status = bed.container_status(&second);
    assert_eq!(status.state, State::ContainerRunning, "{status:?}");
    assert_eq!(status.cgroup_dir.parent(), Some(pod.memory_cgroup().as_path()));
    assert_ne!(status.cgroup_dir, first_cgroup);
    assert!(status.cgroup_dir.is_dir());
    assert_eq!(
        read_trimmed(&status.cgroup_dir.join("memory.limit_in_bytes")),
        (64 * MIB).to_string()
    );
    let pid = status.pid.expect("pid");
    assert!(procs_of(&status.cgroup_dir).contains(&pid));

    // Both attempts are listed, with the same identifying labels.
    let listed = bed.list_containers();
    let find = |id: &str| {
        listed
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} not in ListContainers"))
    };
    let (a0, a1) = (find(&first), find(&second));
    assert_eq!(a0.state(), State::ContainerExited);
    assert_eq!(a1.state(), State::ContainerRunning);
    assert_eq!(a0.metadata.as_ref().map(|m| m.attempt), Some(0));
    assert_eq!(a1.metadata.as_ref().map(|m| m.attempt), Some(1));
    for key in [
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.pod.uid",
        "io.kubernetes.container.name",
    ] {
        assert_eq!(a0.labels.get(key), a1.labels.get(key), "{key}");
        assert!(a1.labels.contains_key(key), "{key} missing: {:?}", a1.labels);
    }
    bed.remove_pod(&pod);
}

/// Drops a bed with a pod left running (after killing its containerd when
/// `crash`) and checks that nothing it started or made is left.
fn drop_and_check(crash: bool) {
    let bed = CriBed::start();
    let pod = bed.run_pod(&PodSpec::new("left-running"));
    let id = bed.create_container(&pod, &ContainerSpec::gohog("idle", &["-listen", "127.0.0.1:0"]));
    bed.start_container(&id);
    let status = bed.container_status(&id);
    assert_eq!(status.state, State::ContainerRunning, "{status:?}");

    let mut procs: Vec<(String, ProcId)> = Vec::new();
    let mut record = |what: &str, pid: u32| {
        let p = ProcId::of(pid).unwrap_or_else(|| panic!("{what} (pid {pid}) is not running"));
        procs.push((what.to_owned(), p));
    };
    record("containerd", bed.containerd_pid());
    let shims = bed.shim_pids();
    assert!(!shims.is_empty(), "no shim names {}", bed.socket().display());
    for pid in shims {
        record("shim", pid);
    }
    record("pause", bed.sandbox_pid(&pod).expect("sandbox pid"));
    record("gohog", status.pid.expect("container pid"));
    let root: PathBuf = bed.root().to_owned();
    assert!(
        !mounts_under(&root).is_empty(),
        "a running pod should have mounts under {}",
        root.display()
    );
    let shim_socket = bed.shim_socket(&pod.sandbox_id);
    assert!(
        shim_socket.exists(),
        "the shim's socket {} is not there",
        shim_socket.display()
    );
    let dirs = pod.cgroup_dirs.clone();

    if crash {
        let pid = i32::try_from(bed.containerd_pid()).unwrap();
        // SAFETY: kill(2) on the containerd this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    }
    // The pod is left running: the drop must clean it up.
    drop(bed);

    let alive: Vec<_> = procs.iter().filter(|(_, p)| p.is_alive()).collect();
    assert!(alive.is_empty(), "still running after the drop: {alive:?}");
    let mounts = mounts_under(&root);
    assert!(mounts.is_empty(), "still mounted after the drop: {mounts:?}");
    assert!(!root.exists(), "{} is still there", root.display());
    assert!(!shim_socket.exists(), "{} is still there", shim_socket.display());
    for dir in &dirs {
        assert!(!dir.exists(), "{} is still there after the drop", dir.display());
    }
}

#[test]
fn dropping_the_bed_leaves_no_process_mount_or_cgroup_behind() {
    drop_and_check(false);
}

#[test]
fn dropping_the_bed_cleans_up_after_a_dead_containerd_too() {
    drop_and_check(true);
}
