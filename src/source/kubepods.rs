//! Finds every pod and container cgroup on the node by walking the memory
//! cgroup tree: v1 under `<root>/memory`, v2 under `<root>` itself.
//!
//! The walk reads directory names only, never a file, so a round over a
//! node of a thousand containers costs a few thousand `getdents` calls
//! (see BENCHMARKS.md). It looks for `kubepods` roots in the top
//! [`ROOT_SEARCH_DEPTH`] levels (the kubelet may sit below a prefix), then
//! walks only the shape the kubelet makes: QoS class, pod, container. A
//! directory that vanishes mid-walk (a container that just ended) is
//! skipped without a word; any other failure is said in
//! [`Discovery::errors`] and the rest of the tree is still walked.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::parse::kubepods::{is_kubepods_root, parse_kubepods_path, KubePath};
pub use crate::parse::kubepods::{ContainerPath, Qos};

/// How deep below the hierarchy's root a `kubepods` root is looked for.
pub const ROOT_SEARCH_DEPTH: usize = 4;
/// Directory entries read from one directory at most; a tree larger than
/// this is cut and the cut said in the errors.
pub const MAX_ENTRIES_PER_DIR: usize = 20_000;
/// Errors kept from one walk at most.
const MAX_ERRORS: usize = 64;

/// A container's cgroup, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredContainer {
    /// The directory, under the cgroup root given to [`discover`].
    pub dir: PathBuf,
    /// The cgroup path as the process sees it (`/kubepods/pod…/…`).
    pub rel: String,
    pub path: ContainerPath,
}

/// One walk's result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Sorted by cgroup path.
    pub containers: Vec<DiscoveredContainer>,
    /// The UID of every pod cgroup, with containers or not, sorted.
    pub pods: Vec<String>,
    /// What could not be walked, each naming the directory.
    pub errors: Vec<String>,
}

/// The directory that holds the memory hierarchy under the cgroup root:
/// `<root>/memory` when it exists (v1 or hybrid), else `<root>` (v2).
pub fn memory_hierarchy(root: &Path) -> PathBuf {
    let v1 = root.join("memory");
    if v1.is_dir() {
        v1
    } else {
        root.to_path_buf()
    }
}

/// Walks the memory hierarchy under the cgroup root `root`
/// (`/sys/fs/cgroup`, or `/host/sys/fs/cgroup` in a DaemonSet).
pub fn discover(root: &Path) -> Discovery {
    let base = memory_hierarchy(root);
    let mut w = Walk {
        base: &base,
        out: Discovery::default(),
    };
    let mut kube_roots = Vec::new();
    w.find_roots(&base, 0, &mut kube_roots);
    for r in kube_roots {
        w.walk_kube(&r, 0);
    }
    w.out.containers.sort_by(|a, b| a.rel.cmp(&b.rel));
    w.out.pods.sort();
    w.out.pods.dedup();
    w.out
}

struct Walk<'a> {
    base: &'a Path,
    out: Discovery,
}

impl Walk<'_> {
    fn error(&mut self, msg: String) {
        if self.out.errors.len() < MAX_ERRORS {
            self.out.errors.push(msg);
        }
    }

    /// The names of the subdirectories of `dir`; empty when it is gone.
    fn subdirs(&mut self, dir: &Path) -> Vec<String> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.error(format!("cannot list {}: {e}", dir.display()));
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) => {
                    self.error(format!("cannot list {}: {e}", dir.display()));
                    break;
                }
            };
            // cgroupfs reports directories as such; a symlink is followed
            // only at the root (a test or chroot may link the hierarchy).
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if names.len() == MAX_ENTRIES_PER_DIR {
                self.error(format!(
                    "{} has more than {MAX_ENTRIES_PER_DIR} subdirectories; the rest were not walked",
                    dir.display()
                ));
                break;
            }
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names
    }

    fn find_roots(&mut self, dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        for name in self.subdirs(dir) {
            let child = dir.join(&name);
            if is_kubepods_root(&name) {
                found.push(child);
            } else if depth + 1 < ROOT_SEARCH_DEPTH && could_hold_kubepods(&name) {
                self.find_roots(&child, depth + 1, found);
            }
        }
    }

    /// Walks a kubepods root: QoS classes, pods, containers (depth 0..=2
    /// below the root, 3 with a QoS class).
    fn walk_kube(&mut self, dir: &Path, depth: usize) {
        for name in self.subdirs(dir) {
            let child = dir.join(&name);
            let rel = self.rel(&child);
            match parse_kubepods_path(&rel) {
                Some(KubePath::Qos(_)) if depth == 0 => self.walk_kube(&child, depth + 1),
                Some(KubePath::Pod { pod_uid, .. }) => {
                    self.out.pods.push(pod_uid);
                    self.walk_kube(&child, depth + 1);
                }
                Some(KubePath::Container(path)) => {
                    self.out.containers.push(DiscoveredContainer { dir: child, rel, path })
                }
                _ => {}
            }
        }
    }

    /// `child`'s path below the hierarchy's root, `/`-led.
    fn rel(&self, child: &Path) -> String {
        let r = child.strip_prefix(self.base).unwrap_or(child);
        format!("/{}", r.to_string_lossy())
    }
}

/// Whether a directory above the kubepods root could hold it: not a leaf
/// unit of systemd (`.scope`, `.service`, `.mount`, `.socket`) nor the
/// user sessions.
fn could_hold_kubepods(name: &str) -> bool {
    ![".scope", ".service", ".mount", ".socket", ".swap"]
        .iter()
        .any(|s| name.ends_with(s))
        && name != "user.slice"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_units_are_not_searched() {
        assert!(!could_hold_kubepods("containerd.service"));
        assert!(!could_hold_kubepods("session-1.scope"));
        assert!(!could_hold_kubepods("user.slice"));
        assert!(could_hold_kubepods("kubelet.slice"));
        assert!(could_hold_kubepods("docker"));
    }

    #[test]
    fn a_missing_root_is_empty_not_an_error() {
        let d = discover(Path::new("/nonexistent-cgroup-root"));
        assert_eq!(d, Discovery::default());
    }
}
