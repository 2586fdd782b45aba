//! Names in the kubelet's cgroup tree: which directory is a pod, which is a
//! container, and what their pod UID and container ID are.
//!
//! The kubelet lays pods out under one of two drivers:
//!
//! ```text
//! cgroupfs  /kubepods/pod<uid>/<id>                                    (Guaranteed)
//!           /kubepods/burstable/pod<uid>/<id>                          (Burstable)
//!           /kubepods/besteffort/pod<uid>/<id>                         (BestEffort)
//! systemd   /kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope
//!           /kubepods.slice/kubepods-burstable.slice/
//!               kubepods-burstable-pod<uid_>.slice/crio-<id>.scope
//! ```
//!
//! where `<uid_>` is the pod UID with `_` for `-` (systemd reserves `-`).
//! The tree may sit below a prefix (`/kubelet.slice/kubelet-kubepods.slice`
//! in kind, `/docker/<id>/kubepods` in Docker-in-Docker): the last
//! `kubepods` segment is the root. CRI-O's `crio-conmon-<id>` cgroups hold
//! its monitor process, not a container, and are named as such.

/// The pod's quality-of-service class, from its place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// A container's cgroup, named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerPath {
    pub qos: Qos,
    /// The pod UID in its usual dashed form.
    pub pod_uid: String,
    /// The container ID, lower-case hex, as the runtime reports it.
    pub container_id: String,
    /// The runtime prefix of a systemd scope or cgroupfs directory
    /// (`cri-containerd`, `crio`, `docker`), empty when the directory is
    /// the bare ID.
    pub runtime: String,
}

impl ContainerPath {
    /// The first 12 hex digits of the ID, as `crictl ps` and `docker ps`
    /// print it.
    pub fn short_id(&self) -> &str {
        &self.container_id[..12.min(self.container_id.len())]
    }
}

/// What one cgroup path is in the kubelet's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubePath {
    /// The `kubepods` root itself, or a QoS class directory.
    Root,
    Qos(Qos),
    Pod {
        qos: Qos,
        pod_uid: String,
    },
    Container(ContainerPath),
    /// Below a pod but not a container: a runtime's monitor (`crio-conmon-`)
    /// or a name no runtime makes. Said why.
    NotContainer(&'static str),
    /// Below a container (a cgroup the container made itself).
    InsideContainer,
}

/// Names the cgroup path `path` (as in `/proc/PID/cgroup`, or relative to
/// the hierarchy's root; `/` separated). `None` when it is not under a
/// `kubepods` root at all.
pub fn parse_kubepods_path(path: &str) -> Option<KubePath> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let root = parts.iter().rposition(|p| is_kubepods_root(p))?;
    let rest = &parts[root + 1..];
    let systemd = parts[root].ends_with(".slice");
    let (qos, rest) = match rest.first().and_then(|p| qos_dir(p, systemd)) {
        Some(q) => (q, &rest[1..]),
        None => (Qos::Guaranteed, rest),
    };
    let Some(pod) = rest.first() else {
        return Some(if qos == Qos::Guaranteed {
            KubePath::Root
        } else {
            KubePath::Qos(qos)
        });
    };
    let Some(pod_uid) = pod_dir(pod, systemd) else {
        return Some(KubePath::NotContainer("not a pod directory"));
    };
    let Some(container) = rest.get(1) else {
        return Some(KubePath::Pod { qos, pod_uid });
    };
    if rest.len() > 2 {
        return Some(KubePath::InsideContainer);
    }
    Some(match container_dir(container, systemd) {
        Ok((runtime, id)) => KubePath::Container(ContainerPath {
            qos,
            pod_uid,
            container_id: id.to_ascii_lowercase(),
            runtime: runtime.to_owned(),
        }),
        Err(why) => KubePath::NotContainer(why),
    })
}

/// `kubepods` (cgroupfs) or `kubepods.slice` / `<prefix>-kubepods.slice`
/// (systemd).
pub fn is_kubepods_root(segment: &str) -> bool {
    segment == "kubepods" || segment == "kubepods.slice" || segment.ends_with("-kubepods.slice")
}

fn qos_dir(segment: &str, systemd: bool) -> Option<Qos> {
    let name = if systemd {
        let s = segment.strip_suffix(".slice")?;
        // `kubepods-burstable`, `kubelet-kubepods-burstable`; a pod slice
        // (`kubepods-burstable-pod…`) is longer and does not match.
        s.rsplit('-').next().filter(|_| s.contains('-'))?
    } else {
        segment
    };
    match name {
        "burstable" => Some(Qos::Burstable),
        "besteffort" => Some(Qos::BestEffort),
        _ => None,
    }
}

fn pod_dir(segment: &str, systemd: bool) -> Option<String> {
    let uid = if systemd {
        let s = segment.strip_suffix(".slice")?;
        let at = s.rfind("-pod")?;
        s[at + 4..].replace('_', "-")
    } else {
        segment.strip_prefix("pod")?.to_owned()
    };
    valid_uid(&uid).then(|| uid.to_ascii_lowercase())
}

/// A pod UID: an RFC 4122 UUID from the API server, or 32 hex digits (a
/// static pod's config hash).
fn valid_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn container_dir(segment: &str, systemd: bool) -> Result<(&str, &str), &'static str> {
    let name = if systemd {
        segment.strip_suffix(".scope").ok_or("not a .scope")?
    } else {
        segment
    };
    let (runtime, id) = match name.rsplit_once('-') {
        Some((r, id)) => (r, id),
        None => ("", name),
    };
    if runtime == "crio-conmon" {
        return Err("CRI-O's container monitor (conmon)");
    }
    if !(12..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not a container ID");
    }
    if systemd && runtime.is_empty() {
        return Err("a scope without a runtime prefix");
    }
    Ok((runtime, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e3c2b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3";
    const UID: &str = "6f1c2b9e-0d4a-4c4e-9f57-1a2b3c4d5e6f";
    const UID_: &str = "6f1c2b9e_0d4a_4c4e_9f57_1a2b3c4d5e6f";

    fn container(qos: Qos, runtime: &str) -> Option<KubePath> {
        Some(KubePath::Container(ContainerPath {
            qos,
            pod_uid: UID.into(),
            container_id: ID.into(),
            runtime: runtime.into(),
        }))
    }

    #[test]
    fn cgroupfs_layouts() {
        let cases = [
            (format!("/kubepods/pod{UID}/{ID}"), container(Qos::Guaranteed, "")),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                container(Qos::Burstable, ""),
            ),
            (
                format!("kubepods/besteffort/pod{UID}/{ID}"),
                container(Qos::BestEffort, ""),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                container(Qos::Burstable, "crio"),
            ),
            (
                format!("/docker/{ID}/kubepods/burstable/pod{UID}/{ID}"),
                container(Qos::Burstable, ""),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}/"),
                container(Qos::Burstable, ""),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_kubepods_path(&path), want, "{path}");
        }
    }

    #[test]
    fn systemd_layouts() {
        let cases = [
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                container(Qos::Guaranteed, "cri-containerd"),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
                ),
                container(Qos::Burstable, "crio"),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"
                ),
                container(Qos::BestEffort, "docker"),
            ),
            (
                format!(
                    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                container(Qos::Burstable, "cri-containerd"),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_kubepods_path(&path), want, "{path}");
        }
    }

    #[test]
    fn pods_roots_and_others() {
        assert_eq!(parse_kubepods_path("/kubepods"), Some(KubePath::Root));
        assert_eq!(parse_kubepods_path("/kubepods.slice"), Some(KubePath::Root));
        assert_eq!(
            parse_kubepods_path("/kubepods/burstable"),
            Some(KubePath::Qos(Qos::Burstable))
        );
        assert_eq!(
            parse_kubepods_path("/kubepods.slice/kubepods-besteffort.slice"),
            Some(KubePath::Qos(Qos::BestEffort))
        );
        assert_eq!(
            parse_kubepods_path(&format!("/kubepods/pod{UID}")),
            Some(KubePath::Pod {
                qos: Qos::Guaranteed,
                pod_uid: UID.into()
            })
        );
        assert_eq!(
            parse_kubepods_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
            )),
            Some(KubePath::Pod {
                qos: Qos::Burstable,
                pod_uid: UID.into()
            })
        );
        // A static pod: its UID is the config hash.
        assert_eq!(
            parse_kubepods_path("/kubepods/besteffort/pod0123456789abcdef0123456789abcdef"),
            Some(KubePath::Pod {
                qos: Qos::BestEffort,
                pod_uid: "0123456789abcdef0123456789abcdef".into()
            })
        );
        assert_eq!(
            parse_kubepods_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
            )),
            Some(KubePath::NotContainer("CRI-O's container monitor (conmon)"))
        );
        assert_eq!(
            parse_kubepods_path(&format!("/kubepods/pod{UID}/{ID}/init.scope")),
            Some(KubePath::InsideContainer)
        );
        assert_eq!(
            parse_kubepods_path(&format!("/kubepods/pod{UID}/notanid")),
            Some(KubePath::NotContainer("not a container ID"))
        );
        assert_eq!(
            parse_kubepods_path("/kubepods/burstable/podzz"),
            Some(KubePath::NotContainer("not a pod directory"))
        );
        assert_eq!(parse_kubepods_path("/system.slice/containerd.service"), None);
        assert_eq!(parse_kubepods_path(""), None);
        assert_eq!(parse_kubepods_path("/"), None);
        assert_eq!(parse_kubepods_path("/notkubepods/pod1/abc"), None);
    }

    #[test]
    fn ids_are_lower_case_and_short_ids_are_twelve() {
        let upper = ID.to_ascii_uppercase();
        let Some(KubePath::Container(c)) = parse_kubepods_path(&format!("/kubepods/pod{UID}/{upper}")) else {
            panic!("not a container");
        };
        assert_eq!(c.container_id, ID);
        assert_eq!(c.short_id(), &ID[..12]);
    }

    #[test]
    fn odd_input_never_panics() {
        for p in [
            "kubepods/pod/",
            "kubepods.slice/-pod.slice/x.scope",
            "kubepods.slice/kubepods-pod.slice",
            "kubepods.slice/.slice/.scope",
            "kubepods//////",
            "kubepods/burstable/pod-/-",
            "\u{0}kubepods/\u{ff}",
            "kubepods/pod\u{e9}/\u{e9}",
        ] {
            let _ = parse_kubepods_path(p);
        }
    }
}
