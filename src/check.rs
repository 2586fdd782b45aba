//! `headroom check`: one report to stdout, for an engineer with a shell in
//! the pod. Exit status: 0 no risk, 1 warning, 2 critical, 3 the target or
//! its cgroup could not be read (64 for bad flags, from main).

use crate::analysis::diagnosis::Finding;
use crate::analysis::risk::Risk;
use crate::collector::health::Source;
use crate::config::{Config, TargetConfig};
use crate::key::TargetKey;
use crate::monitor::Monitor;
use crate::parse::cgroup_files::Limit;
use crate::status::Status;
use crate::targets::runner::{self, Common};
use crate::targets::slot::Slot;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const EXIT_UNREADABLE: i32 = 3;

#[derive(Debug, Serialize)]
pub struct Report {
    pub risk: Risk,
    pub verdict: String,
    /// Growth of the limit-basis value over `--for`, bytes per second.
    pub basis_growth_bytes_per_second: Option<f64>,
    pub sampled_seconds: f64,
    pub findings: Vec<Finding>,
    pub status: Status,
}

fn mib(v: Option<u64>) -> String {
    v.map_or("–".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

fn limit_text(l: Option<Limit>) -> String {
    match l {
        None => "–".into(),
        Some(Limit::Unlimited) => "unlimited".into(),
        Some(Limit::Bytes(b)) => mib(Some(b)),
    }
}

/// Builds the report from the first and the last poll. The risk is the
/// level the thresholds give on the last poll (a one-shot report has no
/// history for hysteresis); trend-based calls need `--for` of at least the
/// analysis' start-up grace (30 s).
pub fn build_report(first: &Status, last: Status, seconds: f64) -> Report {
    let basis = last.basis_value();
    let analysis = last.analysis.clone().unwrap_or_default();
    let risk = analysis.risk_now;
    let growth = match (first.basis_value(), basis) {
        (Some(a), Some(b)) if seconds > 0.0 => Some((b as f64 - a as f64) / seconds),
        _ => None,
    };
    let basis_name = last.limit_basis.map_or("basis", |b| b.as_str());
    let mut verdict = match (basis, last.memory.limit) {
        (None, _) => "could not read the target's memory: see the sources below".to_owned(),
        (Some(_), Some(Limit::Unlimited)) | (Some(_), None) => {
            "no memory limit is set on the cgroup's path: nothing to run out of but the node".to_owned()
        }
        (Some(b), Some(Limit::Bytes(l))) => {
            let pct = 100.0 * b as f64 / l.max(1) as f64;
            let when = match analysis.time_to_oom_s {
                Some(t) => format!(
                    "OOM kill predicted in {}",
                    humantime::format_duration(Duration::from_secs(t as u64))
                ),
                None if analysis.warming_up => "sample longer (--for 60s) to see whether it grows".to_owned(),
                None => "not growing toward the limit".to_owned(),
            };
            let level = match risk {
                Risk::Ok => "no immediate risk",
                Risk::Warning => "at risk",
                Risk::Critical => "an OOM kill is close",
            };
            format!("{basis_name} is at {pct:.1} % of the limit, {when}: {level}")
        }
    };
    if let (Some(Limit::Bytes(h)), Some(u)) = (last.memory.high, last.memory.usage) {
        if u >= h {
            verdict.push_str(&format!(
                "; usage is above memory.high ({}), so the kernel is throttling and reclaiming",
                mib(Some(h))
            ));
        }
    }
    Report {
        risk,
        verdict,
        basis_growth_bytes_per_second: growth,
        sampled_seconds: seconds,
        findings: analysis.findings,
        status: last,
    }
}

pub fn render_table(r: &Report) -> String {
    let s = &r.status;
    let m = &s.memory;
    let mut out = String::new();
    let t = &s.target;
    let _ = writeln!(
        out,
        "target   pid {}  cgroup {} ({})",
        t.pid.map_or("–".into(), |p| p.to_string()),
        t.cgroup.as_deref().unwrap_or("–"),
        t.cgroup_version.map_or("?".into(), |v| format!("{v:?}").to_lowercase()),
    );
    let basis = s.limit_basis.map_or("–", |b| b.as_str());
    let rows: Vec<(String, String)> = vec![
        (
            format!("limit ({})", m.limit_source.map_or("–", |s| s.as_str())),
            limit_text(m.limit),
        ),
        ("killer measures".into(), basis.to_owned()),
        ("usage".into(), mib(m.usage)),
        ("working set".into(), mib(m.working_set)),
        ("unreclaimable".into(), mib(m.unreclaimable)),
        ("anon".into(), mib(m.anon)),
        ("file (page cache)".into(), mib(m.file)),
        ("RSS (VmRSS)".into(), mib(m.rss)),
        ("LazyFree".into(), mib(m.lazy_free)),
        ("kernel memory".into(), mib(s.breakdown.kernel_total)),
        ("OOM kills".into(), oom_kills_text(m)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v:>12}");
    }
    if let Some(go) = &s.go {
        let g = &go.sample;
        let b = &s.breakdown;
        let live = format!(
            "{}{}",
            mib(go.heap_live),
            match go.heap_live_method {
                Some(crate::sample::LiveMethod::Exact) | None => "",
                Some(_) => " (est.)",
            }
        );
        let mut go_rows: Vec<(&str, String)> = vec![
            ("Go heap alloc", mib(g.heap_alloc)),
            ("Go heap inuse", mib(g.heap_inuse)),
            ("Go heap idle", mib(g.heap_idle)),
            ("Go heap released", mib(g.heap_released)),
            ("Go sys", mib(g.sys)),
            ("Go next GC", mib(g.next_gc)),
            ("Go live heap", live),
            ("fragmentation bound", mib(b.fragmentation_bound)),
            ("reclaimable unreleased", mib(b.reclaimable_unreleased)),
        ];
        if let Some(m) = go.gomemlimit() {
            let binds = if go.gomemlimit_binds == Some(true) {
                " (binds)"
            } else {
                ""
            };
            go_rows.push(("GOMEMLIMIT", format!("{}{binds}", mib(Some(m)))));
        }
        let w = width.max(go_rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0));
        for (k, v) in go_rows {
            let _ = writeln!(out, "  {k:<w$}  {v:>12}");
        }
    }
    if let Some(g) = r.basis_growth_bytes_per_second {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>12}",
            "growth",
            format!("{:+.1} KiB/s", g / 1024.0)
        );
    }
    for (name, src) in &s.sources {
        if let (Some(false), Some(e)) = (src.up, &src.last_error) {
            let _ = writeln!(out, "  source {} down: {e}", name.as_str());
        }
    }
    let _ = writeln!(out, "verdict  {:?}: {}", r.risk, r.verdict);
    for f in &r.findings {
        let _ = writeln!(out, "cause    {}: {}", f.cause.as_str(), f.evidence);
        let _ = writeln!(out, "advice   {}", f.advice);
    }
    for m in &s.misconfigurations {
        let _ = writeln!(out, "misconf  {}: {}", m.check.as_str(), m.evidence);
        let _ = writeln!(out, "fix      {}", m.fix);
    }
    out
}

/// Runs the check and returns the exit status. The target is watched by
/// the same per-target unit the daemon runs (its poller thread and Go
/// scrape schedule), for `sample_for`; the report compares its first and
/// last published polls.
pub async fn run(cfg: Config, sample_for: Duration, json: bool) -> i32 {
    let (first, last, seconds) = match watch_for(cfg.target_config(), sample_for).await {
        Ok(polls) => polls,
        Err(e) => {
            eprintln!("headroom check: {e:#}");
            return EXIT_UNREADABLE;
        }
    };
    let readable = last.memory.usage.is_some();
    let report = build_report(&first, last, seconds);
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        print!("{}", render_table(&report));
    }
    if readable {
        report.risk as i32
    } else {
        EXIT_UNREADABLE
    }
}

/// Watches the target with a per-target unit: returns its first poll that
/// has the Go runtime's answer (when a Go URL is set; at most one Go
/// timeout later), the first poll at least `sample_for` after it, and the
/// seconds between them.
async fn watch_for(target: TargetConfig, sample_for: Duration) -> anyhow::Result<(Status, Status, f64)> {
    let wants_go = target.go_url.is_some();
    let go_wait = target.go_interval.max(Duration::from_secs(5)) + target.interval;
    let monitor = Monitor::new(target.clone());
    let slot = Arc::new(Slot::new(
        TargetKey::sidecar(target.container.as_deref(), |k| std::env::var(k).ok()),
        Default::default(),
        None,
        Default::default(),
    ));
    let common = Common {
        histogram: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("check_poll", "unused"))?,
        alerts: None,
        profiles: None,
        runtime: tokio::runtime::Handle::current(),
    };
    let run = runner::start(target, monitor, slot.clone(), &common)?;
    let started = Instant::now();
    // The first poll, then (with a Go URL) the first that has the Go
    // runtime's answer, up or down.
    let mut first = next_poll(&slot, 0).await;
    while wants_go && first.1.source(Source::Go).and_then(|s| s.up).is_none() && started.elapsed() < go_wait {
        first = next_poll(&slot, first.0).await;
    }
    let from = Instant::now();
    let (last, seconds) = if sample_for.is_zero() {
        (first.1.clone(), 0.0)
    } else {
        tokio::time::sleep(sample_for).await;
        let last = next_poll(&slot, slot.generation()).await.1;
        (last, from.elapsed().as_secs_f64())
    };
    run.stop();
    Ok((first.1, last, seconds))
}

/// Waits for the slot's first publish after generation `after`.
async fn next_poll(slot: &Slot, after: u64) -> (u64, Status) {
    loop {
        let g = slot.generation();
        if g > after {
            return (g, slot.latest().status.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kills counted, and those from before headroom started.
fn oom_kills_text(m: &crate::status::Memory) -> String {
    match m.oom_kills_before_start.filter(|&n| n > 0) {
        Some(before) => format!("{} (and {before} before headroom started)", m.oom_kills_total),
        None => m.oom_kills_total.to_string(),
    }
}
