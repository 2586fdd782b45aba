//! The webhook sink: a JSON [`AlertEvent`] POSTed on every risk change,
//! retried with backoff in the background so later alerts do not wait.

use super::auth::read_credential;
use super::plan::{AlertEvent, Plan};
use super::sink::{BoxFuture, Sink};
use crate::httpc::HttpClient;
use std::path::PathBuf;
use std::time::Duration;

/// Webhook attempts, with the delay doubling from 1 s between them.
pub const WEBHOOK_ATTEMPTS: u32 = 5;

pub struct Webhook {
    url: String,
    client: HttpClient,
    auth_file: Option<PathBuf>,
}

impl Webhook {
    /// `auth_file`: its credential (`--webhook-auth-file`).
    pub fn new(url: String, client: HttpClient, auth_file: Option<PathBuf>) -> Webhook {
        Webhook { url, client, auth_file }
    }
}

impl Sink for Webhook {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if plan.changed_from.is_none() {
                return;
            }
            let body = serde_json::to_vec(ev).expect("event serializes");
            let auth = match self.auth_file.as_deref().map(read_credential).transpose() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("webhook: not sent: --webhook-auth-file {e}");
                    return;
                }
            };
            let client = self.client.clone();
            let url = self.url.clone();
            tokio::spawn(async move {
                let mut delay = Duration::from_secs(1);
                for attempt in 1..=WEBHOOK_ATTEMPTS {
                    match client
                        .post_json_auth(&url, body.clone(), Duration::from_secs(5), auth.as_ref())
                        .await
                    {
                        Ok(_) => return,
                        Err(e) if attempt == WEBHOOK_ATTEMPTS => {
                            tracing::warn!("webhook: giving up after {attempt} attempts: {e}")
                        }
                        Err(e) => {
                            tracing::info!("webhook attempt {attempt} failed, retrying in {delay:?}: {e}");
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
            });
        })
    }
}
