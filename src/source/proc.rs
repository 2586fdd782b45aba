//! The target process: finding it (`--pid`, `--process NAME`) and reading
//! `/proc/PID/status` (`VmRSS:    123456 kB`) and `/proc/PID/smaps_rollup`
//! (`LazyFree:              0 kB`) through the procfs crate.

use crate::sample::{ProcSample, SmapsSample, WaitStatus};
use procfs::process::Process;
use procfs::ProcError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcSourceError {
    #[error("{path}: permission denied; reading another user's process needs the same UID or CAP_SYS_PTRACE (in Kubernetes: securityContext.capabilities.add: [SYS_PTRACE])")]
    PermissionDenied { path: PathBuf },
    #[error("{path}: the process is gone")]
    Gone { path: PathBuf },
    #[error("{path}: {reason}")]
    Other { path: PathBuf, reason: String },
    #[error("no process named {name:?} under {proc_root} (matched against comm and the executable name); is the PID namespace shared (shareProcessNamespace: true)?")]
    NoMatch { name: String, proc_root: PathBuf },
    #[error("{count} processes are named {name:?}: {candidates}; pick one with --pid")]
    Ambiguous {
        name: String,
        count: usize,
        candidates: String,
    },
}

impl ProcSourceError {
    fn from_proc(path: PathBuf, e: ProcError) -> ProcSourceError {
        match e {
            ProcError::PermissionDenied(_) => ProcSourceError::PermissionDenied { path },
            ProcError::NotFound(_) => ProcSourceError::Gone { path },
            ProcError::Io(ref io, _) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                ProcSourceError::PermissionDenied { path }
            }
            ProcError::Io(ref io, _) if io.raw_os_error() == Some(3) => ProcSourceError::Gone { path },
            other => ProcSourceError::Other {
                path,
                reason: other.to_string(),
            },
        }
    }
}

/// Finds the PID of the one process whose comm (cut to 15 bytes by the kernel)
/// or executable name is `name`, skipping `own_pid`.
pub fn find_process(proc_root: &Path, name: &str, own_pid: Option<u32>) -> Result<u32, ProcSourceError> {
    let entries = std::fs::read_dir(proc_root).map_err(|e| ProcSourceError::Other {
        path: proc_root.to_path_buf(),
        reason: e.to_string(),
    })?;
    let comm_name: String = name.chars().take(15).collect();
    let mut found: Vec<(u32, String)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if Some(pid) == own_pid {
            continue;
        }
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim_end_matches('\n');
        let exe = exe_name(&dir);
        if comm == comm_name || exe.as_deref() == Some(name) {
            found.push((pid, exe.unwrap_or_else(|| comm.to_owned())));
        }
    }
    found.sort();
    match found.len() {
        0 => Err(ProcSourceError::NoMatch {
            name: name.to_owned(),
            proc_root: proc_root.to_path_buf(),
        }),
        1 => Ok(found[0].0),
        n => Err(ProcSourceError::Ambiguous {
            name: name.to_owned(),
            count: n,
            candidates: found
                .iter()
                .map(|(p, c)| format!("{p} ({c})"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The executable's file name: from the `exe` link, else argv[0] of cmdline.
fn exe_name(dir: &Path) -> Option<String> {
    let from_path = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Ok(target) = std::fs::read_link(dir.join("exe")) {
        let s = target.to_string_lossy();
        return from_path(Path::new(s.trim_end_matches(" (deleted)")));
    }
    let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    if argv0.is_empty() {
        return None;
    }
    from_path(Path::new(&*String::from_utf8_lossy(argv0)))
}

/// Reads one process's status and smaps_rollup.
#[derive(Debug)]
pub struct ProcReader {
    dir: PathBuf,
    pid: u32,
    process: Option<Process>,
    /// The process's start time (clock ticks after boot, field 22 of
    /// /proc/PID/stat), read when it is opened: a PID reused by another
    /// process has another.
    start_time: Option<u64>,
    /// How the process ended, read while it was a zombie.
    exit_status: Option<WaitStatus>,
}

impl ProcReader {
    pub fn new(proc_root: &Path, pid: u32) -> ProcReader {
        ProcReader {
            dir: proc_root.join(pid.to_string()),
            pid,
            process: None,
            start_time: None,
            exit_status: None,
        }
    }

    /// How the process ended, when [`ProcReader::read_status`] found it a
    /// zombie (its parent had not reaped it yet) and could read its status.
    pub fn exit_status(&self) -> Option<WaitStatus> {
        self.exit_status
    }

    /// The start time of the process last opened, if it could be read.
    pub fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    fn process(&mut self) -> Result<&Process, ProcSourceError> {
        if self.process.is_none() {
            let p = Process::new_with_root(self.dir.clone())
                .map_err(|e| ProcSourceError::from_proc(self.dir.clone(), e))?;
            self.start_time = p.stat().ok().map(|st| st.starttime);
            self.process = Some(p);
        }
        Ok(self.process.as_ref().expect("set above"))
    }

    /// `/proc/PID/status`: VmRSS and friends, converted from kB to bytes.
    pub fn read_status(&mut self) -> Result<ProcSample, ProcSourceError> {
        let path = self.dir.join("status");
        let res = self.process()?.status();
        let st = res.map_err(|e| {
            self.process = None;
            ProcSourceError::from_proc(path.clone(), e)
        })?;
        // A zombie has exited: gone, its wait status read while it lasts.
        if st.state.starts_with(['Z', 'X']) {
            let code = self.process()?.stat().ok().and_then(|s| s.exit_code);
            self.exit_status = code.map(WaitStatus::from_raw);
            self.process = None;
            return Err(ProcSourceError::Gone { path });
        }
        let m = crate::parse::proc_files::status_memory(&st);
        Ok(ProcSample {
            pid: self.pid,
            vm_rss: m.vm_rss,
            vm_hwm: m.vm_hwm,
            rss_anon: m.rss_anon,
            rss_file: m.rss_file,
            rss_shmem: m.rss_shmem,
            vm_swap: m.vm_swap,
        })
    }

    /// Variables of the target's environment (`/proc/PID/environ`, as it
    /// was at exec), from one read. `None` for one that is unset.
    pub fn read_env<const N: usize>(&mut self, names: [&str; N]) -> Result<[Option<String>; N], ProcSourceError> {
        let path = self.dir.join("environ");
        let res = self.process()?.environ();
        let env = res.map_err(|e| ProcSourceError::from_proc(path, e))?;
        Ok(names.map(|name| {
            env.get(std::ffi::OsStr::new(name))
                .map(|v| v.to_string_lossy().into_owned())
        }))
    }

    /// `/proc/PID/smaps_rollup` (Linux 4.14+): Rss, Anonymous, LazyFree, Swap,
    /// AnonHugePages.
    pub fn read_smaps_rollup(&mut self, now_ms: u64) -> Result<SmapsSample, ProcSourceError> {
        let path = self.dir.join("smaps_rollup");
        // Read as text and parsed by our own parser (fuzzed; it saturates
        // where procfs's multiplies kB without a check).
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => ProcSourceError::PermissionDenied { path: path.clone() },
            std::io::ErrorKind::NotFound => ProcSourceError::Gone { path: path.clone() },
            _ if e.raw_os_error() == Some(3) => ProcSourceError::Gone { path: path.clone() },
            _ => ProcSourceError::Other {
                path: path.clone(),
                reason: e.to_string(),
            },
        })?;
        let m = crate::parse::proc_files::parse_smaps_rollup(&text)
            .map_err(|reason| ProcSourceError::Other { path, reason })?;
        Ok(SmapsSample {
            rss: m.rss,
            anonymous: m.anonymous,
            lazy_free: m.lazy_free,
            swap: m.swap,
            anon_huge_pages: m.anon_huge_pages,
            read_at_ms: now_ms,
            read_mono_ms: 0,
            cgroup_lru_estimate: None,
        })
    }
}

/// The PIDs listed in a `cgroup.procs` file, one a line (garbage lines
/// skipped); none when it cannot be read. At most the first 64 KiB.
pub fn read_procs(path: &Path) -> Vec<u32> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A process's name (`/proc/PID/comm`, newline cut).
pub fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let p = proc_root.join(pid.to_string()).join("comm");
    std::fs::read_to_string(p).ok().map(|s| s.trim_end().to_owned())
}

/// How long a read of the node's OOM kill count is reused.
pub const NODE_FRESH: Duration = Duration::from_millis(50);

/// The node's counters that anyone may read: `/proc/vmstat`'s `oom_kill`
/// (Linux 4.13+), every OOM kill on the node, e.g. `oom_kill 3`.
#[derive(Debug)]
pub struct NodeReader {
    path: PathBuf,
    files: super::files::FileCache,
}

impl NodeReader {
    pub fn new(proc_root: &Path) -> NodeReader {
        NodeReader {
            path: proc_root.join("vmstat"),
            files: Default::default(),
        }
    }

    /// The node's OOM kill count; `None` when vmstat is unreadable or lacks it.
    /// Every poll of every target asks: a read less than [`NODE_FRESH`] old
    /// (of the same file, by any target) is reused.
    pub fn oom_kills(&mut self) -> Option<u64> {
        static LAST: Mutex<Option<(PathBuf, Instant, Option<u64>)>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((path, at, v)) = last.as_ref() {
            if *path == self.path && at.elapsed() < NODE_FRESH {
                return *v;
            }
        }
        let v = self
            .files
            .read(&self.path)
            .ok()
            .flatten()
            .and_then(|text| crate::parse::parse_flat_keyed(text).get("oom_kill"));
        *last = Some((self.path.clone(), Instant::now(), v));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_tree(procs: &[(u32, &str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, cmdline) in procs {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(d.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        dir
    }

    #[test]
    fn procs_are_read_one_a_line_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cgroup.procs");
        std::fs::write(&f, "12\n\nx\n 34 \n").unwrap();
        assert_eq!(read_procs(&f), vec![12, 34]);
        assert!(read_procs(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn finds_by_comm_or_executable_name() {
        let t = proc_tree(&[
            (10, "bash", "/bin/bash"),
            (20, "my-go-app", "/app/my-go-app -flag"),
            (30, "a-very-long-pro", "/app/a-very-long-process-name"),
        ]);
        assert_eq!(find_process(t.path(), "my-go-app", None).unwrap(), 20);
        // comm is cut to 15 bytes by the kernel.
        assert_eq!(find_process(t.path(), "a-very-long-process-name", None).unwrap(), 30);
        // Our own PID is never the target.
        let e = find_process(t.path(), "my-go-app", Some(20)).unwrap_err();
        assert!(matches!(e, ProcSourceError::NoMatch { .. }), "{e}");
    }

    #[test]
    fn zero_or_several_matches_are_clear_errors() {
        let t = proc_tree(&[(11, "worker", "/bin/worker"), (12, "worker", "/bin/worker")]);
        let e = find_process(t.path(), "worker", None).unwrap_err().to_string();
        assert!(
            e.contains("2 processes") && e.contains("11 (worker)") && e.contains("12 (worker)"),
            "{e}"
        );
        assert!(e.contains("--pid"), "{e}");
        let e = find_process(t.path(), "nothere", None).unwrap_err().to_string();
        assert!(e.contains("nothere") && e.contains("shareProcessNamespace"), "{e}");
    }

    #[test]
    fn node_oom_kills_from_vmstat() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("vmstat"), "nr_free_pages 5\noom_kill 3\nnuma_hit 1\n").unwrap();
        assert_eq!(NodeReader::new(t.path()).oom_kills(), Some(3));
        assert_eq!(NodeReader::new(&t.path().join("none")).oom_kills(), None);
    }

    #[test]
    fn start_time_is_read_when_the_process_is_opened() {
        let mut r = ProcReader::new(Path::new("/proc"), std::process::id());
        assert_eq!(r.start_time(), None);
        r.read_status().unwrap();
        let st = r.start_time().expect("our own start time");
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let field22: u64 = after_comm.split(' ').nth(19).unwrap().parse().unwrap();
        assert_eq!(st, field22);
    }

    #[test]
    fn missing_process_is_gone() {
        let t = proc_tree(&[]);
        let mut r = ProcReader::new(t.path(), 4242);
        let e = r.read_status().unwrap_err();
        assert!(matches!(e, ProcSourceError::Gone { .. }), "{e:?}");
        assert!(e.to_string().contains("4242"), "{e}");
    }
}
