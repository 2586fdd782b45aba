//! The layering the code is built on, checked on its source: the analysis
//! is pure (it imports no renderer, no configuration, no collector, and
//! reads no clock), and the alert plan reads no clock either.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

/// The lines of `file` that contain any of `needles`, outside comments.
fn offending(file: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
        .collect()
}

const CLOCKS: &[&str] = &["Instant::now", "SystemTime::now", "UNIX_EPOCH"];

#[test]
fn the_analysis_is_pure() {
    let files = rust_files(&src("analysis"));
    assert!(files.len() >= 5, "{files:?}");
    let layers = [
        "crate::status",
        "crate::config",
        "crate::alert",
        "crate::metrics",
        "crate::http",
        "crate::collector",
        "crate::source",
        "crate::monitor",
        "crate::app",
    ];
    let mut bad = Vec::new();
    for f in &files {
        bad.extend(offending(f, &layers));
        bad.extend(offending(f, CLOCKS));
        bad.extend(offending(f, &["std::fs", "tokio::"]));
    }
    assert!(
        bad.is_empty(),
        "the analysis must take data and time as arguments:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_alert_plan_reads_no_clock() {
    let bad = offending(&src("alert/plan.rs"), CLOCKS);
    assert!(
        bad.is_empty(),
        "the plan takes time as an argument:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_sample_depends_on_parsed_data_only() {
    let bad = offending(
        &src("sample.rs"),
        &["crate::status", "crate::analysis", "crate::collector", "crate::config"],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
