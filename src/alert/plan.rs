//! The pure part of alerting: given the risk of each poll and its time, what
//! to send — Alertmanager messages, webhook posts (every risk change) and
//! profile captures (every rise). No I/O, no clock: time comes in.

use crate::analysis::predict::Analysis;
use crate::analysis::risk::Risk;
use serde::Serialize;
use std::collections::BTreeMap;

/// Alertmanager forgets an alert not re-sent within its resolve_timeout
/// (5 m by default): a firing alert is re-sent this often.
pub const RESEND_EVERY_MS: u64 = 60_000;

/// What to tell Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmAction {
    /// (Re-)send a firing alert of this severity, started at `starts_ms`.
    Fire { severity: Risk, starts_ms: u64 },
    /// Resolve the alert of this severity, ended at `ends_ms` (never
    /// before `starts_ms`: see [`ends_at`]).
    Resolve {
        severity: Risk,
        starts_ms: u64,
        ends_ms: u64,
    },
}

/// Decides, poll by poll, the Alertmanager messages, the webhook posts
/// (every risk change) and the profile captures (every rise).
#[derive(Debug, Default, Clone)]
pub struct AlertPlan {
    last: Risk,
    /// The firing severity and its start (wall ms, and monotonic ms).
    firing: Option<(Risk, u64, u64)>,
    /// When it was last sent (monotonic ms).
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

/// The time of a poll, twice: a monotonic clock paces re-sends (a wall-clock
/// step neither floods nor silences Alertmanager); the wall clock stamps
/// what the alerts say (`startsAt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollTime {
    pub mono_ms: u64,
    pub wall_ms: u64,
}

impl AlertPlan {
    pub fn step(&mut self, risk: Risk, now: PollTime) -> Plan {
        let mut plan = Plan::default();
        if risk != self.last {
            plan.changed_from = Some(self.last);
            plan.capture_profile = risk > self.last;
            self.last = risk;
        }
        match (self.firing, risk) {
            (None, Risk::Ok) => {}
            (Some((sev, starts, starts_mono)), Risk::Ok) => {
                plan.alertmanager.push(AmAction::Resolve {
                    severity: sev,
                    starts_ms: starts,
                    ends_ms: ends_at(starts, starts_mono, now),
                });
                self.firing = None;
            }
            (Some((sev, starts, _)), r) if sev == r => {
                if now.mono_ms.saturating_sub(self.last_sent_ms) >= RESEND_EVERY_MS {
                    plan.alertmanager.push(AmAction::Fire {
                        severity: sev,
                        starts_ms: starts,
                    });
                    self.last_sent_ms = now.mono_ms;
                }
            }
            (prev, r) => {
                if let Some((sev, starts, starts_mono)) = prev {
                    plan.alertmanager.push(AmAction::Resolve {
                        severity: sev,
                        starts_ms: starts,
                        ends_ms: ends_at(starts, starts_mono, now),
                    });
                }
                plan.alertmanager.push(AmAction::Fire {
                    severity: r,
                    starts_ms: now.wall_ms,
                });
                self.firing = Some((r, now.wall_ms, now.mono_ms));
                self.last_sent_ms = now.mono_ms;
            }
        }
        plan
    }
}

/// When an alert that started at wall time `starts_ms` (monotonic
/// `starts_mono_ms`) ends at `now`: the wall clock, but never before the
/// start (Alertmanager refuses an alert that ends before it starts) and
/// never later than the start plus the monotonic time since (a wall clock
/// stepped forward would put the end in the future, and Alertmanager would
/// keep the alert active until then).
pub fn ends_at(starts_ms: u64, starts_mono_ms: u64, now: PollTime) -> u64 {
    let lasted = now.mono_ms.saturating_sub(starts_mono_ms);
    now.wall_ms.min(starts_ms.saturating_add(lasted)).max(starts_ms)
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
    /// The shipped rule's name for this risk (`HeadroomOOMRiskWarning`,
    /// `HeadroomOOMRiskCritical`); for a fall back to ok, the name of the
    /// risk that ended.
    pub alertname: &'static str,
    /// The runbook's section, absolute (`--runbook-base-url`).
    pub runbook_url: String,
}

/// The shipped rules' alert for a risk (warning for `Ok`, which fires none).
pub fn alert_name(risk: Risk) -> &'static str {
    match risk {
        Risk::Critical => "HeadroomOOMRiskCritical",
        Risk::Warning | Risk::Ok => "HeadroomOOMRiskWarning",
    }
}

/// The runbook's section on OOM risk, under `--runbook-base-url`.
pub const RUNBOOK_SECTION: &str = "troubleshooting.md#oom-risk";

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
            alertname: alert_name(match (a.risk, previous) {
                (Risk::Ok, Some(p)) => p,
                (r, _) => r,
            }),
            runbook_url: String::new(),
        }
    }

    /// The same event with its runbook link under `base` (ending in `/`).
    pub fn with_runbook(mut self, base: &str) -> AlertEvent {
        self.runbook_url = format!("{base}{RUNBOOK_SECTION}");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Risk::*;

    fn at(ms: u64) -> PollTime {
        PollTime {
            mono_ms: ms,
            wall_ms: ms,
        }
    }

    #[test]
    fn plan_start_escalate_resend_resolve() {
        let mut p = AlertPlan::default();
        assert_eq!(p.step(Ok, at(0)), Plan::default());
        let s = p.step(Warning, at(1000));
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Fire {
                severity: Warning,
                starts_ms: 1000
            }]
        );
        assert_eq!((s.changed_from, s.capture_profile), (Some(Ok), true));
        assert!(
            p.step(Warning, at(2000)).alertmanager.is_empty(),
            "not re-sent every poll"
        );
        let s = p.step(Warning, at(1000 + RESEND_EVERY_MS));
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Fire {
                severity: Warning,
                starts_ms: 1000
            }]
        );
        assert_eq!(s.changed_from, None);
        let s = p.step(Critical, at(70_000));
        assert_eq!(
            s.alertmanager,
            vec![
                AmAction::Resolve {
                    severity: Warning,
                    starts_ms: 1000,
                    ends_ms: 70_000
                },
                AmAction::Fire {
                    severity: Critical,
                    starts_ms: 70_000
                }
            ]
        );
        assert!(s.capture_profile);
        let s = p.step(Warning, at(80_000));
        assert!(!s.capture_profile, "a fall captures nothing");
        assert_eq!(s.changed_from, Some(Critical));
        let s = p.step(Ok, at(90_000));
        assert_eq!(
            s.alertmanager,
            vec![AmAction::Resolve {
                severity: Warning,
                starts_ms: 80_000,
                ends_ms: 90_000
            }]
        );
    }

    #[test]
    fn a_wall_clock_step_neither_floods_nor_silences() {
        let mut p = AlertPlan::default();
        let fire = p.step(
            Warning,
            PollTime {
                mono_ms: 0,
                wall_ms: 10_000_000,
            },
        );
        assert_eq!(
            fire.alertmanager,
            vec![AmAction::Fire {
                severity: Warning,
                starts_ms: 10_000_000
            }]
        );
        // The wall clock jumps back an hour: still re-sent on time.
        let s = p.step(
            Warning,
            PollTime {
                mono_ms: RESEND_EVERY_MS,
                wall_ms: 10_000_000 - 3_600_000,
            },
        );
        assert_eq!(s.alertmanager.len(), 1, "re-sent after a minute of monotonic time");
        // It jumps forward a day: not re-sent before a minute has passed.
        let s = p.step(
            Warning,
            PollTime {
                mono_ms: RESEND_EVERY_MS + 1000,
                wall_ms: 90_000_000_000,
            },
        );
        assert!(s.alertmanager.is_empty(), "{s:?}");
    }

    #[test]
    fn a_resolve_never_ends_before_it_starts_nor_in_the_future() {
        let fire = PollTime {
            mono_ms: 5_000,
            wall_ms: 10_000_000,
        };
        let cases = [
            // (wall, mono) at the resolve → endsAt
            ((10_060_000, 65_000), 10_060_000),             // clocks agree
            ((10_000_000 - 3_600_000, 65_000), 10_000_000), // wall stepped back an hour: clamped to the start
            ((10_000_000 - 1, 5_000), 10_000_000),          // back a millisecond
            ((90_000_000_000, 65_000), 10_060_000),         // forward a day: the start plus a minute
            ((10_030_000, 65_000), 10_030_000),             // forward less than elapsed: the wall clock
            ((10_060_000, 0), 10_000_000),                  // a monotonic clock behind the start
        ];
        for ((wall_ms, mono_ms), ends) in cases {
            let now = PollTime { mono_ms, wall_ms };
            assert_eq!(ends_at(fire.wall_ms, fire.mono_ms, now), ends, "{now:?}");
            let mut p = AlertPlan::default();
            p.step(Critical, fire);
            let s = p.step(Ok, now);
            assert_eq!(
                s.alertmanager,
                vec![AmAction::Resolve {
                    severity: Critical,
                    starts_ms: 10_000_000,
                    ends_ms: ends
                }],
                "{now:?}"
            );
        }
        assert_eq!(ends_at(u64::MAX - 1, 0, at(u64::MAX)), u64::MAX, "no overflow");
    }
}
