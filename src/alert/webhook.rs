//! The webhook sink: a JSON [`AlertEvent`] POSTed on every risk change.
//! Each target's latest event waits in the webhook's outbox until it is
//! delivered, retried with backoff for as long as the receiver is down; a
//! newer event of the same target supersedes it (see [`super::sender`]).

use super::outbox::Pending;
use super::plan::{AlertEvent, Plan};
use super::sender::{self, Endpoint, Queue, Receiver};
use super::sink::{BoxFuture, Sink};
use crate::httpc::{HttpClient, SecretUrl};
use std::path::PathBuf;
use std::sync::Arc;

/// A target's latest event, serialized.
#[derive(Debug, Clone)]
pub struct WebhookMessage(Vec<u8>);

impl Pending for WebhookMessage {
    fn supersede(&mut self, newer: WebhookMessage) {
        *self = newer;
    }
}

struct Post(Endpoint);

impl Receiver for Post {
    type Message = WebhookMessage;

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn name(&self) -> String {
        format!("webhook {}", self.0.url)
    }

    fn send<'a>(&'a self, m: &'a WebhookMessage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.post(m.0.clone()))
    }
}

pub struct Webhook {
    queue: Arc<Queue<WebhookMessage>>,
}

impl Webhook {
    /// Starts the webhook's sender task. `auth_file`: its credential
    /// (`--webhook-auth-file`), read before each attempt.
    pub fn new(url: &str, client: HttpClient, auth_file: Option<PathBuf>) -> Webhook {
        let queue = sender::start(Post(Endpoint {
            url: SecretUrl::new(url),
            client,
            auth_file,
            auth_flag: "--webhook-auth-file",
        }));
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
