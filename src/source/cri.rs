//! The container runtime's names for the node's containers, asked of its
//! CRI socket (containerd's, CRI-O's) as the kubelet and cAdvisor ask:
//! `ListPodSandbox` and `ListContainers` give each container ID its
//! namespace, pod, pod UID, container name, restart attempt and the pod's
//! annotations; `ContainerStatus` gives a finished container's exit code and
//! the runtime's reason (`OOMKilled`).
//!
//! The API is `runtime.v1` (Kubernetes 1.26 and later require it);
//! `runtime.v1alpha2` is asked instead when a runtime answers
//! `Unimplemented` (containerd 1.5, CRI-O 1.19). Only the messages and
//! fields read here are declared ([`wire`]), with the field numbers of the
//! CRI's `api.proto`; any other field is skipped on decoding. They are
//! declared rather than generated so that building headroom needs no
//! `protoc`; the tests check them against the generated API of the
//! `k8s-cri` crate.
//!
//! Every call has a deadline ([`CALL_TIMEOUT`]) and an answer's size a cap
//! ([`MAX_ANSWER_BYTES`]); of the pod's annotations only `headroom.dev/*`
//! are kept, so a node's cache stays small whatever its pods carry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};

/// The deadline of one CRI call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer taken (a node's `ListContainers` is ~1 KiB a container).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// The prefix of the pod annotations kept.
pub const ANNOTATION_PREFIX: &str = "headroom.dev/";

/// Where `--cri-socket auto` looks, in order: containerd's, then CRI-O's,
/// each also under `/host` (the host's `/run` mounted into a DaemonSet).
pub const AUTO_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/host/run/containerd/containerd.sock",
    "/host/run/crio/crio.sock",
];

/// The first of [`AUTO_SOCKETS`] that exists (a socket file), under `root`
/// (`/` on a real node).
pub fn find_socket(root: &Path) -> Option<PathBuf> {
    AUTO_SOCKETS
        .iter()
        .map(|s| root.join(s.trim_start_matches('/')))
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
        })
}

/// The CRI's messages read by headroom: field numbers as in the CRI's
/// `api.proto` (package `runtime.v1`; `v1alpha2` numbers them alike).
pub mod wire {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        #[prost(string, tag = "1")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    /// No filter: every sandbox.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxResponse {
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<PodSandbox>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandbox {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<PodSandboxMetadata>,
        /// 0 ready, 1 not ready.
        #[prost(int32, tag = "3")]
        pub state: i32,
        #[prost(map = "string, string", tag = "5")]
        pub labels: HashMap<String, String>,
        #[prost(map = "string, string", tag = "6")]
        pub annotations: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(uint32, tag = "4")]
        pub attempt: u32,
    }

    /// No filter: every container.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersResponse {
        #[prost(message, repeated, tag = "1")]
        pub containers: Vec<Container>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Container {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub pod_sandbox_id: String,
        #[prost(message, optional, tag = "3")]
        pub metadata: Option<ContainerMetadata>,
        /// 0 created, 1 running, 2 exited, 3 unknown.
        #[prost(int32, tag = "6")]
        pub state: i32,
        #[prost(map = "string, string", tag = "8")]
        pub labels: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(uint32, tag = "2")]
        pub attempt: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatusRequest {
        #[prost(string, tag = "1")]
        pub container_id: String,
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<ContainerStatus>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatus {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<ContainerMetadata>,
        #[prost(int32, tag = "3")]
        pub state: i32,
        /// Nanoseconds since the epoch.
        #[prost(int64, tag = "6")]
        pub finished_at: i64,
        #[prost(int32, tag = "7")]
        pub exit_code: i32,
        #[prost(string, tag = "10")]
        pub reason: String,
    }
}

/// The CRI's container states (`ContainerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    fn of(v: i32) -> ContainerState {
        match v {
            0 => ContainerState::Created,
            1 => ContainerState::Running,
            2 => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

/// A container as the runtime names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// The restart attempt (0 for the first run; the kubelet's restarts
    /// count up).
    pub attempt: u32,
    pub state: ContainerState,
    /// The pod's `headroom.dev/*` annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Named {
    /// The Go endpoint annotated for this container:
    /// `headroom.dev/go-url.<container>`, else `headroom.dev/go-url`.
    pub fn go_url(&self) -> Option<&str> {
        let get = |k: &str| self.annotations.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        get(&format!("{ANNOTATION_PREFIX}go-url.{}", self.container))
            .or_else(|| get(&format!("{ANNOTATION_PREFIX}go-url")))
    }
}

/// One listing of the node's sandboxes and containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// By full container ID.
    pub containers: HashMap<String, Named>,
    /// Every pod sandbox's ID (its pause container's cgroup has it).
    pub sandboxes: HashSet<String>,
}

impl Listing {
    /// Joins the two answers: each container's pod from its sandbox (the
    /// `io.kubernetes.pod.*` labels where the sandbox is not listed).
    pub fn from_answers(sandboxes: Vec<wire::PodSandbox>, containers: Vec<wire::Container>) -> Listing {
        struct Pod {
            name: String,
            namespace: String,
            uid: String,
            annotations: BTreeMap<String, String>,
        }
        let mut pods: HashMap<String, Pod> = HashMap::with_capacity(sandboxes.len());
        for s in sandboxes {
            let m = s.metadata.unwrap_or_default();
            let annotations = s
                .annotations
                .into_iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .collect();
            pods.insert(
                s.id,
                Pod {
                    name: m.name,
                    namespace: m.namespace,
                    uid: m.uid,
                    annotations,
                },
            );
        }
        let mut out = Listing {
            containers: HashMap::with_capacity(containers.len()),
            sandboxes: pods.keys().cloned().collect(),
        };
        for c in containers {
            let m = c.metadata.unwrap_or_default();
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let named = match pods.get(&c.pod_sandbox_id) {
                Some(p) => Named {
                    namespace: p.namespace.clone(),
                    pod: p.name.clone(),
                    pod_uid: p.uid.clone(),
                    container: m.name,
                    attempt: m.attempt,
                    state: ContainerState::of(c.state),
                    annotations: p.annotations.clone(),
                },
                None => Named {
                    namespace: label("io.kubernetes.pod.namespace"),
                    pod: label("io.kubernetes.pod.name"),
                    pod_uid: label("io.kubernetes.pod.uid"),
                    container: if m.name.is_empty() {
                        label("io.kubernetes.container.name")
                    } else {
                        m.name
                    },
                    attempt: m.attempt,
                    state: ContainerState::of(c.state),
                    annotations: BTreeMap::new(),
                },
            };
            if !named.pod.is_empty() && !named.container.is_empty() {
                out.containers.insert(c.id, named);
            }
        }
        out
    }
}

/// How a container ended, as the runtime tells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeExit {
    pub exit_code: i32,
    /// The runtime's reason: `OOMKilled`, `Error`, `Completed`.
    pub reason: String,
    pub attempt: u32,
    /// When it finished, milliseconds since the epoch.
    pub finished_ms: Option<u64>,
}

/// A failed CRI call, naming the socket and the call.
#[derive(Debug, thiserror::Error)]
#[error("CRI socket {socket}: {call}: {reason}")]
pub struct CriError {
    pub socket: String,
    pub call: &'static str,
    pub reason: String,
    /// The runtime's gRPC status, where it answered one.
    pub code: Option<tonic::Code>,
}

/// The CRI API versions, newest first.
const APIS: &[&str] = &["runtime.v1", "runtime.v1alpha2"];

/// A client of one CRI socket. The connection is made at the first call and
/// made again after a failure.
#[derive(Clone)]
pub struct CriClient {
    socket: PathBuf,
    channel: Channel,
    /// Index into [`APIS`] of the version the runtime answers.
    api: usize,
}

impl CriClient {
    /// A client of the socket at `socket`; nothing is dialled yet. Call it
    /// within a tokio runtime (its connection task is spawned there).
    pub fn new(socket: &Path) -> CriClient {
        let path = socket.to_path_buf();
        let channel = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }));
        CriClient {
            socket: socket.to_path_buf(),
            channel,
            api: 0,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn err(&self, call: &'static str, reason: impl std::fmt::Display) -> CriError {
        CriError {
            socket: self.socket.display().to_string(),
            call,
            reason: reason.to_string(),
            code: None,
        }
    }

    async fn call<Q, A>(&mut self, method: &'static str, req: Q) -> Result<A, CriError>
    where
        Q: prost::Message + Clone + 'static,
        A: prost::Message + Default + 'static,
    {
        loop {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(MAX_ANSWER_BYTES);
            let path: PathAndQuery = format!("/{}.RuntimeService/{method}", APIS[self.api])
                .parse()
                .map_err(|e| self.err(method, e))?;
            grpc.ready()
                .await
                .map_err(|e| self.err(method, format!("cannot connect: {e}")))?;
            let answer = tokio::time::timeout(
                CALL_TIMEOUT,
                grpc.unary(
                    tonic::Request::new(req.clone()),
                    path,
                    tonic_prost::ProstCodec::default(),
                ),
            )
            .await
            .map_err(|_| self.err(method, format!("no answer within {} s", CALL_TIMEOUT.as_secs())))?;
            match answer {
                Ok(a) => return Ok(a.into_inner()),
                Err(s) if s.code() == tonic::Code::Unimplemented && self.api + 1 < APIS.len() => self.api += 1,
                Err(s) => {
                    return Err(CriError {
                        code: Some(s.code()),
                        ..self.err(method, format!("{:?}: {}", s.code(), s.message()))
                    })
                }
            }
        }
    }

    /// The runtime's name and version (`containerd 1.6.20`), and the CRI
    /// version it speaks.
    pub async fn version(&mut self) -> Result<String, CriError> {
        let v: wire::VersionResponse = self
            .call("Version", wire::VersionRequest { version: "v1".into() })
            .await?;
        Ok(format!(
            "{} {} (CRI {})",
            v.runtime_name, v.runtime_version, APIS[self.api]
        ))
    }

    /// Every sandbox and container the runtime has.
    pub async fn list(&mut self) -> Result<Listing, CriError> {
        let s: wire::ListPodSandboxResponse = self.call("ListPodSandbox", wire::ListPodSandboxRequest {}).await?;
        let c: wire::ListContainersResponse = self.call("ListContainers", wire::ListContainersRequest {}).await?;
        Ok(Listing::from_answers(s.items, c.containers))
    }

    /// How the container `id` ended, or `None` while it runs (or when the
    /// runtime no longer knows it).
    pub async fn exit_of(&mut self, id: &str) -> Result<Option<RuntimeExit>, CriError> {
        let r: Result<wire::ContainerStatusResponse, _> = self
            .call(
                "ContainerStatus",
                wire::ContainerStatusRequest {
                    container_id: id.to_owned(),
                    verbose: false,
                },
            )
            .await;
        let s = match r {
            Ok(r) => r.status,
            Err(e) if e.code == Some(tonic::Code::NotFound) => None,
            Err(e) => return Err(e),
        };
        Ok(s.filter(|s| ContainerState::of(s.state) == ContainerState::Exited)
            .map(|s| RuntimeExit {
                exit_code: s.exit_code,
                reason: s.reason,
                attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
                finished_ms: (s.finished_at > 0).then_some((s.finished_at / 1_000_000) as u64),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sandbox(id: &str, ns: &str, name: &str, uid: &str, ann: &[(&str, &str)]) -> wire::PodSandbox {
        wire::PodSandbox {
            id: id.into(),
            metadata: Some(wire::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: ns.into(),
                attempt: 0,
            }),
            state: 0,
            labels: HashMap::new(),
            annotations: ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn container(id: &str, sandbox: &str, name: &str, attempt: u32) -> wire::Container {
        wire::Container {
            id: id.into(),
            pod_sandbox_id: sandbox.into(),
            metadata: Some(wire::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            state: 1,
            labels: HashMap::new(),
        }
    }

    #[test]
    fn containers_take_their_pod_from_the_sandbox_and_keep_only_headroom_annotations() {
        let l = Listing::from_answers(
            vec![sandbox(
                "s1",
                "shop",
                "cart-7d9f",
                "u-1",
                &[
                    ("headroom.dev/go-url", "http://127.0.0.1:6060/debug/vars"),
                    ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                ],
            )],
            vec![container("c1", "s1", "app", 2), container("c2", "s1", "proxy", 0)],
        );
        assert!(l.sandboxes.contains("s1"));
        let c = &l.containers["c1"];
        assert_eq!(
            (
                c.namespace.as_str(),
                c.pod.as_str(),
                c.pod_uid.as_str(),
                c.container.as_str(),
                c.attempt
            ),
            ("shop", "cart-7d9f", "u-1", "app", 2)
        );
        assert_eq!(c.state, ContainerState::Running);
        assert_eq!(c.annotations.len(), 1);
        assert_eq!(c.go_url(), Some("http://127.0.0.1:6060/debug/vars"));
    }

    #[test]
    fn a_containers_own_annotation_wins_over_the_pods() {
        let l = Listing::from_answers(
            vec![sandbox(
                "s1",
                "ns",
                "p",
                "u",
                &[
                    ("headroom.dev/go-url", "http://127.0.0.1:1/debug/vars"),
                    ("headroom.dev/go-url.side", " http://127.0.0.1:2/metrics "),
                    ("headroom.dev/go-url.empty", ""),
                ],
            )],
            vec![
                container("a", "s1", "app", 0),
                container("b", "s1", "side", 0),
                container("c", "s1", "empty", 0),
            ],
        );
        assert_eq!(l.containers["a"].go_url(), Some("http://127.0.0.1:1/debug/vars"));
        assert_eq!(l.containers["b"].go_url(), Some("http://127.0.0.1:2/metrics"));
        // An empty own annotation says nothing; the pod's applies.
        assert_eq!(l.containers["c"].go_url(), Some("http://127.0.0.1:1/debug/vars"));
    }

    #[test]
    fn a_container_whose_sandbox_is_not_listed_is_named_from_its_labels_or_left_out() {
        let mut labelled = container("c1", "gone", "", 0);
        labelled.labels = [
            ("io.kubernetes.pod.namespace", "ns"),
            ("io.kubernetes.pod.name", "p"),
            ("io.kubernetes.pod.uid", "u"),
            ("io.kubernetes.container.name", "app"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let bare = container("c2", "gone", "x", 0);
        let l = Listing::from_answers(vec![], vec![labelled, bare]);
        let c = &l.containers["c1"];
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str(), c.container.as_str()),
            ("ns", "p", "app")
        );
        assert!(!l.containers.contains_key("c2"), "no pod name: not named");
    }

    #[test]
    fn auto_finds_containerd_then_crio_under_the_root_and_ignores_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_socket(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("run/containerd")).unwrap();
        std::fs::write(dir.path().join("run/containerd/containerd.sock"), "").unwrap();
        assert_eq!(find_socket(dir.path()), None, "a plain file is not a socket");
        std::fs::create_dir_all(dir.path().join("host/run/crio")).unwrap();
        let crio = dir.path().join("host/run/crio/crio.sock");
        let _l = std::os::unix::net::UnixListener::bind(&crio).unwrap();
        assert_eq!(find_socket(dir.path()), Some(crio));
    }
}
