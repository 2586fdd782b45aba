//! headroom declares the few CRI messages it reads by hand (so that building
//! it needs no protoc); here they are checked against the API generated from
//! the CRI's own `api.proto` by the `k8s-cri` crate: what a runtime encodes
//! decodes to the same names and numbers, whatever other fields it carries.

use headroom::source::cri::{wire, Listing};
use k8s_cri::v1 as cri;
use prost::Message;
use std::collections::HashMap;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn roundtrip<A: Message, B: Message + Default>(a: &A) -> B {
    B::decode(a.encode_to_vec().as_slice()).expect("decodes")
}

#[test]
fn a_runtimes_sandboxes_and_containers_decode_to_the_same_names() {
    let sandboxes = cri::ListPodSandboxResponse {
        items: vec![cri::PodSandbox {
            id: "sb1".into(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "cart-7d9f".into(),
                uid: "0e9d8c7b-6a59-4483-b271-605f4e3d2c1b".into(),
                namespace: "shop".into(),
                attempt: 3,
            }),
            state: cri::PodSandboxState::SandboxNotready as i32,
            created_at: 1_700_000_000_000_000_000,
            labels: map(&[("app", "cart")]),
            annotations: map(&[
                ("headroom.dev/go-url", "http://127.0.0.1:6060/debug/vars"),
                ("other", "x"),
            ]),
            runtime_handler: "runc".into(),
        }],
    };
    let got: wire::ListPodSandboxResponse = roundtrip(&sandboxes);
    let s = &got.items[0];
    let m = s.metadata.as_ref().unwrap();
    assert_eq!((s.id.as_str(), s.state), ("sb1", 1));
    assert_eq!(
        (m.name.as_str(), m.namespace.as_str(), m.attempt),
        ("cart-7d9f", "shop", 3)
    );
    assert_eq!(m.uid, "0e9d8c7b-6a59-4483-b271-605f4e3d2c1b");
    assert_eq!(s.annotations.len(), 2);
    assert_eq!(s.labels["app"], "cart");

    let containers = cri::ListContainersResponse {
        containers: vec![cri::Container {
            id: "c1".into(),
            pod_sandbox_id: "sb1".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 4,
            }),
            image: Some(cri::ImageSpec {
                image: "registry/app:1".into(),
                ..Default::default()
            }),
            image_ref: "sha256:abc".into(),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 5,
            labels: map(&[("io.kubernetes.container.name", "app")]),
            annotations: map(&[("io.kubernetes.container.restartCount", "4")]),
            image_id: "sha256:def".into(),
        }],
    };
    let got: wire::ListContainersResponse = roundtrip(&containers);
    let c = &got.containers[0];
    assert_eq!((c.id.as_str(), c.pod_sandbox_id.as_str(), c.state), ("c1", "sb1", 2));
    let cm = c.metadata.as_ref().unwrap();
    assert_eq!((cm.name.as_str(), cm.attempt), ("app", 4));
    assert_eq!(c.labels["io.kubernetes.container.name"], "app");

    let l = Listing::from_answers(got_items(&sandboxes), got.containers.clone());
    let n = &l.containers["c1"];
    assert_eq!(
        (n.namespace.as_str(), n.pod.as_str(), n.container.as_str(), n.attempt),
        ("shop", "cart-7d9f", "app", 4)
    );
    assert_eq!(n.go_url(), Some("http://127.0.0.1:6060/debug/vars"));
}

fn got_items(s: &cri::ListPodSandboxResponse) -> Vec<wire::PodSandbox> {
    roundtrip::<_, wire::ListPodSandboxResponse>(s).items
}

#[test]
fn a_finished_containers_status_decodes_its_exit_code_reason_and_attempt() {
    let status = cri::ContainerStatusResponse {
        status: Some(cri::ContainerStatus {
            id: "c1".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 1,
            started_at: 2,
            finished_at: 1_733_300_000_123_456_789,
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: "the message".into(),
            log_path: "/var/log/pods/x".into(),
            ..Default::default()
        }),
        info: map(&[("info", "{\"pid\": 42}")]),
    };
    let got: wire::ContainerStatusResponse = roundtrip(&status);
    let s = got.status.unwrap();
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (2, 137, "OOMKilled"));
    assert_eq!(s.finished_at, 1_733_300_000_123_456_789);
    assert_eq!(s.metadata.unwrap().attempt, 1);
}

#[test]
fn headroom_requests_decode_as_the_runtime_reads_them() {
    let r: cri::ContainerStatusRequest = roundtrip(&wire::ContainerStatusRequest {
        container_id: "c1".into(),
        verbose: true,
    });
    assert_eq!((r.container_id.as_str(), r.verbose), ("c1", true));
    let r: cri::ListContainersRequest = roundtrip(&wire::ListContainersRequest {});
    assert_eq!(r.filter, None, "no filter: every container");
    let r: cri::VersionRequest = roundtrip(&wire::VersionRequest { version: "v1".into() });
    assert_eq!(r.version, "v1");
    let v: wire::VersionResponse = roundtrip(&cri::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "containerd".into(),
        runtime_version: "1.6.20".into(),
        runtime_api_version: "v1".into(),
    });
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_version.as_str()),
        ("containerd", "1.6.20")
    );
}
