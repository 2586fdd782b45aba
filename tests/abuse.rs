//! Load and abuse against the real binary: slow-header connections, huge,
//! silent and truncated Go endpoints, a request flood, a stalled poller, and
//! clients that ask for a heap profile and never read it.
//! In each, headroom must keep answering `/metrics`, keep polling, and keep
//! its peak RSS (VmHWM) under [`PEAK_RSS_LIMIT`]. Every figure is printed
//! (`cargo test --test abuse -- --nocapture` shows them). The binary is the
//! release build (`cargo build --release` first).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The chart gives headroom 32 MiB; half of it is the budget under abuse.
const PEAK_RSS_LIMIT: u64 = 16 << 20;
const MIB: f64 = 1048576.0;

/// The release binary, the one that ships: the peak RSS is about it. (The
/// debug binary maps ~10 MiB of unoptimised code before serving anything.)
/// It must be newer than every source, so a stale build is never measured.
/// `HEADROOM_BIN` names another binary to measure (no check then).
fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HEADROOM_BIN") {
        return PathBuf::from(bin);
    }
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_headroom"));
    let bin = debug
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("release/headroom"))
        .unwrap_or_else(|| panic!("no target directory above {}", debug.display()));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `cargo build --release` first (scripts/test.sh does)",
            bin.display()
        )
    });
    let root = project_root();
    let mut sources = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    collect_files(&root.join("src"), &mut sources);
    for src in sources {
        let changed = std::fs::metadata(&src).and_then(|m| m.modified());
        if changed.is_ok_and(|c| c > built) {
            panic!(
                "{} is older than {}: run `cargo build --release` first (scripts/test.sh does)",
                bin.display(),
                src.display()
            );
        }
    }
    bin
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// headroom on the v2 fixture tree (target PID 4242), polling every 100 ms.
fn start_fixture(extra: &[&str]) -> Headroom {
    start_on_root(&fixture("v2"), extra)
}

fn start_on_root(root: &Path, extra: &[&str]) -> Headroom {
    let proc_root = root.join("proc");
    let cgroup_root = root.join("sys/fs/cgroup");
    let mut args: Vec<String> = vec![
        "--proc-root".into(),
        proc_root.display().to_string(),
        "--cgroup-root".into(),
        cgroup_root.display().to_string(),
        "--pid".into(),
        "4242".into(),
        "--interval".into(),
        "100ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let hr = Headroom::start_with(std::process::Command::new(release_binary()), &refs);
    wait_polls(&hr, 1.0);
    hr
}

fn status_field(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{path}: no {field} line"))
}

/// Peak resident set of `pid` since it started.
fn vm_hwm(pid: u32) -> u64 {
    status_field(pid, "VmHWM")
}

fn threads(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path}: no Threads line"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn poll_count(hr: &Headroom) -> f64 {
    hr.metrics()
        .get("headroom_poll_duration_seconds_count")
        .copied()
        .unwrap_or(0.0)
}

/// Waits until at least `n` polls have finished.
fn wait_polls(hr: &Headroom, n: f64) -> f64 {
    hr.wait_metrics(Duration::from_secs(30), &format!("{n} polls"), |m| {
        m.get("headroom_poll_duration_seconds_count").copied().unwrap_or(0.0) >= n
    })["headroom_poll_duration_seconds_count"]
}

/// The three properties every scenario keeps: `/metrics` answers, polls go
/// on after the abuse, and the peak RSS stayed under the limit.
fn assert_survived(hr: &Headroom, scenario: &str, polls_before: f64) {
    let after = wait_polls(hr, polls_before + 5.0);
    let hwm = vm_hwm(hr.child.id());
    println!(
        "{scenario}: peak RSS (VmHWM) {:.1} MiB, polls {polls_before} -> {after}",
        hwm as f64 / MIB
    );
    assert!(
        hwm < PEAK_RSS_LIMIT,
        "{scenario}: headroom's peak RSS (VmHWM) was {:.1} MiB, over the {:.0} MiB limit\nlog:\n{}",
        hwm as f64 / MIB,
        PEAK_RSS_LIMIT as f64 / MIB,
        hr.log()
    );
}

/// Raises this test process's descriptor limit (shared by its threads).
fn raise_nofile(n: u64) {
    let pid = std::process::id().to_string();
    let prlimit = require_program("prlimit");
    let st = std::process::Command::new(prlimit)
        .args(["--pid", &pid, &format!("--nofile={n}:{n}")])
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit --nofile={n} failed (needs root): {st}");
}

#[test]
fn a_thousand_slow_header_connections() {
    const CONNS: usize = 1000;
    const HEAD_BYTES: usize = 12 * 1024;
    /// The server's header read timeout is 5 s: wait longer than that.
    const HOLD: Duration = Duration::from_secs(9);
    raise_nofile(4096);
    let hr = start_fixture(&[]);
    let pid = hr.child.id();
    let before = poll_count(&hr);
    let fds_before = open_fds(pid);
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: headroom\r\nX-Slow: ".to_vec();
    head.resize(HEAD_BYTES, b'a');
    let mut held = Vec::with_capacity(CONNS);
    let mut connect_failed = 0;
    for _ in 0..CONNS {
        match TcpStream::connect_timeout(&hr.addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                // A refused connection may already be closed: not an error.
                let _ = s.write_all(&head);
                held.push(s);
            }
            Err(_) => connect_failed += 1,
        }
    }
    let started = Instant::now();
    let (mut ok, mut refused, mut failed, mut max_fds) = (0, 0, 0, 0);
    while started.elapsed() < HOLD {
        max_fds = max_fds.max(open_fds(pid));
        match http_get(hr.addr, "/metrics") {
            Ok((200, _)) => ok += 1,
            Ok((503, _)) => refused += 1,
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Which of the slow connections did the server close?
    let mut still_open = 0;
    for s in &mut held {
        if connection_open(s) {
            still_open += 1;
        }
    }
    println!(
        "slow headers: {CONNS} connections × {HEAD_BYTES} B head ({connect_failed} failed to connect); \
         during {HOLD:?}: /metrics {ok} ok, {refused} refused (503), {failed} failed; \
         headroom fds {fds_before} before, {max_fds} max; {still_open} still open after {HOLD:?}"
    );
    assert!(
        max_fds <= fds_before + 256 + 16,
        "headroom held {max_fds} descriptors ({fds_before} before): the connection cap (256) did not hold"
    );
    assert_eq!(
        still_open, 0,
        "{still_open} of {CONNS} slow-header connections were still open after {HOLD:?}: no header read timeout"
    );
    assert!(
        ok > 0,
        "/metrics never answered 200 while {CONNS} slow connections were held ({refused} refused, {failed} failed)"
    );
    drop(held);
    assert_survived(&hr, "slow headers", before);
}

/// Whether the peer still holds `s` open: closed is EOF or a reset after
/// whatever it sent (a 503, a 408).
fn connection_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// How the fake Go endpoint answers `/debug/vars`.
#[derive(Clone, Copy, Debug)]
enum GoMode {
    /// A valid expvar document of about this many bytes, the `memstats`
    /// last, behind one large map: streamed, never built in memory.
    Expvar(usize),
    /// Reads the request, never answers, holds the connection.
    Silent,
    /// Promises 1 MB, sends 100 KB of it, closes.
    ClosesMidBody,
}

/// A loopback HTTP endpoint standing in for a Go service.
struct FakeGo {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeGo {
    fn start(mode: GoMode) -> FakeGo {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local addr");
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let memstats = fixture_memstats();
        let (served2, stop2) = (served.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (served, stop, memstats) = (served2.clone(), stop2.clone(), memstats.clone());
                std::thread::spawn(move || {
                    answer(conn, mode, &memstats, &stop);
                    served.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        FakeGo { addr, served, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/debug/vars", self.addr)
    }

    /// Waits until `n` scrapes were answered (or given up on).
    fn wait_served(&self, n: usize, hr: &Headroom) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.served.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "headroom scraped the fake Go endpoint {} times in 60 s, expected {n}\nlog:\n{}",
                self.served.load(Ordering::SeqCst),
                hr.log()
            );
            // /metrics must answer all along.
            let (code, _) = hr.get("/metrics");
            assert_eq!(code, 200, "/metrics during the Go scrapes");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for FakeGo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The `memstats` object of the Go 1.19 expvar fixture, as JSON text.
fn fixture_memstats() -> Arc<String> {
    let path = fixture("go/expvar-go1.19.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    Arc::new(doc["memstats"].to_string())
}

fn read_head(conn: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) if head.len() < 64 * 1024 => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

fn answer(mut conn: TcpStream, mode: GoMode, memstats: &str, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
    if !read_head(&mut conn) {
        return;
    }
    match mode {
        GoMode::Expvar(size) => {
            let _ = stream_expvar(&mut conn, size, memstats);
        }
        GoMode::Silent => {
            // Hold the connection until headroom gives up or the test ends.
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::SeqCst) {
                match conn.read(&mut buf) {
                    Ok(0) => return,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                    Ok(_) => {}
                }
            }
        }
        GoMode::ClosesMidBody => {
            let _ =
                conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
            let mut body = br#"{"cmdline":["/app"],"pad":""#.to_vec();
            body.resize(100_000, b'x');
            let _ = conn.write_all(&body);
        }
    }
}

/// `{"cmdline":[...],"big":{"k00000000":"xxx…",…,"end":0},"memstats":{…}}`
/// of about `size` bytes, written in 64 KiB pieces with an exact length.
fn stream_expvar(conn: &mut TcpStream, size: usize, memstats: &str) -> std::io::Result<()> {
    const ENTRY: usize = 1024;
    let prefix = br#"{"cmdline":["/app","-flag"],"big":{"#;
    let suffix = format!(r#""end":0}},"memstats":{memstats}}}"#);
    let entries = size.saturating_sub(prefix.len() + suffix.len()) / ENTRY;
    let len = prefix.len() + entries * ENTRY + suffix.len();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {len}\r\n\r\n"
    )?;
    conn.write_all(prefix)?;
    let pad = "x".repeat(ENTRY - 15);
    let mut piece = Vec::with_capacity(64 * 1024 + ENTRY);
    for i in 0..entries {
        piece.extend_from_slice(format!(r#""k{i:08}":"{pad}","#).as_bytes());
        if piece.len() >= 64 * 1024 {
            conn.write_all(&piece)?;
            piece.clear();
        }
    }
    piece.extend_from_slice(suffix.as_bytes());
    conn.write_all(&piece)
}

fn go_metric(hr: &Headroom, name: &str) -> Option<f64> {
    hr.metrics().get(&format!("{name}{{source=\"go\"}}")).copied()
}

fn go_scenario(mode: GoMode, go_interval: &str, scrapes: usize) -> Headroom {
    let go = FakeGo::start(mode);
    let url = go.url();
    let hr = start_fixture(&["--go-url", &url, "--go-interval", go_interval]);
    let before = poll_count(&hr);
    go.wait_served(scrapes, &hr);
    assert_survived(&hr, &format!("Go endpoint {mode:?}"), before);
    hr
}

#[test]
fn a_4_mb_debug_vars_is_read_in_bounded_memory() {
    let hr = go_scenario(GoMode::Expvar(4_000_000), "1s", 4);
    let up = go_metric(&hr, "headroom_source_up");
    assert_eq!(
        up,
        Some(1.0),
        "a valid 4 MB /debug/vars was not read: headroom_source_up{{source=\"go\"}} = {up:?}\nlog:\n{}",
        hr.log()
    );
}

#[test]
fn a_100_mb_debug_vars_stays_bounded() {
    let hr = go_scenario(GoMode::Expvar(100_000_000), "2s", 3);
    let up = go_metric(&hr, "headroom_source_up");
    let errors = go_metric(&hr, "headroom_source_errors_total");
    println!("100 MB /debug/vars: go up {up:?}, go errors {errors:?}");
    assert!(
        up == Some(1.0) || errors.unwrap_or(0.0) >= 1.0,
        "the Go source reported neither success nor an error after 3 scrapes of 100 MB"
    );
}

#[test]
fn a_go_endpoint_that_never_answers() {
    let hr = go_scenario(GoMode::Silent, "500ms", 4);
    let errors = go_metric(&hr, "headroom_source_errors_total").unwrap_or(0.0);
    assert_eq!(
        go_metric(&hr, "headroom_source_up"),
        Some(0.0),
        "a silent Go endpoint is not up"
    );
    assert!(errors >= 1.0, "no Go source error counted for a silent endpoint");
}

#[test]
fn a_go_endpoint_that_closes_mid_body() {
    let hr = go_scenario(GoMode::ClosesMidBody, "200ms", 5);
    let errors = go_metric(&hr, "headroom_source_errors_total").unwrap_or(0.0);
    assert_eq!(
        go_metric(&hr, "headroom_source_up"),
        Some(0.0),
        "a truncated body counted as up"
    );
    assert!(errors >= 1.0, "no Go source error counted for truncated bodies");
}

/// One keep-alive client: `n` GETs alternating /metrics and /api/v1/status;
/// returns (200s, other answers or failures).
fn flood_client(addr: SocketAddr, n: usize, deadline: Instant) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    let mut conn: Option<TcpStream> = None;
    for i in 0..n {
        if Instant::now() > deadline {
            bad += n - i;
            break;
        }
        let path = if i % 2 == 0 { "/metrics" } else { "/api/v1/status" };
        let s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(_) => {
                    bad += 1;
                    continue;
                }
            },
        };
        match keep_alive_get(s, addr, path) {
            Ok((200, s)) => {
                ok += 1;
                conn = Some(s);
            }
            Ok((_, s)) => {
                bad += 1;
                conn = Some(s);
            }
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

fn keep_alive_get(mut s: TcpStream, addr: SocketAddr, path: &str) -> std::io::Result<(u16, TcpStream)> {
    // One write per request: a request split over several writes waits on
    // Nagle and delayed ACKs.
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, "no content-length"))?;
        if buf.len() >= end + 4 + len {
            return Ok((code, s));
        }
    }
}

#[test]
fn a_flood_of_metrics_and_status_requests() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 2500;
    let hr = start_fixture(&[]);
    let before = poll_count(&hr);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let addr = hr.addr;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || flood_client(addr, PER_CLIENT, deadline)))
        .collect();
    let (mut ok, mut bad) = (0, 0);
    for t in threads {
        let (o, b) = t.join().expect("client thread");
        ok += o;
        bad += b;
    }
    let took = started.elapsed();
    let polls_during = poll_count(&hr) - before;
    println!(
        "flood: {} requests over {CLIENTS} keep-alive connections: {ok} ok, {bad} not ok, in {took:.1?} ({:.0} req/s); {polls_during} polls meanwhile",
        CLIENTS * PER_CLIENT,
        ok as f64 / took.as_secs_f64()
    );
    assert_eq!(
        bad,
        0,
        "{bad} of {} flood requests were not answered 200",
        CLIENTS * PER_CLIENT
    );
    assert!(polls_during >= 1.0, "no poll finished during the flood ({took:?})");
    assert_survived(&hr, "flood", before);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
        }
    }
}

fn healthz(hr: &Headroom) -> u16 {
    hr.get("/healthz").0
}

fn wait_healthz(hr: &Headroom, want: u16, within: Duration, why: &str) -> Duration {
    let started = Instant::now();
    loop {
        let code = healthz(hr);
        if code == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/healthz still {code} after {within:?} ({why}); wanted {want}\nlog:\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stalled_poller_fails_healthz() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("v2");
    copy_tree(&fixture("v2"), &root);
    let hr = start_on_root(&root, &[]);
    wait_healthz(&hr, 200, Duration::from_secs(20), "polls are running");
    let m = hr.metrics();
    let last = m.get("headroom_last_poll_timestamp_seconds").copied();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        last.is_some_and(|t| (t - now).abs() < 60.0),
        "headroom_last_poll_timestamp_seconds is {last:?}, not a time near now ({now})"
    );

    // /proc/4242/status is read on every poll: a FIFO nobody writes makes
    // the poller's open block, as a read stuck on the target's mmap lock would.
    let status = root.join("proc/4242/status");
    let real = root.join("proc/4242/status.real");
    let fifo = root.join("proc/4242/status.fifo");
    std::fs::rename(&status, &real).expect("move status aside");
    mkfifo(&status);
    // It takes a few intervals (3 of them, and at least 3 s); 30 s keeps a
    // loaded machine from failing the test, and the figure is printed.
    let stalled_after = wait_healthz(&hr, 503, Duration::from_secs(30), "the poller is blocked on a FIFO");
    println!("stalled poller: /healthz 503 {stalled_after:.1?} after the stall began (interval 100 ms)");
    let (code, _) = hr.get("/metrics");
    assert_eq!(code, 200, "/metrics must answer while the poller is stalled");

    // Unblock: the real file back, then the blocked open gets a writer and EOF.
    std::fs::rename(&status, &fifo).expect("move the FIFO aside");
    std::fs::rename(&real, &status).expect("restore status");
    release_fifo(&fifo);
    let recovered = wait_healthz(&hr, 200, Duration::from_secs(30), "the poller was released");
    println!("stalled poller: /healthz 200 again {recovered:.1?} after release");
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new(require_program("mkfifo"))
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {} failed", path.display());
}

/// Opens the FIFO for writing without blocking (the poller is its reader)
/// and closes it at once, so the reader sees end of file.
fn release_fifo(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return drop(f),
            // ENXIO: no reader has it open (yet).
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{}: the stalled poller never opened it: {e}", path.display()),
        }
    }
}

/// A GET on a new connection: its status and how long the answer took.
fn timed_get(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let code = http_get(addr, path).map_or(0, |(code, _)| code);
    (code, started.elapsed())
}

/// What a client that sent its request and read nothing was answered: the
/// status code, or 0 when nothing came.
fn answered(s: &mut TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    String::from_utf8_lossy(&head[..got])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn stalled_profile_readers_and_slow_heads_starve_no_probe() {
    const READERS: usize = 250;
    const SLOW_HEADS: usize = 300;
    /// More than loopback's socket buffers hold (about 10 MiB with the
    /// default tcp_rmem and tcp_wmem): no download can finish while its
    /// reader reads no further than the status line.
    const PROFILE_BYTES: usize = 24 << 20;
    const MAX_DOWNLOADS: usize = 4;
    /// Shorter than the header read timeout (5 s): the slow heads are all
    /// still there, holding every slot, while the probes arrive.
    const HOLD: Duration = Duration::from_secs(3);
    /// The kubelet's probe timeout is 1 s by default (the chart sets 2 s).
    const PROBE_WITHIN: Duration = Duration::from_secs(1);
    raise_nofile(4096);
    let dir = tempfile::tempdir().expect("temp dir");
    let name = "heap-1764500000000-warning.pb.gz";
    // Incompressible bytes: nothing between headroom and the client shrinks them.
    let mut x: u32 = 1;
    let bytes: Vec<u8> = (0..PROFILE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(dir.path().join(name), &bytes).expect("write the profile");
    let hr = start_fixture(&["--profile-dir", dir.path().to_str().expect("utf-8 path")]);
    let pid = hr.child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hr.status()["profiles"].as_array().is_none_or(|p| p.is_empty()) {
        assert!(Instant::now() < deadline, "profile not listed: {}", hr.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = poll_count(&hr);
    let (rss_before, threads_before, fds_before) = (status_field(pid, "VmRSS"), threads(pid), open_fds(pid));

    let request = format!("GET /profiles/{name} HTTP/1.1\r\nHost: headroom\r\n\r\n");
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let mut s = TcpStream::connect_timeout(&hr.addr, Duration::from_secs(5)).expect("connect a reader");
        let _ = s.write_all(request.as_bytes());
        readers.push(s);
    }
    // Every reader's answer, before anything else arrives: below the
    // connection cap nothing is evicted, so the download limit alone
    // decides who is sent the profile.
    let outcomes: Vec<u16> = readers.iter_mut().map(answered).collect();
    let downloading = outcomes.iter().filter(|&&c| c == 200).count();
    let refused = outcomes.iter().filter(|&&c| c == 503).count();
    let mut slow = Vec::with_capacity(SLOW_HEADS);
    for _ in 0..SLOW_HEADS {
        if let Ok(mut s) = TcpStream::connect_timeout(&hr.addr, Duration::from_secs(5)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: headroom\r\nX-Slow: ");
            slow.push(s);
        }
    }
    let started = Instant::now();
    let (mut probes, mut slowest, mut failed) = (0, Duration::ZERO, Vec::new());
    let (mut max_fds, mut max_threads) = (0, 0);
    while started.elapsed() < HOLD {
        for path in ["/healthz", "/metrics"] {
            let (code, took) = timed_get(hr.addr, path);
            probes += 1;
            slowest = slowest.max(took);
            if code != 200 || took > PROBE_WITHIN {
                failed.push(format!("{path}: {code} in {took:.2?}"));
            }
        }
        max_fds = max_fds.max(open_fds(pid));
        max_threads = max_threads.max(threads(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let hwm = vm_hwm(pid);
    let rss_during = status_field(pid, "VmRSS");
    println!(
        "stalled profile readers: {READERS} × GET of a {} MiB profile, read no further than the status \
         line ({downloading} downloading, {refused} answered 503), then {SLOW_HEADS} slow heads; \
         during {HOLD:?}: {probes} probes on new connections, slowest {slowest:.2?}, {} failed; \
         headroom fds {fds_before} before, {max_fds} max; threads {threads_before} before, {max_threads} max; \
         RSS {:.1} MiB before, {:.1} MiB while held, peak (VmHWM) {:.1} MiB",
        PROFILE_BYTES >> 20,
        failed.len(),
        rss_before as f64 / MIB,
        rss_during as f64 / MIB,
        hwm as f64 / MIB,
    );
    assert!(
        max_fds >= fds_before + 250,
        "headroom held only {max_fds} descriptors ({fds_before} before): the connection cap was never reached, \
         so the probes proved nothing"
    );
    assert!(
        failed.is_empty(),
        "probes not answered 200 within {PROBE_WITHIN:?}: {failed:?}"
    );
    // At most 4 at once: the rest are refused at once.
    assert!(
        (1..=MAX_DOWNLOADS).contains(&downloading),
        "{downloading} of {READERS} stalled readers were sent the profile at once (at most {MAX_DOWNLOADS})"
    );
    assert_eq!(
        refused,
        READERS - downloading,
        "every reader not sent the profile is refused with a 503 at once: {outcomes:?}"
    );
    // Every download's disk reads run on one thread.
    assert!(
        max_threads <= threads_before + 1,
        "headroom ran {max_threads} threads ({threads_before} before) under {READERS} stalled readers"
    );
    assert!(
        hwm < PEAK_RSS_LIMIT,
        "headroom's peak RSS (VmHWM) was {:.1} MiB under {READERS} stalled profile readers, over {:.0} MiB\nlog:\n{}",
        hwm as f64 / MIB,
        PEAK_RSS_LIMIT as f64 / MIB,
        hr.log()
    );

    // They leave: threads and memory come back down (the blocking pool's
    // threads end after 10 s idle).
    drop(readers);
    drop(slow);
    let left = Instant::now();
    let (rss_after, threads_after) = loop {
        let (rss, t) = (status_field(pid, "VmRSS"), threads(pid));
        if (t <= threads_before && rss <= rss_before + (2 << 20)) || left.elapsed() > Duration::from_secs(30) {
            break (rss, t);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!(
        "stalled profile readers gone: after {:.1?}, RSS {:.1} MiB, threads {threads_after}",
        left.elapsed(),
        rss_after as f64 / MIB
    );
    assert!(
        threads_after <= threads_before,
        "{threads_after} threads 30 s after the readers left ({threads_before} before)"
    );
    assert!(
        rss_after <= rss_before + (2 << 20),
        "RSS {:.1} MiB 30 s after the readers left ({:.1} MiB before)",
        rss_after as f64 / MIB,
        rss_before as f64 / MIB
    );
    let mut s = TcpStream::connect_timeout(&hr.addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    s.write_all(format!("GET /profiles/{name} HTTP/1.1\r\nHost: headroom\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the profile");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head");
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "the profile is not served once they left"
    );
    assert!(raw[end + 4..] == bytes[..], "the profile served differs from the file");
    assert_survived(&hr, "stalled profile readers", before);
}
