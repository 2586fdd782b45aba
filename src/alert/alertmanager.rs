//! The Alertmanager sink: the v2 API (`POST /api/v2/alerts`), a firing
//! alert re-sent while it lasts and resolved when the risk falls.

use super::auth::read_credential;
use super::plan::{AlertEvent, AmAction, Plan};
use super::sink::{BoxFuture, Sink};
use crate::httpc::HttpClient;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const ALERT_NAME: &str = "HeadroomOOMRisk";

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

pub struct Alertmanager {
    endpoint: String,
    client: HttpClient,
    auth_file: Option<PathBuf>,
}

impl Alertmanager {
    /// `url` is Alertmanager's base URL (`http://alertmanager:9093`);
    /// `auth_file` its credential (`--alertmanager-auth-file`).
    pub fn new(url: &str, client: HttpClient, auth_file: Option<PathBuf>) -> Alertmanager {
        Alertmanager {
            endpoint: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            client,
            auth_file,
        }
    }
}

impl Sink for Alertmanager {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            if plan.alertmanager.is_empty() {
                return;
            }
            let auth = match self.auth_file.as_deref().map(read_credential).transpose() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("Alertmanager: not sent: --alertmanager-auth-file {e}");
                    return;
                }
            };
            for action in &plan.alertmanager {
                let body = serde_json::to_vec(&alertmanager_body(action, ev, now_ms)).expect("alert serializes");
                let sent = self
                    .client
                    .post_json_auth(&self.endpoint, body, Duration::from_secs(5), auth.as_ref())
                    .await;
                if let Err(e) = sent {
                    tracing::warn!("Alertmanager: {e}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertConfig;
    use crate::analysis::risk::Risk::*;

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
}
