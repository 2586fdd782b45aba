//! Test support: the real `headroom` binary, a tiny HTTP client, real v1
//! memory cgroups and the gohog Go target, each cleaned up on drop.
#![allow(dead_code)]

pub mod cri;
pub mod kubetree;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str =
    "run scripts/install-test-deps.sh and scripts/build-test-programs.sh (the README's test command does both)";

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    project_root().join("tests/fixtures").join(name)
}

/// Fails (never skips) when a program the test needs is missing.
pub fn require_program(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("sh");
    assert!(out.status.success(), "`{name}` is not installed: {INSTALL_HINT}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn gohog_path() -> PathBuf {
    let p = project_root().join("target/test-programs/gohog");
    assert!(p.exists(), "{} is missing: {INSTALL_HINT}", p.display());
    p
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path)
}

pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sample lines of a text exposition: `name{labels}` → value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let v = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => other.parse().ok()?,
            };
            Some((k.to_owned(), v))
        })
        .collect()
}

/// A running `headroom` process; killed on drop.
pub struct Headroom {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Headroom {
    /// Starts `headroom run` on 127.0.0.1:0 with `args` and waits for it to
    /// listen.
    pub fn start(args: &[&str]) -> Headroom {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_headroom")), args)
    }

    pub fn start_with(cmd: Command, args: &[&str]) -> Headroom {
        Self::spawn("run", cmd, args)
    }

    /// Starts `headroom node` on 127.0.0.1:0 with `args`.
    pub fn start_node(args: &[&str]) -> Headroom {
        Self::spawn("node", Command::new(env!("CARGO_BIN_EXE_headroom")), args)
    }

    fn spawn(subcommand: &str, mut cmd: Command, args: &[&str]) -> Headroom {
        let mut child = cmd
            .arg(subcommand)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("HEADROOM_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start headroom");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        // Whatever it prints on stdout goes to the log too.
        let stdout = child.stdout.take().expect("piped");
        let log1 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut l = log1.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("headroom did not start listening; log:\n{}", log.lock().unwrap());
            }
        };
        Headroom { child, addr, log }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}\nlog:\n{}", self.log()))
    }

    pub fn metrics(&self) -> BTreeMap<String, f64> {
        parse_metrics(&self.get("/metrics").1)
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/v1/status").1).expect("status JSON")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls `/metrics` until `pred` holds, or panics after `timeout`.
    pub fn wait_metrics(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last metrics:\n{m:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        unsafe_kill(pid, 15);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "headroom did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Headroom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by PID through kill(1) (no libc binding needed).
pub fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// A real v1 memory cgroup, removed on drop (its tasks moved to the parent).
pub struct V1Cgroup {
    pub dir: PathBuf,
}

impl V1Cgroup {
    pub fn create(name: &str, limit_bytes: u64) -> V1Cgroup {
        let root = Path::new(V1_MEMORY);
        assert!(
            root.join("memory.usage_in_bytes").exists(),
            "these tests need the cgroup v1 memory controller at {V1_MEMORY}, as root"
        );
        // Under our own memory cgroup, so the test's charge stays in our pod.
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
        let own_path = own
            .lines()
            .find_map(|l| {
                let mut it = l.splitn(3, ':');
                let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
                ctrls.split(',').any(|c| c == "memory").then(|| path.to_owned())
            })
            .unwrap_or_else(|| "/".into());
        let parent = root.join(own_path.trim_start_matches('/'));
        let dir = parent.join(format!("headroom-test-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        assert!(
            dir.join("memory.limit_in_bytes").exists(),
            "could not create {}",
            dir.display()
        );
        std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string()).expect("set limit");
        // No swap on these machines, but make sure the kernel kills rather than swaps.
        let _ = std::fs::write(dir.join("memory.swappiness"), "0");
        V1Cgroup { dir }
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", file))
    }

    pub fn read_u64(&self, file: &str) -> u64 {
        self.read(file).trim().parse().expect("number")
    }

    /// Usage less the file LRU: what the OOM killer cannot reclaim.
    pub fn unreclaimable(&self) -> u64 {
        let stat = self.stat();
        let file_lru =
            stat.get("total_active_file").copied().unwrap_or(0) + stat.get("total_inactive_file").copied().unwrap_or(0);
        self.read_u64("memory.usage_in_bytes").saturating_sub(file_lru)
    }

    pub fn stat(&self) -> BTreeMap<String, u64> {
        self.read("memory.stat")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    /// A command that enters this cgroup, then execs `program`.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        c
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        let parent = self.dir.parent().expect("parent").join("cgroup.procs");
        for _ in 0..50 {
            if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = std::fs::write(&parent, pid);
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove {}", self.dir.display());
    }
}

/// A running gohog; killed on drop.
pub struct GoHog {
    pub child: Child,
    pub addr: SocketAddr,
}

impl GoHog {
    /// Starts gohog inside `cgroup` with extra env and args.
    pub fn start(cgroup: &V1Cgroup, env: &[(&str, &str)], args: &[&str]) -> GoHog {
        GoHog::start_exe(cgroup, &gohog_path(), env, args)
    }

    /// Starts the gohog executable `exe` (a named copy) inside `cgroup`.
    pub fn start_exe(cgroup: &V1Cgroup, exe: &Path, env: &[(&str, &str)], args: &[&str]) -> GoHog {
        let mut cmd = cgroup.command(exe);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start gohog");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("gohog stdout");
        let addr = line
            .trim()
            .strip_prefix("listening http://")
            .unwrap_or_else(|| panic!("unexpected gohog output {line:?}"))
            .parse()
            .expect("gohog address");
        GoHog { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn call(&self, path: &str) -> serde_json::Value {
        let (code, body) = http_get(self.addr, path).unwrap_or_else(|e| panic!("gohog {path}: {e}"));
        assert_eq!(code, 200, "gohog {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("gohog {path}: {e}: {body}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for GoHog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/proc/PID/status` VmRSS in bytes.
pub fn vm_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|k| k * 1024)
}

/// Asserts `a` is within `pct` percent of `b`.
pub fn assert_close(what: &str, a: f64, b: f64, pct: f64) {
    let tol = b.abs() * pct / 100.0;
    assert!((a - b).abs() <= tol, "{what}: {a} not within {pct} % of {b}");
}

/// A free port on 127.0.0.1 for a program the test starts: bound, then
/// released. Taken below the kernel's ephemeral range (32768 and up by
/// default), so an outgoing connection cannot take it as its source port
/// between release and the program's bind; spread by PID and a counter so
/// tests and test binaries running at once do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n.wrapping_mul(7_919)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + SPAN)
}

/// A real Alertmanager (Debian's prometheus-alertmanager) on loopback.
pub struct Alertmanager {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        let bin = require_program("prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n").unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(addr, "/-/ready").map(|r| r.0).ok() != Some(200) {
            assert!(Instant::now() < deadline, "alertmanager did not get ready on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The alerts it holds (active and otherwise).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (code, body) = http_get(
            self.addr,
            "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true",
        )
        .expect("alertmanager API");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("alerts JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver: records each POST body; the first `fail_first`
/// requests are answered 503 to exercise retries.
pub struct Webhook {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<String>>>,
    pub requests: Arc<Mutex<usize>>,
}

impl Webhook {
    pub fn start(fail_first: usize) -> Webhook {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0usize));
        let (b2, r2) = (bodies.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut len = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let n = {
                    let mut r = r2.lock().unwrap();
                    *r += 1;
                    *r
                };
                let mut s = reader.into_inner();
                if n <= fail_first {
                    let _ = s.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                } else {
                    b2.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        });
        Webhook { addr, bodies, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).expect("webhook JSON"))
            .collect()
    }
}

/// What a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 503 Service Unavailable.
    Unavailable,
    /// 200 OK.
    Ok,
    /// Passes the request on to this address and its answer back.
    Forward(SocketAddr),
}

/// One request a [`Receiver`] got, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: String,
    pub status: u16,
}

/// A receiver for alerts that can be down: nothing listens on its port
/// (connections are refused) until [`Receiver::listen`]; then it answers
/// as told (503, 200, or as the server it forwards to), recording each
/// request with the status it answered.
pub struct Receiver {
    pub port: u16,
    answer: Arc<Mutex<Answer>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn down() -> Receiver {
        Receiver {
            port: free_port(),
            answer: Arc::new(Mutex::new(Answer::Unavailable)),
            received: Default::default(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts listening, answering `answer`.
    pub fn listen(&self, answer: Answer) {
        self.set(answer);
        let l = std::net::TcpListener::bind(self.addr()).expect("the receiver's port is still free");
        let (answer, received) = (self.answer.clone(), self.received.clone());
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut line = String::new();
                let mut len = 0usize;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    line.clear();
                }
                let mut body = vec![0u8; len];
                if head.is_empty() || reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let answer = *answer.lock().unwrap();
                let reply = match answer {
                    Answer::Unavailable => {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                    }
                    Answer::Ok => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    Answer::Forward(to) => forward(to, &path, &body),
                };
                let status = String::from_utf8_lossy(&reply)
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                received.lock().unwrap().push(Received {
                    path,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status,
                });
                let mut s = reader.into_inner();
                let _ = s.write_all(&reply);
            }
        });
    }

    /// From now on answers `answer`.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// POSTs `body` to `to` (one request, then the connection closes) and
/// returns the raw answer; a 502 when `to` cannot be reached.
fn forward(to: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(raw)
    };
    exchange()
        .unwrap_or_else(|_| b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec())
}

/// What /api/v1/status said at one moment of a run.
#[derive(Debug, Clone)]
pub struct Tick {
    pub t: f64,
    pub risk: u64,
    pub tto: Option<f64>,
    pub causes: Vec<String>,
    pub usage: Option<u64>,
    pub prediction: String,
}

/// Records the status every `every` until `stop` says so (or `max` passes).
pub fn record(
    hr: &Headroom,
    every: Duration,
    max: Duration,
    mut stop: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<Tick> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < max {
        let st = hr.status();
        let a = &st["analysis"];
        out.push(Tick {
            t: start.elapsed().as_secs_f64(),
            risk: match a["risk"].as_str() {
                Some("warning") => 1,
                Some("critical") => 2,
                _ => 0,
            },
            tto: a["time_to_oom_s"].as_f64(),
            causes: a["findings"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x["cause"].as_str().map(String::from)).collect())
                .unwrap_or_default(),
            usage: st["memory"]["usage"].as_u64(),
            prediction: a["prediction"].as_str().unwrap_or_default().to_owned(),
        });
        if stop(&st) {
            break;
        }
        std::thread::sleep(every);
    }
    out
}

pub fn timeline(ticks: &[Tick]) -> String {
    ticks
        .iter()
        .map(|k| {
            format!(
                "{:6.1}s risk {} tto {:>8} usage {:>6} MiB {:?} {}\n",
                k.t,
                k.risk,
                k.tto.map_or("-".into(), |t| format!("{t:.0}")),
                k.usage.map_or(0, |u| u >> 20),
                k.causes,
                k.prediction
            )
        })
        .collect()
}

/// Waits for `child` to end, polling every 5 ms (a runtime reacts within
/// milliseconds of a death).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        assert!(Instant::now() < deadline, "process still running after {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit without reaping it (it stays a zombie, as
/// under a runtime that has not yet collected it).
pub fn wait_exit_unreaped(child: &Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: waitid with WNOWAIT|WNOHANG on our own child; `info` is
        // ours to be written.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
        if unsafe { info.si_pid() } != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "process still running after {timeout:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A copy of gohog under a name of its own, so `--process` matches only it.
pub fn named_gohog(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::copy(gohog_path(), &path).expect("copy gohog");
    (dir, path)
}

/// Starts a named gohog copy in `cg` with `args`, once it listens.
pub fn start_named(cg: &V1Cgroup, exe: &Path, args: &[&str]) -> Child {
    let mut child = cg
        .command(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gohog copy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "{line}");
    child
}

/// headroom on a fixture tree (`tests/fixtures/TREE`: its proc and cgroupfs
/// roots), polling every 100 ms, with `extra` flags.
pub fn start_on_fixture(tree: &str, extra: &[&str]) -> Headroom {
    start_on_tree(&fixture(tree), extra)
}

/// headroom on a tree laid out like the fixtures (`proc` and
/// `sys/fs/cgroup` under `root`), polling every 100 ms, with `extra` flags.
pub fn start_on_tree(root: &Path, extra: &[&str]) -> Headroom {
    let proc_root = root.join("proc");
    let cgroup_root = root.join("sys/fs/cgroup");
    let mut args = vec![
        "--proc-root",
        proc_root.to_str().unwrap(),
        "--cgroup-root",
        cgroup_root.to_str().unwrap(),
        "--interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    Headroom::start(&args)
}

/// The dashboard's DOM after its first render, from headless Chromium.
pub fn dashboard_dom(addr: std::net::SocketAddr) -> String {
    let profile = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "60",
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}/"))
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run /usr/bin/chromium (scripts/install-browser-deps.sh installs it)");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("id=\"verdict\""),
        "not the dashboard ({}):\n{dom}",
        out.status
    );
    dom
}

/// headroom watching `hog` (`--pid`, `--go-url` on its expvar) with `extra`
/// flags.
pub fn headroom_watching(hog: &GoHog, extra: &[&str]) -> Headroom {
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    let mut args = vec!["--pid", &pid, "--go-url", &url];
    args.extend_from_slice(extra);
    Headroom::start(&args)
}

/// Records the status until `hog` dies (or `max` passes), calling `each`
/// with the seconds since `since` on every tick; returns the ticks and when
/// it died.
pub fn record_until_killed(
    hr: &Headroom,
    hog: &mut GoHog,
    since: Instant,
    max: Duration,
    mut each: impl FnMut(f64),
) -> (Vec<Tick>, f64) {
    let mut killed_at = None;
    let ticks = record(hr, Duration::from_millis(500), max, |_| {
        let now = since.elapsed().as_secs_f64();
        each(now);
        if hog.child.try_wait().expect("wait").is_some() {
            killed_at = Some(now);
        }
        killed_at.is_some()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while killed_at.is_none() {
        if hog.child.try_wait().expect("wait").is_some() {
            killed_at = Some(since.elapsed().as_secs_f64());
        }
        assert!(
            Instant::now() < deadline,
            "not killed within {max:?}:\n{}",
            timeline(&ticks)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (ticks, killed_at.expect("set above"))
}

/// One run of a leaking gohog (`env`, `args`) in a new v1 cgroup of
/// `limit_mib` to its real OOM kill, with headroom watching: what was
/// recorded and when it died.
pub struct ToTheKill {
    /// Removed when the run is dropped, at the end of the test.
    pub cg: V1Cgroup,
    pub ticks: Vec<Tick>,
    /// Seconds from gohog's start.
    pub killed_at: f64,
    /// When memory the kernel cannot reclaim (usage less the file LRU)
    /// first reached 98 % of the limit: out of memory. The kill follows at
    /// once or after a reclaim stall (the binary's pages evicted and read
    /// again) of up to tens of seconds.
    pub out_at: f64,
    /// The timeline, for failure messages.
    pub tl: String,
}

impl ToTheKill {
    /// Plays the run with headroom's `flags` (beside `--pid` and
    /// `--go-url`); `each` sees the cgroup, headroom and the seconds since
    /// the start at every tick. Fails unless the kernel OOM-killed gohog.
    pub fn run(
        name: &str,
        limit_mib: u64,
        env: &[(&str, &str)],
        args: &[&str],
        flags: &[&str],
        max: Duration,
        each: impl FnMut(&V1Cgroup, &Headroom, f64),
    ) -> ToTheKill {
        Self::run_with(
            name,
            limit_mib,
            env,
            args,
            |hog| headroom_watching(hog, flags),
            max,
            each,
        )
    }

    /// The same with headroom started by `start`.
    pub fn run_with(
        name: &str,
        limit_mib: u64,
        env: &[(&str, &str)],
        args: &[&str],
        start_headroom: impl FnOnce(&GoHog) -> Headroom,
        max: Duration,
        mut each: impl FnMut(&V1Cgroup, &Headroom, f64),
    ) -> ToTheKill {
        let cg = V1Cgroup::create(name, limit_mib << 20);
        let start = Instant::now();
        let mut hog = GoHog::start(&cg, env, args);
        let hr = start_headroom(&hog);
        let mut out_at = None;
        let (ticks, killed_at) = record_until_killed(&hr, &mut hog, start, max, |now| {
            if out_at.is_none() && cg.unreclaimable() as f64 >= 0.98 * (limit_mib << 20) as f64 {
                out_at = Some(now);
            }
            each(&cg, &hr, now)
        });
        let tl = timeline(&ticks);
        assert!(
            cg.read("memory.oom_control").contains("oom_kill 1"),
            "a real OOM kill:\n{tl}"
        );
        ToTheKill {
            cg,
            ticks,
            killed_at,
            out_at: out_at.unwrap_or(killed_at).min(killed_at),
            tl,
        }
    }

    /// When the risk first reached `level` (1 warning, 2 critical).
    pub fn first(&self, level: u64) -> f64 {
        self.ticks
            .iter()
            .find(|k| k.risk >= level)
            .map(|k| k.t)
            .unwrap_or_else(|| {
                panic!(
                    "no risk {level} before the kill at {:.0} s:\n{}",
                    self.killed_at, self.tl
                )
            })
    }
}

/// A workload that must never raise the risk, start-up included.
pub struct Calm {
    pub name: &'static str,
    pub limit_mib: u64,
    /// Causes that must be diagnosed by the end.
    pub expect: &'static [&'static str],
}

/// Runs headroom beside a calm workload for `secs`; returns the ticks.
pub fn watch_calm(hr: &Headroom, secs: u64) -> Vec<Tick> {
    record(hr, Duration::from_secs(1), Duration::from_secs(secs), |_| false)
}

pub fn assert_calm(c: &Calm, ticks: &[Tick]) {
    let tl = timeline(ticks);
    assert!(ticks.len() > 30, "{}: too short:\n{tl}", c.name);
    if let Some(k) = ticks.iter().find(|k| k.risk > 0) {
        panic!("{}: false alarm at {:.0} s:\n{tl}", c.name, k.t);
    }
    for bad in [
        "heap_leak",
        "off_heap_growth",
        "goroutine_leak",
        "gc_thrash",
        "thp_bloat",
    ] {
        assert!(
            ticks.iter().all(|k| !k.causes.iter().any(|x| x == bad)),
            "{}: {bad} called:\n{tl}",
            c.name
        );
    }
    let last = &ticks.last().unwrap().causes;
    for want in c.expect {
        assert!(
            last.iter().any(|x| x == want),
            "{}: {want} not diagnosed ({last:?}):\n{tl}",
            c.name
        );
    }
}

/// Starts `headroom check` on `hog` (its `go_path` endpoint) sampling for
/// `secs` seconds every 500 ms (Go every second); its output is piped.
pub fn spawn_check(hog: &GoHog, go_path: &str, secs: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["check", "--pid", &hog.pid().to_string(), "--go-url", &hog.url(go_path)])
        .args([
            "--for",
            &format!("{secs}s"),
            "--interval",
            "500ms",
            "--go-interval",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("headroom check")
}

/// headroom watching `hog` at a fast pace (cgroup every 500 ms, Go every
/// second, from its `go_path` endpoint).
pub fn headroom_fast(hog: &GoHog, go_path: &str) -> Headroom {
    Headroom::start(&[
        "--pid",
        &hog.pid().to_string(),
        "--go-url",
        &hog.url(go_path),
        "--interval",
        "500ms",
        "--go-interval",
        "1s",
    ])
}
