//! Where a process's memory cgroup is, from two procfs files parsed by the
//! procfs crate:
//!
//! ```text
//! /proc/PID/cgroup       0::/kubepods.slice/pod1/ctr          (v2)
//!                        4:memory:/kubepods/pod1/ctr          (v1)
//! /proc/self/mountinfo   35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
//! ```

use procfs::FromBufRead;
use serde::Serialize;
use std::path::PathBuf;

/// The cgroup hierarchy's version: v1 (one hierarchy per controller) or v2
/// (the unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The cgroup a process's memory is charged to, as `/proc/PID/cgroup`
/// names it (a path within its hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub version: CgroupVersion,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("{0}")]
    Malformed(String),
    #[error("no memory controller line (v1 `N:memory:/path`) and no v2 line (`0::/path`)")]
    NoMemoryLine,
}

/// Parses `/proc/PID/cgroup`: the v1 memory controller's line where there
/// is one (hybrid hosts list both), else the v2 line.
pub fn parse_proc_cgroup(text: &str) -> Result<Membership, MembershipError> {
    let groups = procfs::ProcessCGroups::from_buf_read(text.as_bytes())
        .map_err(|e| MembershipError::Malformed(e.to_string()))?;
    if let Some(g) = groups.0.iter().find(|g| g.controllers.iter().any(|c| c == "memory")) {
        return Ok(Membership {
            version: CgroupVersion::V1,
            path: g.pathname.clone(),
        });
    }
    match groups.0.iter().find(|g| g.hierarchy == 0) {
        Some(g) => Ok(Membership {
            version: CgroupVersion::V2,
            path: g.pathname.clone(),
        }),
        None => Err(MembershipError::NoMemoryLine),
    }
}

/// A cgroupfs mount: where it is mounted and which directory of the
/// hierarchy is its root (not `/` inside a cgroup namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    pub root: String,
}

/// The mount of the memory hierarchy of `version` in a mountinfo file
/// (v1: a `cgroup` mount with the `memory` option; v2: the `cgroup2`
/// mount). `None` when the text does not parse or has no such mount.
pub fn find_cgroup_mount(mountinfo: &str, version: CgroupVersion) -> Option<CgroupMount> {
    let mounts = procfs::process::MountInfos::from_buf_read(mountinfo.as_bytes()).ok()?;
    let m = mounts.0.iter().find(|m| match version {
        CgroupVersion::V1 => m.fs_type == "cgroup" && m.super_options.contains_key("memory"),
        CgroupVersion::V2 => m.fs_type == "cgroup2",
    })?;
    Some(CgroupMount {
        mount_point: m.mount_point.clone(),
        root: m.root.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_lines() {
        let v1 = |p: &str| Membership {
            version: CgroupVersion::V1,
            path: p.into(),
        };
        let v2 = |p: &str| Membership {
            version: CgroupVersion::V2,
            path: p.into(),
        };
        let table: &[(&str, Result<Membership, ()>)] = &[
            ("0::/kubepods/pod1/ctr\n", Ok(v2("/kubepods/pod1/ctr"))),
            ("5:memory:/app\n4:cpu:/\n0::/app\n", Ok(v1("/app"))),
            ("12:cpu,memory:/x\n", Ok(v1("/x"))),
            ("0::/../target\n", Ok(v2("/../target"))),
            ("4:cpu:/\n", Err(())),
            ("", Err(())),
            ("garbage\n", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(parse_proc_cgroup(text).map_err(|_| ()), *want, "{text:?}");
        }
        assert_eq!(parse_proc_cgroup("4:cpu:/\n"), Err(MembershipError::NoMemoryLine));
    }

    #[test]
    fn mountinfo_lines() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 /pod /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup_mount(text, CgroupVersion::V1),
            Some(CgroupMount {
                mount_point: "/sys/fs/cgroup/memory".into(),
                root: "/".into()
            })
        );
        assert_eq!(
            find_cgroup_mount(text, CgroupVersion::V2),
            Some(CgroupMount {
                mount_point: "/sys/fs/cgroup/unified".into(),
                root: "/pod".into()
            })
        );
        assert_eq!(find_cgroup_mount("", CgroupVersion::V2), None);
        assert_eq!(find_cgroup_mount("not mountinfo\n", CgroupVersion::V2), None);
        for tree in ["v1", "v2", "hybrid", "v2-max"] {
            let text = std::fs::read_to_string(format!(
                "{}/tests/fixtures/{tree}/proc/self/mountinfo",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let v1 = find_cgroup_mount(&text, CgroupVersion::V1);
            let v2 = find_cgroup_mount(&text, CgroupVersion::V2);
            assert!(v1.is_some() || v2.is_some(), "{tree}");
        }
    }
}
