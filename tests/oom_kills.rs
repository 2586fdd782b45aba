//! Every OOM kill of the target counted exactly once where a container
//! runtime removes the killed container's cgroup at once and restarts the
//! container in a new one (as podman and kubelets do), and nothing else
//! counted: a `kill -9` near the limit is not an OOM kill. Real gohog
//! processes in real v1 memory cgroups; this test plays the runtime.

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

    /// Waits for the target's death, removes its cgroup 30 ms later.
    fn reap(&self, cg: V1Cgroup, child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
        let st = wait_exit(child, timeout);
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
}

#[test]
fn without_notifications_kills_are_inferred_and_kill_9_is_still_not_one() {
    // A --proc-root other than /proc: no pidfd (its PIDs need not be ours),
    // and v1 counter files do not notify: the inference has to decide.
    let dir = tempfile::tempdir().unwrap();
    let proc_link = dir.path().join("proc");
    std::os::unix::fs::symlink("/proc", &proc_link).unwrap();
    let proc_root = proc_link.to_str().unwrap().to_owned();
    let (hr, seen) = play(&["--proc-root", &proc_root], "oominf");
    let totals: Vec<_> = seen.iter().map(|s| s["memory"]["oom_kills_total"].as_u64()).collect();
    assert_eq!(totals, [Some(1), Some(1), Some(2), Some(2)], "{}", hr.log());
    let last = &seen[3]["memory"];
    assert_eq!(last["oom_kills_inferred"], 2, "{last:#}");
    assert_eq!(last["last_oom_kill"]["how"], "inferred", "{last:#}");
    assert_eq!(kills(&hr), (2.0, 2.0));
}
