//! `--auth-file` on the real daemon: the dashboard, `/api/` and
//! `/profiles/` refused without the credential and answered with it; the
//! kubelet's probes and (unless `--auth-metrics`) Prometheus' scrape
//! answered without; a rotated Secret taken at once; a bad file refused at
//! start, naming it.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GET `path` with an optional `Authorization` header: (status, head).
fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head)
}

#[test]
fn protected_endpoints_need_the_credential_and_probes_never_do() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("credentials");
    std::fs::write(&secret, "Bearer s3cret-token\n").unwrap();
    let hr = start_on_fixture("v1", &["--process", "gohog", "--auth-file", secret.to_str().unwrap()]);
    hr.wait_metrics(Duration::from_secs(10), "a poll", |m| {
        m.contains_key("headroom_memory_usage_bytes")
    });
    let ok = Some("Bearer s3cret-token");
    for open in ["/healthz", "/readyz", "/metrics"] {
        let (code, head) = get(hr.addr, open, None);
        assert!(
            code == 200 || (open == "/readyz" && code == 503),
            "{open} without credentials: {head}"
        );
    }
    for path in [
        "/",
        "/api/v1/status",
        "/api/v1/history",
        "/api/v1/targets",
        "/profiles/heap-1-warning.pb.gz",
    ] {
        let (code, head) = get(hr.addr, path, None);
        assert_eq!(code, 401, "{path} without credentials: {head}");
        assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
        let (code, _) = get(hr.addr, path, Some("Bearer wrong-token!"));
        assert_eq!(code, 401, "{path} with another token");
        let (code, head) = get(hr.addr, path, ok);
        let want = if path.starts_with("/profiles/") { 404 } else { 200 };
        assert_eq!(code, want, "{path} with the credential: {head}");
    }
    // Rotated, as a Secret's update swaps the file: the old one is refused.
    let new = dir.path().join("credentials.new");
    std::fs::write(&new, "oncall:pa55word\n").unwrap();
    std::fs::rename(&new, &secret).unwrap();
    assert_eq!(get(hr.addr, "/api/v1/status", ok).0, 401);
    // user:password is basic auth, which a browser sends for the dashboard.
    let (code, head) = get(hr.addr, "/", None);
    assert_eq!(code, 401);
    assert!(head.to_ascii_lowercase().contains("www-authenticate: basic"), "{head}");
    assert_eq!(get(hr.addr, "/", Some("Basic b25jYWxsOnBhNTV3b3Jk")).0, 200);
}

#[test]
fn metrics_too_with_auth_metrics_and_a_bad_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("credentials");
    std::fs::write(&secret, "prom:scrape\n").unwrap();
    let hr = start_on_fixture(
        "v1",
        &[
            "--process",
            "gohog",
            "--auth-file",
            secret.to_str().unwrap(),
            "--auth-metrics",
            "true",
        ],
    );
    assert_eq!(get(hr.addr, "/metrics", None).0, 401);
    assert_eq!(get(hr.addr, "/metrics", Some("Basic cHJvbTpzY3JhcGU=")).0, 200);
    assert_eq!(get(hr.addr, "/healthz", None).0, 200);
    drop(hr);

    for (args, says) in [
        (vec!["--auth-file", "/no/such/credentials"], "/no/such/credentials"),
        (vec!["--auth-metrics", "true"], "needs --auth-file"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["run", "--pid", "1"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["run", "--pid", "1", "--auth-file", empty.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--auth-file") && err.contains("empty"),
        "{err}"
    );
}
