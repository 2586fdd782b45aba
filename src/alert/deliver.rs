//! The [`Deliverer`]: runs a plan through every configured alert output, in
//! order, on the delivery task. The one place that knows every sink.
//! Alertmanager and the webhook only queue what the plan says (their own
//! sender tasks deliver it), so a receiver that is down delays nothing.

use super::alertmanager::Alertmanager;
use super::plan::{AlertEvent, Plan};
use super::profile::{ProfileCapture, Profiles};
use super::sink::Sink;
use super::webhook::Webhook;
use super::AlertConfig;
use crate::httpc::HttpClient;

/// Sends what a plan says to every configured output, in order.
pub struct Deliverer {
    sinks: Vec<Box<dyn Sink>>,
}

impl Deliverer {
    /// Starts the receivers' sender tasks (on the current tokio runtime).
    /// Fails when `--alert-ca-file` holds no usable certificate.
    pub fn new(cfg: &AlertConfig, profiles: Profiles) -> anyhow::Result<Deliverer> {
        let client = match &cfg.ca_file {
            Some(f) => HttpClient::with_ca_file(f).map_err(|e| anyhow::anyhow!("--alert-ca-file: {e}"))?,
            None => HttpClient::new(),
        };
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(url) = &cfg.alertmanager_url {
            let auth = cfg.alertmanager_auth_file.clone();
            sinks.push(Box::new(Alertmanager::new(url, client.clone(), auth)));
        }
        if let Some(url) = &cfg.webhook_url {
            let auth = cfg.webhook_auth_file.clone();
            sinks.push(Box::new(Webhook::new(url, client.clone(), auth)));
        }
        if let (Some(dir), Some(url)) = (&cfg.profile_dir, &cfg.pprof_url) {
            sinks.push(Box::new(ProfileCapture::new(
                dir.clone(),
                url.clone(),
                client,
                profiles,
            )));
        }
        Ok(Deliverer { sinks })
    }

    pub async fn deliver(&self, plan: Plan, ev: AlertEvent) {
        for sink in &self.sinks {
            sink.deliver(&plan, &ev).await;
        }
    }
}
