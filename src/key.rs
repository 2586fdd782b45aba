//! The key of a watched container: the names cAdvisor and kube-state-metrics
//! use, so that `on(namespace, pod, container)` joins work.

use serde::Serialize;
use std::fmt;

/// Which container a target is. In the sidecar: the downward API's
/// namespace and pod and the watched container's name. In node mode
/// without names from the CRI: an empty namespace, the pod's UID and the
/// container ID's first 12 hex digits.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TargetKey {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// How an empty namespace is spelled in a URL path
/// (`/api/v1/targets/_/POD/CONTAINER/status`): Kubernetes names never hold
/// an underscore, so it cannot be a namespace's name.
pub const EMPTY_SEGMENT: &str = "_";

impl TargetKey {
    pub fn new(namespace: impl Into<String>, pod: impl Into<String>, container: impl Into<String>) -> TargetKey {
        TargetKey {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }

    /// The sidecar's key: the pod's namespace and name from the downward
    /// API (`POD_NAMESPACE`, `POD_NAME`) and the watched container's name
    /// (`--target-container`, else `CONTAINER_NAME`). The environment is
    /// read only in a pod (`POD_NAME` set): a stray `CONTAINER_NAME` on a
    /// host names nothing.
    pub fn sidecar(target_container: Option<&str>, env: impl Fn(&str) -> Option<String>) -> TargetKey {
        let in_pod = env("POD_NAME").is_some_and(|p| !p.is_empty());
        let get = |k: &str| {
            if in_pod {
                env(k).unwrap_or_default()
            } else {
                String::new()
            }
        };
        TargetKey {
            namespace: get("POD_NAMESPACE"),
            pod: get("POD_NAME"),
            container: target_container
                .map(str::to_owned)
                .unwrap_or_else(|| get("CONTAINER_NAME")),
        }
    }

    /// The label values: namespace, pod, container.
    pub fn labels(&self) -> [&str; 3] {
        [&self.namespace, &self.pod, &self.container]
    }

    /// `namespace/pod/container` for URLs, an empty part spelled
    /// [`EMPTY_SEGMENT`].
    pub fn path(&self) -> String {
        let seg = |s: &str| {
            if s.is_empty() {
                EMPTY_SEGMENT.to_owned()
            } else {
                s.to_owned()
            }
        };
        format!("{}/{}/{}", seg(&self.namespace), seg(&self.pod), seg(&self.container))
    }

    /// The key a URL path's three parts name.
    pub fn from_segments(namespace: &str, pod: &str, container: &str) -> TargetKey {
        let seg = |s: &str| {
            if s == EMPTY_SEGMENT {
                String::new()
            } else {
                s.to_owned()
            }
        };
        TargetKey::new(seg(namespace), seg(pod), seg(container))
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_key_from_the_downward_api() {
        let env = |k: &str| match k {
            "POD_NAMESPACE" => Some("shop".to_owned()),
            "POD_NAME" => Some("cart-7d9".to_owned()),
            "CONTAINER_NAME" => Some("from-env".to_owned()),
            _ => None,
        };
        assert_eq!(
            TargetKey::sidecar(Some("app"), env),
            TargetKey::new("shop", "cart-7d9", "app")
        );
        assert_eq!(TargetKey::sidecar(None, env).container, "from-env");
        assert_eq!(TargetKey::sidecar(None, |_| None), TargetKey::default());
        // Outside a pod, a stray CONTAINER_NAME names nothing.
        let host = |k: &str| (k == "CONTAINER_NAME").then(|| "sandbox-x".to_owned());
        assert_eq!(TargetKey::sidecar(None, host), TargetKey::default());
        assert_eq!(TargetKey::sidecar(Some("app"), host), TargetKey::new("", "", "app"));
    }

    #[test]
    fn paths_round_trip_with_empty_parts() {
        for key in [
            TargetKey::new("shop", "cart-7d9", "app"),
            TargetKey::new("", "0b9f6c1e-2f4a-4d8e-9a51-3c2b1d0e9f87", "4f2a9c0b1d3e"),
            TargetKey::default(),
        ] {
            let p = key.path();
            let parts: Vec<&str> = p.split('/').collect();
            assert_eq!(parts.len(), 3, "{p}");
            assert!(parts.iter().all(|s| !s.is_empty()), "{p}");
            assert_eq!(TargetKey::from_segments(parts[0], parts[1], parts[2]), key);
        }
    }
}
