//! A containerd CRI test bed in which the test plays the kubelet: a private
//! containerd with its CRI plugin, driven through the CRI gRPC API
//! (runtime.v1) the way the kubelet drives it, with real pods and containers
//! in real cgroups.
//!
//! How it works. [`CriBed::start`] writes a containerd configuration under a
//! temp dir (its own root, state, socket and runc root, so it never meets a
//! system containerd), starts Debian's containerd on it and waits until the
//! CRI answers `Version`. The CRI plugin runs the runc v2 shim with the
//! cgroupfs driver (`SystemdCgroup = false`) on the overlayfs snapshotter,
//! with `restrict_oom_score_adj` (root in a container may lack
//! CAP_SYS_RESOURCE, and without it every sandbox fails to start). There is no
//! registry: two one-layer OCI images are built from local files at start-up
//! and imported with `ctr` — [`PAUSE_IMAGE`] (`tests/go/pause`, the sandbox
//! image: it blocks until SIGTERM, and its process is called `pause` as the
//! kubelet's is) and [`GOHOG_IMAGE`] (`tests/go/gohog`); both are static Go
//! binaries from `scripts/build-test-programs.sh`. Pods share the host's
//! network (no CNI needed; the CRI logs that it found no CNI config, which is
//! harmless) and have an empty hostname, as the CRI requires for them.
//!
//! As the kubelet does, [`CriBed::run_pod`] makes the pod's cgroup in every
//! hierarchy, with its memory limit, before `RunPodSandbox`, and passes it as
//! the sandbox's `cgroup_parent`: every v1 hierarchy and, on a hybrid host,
//! the cgroup2 one, where runc puts each container too (and which it would
//! otherwise leave behind). The layout is the cgroupfs driver's,
//! `/kubepods/<qos>/pod<uid>/<container id>` (`burstable`, `besteffort`;
//! guaranteed pods sit directly under `/kubepods`). Containers carry the
//! kubelet's `io.kubernetes.*` labels; a restart is a new `CreateContainer`
//! with `metadata.attempt` one higher in the same sandbox.
//!
//! `/kubepods` is shared with the host: pod UIDs are unique per process and
//! call, the bed removes only the pod directories it made, and `/kubepods` or
//! a QoS directory only when this process made it and it is empty. Dropping
//! the bed removes its pods (CRI first, then by killing what is left in their
//! cgroups, by PID), stops containerd by its PID (SIGTERM, then SIGKILL),
//! kills the shims that still name its socket, lazily unmounts whatever is
//! still mounted under its temp dir and removes the temp dir.

use super::project_root;
use k8s_cri::v1 as cri;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub const CRI_INSTALL_HINT: &str = "run scripts/install-cri-deps.sh (Debian: containerd runc)";
pub const PROGRAMS_HINT: &str = "run scripts/build-test-programs.sh";
/// The sandbox image, built from `target/test-programs/pause`.
pub const PAUSE_IMAGE: &str = "localhost/headroom-test/pause:1";
/// The Go target's image, built from `target/test-programs/gohog`.
pub const GOHOG_IMAGE: &str = "localhost/headroom-test/gohog:1";
/// A container that is no Go program: `tests/c/sleeper.c`, static.
pub const NOT_GO_IMAGE: &str = "localhost/headroom-test/sleeper:1";
/// The containerd namespace the CRI plugin works in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Where the v1 memory controller is mounted.
pub const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// Where containerd 1.6's shims put their sockets, whatever the
/// configuration says; removed when the last bed of the process goes if no
/// bed had found them there.
const SHIM_SOCKET_DIRS: [&str; 2] = ["/run/containerd/s", "/run/containerd"];

/// The beds of this process that are running, and which of
/// [`SHIM_SOCKET_DIRS`] were missing when the first of them started.
static LIVE_BEDS: Mutex<(usize, Vec<PathBuf>)> = Mutex::new((0, Vec::new()));

/// How long one CRI call may take before the bed gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A pod's QoS class, which picks its cgroup's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// The pod's cgroup under the cgroupfs driver, as the kubelet names it.
    pub fn pod_cgroup(self, uid: &str) -> String {
        match self {
            Qos::Guaranteed => format!("/kubepods/pod{uid}"),
            Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
            Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
        }
    }
}

/// A UUID-shaped pod UID, unique per process and call.
pub fn unique_pod_uid() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = now.subsec_nanos();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        n & 0xffff,
        (nanos >> 12) & 0xfff,
        nanos & 0xfff,
        now.as_secs() & 0xffff_ffff_ffff
    )
}

/// What the kubelet would know of a pod.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub qos: Qos,
    /// The pod cgroup's memory.limit_in_bytes (none: unlimited).
    pub memory_limit: Option<u64>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl PodSpec {
    /// A burstable pod in `default` with a fresh UID and no limit.
    pub fn new(name: &str) -> PodSpec {
        PodSpec {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            uid: unique_pod_uid(),
            qos: Qos::Burstable,
            memory_limit: None,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// What the kubelet would know of one container of a pod.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Arguments to the image's entrypoint.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The container cgroup's memory limit (and memory+swap limit, as the
    /// kubelet sets on cgroup v1).
    pub memory_limit: Option<u64>,
    /// The restart count: 0 for the first container, one more per restart.
    pub attempt: u32,
}

impl ContainerSpec {
    /// A container running no Go program (it sleeps), attempt 0, no limit.
    pub fn not_go(name: &str) -> ContainerSpec {
        ContainerSpec {
            image: NOT_GO_IMAGE.to_owned(),
            args: Vec::new(),
            ..ContainerSpec::gohog(name, &[])
        }
    }

    /// A gohog container, attempt 0, no limit.
    pub fn gohog(name: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            image: GOHOG_IMAGE.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            memory_limit: None,
            attempt: 0,
        }
    }
}

/// A running pod sandbox.
#[derive(Clone, Debug)]
pub struct Pod {
    pub sandbox_id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub qos: Qos,
    /// The sandbox's cgroup parent, e.g. `/kubepods/burstable/pod<uid>`.
    pub cgroup_parent: String,
    /// The pod's directory in every hierarchy ([`cgroup_hierarchies`]).
    pub cgroup_dirs: Vec<PathBuf>,
    config: cri::PodSandboxConfig,
}

impl Pod {
    /// The pod's memory cgroup directory.
    pub fn memory_cgroup(&self) -> PathBuf {
        Path::new(MEMORY_ROOT).join(self.cgroup_parent.trim_start_matches('/'))
    }
}

/// What `ContainerStatus` says of a container, with where it runs.
#[derive(Clone, Debug)]
pub struct ContainerState {
    pub state: cri::ContainerState,
    pub exit_code: i32,
    pub reason: String,
    /// The container's init process (while it runs).
    pub pid: Option<u32>,
    /// `/sys/fs/cgroup/memory/kubepods/<qos>/pod<uid>/<id>`.
    pub cgroup_dir: PathBuf,
}

/// One process, told apart from a later one with the same PID by its start
/// time (field 22 of `/proc/PID/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcId {
    pub fn of(pid: u32) -> Option<ProcId> {
        let (state, start_time) = proc_stat(pid)?;
        (state != 'Z').then_some(ProcId { pid, start_time })
    }

    /// Whether this very process still runs (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        ProcId::of(self.pid) == Some(*self)
    }
}

/// (state, start time) from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); start time is field 22.
    Some((fields.first()?.chars().next()?, fields.get(19)?.parse().ok()?))
}

/// What the bed keeps of a container it created.
#[derive(Clone, Debug)]
struct ContainerRecord {
    memory_cgroup: PathBuf,
    log: PathBuf,
}

/// A private containerd whose CRI the test drives; everything it made is
/// removed on drop.
pub struct CriBed {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    containerd: Child,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    pods: Mutex<Vec<Pod>>,
    /// Every sandbox run, for the shim sockets a killed shim leaves.
    sandboxes: Mutex<Vec<String>>,
    /// Every pod cgroup directory made, removed on drop even when
    /// `RunPodSandbox` failed.
    pod_dirs: Mutex<Vec<PathBuf>>,
    containers: Mutex<HashMap<String, ContainerRecord>>,
}

impl CriBed {
    /// Starts containerd with the CRI plugin and imports the test images.
    /// Fails, naming what to install, when containerd, ctr, the runc shim or
    /// runc is missing.
    pub fn start() -> CriBed {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "runc"] {
            let found = Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(found, "`{tool}` is not installed: {CRI_INSTALL_HINT}");
        }
        assert!(
            Path::new(MEMORY_ROOT).join("memory.limit_in_bytes").exists(),
            "the CRI test bed needs the cgroup v1 memory controller at {MEMORY_ROOT}, as root"
        );
        let programs = project_root().join("target/test-programs");
        let pause = programs.join("pause");
        let gohog = programs.join("gohog");
        let sleeper = programs.join("sleeper");
        for exe in [&pause, &gohog, &sleeper] {
            assert!(exe.exists(), "{} is missing: {PROGRAMS_HINT}", exe.display());
            assert_static(exe);
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix("headroom-cri")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let socket = root.join("containerd.sock");
        let log = root.join("containerd.log");
        let config = root.join("config.toml");
        std::fs::write(&config, containerd_config(&root, &socket))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut containerd = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start containerd: {e}: {CRI_INSTALL_HINT}"));

        // Ready when the CRI answers Version.
        let deadline = Instant::now() + Duration::from_secs(20);
        let channel = loop {
            if let Ok(Some(status)) = containerd.try_wait() {
                panic!(
                    "containerd exited ({status}) before its CRI answered; its log ({}):\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let answer = rt.block_on(async {
                let channel = connect(socket.clone()).await.map_err(|e| format!("connect: {e}"))?;
                let mut client = RuntimeServiceClient::new(channel.clone());
                let request = cri::VersionRequest {
                    version: "v1".to_owned(),
                };
                match tokio::time::timeout(Duration::from_secs(2), client.version(request)).await {
                    Ok(Ok(v)) => Ok((channel, v.into_inner())),
                    Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                    Err(_) => Err("no answer within 2 s".to_owned()),
                }
            });
            match answer {
                Ok((channel, version)) if version.runtime_api_version == "v1" => break channel,
                Ok((_, version)) => {
                    let _ = containerd.kill();
                    let _ = containerd.wait();
                    panic!("CRI Version: the CRI answered {version:?}, not runtime API v1");
                }
                Err(e) if Instant::now() > deadline => {
                    let _ = containerd.kill();
                    let _ = containerd.wait();
                    panic!(
                        "the CRI on {} did not answer Version within 20 s (last: {e}); containerd's log ({}):\n{}",
                        socket.display(),
                        log.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };

        // From here on the drop cleans up, and counts this bed out.
        {
            let mut live = lock(&LIVE_BEDS);
            if live.0 == 0 {
                live.1 = SHIM_SOCKET_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|d| !d.exists())
                    .collect();
            }
            live.0 += 1;
        }
        let bed = CriBed {
            dir: Some(dir),
            root,
            socket,
            log,
            containerd,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            pods: Mutex::new(Vec::new()),
            sandboxes: Mutex::new(Vec::new()),
            pod_dirs: Mutex::new(Vec::new()),
            containers: Mutex::new(HashMap::new()),
        };
        bed.import_image(PAUSE_IMAGE, &pause);
        bed.import_image(GOHOG_IMAGE, &gohog);
        bed.import_image(NOT_GO_IMAGE, &sleeper);
        bed
    }

    /// The CRI's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir holding containerd's configuration, root, state and log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn containerd_pid(&self) -> u32 {
        self.containerd.id()
    }

    /// The runc shims this containerd runs now: the processes whose command
    /// line names its socket as `-address`.
    pub fn shim_pids(&self) -> Vec<u32> {
        shims_of(&self.socket)
    }

    /// The socket of the shim that runs a sandbox and its containers:
    /// `/run/containerd/s/<sha256 of "<containerd socket>/k8s.io/<sandbox id>">`.
    pub fn shim_socket(&self, sandbox_id: &str) -> PathBuf {
        let key = format!("{}/{CRI_NAMESPACE}/{sandbox_id}", self.socket.display());
        Path::new(SHIM_SOCKET_DIRS[0]).join(sha256(key.as_bytes()))
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// containerd's error lines, less the one expected here: host-network
    /// pods need no CNI, and the CRI logs once that it found no CNI config.
    pub fn log_errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("level=error") && !l.contains("failed to load cni during init"))
            .map(str::to_owned)
            .collect()
    }

    /// The last lines of containerd's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("containerd's log ({}), last lines:\n{tail}", self.log.display())
    }

    /// Runs a CRI call on the bed's runtime, waiting at most `timeout`: its
    /// answer, or an error naming the call and the CRI's answer.
    fn try_call<T>(
        &self,
        what: &str,
        timeout: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, String> {
        match self.rt.block_on(async { tokio::time::timeout(timeout, call).await }) {
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(status)) => Err(format!("CRI {what} failed: {:?}: {}", status.code(), status.message())),
            Err(_) => Err(format!("CRI {what}: no answer within {timeout:?}")),
        }
    }

    /// A CRI call that must succeed: a failure panics with containerd's log.
    fn call<T>(&self, what: &str, call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> T {
        self.try_call(what, CALL_TIMEOUT, call)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()))
    }

    /// Builds a one-layer OCI image holding `exe` as its entrypoint, imports
    /// it with ctr into the CRI's namespace and waits until the CRI sees it.
    fn import_image(&self, name: &str, exe: &Path) {
        let (base, _tag) = name.rsplit_once(':').expect("image name with a tag");
        let tar = oci_image_tar(name, exe);
        let file = self
            .root
            .join(format!("{}.oci.tar", base.rsplit('/').next().unwrap_or("image")));
        std::fs::write(&file, tar).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .args(["--base-name", base, "--snapshotter", "overlayfs"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("run ctr: {e}: {CRI_INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "ctr images import {}: {}\n{}\n{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        let _ = std::fs::remove_file(&file);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut images = self.images.clone();
            let request = cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: name.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            };
            let answer = self.call("ImageStatus", async move { images.image_status(request).await });
            if answer.image.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ImageStatus {name}: the CRI does not see the imported image after 10 s (ctr said: {})\n{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the pod's cgroup (with its memory limit) in every hierarchy,
    /// then runs its sandbox with that cgroup parent, on the host's network.
    pub fn run_pod(&self, spec: &PodSpec) -> Pod {
        let cgroup_parent = spec.qos.pod_cgroup(&spec.uid);
        let cgroup_dirs = {
            let mut made = lock(&self.pod_dirs);
            let start = made.len();
            create_pod_cgroups(&cgroup_parent, spec.memory_limit, &mut made);
            made[start..].to_vec()
        };
        let log_directory = self
            .root
            .join("pods")
            .join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid));
        std::fs::create_dir_all(&log_directory).unwrap_or_else(|e| panic!("mkdir {}: {e}", log_directory.display()));

        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert("io.kubernetes.pod.name".into(), spec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), spec.uid.clone());
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: 0,
            }),
            // A host-network sandbox must leave the hostname empty.
            hostname: String::new(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels,
            annotations: spec.annotations.clone().into_iter().collect(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut runtime = self.runtime.clone();
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let answer = self.call(
            &format!("RunPodSandbox {}/{} (uid {})", spec.namespace, spec.name, spec.uid),
            async move { runtime.run_pod_sandbox(request).await },
        );
        let pod = Pod {
            sandbox_id: answer.pod_sandbox_id,
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            uid: spec.uid.clone(),
            qos: spec.qos,
            cgroup_parent,
            cgroup_dirs,
            config,
        };
        lock(&self.pods).push(pod.clone());
        lock(&self.sandboxes).push(pod.sandbox_id.clone());
        pod
    }

    /// The sandbox's (pause) process, from `PodSandboxStatus`'s verbose info.
    pub fn sandbox_pid(&self, pod: &Pod) -> Option<u32> {
        let mut runtime = self.runtime.clone();
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            verbose: true,
        };
        let answer = self.call(&format!("PodSandboxStatus {}", pod.sandbox_id), async move {
            runtime.pod_sandbox_status(request).await
        });
        info_pid(&answer.info)
    }

    /// Creates a container in `pod` as the kubelet does (its labels, the
    /// restart count as `metadata.attempt`, the limits in the linux
    /// resources) and returns its id. It is not started.
    pub fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> String {
        let labels: HashMap<String, String> = [
            ("io.kubernetes.container.name", spec.name.as_str()),
            ("io.kubernetes.pod.name", pod.name.as_str()),
            ("io.kubernetes.pod.namespace", pod.namespace.as_str()),
            ("io.kubernetes.pod.uid", pod.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let annotations: HashMap<String, String> = [(
            "io.kubernetes.container.restartCount".to_owned(),
            spec.attempt.to_string(),
        )]
        .into_iter()
        .collect();
        let limit = spec
            .memory_limit
            .map(|l| i64::try_from(l).expect("memory limit fits i64"));
        let log_path = format!("{}/{}.log", spec.name, spec.attempt);
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: spec.name.clone(),
                attempt: spec.attempt,
            }),
            image: Some(cri::ImageSpec {
                image: spec.image.clone(),
                ..Default::default()
            }),
            args: spec.args.clone(),
            envs: spec
                .env
                .iter()
                .map(|(k, v)| cri::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            labels,
            annotations,
            log_path: log_path.clone(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    // The kubelet's minimum shares for a container without a CPU request.
                    cpu_shares: 2,
                    memory_limit_in_bytes: limit.unwrap_or(0),
                    memory_swap_limit_in_bytes: limit.unwrap_or(0),
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let mut runtime = self.runtime.clone();
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let what = format!(
            "CreateContainer {} attempt {} in pod {}/{}",
            spec.name, spec.attempt, pod.namespace, pod.name
        );
        let id = self
            .call(&what, async move { runtime.create_container(request).await })
            .container_id;
        let log = PathBuf::from(&pod.config.log_directory).join(log_path);
        lock(&self.containers).insert(
            id.clone(),
            ContainerRecord {
                memory_cgroup: pod.memory_cgroup().join(&id),
                log,
            },
        );
        id
    }

    pub fn start_container(&self, id: &str) {
        let mut runtime = self.runtime.clone();
        let request = cri::StartContainerRequest {
            container_id: id.to_owned(),
        };
        let answer = self.try_call(&format!("StartContainer {id}"), CALL_TIMEOUT, async move {
            runtime.start_container(request).await
        });
        if let Err(e) = answer {
            panic!("{e}\ncontainer log:\n{}\n{}", self.container_log(id), self.log_tail());
        }
    }

    /// What the container wrote to stdout and stderr (the CRI's log file).
    pub fn container_log(&self, id: &str) -> String {
        let record = lock(&self.containers).get(id).cloned();
        record
            .and_then(|r| std::fs::read_to_string(r.log).ok())
            .unwrap_or_default()
    }

    pub fn container_status(&self, id: &str) -> ContainerState {
        let mut runtime = self.runtime.clone();
        let request = cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        };
        let answer = self.call(&format!("ContainerStatus {id}"), async move {
            runtime.container_status(request).await
        });
        let status = answer
            .status
            .unwrap_or_else(|| panic!("ContainerStatus {id}: the CRI answered without a status"));
        let cgroup_dir = lock(&self.containers)
            .get(id)
            .map(|r| r.memory_cgroup.clone())
            .unwrap_or_else(|| panic!("container {id} was not created by this bed"));
        let state = status.state();
        let pid = match state {
            cri::ContainerState::ContainerRunning => info_pid(&answer.info).or_else(|| {
                std::fs::read_to_string(cgroup_dir.join("cgroup.procs"))
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            }),
            _ => None,
        };
        ContainerState {
            state,
            exit_code: status.exit_code,
            reason: status.reason,
            pid,
            cgroup_dir,
        }
    }

    /// Polls `ContainerStatus` until the container has exited.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerState {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id);
            if status.state == cri::ContainerState::ContainerExited {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "container {id} has not exited after {timeout:?}: {status:?}\ncontainer log:\n{}",
                    self.container_log(id)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the container (SIGTERM, SIGKILL after 10 s).
    pub fn stop_container(&self, id: &str) {
        let mut runtime = self.runtime.clone();
        let request = cri::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: 10,
        };
        self.call(&format!("StopContainer {id}"), async move {
            runtime.stop_container(request).await
        });
    }

    pub fn remove_container(&self, id: &str) {
        let mut runtime = self.runtime.clone();
        let request = cri::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.call(&format!("RemoveContainer {id}"), async move {
            runtime.remove_container(request).await
        });
        lock(&self.containers).remove(id);
    }

    /// Every container the CRI knows, in every state.
    pub fn list_containers(&self) -> Vec<cri::Container> {
        let mut runtime = self.runtime.clone();
        let request = cri::ListContainersRequest { filter: None };
        self.call("ListContainers", async move { runtime.list_containers(request).await })
            .containers
    }

    /// Stops and removes the pod's sandbox (and with it its containers), then
    /// its cgroup directories.
    pub fn remove_pod(&self, pod: &Pod) {
        if let Err(e) = self.try_remove_sandbox(&pod.sandbox_id, CALL_TIMEOUT) {
            panic!("{e}\n{}", self.log_tail());
        }
        lock(&self.pods).retain(|p| p.sandbox_id != pod.sandbox_id);
        lock(&self.containers).retain(|_, r| !r.memory_cgroup.starts_with(pod.memory_cgroup()));
        let mut made = lock(&self.pod_dirs);
        for dir in &pod.cgroup_dirs {
            if let Err(e) = remove_cgroup_tree(dir) {
                panic!("removing pod {}/{}'s cgroup: {e}", pod.namespace, pod.name);
            }
            made.retain(|d| d != dir);
        }
        remove_owned_ancestors();
    }

    fn try_remove_sandbox(&self, id: &str, timeout: Duration) -> Result<(), String> {
        let mut runtime = self.runtime.clone();
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.try_call(&format!("StopPodSandbox {id}"), timeout, async move {
            runtime.stop_pod_sandbox(request).await
        })?;
        let mut runtime = self.runtime.clone();
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.try_call(&format!("RemovePodSandbox {id}"), timeout, async move {
            runtime.remove_pod_sandbox(request).await
        })?;
        Ok(())
    }
}

impl Drop for CriBed {
    fn drop(&mut self) {
        // Never panic here: a test may already be failing.
        let pods = std::mem::take(&mut *lock(&self.pods));
        for pod in &pods {
            // Shorter than a test's calls: a hung containerd must not hold up the drop.
            if let Err(e) = self.try_remove_sandbox(&pod.sandbox_id, Duration::from_secs(15)) {
                eprintln!("warning: {e}");
            }
        }
        // Whatever still runs in a pod cgroup is ours: kill it by PID.
        let dirs = std::mem::take(&mut *lock(&self.pod_dirs));
        for dir in &dirs {
            if let Err(e) = remove_cgroup_tree(dir) {
                eprintln!("warning: {e}");
            }
        }
        remove_owned_ancestors();

        let pid = self.containerd.id();
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.containerd.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("warning: containerd (pid {pid}) ignored SIGTERM for 5 s; killing it");
                let _ = self.containerd.kill();
                let _ = self.containerd.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Shims outlive containerd; those still naming our socket are ours.
        let shims: Vec<ProcId> = shims_of(&self.socket).into_iter().filter_map(ProcId::of).collect();
        for shim in &shims {
            signal(shim.pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while shims.iter().any(ProcId::is_alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A shim that exits removes its socket; a killed one does not.
        for id in std::mem::take(&mut *lock(&self.sandboxes)) {
            let _ = std::fs::remove_file(self.shim_socket(&id));
        }
        for mount in mounts_under(&self.root) {
            let c = std::ffi::CString::new(mount.as_os_str().as_bytes()).expect("path without NUL");
            // SAFETY: a valid NUL-terminated path; MNT_DETACH is a plain flag.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!(
                    "warning: umount -l {}: {}",
                    mount.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("warning: removing {}: {e}", path.display());
            }
        }
        // Held while removing, so that no bed of ours starts a shim meanwhile.
        let mut live = lock(&LIVE_BEDS);
        live.0 = live.0.saturating_sub(1);
        if live.0 == 0 {
            for dir in std::mem::take(&mut live.1) {
                // Fails, leaving it, while another containerd's shim uses it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// A CRI channel over the Unix socket.
async fn connect(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// The pod's namespaces: the host's network, its own IPC, a PID namespace
/// per container (the kubelet's default).
fn host_network() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The `pid` of a verbose status's `info` JSON (0 or absent: none).
fn info_pid(info: &HashMap<String, String>) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let pid = v.get("pid")?.as_u64()?;
    u32::try_from(pid).ok().filter(|&p| p > 0)
}

fn containerd_config(root: &Path, socket: &Path) -> String {
    let r = root.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{r}/root"
state = "{r}/state"
# Snapshotters that cannot work here; they would only log errors.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{r}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    # Root in a container may lack CAP_SYS_RESOURCE to lower oom_score_adj.
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{r}/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{r}/cni/bin"
      conf_dir = "{r}/cni/net.d"
"#
    )
}

/// Fails unless `exe` is statically linked (no ELF interpreter): the images
/// hold nothing but the one binary.
fn assert_static(exe: &Path) {
    let elf = std::fs::read(exe).unwrap_or_else(|e| panic!("read {}: {e}", exe.display()));
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert!(
        elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2 && elf[5] == 1,
        "{} is not a little-endian 64-bit ELF binary: {PROGRAMS_HINT}",
        exe.display()
    );
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
        assert!(
            p_type != PT_INTERP,
            "{} is dynamically linked, but an image holds only the binary; build it with CGO_ENABLED=0: {PROGRAMS_HINT}",
            exe.display()
        );
    }
}

/// An OCI image layout as a tar (what `ctr images import` reads): one layer
/// holding `exe` at `/<file name>`, which is the entrypoint.
fn oci_image_tar(name: &str, exe: &Path) -> Vec<u8> {
    let file_name = exe.file_name().expect("file name").to_string_lossy().into_owned();
    let bytes = std::fs::read(exe).unwrap_or_else(|e| panic!("read {}: {e}", exe.display()));
    let mut layer = Vec::new();
    tar_entry(&mut layer, &file_name, 0o755, &bytes);
    tar_end(&mut layer);
    let layer_digest = sha256(&layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": [format!("/{file_name}")]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    })
    .to_string();
    let config_digest = sha256(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    })
    .to_string();
    let manifest_digest = sha256(manifest.as_bytes());
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    })
    .to_string();

    let mut out = Vec::new();
    tar_entry(&mut out, "oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar_entry(&mut out, "index.json", 0o644, index.as_bytes());
    tar_entry(
        &mut out,
        &format!("blobs/sha256/{manifest_digest}"),
        0o644,
        manifest.as_bytes(),
    );
    tar_entry(
        &mut out,
        &format!("blobs/sha256/{config_digest}"),
        0o644,
        config.as_bytes(),
    );
    tar_entry(&mut out, &format!("blobs/sha256/{layer_digest}"), 0o644, &layer);
    tar_end(&mut out);
    out
}

/// One regular file as a ustar entry (owner root, mtime 0).
fn tar_entry(out: &mut Vec<u8>, path: &str, mode: u32, data: &[u8]) {
    assert!(path.len() < 100, "tar path too long: {path}");
    let mut h = [0u8; 512];
    let mut put = |offset: usize, field: &[u8]| h[offset..offset + field.len()].copy_from_slice(field);
    put(0, path.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_end(out: &mut Vec<u8>) {
    out.resize(out.len() + 1024, 0);
}

/// The SHA-256 of `data` in hex, by coreutils' sha256sum.
fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hex.len(), 64, "sha256sum printed {hex:?}");
    hex
}

/// A lock that a panicking holder does not spoil: the bed must still clean up.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a PID we started (or found by our socket); no memory involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The processes whose command line has `-address <socket>`: the shims of
/// the containerd listening there.
fn shims_of(socket: &Path) -> Vec<u32> {
    let want = socket.as_os_str().as_bytes();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"-address" && w[1] == want) {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points under `dir` in our mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points of the cgroup hierarchies runc puts a container in:
/// every v1 hierarchy (fstype `cgroup`) and, when there is any, the cgroup2
/// one beside them (a hybrid host, e.g. `/sys/fs/cgroup/unified`).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mounts: Vec<(&str, PathBuf)> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mount_point = PathBuf::from(unescape_mount(left.split(' ').nth(4)?));
            matches!(fstype, "cgroup" | "cgroup2").then_some((fstype, mount_point))
        })
        .collect();
    if !mounts.iter().any(|(t, _)| *t == "cgroup") {
        return Vec::new();
    }
    let mut dirs: Vec<PathBuf> = mounts.into_iter().map(|(_, p)| p).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The shared directories (`/kubepods`, its QoS directories) this process
/// made, in every hierarchy; removed when empty, by whichever pod goes last.
static OWNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Makes `rel` (e.g. `/kubepods/burstable/pod<uid>`) in every hierarchy,
/// pushing each pod directory to `made` as it is created, and sets the
/// memory limit. A v1 cpuset directory gets its parent's cpus and mems, as
/// a new one is empty and takes no tasks.
fn create_pod_cgroups(rel: &str, memory_limit: Option<u64>, made: &mut Vec<PathBuf>) {
    let hierarchies = cgroup_hierarchies();
    assert!(
        hierarchies.iter().any(|h| h == Path::new(MEMORY_ROOT)),
        "no v1 memory hierarchy at {MEMORY_ROOT} (mounted: {hierarchies:?})"
    );
    let parts: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
    let mut owned = lock(&OWNED);
    for h in &hierarchies {
        let mut dir = h.clone();
        for (i, part) in parts.iter().enumerate() {
            dir = dir.join(part);
            let is_pod = i + 1 == parts.len();
            if dir.exists() {
                assert!(!is_pod, "the pod cgroup {} exists already", dir.display());
                continue;
            }
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            if is_pod {
                made.push(dir.clone());
            } else {
                owned.insert(dir.clone());
            }
            if dir.join("cpuset.cpus").exists() && !dir.join("cgroup.controllers").exists() {
                let parent = dir.parent().expect("parent");
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file))
                        .unwrap_or_else(|e| panic!("read {}: {e}", parent.join(file).display()));
                    std::fs::write(dir.join(file), value.trim())
                        .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(file).display()));
                }
            }
        }
    }
    if let Some(limit) = memory_limit {
        let file = Path::new(MEMORY_ROOT)
            .join(parts.join("/"))
            .join("memory.limit_in_bytes");
        std::fs::write(&file, limit.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
}

/// Removes a cgroup directory and those below it, deepest first, killing
/// (by PID) whatever still runs in them; retries while the kernel still
/// counts exiting tasks.
fn remove_cgroup_tree(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                signal(pid, libc::SIGKILL);
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("rmdir {}: {e}", dir.display())),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Removes the shared directories this process made that are now empty,
/// deepest first; one still in use (EBUSY) stays for its last pod.
fn remove_owned_ancestors() {
    let mut owned = lock(&OWNED);
    let mut dirs: Vec<PathBuf> = owned.iter().cloned().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {
                owned.remove(&dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                owned.remove(&dir);
            }
            Err(_) => {}
        }
    }
}
