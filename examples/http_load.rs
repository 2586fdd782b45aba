//! A closed-loop HTTP load generator for the benchmarks: CONNS keep-alive
//! connections each send GET URL back to back for SECONDS (with
//! `Accept-Encoding: gzip` when the fourth argument is `gzip`, as Prometheus
//! sends it); prints the requests per second and the answers that were not
//! 200.
//!
//!   cargo run --release --example http_load -- URL [SECONDS] [CONNS] [gzip]

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first().and_then(|u| u.parse::<hyper::Uri>().ok()) else {
        eprintln!("usage: http_load URL [SECONDS] [CONNS]");
        std::process::exit(64);
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let gzip = args.get(3).is_some_and(|a| a == "gzip");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(conns)
            .build_http();
        let end = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, url, ok, bad, bytes) = (client.clone(), url.clone(), ok.clone(), bad.clone(), bytes.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let mut req = hyper::Request::get(url.clone());
                    if gzip {
                        req = req.header("accept-encoding", "gzip");
                    }
                    match client.request(req.body(Empty::new()).expect("request")).await {
                        Ok(resp) => {
                            let good = resp.status() == 200;
                            let n = resp
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().len())
                                .unwrap_or(0);
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            if good { &ok } else { &bad }.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "requests_per_second={:.0} ok={n} not_ok={} mean_body_bytes={:.0} seconds={secs:.1} conns={conns} gzip={gzip}",
        n as f64 / secs,
        bad.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / n.max(1) as f64
    );
}
