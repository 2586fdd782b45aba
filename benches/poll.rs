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

criterion_group!(benches, poll);
criterion_main!(benches);
