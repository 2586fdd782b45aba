//! The webhook sink: a JSON [`AlertEvent`] POSTed on every risk change.
//! Each target's latest event waits in the webhook's outbox until it is
//! delivered, retried with backoff for as long as the receiver is down; a
//! newer event of the same target supersedes it (see [`super::sender`]).

use super::auth::read_credential;
use super::outbox::Pending;
use super::plan::{AlertEvent, Plan};
use super::sender::{self, Queue, Receiver};
use super::sink::{BoxFuture, Sink};
use crate::httpc::{HttpClient, SecretUrl};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One attempt's deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A target's latest event, serialized.
#[derive(Debug, Clone)]
pub struct WebhookMessage(Vec<u8>);

impl Pending for WebhookMessage {
    fn supersede(&mut self, newer: WebhookMessage) {
        *self = newer;
    }
}

struct Post {
    url: SecretUrl,
    client: HttpClient,
    auth_file: Option<PathBuf>,
}

impl Receiver for Post {
    type Message = WebhookMessage;

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn name(&self) -> String {
        format!("webhook {}", self.url)
    }

    fn send<'a>(&'a self, m: &'a WebhookMessage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let auth = self
                .auth_file
                .as_deref()
                .map(read_credential)
                .transpose()
                .map_err(|e| format!("--webhook-auth-file {e}"))?;
            self.client
                .post_json_secret(&self.url, m.0.clone(), ATTEMPT_TIMEOUT, auth.as_ref())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

pub struct Webhook {
    queue: Arc<Queue<WebhookMessage>>,
}

impl Webhook {
    /// Starts the webhook's sender task. `auth_file`: its credential
    /// (`--webhook-auth-file`), read before each attempt.
    pub fn new(url: &str, client: HttpClient, auth_file: Option<PathBuf>) -> Webhook {
        let queue = sender::start(Post {
            url: SecretUrl::new(url),
            client,
            auth_file,
        });
        Webhook { queue }
    }
}

impl Sink for Webhook {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if plan.changed_from.is_some() {
                let body = serde_json::to_vec(ev).expect("event serializes");
                self.queue.put(ev.labels.clone(), WebhookMessage(body));
            }
        })
    }
}
