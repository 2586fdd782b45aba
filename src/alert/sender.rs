//! A receiver's one sender task: it drains the receiver's [`Outbox`] (one
//! pending message per target), retrying with [`backoff`] until each
//! target's latest message is delivered. One sender per receiver keeps a
//! target's messages in order; the outbox keeps the newest only, so an
//! outage of any length ends with the receiver at the current state.

use super::auth::read_credential;
use super::outbox::{backoff, FailureLog, Outbox, Pending, Report};
use super::sink::BoxFuture;
use crate::httpc::{HttpClient, SecretUrl};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// A target's alert labels (`namespace`, `pod`, `container`, …): the key of
/// its pending message.
pub type Labels = BTreeMap<String, String>;

/// At most this many targets with a message pending per receiver: more
/// than `--max-targets` allows, so only targets that came and went during
/// an outage can push out the oldest (logged).
pub const MAX_PENDING_TARGETS: usize = 4096;

/// A receiver's HTTP side: how one message is sent.
pub trait Receiver: Send + Sync + 'static {
    type Message: Pending + Clone + Send + 'static;
    /// The `receiver` label of the delivery series: `webhook`, `alertmanager`.
    fn kind(&self) -> &'static str;
    /// The receiver as log lines name it, with no secret part of its URL
    /// (`webhook https://hooks.slack.com/…`).
    fn name(&self) -> String;
    /// One attempt; the error names no secret either.
    fn send<'a>(&'a self, message: &'a Self::Message) -> BoxFuture<'a, Result<(), String>>;
}

/// The delivery series, shared by every receiver's sender (registered in
/// the daemon's registry by [`crate::metrics::Metrics::new`]).
pub struct DeliveryMetrics {
    pub delivered: IntCounterVec,
    pub failed: IntCounterVec,
    pub pending: IntGaugeVec,
}

/// The one set of delivery series of this process.
pub fn delivery_metrics() -> &'static DeliveryMetrics {
    static M: OnceLock<DeliveryMetrics> = OnceLock::new();
    M.get_or_init(|| DeliveryMetrics {
        delivered: IntCounterVec::new(
            Opts::new("headroom_alert_deliveries_total", "Alert messages delivered, by receiver."),
            &["receiver"],
        )
        .expect("valid metric"),
        failed: IntCounterVec::new(
            Opts::new(
                "headroom_alert_delivery_failures_total",
                "Failed attempts to deliver an alert message, by receiver; each is retried until delivered or superseded.",
            ),
            &["receiver"],
        )
        .expect("valid metric"),
        pending: IntGaugeVec::new(
            Opts::new(
                "headroom_alert_pending_targets",
                "Targets with an alert message waiting for the receiver (each target's latest only).",
            ),
            &["receiver"],
        )
        .expect("valid metric"),
    })
}

/// Where a receiver's messages are POSTed: its URL (shown without its
/// secret parts), the client, and a credential file read before each
/// attempt (named by its flag in errors).
pub struct Endpoint {
    pub url: SecretUrl,
    pub client: HttpClient,
    pub auth_file: Option<PathBuf>,
    pub auth_flag: &'static str,
}

/// One attempt's deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    /// POSTs the JSON `body` once; the error names no secret.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let auth = self
            .auth_file
            .as_deref()
            .map(read_credential)
            .transpose()
            .map_err(|e| format!("{} {e}", self.auth_flag))?;
        self.client
            .post_json_secret(&self.url, body, ATTEMPT_TIMEOUT, auth.as_ref())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The handle sinks put messages into.
pub struct Queue<M> {
    name: String,
    kind: &'static str,
    outbox: Mutex<Outbox<Labels, M>>,
    wake: Notify,
}

impl<M: Pending + Clone> Queue<M> {
    fn new(name: String, kind: &'static str) -> Queue<M> {
        Queue {
            name,
            kind,
            outbox: Mutex::new(Outbox::new(MAX_PENDING_TARGETS)),
            wake: Notify::new(),
        }
    }

    /// Queues `message` for the target `key`, superseding its pending one;
    /// never waits.
    pub fn put(&self, key: Labels, message: M) {
        let (evicted, len) = {
            let mut outbox = self.lock();
            (outbox.put(key, message), outbox.len())
        };
        self.set_pending(len);
        if let Some(k) = evicted {
            tracing::warn!(
                "{}: {MAX_PENDING_TARGETS} targets have an alert pending; the oldest one's ({k:?}) was dropped",
                self.name
            );
        }
        self.wake.notify_one();
    }

    fn set_pending(&self, len: usize) {
        let g = delivery_metrics().pending.with_label_values(&[self.kind]);
        g.set(len as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox<Labels, M>> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts `receiver`'s sender task (on the current tokio runtime) and
/// returns the queue that feeds it.
pub fn start<R: Receiver>(receiver: R) -> Arc<Queue<R::Message>> {
    let queue = Arc::new(Queue::new(receiver.name(), receiver.kind()));
    let m = delivery_metrics();
    // Every receiver's series from 0.
    m.delivered.with_label_values(&[receiver.kind()]);
    m.failed.with_label_values(&[receiver.kind()]);
    queue.set_pending(0);
    tokio::spawn(run(receiver, queue.clone()));
    queue
}

async fn run<R: Receiver>(receiver: R, queue: Arc<Queue<R::Message>>) {
    let epoch = tokio::time::Instant::now();
    let mut log = FailureLog::default();
    let mut failures = 0u32;
    let mut random = Jitter::new();
    loop {
        let next = queue.lock().next();
        let Some(taken) = next else {
            queue.wake.notified().await;
            continue;
        };
        let result = receiver.send(&taken.value).await;
        let now_ms = epoch.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                let len = {
                    let mut outbox = queue.lock();
                    outbox.delivered(&taken.key, taken.generation);
                    outbox.len()
                };
                queue.set_pending(len);
                delivery_metrics().delivered.with_label_values(&[queue.kind]).inc();
                failures = 0;
                if let Some(Report::Recovered { attempts, for_ms }) = log.success(now_ms) {
                    tracing::info!(
                        "{}: delivering again, after {attempts} failed attempts over {}",
                        queue.name,
                        humantime::format_duration(Duration::from_secs(for_ms / 1000))
                    );
                }
            }
            Err(e) => {
                queue.lock().failed(&taken.key);
                delivery_metrics().failed.with_label_values(&[queue.kind]).inc();
                failures = failures.saturating_add(1);
                match log.failure(now_ms) {
                    Some(Report::Failing) => tracing::warn!(
                        "{}: not delivered, retrying until it is (logged again at most once a minute): {e}",
                        queue.name
                    ),
                    Some(Report::StillFailing { attempts, for_ms }) => tracing::warn!(
                        "{}: still not delivered: {attempts} more failed attempts, failing for {}: {e}",
                        queue.name,
                        humantime::format_duration(Duration::from_secs(for_ms / 1000))
                    ),
                    _ => tracing::debug!("{}: attempt failed: {e}", queue.name),
                }
                tokio::time::sleep(backoff(failures, random.next())).await;
            }
        }
    }
}

/// Random numbers for the backoff's jitter (xorshift64, seeded from the
/// standard library's per-process random hasher keys).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Jitter(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Clone)]
    struct Msg(u32);

    impl Pending for Msg {
        fn supersede(&mut self, newer: Msg) {
            *self = newer;
        }
    }

    /// A receiver that fails while `down`, and records what it took.
    #[derive(Clone)]
    struct Fake {
        down: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<u32>>>,
        tries: Arc<Mutex<u32>>,
    }

    impl Receiver for Fake {
        type Message = Msg;
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn name(&self) -> String {
            "fake".into()
        }
        fn send<'a>(&'a self, m: &'a Msg) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                *self.tries.lock().unwrap() += 1;
                if self.down.load(Ordering::SeqCst) {
                    return Err("down".into());
                }
                self.got.lock().unwrap().push(m.0);
                Ok(())
            })
        }
    }

    fn key(pod: &str) -> Labels {
        [("pod".to_owned(), pod.to_owned())].into()
    }

    /// Paused tokio time: the backoff's sleeps pass instantly, in order.
    #[tokio::test(start_paused = true)]
    async fn an_outage_ends_at_the_latest_state_in_order() {
        let fake = Fake {
            down: Arc::new(AtomicBool::new(true)),
            got: Default::default(),
            tries: Default::default(),
        };
        let q = start(fake.clone());
        for i in 1..=5 {
            q.put(key("a"), Msg(i));
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        // An hour down: far more than any number of attempts.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let tries = *fake.tries.lock().unwrap();
        assert!(tries >= 60, "still retrying after an hour: {tries} attempts");
        assert!(
            tries <= 3600 / 30 + 20,
            "backed off to about a minute: {tries} attempts"
        );
        assert!(fake.got.lock().unwrap().is_empty());
        fake.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(*fake.got.lock().unwrap(), vec![5], "the current state, once");
        q.put(key("a"), Msg(6));
        q.put(key("b"), Msg(100));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*fake.got.lock().unwrap(), vec![5, 6, 100], "sent at once when up");
    }
}
