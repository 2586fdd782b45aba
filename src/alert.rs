//! Alerts headroom raises itself: to Alertmanager's v2 API, to a webhook,
//! and a heap profile of the target saved when the risk rises.
//!
//! [`AlertPlan`] is the pure part: given the risk of each poll it says what
//! to send. Delivery runs on its own task, fed through a bounded channel the
//! poller never waits on; a slow or down receiver delays nothing else.

use crate::analysis::predict::Analysis;
use crate::analysis::risk::Risk;
use crate::httpc::HttpClient;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Alertmanager forgets an alert not re-sent within its resolve_timeout
/// (5 m by default): a firing alert is re-sent this often.
pub const RESEND_EVERY_MS: u64 = 60_000;
/// Webhook attempts, with the delay doubling from 1 s between them.
pub const WEBHOOK_ATTEMPTS: u32 = 5;
/// Saved profiles: at most this many ...
pub const MAX_PROFILES: usize = 10;
/// ... and at most this many bytes in all; the oldest are removed first.
pub const MAX_PROFILE_BYTES: u64 = 256 << 20;
const PROFILE_TIMEOUT: Duration = Duration::from_secs(30);
const PROFILE_MAX_BODY: usize = 64 << 20;

pub const ALERT_NAME: &str = "HeadroomOOMRisk";

/// What to tell Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmAction {
    /// (Re-)send a firing alert of this severity, started at `starts_ms`.
    Fire { severity: Risk, starts_ms: u64 },
    /// Resolve the alert of this severity (ends now).
    Resolve { severity: Risk, starts_ms: u64 },
}

/// Decides, poll by poll, the Alertmanager messages, the webhook posts
/// (every risk change) and the profile captures (every rise).
#[derive(Debug, Default, Clone)]
pub struct AlertPlan {
    last: Risk,
    firing: Option<(Risk, u64)>,
    last_sent_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub alertmanager: Vec<AmAction>,
    /// The risk changed from this level (a webhook post).
    pub changed_from: Option<Risk>,
    /// The risk rose: capture a profile.
    pub capture_profile: bool,
}

impl AlertPlan {
    pub fn step(&mut self, risk: Risk, now_ms: u64) -> Plan {
        let mut plan = Plan::default();
        if risk != self.last {
            plan.changed_from = Some(self.last);
            plan.capture_profile = risk > self.last;
            self.last = risk;
        }
        match (self.firing, risk) {
            (None, Risk::Ok) => {}
            (Some((sev, starts)), Risk::Ok) => {
                plan.alertmanager.push(AmAction::Resolve {
                    severity: sev,
                    starts_ms: starts,
                });
                self.firing = None;
            }
            (Some((sev, starts)), r) if sev == r => {
                if now_ms.saturating_sub(self.last_sent_ms) >= RESEND_EVERY_MS {
                    plan.alertmanager.push(AmAction::Fire {
                        severity: sev,
                        starts_ms: starts,
                    });
                    self.last_sent_ms = now_ms;
                }
            }
            (prev, r) => {
                if let Some((sev, starts)) = prev {
                    plan.alertmanager.push(AmAction::Resolve {
                        severity: sev,
                        starts_ms: starts,
                    });
                }
                plan.alertmanager.push(AmAction::Fire {
                    severity: r,
                    starts_ms: now_ms,
                });
                self.firing = Some((r, now_ms));
                self.last_sent_ms = now_ms;
            }
        }
        plan
    }
}

/// Where alerts go, and the labels that say whose they are.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub profile_dir: Option<PathBuf>,
    pub pprof_url: Option<String>,
    /// pod, namespace, container (from POD_NAME, POD_NAMESPACE,
    /// CONTAINER_NAME), and the target process where named.
    pub labels: BTreeMap<String, String>,
}

impl AlertConfig {
    pub fn is_empty(&self) -> bool {
        self.alertmanager_url.is_none() && self.webhook_url.is_none() && self.profile_dir.is_none()
    }

    /// Labels from the downward-API environment a Kubernetes pod passes in.
    pub fn labels_from_env(get: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
        [
            ("pod", "POD_NAME"),
            ("namespace", "POD_NAMESPACE"),
            ("container", "CONTAINER_NAME"),
        ]
        .into_iter()
        .filter_map(|(label, var)| get(var).filter(|v| !v.is_empty()).map(|v| (label.to_owned(), v)))
        .collect()
    }
}

/// One poll's worth of what an alert says.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    pub time_ms: u64,
    pub risk: Risk,
    pub previous: Option<Risk>,
    pub time_to_oom_seconds: Option<f64>,
    pub limit_bytes: Option<u64>,
    pub basis_bytes: Option<u64>,
    pub reason: String,
    pub causes: Vec<String>,
    pub advice: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl AlertEvent {
    pub fn new(a: &Analysis, time_ms: u64, previous: Option<Risk>, labels: &BTreeMap<String, String>) -> AlertEvent {
        AlertEvent {
            time_ms,
            risk: a.risk,
            previous,
            time_to_oom_seconds: a.time_to_oom_s,
            limit_bytes: a.limit,
            basis_bytes: a.basis,
            reason: a.risk_reason.clone(),
            causes: a.findings.iter().map(|f| f.cause.as_str().to_owned()).collect(),
            advice: a
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.cause.as_str(), f.advice))
                .collect(),
            labels: labels.clone(),
        }
    }
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The Alertmanager v2 body for one action.
pub fn alertmanager_body(action: &AmAction, ev: &AlertEvent, now_ms: u64) -> serde_json::Value {
    let (severity, starts_ms, ends) = match action {
        AmAction::Fire { severity, starts_ms } => (*severity, *starts_ms, None),
        AmAction::Resolve { severity, starts_ms } => (*severity, *starts_ms, Some(rfc3339(now_ms))),
    };
    let mut labels = ev.labels.clone();
    labels.insert("alertname".into(), ALERT_NAME.into());
    labels.insert("severity".into(), severity.as_str().into());
    labels.insert("source".into(), "headroom".into());
    let tto = ev.time_to_oom_seconds.map_or("not predicted".to_owned(), |t| {
        humantime::format_duration(Duration::from_secs(t as u64)).to_string()
    });
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_owned(),
        format!("OOM risk {}: {}", severity.as_str(), ev.reason),
    );
    annotations.insert(
        "description".to_owned(),
        format!(
            "time to OOM {tto}; limit-basis value {} of limit {}",
            ev.basis_bytes.map_or("–".into(), |b| b.to_string()),
            ev.limit_bytes.map_or("unlimited".into(), |l| l.to_string())
        ),
    );
    annotations.insert("time_to_oom".to_owned(), tto);
    annotations.insert("diagnosis".to_owned(), ev.causes.join(", "));
    if !ev.advice.is_empty() {
        annotations.insert("advice".to_owned(), ev.advice.join("\n"));
    }
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(starts_ms),
    });
    if let Some(e) = ends {
        alert["endsAt"] = e.into();
    }
    serde_json::Value::Array(vec![alert])
}

/// A saved heap profile, as listed in the status JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedProfile {
    pub path: PathBuf,
    pub bytes: u64,
    pub time_ms: u64,
    pub risk: String,
}

/// The profiles saved so far, shared with the collector for the status.
pub type Profiles = Arc<Mutex<VecDeque<SavedProfile>>>;

/// Profiles already in `dir` (from earlier runs), oldest first.
pub fn list_profiles(dir: &Path) -> VecDeque<SavedProfile> {
    let mut found: Vec<SavedProfile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("heap-")?.strip_suffix(".pb.gz")?;
            let (ms, risk) = rest.split_once('-')?;
            Some(SavedProfile {
                path: e.path(),
                bytes: e.metadata().ok()?.len(),
                time_ms: ms.parse().ok()?,
                risk: risk.to_owned(),
            })
        })
        .collect();
    found.sort_by_key(|p| p.time_ms);
    found.into()
}

/// Removes the oldest profiles until at most `max_count` remain and they
/// take at most `max_bytes`.
pub fn prune(list: &mut VecDeque<SavedProfile>, max_count: usize, max_bytes: u64) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    while list.len() > max_count || list.iter().map(|p| p.bytes).sum::<u64>() > max_bytes {
        match list.pop_front() {
            Some(p) => removed.push(p.path),
            None => break,
        }
    }
    removed
}

/// Fetches the target's heap profile and saves it as
/// `heap-<unix ms>-<risk>.pb.gz`, bounded in count and size.
pub async fn capture_profile(
    client: &HttpClient,
    url: &str,
    dir: &Path,
    risk: Risk,
    now_ms: u64,
    profiles: &Profiles,
) -> Result<SavedProfile, String> {
    let body = client
        .get(url, PROFILE_TIMEOUT, PROFILE_MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Err(format!(
            "{url}: not a gzip'd pprof profile (is net/http/pprof registered?)"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("--profile-dir {}: {e}", dir.display()))?;
    let path = dir.join(format!("heap-{now_ms}-{}.pb.gz", risk.as_str()));
    let tmp = dir.join(format!(".heap-{now_ms}.tmp"));
    std::fs::write(&tmp, &body)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let saved = SavedProfile {
        path,
        bytes: body.len() as u64,
        time_ms: now_ms,
        risk: risk.as_str().into(),
    };
    let mut list = profiles.lock().unwrap_or_else(|e| e.into_inner());
    list.push_back(saved.clone());
    for old in prune(&mut list, MAX_PROFILES, MAX_PROFILE_BYTES) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!("removing old profile {}: {e}", old.display());
        }
    }
    Ok(saved)
}

/// Sends what a plan says. Runs on the delivery task.
pub struct Deliverer {
    cfg: AlertConfig,
    client: HttpClient,
    profiles: Profiles,
}

impl Deliverer {
    pub fn new(cfg: AlertConfig, profiles: Profiles) -> Deliverer {
        Deliverer {
            cfg,
            client: HttpClient::new(),
            profiles,
        }
    }

    pub async fn deliver(&self, plan: Plan, ev: AlertEvent) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some(url) = &self.cfg.alertmanager_url {
            let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            for action in &plan.alertmanager {
                let body = serde_json::to_vec(&alertmanager_body(action, &ev, now_ms)).expect("alert serializes");
                if let Err(e) = self.client.post_json(&endpoint, body, Duration::from_secs(5)).await {
                    tracing::warn!("Alertmanager: {e}");
                }
            }
        }
        if let (Some(url), Some(_)) = (&self.cfg.webhook_url, plan.changed_from) {
            let body = serde_json::to_vec(&ev).expect("event serializes");
            let client = self.client.clone();
            let url = url.clone();
            // Retried in the background: later alerts do not wait for this one.
            tokio::spawn(async move {
                let mut delay = Duration::from_secs(1);
                for attempt in 1..=WEBHOOK_ATTEMPTS {
                    match client.post_json(&url, body.clone(), Duration::from_secs(5)).await {
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
        }
        if plan.capture_profile {
            if let (Some(dir), Some(url)) = (&self.cfg.profile_dir, &self.cfg.pprof_url) {
                match capture_profile(&self.client, url, dir, ev.risk, now_ms, &self.profiles).await {
                    Ok(p) => {
                        tracing::info!(path = %p.path.display(), bytes = p.bytes, "saved the target's heap profile")
                    }
                    Err(e) => tracing::warn!("heap profile: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Risk::*;

    #[test]
    fn plan_start_escalate_resend_resolve() {
        let mut p = AlertPlan::default();
        assert_eq!(p.step(Ok, 0), Plan::default());
        let s = p.step(Warning, 1000);
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Fire {
                severity: Warning,
                starts_ms: 1000
            }]
        );
        assert_eq!((s.changed_from, s.capture_profile), (Some(Ok), true));
        assert!(p.step(Warning, 2000).alertmanager.is_empty(), "not re-sent every poll");
        let s = p.step(Warning, 1000 + RESEND_EVERY_MS);
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Fire {
                severity: Warning,
                starts_ms: 1000
            }]
        );
        assert_eq!(s.changed_from, None);
        let s = p.step(Critical, 70_000);
        assert_eq!(
            s.alertmanager,
            vec![
                AmAction::Resolve {
                    severity: Warning,
                    starts_ms: 1000
                },
                AmAction::Fire {
                    severity: Critical,
                    starts_ms: 70_000
                }
            ]
        );
        assert!(s.capture_profile);
        let s = p.step(Warning, 80_000);
        assert!(!s.capture_profile, "a fall captures nothing");
        assert_eq!(s.changed_from, Some(Critical));
        let s = p.step(Ok, 90_000);
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Resolve {
                severity: Warning,
                starts_ms: 80_000
            }]
        );
    }

    #[test]
    fn alertmanager_body_has_labels_and_times() {
        let ev = AlertEvent {
            time_ms: 0,
            risk: Critical,
            previous: Some(Warning),
            time_to_oom_seconds: Some(95.0),
            limit_bytes: Some(100),
            basis_bytes: Some(90),
            reason: "OOM kill predicted in 95 s".into(),
            causes: vec!["heap_leak".into()],
            advice: vec!["heap_leak: profile".into()],
            labels: AlertConfig::labels_from_env(|k| match k {
                "POD_NAME" => Some("api-7d9".into()),
                "POD_NAMESPACE" => Some("shop".into()),
                _ => None,
            }),
        };
        let b = alertmanager_body(
            &AmAction::Fire {
                severity: Critical,
                starts_ms: 1_700_000_000_000,
            },
            &ev,
            0,
        );
        let a = &b[0];
        assert_eq!(a["labels"]["alertname"], ALERT_NAME);
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["pod"], "api-7d9");
        assert_eq!(a["labels"]["namespace"], "shop");
        assert!(a["labels"].get("container").is_none());
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["annotations"]["time_to_oom"], "1m 35s");
        assert_eq!(a["annotations"]["diagnosis"], "heap_leak");
        assert!(a.get("endsAt").is_none());
        let r = alertmanager_body(
            &AmAction::Resolve {
                severity: Critical,
                starts_ms: 0,
            },
            &ev,
            1000,
        );
        assert_eq!(r[0]["endsAt"], "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn profiles_are_listed_and_pruned_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (ms, size) in [(3000u64, 10usize), (1000, 10), (2000, 10)] {
            std::fs::write(dir.path().join(format!("heap-{ms}-warning.pb.gz")), vec![0u8; size]).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let mut l = list_profiles(dir.path());
        assert_eq!(l.iter().map(|p| p.time_ms).collect::<Vec<_>>(), vec![1000, 2000, 3000]);
        let removed = prune(&mut l, 2, u64::MAX);
        assert_eq!(removed, vec![dir.path().join("heap-1000-warning.pb.gz")]);
        let removed = prune(&mut l, 10, 15);
        assert_eq!(removed, vec![dir.path().join("heap-2000-warning.pb.gz")]);
        assert_eq!(l.len(), 1);
    }
}
