//! A kubepods tree of real v1 memory cgroups, laid out as the kubelet's
//! cgroupfs driver lays it out (`kubepods/<qos>/pod<uid>/<id>`), for
//! `headroom node`; and plain processes started in a cgroup.

use super::V1Cgroup;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A kubepods tree under a test cgroup of our own, and a cgroup root (a
/// temp dir whose `memory` links to it) for `--cgroup-root`.
pub struct KubeTree {
    pub base: V1Cgroup,
    root: tempfile::TempDir,
    /// Directories made, removed deepest first at the end.
    made: Vec<PathBuf>,
}

impl KubeTree {
    pub fn new() -> KubeTree {
        // One tree per test: the tests of a binary run at once, in one process.
        static TREES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = TREES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = V1Cgroup::create(&format!("kubetree{n}"), 8 << 30);
        let root = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(&base.dir, root.path().join("memory")).expect("link memory");
        KubeTree {
            base,
            root,
            made: Vec::new(),
        }
    }

    /// Makes `rel` (and its parents) under the tree, each a real cgroup.
    pub fn mkdir(&mut self, rel: &str) -> PathBuf {
        let mut dir = self.base.dir.clone();
        for part in rel.split('/') {
            dir = dir.join(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                self.made.push(dir.clone());
            }
        }
        dir
    }

    /// A container's cgroup, limited to `limit` bytes.
    pub fn container(&mut self, qos: &str, pod: &str, id: &str, limit: Option<u64>) -> V1Cgroup {
        let rel = match qos {
            "" => format!("kubepods/pod{pod}/{id}"),
            q => format!("kubepods/{q}/pod{pod}/{id}"),
        };
        let dir = self.mkdir(&rel);
        if let Some(l) = limit {
            std::fs::write(dir.join("memory.limit_in_bytes"), l.to_string()).expect("set limit");
            let _ = std::fs::write(dir.join("memory.swappiness"), "0");
        }
        self.made.retain(|d| d != &dir);
        V1Cgroup { dir }
    }

    pub fn cgroup_root(&self) -> &Path {
        self.root.path()
    }

    /// Removes a cgroup directory as a runtime does when its container or
    /// pod is gone (its processes must be gone).
    pub fn remove(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(dir).is_err() && dir.exists() {
            assert!(Instant::now() < deadline, "could not remove {}", dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        self.made.retain(|d| d != dir);
    }
}

impl Drop for KubeTree {
    fn drop(&mut self) {
        for d in self.made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A plain process in `cg`, killed (by PID) and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn start(cg: &V1Cgroup, program: &Path, args: &[&str]) -> Proc {
        let child = cg
            .command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start process");
        let p = Proc(child);
        // Until the shell has exec'd, the process is in the cgroup as `sh`.
        let exe = std::fs::canonicalize(program).expect("program path");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{}/exe", p.0.id())).ok() != Some(exe.clone()) {
            assert!(Instant::now() < deadline, "{} did not start", program.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
