//! Misconfiguration checks and kernel memory on a real cgroup v1 memory
//! cgroup: a real Go process started with GOMEMLIMIT above, then below, the
//! cgroup's limit, and a process writing to tmpfs, read against the
//! kernel's own files.

mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;
const ABOVE: &str = "headroom_misconfiguration{check=\"gomemlimit_above_limit\"}";
const GOGC_OFF: &str = "headroom_misconfiguration{check=\"gogc_off_without_gomemlimit\"}";
const NO_LIMIT: &str = "headroom_misconfiguration{check=\"no_memory_limit\"}";

/// headroom on `hog`, scraping its expvar often.
fn watch(hog: &GoHog) -> Headroom {
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &url,
        "--interval",
        "100ms",
        "--go-interval",
        "300ms",
    ])
}

/// Waits until the Go source has answered and a few polls followed.
fn settled(hr: &Headroom) -> std::collections::BTreeMap<String, f64> {
    hr.wait_metrics(Duration::from_secs(10), "the Go source up", |m| {
        m.get("headroom_source_up{source=\"go\"}") == Some(&1.0) && m.contains_key(ABOVE)
    });
    std::thread::sleep(Duration::from_millis(700));
    hr.metrics()
}

#[test]
fn gomemlimit_above_the_cgroup_limit_is_named_with_its_fix() {
    let cg = V1Cgroup::create("misconf-above", 128 * MIB);
    let hog = GoHog::start(&cg, &[("GOMEMLIMIT", "1GiB")], &["-hold", "20"]);
    let hr = watch(&hog);
    hr.wait_metrics(Duration::from_secs(10), "gomemlimit_above_limit failing", |m| {
        m.get(ABOVE) == Some(&1.0)
    });
    let m = hr.metrics();
    assert_eq!(m.get(NO_LIMIT), Some(&0.0), "the cgroup has a limit");
    assert_eq!(m.get(GOGC_OFF), Some(&0.0), "GOGC is the default");
    let st = hr.status();
    let list = st["misconfigurations"].as_array().expect("misconfigurations");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["check"], "gomemlimit_above_limit");
    assert_eq!(
        list[0]["evidence"],
        "GOMEMLIMIT 1024 MiB ≥ the container's memory limit 128 MiB"
    );
    // 90 % of 128 MiB.
    assert!(
        list[0]["fix"].as_str().unwrap().contains("GOMEMLIMIT=115MiB"),
        "{}",
        list[0]["fix"]
    );
    // The dashboard's page carries the list it renders.
    assert!(hr.get("/").1.contains("id=\"misconf\""));
}

#[test]
fn gomemlimit_below_the_cgroup_limit_is_not_a_misconfiguration() {
    let cg = V1Cgroup::create("misconf-below", 128 * MIB);
    let hog = GoHog::start(&cg, &[("GOMEMLIMIT", "100MiB")], &["-hold", "20"]);
    let hr = watch(&hog);
    let m = settled(&hr);
    for check in [ABOVE, NO_LIMIT, GOGC_OFF] {
        assert_eq!(m.get(check), Some(&0.0), "{check}: {m:#?}");
    }
    let st = hr.status();
    assert_eq!(st["misconfigurations"], serde_json::json!([]), "{st:#}");
    assert_eq!(st["go"]["gomemlimit_env"], 100 * MIB);
}

#[test]
fn gogc_off_without_gomemlimit_is_named() {
    let cg = V1Cgroup::create("misconf-gogc", 128 * MIB);
    let hog = GoHog::start(&cg, &[("GOGC", "off")], &[]);
    let hr = watch(&hog);
    hr.wait_metrics(Duration::from_secs(10), "gogc_off_without_gomemlimit failing", |m| {
        m.get(GOGC_OFF) == Some(&1.0)
    });
    assert_eq!(hr.metrics().get(ABOVE), Some(&0.0));
    let st = hr.status();
    assert_eq!(st["misconfigurations"][0]["check"], "gogc_off_without_gomemlimit");
    assert!(
        st["misconfigurations"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("GOMEMLIMIT=115MiB"),
        "{st:#}"
    );
}

#[test]
fn tmpfs_files_and_kernel_memory_read_as_the_kernel_charges_them() {
    let cg = V1Cgroup::create("kernel-shmem", 256 * MIB);
    let file = format!("/dev/shm/headroom-test-shmem-{}", std::process::id());
    // Writes 24 MiB to tmpfs from inside the cgroup, then waits.
    let mut child = cg
        .command(std::path::Path::new("/bin/sh"))
        .arg("-c")
        .arg(format!(
            "head -c {} /dev/zero > {file} && echo written && exec sleep 60",
            24 * MIB
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the tmpfs writer");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "written");
    let pid = child.id().to_string();
    let hr = Headroom::start(&["--pid", &pid, "--interval", "100ms"]);
    let shmem = "headroom_memory_kernel_bytes{kind=\"shmem\"}";
    let kmem = "headroom_memory_kernel_bytes{kind=\"kmem\"}";
    hr.wait_metrics(Duration::from_secs(10), "shmem above 24 MiB", |m| {
        m.get(shmem).is_some_and(|v| *v >= (24 * MIB) as f64)
    });
    std::thread::sleep(Duration::from_millis(300));
    let stat = cg.stat();
    let kernel_kmem = cg.read_u64("memory.kmem.usage_in_bytes") as f64;
    let m = hr.metrics();
    assert_eq!(
        m[shmem], stat["total_shmem"] as f64,
        "tmpfs pages are the cgroup's shmem"
    );
    assert_close("kmem", m[kmem], kernel_kmem, 10.0);
    assert!(m[kmem] > 0.0, "a running process has kernel memory charged");
    // v1's memory.stat has no breakdown of kernel memory: absent, not 0.
    for kind in ["sock", "slab_unreclaimable", "kernel_stack", "pagetables", "percpu"] {
        assert!(
            !m.contains_key(&format!("headroom_memory_kernel_bytes{{kind=\"{kind}\"}}")),
            "{kind}"
        );
    }
    let st = hr.status();
    assert_eq!(st["breakdown"]["kernel"]["shmem"].as_f64(), Some(m[shmem]));
    let _ = std::fs::remove_file(&file);
    let _ = child.kill();
    let _ = child.wait();
}
