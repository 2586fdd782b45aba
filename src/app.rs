//! Wiring: the poll loop, the HTTP server, and shutdown.

use crate::collector::Collector;
use crate::config::Config;
use crate::http::{router, Published, Shared};
use crate::metrics::Metrics;
use crate::status::Status;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long in-flight HTTP requests may take to finish after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

async fn poll_loop(
    cfg: Config,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
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
    let poller = tokio::spawn(poll_loop(cfg, shared.clone(), metrics, stop_rx.clone()));
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
