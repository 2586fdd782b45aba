//! Alert receivers behind https with credentials read from files (mounted
//! Secrets): the real binary on a fixture tree whose memory sits at the
//! limit, a TLS receiver on loopback with a certificate made for the test
//! and trusted through --alert-ca-file, basic auth for Alertmanager and a
//! bearer token for the webhook.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got: path and Authorization header.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A blocking TLS server on loopback answering 200 to every request.
fn tls_receiver() -> (u16, String, Seen) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then the body by Content-Length.
                let head_end = loop {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                while buf.len() < head_end + len {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push((path, header("authorization")));
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, cert.pem(), seen)
}

#[test]
fn https_receivers_get_alerts_with_the_credentials_from_files() {
    let (port, ca_pem, seen) = tls_receiver();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let am_secret = dir.path().join("am");
    std::fs::write(&am_secret, "alertmanager:s3cret\n").unwrap();
    let hook_secret = dir.path().join("hook");
    std::fs::write(&hook_secret, "token-123\n").unwrap();
    let root = fixture("v2");
    // The fixture's unreclaimable memory is 136220672 bytes: a 140 MB limit
    // puts it at 97 %, critical after two polls.
    let am = format!("https://127.0.0.1:{port}");
    let hook = format!("https://localhost:{port}/hook");
    let hr = Headroom::start(&[
        "--pid",
        "4242",
        "--proc-root",
        root.join("proc").to_str().unwrap(),
        "--cgroup-root",
        root.join("sys/fs/cgroup").to_str().unwrap(),
        "--interval",
        "100ms",
        "--memory-limit",
        "140000000",
        "--alertmanager-url",
        &am,
        "--alertmanager-auth-file",
        am_secret.to_str().unwrap(),
        "--webhook-url",
        &hook,
        "--webhook-auth-file",
        hook_secret.to_str().unwrap(),
        "--alert-ca-file",
        ca.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = seen.lock().unwrap().clone();
        let am_req = got.iter().find(|(p, _)| p == "/api/v2/alerts");
        let hook_req = got.iter().find(|(p, _)| p == "/hook");
        if let (Some(a), Some(h)) = (am_req, hook_req) {
            // base64("alertmanager:s3cret")
            assert_eq!(a.1, "Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==");
            assert_eq!(h.1, "Bearer token-123");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the receivers did not get both alerts: {got:?}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !hr.log().contains("s3cret") && !hr.log().contains("token-123"),
        "credentials stay out of the log"
    );
}

#[test]
fn an_ftp_receiver_or_a_missing_secret_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "run",
            "--webhook-url",
            "ftp://hooks/services/SECRETXYZ?token=SECRET2",
            "--webhook-auth-file",
            "/no/such/secret",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("--webhook-url \"ftp://hooks/…\""), "{err}");
    assert!(
        !err.contains("SECRET"),
        "the URL's path and query stay out of the message: {err}"
    );
    assert!(err.contains("--webhook-auth-file \"/no/such/secret\""), "{err}");
}
