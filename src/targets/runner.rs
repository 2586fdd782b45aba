//! One target's unit at work: its poller thread (collector → analyzer →
//! status, published into its slot, alert plan stepped) and its Go scrape
//! task. Each target has its own thread, so a read stuck on one target's
//! mmap lock or cgroup delays no other target, nor the HTTP server.

use super::slot::{Published, Slot};
use crate::alert::{AlertEvent, AlertPlan, Plan, PollTime, Profiles};
use crate::collector::go::{pace, scrape, unix_ms, GoScrape};
use crate::config::{Target, TargetConfig};
use crate::httpc::HttpClient;
use crate::monitor::Monitor;
use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch};

/// What wakes a poller besides its timer.
pub enum PollerMsg {
    Go(Box<GoScrape>),
    /// Stop now.
    Stop,
    /// The target is gone: poll once more (its death is judged and
    /// published), then stop.
    Retire,
}

/// Where pollers send alert work; `None` when no alert output is set.
pub type AlertTx = Option<tokio::sync::mpsc::Sender<(Plan, AlertEvent)>>;

/// How a supervised thread ended: `Err` with the panic's message when it
/// panicked.
pub type ThreadEnd = Result<(), String>;

/// What every target's unit shares with the daemon.
#[derive(Clone)]
pub struct Common {
    pub histogram: prometheus::Histogram,
    pub alerts: AlertTx,
    /// The heap profiles saved by the alert task, listed in the status.
    pub profiles: Option<Profiles>,
    /// Where Go scrape tasks run.
    pub runtime: tokio::runtime::Handle,
    /// Node mode: bounds the Go scrapes running at once across targets.
    pub scrapes: Option<Arc<tokio::sync::Semaphore>>,
    /// `--alert-label`: on every pushed alert (a target's own labels win).
    pub alert_labels: BTreeMap<String, String>,
    /// `--runbook-base-url`.
    pub runbook_base: String,
}

/// A running target: its slot, and the handles that stop it.
pub struct TargetRun {
    pub slot: Arc<Slot>,
    tx: std_mpsc::Sender<PollerMsg>,
    go_stop: watch::Sender<bool>,
    /// Tells how the poller thread ended.
    pub end: oneshot::Receiver<ThreadEnd>,
}

impl TargetRun {
    /// Stops the poller after its current poll and the Go scrapes at once.
    pub fn stop(&self) {
        let _ = self.go_stop.send(true);
        let _ = self.tx.send(PollerMsg::Stop);
    }

    /// The target is gone: one last poll, then stop.
    pub fn retire(&self) {
        let _ = self.go_stop.send(true);
        let _ = self.tx.send(PollerMsg::Retire);
    }
}

/// Alert labels of a target: its key's non-empty parts, and the process
/// name where one was given.
pub fn alert_labels(slot: &Slot, cfg: &TargetConfig) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = ["namespace", "pod", "container"]
        .into_iter()
        .zip(slot.key.labels())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Target::Process(name) = &cfg.target {
        labels.insert("process".into(), name.clone());
    }
    labels
}

/// Starts a target: its Go scrape task (when it has a Go URL) and its
/// poller thread, publishing into `slot` (made with `monitor`'s history).
pub fn start(cfg: TargetConfig, mut monitor: Monitor, slot: Arc<Slot>, common: &Common) -> anyhow::Result<TargetRun> {
    let (tx, rx) = std_mpsc::channel();
    let (go_stop, go_stop_rx) = watch::channel(false);
    if let Some(url) = cfg.go_url.clone() {
        let client = match &cfg.go_netns {
            Some(ns) => HttpClient::in_netns(ns),
            None => HttpClient::new(),
        };
        common.runtime.spawn(go_loop(
            client,
            url,
            cfg.go_interval,
            common.scrapes.clone(),
            tx.clone(),
            go_stop_rx,
        ));
    }
    if let Some(p) = &common.profiles {
        monitor.set_profiles(p.clone());
    }
    let mut labels = common.alert_labels.clone();
    labels.extend(alert_labels(&slot, &cfg));
    let whose = Whose {
        labels,
        runbook_base: common.runbook_base.clone(),
    };
    let (poller_slot, histogram, alerts, interval) = (
        slot.clone(),
        common.histogram.clone(),
        common.alerts.clone(),
        cfg.interval,
    );
    let name = format!("poll {}", slot.key);
    let end = spawn_supervised(&name, move || {
        poller(monitor, interval, poller_slot, histogram, rx, alerts, whose)
    })?;
    Ok(TargetRun { slot, tx, go_stop, end })
}

/// Scrapes the target's Go runtime every `interval` (the pprof page at
/// least every [`crate::source::go::PPROF_MIN_INTERVAL`]), apart from the
/// cgroup polls, so a slow target never delays them.
async fn go_loop(
    client: HttpClient,
    url: String,
    interval: Duration,
    scrapes: Option<Arc<tokio::sync::Semaphore>>,
    tx: std_mpsc::Sender<PollerMsg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now();
    let mut slowed_logged = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        // Node mode: at most a few scrapes at once across every target.
        let permit = match &scrapes {
            Some(s) => tokio::select! {
                p = s.clone().acquire_owned() => p.ok(),
                _ = stop.changed() => return,
            },
            None => None,
        };
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = scrape(&client, &url, interval) => r,
            _ = stop.changed() => return,
        };
        drop(permit);
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

/// What a target's alerts carry besides the analysis: its labels (with
/// `--alert-label`'s) and the runbook's base URL.
struct Whose {
    labels: BTreeMap<String, String>,
    runbook_base: String,
}

/// The poll loop, on the target's own thread: poll every `interval`,
/// publish, and hand alert work to the delivery task without ever waiting
/// for it.
fn poller(
    mut monitor: Monitor,
    interval: Duration,
    slot: Arc<Slot>,
    histogram: prometheus::Histogram,
    rx: std_mpsc::Receiver<PollerMsg>,
    alerts: AlertTx,
    whose: Whose,
) {
    let mut plan = AlertPlan::default();
    let mut next = Instant::now();
    let epoch = next;
    loop {
        let mut last = false;
        // Sleep until the next tick, taking Go results as they come.
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(PollerMsg::Go(r)) => monitor.ingest_go(*r),
                Ok(PollerMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(PollerMsg::Retire) => {
                    last = true;
                    break;
                }
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
                let ev =
                    AlertEvent::new(a, status.time_ms, p.changed_from, &whose.labels).with_runbook(&whose.runbook_base);
                if tx.try_send((p, ev)).is_err() {
                    tracing::warn!(target_key = %slot.key, "alert delivery is behind: an alert update was dropped");
                }
            }
        }
        slot.publish(Published::new(status));
        if last {
            return;
        }
        // Fixed rate; after a stall, start again from now rather than catch up.
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
}

/// Runs `f` on a thread of its own named `name`. The receiver tells how it
/// ended, so the daemon learns of a panic instead of serving stale data.
pub fn spawn_supervised<F>(name: &str, f: F) -> anyhow::Result<oneshot::Receiver<ThreadEnd>>
where
    F: FnOnce() + Send + 'static,
{
    use anyhow::Context;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(&*p));
            let _ = tx.send(end);
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(rx)
}

/// A poller's stack: its deepest path is a poll's parse of memory.stat and
/// the analysis' fits, far below this.
const THREAD_STACK: usize = 512 * 1024;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_owned(),
    }
}
