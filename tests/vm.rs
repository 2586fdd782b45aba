//! cgroup v2 and the sidecar topology for real, in a small VM: this machine's
//! memory controller is cgroup v1 only, so QEMU (TCG) boots Debian's cloud
//! kernel with an initramfs whose /init (tests/vm/init) mounts cgroup2, runs
//! the real `headroom` binary against gohog in each scenario of tests/vm/,
//! prints result lines on the serial console and powers off. One boot serves
//! every test here; each test asserts one scenario against the kernel's own
//! files read in the VM.
//!
//! Run alone: `cargo test --test vm -- --nocapture` (see tests/vm/README.md).
//! The test installs what it needs with scripts/install-vm-deps.sh and builds
//! target/vm/ with scripts/build-vm.sh (both quiet no-ops when done).

mod common;

use common::{parse_metrics, project_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// Every boot is bounded: QEMU is killed (by its PID) past this. Override
/// with HEADROOM_VM_TIMEOUT (seconds).
const DEFAULT_TIMEOUT_S: u64 = 480;
const MARK: &str = "=HR= ";

/// One scenario's results: `kv` lines and named sections (captured files).
#[derive(Debug, Default)]
struct Scenario {
    name: String,
    kv: BTreeMap<String, String>,
    sections: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Vm {
    scenarios: BTreeMap<String, Scenario>,
    console_log: PathBuf,
}

/// Splits the console into scenarios. A result line is
/// `=HR= SCENARIO SECTION TEXT`, possibly preceded on the same console line
/// by terminal noise (the firmware's escape codes).
fn parse_console(console: &str) -> BTreeMap<String, Scenario> {
    let mut out: BTreeMap<String, Scenario> = BTreeMap::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let Some(at) = line.find(MARK) else { continue };
        let mut parts = line[at + MARK.len()..].splitn(3, ' ');
        let (Some(scen), Some(section)) = (parts.next(), parts.next()) else {
            continue;
        };
        let text = parts.next().unwrap_or("");
        let s = out.entry(scen.to_owned()).or_insert_with(|| Scenario {
            name: scen.to_owned(),
            ..Default::default()
        });
        if section == "kv" {
            let (k, v) = text.split_once('=').unwrap_or((text, ""));
            s.kv.insert(k.to_owned(), v.to_owned());
        } else {
            let body = s.sections.entry(section.to_owned()).or_default();
            body.push_str(text);
            body.push('\n');
        }
    }
    out
}

fn run_script(name: &str, env: &[(&str, String)]) -> Result<(), String> {
    let path = project_root().join("scripts").join(name);
    let out = Command::new("bash")
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/{name} failed ({}); run it by hand (as root) to see why:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr
        ))
    }
}

fn boot() -> Result<Vm, String> {
    let started = Instant::now();
    let root = project_root();
    run_script("install-vm-deps.sh", &[]).map_err(|e| {
        format!("{e}\n(the VM tests need busybox-static and qemu-system-x86: scripts/install-vm-deps.sh installs them)")
    })?;
    run_script(
        "build-vm.sh",
        &[("HEADROOM_BIN", env!("CARGO_BIN_EXE_headroom").to_owned())],
    )
    .map_err(|e| format!("{e}\n(scripts/build-vm.sh builds target/vm/; gohog needs scripts/install-test-deps.sh)"))?;
    let prepared = started.elapsed();

    let vm_dir = root.join("target/vm");
    let mut append = String::from("console=ttyS0 loglevel=1 psi=1 panic=-1");
    if let Ok(s) = std::env::var("HEADROOM_VM_SCENARIOS") {
        append.push_str(&format!(" headroom.scenarios={s}"));
    }
    let timeout = Duration::from_secs(
        std::env::var("HEADROOM_VM_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_TIMEOUT_S),
    );
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "512M"])
        .args(["-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio"])
        .arg("-kernel")
        .arg(vm_dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(vm_dir.join("initramfs.cpio"))
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e} (run scripts/install-vm-deps.sh)"))?;
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut readers = Vec::new();
    for mut pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let console = console.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                console.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }));
    }
    let boot_start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("waiting for qemu: {e}"))? {
            break Some(st);
        }
        if boot_start.elapsed() > timeout {
            // Child::kill sends SIGKILL to this QEMU's PID only.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in readers {
        let _ = r.join();
    }
    let console = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    let console_log = vm_dir.join("console.log");
    let _ = std::fs::write(&console_log, &console);
    let tail: String = {
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let Some(status) = status else {
        return Err(format!(
            "the VM did not power off within {timeout:?} (HEADROOM_VM_TIMEOUT); QEMU killed. Console in {}; its end:\n{tail}",
            console_log.display()
        ));
    };
    let scenarios = parse_console(&console);
    let done = scenarios
        .get("vm")
        .is_some_and(|vm| vm.sections.get("finished").is_some_and(|d| d.contains("all")));
    if !done {
        return Err(format!(
            "the VM stopped ({status}) before /init finished the scenarios. Console in {}; its end:\n{tail}",
            console_log.display()
        ));
    }
    eprintln!(
        "vm: prepared in {:.1} s, booted and ran the scenarios in {:.1} s ({}; kernel {}); console in {}",
        prepared.as_secs_f64(),
        boot_start.elapsed().as_secs_f64(),
        scenarios["vm"].kv.get("scenarios").map_or("", String::as_str),
        scenarios["vm"].kv.get("kernel").map_or("?", String::as_str),
        console_log.display()
    );
    Ok(Vm { scenarios, console_log })
}

fn vm() -> &'static Vm {
    static VM: OnceLock<Result<Vm, String>> = OnceLock::new();
    match VM.get_or_init(boot) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}"),
    }
}

/// The scenario's results, once it ran to its end.
fn scenario(name: &str) -> &'static Scenario {
    let vm = vm();
    let s = vm.scenarios.get(name).unwrap_or_else(|| {
        panic!(
            "scenario {name} did not run in the VM (HEADROOM_VM_SCENARIOS={:?}); console in {}",
            std::env::var("HEADROOM_VM_SCENARIOS").ok(),
            vm.console_log.display()
        )
    });
    let clean = s.kv.get("exit").map(String::as_str) == Some("0") && !s.kv.contains_key("timeout");
    if !clean {
        // Kept apart from console.log, which the next boot overwrites.
        let kept = vm.console_log.with_file_name("console.failed.log");
        let _ = std::fs::copy(&vm.console_log, &kept);
        let sections: String = s
            .sections
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "metrics" | "metrics.before" | "status"))
            .map(|(k, v)| format!("--- {k}\n{v}"))
            .collect();
        panic!(
            "scenario {name} failed in the VM: exit={:?} timeout={:?}\nresults: {:#?}\n{sections}\nconsole kept in {}",
            s.kv.get("exit"),
            s.kv.get("timeout"),
            s.kv,
            kept.display()
        );
    }
    s
}

impl Scenario {
    fn kv(&self, key: &str) -> &str {
        self.kv
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key} in the results: {:#?}", self.name, self.kv))
    }

    fn kv_u64(&self, key: &str) -> u64 {
        let v = self.kv(key);
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: {key}={v:?} is not a number", self.name))
    }

    fn section(&self, name: &str) -> &str {
        self.sections.get(name).unwrap_or_else(|| {
            panic!(
                "{}: no section {name}; have {:?}",
                self.name,
                self.sections.keys().collect::<Vec<_>>()
            )
        })
    }

    fn metrics(&self, name: &str) -> BTreeMap<String, f64> {
        let m = parse_metrics(self.section(name));
        assert!(!m.is_empty(), "{}: section {name} is no scrape", self.name);
        m
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_str(self.section(name))
            .unwrap_or_else(|e| panic!("{}: section {name} is not JSON: {e}", self.name))
    }

    /// A flat-keyed kernel file (memory.stat, memory.events).
    fn flat(&self, name: &str) -> BTreeMap<String, u64> {
        self.section(name)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// memory.pressure's `total=` counters: (some, full), microseconds.
    fn psi_totals(&self, name: &str) -> (u64, u64) {
        let mut some = None;
        let mut full = None;
        for l in self.section(name).lines() {
            let total = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("total="))
                .and_then(|v| v.parse().ok());
            match l.split_whitespace().next() {
                Some("some") => some = total,
                Some("full") => full = total,
                _ => {}
            }
        }
        (
            some.unwrap_or_else(|| panic!("{}: no some total in {name}", self.name)),
            full.unwrap_or_else(|| panic!("{}: no full total in {name}", self.name)),
        )
    }
}

fn gauge(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} missing from the scrape: {m:#?}"))
}

/// `v` lies between the kernel's two readings `a` and `b` (taken just before
/// and just after the scrape), give or take `pct` percent plus `slack` bytes.
fn assert_between(what: &str, v: f64, a: f64, b: f64, pct: f64, slack: f64) {
    let (lo, hi) = (a.min(b), a.max(b));
    let lo = lo - lo * pct / 100.0 - slack;
    let hi = hi + hi * pct / 100.0 + slack;
    assert!(
        (lo..=hi).contains(&v),
        "{what}: headroom says {v}, the kernel read {a} before and {b} after the scrape (allowed {lo:.0}..={hi:.0})"
    );
    eprintln!("  {what}: headroom {v:.0}, kernel {a:.0} / {b:.0}");
}

fn limit_bytes(v: &Value) -> Option<u64> {
    v.get("bytes").and_then(Value::as_u64)
}

#[test]
fn read_v2_metrics_match_the_kernels_files() {
    let s = scenario("read_v2");
    let vm = &vm().scenarios["vm"];
    assert!(vm.kv("subtree_control").contains("memory"), "{:?}", vm.kv);
    let m = s.metrics("metrics");
    let st = s.json("status");
    let cg = s.kv("cgroup");
    assert_eq!(st["target"]["cgroup_version"], "v2", "{st:#}");
    assert_eq!(st["target"]["cgroup"].as_str(), Some(cg), "{st:#}");
    assert_eq!(st["target"]["pid"].as_u64(), Some(s.kv_u64("gohog_pid")));

    let max = s.kv_u64("memory_max") as f64;
    assert_eq!(max, 256.0 * MIB, "the scenario set memory.max 256M");
    assert_eq!(gauge(&m, "headroom_memory_limit_bytes"), max, "limit = memory.max");
    assert_eq!(limit_bytes(&st["memory"]["limit"]), Some(max as u64), "{st:#}");
    assert_eq!(st["memory"]["limit_source"], "cgroup");

    let (ua, ub) = (s.kv_u64("current_a") as f64, s.kv_u64("current_b") as f64);
    let (sa, sb) = (s.flat("stat.a"), s.flat("stat.b"));
    let k = |st: &BTreeMap<String, u64>, key: &str| {
        *st.get(key)
            .unwrap_or_else(|| panic!("memory.stat has no {key}: {st:?}")) as f64
    };
    let usage = gauge(&m, "headroom_memory_usage_bytes");
    assert!(usage >= 64.0 * MIB, "gohog holds 64 MiB: usage {usage}");
    assert_between("usage vs memory.current", usage, ua, ub, 3.0, 0.0);
    assert_between(
        "working set vs memory.current - inactive_file",
        gauge(&m, "headroom_memory_working_set_bytes"),
        ua - k(&sa, "inactive_file"),
        ub - k(&sb, "inactive_file"),
        3.0,
        0.0,
    );
    assert_between(
        "unreclaimable vs memory.current - (active_file + inactive_file)",
        gauge(&m, "headroom_memory_unreclaimable_bytes"),
        ua - k(&sa, "active_file") - k(&sa, "inactive_file"),
        ub - k(&sb, "active_file") - k(&sb, "inactive_file"),
        3.0,
        0.0,
    );
    assert_between(
        "anon vs memory.stat anon",
        gauge(&m, "headroom_memory_anon_bytes"),
        k(&sa, "anon"),
        k(&sb, "anon"),
        3.0,
        0.0,
    );
    // A few pages: compared to the page, give or take 64 KiB.
    assert_between(
        "file vs memory.stat file",
        gauge(&m, "headroom_memory_file_bytes"),
        k(&sa, "file"),
        k(&sb, "file"),
        3.0,
        65536.0,
    );
    let peak = s.kv_u64("peak") as f64;
    assert_between(
        "peak vs memory.peak",
        gauge(&m, "headroom_memory_peak_bytes"),
        peak,
        peak,
        3.0,
        0.0,
    );
    assert!(
        gauge(&m, "headroom_memory_rss_bytes") >= 64.0 * MIB,
        "VmRSS of a gohog holding 64 MiB"
    );

    let ev = s.flat("events");
    assert_eq!(gauge(&m, "headroom_oom_kills_total"), ev["oom_kill"] as f64);
    for e in ["high", "max", "oom", "oom_kill"] {
        let name = format!("headroom_memory_events_total{{event=\"{e}\"}}");
        assert_eq!(gauge(&m, &name), ev[e] as f64, "{name} vs memory.events {e}");
    }

    // PSI: totals only (averages crawl under TCG); the snapshot scraped lies
    // between a read a second before the scrape and one after it.
    let (some0, full0) = s.psi_totals("pressure.before");
    let (some1, full1) = s.psi_totals("pressure.after");
    let p = &st["cgroup"]["pressure"];
    let hr_some = p["some"]["total_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no PSI in status: {st:#}"));
    let hr_full = p["full"]["total_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no PSI in status: {st:#}"));
    assert!(
        (some0..=some1).contains(&hr_some),
        "PSI some total {hr_some} not in {some0}..={some1}"
    );
    assert!(
        (full0..=full1).contains(&hr_full),
        "PSI full total {hr_full} not in {full0}..={full1}"
    );
    eprintln!(
        "  PSI totals: headroom some={hr_some} full={hr_full}; kernel some {some0}..{some1}, full {full0}..{full1}"
    );

    assert_eq!(gauge(&m, "headroom_source_up{source=\"cgroup\"}"), 1.0);
    assert_eq!(gauge(&m, "headroom_source_up{source=\"proc\"}"), 1.0);
    assert_eq!(s.kv("healthz"), "200");
}

/// One timeline point: `t=.. gohog_alive=.. usage=.. ... oom_risk=..`.
fn timeline(s: &Scenario) -> Vec<BTreeMap<String, String>> {
    s.section("timeline")
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn oom_kill_of_a_go_leak_is_counted_once_and_headroom_keeps_serving() {
    let s = scenario("oom_kill");
    let max = s.kv_u64("memory_max") as f64;
    assert_eq!(max, 96.0 * MIB);
    assert_eq!(
        s.kv("gohog_exit"),
        "137",
        "gohog should die of SIGKILL (the OOM killer)"
    );
    let ev = s.flat("events");
    assert_eq!(ev["oom_kill"], 1, "the kernel's memory.events: {ev:?}");
    assert!(
        s.section("dmesg").contains("Memory cgroup out of memory"),
        "{}",
        s.section("dmesg")
    );

    let m = s.metrics("metrics");
    assert_eq!(gauge(&m, "headroom_oom_kills_total"), 1.0, "exactly one kill");
    assert_eq!(gauge(&m, "headroom_memory_events_total{event=\"oom_kill\"}"), 1.0);
    for e in ["high", "max", "oom"] {
        let name = format!("headroom_memory_events_total{{event=\"{e}\"}}");
        assert_eq!(gauge(&m, &name), ev[e] as f64, "{name} vs memory.events {e}");
    }
    assert!(ev["max"] > 0, "the leak hit memory.max: {ev:?}");
    assert_eq!(gauge(&m, "headroom_memory_limit_bytes"), max);
    let before = s.metrics("metrics.before");
    assert_eq!(
        gauge(&before, "headroom_oom_kills_total"),
        0.0,
        "no kill before the leak"
    );
    assert_eq!(s.kv("healthz"), "200", "headroom keeps serving after the kill");
    let st = s.json("status");
    assert_eq!(st["memory"]["oom_kills_total"], 1, "{st:#}");
    assert_eq!(
        st["sources"]["cgroup"]["up"], true,
        "the cgroup outlives its process: {st:#}"
    );

    // The timeline: what a dashboard polling /metrics saw.
    let tl = timeline(s);
    eprintln!("  timeline (t s since the leak began; bytes):");
    for p in &tl {
        eprintln!(
            "    t={:>6} alive={} usage={:>10} oom_kills={} oom_risk={} time_to_oom={}",
            p["t"], p["gohog_alive"], p["usage"], p["oom_kills"], p["oom_risk"], p["time_to_oom"]
        );
    }
    let alive: Vec<_> = tl.iter().filter(|p| p["gohog_alive"] == "1").collect();
    let after: Vec<_> = tl.iter().filter(|p| p["gohog_alive"] == "0").collect();
    assert!(alive.len() >= 3 && after.len() >= 3, "timeline too short: {tl:?}");
    let peak_seen = alive
        .iter()
        .filter_map(|p| p["usage"].parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        peak_seen >= 0.5 * max,
        "headroom saw usage grow toward the limit: peak {peak_seen}"
    );
    assert!(
        alive.iter().all(|p| p["oom_kills"] == "0"),
        "no kill counted while gohog lived: {alive:?}"
    );
    // The warning came before the kill, with time to act.
    let killed_after: f64 = s.kv("killed_after_s").parse().expect("killed_after_s");
    let warned_at = alive
        .iter()
        .find(|p| p["oom_risk"].parse::<f64>().is_ok_and(|r| r >= 1.0))
        .map(|p| p["t"].parse::<f64>().expect("t"))
        .unwrap_or_else(|| panic!("no warning before the kill at {killed_after} s: {alive:?}"));
    assert!(
        killed_after - warned_at >= 10.0,
        "warned at {warned_at} s, only {:.1} s before the kill",
        killed_after - warned_at
    );
    assert!(
        after.iter().all(|p| p["oom_kills"] == "1"),
        "one kill, and it stays one: {after:?}"
    );

    // PSI totals of the now empty cgroup are settled: headroom's last poll
    // matches the kernel's read after it.
    let (some, full) = s.psi_totals("pressure");
    let p = &st["cgroup"]["pressure"];
    let hr_some = p["some"]["total_us"].as_u64().expect("PSI some in status");
    let hr_full = p["full"]["total_us"].as_u64().expect("PSI full in status");
    assert!(some > 0, "an OOM kill stalls the cgroup: some total {some}");
    assert!(
        hr_some <= some && hr_some as f64 >= some as f64 * 0.95,
        "PSI some: headroom {hr_some}, kernel {some}"
    );
    assert!(
        hr_full <= full && hr_full as f64 >= full as f64 * 0.95,
        "PSI full: headroom {hr_full}, kernel {full}"
    );
    eprintln!(
        "  killed {} s into the leak; PSI totals headroom some={hr_some} full={hr_full}, kernel some={some} full={full}",
        s.kv("killed_after_s")
    );
}

/// The runtime's behaviour reproduced on v2 (tests/vm/runtime_restart.sh):
/// the killed container's cgroup removed within 30 ms of the death and the
/// container restarted in a new cgroup; then a plain SIGKILL, the same way.
#[test]
fn a_kill_whose_cgroup_the_runtime_removes_is_counted_once_and_kill_9_not() {
    let s = scenario("runtime_restart");
    assert_eq!(
        s.kv("ctr1_removed"),
        "1",
        "the OOM-killed container's cgroup was removed"
    );
    let pod = s.flat("pod.events");
    assert_eq!(pod["oom_kill"], 1, "the kernel's count at the pod level: {pod:?}");
    assert_eq!(
        s.kv("after_oom_oom_kills"),
        "1",
        "one OOM kill, though its cgroup was gone before the next poll\n{}",
        s.section("headroom.log")
    );
    assert_eq!(s.kv("after_oom_inferred"), "0", "read from the cgroup, not inferred");
    assert_eq!(s.kv("after_oom_last_how"), "cgroup");
    assert_eq!(
        s.kv("after_kill9_oom_kills"),
        "1",
        "a SIGKILL is not an OOM kill\n{}",
        s.section("headroom.log")
    );
    assert_eq!(s.kv("after_kill9_inferred"), "0");
}

/// Every exit classified and every kill counted once on the real v2 kernel
/// (tests/vm/exits.sh), with a pidfd and without: an OOM kill, a kill -9
/// at ~70 %, a child's OOM kill with the target alive, a jump from ~40 % to
/// the kill within one poll, a `memory.oom.group` kill of the target and
/// its child; each dead container's cgroup removed 30 ms after the death.
#[test]
fn v2_exits_are_classified_and_each_kill_counted_once_with_and_without_a_pidfd() {
    let s = scenario("exits");
    for mode in ["pidfd", "nopidfd"] {
        let log = s.section(&format!("{mode}.log"));
        let k = |key: &str| s.kv(&format!("{mode}_{key}")).trim().to_owned();
        assert_eq!(
            k("target_alive_after_child"),
            "1",
            "{mode}: the child's kill spared the target"
        );
        assert!(
            log.contains("another process of the target's cgroup was OOM-killed") && log.contains("hogchild"),
            "{mode}: the child's kill named\n{log}"
        );
        let usage: f64 = k("usage_before_jump").parse().unwrap();
        assert!(
            usage < 0.5 * 64.0 * 1048576.0,
            "{mode}: the jump starts under half the limit: {usage}"
        );
        // Each kill the kernel counted in the pod, once (a group kill
        // counts each process it kills, and its first victim twice).
        let kernel = |step: u32| -> u64 { k(&format!("kernel_kills_after_{step}")).parse().unwrap() };
        assert_eq!(kernel(1), 1, "{mode}: the leak's kill");
        assert_eq!(kernel(3) - kernel(2), 1, "{mode}: the child's kill");
        assert_eq!(k("oom_kills"), kernel(5).to_string(), "{mode}: each kill once\n{log}");
        assert_eq!(k("exits_oom_kill"), "2", "{mode}: the leak's and the jump's\n{log}");
        assert_eq!(k("exits_oom_group_kill"), "1", "{mode}\n{log}");
        assert_eq!(k("exits_node_oom"), "0", "{mode}");
        assert_eq!(k("exits_exit"), "0", "{mode}");
        let not_oom: u64 = k("exits_signal").parse::<u64>().unwrap() + k("exits_unknown").parse::<u64>().unwrap();
        assert_eq!(not_oom, 1, "{mode}: the kill -9, never an OOM kill\n{log}");
    }
    // With a pidfd the kill -9's status is read the moment it exits.
    assert_eq!(s.kv("pidfd_exits_signal").trim(), "1");
}

#[test]
fn sidecar_in_its_own_cgroup_namespace_reads_the_targets_cgroup() {
    let s = scenario("sidecar");
    let target = s.kv_u64("target_pid");
    let hr = s.kv_u64("headroom_pid");
    let (target_max, sidecar_max) = (s.kv_u64("target_memory_max"), s.kv_u64("sidecar_memory_max"));
    assert_ne!(target_max, sidecar_max);

    // The topology is what Kubernetes builds (checked before headroom is judged).
    let view = |name: &str| -> BTreeMap<String, String> {
        s.section(name)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let (tv, sv) = (view("view.target"), view("view.sidecar"));
    assert_eq!(s.kv("init_view_of_target"), "0::/pod/target");
    assert_eq!(tv["self_cgroup"], "0::/", "the target's own cgroup namespace: {tv:?}");
    assert_eq!(tv["own_memory_max"], target_max.to_string(), "{tv:?}");
    assert_eq!(sv["self_cgroup"], "0::/", "headroom's own cgroup namespace: {sv:?}");
    assert_eq!(sv["own_memory_max"], sidecar_max.to_string(), "{sv:?}");
    assert_eq!(
        sv["view_pid_cgroup"], "0::/../target",
        "the target's cgroup as headroom sees it: {sv:?}"
    );
    assert!(s.kv("target_procs").split_whitespace().any(|p| p == target.to_string()));
    assert!(s.kv("sidecar_procs").split_whitespace().any(|p| p == hr.to_string()));

    let st = s.json("status");
    let t = &st["target"];
    assert_eq!(
        t["pid"].as_u64(),
        Some(target),
        "found by --process gohog-target: {t:#}"
    );
    assert_eq!(t["cgroup_version"], "v2");
    let want = format!("/proc/{target}/root/sys/fs/cgroup");
    assert_eq!(
        t["cgroup"].as_str(),
        Some(want.as_str()),
        "fell back to the target's root: {t:#}"
    );
    let found = t["cgroup_found"].as_str().unwrap_or_default();
    assert!(
        found.contains("/../target") && found.contains("another cgroup namespace"),
        "cgroup_found explains the fallback: {found:?}"
    );

    let m = s.metrics("metrics");
    let limit = gauge(&m, "headroom_memory_limit_bytes");
    assert_ne!(limit, sidecar_max as f64, "headroom reported its own cgroup's limit");
    assert_eq!(limit, target_max as f64, "the target's memory.max");
    let usage = gauge(&m, "headroom_memory_usage_bytes");
    let sidecar_current = s.kv_u64("sidecar_current") as f64;
    assert!(usage >= 32.0 * MIB, "gohog-target holds 32 MiB: usage {usage}");
    assert_between(
        "usage vs the target's memory.current",
        usage,
        s.kv_u64("target_current_a") as f64,
        s.kv_u64("target_current_b") as f64,
        3.0,
        0.0,
    );
    assert!(
        (usage - sidecar_current).abs() > 16.0 * MIB,
        "not headroom's own usage ({sidecar_current})"
    );
    assert_eq!(gauge(&m, "headroom_source_up{source=\"proc\"}"), 1.0);
    assert!(gauge(&m, "headroom_memory_rss_bytes") >= 32.0 * MIB);
    assert_eq!(s.kv("healthz"), "200");
    eprintln!("  {found}\n  limit {limit} (target {target_max}, sidecar {sidecar_max}); usage {usage}, sidecar's own {sidecar_current}");
}

#[test]
fn memory_high_throttling_is_counted_and_the_limits_are_stated() {
    let s = scenario("memory_high");
    let high = s.kv_u64("memory_high");
    let max = s.kv_u64("memory_max");
    assert_eq!((high as f64, max as f64), (48.0 * MIB, 160.0 * MIB));
    let (ea, eb) = (s.flat("events.a"), s.flat("events.b"));
    assert!(eb["high"] > 0, "the kernel throttled above memory.high: {eb:?}");
    assert!(
        s.kv_u64("current") > high,
        "gohog is over memory.high: {} <= {high}",
        s.kv("current")
    );

    let m = s.metrics("metrics");
    let hr_high = gauge(&m, "headroom_memory_events_total{event=\"high\"}");
    assert!(hr_high >= 1.0, "high events reported");
    assert!(
        hr_high <= eb["high"] as f64,
        "headroom's count {hr_high} above the kernel's {}",
        eb["high"]
    );
    assert_eq!(gauge(&m, "headroom_memory_events_total{event=\"oom_kill\"}"), 0.0);
    assert_eq!(gauge(&m, "headroom_memory_high_bytes"), high as f64);
    assert_eq!(
        gauge(&m, "headroom_memory_limit_bytes"),
        max as f64,
        "the limit is memory.max, not memory.high"
    );

    let st = s.json("status");
    let mem = &st["memory"];
    assert_eq!(limit_bytes(&mem["limit"]), Some(max), "{mem:#}");
    assert_eq!(limit_bytes(&mem["high"]), Some(high), "{mem:#}");
    assert_eq!(mem["limit_source"], "cgroup", "{mem:#}");
    assert_eq!(s.kv("healthz"), "200");

    // Throttling is a memory stall: PSI totals grew, and the scraped snapshot
    // lies between the read before the hold and the one after the scrape.
    let (some0, full0) = s.psi_totals("pressure.before");
    let (some1, full1) = s.psi_totals("pressure.after");
    let p = &st["cgroup"]["pressure"];
    let hr_some = p["some"]["total_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no PSI in status: {st:#}"));
    let hr_full = p["full"]["total_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no PSI in status: {st:#}"));
    assert!(
        some1 > some0,
        "throttling above memory.high stalls: some total {some0} -> {some1}"
    );
    assert!(
        (some0..=some1).contains(&hr_some),
        "PSI some total {hr_some} not in {some0}..={some1}"
    );
    assert!(
        (full0..=full1).contains(&hr_full),
        "PSI full total {hr_full} not in {full0}..={full1}"
    );
    eprintln!(
        "  PSI totals: headroom some={hr_some} full={hr_full}; kernel some {some0}..{some1}, full {full0}..{full1}"
    );
    eprintln!(
        "  high events: headroom {hr_high}, kernel {} / {}; usage {} over memory.high {high}",
        ea["high"],
        eb["high"],
        s.kv("current")
    );
}

#[test]
fn node_mode_finds_the_go_containers_of_a_systemd_driver_tree_and_reads_each_ones_cgroup() {
    let s = scenario("node");
    let m = s.metrics("metrics");
    assert_eq!(gauge(&m, "headroom_targets{state=\"watched\"}"), 2.0);
    assert_eq!(
        gauge(&m, "headroom_targets{state=\"skipped_not_go\"}"),
        1.0,
        "busybox's container is skipped"
    );
    let key = |pod: &str, id: &str| format!("container=\"{}\",pod=\"{pod}\"", &id[..12]);
    let k1 = key("6f1c2b9e-0d4a-4c4e-9f57-1a2b3c4d5e6f", "a1b2c3d4e5f60718");
    let k2 = key("0e9d8c7b-6a59-4483-b271-605f4e3d2c1b", "c0ffee00c0ffee00");
    // Each target's own limit, and its own usage, between the kernel's reads
    // before and after the scrape.
    assert_eq!(gauge(&m, &format!("headroom_memory_limit_bytes{{{k1}}}")), 160.0 * MIB);
    assert_eq!(gauge(&m, &format!("headroom_memory_limit_bytes{{{k2}}}")), 96.0 * MIB);
    let u1 = gauge(&m, &format!("headroom_memory_usage_bytes{{{k1}}}"));
    let (a, b) = (s.kv_u64("current1") as f64, s.kv_u64("current1_after") as f64);
    assert_between("usage of the holding container", u1, a.min(b), a.max(b), 2.0, 0.0);
    assert!(u1 >= 64.0 * MIB, "gohog holds 64 MiB: {u1}");
    let u2 = gauge(&m, &format!("headroom_memory_usage_bytes{{{k2}}}"));
    assert!(u2 < 40.0 * MIB && u2 > 0.0, "the calm one's own usage: {u2}");

    let t = s.json("targets");
    let rows = t["targets"].as_array().expect("targets");
    assert_eq!(rows.len(), 2, "{t:#}");
    for r in rows {
        assert!(r["go"].as_str().is_some_and(|v| v.starts_with("go1.")), "{r:#}");
        assert_eq!(r["state"], "watched", "{r:#}");
        assert!(r["cgroup"].as_str().unwrap().starts_with("/kubepods.slice/"), "{r:#}");
    }
    assert_eq!(s.kv("status_code"), "404", "node mode has no single status");
    eprintln!("  watched 2, skipped 1; usage {u1} (kernel {a}..{b}), calm {u2}");
}

#[test]
fn console_parsing() {
    let c = "noise\x1b[2J=HR= vm kv kernel=6.1\r\n=HR= s1 kv a=b=c\n=HR= s1 metrics x 1\n=HR= s1 metrics \n=HR= s1 metrics y 2\nkernel: junk\n";
    let p = parse_console(c);
    assert_eq!(p["vm"].kv["kernel"], "6.1");
    assert_eq!(p["s1"].kv["a"], "b=c");
    assert_eq!(p["s1"].sections["metrics"], "x 1\n\ny 2\n");
}
