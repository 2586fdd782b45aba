//! The Alertmanager sink: the v2 API (`POST /api/v2/alerts`), a firing
//! alert re-sent while it lasts and resolved when the risk falls. What a
//! target has pending waits in the sink's outbox until Alertmanager takes
//! it, retried with backoff however long it is down (see [`super::sender`]).

use super::outbox::Pending;
use super::plan::{AlertEvent, AmAction, Plan};
use super::sender::{self, Endpoint, Queue, Receiver};
use super::sink::{BoxFuture, Sink};
use crate::analysis::risk::Risk;
use crate::httpc::{HttpClient, SecretUrl};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One alert of the Alertmanager v2 body for one action: firing, or
/// resolved with the `endsAt` the plan decided (never before `startsAt`).
pub fn alertmanager_alert(action: &AmAction, ev: &AlertEvent) -> serde_json::Value {
    let (severity, starts_ms, ends) = match action {
        AmAction::Fire { severity, starts_ms } => (*severity, *starts_ms, None),
        AmAction::Resolve {
            severity,
            starts_ms,
            ends_ms,
        } => (*severity, *starts_ms, Some(rfc3339((*ends_ms).max(*starts_ms)))),
    };
    // The rules' names and labels, so that a pushed alert and the rule's
    // group together and page once.
    let mut labels = ev.labels.clone();
    labels.insert("alertname".into(), super::plan::alert_name(severity).into());
    labels.insert("severity".into(), severity.as_str().into());
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
    if !ev.runbook_url.is_empty() {
        annotations.insert("runbook_url".to_owned(), ev.runbook_url.clone());
    }
    annotations.insert("source".to_owned(), "pushed by headroom".to_owned());
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
    alert
}

/// What a target has pending for Alertmanager: per severity, the latest
/// action (a firing alert, or its resolve) and the event it describes. A
/// resolve stays pending until delivered; a newer action of the same
/// severity supersedes it. At most one entry per severity.
#[derive(Debug, Clone, Default)]
pub struct AmMessage(BTreeMap<Risk, (AmAction, Arc<AlertEvent>)>);

impl AmMessage {
    pub fn new(actions: &[AmAction], ev: &AlertEvent) -> AmMessage {
        let ev = Arc::new(ev.clone());
        AmMessage(
            actions
                .iter()
                .map(|a| {
                    let sev = match a {
                        AmAction::Fire { severity, .. } | AmAction::Resolve { severity, .. } => *severity,
                    };
                    (sev, (a.clone(), ev.clone()))
                })
                .collect(),
        )
    }

    /// The v2 body: every pending alert of the target, in one POST.
    pub fn body(&self) -> serde_json::Value {
        self.0.values().map(|(a, ev)| alertmanager_alert(a, ev)).collect()
    }
}

impl Pending for AmMessage {
    fn supersede(&mut self, newer: AmMessage) {
        self.0.extend(newer.0);
    }
}

struct Post(Endpoint);

impl Receiver for Post {
    type Message = AmMessage;

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn name(&self) -> String {
        format!("Alertmanager {}", self.0.url)
    }

    fn send<'a>(&'a self, m: &'a AmMessage) -> BoxFuture<'a, Result<(), String>> {
        let body = serde_json::to_vec(&m.body()).expect("alerts serialize");
        Box::pin(self.0.post(body))
    }
}

pub struct Alertmanager {
    queue: Arc<Queue<AmMessage>>,
}

impl Alertmanager {
    /// Starts the sender task. `url` is Alertmanager's base URL
    /// (`http://alertmanager:9093`); `auth_file` its credential
    /// (`--alertmanager-auth-file`), read before each attempt.
    pub fn new(url: &str, client: HttpClient, auth_file: Option<PathBuf>) -> Alertmanager {
        let endpoint = SecretUrl::new(&format!("{}/api/v2/alerts", url.trim_end_matches('/')));
        let queue = sender::start(Post(Endpoint {
            url: endpoint,
            client,
            auth_file,
            auth_flag: "--alertmanager-auth-file",
        }));
        Alertmanager { queue }
    }
}

impl Sink for Alertmanager {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !plan.alertmanager.is_empty() {
                self.queue
                    .put(ev.labels.clone(), AmMessage::new(&plan.alertmanager, ev));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            labels: [("pod", "api-7d9"), ("namespace", "shop")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            alertname: "HeadroomOOMRiskCritical",
            runbook_url: "https://docs.example/troubleshooting.md#oom-risk".into(),
        };
        let fire = AmAction::Fire {
            severity: Critical,
            starts_ms: 1_700_000_000_000,
        };
        let b = AmMessage::new(std::slice::from_ref(&fire), &ev).body();
        let a = &b[0];
        assert_eq!(a["labels"]["alertname"], "HeadroomOOMRiskCritical");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["pod"], "api-7d9");
        assert_eq!(a["labels"]["namespace"], "shop");
        assert!(a["labels"].get("container").is_none());
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["annotations"]["time_to_oom"], "1m 35s");
        assert_eq!(a["annotations"]["diagnosis"], "heap_leak");
        assert_eq!(
            a["annotations"]["runbook_url"],
            "https://docs.example/troubleshooting.md#oom-risk"
        );
        assert!(a["labels"].get("source").is_none(), "the rules' labels, no others");
        assert!(a.get("endsAt").is_none());
        let resolve = |starts_ms, ends_ms| AmAction::Resolve {
            severity: Critical,
            starts_ms,
            ends_ms,
        };
        let r = alertmanager_alert(&resolve(0, 1000), &ev);
        assert_eq!(r["endsAt"], "1970-01-01T00:00:01.000Z");
        // An end before the start is clamped to it.
        let r = alertmanager_alert(&resolve(5000, 1000), &ev);
        assert_eq!(
            (r["startsAt"].as_str(), r["endsAt"].as_str()),
            (Some("1970-01-01T00:00:05.000Z"), Some("1970-01-01T00:00:05.000Z"))
        );
    }

    #[test]
    fn a_pending_resolve_is_superseded_only_by_the_same_severity() {
        let ev = AlertEvent {
            time_ms: 0,
            risk: Critical,
            previous: Some(Warning),
            time_to_oom_seconds: None,
            limit_bytes: None,
            basis_bytes: None,
            reason: String::new(),
            causes: vec![],
            advice: vec![],
            labels: Default::default(),
            alertname: "HeadroomOOMRiskCritical",
            runbook_url: String::new(),
        };
        let severities = |m: &AmMessage| -> Vec<(String, bool)> {
            m.body()
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["labels"]["severity"].as_str().unwrap().to_owned(),
                        a.get("endsAt").is_some(),
                    )
                })
                .collect()
        };
        // Warning resolved and critical firing (an escalation) ...
        let mut m = AmMessage::new(
            &[
                AmAction::Resolve {
                    severity: Warning,
                    starts_ms: 0,
                    ends_ms: 10,
                },
                AmAction::Fire {
                    severity: Critical,
                    starts_ms: 10,
                },
            ],
            &ev,
        );
        // ... then, still undelivered, critical re-sent and then resolved.
        m.supersede(AmMessage::new(
            &[AmAction::Fire {
                severity: Critical,
                starts_ms: 10,
            }],
            &ev,
        ));
        assert_eq!(
            severities(&m),
            vec![("warning".into(), true), ("critical".into(), false)]
        );
        m.supersede(AmMessage::new(
            &[AmAction::Resolve {
                severity: Critical,
                starts_ms: 10,
                ends_ms: 20,
            }],
            &ev,
        ));
        assert_eq!(
            severities(&m),
            vec![("warning".into(), true), ("critical".into(), true)],
            "both resolves stay pending, one POST"
        );
    }
}
