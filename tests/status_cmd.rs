//! `headroom status` against real daemons on fixture trees: the sidecar's
//! report and JSON, a node agent's targets table and one target's report,
//! and the errors when nothing (or not headroom) answers.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// `headroom status ARGS` with `env` (and no HEADROOM_* of the test's
/// own): (exit status, stdout, stderr).
fn status(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"));
    c.arg("status").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HEADROOM_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run headroom status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn url(hr: &Headroom) -> String {
    format!("http://{}", hr.addr)
}

/// Waits until the sidecar's status has an analysis with `risk`.
fn wait_risk(hr: &Headroom, risk: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = hr.status();
        if st["analysis"]["risk"] == risk && st["memory"]["usage"].is_u64() {
            return;
        }
        assert!(Instant::now() < deadline, "no {risk} risk: {st:#}\n{}", hr.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_sidecars_report_and_json() {
    let hr = start_on_fixture("v2", &["--pid", "4242"]);
    wait_risk(&hr, "ok");
    let (code, out, err) = status(&["--url", &url(&hr)], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        &format!("headroom {}  last poll", url(&hr)),
        "target   pid 4242  cgroup ",
        "limit (cgroup)",
        "384.0 MiB",
        "killer measures",
        "unreclaimable",
        "129.9 MiB",
        "LazyFree",
        "96.0 MiB",
        "0 (and 1 before headroom started)",
        "\nverdict  Ok: unreclaimable is at 33.8 % of the limit",
        "\noom in   none predicted: ",
        "\nwhy      ",
        "\ncause    lazy_free: 96 MiB freed with MADV_FREE",
        "\nadvice   Run the service with GODEBUG=madvdontneed=1",
        "\nset      not yet: a recommendation needs 30 s of history",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
    assert!(!out.contains("--for"), "a hint of check's, not the daemon's:\n{out}");

    // --json: the daemon's status JSON, as /api/v1/status serves it.
    let (code, out, err) = status(&["--url", &url(&hr), "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(j["memory"]["unreclaimable"], 136220672);
    assert_eq!(j["memory"]["oom_kills_before_start"], 1);
    assert_eq!(j["analysis"]["findings"][0]["cause"], "lazy_free");
    assert_eq!(j["target"]["pid"], 4242);

    // No --url: the local daemon at the port of HEADROOM_LISTEN, as the
    // sidecar's container sets it; a trailing slash in --url is fine.
    let listen = format!("0.0.0.0:{}", hr.addr.port());
    let (code, out, err) = status(&[], &[("HEADROOM_LISTEN", &listen)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("headroom http://127.0.0.1:{}", hr.addr.port())),
        "{out}"
    );
    let (code, _, err) = status(&["--url", &format!("{}/", url(&hr))], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_exit_status_is_the_daemons_risk() {
    // 129.9 MiB of 140 MiB: a warning.
    let hr = start_on_fixture("v2", &["--pid", "4242", "--memory-limit", "140MiB"]);
    wait_risk(&hr, "warning");
    let (code, out, err) = status(&["--url", &url(&hr)], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("verdict  Warning: unreclaimable is at 92.8 % of the limit"),
        "{out}"
    );
    assert!(out.contains("limit (override)"), "{out}");
    let (code, _, _) = status(&["--url", &url(&hr), "--json"], &[]);
    assert_eq!(code, 1);
}

/// The v2 fixture's one container, keyed without the CRI.
const POD_UID: &str = "7f3c2a1e-5b8d-4c6f-9e2a-1d4b6c8e0f12";
const SHORT_ID: &str = "3b1f9d7c5a2e";

#[test]
fn a_node_agents_targets_and_one_targets_report() {
    let root = fixture("v2");
    let cgroup_root = root.join("sys/fs/cgroup").display().to_string();
    let proc_root = root.join("proc").display().to_string();
    let hr = Headroom::start_node(&[
        "--cgroup-root",
        &cgroup_root,
        "--proc-root",
        &proc_root,
        "--all-containers",
        "true",
        "--cri-socket",
        "none",
        "--interval",
        "200ms",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hr.get("/api/v1/targets").1.contains("\"usage_bytes\": 271310848") {
        assert!(Instant::now() < deadline, "no target read: {}", hr.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let key = format!("_/{POD_UID}/{SHORT_ID}");

    let (code, out, err) = status(&["--url", &url(&hr)], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("1 target, named from the cgroup tree (--cri-socket none)"),
        "{out}"
    );
    for column in [
        "RISK",
        "TIME TO OOM",
        "USAGE",
        "LIMIT",
        "USED",
        "STATE",
        "TARGET",
        "CAUSES",
    ] {
        assert!(lines[1].contains(column), "{out}");
    }
    let row = lines[2];
    for cell in [
        "ok",
        "258.7 MiB",
        "384.0 MiB",
        "67 %",
        "watched",
        key.as_str(),
        "lazy_free",
    ] {
        assert!(row.contains(cell), "missing {cell:?} in {row:?}:\n{out}");
    }
    assert!(out.contains("--target NAMESPACE/POD/CONTAINER"), "{out}");

    let (code, out, _) = status(&["--url", &url(&hr), "--json"], &[]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["targets"][0]["pod"], POD_UID);
    assert_eq!(j["names"]["source"], "cgroup");

    let (code, out, err) = status(&["--url", &url(&hr), "--target", &key], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        &format!("target   {key}  pid –"),
        "384.0 MiB",
        "\nverdict  Ok: unreclaimable is at 33.8 % of the limit",
        "\ncause    lazy_free: ",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
    let (code, out, _) = status(&["--url", &url(&hr), "--target", &key, "--json"], &[]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["memory"]["usage"], 271310848);

    // A target it does not watch: its 404, and where the list is.
    let (code, out, err) = status(&["--url", &url(&hr), "--target", "shop/cart/app"], &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("/api/v1/targets/shop/cart/app/status: HTTP 404")
            && err.contains(&format!(
                "headroom status --url {}` lists the watched targets",
                url(&hr)
            )),
        "{err}"
    );
}

#[test]
fn nothing_listening_is_exit_3_naming_the_url_and_what_to_do() {
    let port = free_port();
    let (code, out, err) = status(&["--url", &format!("http://127.0.0.1:{port}")], &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    for needle in [
        format!("cannot reach headroom at http://127.0.0.1:{port} (--url)"),
        "Is the daemon running".into(),
        "--url http://HOST:PORT".into(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?}: {err}");
    }
    // The port came from the environment: the message says so.
    let (code, _, err) = status(&[], &[("HEADROOM_LISTEN", &format!("0.0.0.0:{port}"))]);
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("http://127.0.0.1:{port} (HEADROOM_LISTEN=0.0.0.0:{port})")),
        "{err}"
    );
}

/// A server that answers every request with `status` and `body`.
fn other_server(status: &'static str, body: &'static str) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn another_program_on_the_port_is_exit_3_not_a_verdict() {
    let addr = other_server("404 Not Found", "<h1>no such page</h1>");
    let (code, _, err) = status(&["--url", &format!("http://{addr}")], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("http://{addr}/api/v1/targets answered HTTP 404"))
            && err.contains("is this headroom's port"),
        "{err}"
    );
    let addr = other_server("200 OK", "<html>hello</html>");
    let (code, _, err) = status(&["--url", &format!("http://{addr}")], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "http://{addr}/api/v1/status answers, but not with headroom's status JSON"
        )) && err.contains("is this headroom's port"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (code, _, err) = status(&["--target", "shop/cart", "--url", "ftp://x"], &[]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("--target \"shop/cart\"") && err.contains("--url \"ftp://x\""),
        "{err}"
    );
    let (code, _, err) = status(&[], &[("HEADROOM_LISTEN", "nowhere")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("HEADROOM_LISTEN \"nowhere\""), "{err}");
}
