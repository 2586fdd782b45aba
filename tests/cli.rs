//! The binary's command line: help, bad configuration, exit statuses.

mod common;

use std::process::Command;

fn headroom(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_headroom"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run headroom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_teaches_every_flag() {
    let (code, out, _) = headroom(&["run", "--help"], &[]);
    assert_eq!(code, 0);
    for flag in headroom::config::KEYS {
        assert!(out.contains(&format!("--{flag}")), "--help lacks --{flag}:\n{out}");
    }
    assert!(out.contains("Example"), "{out}");
    let (code, out, _) = headroom(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("HEADROOM_") && out.contains("check"), "{out}");
    let (_, out, _) = headroom(&["check", "--help"], &[]);
    assert!(
        out.contains("--for") && out.contains("--json") && out.contains("Exit 0"),
        "{out}"
    );
}

#[test]
fn bad_values_exit_64_and_are_all_named() {
    let (code, _, err) = headroom(
        &[
            "run",
            "--interval",
            "soon",
            "--limit-basis",
            "vibes",
            "--listen",
            "nowhere",
        ],
        &[("HEADROOM_MEMORY_LIMIT", "plenty")],
    );
    assert_eq!(code, 64, "{err}");
    for needle in [
        "--interval \"soon\"",
        "--limit-basis \"vibes\"",
        "--listen \"nowhere\"",
        "--memory-limit \"plenty\"",
    ] {
        assert!(err.contains(needle), "missing {needle}:\n{err}");
    }
}

#[test]
fn flags_win_over_env() {
    // The env value is bad, the flag good: the flag wins and nothing is reported.
    let (code, _, err) = headroom(
        &["check", "--limit-basis", "rss", "--cgroup", "/definitely/missing"],
        &[("HEADROOM_LIMIT_BASIS", "bogus")],
    );
    assert_ne!(code, 64, "{err}");
    assert_eq!(code, 3, "unreadable target: {err}");
}

#[test]
fn config_file_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("h.toml");
    std::fs::write(&f, "colour = \"red\"\ninterval = \"1s\"\n").unwrap();
    let (code, _, err) = headroom(&["run", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("h.toml") && err.contains("colour"), "{err}");
    let (code, _, err) = headroom(&["run", "--config", "/no/such/file.toml"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("/no/such/file.toml"), "{err}");
}

#[test]
fn busy_port_is_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (code, _, err) = headroom(&["run", "--listen", &addr], &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&addr) && err.contains("cannot bind"), "{err}");
}

#[test]
fn the_deploy_checks_know_every_flag() {
    let py = std::fs::read_to_string(common::project_root().join("scripts/check_deploy.py")).unwrap();
    let start = py
        .find("SPEC_FLAGS = {")
        .expect("SPEC_FLAGS in scripts/check_deploy.py");
    let set = &py[start..start + py[start..].find('}').unwrap()];
    for flag in headroom::config::KEYS {
        assert!(
            set.contains(&format!("\"{flag}\"")),
            "scripts/check_deploy.py SPEC_FLAGS lacks {flag:?}"
        );
    }
}

#[test]
fn a_mistyped_flag_is_a_usage_error_not_a_risk_level() {
    // check's 1 and 2 mean warning and critical: clap's own errors exit 64.
    let (code, _, err) = headroom(&["check", "--josn"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--josn"), "{err}");
    let (code, out, _) = headroom(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn version_names_the_commit() {
    let (code, out, _) = headroom(&["--version"], &[]);
    assert_eq!(code, 0);
    // `headroom 0.1.0 (commit 0123456789ab)`, or `(commit unknown)` when
    // built without git.
    let line = out.trim();
    let prefix = format!("headroom {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = line
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {line:?}"));
    assert!(
        commit == "unknown" || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "not a commit: {commit:?}"
    );
}

#[test]
fn completions_know_the_subcommands() {
    let (code, out, err) = headroom(&["completions", "bash"], &[]);
    assert_eq!(code, 0, "{err}");
    for sub in ["run", "node", "check", "status", "completions", "man"] {
        assert!(out.contains(sub), "bash completions lack {sub}");
    }
    assert!(out.contains("--log-level") && out.contains("--go-url"), "flags missing");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = headroom(&["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("status"), "{shell}");
    }
    let (code, _, err) = headroom(&["completions", "tcsh"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("tcsh"), "{err}");
}

#[test]
fn the_man_page_mentions_every_flag() {
    let (code, page, err) = headroom(&["man"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(page.starts_with(".ie") && page.contains(".TH headroom 1"), "{page}");
    for f in headroom::config::FLAGS {
        // roff escapes the dashes: \-\-go\-url.
        let flag = format!("\\-\\-{}", f.name.replace('-', "\\-"));
        assert!(page.contains(&flag), "the man page lacks --{}", f.name);
        assert!(page.contains(&f.env()), "the man page lacks {}", f.env());
    }
    assert!(page.contains("EXIT STATUS"), "{page}");
    let (code, page, _) = headroom(&["man", "node"], &[]);
    assert_eq!(code, 0);
    for f in headroom::config::NODE_FLAGS {
        assert!(
            page.contains(&f.name.replace('-', "\\-")),
            "headroom-node(1) lacks --{}",
            f.name
        );
    }
    let (code, _, err) = headroom(&["man", "nope"], &[]);
    assert_eq!(code, 64);
    assert!(err.contains("\"nope\"") && err.contains("check"), "{err}");
}

#[test]
fn log_level_is_checked_and_named() {
    let (code, _, err) = headroom(&["run", "--log-level", "loud"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("--log-level \"loud\": expected one of error, warn, info, debug, trace"),
        "{err}"
    );
    let (code, _, err) = headroom(&["node", "--log-level", "verbose"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--log-level \"verbose\""), "{err}");
    let (code, _, err) = headroom(&["check", "--for", "0s"], &[("HEADROOM_LOG_LEVEL", "chatty")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--log-level \"chatty\""), "{err}");
    // Given, it wins over RUST_LOG; not given, RUST_LOG filters.
    let info_lines = |extra: &[&str]| {
        let tree = common::fixture("v2");
        let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["run", "--listen", "127.0.0.1:0", "--pid", "4242", "--interval", "100ms"])
            .arg("--cgroup-root")
            .arg(tree.join("sys/fs/cgroup"))
            .arg("--proc-root")
            .arg(tree.join("proc"))
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("HEADROOM_LOG_LEVEL")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start headroom");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = child.kill();
        let out = child.wait_with_output().expect("headroom's stderr");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (err.lines().filter(|l| l.contains(" INFO ")).count(), err)
    };
    let (n, err) = info_lines(&[]);
    assert!(n > 0 && err.contains("addr="), "RUST_LOG=info logs info:\n{err}");
    let (n, err) = info_lines(&["--log-level", "warn"]);
    assert_eq!(n, 0, "--log-level warn wins over RUST_LOG=info:\n{err}");
}
