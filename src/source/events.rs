//! The kernel's notifications about the target: its exit (a pidfd); on
//! cgroup v2, every change of its cgroup's `memory.events` (inotify); on
//! v1, each OOM of its cgroup and the cgroup's removal (an eventfd
//! registered through `cgroup.event_control` on `memory.oom_control`, where
//! that file is writable).
//!
//! A container runtime removes a killed container's cgroup within about
//! 100 ms of the process's death, before the next poll could read the
//! kill. So a watcher thread holds the cgroup's counter file open and reads
//! it the moment the kernel signals: at a `memory.events` change and at the
//! target's exit. The OOM killer counts the kill before it signals the
//! victim, so the read at the exit sees it. Files read:
//! ```text
//! memory.events (v2)       low 0 / high 0 / max 12 / oom 1 / oom_kill 1 / oom_group_kill 0
//! memory.oom_control (v1)  oom_kill_disable 0 / under_oom 0 / oom_kill 1
//! ```

use crate::parse::cgroup_files::{MemoryEvents, OomControl};
use crate::parse::parse_flat_keyed;
use crate::sample::{CgroupVersion, WaitStatus};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the watcher saw, as of its latest read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// The cgroup's OOM kill count at the latest read of the held file.
    pub oom_kills: Option<u64>,
    /// v2: all of `memory.events` at that read.
    pub events: Option<MemoryEvents>,
    /// The target process exited.
    pub exited: bool,
    /// The cgroup could still be read after the exit: `oom_kills` includes
    /// a kill that caused it.
    pub read_after_exit: bool,
    /// The counter file is gone (the cgroup was removed).
    pub cgroup_gone: bool,
    /// How the process ended, read the moment it exited (before its parent
    /// reaped it), where that was in time.
    pub exit_status: Option<WaitStatus>,
    /// When the counter file was last read: a reader takes the counts
    /// only when they are newer than its own last read of the same file
    /// (an older read must not be taken for a reset of the counter).
    pub read_at: Option<std::time::Instant>,
}

/// A running watcher; dropping it stops the thread.
#[derive(Debug)]
pub struct KillWatch {
    shared: Arc<Mutex<Watched>>,
    wake: Option<File>,
    thread: Option<JoinHandle<()>>,
    /// The file watched, for logs.
    pub path: PathBuf,
}

fn counter_file(dir: &Path, version: CgroupVersion) -> PathBuf {
    match version {
        CgroupVersion::V2 => dir.join("memory.events"),
        CgroupVersion::V1 => dir.join("memory.oom_control"),
    }
}

fn read_held(file: &File) -> io::Result<String> {
    let mut buf = vec![0u8; 512];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Parses one read of the counter file into (oom_kill, v2 events).
fn parse_counters(text: &str, version: CgroupVersion) -> (Option<u64>, Option<MemoryEvents>) {
    let kv = parse_flat_keyed(text);
    match version {
        CgroupVersion::V2 => {
            let ev = MemoryEvents::from_kv(&kv);
            (ev.oom_kill, Some(ev))
        }
        CgroupVersion::V1 => (OomControl::from_kv(&kv).oom_kill, None),
    }
}

fn last_os_error<T>(what: &str) -> io::Result<T> {
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process exits.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments; the result is a new
    // descriptor we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return last_os_error(&format!("pidfd_open({pid})"));
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An eventfd the kernel signals at each OOM of the v1 memory cgroup `dir`
/// and at its removal: `"<eventfd> <fd of memory.oom_control>"` written to
/// its `cgroup.event_control` (`oom_control` is the held counter file).
fn oom_eventfd(dir: &Path, oom_control: &File) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the descriptor is owned right away.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return last_os_error("eventfd");
    }
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let control = dir.join("cgroup.event_control");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&control)
        .and_then(|mut f| f.write_all(format!("{} {}", owned.as_raw_fd(), oom_control.as_raw_fd()).as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", control.display())))?;
    Ok(owned)
}

/// After an OOM notification the kill is counted within microseconds, and
/// a runtime removes a killed container's cgroup within tens of
/// milliseconds: the counter is read again at these delays (ms) after it.
const AFTER_OOM_READS_MS: &[u64] = &[1, 2, 5, 10, 20, 40];

/// An inotify descriptor watching `path` for modification and removal.
fn inotify_on(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls; the descriptor is owned right away.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return last_os_error("inotify_init1");
    }
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut c_path = path.as_os_str().as_bytes().to_vec();
    c_path.push(0);
    let mask = libc::IN_MODIFY | libc::IN_DELETE_SELF | libc::IN_IGNORED;
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    let wd = unsafe { libc::inotify_add_watch(fd, c_path.as_ptr().cast(), mask) };
    if wd < 0 {
        return last_os_error(&format!("inotify_add_watch({})", path.display()));
    }
    Ok(owned)
}

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return last_os_error("pipe2");
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

impl KillWatch {
    /// Starts watching the cgroup `dir` (its counter file opened now) and,
    /// when `pid` is given, that process's exit. `pid` must be a PID of our
    /// own PID namespace (the real /proc). Fails when there is nothing to
    /// be notified of (no pidfd and no inotify) or the file cannot be opened.
    pub fn start(pid: Option<u32>, dir: &Path, version: CgroupVersion) -> io::Result<KillWatch> {
        let path = counter_file(dir, version);
        let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let pidfd = match pid.map(pidfd_open) {
            Some(Ok(fd)) => Some(fd),
            Some(Err(e)) => {
                tracing::debug!("no exit notification: {e}");
                None
            }
            None => None,
        };
        // v2 memory.events notifies a change; v1 an OOM, through an eventfd
        // (where cgroup.event_control is writable: not on a read-only mount).
        let notify = match version {
            CgroupVersion::V2 => Some(Notify::Inotify(inotify_on(&path)?)),
            CgroupVersion::V1 => match oom_eventfd(dir, &file) {
                Ok(fd) => Some(Notify::OomEvent(fd)),
                Err(e) => {
                    tracing::debug!("no OOM notification: {e}");
                    None
                }
            },
        };
        if pidfd.is_none() && notify.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: nothing to be notified of (no pidfd, and cgroup.event_control could not be written)",
                    path.display()
                ),
            ));
        }
        let (oom_kills, events) = read_held(&file)
            .map(|t| parse_counters(&t, version))
            .unwrap_or((None, None));
        let shared = Arc::new(Mutex::new(Watched {
            oom_kills,
            events,
            read_at: Some(std::time::Instant::now()),
            ..Watched::default()
        }));
        let (wake_rx, wake_tx) = pipe()?;
        let thread_shared = shared.clone();
        // The target's stat, opened now and read at its exit.
        let exit_stat = pid
            .filter(|_| pidfd.is_some())
            .and_then(|p| File::open(format!("/proc/{p}/stat")).ok());
        let thread = std::thread::Builder::new()
            .name("kill-watch".into())
            .spawn(move || watch(file, version, pidfd, exit_stat, notify, wake_rx, thread_shared))?;
        Ok(KillWatch {
            shared,
            wake: Some(wake_tx),
            thread: Some(thread),
            path,
        })
    }

    /// What was seen so far.
    pub fn latest(&self) -> Watched {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for KillWatch {
    fn drop(&mut self) {
        if let Some(mut w) = self.wake.take() {
            let _ = w.write_all(&[1]);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What tells the watcher that the counter may have changed.
enum Notify {
    /// v2: `memory.events` modified or removed.
    Inotify(OwnedFd),
    /// v1: an OOM in the cgroup, or its removal.
    OomEvent(OwnedFd),
}

impl Notify {
    fn fd(&self) -> i32 {
        match self {
            Notify::Inotify(f) | Notify::OomEvent(f) => f.as_raw_fd(),
        }
    }
}

/// The watcher thread: sleeps in poll(2) until the target exits, the
/// counter file changes (v2) or the cgroup goes out of memory (v1), or it
/// is told to stop.
fn watch(
    file: File,
    version: CgroupVersion,
    pidfd: Option<OwnedFd>,
    exit_stat: Option<File>,
    notify: Option<Notify>,
    mut wake: File,
    shared: Arc<Mutex<Watched>>,
) {
    let update = |exit: bool| {
        // First the zombie's status: its parent may reap it any moment.
        let status = if exit {
            exit_stat.as_ref().and_then(zombie_status)
        } else {
            None
        };
        let at = std::time::Instant::now();
        let read = read_held(&file).map(|t| parse_counters(&t, version));
        let mut w = shared.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok((k, ev)) => {
                w.oom_kills = k.or(w.oom_kills);
                w.events = ev.or(w.events.take());
                w.read_at = Some(at);
                if exit {
                    w.read_after_exit = true;
                }
            }
            Err(_) => w.cgroup_gone = true,
        }
        if exit {
            w.exited = true;
            w.exit_status = status;
        }
    };
    let none = -1;
    // Reads still due after an OOM notification: (at, index into
    // AFTER_OOM_READS_MS).
    let mut after_oom: Option<(std::time::Instant, usize)> = None;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_ref().map_or(none, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: notify.as_ref().map_or(none, Notify::fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout_ms = match after_oom {
            Some((at, i)) => {
                let due = at + std::time::Duration::from_millis(AFTER_OOM_READS_MS[i]);
                due.saturating_duration_since(std::time::Instant::now()).as_millis() as i32
            }
            None => -1,
        };
        // SAFETY: `fds` is a valid array of pollfd; negative fds are ignored.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 1];
            let _ = wake.read(&mut b);
            return;
        }
        if n == 0 {
            // A read due after an OOM notification.
            if let Some((at, i)) = after_oom {
                update(false);
                after_oom = (i + 1 < AFTER_OOM_READS_MS.len()).then_some((at, i + 1));
                if shared.lock().unwrap_or_else(|e| e.into_inner()).cgroup_gone && pidfd.is_none() {
                    return;
                }
            }
            continue;
        }
        if fds[2].revents != 0 {
            let removed = match notify.as_ref().expect("polled") {
                Notify::Inotify(fd) => drain_inotify(fd),
                Notify::OomEvent(fd) => {
                    let mut count = [0u8; 8];
                    // SAFETY: reading the eventfd's 8-byte counter into a buffer we own.
                    let _ = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
                    after_oom = Some((std::time::Instant::now(), 0));
                    false
                }
            };
            update(false);
            let gone = removed || shared.lock().unwrap_or_else(|e| e.into_inner()).cgroup_gone;
            if gone {
                shared.lock().unwrap_or_else(|e| e.into_inner()).cgroup_gone = true;
                if pidfd.is_none() || removed {
                    return;
                }
                // v1: the cgroup is gone; the exit may still come.
                after_oom = None;
            }
        }
        if fds[1].revents != 0 {
            update(true);
            return;
        }
    }
}

/// The wait status of the process whose `/proc/PID/stat` is `stat` (held
/// open since the watch began, so that the read at the exit costs one
/// pread: the parent may collect the zombie any moment), while it is a
/// zombie.
fn zombie_status(stat: &File) -> Option<WaitStatus> {
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    match crate::parse::proc_files::stat_state_and_exit_code(text)? {
        ('Z' | 'X', Some(code)) => Some(WaitStatus::from_raw(code)),
        _ => None,
    }
}

/// Reads the pending inotify events; true when the watched file went away.
fn drain_inotify(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 1024];
    let mut removed = false;
    loop {
        // SAFETY: reading into a buffer we own, of the length we pass.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return removed;
        }
        let mut off = 0usize;
        let header = std::mem::size_of::<libc::inotify_event>();
        while off + header <= n as usize {
            // SAFETY: the kernel writes whole inotify_event records; read
            // unaligned from the byte buffer.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            if ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0 {
                removed = true;
            }
            off += header + ev.len as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(w: &KillWatch, what: impl Fn(&Watched) -> bool) -> Watched {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = w.latest();
            if what(&seen) || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn parses_both_versions() {
        let (k, ev) = parse_counters(
            "low 0\nhigh 3\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
            CgroupVersion::V2,
        );
        assert_eq!(k, Some(1));
        assert_eq!(ev.unwrap().high, Some(3));
        let (k, ev) = parse_counters("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n", CgroupVersion::V1);
        assert_eq!((k, ev), (Some(4), None));
    }

    #[test]
    fn a_change_of_memory_events_is_read_at_once() {
        // inotify works on any file: a temp file stands in for memory.events.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        std::fs::write(&f, "oom 0\noom_kill 0\n").unwrap();
        let w = KillWatch::start(None, dir.path(), CgroupVersion::V2).unwrap();
        assert_eq!(w.latest().oom_kills, Some(0));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .write_all(b"oom 1\noom_kill 1\n")
            .unwrap();
        let seen = wait_for(&w, |s| s.oom_kills == Some(1));
        assert_eq!(seen.oom_kills, Some(1), "{seen:?}");
        assert!(!seen.exited && !seen.cgroup_gone, "{seen:?}");
    }

    #[test]
    fn the_exit_of_the_process_is_seen_and_the_count_read_then() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.oom_control"), "under_oom 0\noom_kill 0\n").unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let w = KillWatch::start(Some(child.id()), dir.path(), CgroupVersion::V1).unwrap();
        assert!(!w.latest().exited);
        std::fs::write(dir.path().join("memory.oom_control"), "under_oom 0\noom_kill 1\n").unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = wait_for(&w, |s| s.exited);
        assert!(seen.exited && seen.read_after_exit, "{seen:?}");
        assert_eq!(seen.oom_kills, Some(1));
    }

    #[test]
    fn the_exit_status_is_read_while_the_process_is_a_zombie() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.oom_control"), "oom_kill 0\n").unwrap();
        for (script, want) in [
            ("exit 3", WaitStatus::Exited(3)),
            ("kill -TERM $$", WaitStatus::Signaled(15)),
        ] {
            let mut child = std::process::Command::new("sh")
                .args(["-c", &format!("read x; {script}")])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let w = KillWatch::start(Some(child.id()), dir.path(), CgroupVersion::V1).unwrap();
            drop(child.stdin.take());
            // Not reaped until the watcher saw it: it stays a zombie.
            let seen = wait_for(&w, |s| s.exited);
            child.wait().unwrap();
            assert_eq!(seen.exit_status, Some(want), "{script}: {seen:?}");
        }
    }

    #[test]
    fn v1_without_a_pid_nor_an_event_control_has_nothing_to_watch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.oom_control"), "oom_kill 0\n").unwrap();
        let e = KillWatch::start(None, dir.path(), CgroupVersion::V1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("memory.oom_control"), "{e}");
    }

    #[test]
    fn dropping_the_watch_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.events"), "oom_kill 0\n").unwrap();
        let w = KillWatch::start(None, dir.path(), CgroupVersion::V2).unwrap();
        drop(w); // joins: the test would hang if the thread did not stop
    }
}
