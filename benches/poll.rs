//! One poll (cgroup + /proc, the analysis, the status) over the fixture
//! trees, and the metrics update and encoding that follow it; the analysis
//! alone on synthetic samples with a full window; one node discovery walk
//! over 1,000 containers. `cargo bench --bench poll`.

use criterion::{criterion_group, criterion_main, Criterion};
use headroom::collector::Collector;
use headroom::config::{Config, TargetConfig};
use headroom::metrics::Metrics;
use headroom::monitor::Monitor;
use headroom::sample::{CgroupSample, GoReading, Sample};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn config(tree: &str) -> TargetConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
    let map: BTreeMap<String, String> = [
        ("pid", "4242".to_owned()),
        ("proc-root", root.join("proc").display().to_string()),
        ("cgroup-root", root.join("sys/fs/cgroup").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Config::from_map(&map).expect("fixture config").target_config()
}

fn poll(c: &mut Criterion) {
    for tree in ["v1", "v2"] {
        let mut monitor = Monitor::new(config(tree));
        let mut ms = 0;
        c.bench_function(&format!("poll_{tree}"), |b| {
            b.iter(|| {
                ms += 1000;
                monitor.poll(ms, Instant::now())
            })
        });
    }
    let mut monitor = Monitor::new(config("v2"));
    let status = monitor.poll(0, Instant::now());
    let metrics = Metrics::new();
    c.bench_function("metrics_update_and_encode", |b| {
        b.iter(|| {
            metrics.update(&headroom::key::TargetKey::default(), &status);
            metrics.encode()
        })
    });
    c.bench_function("status_json", |b| b.iter(|| serde_json::to_vec(&status).unwrap()));
}

/// A sample one second after the last, with a growing leak and Go data.
fn synthetic(t: u64, base: &Sample) -> Sample {
    let mut s = base.clone();
    s.time_ms = 1_700_000_000_000 + t * 1000;
    s.mono_ms = t * 1000;
    let grow = t * 100_000;
    if let Some(c) = s.cgroup.as_mut() {
        c.usage += grow;
    }
    if let Some(g) = s.go.as_mut() {
        g.scraped_mono_ms = (t / 5) * 5000;
        g.sample.total_alloc = Some(t * 10_000_000);
        g.heap_live = Some(50_000_000 + grow / 2);
    }
    s
}

fn analysis(c: &mut Criterion) {
    let mut base = Collector::new(config("v2")).poll(0, Instant::now());
    base.cgroup = Some(CgroupSample::all_anonymous("/cg", 200_000_000));
    base.go = Some(GoReading {
        sample: headroom::parse::go_runtime::GoSample {
            heap_alloc: Some(80_000_000),
            heap_inuse: Some(82_000_000),
            heap_idle: Some(20_000_000),
            heap_released: Some(5_000_000),
            heap_sys: Some(102_000_000),
            sys: Some(115_000_000),
            next_gc: Some(100_000_000),
            ..Default::default()
        },
        heap_live: Some(50_000_000),
        gogc_env: Some(100),
        ..Default::default()
    });
    for (name, window) in [("10m", "10m"), ("24h", "24h")] {
        let mut cfg = config("v2");
        cfg.window = humantime::parse_duration(window).unwrap();
        let mut a = headroom::analysis::predict::Analyzer::new(cfg.analysis_config());
        // One poll a second fills the window; past 600 points polls merge into
        // buckets, so one poll per bucket fills it just the same, faster.
        let polls = cfg.window.as_secs();
        let step = (polls / 600).max(1);
        for t in (0..polls).step_by(step as usize) {
            a.update(&synthetic(t, &base));
        }
        eprintln!("history with a full {name} window: {} bytes", a.history_bytes());
        let mut t = polls;
        c.bench_function(&format!("analysis_update_{name}_window_full"), |b| {
            b.iter(|| {
                t += 1;
                a.update(&synthetic(t, &base))
            })
        });
    }
}

/// One discovery walk over a systemd-driver v2 tree of 1,000 containers
/// (500 pods of two) beside 200 system services, made in a temp dir.
fn discovery(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    for s in 0..200 {
        std::fs::create_dir_all(root.path().join(format!("system.slice/unit{s}.service"))).unwrap();
    }
    for p in 0..500 {
        let qos = ["burstable", "besteffort"][p % 2];
        let pod = root.path().join(format!(
            "kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{p:08x}_0000_4000_8000_000000000000.slice"
        ));
        for k in 0..2 {
            std::fs::create_dir_all(pod.join(format!("cri-containerd-{:064x}.scope", p * 2 + k))).unwrap();
        }
    }
    assert_eq!(headroom::source::kubepods::discover(root.path()).containers.len(), 1000);
    c.bench_function("discovery_1000_containers", |b| {
        b.iter(|| headroom::source::kubepods::discover(root.path()))
    });
}

criterion_group!(benches, poll, analysis, discovery);
criterion_main!(benches);
