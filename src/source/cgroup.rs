//! Finding the target's memory cgroup and reading its memory files.
//!
//! Locating reads `/proc/PID/cgroup` (e.g. `0::/kubepods.slice/pod1/ctr` on
//! v2, `4:memory:/kubepods/pod1/ctr` on v1) and the sidecar's own
//! `/proc/self/mountinfo`, e.g.
//! `35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory`.
//! Reading takes the cgroup directory and reads every memory file as
//! optional except the usage.

use super::files::FileCache;
use crate::parse::cgroup_files::{parse_limit_v1, parse_limit_v2, Limit, MemoryEvents, MemoryStat, OomControl};
use crate::parse::cgroup_paths::{find_cgroup_mount, parse_proc_cgroup, Membership, MembershipError};
use crate::parse::psi::parse_pressure;
use crate::parse::{parse_flat_keyed, parse_u64};
use crate::sample::{CgroupSample, CgroupVersion};
use std::path::{Path, PathBuf};

/// Where the kernel conventionally mounts cgroupfs; mount points from
/// mountinfo under it are re-rooted at `--cgroup-root`.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the cgroup is gone (the container exited or was moved)")]
    Vanished { path: PathBuf },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: no memory controller in it (neither memory.current nor memory.usage_in_bytes)")]
    NotMemoryCgroup { path: PathBuf },
    #[error("{path}: {reason}")]
    Locate { path: PathBuf, reason: String },
    #[error("{path}: permission denied: no ptrace access to the target, so its cgroup is not visible through its root (run headroom as the target's UID or with CAP_SYS_PTRACE, or give the container limit with --memory-limit to watch it unprivileged)")]
    NoAccess { path: PathBuf },
}

fn io_err(path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cgroup headroom reads, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub dir: PathBuf,
    pub version: CgroupVersion,
    pub via: FoundVia,
    /// A sentence for the log and the status JSON.
    pub how: String,
}

/// How the cgroup was found, as the `found_via` label of
/// `headroom_target_info` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundVia {
    /// `--cgroup PATH`.
    Explicit,
    /// The target's /proc/PID/cgroup path under our own cgroupfs mount.
    OwnMount,
    /// Through the target's own root, /proc/PID/root/sys/fs/cgroup (a
    /// sidecar in another cgroup namespace).
    TargetRoot,
}

impl FoundVia {
    pub fn as_str(self) -> &'static str {
        match self {
            FoundVia::Explicit => "explicit",
            FoundVia::OwnMount => "own_mount",
            FoundVia::TargetRoot => "target_root",
        }
    }
}

/// Tells v1 from v2 by the files in a cgroup directory.
pub fn detect_version(dir: &Path) -> Result<CgroupVersion, CgroupError> {
    if dir.join("memory.current").exists() {
        Ok(CgroupVersion::V2)
    } else if dir.join("memory.usage_in_bytes").exists() {
        Ok(CgroupVersion::V1)
    } else if !dir.is_dir() {
        Err(CgroupError::Locate {
            path: dir.to_path_buf(),
            reason: "no such directory".into(),
        })
    } else if dir.join("cgroup.controllers").exists() {
        Err(CgroupError::Locate {
            path: dir.to_path_buf(),
            reason: "a cgroup v2 directory without memory.current: the root cgroup (which has no memory files or \
                     limit), or memory is not enabled in its parent's cgroup.subtree_control; watch a child cgroup"
                .into(),
        })
    } else {
        Err(CgroupError::NotMemoryCgroup {
            path: dir.to_path_buf(),
        })
    }
}

/// An explicit `--cgroup PATH`: absolute, or relative to `cgroup_root`.
pub fn locate_explicit(cgroup_root: &Path, path: &Path) -> Result<Located, CgroupError> {
    let dir = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cgroup_root.join(path)
    };
    let version = detect_version(&dir)?;
    Ok(Located {
        dir,
        version,
        via: FoundVia::Explicit,
        how: "given with --cgroup".into(),
    })
}

/// `--cgroup auto`: the memory cgroup of process `pid_dir` (`<proc>/<pid>` or
/// `<proc>/self`), as seen through our own mounts, else through the target's
/// own root (`<proc>/<pid>/root/sys/fs/cgroup`) when its cgroup is not visible
/// from here (another cgroup namespace, as in a sidecar).
pub fn locate_auto(cgroup_root: &Path, proc_root: &Path, pid_dir: &Path) -> Result<Located, CgroupError> {
    let cgroup_file = pid_dir.join("cgroup");
    let text = std::fs::read_to_string(&cgroup_file).map_err(|e| io_err(&cgroup_file, e))?;
    let Membership { version, path: cg_path } = parse_proc_cgroup(&text).map_err(|e| match e {
        MembershipError::Malformed(reason) => CgroupError::Parse {
            path: cgroup_file.clone(),
            reason,
        },
        MembershipError::NoMemoryLine => CgroupError::Locate {
            path: cgroup_file.clone(),
            reason: e.to_string(),
        },
    })?;

    let (mount_dir, mount_root) = find_mount(cgroup_root, proc_root, version);
    let mut tried = Vec::new();
    if let Some(rel) = relative_to_mount(&cg_path, &mount_root) {
        let dir = join_rel(&mount_dir, &rel);
        if detect_version(&dir).is_ok() {
            return Ok(Located {
                via: FoundVia::OwnMount,
                how: format!(
                    "{} from {} under our mount {}",
                    cg_path,
                    cgroup_file.display(),
                    mount_dir.display()
                ),
                dir,
                version,
            });
        }
        tried.push(dir);
    }

    // Not visible from here: the target's own view of cgroupfs.
    let target_root = pid_dir.join("root").join("sys/fs/cgroup");
    // Without ptrace access to the target, its root is closed to us.
    if let Err(e) = std::fs::read_dir(&target_root) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return Err(CgroupError::NoAccess {
                path: pid_dir.join("root"),
            });
        }
    }
    let target_mount = if version == CgroupVersion::V1 {
        target_root.join("memory")
    } else {
        target_root
    };
    let mut candidates = Vec::new();
    if !cg_path.starts_with("/..") {
        candidates.push(join_rel(&target_mount, cg_path.trim_start_matches('/')));
    }
    candidates.push(target_mount.clone());
    candidates.dedup();
    for dir in candidates {
        if tried.contains(&dir) {
            continue;
        }
        if detect_version(&dir).is_ok() {
            return Ok(Located {
                via: FoundVia::TargetRoot,
                how: format!(
                    "{cg_path} from {} is not visible under our mount {} (another cgroup namespace); using the target's own view",
                    cgroup_file.display(),
                    mount_dir.display()
                ),
                dir,
                version,
            });
        }
        tried.push(dir);
    }
    Err(CgroupError::Locate {
        path: cgroup_file,
        reason: format!(
            "cgroup {cg_path} ({version:?}) not found; tried {}. Give the directory with --cgroup, or --cgroup-root where cgroupfs is mounted",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    })
}

fn join_rel(base: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The cgroup path relative to a mount whose root is `mount_root`, or `None`
/// when it lies outside it (paths like `/../other` from a cgroup namespace).
fn relative_to_mount(cg_path: &str, mount_root: &str) -> Option<String> {
    if cg_path.split('/').any(|c| c == "..") {
        return None;
    }
    let root = mount_root.trim_end_matches('/');
    if root.is_empty() {
        return Some(cg_path.to_owned());
    }
    let rest = cg_path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| rest.to_owned())
}

/// The directory where the memory hierarchy is mounted (re-rooted under
/// `cgroup_root`) and the mount's root within the hierarchy. Falls back to the
/// conventional layout when mountinfo is unreadable or lacks the mount.
fn find_mount(cgroup_root: &Path, proc_root: &Path, version: CgroupVersion) -> (PathBuf, String) {
    let conventional = match version {
        CgroupVersion::V1 => cgroup_root.join("memory"),
        CgroupVersion::V2 if cgroup_root.join("cgroup.controllers").exists() => cgroup_root.to_path_buf(),
        CgroupVersion::V2 => cgroup_root.join("unified"),
    };
    let path = proc_root.join("self/mountinfo");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return (conventional, "/".into());
    };
    match find_cgroup_mount(&text, version) {
        Some(m) => {
            let dir = match m.mount_point.strip_prefix(DEFAULT_CGROUP_ROOT) {
                Ok(rel) => join_rel(cgroup_root, &rel.to_string_lossy()),
                Err(_) => m.mount_point.clone(),
            };
            (dir, m.root)
        }
        None => (conventional, "/".into()),
    }
}

/// Reads one cgroup's memory files. Holds the files open between polls.
#[derive(Debug)]
pub struct CgroupReader {
    dir: PathBuf,
    version: CgroupVersion,
    /// Parent directories that are memory cgroups too, nearest first.
    ancestors: Vec<PathBuf>,
    files: FileCache,
}

impl CgroupReader {
    pub fn new(located: &Located) -> CgroupReader {
        let limit_file = limit_file(located.version);
        let mut ancestors = Vec::new();
        let mut cur = located.dir.parent();
        while let Some(p) = cur {
            if !p.join(limit_file).exists() {
                break;
            }
            ancestors.push(p.to_path_buf());
            cur = p.parent();
        }
        CgroupReader {
            dir: located.dir.clone(),
            version: located.version,
            ancestors,
            files: FileCache::default(),
        }
    }

    fn read_opt(&mut self, name: &str) -> Result<Option<String>, CgroupError> {
        let path = self.dir.join(name);
        self.read_path(&path)
    }

    fn read_path(&mut self, path: &Path) -> Result<Option<String>, CgroupError> {
        match self.files.read(path) {
            Ok(t) => Ok(t.map(str::to_owned)),
            // ENODEV: the cgroup was removed under an open handle.
            Err(e) if e.raw_os_error() == Some(19) => Err(CgroupError::Vanished {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// Reads one sample. Fails only when the usage cannot be read; every other
    /// file is optional and a malformed one becomes a warning.
    pub fn read(&mut self) -> Result<CgroupSample, CgroupError> {
        let v = self.version;
        let (usage_name, limit_name) = match v {
            CgroupVersion::V2 => ("memory.current", "memory.max"),
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        };
        let usage_path = self.dir.join(usage_name);
        let usage_text = self.read_opt(usage_name)?.ok_or(CgroupError::Vanished {
            path: usage_path.clone(),
        })?;
        let usage = parse_u64(&usage_text).map_err(|e| CgroupError::Parse {
            path: usage_path,
            reason: e.to_string(),
        })?;

        let mut warnings = Vec::new();
        let parse_limit = match v {
            CgroupVersion::V2 => parse_limit_v2,
            CgroupVersion::V1 => parse_limit_v1,
        };
        let limit = self.optional(limit_name, &mut warnings, |t| parse_limit(t).map_err(|e| e.to_string()))?;
        let single = |t: &str| parse_u64(t).map_err(|e| e.to_string());
        let stat = self.keyed("memory.stat", &mut warnings, |kv| match v {
            CgroupVersion::V2 => MemoryStat::from_v2(kv),
            CgroupVersion::V1 => MemoryStat::from_v1(kv),
        })?;

        let mut s = CgroupSample {
            version: v,
            path: self.dir.clone(),
            usage,
            limit,
            path_limit: Limit::Unlimited,
            high: None,
            soft_limit: None,
            peak: None,
            swap: None,
            failcnt: None,
            kmem: None,
            stat,
            events: None,
            events_local: None,
            pressure: None,
            oom_control: None,
            warnings: Vec::new(),
        };
        match v {
            CgroupVersion::V2 => {
                s.high = self.optional("memory.high", &mut warnings, |t| {
                    parse_limit_v2(t).map_err(|e| e.to_string())
                })?;
                s.peak = self.optional("memory.peak", &mut warnings, single)?;
                s.swap = self.optional("memory.swap.current", &mut warnings, single)?;
                s.events = self.keyed("memory.events", &mut warnings, MemoryEvents::from_kv)?;
                s.events_local = self.keyed("memory.events.local", &mut warnings, MemoryEvents::from_kv)?;
                s.pressure = self.optional("memory.pressure", &mut warnings, |t| {
                    parse_pressure(t).map_err(|e| e.to_string())
                })?;
            }
            CgroupVersion::V1 => {
                s.soft_limit = self.optional("memory.soft_limit_in_bytes", &mut warnings, |t| {
                    parse_limit_v1(t).map_err(|e| e.to_string())
                })?;
                s.peak = self.optional("memory.max_usage_in_bytes", &mut warnings, single)?;
                s.failcnt = self.optional("memory.failcnt", &mut warnings, single)?;
                s.kmem = self.optional("memory.kmem.usage_in_bytes", &mut warnings, single)?;
                s.oom_control = self.keyed("memory.oom_control", &mut warnings, OomControl::from_kv)?;
                s.swap = s
                    .stat
                    .as_ref()
                    .and_then(|st| st.raw.get("total_swap").or(st.raw.get("swap")).copied());
            }
        }

        // The smallest limit on the path.
        let mut path_limit = limit.unwrap_or(Limit::Unlimited);
        if let Some(h) = s.stat.as_ref().and_then(|st| st.hierarchical_memory_limit) {
            path_limit = path_limit.min(h);
        }
        for i in 0..self.ancestors.len() {
            let p = self.ancestors[i].join(limit_file(v));
            if let Some(t) = self.read_path(&p)? {
                match parse_limit(&t) {
                    Ok(l) => path_limit = path_limit.min(l),
                    Err(e) => warnings.push(format!("{}: {e}", p.display())),
                }
            }
        }
        s.path_limit = path_limit;
        s.warnings = warnings;
        Ok(s)
    }

    fn optional<T>(
        &mut self,
        name: &str,
        warnings: &mut Vec<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CgroupError> {
        Ok(match self.read_opt(name)? {
            None => None,
            Some(text) => match parse(&text) {
                Ok(v) => Some(v),
                Err(e) => {
                    warnings.push(format!("{}: {e}", self.dir.join(name).display()));
                    None
                }
            },
        })
    }

    fn keyed<T>(
        &mut self,
        name: &str,
        warnings: &mut Vec<String>,
        build: impl Fn(&crate::parse::FlatKeyed) -> T,
    ) -> Result<Option<T>, CgroupError> {
        Ok(match self.read_opt(name)? {
            None => None,
            Some(text) => {
                let kv = parse_flat_keyed(&text);
                for b in &kv.bad {
                    warnings.push(format!(
                        "{}: line {}: {} ({:?})",
                        self.dir.join(name).display(),
                        b.line,
                        b.reason,
                        b.text
                    ));
                }
                Some(build(&kv))
            }
        })
    }
}

fn limit_file(v: CgroupVersion) -> &'static str {
    match v {
        CgroupVersion::V2 => "memory.max",
        CgroupVersion::V1 => "memory.limit_in_bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let t: &[(&str, &str, Option<&str>)] = &[
            ("/a/b", "/", Some("/a/b")),
            ("/", "/", Some("/")),
            ("/a/b", "/a", Some("/b")),
            ("/a", "/a", Some("")),
            ("/ab", "/a", None),
            ("/../target", "/", None),
            ("/x/../y", "/", None),
        ];
        for (p, r, want) in t {
            assert_eq!(relative_to_mount(p, r).as_deref(), *want, "{p} in {r}");
        }
    }
}

#[cfg(test)]
mod locate_tests {
    use super::*;
    use std::fs;

    /// Writes `files` (relative path → contents) under a temp dir.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    }

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn v2_under_our_mount() {
        let t = tree(&[
            ("proc/7/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("proc/self/mountinfo", V2_MOUNT),
            ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
            ("sys/fs/cgroup/kubepods/pod1/ctr/memory.current", "1\n"),
        ]);
        let root = t.path();
        let l = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7")).unwrap();
        assert_eq!(l.dir, root.join("sys/fs/cgroup/kubepods/pod1/ctr"));
        assert_eq!(l.version, CgroupVersion::V2);
        assert!(l.how.contains("under our mount"), "{}", l.how);
    }

    #[test]
    fn hybrid_prefers_the_v1_memory_controller() {
        let t = tree(&[
            ("proc/7/cgroup", "5:memory:/app\n4:cpu:/\n0::/app\n"),
            (
                "proc/self/mountinfo",
                "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
            ),
            ("sys/fs/cgroup/memory/app/memory.usage_in_bytes", "1\n"),
            ("sys/fs/cgroup/unified/app/cgroup.procs", "7\n"),
        ]);
        let root = t.path();
        let l = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7")).unwrap();
        assert_eq!(l.dir, root.join("sys/fs/cgroup/memory/app"));
        assert_eq!(l.version, CgroupVersion::V1);
    }

    #[test]
    fn mount_root_is_stripped() {
        // Our cgroupfs mount shows only a subtree (we are in a cgroup namespace
        // rooted at /kubepods/pod1): a target path under it is visible.
        let t = tree(&[
            ("proc/7/cgroup", "0::/kubepods/pod1/ctr\n"),
            (
                "proc/self/mountinfo",
                "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            ),
            ("sys/fs/cgroup/ctr/memory.current", "1\n"),
        ]);
        let root = t.path();
        let l = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7")).unwrap();
        assert_eq!(l.dir, root.join("sys/fs/cgroup/ctr"));
    }

    #[test]
    fn sidecar_in_another_cgroup_namespace_falls_back_to_the_targets_root() {
        // The target's path is relative to our cgroup namespace and outside
        // our mount; its own /sys/fs/cgroup (through /proc/PID/root) is its cgroup.
        let t = tree(&[
            ("proc/7/cgroup", "0::/../target\n"),
            ("proc/self/mountinfo", V2_MOUNT),
            ("sys/fs/cgroup/memory.current", "999\n"),
            ("proc/7/root/sys/fs/cgroup/memory.current", "1\n"),
            ("proc/7/root/sys/fs/cgroup/memory.max", "1000\n"),
        ]);
        let root = t.path();
        let l = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7")).unwrap();
        assert_eq!(l.dir, root.join("proc/7/root/sys/fs/cgroup"));
        assert!(l.how.contains("another cgroup namespace"), "{}", l.how);
        let mut r = CgroupReader::new(&l);
        assert_eq!(r.read().unwrap().path_limit, Limit::Bytes(1000));
    }

    #[test]
    fn not_found_says_what_was_tried() {
        let t = tree(&[("proc/7/cgroup", "0::/gone\n"), ("proc/self/mountinfo", V2_MOUNT)]);
        let root = t.path();
        let e = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/gone") && msg.contains("tried") && msg.contains("--cgroup"),
            "{msg}"
        );
        let e = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/8")).unwrap_err();
        assert!(e.to_string().contains("proc/8/cgroup"), "{e}");
    }

    #[test]
    fn effective_limit_is_the_smallest_on_the_path() {
        let t = tree(&[
            ("cg/memory.max", "max\n"),
            ("cg/memory.current", "0\n"),
            ("cg/pod/memory.max", "400\n"),
            ("cg/pod/memory.current", "0\n"),
            ("cg/pod/ctr/memory.max", "500\n"),
            ("cg/pod/ctr/memory.current", "10\n"),
        ]);
        let l = locate_explicit(t.path(), Path::new("cg/pod/ctr")).unwrap();
        let s = CgroupReader::new(&l).read().unwrap();
        assert_eq!(s.limit, Some(Limit::Bytes(500)));
        assert_eq!(s.path_limit, Limit::Bytes(400));
        // Optional files absent: None, not 0.
        assert_eq!(
            (s.peak, s.high, s.events.is_none(), s.stat.is_none()),
            (None, None, true, true)
        );
        assert_eq!(s.working_set(), None);
    }

    #[test]
    fn v2_root_cgroup_is_explained_and_tried_once() {
        let t = tree(&[
            ("proc/7/cgroup", "0::/\n"),
            ("proc/self/mountinfo", V2_MOUNT),
            ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        ]);
        let root = t.path();
        let msg = locate_auto(&root.join("sys/fs/cgroup"), &root.join("proc"), &root.join("proc/7"))
            .unwrap_err()
            .to_string();
        assert_eq!(msg.matches("proc/7/root/sys/fs/cgroup").count(), 1, "{msg}");
        let msg = locate_explicit(root, Path::new("sys/fs/cgroup"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("root cgroup") && msg.contains("child cgroup"), "{msg}");
    }

    #[test]
    fn explicit_path_errors() {
        let t = tree(&[("plain/file", "x")]);
        let e = locate_explicit(t.path(), Path::new("nope")).unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        let e = locate_explicit(t.path(), Path::new("plain")).unwrap_err();
        assert!(e.to_string().contains("no memory controller"), "{e}");
    }

    #[test]
    fn garbage_usage_is_an_error_that_names_the_file() {
        let t = tree(&[("cg/memory.current", "lots\n")]);
        let l = locate_explicit(t.path(), Path::new("cg")).unwrap();
        let e = CgroupReader::new(&l).read().unwrap_err();
        assert!(e.to_string().contains("cg/memory.current"), "{e}");
    }
}
