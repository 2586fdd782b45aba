//! A pod's loopback Go endpoint, reached from outside its network namespace
//! as `headroom node` reaches it: a real Go program serving on 127.0.0.1 in
//! a namespace of its own (`unshare --net`), scraped through
//! `/proc/PID/ns/net`. Needs root (setns needs CAP_SYS_ADMIN).

mod common;

use common::*;
use headroom::httpc::HttpClient;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Go program listening on 127.0.0.1:`port` in a network namespace of its
/// own; killed by PID on drop.
struct Isolated {
    child: Child,
}

impl Isolated {
    fn start(port: u16) -> Isolated {
        require_program("unshare");
        require_program("ip");
        let child = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" -listen \"$1\" -hold 1",
            ])
            .arg(gohog_path())
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        Isolated { child }
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_loopback_endpoint_in_another_namespace_is_reached_through_its_netns_and_only_so() {
    let port = free_port();
    let go = Isolated::start(port);
    let url = format!("http://127.0.0.1:{port}/debug/vars");
    let inside = HttpClient::in_netns(&go.netns());
    let rt = rt();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match rt.block_on(inside.get(&url, Duration::from_secs(2), 1 << 20)) {
            Ok(b) => break b,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("never reached {url} inside {}: {e}", go.netns().display()),
        }
    };
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("\"memstats\""), "{text:.200}");
    // The same URL from the host's namespace: nothing listens there.
    let outside = rt.block_on(HttpClient::new().get(&url, Duration::from_secs(2), 1 << 20));
    assert!(outside.is_err(), "reached from the host: {outside:?}");
    // Many scrapes, each may dial anew: every one answered, no thread left.
    for _ in 0..20 {
        rt.block_on(inside.get(&url, Duration::from_secs(2), 1 << 20))
            .expect("scrape inside");
    }
}

#[test]
fn the_callers_own_namespace_is_dialled_without_entering_it_and_a_gone_pid_is_named() {
    // Bound to port 0 here, not through `free_port`: a port found free and
    // bound later can meanwhile become another socket's ephemeral port.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
    });
    let own = HttpClient::in_netns(std::path::Path::new("/proc/self/ns/net"));
    let body = rt()
        .block_on(own.get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5), 64))
        .expect("own namespace");
    assert_eq!(&body[..], b"ok");
    server.join().unwrap();

    let gone = HttpClient::in_netns(std::path::Path::new("/proc/999999999/ns/net"));
    let err = rt()
        .block_on(gone.get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5), 64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/proc/999999999/ns/net"), "{err}");
}
