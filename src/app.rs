//! Wiring: the poller thread, the Go scraper, the HTTP server, and shutdown.
//!
//! The poller is a thread of its own: a /proc read can stall on the target's
//! mmap lock, and that must stall neither the HTTP server nor the Go scrape.
//! It sleeps on a channel, so Go results and the stop signal wake it. A
//! panic in it is logged and stops the daemon with an error (a non-zero
//! exit), so that the container's runtime restarts it.

use crate::alert::{list_profiles, AlertConfig, AlertEvent, AlertPlan, Deliverer, Plan, PollTime, Profiles};
use crate::collector::go::{pace, scrape, unix_ms, GoScrape};
use crate::config::Config;
use crate::http::{router, Published, Shared};
use crate::httpc::HttpClient;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::server::ServerLimits;
use crate::source::go;
use anyhow::Context;
use std::future::Future;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch};

/// How long in-flight HTTP requests may take to finish after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What wakes the poller besides its timer.
pub enum PollerMsg {
    Go(Box<GoScrape>),
    Stop,
}

/// Scrapes the target's Go runtime every `interval` (the pprof page at
/// least every [`go::PPROF_MIN_INTERVAL`]), apart from the cgroup polls, so a
/// slow target never delays them.
async fn go_loop(url: String, interval: Duration, tx: std_mpsc::Sender<PollerMsg>, mut stop: watch::Receiver<bool>) {
    let client = HttpClient::new();
    let mut next = tokio::time::Instant::now();
    let mut slowed_logged = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = scrape(&client, &url, interval) => r,
            _ = stop.changed() => return,
        };
        let every = pace(interval, &result);
        if every > interval && !slowed_logged {
            tracing::info!(
                source = "go",
                "the Go URL serves the pprof heap page: scraped every {} s, not every --go-interval (each scrape \
                 renders a heap profile in the target)",
                every.as_secs()
            );
            slowed_logged = true;
        }
        // A scrape that overran its pace is followed after a full pace.
        next = (started + every).max(tokio::time::Instant::now());
        if tx.send(PollerMsg::Go(Box::new(result))).is_err() {
            return;
        }
    }
}

/// Where the poller sends alert work; `None` when no alert output is set.
type AlertTx = Option<tokio::sync::mpsc::Sender<(Plan, AlertEvent)>>;

/// The poll loop, on its own thread: poll every `interval`, publish, and
/// hand alert work to the delivery task without ever waiting for it.
fn poller(
    mut monitor: Monitor,
    interval: Duration,
    shared: Arc<Shared>,
    histogram: prometheus::Histogram,
    rx: std_mpsc::Receiver<PollerMsg>,
    alerts: AlertTx,
    labels: std::collections::BTreeMap<String, String>,
) {
    let mut plan = AlertPlan::default();
    let mut next = Instant::now();
    let epoch = next;
    loop {
        // Sleep until the next tick, taking Go results as they come.
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(PollerMsg::Go(r)) => monitor.ingest_go(*r),
                Ok(PollerMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        let started = Instant::now();
        let mut status = monitor.poll(unix_ms(SystemTime::now()), started);
        histogram.observe(started.elapsed().as_secs_f64());
        status.poll_finished_ms = Some(unix_ms(SystemTime::now()));
        if let (Some(tx), Some(a)) = (&alerts, &status.analysis) {
            let now = PollTime {
                mono_ms: started.duration_since(epoch).as_millis() as u64,
                wall_ms: status.time_ms,
            };
            let p = plan.step(a.risk, now);
            if p != Plan::default() {
                let ev = AlertEvent::new(a, status.time_ms, p.changed_from, &labels);
                if tx.try_send((p, ev)).is_err() {
                    tracing::warn!("alert delivery is behind: an alert update was dropped");
                }
            }
        }
        shared.publish(Published::new(status));
        // Fixed rate; after a stall, start again from now rather than catch up.
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
}

/// How a supervised thread ended: `Err` with the panic's message when it
/// panicked.
pub type ThreadEnd = Result<(), String>;

/// Runs `f` on a thread of its own named `name`. The receiver tells how it
/// ended, so the daemon learns of a panic instead of serving stale data.
pub fn spawn_supervised<F>(name: &str, f: F) -> anyhow::Result<oneshot::Receiver<ThreadEnd>>
where
    F: FnOnce() + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(&*p));
            let _ = tx.send(end);
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(rx)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

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

/// Alert outputs from the config, labels from the pod's environment.
pub fn alert_config(cfg: &Config) -> AlertConfig {
    let mut labels = AlertConfig::labels_from_env(|k| std::env::var(k).ok());
    if let crate::config::Target::Process(name) = &cfg.target {
        labels.insert("process".into(), name.clone());
    }
    AlertConfig {
        alertmanager_url: cfg.alertmanager_url.clone(),
        webhook_url: cfg.webhook_url.clone(),
        alertmanager_auth_file: cfg.alertmanager_auth_file.clone(),
        webhook_auth_file: cfg.webhook_auth_file.clone(),
        ca_file: cfg.alert_ca_file.clone(),
        profile_dir: cfg.profile_dir.clone(),
        pprof_url: cfg
            .pprof_url
            .clone()
            .or_else(|| cfg.go_url.as_deref().and_then(go::pprof_url_from)),
        labels,
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

    let metrics = Metrics::new();
    let histogram = metrics.poll_histogram();
    let interval = cfg.interval;
    let mut monitor = Monitor::new(cfg.clone());
    let shared = Arc::new(
        Shared::new(metrics)
            .with_history(monitor.history())
            .with_interval(interval),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (poll_tx, poll_rx) = std_mpsc::channel();
    if let Some(url) = cfg.go_url.clone() {
        tokio::spawn(go_loop(url, cfg.go_interval, poll_tx.clone(), stop_rx.clone()));
    }
    let alert_cfg = alert_config(&cfg);
    let profiles: Profiles = Default::default();
    if let Some(dir) = &alert_cfg.profile_dir {
        crate::alert::profile::remove_leftovers(dir);
        *profiles.lock().unwrap_or_else(|e| e.into_inner()) = list_profiles(dir);
    }
    let alert_tx = if alert_cfg.is_empty() {
        None
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Plan, AlertEvent)>(64);
        let deliverer = Deliverer::new(&alert_cfg, profiles.clone())?;
        tokio::spawn(async move {
            while let Some((plan, ev)) = rx.recv().await {
                deliverer.deliver(plan, ev).await;
            }
        });
        Some(tx)
    };
    monitor.set_profiles(profiles);
    let poller_shared = shared.clone();
    let labels = alert_cfg.labels;
    let mut poller_end = spawn_supervised("poller", move || {
        poller(monitor, interval, poller_shared, histogram, poll_rx, alert_tx, labels)
    })?;
    let mut server_stop = stop_rx;
    // Header and idle timeouts and a cap on connections: slow or many
    // clients cost bounded memory and are refused cheaply past the cap.
    let server = tokio::spawn(async move {
        crate::server::serve(listener, router(shared), ServerLimits::default(), async move {
            let _ = server_stop.changed().await;
        })
        .await
    });

    let outcome = until_stopped(shutdown_signal(), &mut poller_end).await;
    let _ = stop_tx.send(true);
    let _ = poll_tx.send(PollerMsg::Stop);
    if outcome.is_ok() {
        // The poller finishes its current poll, unless a read is stuck.
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut poller_end).await.is_err() {
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
