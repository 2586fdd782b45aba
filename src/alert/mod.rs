//! Alerts headroom raises itself: to Alertmanager's v2 API, to a webhook,
//! and a heap profile of the target saved when the risk rises.
//!
//! [`plan`] is the pure part: given the risk of each poll it says what to
//! send. Delivery runs on its own task through the [`sink::Sink`]s, fed
//! through a bounded channel the poller never waits on; a slow or down
//! receiver delays nothing else. Alertmanager and the webhook each have an
//! [`outbox`] holding every target's latest message, drained by one
//! [`sender`] task that retries until the receiver has the current state. A new output is a new `Sink` in a file of
//! its own, added in [`deliver::Deliverer::new`].

pub mod alertmanager;
pub mod auth;
pub mod deliver;
pub mod outbox;
pub mod plan;
pub mod profile;
pub mod sender;
pub mod sink;
pub mod webhook;

pub use deliver::Deliverer;
pub use plan::{AlertEvent, AlertPlan, AmAction, Plan, PollTime};
pub use profile::{list_profiles, Profiles, SavedProfile};

use std::path::PathBuf;

/// Where alerts go. Whose they are is in each event's labels.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    /// Credentials for the receivers (read before each send).
    pub alertmanager_auth_file: Option<PathBuf>,
    pub webhook_auth_file: Option<PathBuf>,
    /// Extra CA certificates for https receivers.
    pub ca_file: Option<PathBuf>,
    pub profile_dir: Option<PathBuf>,
    pub pprof_url: Option<String>,
}

impl AlertConfig {
    pub fn is_empty(&self) -> bool {
        self.alertmanager_url.is_none() && self.webhook_url.is_none() && self.profile_dir.is_none()
    }
}
