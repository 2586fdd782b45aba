//! Wiring: the poll loop, the HTTP server, and shutdown.

use crate::collector::Collector;
use crate::config::Config;
use crate::http::{router, Published, Shared};
use crate::httpc::HttpClient;
use crate::metrics::Metrics;
use crate::source::go::{self, SCRAPE_TIMEOUT};
use crate::status::Status;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How long in-flight HTTP requests may take to finish after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs one poll on the blocking pool (a /proc read can stall on the target's
/// mmap lock) and returns the collector with its status and CPU-side time.
pub async fn poll_once(mut collector: Collector) -> (Collector, Status, f64) {
    let res = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = collector.poll(unix_ms(SystemTime::now()), started);
        (collector, status, started.elapsed().as_secs_f64())
    })
    .await;
    res.expect("the poll does not panic")
}

/// One Go scrape's result, stamped with the wall-clock time it finished.
pub type GoResult = (Result<crate::parse::go_runtime::GoSample, String>, u64);

/// Scrapes one Go URL now.
pub async fn scrape_go(client: &HttpClient, url: &str, interval: Duration) -> GoResult {
    let timeout = SCRAPE_TIMEOUT.min(interval);
    let r = go::scrape(client, url, timeout).await.map_err(|e| e.to_string());
    (r, unix_ms(SystemTime::now()))
}

/// Scrapes the target's Go runtime every `interval`, apart from the cgroup
/// polls, so a slow target never delays them.
async fn go_loop(url: String, interval: Duration, tx: mpsc::Sender<GoResult>, mut stop: watch::Receiver<bool>) {
    let client = HttpClient::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let result = tokio::select! {
            r = scrape_go(&client, &url, interval) => r,
            _ = stop.changed() => return,
        };
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

async fn poll_loop(
    cfg: Config,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    mut go_rx: mpsc::Receiver<GoResult>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = Collector::new(cfg);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        while let Ok((result, at_ms)) = go_rx.try_recv() {
            collector.ingest_go(result, at_ms, Instant::now());
        }
        let (c, status, seconds) = poll_once(collector).await;
        collector = c;
        metrics.update(&status, seconds);
        shared.publish(Published::new(status, metrics.encode()));
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The daemon: serves until SIGTERM/SIGINT, then stops polling and drains
/// the HTTP server for at most [`DRAIN_TIMEOUT`].
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, target = ?cfg.target, interval = ?cfg.interval, "listening");

    let metrics = Arc::new(Metrics::new());
    let shared = Arc::new(Shared::default());
    shared.publish(Published::new(Status::default(), metrics.encode()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let (go_tx, go_rx) = mpsc::channel(4);
    if let Some(url) = cfg.go_url.clone() {
        tokio::spawn(go_loop(url, cfg.go_interval, go_tx, stop_rx.clone()));
    }
    let poller = tokio::spawn(poll_loop(cfg, shared.clone(), metrics, go_rx, stop_rx.clone()));
    let mut server_stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(async move {
                let _ = server_stop.changed().await;
            })
            .await
    });

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = poller.await;
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("stopped"),
        Ok(Ok(Err(e))) => return Err(e).context("HTTP server"),
        Ok(Err(e)) => return Err(e).context("HTTP server task"),
        Err(_) => {
            tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; stopping anyway")
        }
    }
    Ok(())
}
