//! One poll (cgroup + /proc) over the fixture trees, and the metrics update
//! and encoding that follow it. `cargo bench --bench poll`.

use criterion::{criterion_group, criterion_main, Criterion};
use headroom::collector::Collector;
use headroom::config::Config;
use headroom::metrics::Metrics;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn config(tree: &str) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
    let map: BTreeMap<String, String> = [
        ("pid", "4242".to_owned()),
        ("proc-root", root.join("proc").display().to_string()),
        ("cgroup-root", root.join("sys/fs/cgroup").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Config::from_map(&map).expect("fixture config")
}

fn poll(c: &mut Criterion) {
    for tree in ["v1", "v2"] {
        let mut collector = Collector::new(config(tree));
        let mut ms = 0;
        c.bench_function(&format!("poll_{tree}"), |b| {
            b.iter(|| {
                ms += 1000;
                collector.poll(ms, Instant::now())
            })
        });
    }
    let mut collector = Collector::new(config("v2"));
    let status = collector.poll(0, Instant::now());
    let metrics = Metrics::new();
    c.bench_function("metrics_update_and_encode", |b| {
        b.iter(|| {
            metrics.update(&status);
            metrics.encode()
        })
    });
    c.bench_function("status_json", |b| b.iter(|| serde_json::to_vec(&status).unwrap()));
}

/// A status one second after the last, with a growing leak and Go data.
fn synthetic(t: u64, base: &headroom::status::Status) -> headroom::status::Status {
    let mut s = base.clone();
    s.time_ms = t * 1000;
    let grow = t * 100_000;
    s.memory.unreclaimable = s.memory.unreclaimable.map(|v| v + grow);
    s.memory.working_set = s.memory.working_set.map(|v| v + grow);
    if let Some(g) = s.go.as_mut() {
        g.scraped_at_ms = (t / 5) * 5000;
        g.sample.total_alloc = Some(t * 10_000_000);
        g.heap_live = Some(50_000_000 + grow / 2);
    }
    s
}

fn analysis(c: &mut Criterion) {
    let mut collector = Collector::new(config("v2"));
    let mut base = collector.poll(0, Instant::now());
    base.go = Some(headroom::status::GoStatus {
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
        scraped_at_ms: 0,
        heap_live: Some(50_000_000),
        heap_live_method: None,
        gogc_env: Some(100),
        restarts: 0,
    });
    for (name, window) in [("10m", 600_000u64), ("24h", 86_400_000)] {
        let cfg = headroom::analysis::predict::AnalysisConfig {
            window_ms: window,
            warn_within_s: 1800.0,
            critical_within_s: 300.0,
            thresholds: Default::default(),
        };
        let mut a = headroom::analysis::predict::Analyzer::new(cfg);
        // One poll a second fills the window; past 600 points polls merge into
        // buckets, so one poll per bucket fills it just the same, faster.
        let step = (window / 1000 / 600).max(1);
        let polls = window / 1000;
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

criterion_group!(benches, poll, analysis);
criterion_main!(benches);
