//! The binary against fixture trees: exact values, a golden scrape per tree
//! (refresh with `UPDATE_GOLDEN=1 cargo test --test fixtures_scrape`), and
//! `promtool check metrics` on each scrape.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// The scrape without what changes from run to run (our own process
/// metrics, poll timings; the time of the last poll is pinned to `T`, and
/// the build's commit and compiler to `C` and `R`).
fn stable(scrape: &str) -> String {
    scrape
        .lines()
        .filter(|l| {
            let name = l.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
            !name.starts_with("process_") && !name.starts_with("headroom_poll_duration_seconds")
        })
        .map(|l| match l.strip_prefix("headroom_last_poll_timestamp_seconds ") {
            Some(_) => "headroom_last_poll_timestamp_seconds T\n".to_owned(),
            None if l.starts_with("headroom_build_info{") => {
                format!("{}\n", pin_label(&pin_label(l, "commit", "C"), "rustc", "R"))
            }
            None => format!("{l}\n"),
        })
        .collect()
}

/// `line` with the value of label `name` replaced by `to`.
fn pin_label(line: &str, name: &str, to: &str) -> String {
    let key = format!("{name}=\"");
    let Some(start) = line.find(&key).map(|i| i + key.len()) else {
        return line.to_owned();
    };
    let end = start + line[start..].find('"').expect("a closing quote");
    format!("{}{to}{}", &line[..start], &line[end..])
}

fn golden(name: &str, scrape: &str) {
    let path = project_root().join("tests/golden").join(format!("{name}.prom"));
    let got = stable(scrape);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        got,
        want,
        "scrape differs from {} (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

fn promtool_check(scrape: &str) {
    let promtool = require_program("promtool");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics:\n{text}"
    );
}

/// Waits for four polls (enough for the slopes to exist) and the first
/// smaps read, returns the scrape.
fn scrape_when_ready(hr: &Headroom) -> String {
    hr.wait_metrics(Duration::from_secs(10), "four polls", |m| {
        m.get("headroom_poll_duration_seconds_count").is_some_and(|n| *n >= 4.0)
    });
    hr.get("/metrics").1
}

struct Want {
    tree: &'static str,
    usage: f64,
    limit: f64,
    working_set: Option<f64>,
    unreclaimable: Option<f64>,
    anon: Option<f64>,
    file: f64,
    /// The cgroup's OOM kill count: kills from before headroom started.
    oom_kills: f64,
    rss: f64,
    lazyfree: f64,
    version: &'static str,
}

// Expected values from tests/fixtures/README.md (computed from the files).
const TREES: &[Want] = &[
    Want {
        tree: "v2",
        usage: 271310848.0,
        limit: 402653184.0,
        working_set: Some(148725760.0),
        unreclaimable: Some(136220672.0),
        anon: Some(235929600.0),
        file: 34603008.0,
        oom_kills: 1.0,
        rss: 245268480.0,
        lazyfree: 100663296.0,
        version: "v2",
    },
    Want {
        tree: "v2-max",
        usage: 241717248.0,
        limit: f64::INFINITY,
        working_set: Some(194531328.0),
        unreclaimable: Some(190337024.0),
        anon: Some(219148288.0),
        file: 22020096.0,
        oom_kills: 0.0,
        rss: 228458496.0,
        lazyfree: 29360128.0,
        version: "v2",
    },
    Want {
        tree: "v1",
        usage: 187215872.0,
        limit: 268435456.0,
        working_set: Some(119099392.0),
        unreclaimable: Some(102322176.0),
        anon: Some(143654912.0),
        file: 42991616.0,
        oom_kills: 2.0,
        rss: 152928256.0,
        lazyfree: 41902080.0,
        version: "v1",
    },
    Want {
        tree: "hybrid",
        usage: 216526848.0,
        limit: 536870912.0,
        working_set: Some(177729536.0),
        unreclaimable: Some(169340928.0),
        anon: Some(168820736.0),
        file: 47185920.0,
        oom_kills: 0.0,
        rss: 178024448.0,
        lazyfree: 0.0,
        version: "v1",
    },
    Want {
        tree: "v1-garbage",
        usage: 187215872.0,
        limit: 268435456.0,
        working_set: None,
        unreclaimable: None,
        anon: None,
        file: 42991616.0,
        oom_kills: 0.0,
        rss: 152928256.0,
        lazyfree: 41902080.0,
        version: "v1",
    },
];

fn opt(m: &BTreeMap<String, f64>, k: &str) -> Option<f64> {
    m.get(k).copied()
}

#[test]
fn every_tree_reads_exactly_and_matches_its_golden_scrape() {
    for w in TREES {
        let hr = start_on_fixture(w.tree, &["--pid", "4242"]);
        let scrape = scrape_when_ready(&hr);
        let m = parse_metrics(&scrape);
        let t = w.tree;
        assert_eq!(opt(&m, "headroom_memory_usage_bytes"), Some(w.usage), "{t} usage");
        assert_eq!(opt(&m, "headroom_memory_limit_bytes"), Some(w.limit), "{t} limit");
        assert_eq!(
            opt(&m, "headroom_memory_working_set_bytes"),
            w.working_set,
            "{t} working set"
        );
        assert_eq!(
            opt(&m, "headroom_memory_unreclaimable_bytes"),
            w.unreclaimable,
            "{t} unreclaimable"
        );
        assert_eq!(opt(&m, "headroom_memory_anon_bytes"), w.anon, "{t} anon");
        assert_eq!(opt(&m, "headroom_memory_file_bytes"), Some(w.file), "{t} file");
        // The cgroup's kills are from before headroom started: shown in
        // the status, not counted.
        assert_eq!(opt(&m, "headroom_oom_kills_total"), Some(0.0), "{t} oom kills");
        // (Absent where the count cannot be read: v1-garbage.)
        let before = hr.status()["memory"]["oom_kills_before_start"].as_f64();
        assert_eq!(before.unwrap_or(0.0), w.oom_kills, "{t} oom kills before start");
        assert_eq!(opt(&m, "headroom_memory_rss_bytes"), Some(w.rss), "{t} rss");
        assert_eq!(
            opt(&m, "headroom_memory_lazyfree_bytes"),
            Some(w.lazyfree),
            "{t} lazyfree"
        );
        assert_eq!(opt(&m, "headroom_source_up{source=\"cgroup\"}"), Some(1.0), "{t}");
        assert_eq!(opt(&m, "headroom_source_up{source=\"proc\"}"), Some(1.0), "{t}");
        assert_eq!(
            opt(&m, "headroom_source_up{source=\"go\"}"),
            None,
            "{t}: go is not configured"
        );
        let st = hr.status();
        assert_eq!(st["target"]["cgroup_version"], w.version, "{t}");
        assert_eq!(st["ready"], true, "{t}");
        assert_eq!(hr.get("/readyz").0, 200);
        golden(t, &scrape);
        promtool_check(&scrape);
    }
}

#[test]
fn garbage_is_named_and_the_rest_is_kept() {
    let hr = start_on_fixture("v1-garbage", &["--pid", "4242"]);
    scrape_when_ready(&hr);
    let st = hr.status();
    let warnings = st["cgroup"]["warnings"].to_string();
    for needle in [
        "memory.stat: line",
        "total_rss",
        "value above 2^64-1",
        "memory.oom_control",
        "under_",
    ] {
        assert!(warnings.contains(needle), "warnings lack {needle:?}: {warnings}");
    }
    let log = hr.log();
    assert!(
        log.contains("ignored malformed data") && log.contains("total_inactive_file"),
        "{log}"
    );
    // Logged once, not on every poll.
    std::thread::sleep(Duration::from_millis(500));
    let n = hr.log().matches("total_inactive_file").count();
    assert_eq!(n, 1, "{}", hr.log());
}

#[test]
fn v2_extras_peak_high_events_and_limit_source() {
    let hr = start_on_fixture("v2", &["--pid", "4242"]);
    let scrape = scrape_when_ready(&hr);
    let m = parse_metrics(&scrape);
    assert!(m.contains_key("headroom_memory_peak_bytes"), "{scrape}");
    assert_eq!(m["headroom_memory_high_bytes"], f64::INFINITY);
    // The cgroup's events before headroom started are not counted.
    assert_eq!(m["headroom_memory_events_total{event=\"oom_kill\"}"], 0.0);
    assert_eq!(m["headroom_memory_events_total{event=\"max\"}"], 0.0);
    let st = hr.status();
    assert_eq!(st["memory"]["limit_source"], "cgroup");
    assert!(st["cgroup"]["pressure"]["some"]["total_us"].is_u64(), "{st:#}");
    // v2-max lacks memory.peak: absent, not 0.
    let hr = start_on_fixture("v2-max", &["--pid", "4242"]);
    let m = parse_metrics(&scrape_when_ready(&hr));
    assert!(!m.contains_key("headroom_memory_peak_bytes"));
}

#[test]
fn memory_limit_override_and_process_name() {
    let hr = start_on_fixture("v1", &["--process", "gohog", "--memory-limit", "200MiB"]);
    let m = parse_metrics(&scrape_when_ready(&hr));
    assert_eq!(m["headroom_memory_limit_bytes"], (200 * 1024 * 1024) as f64);
    let st = hr.status();
    assert_eq!(st["memory"]["limit_source"], "override");
    assert_eq!(st["target"]["pid"], 4242);
}

#[test]
fn missing_target_golden_failure_scrape() {
    let hr = start_on_fixture("v1", &["--pid", "999999"]);
    let m = hr.wait_metrics(Duration::from_secs(10), "both sources down", |m| {
        m.get("headroom_source_up{source=\"cgroup\"}") == Some(&0.0)
            && m.get("headroom_source_up{source=\"proc\"}") == Some(&0.0)
    });
    assert!(!m.contains_key("headroom_memory_usage_bytes"));
    assert_eq!(hr.get("/readyz").0, 503);
    // Error counters grow with every poll: pin them for the golden file.
    let scrape = hr.get("/metrics").1;
    let pinned: String = scrape
        .lines()
        .map(|l| {
            if l.starts_with("headroom_source_errors_total{") {
                format!("{} N\n", l.rsplit_once(' ').unwrap().0)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    golden("target-missing", &pinned);
    promtool_check(&scrape);
    let st = hr.status();
    let err = st["sources"]["cgroup"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("999999"), "{err}");
}

/// `headroom check --pid 4242` on a fixture tree, with `extra` flags.
fn check_on(tree: &str, extra: &[&str]) -> std::process::Output {
    let root = fixture(tree);
    std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["check", "--pid", "4242"])
        .args(extra)
        .arg("--proc-root")
        .arg(root.join("proc"))
        .arg("--cgroup-root")
        .arg(root.join("sys/fs/cgroup"))
        .output()
        .unwrap()
}

#[test]
fn check_reports_on_a_fixture() {
    let out = check_on("v2", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "limit (cgroup)",
        "384.0 MiB",
        "unreclaimable",
        "129.9 MiB",
        "LazyFree",
        "96.0 MiB",
        "verdict  Ok",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    // Near the limit: the exit status says so.
    let out = check_on("v2", &["--json", "--memory-limit", "140MiB"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["risk"], "warning");
    assert_eq!(j["status"]["memory"]["unreclaimable"], 136220672);
}

#[test]
fn check_states_a_misconfiguration_and_its_fix() {
    let out = check_on("v2-max", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("misconf  no_memory_limit: no memory limit on the cgroup's path"),
        "{text}"
    );
    assert!(
        text.contains("\nfix      Set a memory limit on the container"),
        "{text}"
    );
    // The fixture's kernel memory: kernel_stack + pagetables + percpu + slab_unreclaimable.
    assert!(text.contains("kernel memory"), "{text}");
    let out = check_on("v2", &["--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"]["misconfigurations"], serde_json::json!([]));
    assert!(!String::from_utf8_lossy(&check_on("v2", &[]).stdout).contains("misconf"));
}

/// Serves `body` to every request (a Go target's /metrics, from a fixture).
/// Serves the body `body(n)` to the `n`th request (from 0).
fn serve(body: impl Fn(u64) -> String + Send + 'static) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, mut s) in l.incoming().flatten().enumerate() {
            let body = body(n as u64);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    addr
}

#[test]
fn dashboard_queries_only_metrics_a_live_scrape_has() {
    // The v2 tree and a Go target serving the runtime/metrics names (so that
    // GOMEMLIMIT and the other "where exported" metrics are in the scrape).
    // Its CPU classes rise between scrapes (the GC's share of the CPU is
    // measured from their deltas); a 5 s window gives a recommendation after
    // 5 s of history.
    let fixed = std::fs::read_to_string(fixture("go/client_golang-runtime-metrics-go1.22.prom")).unwrap();
    let go = serve(move |n| {
        format!(
            "{fixed}go_cpu_classes_gc_total_cpu_seconds_total {}\ngo_cpu_classes_total_cpu_seconds_total {}\n",
            0.01 * n as f64,
            0.4 * n as f64
        )
    });
    let url = format!("http://{go}/metrics");
    let hr = start_on_fixture(
        "v2",
        &[
            "--pid",
            "4242",
            "--go-url",
            &url,
            "--go-interval",
            "200ms",
            "--window",
            "5s",
        ],
    );
    // Slopes need three one-second buckets of history.
    hr.wait_metrics(
        Duration::from_secs(15),
        "slopes, Go metrics and the recommendation",
        |m| {
            m.contains_key("headroom_leak_slope_bytes_per_second{series=\"unreclaimable\"}")
                && m.contains_key("headroom_go_gomemlimit_bytes")
                && m.contains_key("headroom_go_gc_cpu_fraction")
                && m.contains_key("headroom_recommended_memory_limit_bytes")
        },
    );
    let scrape = hr.get("/metrics").1;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.prom");
    std::fs::write(&file, &scrape).unwrap();
    let out = std::process::Command::new("python3")
        .arg(project_root().join("scripts/check_dashboard.py"))
        .arg(project_root().join("deploy/grafana/headroom-dashboard.json"))
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}\nscrape:\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    promtool_check(&scrape);
}

/// A flat-keyed file of a fixture, as a map.
fn flat_keyed(path: &std::path::Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn kernel_memory_is_the_fixture_memory_stat_and_misconfigurations_are_named() {
    let kinds = [
        "sock",
        "slab_unreclaimable",
        "kernel_stack",
        "pagetables",
        "shmem",
        "percpu",
        "kmem",
    ];
    for tree in ["v2", "v2-max", "v1", "hybrid"] {
        let hr = start_on_fixture(tree, &["--pid", "4242"]);
        let m = parse_metrics(&scrape_when_ready(&hr));
        let st = hr.status();
        let dir = std::path::PathBuf::from(st["target"]["cgroup"].as_str().expect("target cgroup"));
        let stat = flat_keyed(&dir.join("memory.stat"));
        // What the kernel's files say, kind by kind: v2 from memory.stat,
        // v1 shmem from memory.stat's total_shmem and kmem from its own file.
        let want: BTreeMap<&str, f64> = if st["target"]["cgroup_version"] == "v2" {
            kinds[..6].iter().filter_map(|k| Some((*k, *stat.get(*k)?))).collect()
        } else {
            let kmem = std::fs::read_to_string(dir.join("memory.kmem.usage_in_bytes"))
                .expect("the v1 fixtures have memory.kmem.usage_in_bytes");
            [("shmem", stat["total_shmem"]), ("kmem", kmem.trim().parse().unwrap())].into()
        };
        assert!(want.len() >= 2, "{tree}: {want:?}");
        for kind in kinds {
            let got = opt(&m, &format!("headroom_memory_kernel_bytes{{kind=\"{kind}\"}}"));
            assert_eq!(got, want.get(kind).copied(), "{tree} {kind}");
            let json = st["breakdown"]["kernel"][kind].as_f64();
            assert_eq!(json, want.get(kind).copied(), "{tree} status breakdown {kind}");
        }
        assert_eq!(
            st["breakdown"]["kernel_total"].as_f64(),
            Some(want.values().sum()),
            "{tree}"
        );
        // Every fixture but v2-max has a limit; GOGC and GOMEMLIMIT are
        // unknown without a Go source, so their checks do not fail.
        let unlimited = tree == "v2-max";
        for (check, v) in [
            ("no_memory_limit", f64::from(u8::from(unlimited))),
            ("gomemlimit_above_limit", 0.0),
            ("gogc_off_without_gomemlimit", 0.0),
        ] {
            let got = opt(&m, &format!("headroom_misconfiguration{{check=\"{check}\"}}"));
            assert_eq!(got, Some(v), "{tree} {check}");
        }
        let list = st["misconfigurations"].as_array().expect("misconfigurations list");
        if unlimited {
            assert_eq!(list.len(), 1, "{st:#}");
            assert_eq!(list[0]["check"], "no_memory_limit");
            assert!(list[0]["fix"].as_str().unwrap().contains("resources.limits.memory"));
        } else {
            assert!(list.is_empty(), "{tree}: {list:?}");
        }
    }
}
