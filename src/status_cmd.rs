//! `headroom status`: a running daemon's view, asked over HTTP with the
//! project's client: the sidecar's `/api/v1/status`, or a node agent's
//! `/api/v1/targets` (and one target's status with `--target`). Printed as
//! `check` prints its report (the verdict, the causes with their advice and
//! the limits to set are said by the same functions), or as the daemon's
//! JSON. Exit status: 0 ok, 1 warning, 2 critical, 3 the daemon could not be
//! reached, answered an error, or is not headroom (64 for bad flags, from
//! main).

use crate::analysis::recommend::Recommendation;
use crate::analysis::risk::Risk;
use crate::check::{self, VerdictInputs};
use crate::config::StatusArgs;
use crate::httpc::{HttpClient, HttpError};
use crate::parse::cgroup_files::Limit;
use crate::sample::LimitBasis;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Exit status when the daemon cannot be asked (as `check`'s unreadable).
pub const EXIT_UNREACHABLE: i32 = check::EXIT_UNREADABLE;

/// The whole exchange with the daemon, per request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer taken (a node agent's targets list with 500 targets
/// is well under 1 MiB).
const MAX_BODY: usize = 64 << 20;

/// Asks the daemon, prints its view and returns the exit status.
pub async fn run(args: StatusArgs) -> i32 {
    let client = HttpClient::new();
    match ask(&client, &args).await {
        Ok(Shown { text, code }) => {
            print!("{text}");
            code
        }
        Err(why) => {
            eprintln!("headroom status: {why}");
            EXIT_UNREACHABLE
        }
    }
}

/// What to print and the exit status.
#[derive(Debug)]
pub struct Shown {
    pub text: String,
    pub code: i32,
}

/// Asks the daemon what `args` want; `Err` says what went wrong and what
/// to do.
pub async fn ask(client: &HttpClient, args: &StatusArgs) -> Result<Shown, String> {
    let base = &args.url;
    if let Some(key) = &args.target {
        let url = format!("{base}/api/v1/targets/{}/status", key.path());
        let body = match client.get(&url, TIMEOUT, MAX_BODY).await {
            Ok(b) => b,
            Err(HttpError::Status { status: 404, body, .. }) if is_headroom_404(&body) => {
                return Err(format!(
                    "{url}: HTTP 404: {}; `headroom status{}` lists the watched targets",
                    body.trim(),
                    url_flag(args)
                ));
            }
            Err(e) => return Err(explain(&e, args)),
        };
        return show_status(&body, &url, args, Some(&key.to_string()));
    }
    let url = format!("{base}/api/v1/status");
    match client.get(&url, TIMEOUT, MAX_BODY).await {
        Ok(body) => show_status(&body, &url, args, None),
        // Node mode: no single target; the list is at /api/v1/targets.
        Err(HttpError::Status { status: 404, .. }) => {
            let url = format!("{base}/api/v1/targets");
            match client.get(&url, TIMEOUT, MAX_BODY).await {
                Ok(body) => show_targets(&body, &url, args),
                Err(e) => Err(explain(&e, args)),
            }
        }
        Err(e) => Err(explain(&e, args)),
    }
}

/// A 404 of headroom's own: it names /api/v1/targets.
fn is_headroom_404(body: &str) -> bool {
    body.contains("/api/v1/targets")
}

/// ` --url URL` when the URL was given, to repeat in a hint.
fn url_flag(args: &StatusArgs) -> String {
    if args.url_from == "--url" {
        format!(" --url {}", args.url)
    } else {
        String::new()
    }
}

/// What went wrong, and what to do about it.
fn explain(e: &HttpError, args: &StatusArgs) -> String {
    let whence = format!("{} ({})", args.url, args.url_from);
    let retry = "give the daemon's address with --url http://HOST:PORT";
    match e {
        HttpError::Connect { reason, .. } => format!(
            "cannot reach headroom at {whence}: {reason}.\n  Is the daemon running (`headroom run`, `headroom node`, \
             or the sidecar: `kubectl exec POD -c headroom -- headroom status`), and listening on this port? If it \
             listens elsewhere, {retry}."
        ),
        HttpError::Timeout { url, after } => format!(
            "{url}: no complete answer within {}: is this headroom's port? If headroom listens elsewhere, {retry}.",
            humantime::format_duration(*after)
        ),
        HttpError::Status { url, status, body } => {
            let body = body.trim();
            let body: String = body.chars().take(200).collect();
            format!(
                "{url} answered HTTP {status}{}{body}: is this headroom's port ({whence})? If headroom listens elsewhere, {retry}.",
                if body.is_empty() { "" } else { ": " }
            )
        }
        HttpError::TooLarge { url, limit } => format!(
            "{url}: the answer is larger than {limit} bytes, which headroom's never is: is this headroom's port ({whence})?"
        ),
        other => format!("{other} ({whence}); {retry}."),
    }
}

/// The answer parsed, or the error that says it is not headroom's.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], url: &str, args: &StatusArgs, what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "{url} answers, but not with headroom's {what} ({e}): is this headroom's port ({})? If headroom listens \
             elsewhere, give its address with --url http://HOST:PORT.",
            args.url_from
        )
    })
}

fn show_status(body: &[u8], url: &str, args: &StatusArgs, key: Option<&str>) -> Result<Shown, String> {
    let status: StatusView = parse(body, url, args, "status JSON")?;
    let code = status.exit_code();
    let text = if args.json {
        json_text(body)
    } else {
        render_status(&status, &args.url, key, now_ms())
    };
    Ok(Shown { text, code })
}

fn show_targets(body: &[u8], url: &str, args: &StatusArgs) -> Result<Shown, String> {
    let list: TargetsView = parse(body, url, args, "targets list")?;
    let code = list.exit_code();
    let text = if args.json {
        json_text(body)
    } else {
        render_targets(&list, &args.url)
    };
    Ok(Shown { text, code })
}

/// The daemon's JSON as it sent it, ending with a newline.
fn json_text(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The parts of `/api/v1/status` the table shows (docs/api.md). Fields the
/// daemon does not send are their defaults; `memory` and `sources` must be
/// there (they tell headroom's answer from another's).
#[derive(Debug, Deserialize)]
pub struct StatusView {
    #[serde(default)]
    pub time_ms: u64,
    #[serde(default)]
    pub poll_finished_ms: Option<u64>,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub limit_basis: Option<LimitBasis>,
    #[serde(default)]
    pub target: TargetView,
    pub memory: MemoryView,
    #[serde(default)]
    pub go: Option<GoView>,
    #[serde(default)]
    pub misconfigurations: Vec<MisconfigurationView>,
    #[serde(default)]
    pub analysis: Option<AnalysisView>,
    #[serde(default)]
    pub profiles: Vec<ProfileView>,
    pub sources: BTreeMap<String, SourceView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TargetView {
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub cgroup: Option<String>,
    pub cgroup_version: Option<String>,
    pub access: Option<String>,
    pub container: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemoryView {
    pub usage: Option<u64>,
    pub limit: Option<Limit>,
    pub limit_source: Option<String>,
    pub high: Option<Limit>,
    pub working_set: Option<u64>,
    pub unreclaimable: Option<u64>,
    pub rss: Option<u64>,
    pub lazy_free: Option<u64>,
    pub oom_kills_total: u64,
    pub oom_kills_inferred: u64,
    pub oom_kills_before_start: Option<u64>,
    pub last_oom_kill: Option<OomKillView>,
    pub exits_total: BTreeMap<String, u64>,
    pub last_exit: Option<ExitView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OomKillView {
    pub time_ms: u64,
    pub how: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub child: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExitView {
    pub time_ms: u64,
    pub reason: String,
    pub pid: Option<u32>,
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoView {
    pub heap_live: Option<u64>,
    pub heap_live_method: Option<String>,
    pub gomemlimit_binds: Option<bool>,
    pub gc_cpu_fraction: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MisconfigurationView {
    pub check: String,
    pub evidence: String,
    pub fix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AnalysisView {
    pub warming_up: bool,
    pub history_s: f64,
    pub basis: Option<u64>,
    pub time_to_oom_s: Option<f64>,
    pub prediction: String,
    pub risk: Risk,
    pub risk_reason: String,
    pub findings: Vec<FindingView>,
    pub recommendation: Option<Recommendation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FindingView {
    pub cause: String,
    pub evidence: String,
    pub advice: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProfileView {
    pub kind: String,
    pub path: String,
    pub risk: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SourceView {
    pub up: Option<bool>,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

impl StatusView {
    /// 0, 1, 2 by the daemon's risk; 3 when the memory cannot be read.
    pub fn exit_code(&self) -> i32 {
        match &self.analysis {
            Some(a) if self.memory.usage.is_some() || a.basis.is_some() => a.risk as i32,
            _ => EXIT_UNREACHABLE,
        }
    }
}

/// The daemon's view as a table: what is watched, the memory against the
/// limit, the OOM kills and exits, then the verdict, the time to OOM, the
/// causes with their advice and the limits to set.
pub fn render_status(s: &StatusView, url: &str, key: Option<&str>, now_ms: u64) -> String {
    let mut out = String::new();
    let m = &s.memory;
    let t = &s.target;
    let polled = s.poll_finished_ms.unwrap_or(s.time_ms);
    let age = if polled == 0 {
        "no poll has finished yet".to_owned()
    } else {
        format!("last poll {:.1} s ago", now_ms.saturating_sub(polled) as f64 / 1000.0)
    };
    let _ = writeln!(out, "headroom {url}  {age}");
    let _ = writeln!(
        out,
        "target   {}pid {}{}  cgroup {} ({})",
        key.map(|k| format!("{k}  ")).unwrap_or_default(),
        t.pid.map_or("–".into(), |p| p.to_string()),
        t.process.as_deref().map(|p| format!(" ({p})")).unwrap_or_default(),
        t.cgroup.as_deref().unwrap_or("–"),
        t.cgroup_version.as_deref().unwrap_or("?"),
    );
    let basis_name = s.limit_basis.map_or("–", |b| b.as_str());
    let mut rows: Vec<(String, String)> = vec![
        (
            format!("limit ({})", m.limit_source.as_deref().unwrap_or("–")),
            check::limit_text(m.limit),
        ),
        ("killer measures".into(), basis_name.to_owned()),
        ("usage".into(), check::mib(m.usage)),
        ("working set".into(), check::mib(m.working_set)),
        ("unreclaimable".into(), check::mib(m.unreclaimable)),
        ("RSS (VmRSS)".into(), check::mib(m.rss)),
        ("LazyFree".into(), check::mib(m.lazy_free)),
    ];
    if let Some(go) = &s.go {
        let est = match go.heap_live_method.as_deref() {
            Some("exact") | None => "",
            Some(_) => " (est.)",
        };
        rows.push(("Go live heap".into(), format!("{}{est}", check::mib(go.heap_live))));
        if let Some(f) = go.gc_cpu_fraction {
            rows.push(("GC CPU share".into(), format!("{:.0} %", 100.0 * f)));
        }
    }
    rows.push((
        "OOM kills".into(),
        check::oom_kills_text(m.oom_kills_total, m.oom_kills_before_start),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v:>12}");
    }
    if let Some(k) = &m.last_oom_kill {
        let _ = writeln!(out, "  last OOM kill: {}", kill_text(k, m.oom_kills_inferred, now_ms));
    }
    if !m.exits_total.is_empty() {
        let exits: Vec<String> = m.exits_total.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let last = m
            .last_exit
            .as_ref()
            .map(|e| format!("; last: {}", exit_text(e, now_ms)));
        let _ = writeln!(out, "  exits: {}{}", exits.join(", "), last.unwrap_or_default());
    }
    for (name, src) in &s.sources {
        if let (Some(false), Some(e)) = (src.up, &src.last_error) {
            let _ = writeln!(out, "  source {name} down: {e}");
        }
    }
    let Some(a) = &s.analysis else {
        let _ = writeln!(out, "verdict  none yet: the daemon has not finished a poll");
        return out;
    };
    let verdict = check::verdict(&VerdictInputs {
        basis_name,
        basis: a.basis,
        limit: m.limit,
        usage: m.usage,
        high: m.high,
        risk: a.risk,
        time_to_oom_s: a.time_to_oom_s,
        warming_up: a.warming_up,
        warming_up_hint: "still warming up (too little history to tell whether it grows)",
    });
    out.push_str(&check::verdict_line(a.risk, &verdict));
    let _ = match a.time_to_oom_s {
        Some(t) => writeln!(out, "oom in   {}: {}", check::duration_text(t), a.prediction),
        None => writeln!(out, "oom in   none predicted: {}", a.prediction),
    };
    let _ = writeln!(out, "why      {}", a.risk_reason);
    out.push_str(&check::causes_text(
        a.findings
            .iter()
            .map(|f| [f.cause.as_str(), f.evidence.as_str(), f.advice.as_str()]),
        s.misconfigurations
            .iter()
            .map(|c| [c.check.as_str(), c.evidence.as_str(), c.fix.as_str()]),
    ));
    for p in &s.profiles {
        let _ = writeln!(
            out,
            "profile  {} ({}, at {}): {url}/profiles/{}",
            p.kind,
            p.path,
            p.risk,
            file_name(&p.path)
        );
    }
    match &a.recommendation {
        Some(r) => out.push_str(&check::recommendation_text(Some(r))),
        None => {
            let _ = writeln!(
                out,
                "set      not yet: a recommendation needs {:.0} s of history ({:.0} s so far)",
                crate::analysis::recommend::MIN_HISTORY_S,
                a.history_s
            );
        }
    }
    out
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    check::duration_text(now_ms.saturating_sub(then_ms) as f64 / 1000.0) + " ago"
}

fn kill_text(k: &OomKillView, inferred: u64, now_ms: u64) -> String {
    let who = match (k.pid, &k.comm) {
        (Some(p), Some(c)) => format!("pid {p} ({c})"),
        (Some(p), None) => format!("pid {p}"),
        (None, Some(c)) => c.clone(),
        (None, None) => "a process".into(),
    };
    let how = match k.how.as_str() {
        "cgroup" => "read from the cgroup",
        "inferred" => "inferred: the cgroup was gone before it could be read",
        other => other,
    };
    let child = if k.child { ", another process of the cgroup" } else { "" };
    let inferred = if inferred > 0 {
        format!(" ({inferred} of the kills inferred)")
    } else {
        String::new()
    };
    format!("{} {who}{child}, {how}{inferred}", ago(now_ms, k.time_ms))
}

fn exit_text(e: &ExitView, now_ms: u64) -> String {
    let detail = match (e.code, e.signal) {
        (Some(c), _) => format!(" with code {c}"),
        (None, Some(s)) => format!(" by signal {s}"),
        _ => String::new(),
    };
    let pid = e.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
    format!("{}{pid}{detail}, {}", e.reason, ago(now_ms, e.time_ms))
}

/// `/api/v1/targets` (docs/api.md), the parts the table shows.
#[derive(Debug, Deserialize)]
pub struct TargetsView {
    #[serde(default)]
    pub names: Option<NamesView>,
    pub targets: Vec<TargetRow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NamesView {
    pub source: String,
    pub runtime: Option<String>,
    pub problem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TargetRow {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub state: String,
    pub risk: Option<Risk>,
    pub time_to_oom_seconds: Option<f64>,
    pub causes: Vec<String>,
    pub usage_bytes: Option<u64>,
    /// Bytes, or `"max"` when unlimited.
    pub limit_bytes: Option<serde_json::Value>,
    pub go: Option<String>,
}

impl TargetsView {
    /// The highest risk of the targets still there: a `gone` container
    /// stays listed for a window with the risk it had.
    pub fn exit_code(&self) -> i32 {
        self.targets
            .iter()
            .filter(|t| t.state != "gone")
            .filter_map(|t| t.risk)
            .max()
            .map_or(0, |r| r as i32)
    }
}

/// A node agent's targets, most at risk first (the daemon's order).
pub fn render_targets(list: &TargetsView, url: &str) -> String {
    let mut out = String::new();
    let names = match &list.names {
        Some(n) if n.source == "cri" => format!(
            ", named by the CRI{}",
            n.runtime.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        Some(n) => format!(
            ", named from the cgroup tree{}",
            n.problem.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        None => String::new(),
    };
    let n = list.targets.len();
    let _ = writeln!(
        out,
        "headroom {url}: {n} target{}{names}",
        if n == 1 { "" } else { "s" }
    );
    if n == 0 {
        return out;
    }
    let header = [
        "RISK",
        "TIME TO OOM",
        "USAGE",
        "LIMIT",
        "USED",
        "STATE",
        "TARGET",
        "CAUSES",
    ];
    let rows: Vec<[String; 8]> = list
        .targets
        .iter()
        .map(|t| {
            let limit = match &t.limit_bytes {
                Some(serde_json::Value::Number(b)) => b.as_u64().map(Limit::Bytes),
                Some(serde_json::Value::String(s)) if s == "max" => Some(Limit::Unlimited),
                _ => None,
            };
            let used = match (t.usage_bytes, limit) {
                (Some(u), Some(Limit::Bytes(l))) if l > 0 => format!("{:.0} %", 100.0 * u as f64 / l as f64),
                _ => "–".into(),
            };
            let key = crate::key::TargetKey::new(&*t.namespace, &*t.pod, &*t.container);
            [
                t.risk.map_or("–".into(), |r| r.as_str().to_owned()),
                t.time_to_oom_seconds.map_or("–".into(), check::duration_text),
                check::mib(t.usage_bytes),
                check::limit_text(limit),
                used,
                t.state.clone(),
                key.path(),
                if t.causes.is_empty() {
                    "–".into()
                } else {
                    t.causes.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let pad = w - c.chars().count();
                // Numbers to the right, words to the left.
                if (1..=4).contains(&i) {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                } else {
                    l.push_str(c);
                    l.push_str(&" ".repeat(pad));
                }
                l.push_str("  ");
            }
        }
        l.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&header));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }
    let _ = writeln!(
        out,
        "one target's report: headroom status --url {url} --target NAMESPACE/POD/CONTAINER"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> StatusView {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_table_says_the_verdict_the_time_to_oom_causes_kills_and_limits() {
        let s = status(serde_json::json!({
            "time_ms": 1_000_000, "poll_finished_ms": 1_000_000, "ready": true,
            "limit_basis": "unreclaimable",
            "target": {"pid": 41, "cgroup": "/kubepods/pod1/ctr", "cgroup_version": "v2"},
            "memory": {"usage": 300u64 << 20, "limit": {"bytes": 400u64 << 20}, "limit_source": "cgroup",
                       "unreclaimable": 350u64 << 20, "oom_kills_total": 2, "oom_kills_inferred": 1,
                       "oom_kills_before_start": 1,
                       "last_oom_kill": {"time_ms": 940_000, "how": "inferred", "pid": 40, "comm": "app"},
                       "exits_total": {"oom_kill": 2}, "last_exit": {"time_ms": 940_000, "reason": "oom_kill", "pid": 40, "signal": 9}},
            "misconfigurations": [{"check": "no_memory_limit", "evidence": "none", "fix": "set one"}],
            "analysis": {"warming_up": false, "basis": 350u64 << 20, "time_to_oom_s": 412.5,
                         "prediction": "linear fit", "risk": "warning", "risk_reason": "OOM within 30m",
                         "findings": [{"cause": "heap_leak", "evidence": "live heap +1 MiB/s", "advice": "take a profile"}],
                         "recommendation": null},
            "sources": {"cgroup": {"up": true, "errors_total": 0}, "go": {"up": false, "errors_total": 3, "last_error": "refused"}}
        }));
        assert_eq!(s.exit_code(), 1);
        let text = render_status(&s, "http://127.0.0.1:9184", None, 1_060_000);
        for needle in [
            "headroom http://127.0.0.1:9184  last poll 60.0 s ago",
            "target   pid 41  cgroup /kubepods/pod1/ctr (v2)",
            "limit (cgroup)",
            "400.0 MiB",
            "OOM kills",
            "2 (and 1 before headroom started)",
            "last OOM kill: 2m ago pid 40 (app), inferred",
            "exits: oom_kill 2; last: oom_kill pid 40 by signal 9, 2m ago",
            "source go down: refused",
            "verdict  Warning: unreclaimable is at 87.5 % of the limit, OOM kill predicted in 6m 52s: at risk\noom in   6m 52s: linear fit\nwhy      OOM within 30m\n",
            "cause    heap_leak: live heap +1 MiB/s\nadvice   take a profile\n",
            "misconf  no_memory_limit: none\nfix      set one\n",
            "set      not yet",
        ] {
            assert!(text.contains(needle), "missing {needle:?}:\n{text}");
        }
    }

    #[test]
    fn not_headroom_and_unreadable() {
        assert!(serde_json::from_str::<StatusView>(r#"{"status": "ok"}"#).is_err());
        let s = status(serde_json::json!({"memory": {}, "sources": {}, "analysis": null}));
        assert_eq!(s.exit_code(), EXIT_UNREACHABLE);
        assert!(render_status(&s, "u", None, 0).contains("no poll has finished yet"));
    }

    #[test]
    fn the_targets_table_most_at_risk_first_with_the_key_to_ask_for() {
        let list: TargetsView = serde_json::from_value(serde_json::json!({
            "names": {"source": "cgroup", "problem": "--cri-socket none"},
            "targets": [
                {"namespace": "shop", "pod": "cart-1", "container": "app", "state": "watched", "risk": "critical",
                 "time_to_oom_seconds": 90.0, "causes": ["heap_leak"], "usage_bytes": 150u64 << 20, "limit_bytes": 160u64 << 20},
                {"namespace": "", "pod": "0f1e", "container": "3b1f9d7c5a2e", "state": "watched", "risk": "ok",
                 "time_to_oom_seconds": null, "causes": [], "usage_bytes": 10u64 << 20, "limit_bytes": "max"}
            ]
        }))
        .unwrap();
        assert_eq!(list.exit_code(), 2);
        let text = render_targets(&list, "http://h:9184");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("2 targets, named from the cgroup tree (--cri-socket none)"),
            "{text}"
        );
        assert!(lines[1].starts_with("RISK") && lines[1].ends_with("CAUSES"), "{text}");
        assert!(
            lines[2].starts_with("critical") && lines[2].contains("1m 30s"),
            "{text}"
        );
        assert!(
            lines[2].contains("94 %") && lines[2].contains("  shop/cart-1/app  "),
            "{text}"
        );
        assert!(lines[2].ends_with("  heap_leak"), "{text}");
        assert!(
            lines[3].contains("unlimited") && lines[3].contains("_/0f1e/3b1f9d7c5a2e"),
            "{text}"
        );
        // A container gone since, with the risk it had, does not count.
        let mut list = list;
        list.targets[0].state = "gone".into();
        assert_eq!(list.exit_code(), 0);
    }
}
