//! `headroom check`: one report to stdout, for an engineer with a shell in
//! the pod. Exit status: 0 no risk, 1 warning, 2 critical, 3 the target or
//! its cgroup could not be read (64 for bad flags, from main).

use crate::analysis::diagnosis::Finding;
use crate::analysis::recommend::{Recommendation, RecommendationBasis, MIN_HISTORY_S};
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

pub fn mib(v: Option<u64>) -> String {
    v.map_or("–".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

pub fn limit_text(l: Option<Limit>) -> String {
    match l {
        None => "–".into(),
        Some(Limit::Unlimited) => "unlimited".into(),
        Some(Limit::Bytes(b)) => mib(Some(b)),
    }
}

/// What the verdict sentence is made of: the limit-basis value against
/// the limit, the prediction and the level. `check` and `headroom status`
/// say it the same way.
#[derive(Debug, Clone, Copy)]
pub struct VerdictInputs<'a> {
    pub basis_name: &'a str,
    pub basis: Option<u64>,
    pub limit: Option<Limit>,
    pub usage: Option<u64>,
    pub high: Option<Limit>,
    pub risk: Risk,
    pub time_to_oom_s: Option<f64>,
    pub warming_up: bool,
    /// What to say while warming up without a prediction.
    pub warming_up_hint: &'a str,
}

/// The verdict in one sentence.
pub fn verdict(v: &VerdictInputs) -> String {
    let mut verdict = match (v.basis, v.limit) {
        (None, _) => "could not read the target's memory: see the sources below".to_owned(),
        (Some(_), Some(Limit::Unlimited)) | (Some(_), None) => {
            "no memory limit is set on the cgroup's path: nothing to run out of but the node".to_owned()
        }
        (Some(b), Some(Limit::Bytes(l))) => {
            let pct = 100.0 * b as f64 / l.max(1) as f64;
            let when = match v.time_to_oom_s {
                Some(t) => format!("OOM kill predicted in {}", duration_text(t)),
                None if v.warming_up => v.warming_up_hint.to_owned(),
                None => "not growing toward the limit".to_owned(),
            };
            let level = match v.risk {
                Risk::Ok => "no immediate risk",
                Risk::Warning => "at risk",
                Risk::Critical => "an OOM kill is close",
            };
            format!("{} is at {pct:.1} % of the limit, {when}: {level}", v.basis_name)
        }
    };
    if let (Some(Limit::Bytes(h)), Some(u)) = (v.high, v.usage) {
        if u >= h {
            verdict.push_str(&format!(
                "; usage is above memory.high ({}), so the kernel is throttling and reclaiming",
                mib(Some(h))
            ));
        }
    }
    verdict
}

/// Whole seconds, as humantime writes them (`6m 52s`).
pub fn duration_text(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0) as u64)).to_string()
}

/// The verdict line.
pub fn verdict_line(risk: Risk, verdict: &str) -> String {
    format!("verdict  {risk:?}: {verdict}\n")
}

/// Each cause with its evidence and advice, then each failing
/// misconfiguration check with its fix: `[name, evidence, advice]`.
pub fn causes_text<'a>(
    findings: impl IntoIterator<Item = [&'a str; 3]>,
    misconfigurations: impl IntoIterator<Item = [&'a str; 3]>,
) -> String {
    let mut out = String::new();
    for [cause, evidence, advice] in findings {
        let _ = writeln!(out, "cause    {cause}: {evidence}");
        let _ = writeln!(out, "advice   {advice}");
    }
    for [check, evidence, fix] in misconfigurations {
        let _ = writeln!(out, "misconf  {check}: {evidence}");
        let _ = writeln!(out, "fix      {fix}");
    }
    out
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
    let verdict = verdict(&VerdictInputs {
        basis_name: last.limit_basis.map_or("basis", |b| b.as_str()),
        basis,
        limit: last.memory.limit,
        usage: last.memory.usage,
        high: last.memory.high,
        risk,
        time_to_oom_s: analysis.time_to_oom_s,
        warming_up: analysis.warming_up,
        warming_up_hint: "sample longer (--for 60s) to see whether it grows",
    });
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
        ("huge pages (THP)".into(), mib(s.breakdown.huge_pages.map(|h| h.bytes))),
        ("file (page cache)".into(), mib(m.file)),
        ("RSS (VmRSS)".into(), mib(m.rss)),
        ("LazyFree".into(), mib(m.lazy_free)),
        ("kernel memory".into(), mib(s.breakdown.kernel_total)),
        (
            "OOM kills".into(),
            oom_kills_text(m.oom_kills_total, m.oom_kills_before_start),
        ),
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
        if let Some(c) = go.gc_cycles_per_second {
            go_rows.push(("GC cycles", format!("{c:.1}/s")));
        }
        if let Some(f) = go.gc_cpu_fraction {
            go_rows.push(("GC CPU share", format!("{:.0} %", 100.0 * f)));
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
    out.push_str(&verdict_line(r.risk, &r.verdict));
    out.push_str(&causes_text(
        r.findings
            .iter()
            .map(|f| [f.cause.as_str(), f.evidence.as_str(), f.advice.as_str()]),
        s.misconfigurations
            .iter()
            .map(|m| [m.check.as_str(), m.evidence.as_str(), m.fix.as_str()]),
    ));
    out.push_str(&recommendation_text(
        s.analysis.as_ref().and_then(|a| a.recommendation.as_ref()),
    ));
    out
}

/// The limit and GOMEMLIMIT to set: a Kubernetes `resources:` snippet and
/// an env line, after a line saying what they come from.
pub fn recommendation_text(r: Option<&Recommendation>) -> String {
    let Some(r) = r else {
        return format!(
            "set      not yet: a recommendation needs {MIN_HISTORY_S:.0} s of history (sample with --for 60s)\n"
        );
    };
    let mut out = String::new();
    let whole = |b: u64| b >> 20;
    let from = match r.basis {
        RecommendationBasis::GoHeapGoal | RecommendationBasis::GoHeapAlloc => format!(
            "heap peak before GC {} ({}) + runtime beside the heap {} + outside the runtime {} ({})",
            mib(r.heap_peak_bytes),
            if r.basis == RecommendationBasis::GoHeapGoal {
                "NextGC"
            } else {
                "HeapAlloc maxima, no goal exported"
            },
            mib(r.runtime_other_bytes),
            mib(r.outside_runtime_bytes),
            r.limit_basis.as_str()
        ),
        RecommendationBasis::CgroupPeak => format!(
            "the highest {} polled {}, without Go data (give --go-url to count the heap's peaks before GC)",
            r.limit_basis.as_str(),
            mib(Some(r.observed_peak_bytes))
        ),
    };
    let _ = writeln!(
        out,
        "set      from {:.0} s of history ({}): {from}, plus {:.0} %",
        r.history_s,
        r.basis.as_str(),
        100.0 * r.margin
    );
    let _ = writeln!(out, "  resources:");
    let _ = writeln!(out, "    limits:");
    let _ = writeln!(out, "      memory: {}Mi", whole(r.memory_limit_bytes));
    let _ = writeln!(out, "    requests:");
    let _ = writeln!(
        out,
        "      memory: {}Mi  # the limit: memory is not compressible, and a pod above its request is the first \
         evicted or killed when the node runs short",
        whole(r.memory_limit_bytes)
    );
    match r.gomemlimit_bytes {
        Some(g) => {
            let _ = writeln!(out, "  GOMEMLIMIT={}MiB", whole(g));
        }
        None => {
            let _ = writeln!(
                out,
                "  GOMEMLIMIT: needs the Go runtime's numbers (--go-url) to leave room for what it does not govern"
            );
        }
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
        scrapes: None,
        alert_labels: Default::default(),
        runbook_base: String::new(),
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
pub fn oom_kills_text(total: u64, before_start: Option<u64>) -> String {
    match before_start.filter(|&n| n > 0) {
        Some(before) => format!("{total} (and {before} before headroom started)"),
        None => total.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::LimitBasis;

    fn go_recommendation() -> Recommendation {
        Recommendation {
            basis: RecommendationBasis::GoHeapGoal,
            memory_limit_bytes: 385 << 20,
            gomemlimit_bytes: Some(335 << 20),
            margin: 0.1,
            heap_peak_bytes: Some(300 << 20),
            runtime_other_bytes: Some(20 << 20),
            outside_runtime_bytes: Some(30 << 20),
            kernel_bytes: None,
            observed_peak_bytes: 290 << 20,
            limit_basis: LimitBasis::Unreclaimable,
            history_s: 60.0,
        }
    }

    #[test]
    fn the_recommendation_as_resources_and_an_env_line() {
        let text = recommendation_text(Some(&go_recommendation()));
        assert!(
            text.contains("  resources:\n    limits:\n      memory: 385Mi\n    requests:\n      memory: 385Mi"),
            "{text}"
        );
        assert!(text.contains("\n  GOMEMLIMIT=335MiB\n"), "{text}");
        assert!(text.contains("go_heap_goal") && text.contains("plus 10 %"), "{text}");
        assert!(text.contains("heap peak before GC 300.0 MiB"), "{text}");
    }

    #[test]
    fn without_go_no_gomemlimit_and_before_history_nothing() {
        let r = Recommendation {
            basis: RecommendationBasis::CgroupPeak,
            gomemlimit_bytes: None,
            heap_peak_bytes: None,
            runtime_other_bytes: None,
            outside_runtime_bytes: None,
            margin: 0.3,
            memory_limit_bytes: 260 << 20,
            ..go_recommendation()
        };
        let text = recommendation_text(Some(&r));
        assert!(text.contains("      memory: 260Mi\n"), "{text}");
        assert!(text.contains("cgroup_peak") && !text.contains("GOMEMLIMIT="), "{text}");
        let text = recommendation_text(None);
        assert!(
            text.starts_with("set      not yet") && !text.contains("resources:"),
            "{text}"
        );
    }
}
