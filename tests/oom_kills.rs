//! Every OOM kill of the target counted exactly once where a container
//! runtime removes the killed container's cgroup at once and restarts the
//! container in a new one (as podman and kubelets do), and nothing else
//! counted: a `kill -9` near the limit is not an OOM kill; each exit
//! classified. A child's OOM kill is counted and named with the target
//! alive; a jump from under half the limit to the kill within one poll is
//! counted; a restart of headroom counts nothing again. Real gohog
//! processes in real v1 memory cgroups; this test plays the runtime.
//!
//! The node's OOM kill count is evidence, so the tests that kill run one
//! at a time (another test's kill in the same interval is another pod's).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn node_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .expect("/proc/vmstat oom_kill")
}

/// The runtime's part after a death: the cgroup removed within 100 ms, the
/// container restarted in a new cgroup.
struct Runtime {
    name: String,
    exe: PathBuf,
    _dir: tempfile::TempDir,
    generation: u32,
}

impl Runtime {
    fn new(tag: &str) -> Runtime {
        let name = format!("{tag}{}", std::process::id());
        let (dir, exe) = named_gohog(&name);
        Runtime {
            name,
            exe,
            _dir: dir,
            generation: 0,
        }
    }

    fn start(&mut self, args: &[&str]) -> (V1Cgroup, Child) {
        self.generation += 1;
        let cg = V1Cgroup::create(&format!("{}-{}", self.name, self.generation), 96 * MIB);
        let child = start_named(&cg, &self.exe, args);
        (cg, child)
    }

    /// Waits for the target's death, collects it 5 ms later (a shim's
    /// reaper), removes its cgroup 30 ms after that.
    fn reap(&self, cg: V1Cgroup, child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
        wait_exit_unreaped(child, timeout);
        std::thread::sleep(Duration::from_millis(5));
        let st = wait_exit(child, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(30));
        drop(cg);
        st
    }
}

fn wait_for_pid(hr: &Headroom, pid: u32) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = hr.status();
        if st["target"]["pid"].as_u64() == Some(pid as u64) && st["sources"]["cgroup"]["up"] == true {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "did not follow the restart to pid {pid}: {st:#}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Held by a test while it kills: one such test at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn exits(st: &serde_json::Value) -> serde_json::Value {
    st["memory"]["exits_total"].clone()
}

fn kills(hr: &Headroom) -> (f64, f64) {
    let m = hr.metrics();
    (
        m["headroom_oom_kills_total"],
        m.get("headroom_oom_kills_inferred_total").copied().unwrap_or(f64::NAN),
    )
}

/// A run of the runtime: an OOM kill, a `kill -9` near the limit, and a
/// second OOM kill, each followed by the cgroup's removal and a restart in
/// a new cgroup. Returns the statuses after each step.
fn play(hr_args: &[&str], tag: &str) -> (Headroom, Vec<serde_json::Value>) {
    let _one = one_at_a_time();
    let mut rt = Runtime::new(tag);
    let (cg, mut app) = rt.start(&["-leak", "20"]);
    let mut args = vec!["--process", rt.name.as_str(), "--interval", "1500ms"];
    args.extend_from_slice(hr_args);
    let hr = Headroom::start(&args);
    wait_for_pid(&hr, app.id());
    let mut seen = Vec::new();

    // 1. An OOM kill.
    let node_before = node_oom_kills();
    let st = rt.reap(cg, &mut app, Duration::from_secs(30));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(9),
        "the leak ends in the OOM killer's SIGKILL: {st:?}"
    );
    assert!(node_oom_kills() > node_before, "the kernel counted an OOM kill");
    let (cg, mut app) = rt.start(&["-hold", "70"]);
    seen.push(wait_for_pid(&hr, app.id()));
    std::thread::sleep(Duration::from_millis(1600));

    // 2. kill -9 at 70 of 96 MiB: not an OOM kill.
    unsafe_kill(app.id() as i32, 9);
    rt.reap(cg, &mut app, Duration::from_secs(10));
    let (cg, mut app) = rt.start(&["-leak", "20"]);
    seen.push(wait_for_pid(&hr, app.id()));

    // 3. A second OOM kill.
    rt.reap(cg, &mut app, Duration::from_secs(30));
    let (_cg, mut app) = rt.start(&[]);
    seen.push(wait_for_pid(&hr, app.id()));
    std::thread::sleep(Duration::from_millis(3100));
    seen.push(hr.status());
    let _ = app.kill();
    let _ = app.wait();
    (hr, seen)
}

#[test]
fn kills_are_read_before_the_runtime_removes_the_cgroup_and_kill_9_is_not_one() {
    let (hr, seen) = play(&[], "oomrt");
    let totals: Vec<_> = seen.iter().map(|s| s["memory"]["oom_kills_total"].as_u64()).collect();
    assert_eq!(
        totals,
        [Some(1), Some(1), Some(2), Some(2)],
        "one kill, none for kill -9, a second kill, no more:\n{}",
        hr.log()
    );
    let last = &seen[3]["memory"];
    assert_eq!(
        last["oom_kills_inferred"], 0,
        "read from the cgroup by the watcher: {last:#}"
    );
    assert_eq!(last["last_oom_kill"]["how"], "cgroup", "{last:#}");
    assert_eq!(kills(&hr), (2.0, 0.0));
    // The watcher read each exit's status before the runtime collected it.
    assert_eq!(
        exits(&seen[3]),
        serde_json::json!({"oom_kill": 2, "signal": 1}),
        "{last:#}\n{}",
        hr.log()
    );
    let m = hr.metrics();
    for (reason, want) in [("oom_kill", 2.0), ("signal", 1.0), ("exit", 0.0), ("node_oom", 0.0)] {
        let series = format!("headroom_target_exits_total{{reason=\"{reason}\"}}");
        assert_eq!(m.get(series.as_str()).copied(), Some(want), "{series}");
    }
}

#[test]
fn without_notifications_kills_are_inferred_and_kill_9_is_still_not_one() {
    // A --proc-root other than /proc: no pidfd (its PIDs need not be ours);
    // a read-only cgroupfs: no OOM eventfd. The inference has to decide.
    let (_proc, proc_root) = other_proc_root();
    let ro = ReadOnlyCgroupfs::new();
    let cgroup_root = ro.root();
    let (hr, seen) = play(&["--proc-root", &proc_root, "--cgroup-root", &cgroup_root], "oominf");
    let totals: Vec<_> = seen.iter().map(|s| s["memory"]["oom_kills_total"].as_u64()).collect();
    assert_eq!(totals, [Some(1), Some(1), Some(2), Some(2)], "{}", hr.log());
    let last = &seen[3]["memory"];
    assert_eq!(last["oom_kills_inferred"], 2, "{last:#}");
    assert_eq!(last["last_oom_kill"]["how"], "inferred", "{last:#}");
    assert_eq!(kills(&hr), (2.0, 2.0));
    // Without a pidfd the kill -9's status is read only if a poll finds the
    // process a zombie: a signal, or unknown; never an OOM kill.
    let ex = exits(&seen[3]);
    assert_eq!(ex["oom_kill"], 2, "{ex}");
    let other = ex["signal"].as_u64().unwrap_or(0) + ex["unknown"].as_u64().unwrap_or(0);
    assert_eq!(other, 1, "{ex}");
}

/// A proc root other than /proc (a link to it): no pidfd for the target.
fn other_proc_root() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let proc_link = dir.path().join("proc");
    std::os::unix::fs::symlink("/proc", &proc_link).unwrap();
    let proc_root = proc_link.to_str().unwrap().to_owned();
    (dir, proc_root)
}

/// The v1 memory hierarchy bind-mounted read-only under a cgroup root of its
/// own, as a DaemonSet mounts the host's: headroom reads every file but
/// cannot register an OOM eventfd (`cgroup.event_control` is not
/// writable). Unmounted on drop.
struct ReadOnlyCgroupfs {
    dir: tempfile::TempDir,
}

impl ReadOnlyCgroupfs {
    fn new() -> ReadOnlyCgroupfs {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("memory");
        std::fs::create_dir(&m).unwrap();
        for args in [&["--bind", "/sys/fs/cgroup/memory"][..], &["-o", "remount,bind,ro"][..]] {
            let st = std::process::Command::new("mount").args(args).arg(&m).status().unwrap();
            assert!(st.success(), "mount {args:?} {}", m.display());
        }
        ReadOnlyCgroupfs { dir }
    }

    fn root(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }
}

impl Drop for ReadOnlyCgroupfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path().join("memory"))
            .status();
    }
}

fn wait_status(hr: &Headroom, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = hr.status();
        if ok(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st:#}\n{}", hr.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_childs_oom_kill_is_counted_and_named_with_the_target_alive_and_a_restart_counts_nothing_again() {
    let _one = one_at_a_time();
    let name = format!("hrparent{}", std::process::id());
    let (_dir, exe) = named_gohog(&name);
    let cg = V1Cgroup::create(&format!("{name}-cg"), 64 * MIB);
    let target = GoHog::start_exe(&cg, &exe, &[], &["-hold", "4"]);
    let hr = Headroom::start(&["--process", &name, "--interval", "500ms"]);
    wait_for_pid(&hr, target.pid());
    std::thread::sleep(Duration::from_millis(600));
    // Another process of the cgroup leaks past the limit: the OOM killer
    // takes it (the largest), not the target.
    let mut child = GoHog::start(&cg, &[], &["-leak", "40"]);
    let child_pid = child.pid();
    let st = wait_exit(&mut child.child, Duration::from_secs(30));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    let st = wait_status(&hr, "the child's kill counted", |st| {
        st["memory"]["oom_kills_total"] == 1 && st["memory"]["last_oom_kill"]["child"] == true
    });
    let k = &st["memory"]["last_oom_kill"];
    assert_eq!(k["pid"], child_pid, "{k}");
    assert_eq!(k["comm"], "gohog", "{k}");
    assert_eq!(st["target"]["pid"], target.pid(), "the target lives");
    assert_eq!(exits(&st), serde_json::json!({}), "no exit of the target");
    assert_eq!(kills(&hr), (1.0, 0.0));
    // A second headroom (a restarted sidecar) reads the cgroup's count of 1:
    // a kill from before it started, not counted again.
    let again = Headroom::start(&["--process", &name, "--interval", "500ms"]);
    let st = wait_for_pid(&again, target.pid());
    assert_eq!(st["memory"]["oom_kills_total"], 0, "{st:#}");
    assert_eq!(st["memory"]["oom_kills_before_start"], 1, "{st:#}");
    assert_eq!(kills(&again), (0.0, 0.0));
    drop(target);
}

#[test]
fn a_jump_from_under_half_the_limit_to_the_kill_within_one_poll_is_counted() {
    let _one = one_at_a_time();
    let (_proc, proc_root) = other_proc_root();
    // No pidfd and no OOM eventfd (as above): the inference counts it.
    let ro = ReadOnlyCgroupfs::new();
    let cgroup_root = ro.root();
    let mut rt = Runtime::new("oomjump");
    rt.generation += 1;
    let cg = V1Cgroup::create(&format!("{}-{}", rt.name, rt.generation), 96 * MIB);
    let mut app = GoHog::start_exe(&cg, &rt.exe, &[], &["-hold", "36"]);
    let hr = Headroom::start(&[
        "--process",
        &rt.name,
        "--interval",
        "3s",
        "--proc-root",
        &proc_root,
        "--cgroup-root",
        &cgroup_root,
    ]);
    let st = wait_status(&hr, "usage read", |st| {
        st["memory"]["usage"].as_u64().is_some_and(|u| u >= 36 * MIB)
    });
    let usage = st["memory"]["usage"].as_u64().unwrap();
    assert!(usage < 48 * MIB, "under half the limit: {usage}");
    std::thread::sleep(Duration::from_millis(3100));
    // From under half the limit to the kill, well within one poll.
    let _ = http_get(app.addr, "/hold?mib=120");
    rt.reap(cg, &mut app.child, Duration::from_secs(10));
    let st = wait_status(&hr, "the kill counted", |st| st["memory"]["oom_kills_total"] == 1);
    assert_eq!(st["memory"]["oom_kills_inferred"], 1, "{st:#}");
    assert_eq!(exits(&st)["oom_kill"], 1, "{st:#}");
}

/// Without the target's PID (another PID namespace: `--proc-root
/// /host/proc`), a v1 cgroup's OOM is still seen as it happens: an eventfd
/// registered on `memory.oom_control` wakes the watcher, which reads the
/// kill before the runtime removes the cgroup 30 ms after the death.
#[test]
fn a_v1_oom_is_read_from_its_event_without_the_pid_before_the_cgroup_goes() {
    use headroom::sample::CgroupVersion;
    use headroom::source::events::KillWatch;
    let _one = one_at_a_time();
    let rt = Runtime::new("evfd");
    let cg = V1Cgroup::create(&format!("{}-1", rt.name), 64 * MIB);
    let watch = KillWatch::start(None, &cg.dir, CgroupVersion::V1).expect("an eventfd on memory.oom_control");
    assert_eq!(watch.latest().oom_kills, Some(0));
    let mut app = start_named(&cg, &rt.exe, &["-leak", "40"]);
    let st = rt.reap(cg, &mut app, Duration::from_secs(60));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "the leak was OOM-killed: {st:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    let seen = loop {
        let w = watch.latest();
        if w.cgroup_gone || Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        seen.oom_kills,
        Some(1),
        "the kill read before the cgroup went: {seen:?}"
    );
    assert!(seen.cgroup_gone, "the removal seen: {seen:?}");
}
