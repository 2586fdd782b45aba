//! Wiring only: the targets (the sidecar's one, or node mode's discovery
//! loop), the alert delivery, the HTTP server, and shutdown.
//!
//! Each target's poller is a thread of its own ([`runner`]): a /proc read
//! can stall on the target's mmap lock, and that must stall neither the
//! HTTP server, the Go scrape, nor another target. In the sidecar a panic
//! of the poller (node mode: of the discovery loop) is logged and stops the
//! daemon with an error (a non-zero exit), so that the container's runtime
//! restarts it.

use crate::alert::{list_profiles, AlertConfig, AlertEvent, Deliverer, Plan, Profiles};
use crate::config::{Config, DaemonConfig, NodeConfig};
use crate::http::router_with_auth;
use crate::key::TargetKey;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::server::ServerLimits;
use crate::targets::registry::Shared;
use crate::targets::runner::{self, spawn_supervised, AlertTx, Common, ThreadEnd};
use anyhow::Context;
use std::future::Future;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long in-flight HTTP requests may take to finish after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for `signal` or the end of the poller, whichever comes first: `Ok`
/// on the signal; an error when the poller ended first (it runs until told
/// to stop, so that is a panic, logged here with its message).
pub async fn until_stopped(
    signal: impl Future<Output = ()>,
    poller: &mut oneshot::Receiver<ThreadEnd>,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = signal => Ok(()),
        end = poller => {
            let why = match end {
                Ok(Err(msg)) => format!("the poller thread panicked: {msg}"),
                Ok(Ok(())) | Err(_) => "the poller thread stopped unexpectedly".to_owned(),
            };
            tracing::error!("{why}; stopping");
            Err(anyhow::anyhow!(why))
        }
    }
}

/// Alert outputs from the daemon's config. The labels that say whose an
/// alert is come with each target ([`runner::alert_labels`]).
pub fn alert_config(cfg: &DaemonConfig, pprof_url: Option<String>) -> AlertConfig {
    AlertConfig {
        alertmanager_url: cfg.alertmanager_url.clone(),
        webhook_url: cfg.webhook_url.clone(),
        alertmanager_auth_file: cfg.alertmanager_auth_file.clone(),
        webhook_auth_file: cfg.webhook_auth_file.clone(),
        ca_file: cfg.alert_ca_file.clone(),
        profile_dir: cfg.profile_dir.clone(),
        pprof_url,
    }
}

/// The alert sinks and their delivery task, shared by every target; the
/// profiles they save are listed in `profiles`.
fn start_alerts(alert_cfg: &AlertConfig, profiles: &Profiles) -> anyhow::Result<AlertTx> {
    if let Some(dir) = &alert_cfg.profile_dir {
        crate::alert::profile::remove_leftovers(dir);
        *profiles.lock().unwrap_or_else(|e| e.into_inner()) = list_profiles(dir);
    }
    if alert_cfg.is_empty() {
        return Ok(None);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Plan, AlertEvent)>(64);
    let deliverer = Deliverer::new(alert_cfg, profiles.clone())?;
    tokio::spawn(async move {
        while let Some((plan, ev)) = rx.recv().await {
            deliverer.deliver(plan, ev).await;
        }
    });
    Ok(Some(tx))
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

/// The sidecar: serves until SIGTERM/SIGINT, then stops polling and
/// drains the HTTP server for at most [`DRAIN_TIMEOUT`].
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let daemon = cfg.daemon_config();
    let target = cfg.target_config();
    let listener = bind(&daemon).await?;
    tracing::info!(addr = %listener.local_addr()?, target = ?target.target, interval = ?target.interval, "listening");
    let metrics = Metrics::new();
    let histogram = metrics.poll_histogram();
    let key = TargetKey::sidecar(target.container.as_deref(), |k| std::env::var(k).ok());
    let shared = Arc::new(Shared::new(metrics).with_interval(daemon.interval));
    let alert_cfg = alert_config(&daemon, target.pprof_url());
    let profiles: Profiles = Default::default();
    let common = Common {
        histogram,
        alerts: start_alerts(&alert_cfg, &profiles)?,
        profiles: Some(profiles),
        runtime: tokio::runtime::Handle::current(),
        scrapes: None,
        alert_labels: daemon.alert_labels.clone(),
        runbook_base: daemon.runbook_base.clone(),
    };
    let monitor = Monitor::new(target.clone());
    let slot = shared.insert(shared.new_slot(key, Default::default(), Some(monitor.history())));
    let mut unit = runner::start(target, monitor, slot, &common)?;
    let mut end = std::mem::replace(&mut unit.end, oneshot::channel().1);
    let auth = endpoint_auth(&daemon);
    serve_until_stopped(listener, shared, auth, &mut end, || unit.stop()).await
}

/// Node mode: every container on the node, found and polled by the
/// discovery loop; serves until SIGTERM/SIGINT.
pub async fn run_node(cfg: NodeConfig) -> anyhow::Result<()> {
    let listener = bind(&cfg.daemon).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        cgroup_root = %cfg.template.cgroup_root.display(),
        interval = ?cfg.template.interval,
        "node mode: listening"
    );
    let metrics = Metrics::for_node();
    let histogram = metrics.poll_histogram();
    let shared = Arc::new(Shared::node(metrics).with_interval(cfg.daemon.interval));
    let profiles: Profiles = Default::default();
    let alert_cfg = alert_config(&cfg.daemon, None);
    let common = Common {
        histogram,
        alerts: start_alerts(&alert_cfg, &profiles)?,
        profiles: Some(profiles),
        runtime: tokio::runtime::Handle::current(),
        scrapes: Some(Arc::new(tokio::sync::Semaphore::new(
            crate::targets::node::MAX_CONCURRENT_SCRAPES,
        ))),
        alert_labels: cfg.daemon.alert_labels.clone(),
        runbook_base: cfg.daemon.runbook_base.clone(),
    };
    let auth = endpoint_auth(&cfg.daemon);
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    let loop_shared = shared.clone();
    let mut end = spawn_supervised("discovery", move || {
        crate::targets::node::NodeLoop::new(cfg, loop_shared, common).run(stop_rx)
    })?;
    serve_until_stopped(listener, shared, auth, &mut end, move || {
        let _ = stop_tx.send(());
    })
    .await
}

async fn bind(daemon: &DaemonConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(daemon.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", daemon.listen))
}

/// Serves `shared` until a signal or the end of the `worker` thread (a
/// panic: an error), then stops the worker with `stop` and drains.
/// `--auth-file`'s guard of the endpoints, if given.
fn endpoint_auth(daemon: &DaemonConfig) -> Option<Arc<crate::auth::EndpointAuth>> {
    let file = daemon.auth_file.clone()?;
    tracing::info!(
        file = %file.display(),
        metrics = daemon.auth_metrics,
        "the dashboard, /api/ and /profiles/ require credentials"
    );
    Some(crate::auth::EndpointAuth::new(file, daemon.auth_metrics))
}

async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    auth: Option<Arc<crate::auth::EndpointAuth>>,
    worker: &mut oneshot::Receiver<ThreadEnd>,
    stop: impl FnOnce(),
) -> anyhow::Result<()> {
    let (stop_tx, mut server_stop) = watch::channel(false);
    // Header and idle timeouts and a cap on connections: slow or many
    // clients cost bounded memory and are refused cheaply past the cap.
    let server = tokio::spawn(async move {
        crate::server::serve(
            listener,
            router_with_auth(shared, auth),
            ServerLimits::default(),
            async move {
                let _ = server_stop.changed().await;
            },
        )
        .await
    });
    let outcome = until_stopped(shutdown_signal(), worker).await;
    let _ = stop_tx.send(true);
    stop();
    if outcome.is_ok() {
        // The worker finishes its current poll, unless a read is stuck.
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut *worker).await.is_err() {
            tracing::warn!("the poller is still in a poll after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e).context("HTTP server"),
        Ok(Err(e)) => return Err(e).context("HTTP server task"),
        Err(_) => tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_panic_in_the_poller_stops_the_daemon_with_its_message() {
        let mut end = spawn_supervised("test-poller", || {
            let polls: Vec<u64> = Vec::new();
            // An out-of-bounds index: a real panic, not a simulated one.
            let _ = polls[std::hint::black_box(3)];
        })
        .unwrap();
        let err = block_on(until_stopped(std::future::pending(), &mut end)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("the poller thread panicked: "), "{msg}");
        assert!(msg.contains("index out of bounds"), "{msg}");
        // A panic with a formatted message keeps it.
        let mut end = spawn_supervised("test-poller", || panic!("read {} failed", "/x")).unwrap();
        let err = block_on(until_stopped(std::future::pending(), &mut end)).unwrap_err();
        assert_eq!(format!("{err:#}"), "the poller thread panicked: read /x failed");
    }

    #[test]
    fn a_signal_stops_the_daemon_cleanly_and_a_poller_that_returns_is_an_error() {
        let (release, wait) = std_mpsc::channel::<()>();
        let mut end = spawn_supervised("test-poller", move || {
            let _ = wait.recv();
        })
        .unwrap();
        block_on(until_stopped(std::future::ready(()), &mut end)).expect("a signal is a clean stop");
        drop(release);
        let err = block_on(until_stopped(std::future::pending(), &mut end)).unwrap_err();
        assert_eq!(format!("{err:#}"), "the poller thread stopped unexpectedly");
    }
}
