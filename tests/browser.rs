//! The dashboard in a real browser: Debian's headless Chromium loads the page
//! that the real binary serves while it watches a real Go process in a real
//! v1 memory cgroup, and the test reads the DOM after the page's scripts ran.
//!
//! Two cases: a heap leak (risk, time to OOM, `heap_leak`, a profile saved
//! on the risk rise) and memory freed with MADV_FREE (`lazy_free`, not a
//! risk, a profile that was in --profile-dir before headroom started).
//! Screenshots of each case land in target/browser-artifacts/.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const BROWSER_HINT: &str = "run scripts/install-browser-deps.sh (scripts/test.sh runs it)";
/// Virtual time the page gets before the DOM is dumped: two refreshes.
const BUDGET_MS: u64 = 7000;

fn chromium() -> PathBuf {
    let p = PathBuf::from(CHROMIUM);
    assert!(p.exists(), "{CHROMIUM} is not installed: {BROWSER_HINT}");
    p
}

fn artifacts() -> PathBuf {
    let d = project_root().join("target/browser-artifacts");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// Runs headless Chromium once on `url` with `extra` flags, in a fresh
/// profile and a process group of its own (killed whole on timeout), and
/// returns its stdout.
fn chromium_run(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={BUDGET_MS}"))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {CHROMIUM}: {e}: {BROWSER_HINT}"));
    let pgid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for chromium") {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The browser's helpers (zygote, renderer, GPU process) share its group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(st) if st.success() => stdout,
        Some(st) => panic!("chromium on {url} failed ({st}):\n{stderr}"),
        None => panic!("chromium on {url} did not finish within 90 s:\n{stderr}"),
    }
}

fn dump_dom(url: &str) -> String {
    let dom = chromium_run(url, &["--dump-dom".into()]);
    assert!(dom.contains("id=\"verdict\""), "not the dashboard:\n{dom}");
    dom
}

fn screenshot(url: &str, file: &Path, width: u32, height: u32, dark: bool) {
    let mut extra = vec![
        format!("--screenshot={}", file.display()),
        format!("--window-size={width},{height}"),
        "--force-device-scale-factor=1".into(),
    ];
    if dark {
        extra.push("--force-dark-mode".into());
        extra.push("--blink-settings=preferredColorScheme=0".into());
    }
    let _ = std::fs::remove_file(file);
    chromium_run(url, &extra);
    let png = std::fs::read(file).unwrap_or_else(|e| panic!("screenshot {}: {e}", file.display()));
    assert!(png.starts_with(b"\x89PNG"), "{} is not a PNG", file.display());
}

/// Undoes the escaping of the DOM serializer.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The text of the element whose opening tag carries `id="ID"` (no nested
/// elements).
fn text_of(dom: &str, id: &str) -> String {
    let needle = format!("id=\"{id}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let rest = &dom[at..];
    let start = rest.find('>').expect("end of tag") + 1;
    let end = rest[start..].find('<').expect("closing tag") + start;
    unescape(&rest[start..end])
}

/// The value of attribute `attr` in the opening tag that contains `marker`.
fn attr_of(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let open = dom[..at + 1].rfind('<')?;
    let close = at + dom[at..].find('>')?;
    let tag = &dom[open..close];
    let key = format!(" {attr}=\"");
    let v = tag.find(&key)? + key.len();
    let end = tag[v..].find('"')? + v;
    Some(unescape(&tag[v..end]))
}

/// The rendered document without the page's own script text.
fn markup(dom: &str) -> &str {
    dom.find("<script").map_or(dom, |i| &dom[..i])
}

/// `data-points` of each chart path, by `data-series`.
fn chart_series(dom: &str) -> BTreeMap<String, u64> {
    let body = markup(dom);
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(i) = body[from..].find("<path ") {
        let at = from + i;
        let tag = &body[at..at + body[at..].find('>').map_or(body.len() - at, |e| e + 1)];
        if let Some(name) = attr_of(tag, "<path ", "data-series") {
            let points = attr_of(tag, "<path ", "data-points")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.insert(name, points);
        }
        from = at + 1;
    }
    out
}

/// The dashboard's words for a time to OOM (the page's `words()`).
fn words(s: f64) -> String {
    if s < 90.0 {
        format!("≈ {} s", s.round().max(0.0))
    } else if s < 90.0 * 60.0 {
        format!("≈ {} min", (s / 60.0).round())
    } else if s < 48.0 * 3600.0 {
        let h = format!("{:.1}", s / 3600.0);
        format!("≈ {} h", h.strip_suffix(".0").unwrap_or(&h))
    } else {
        format!("≈ {} d", (s / 86400.0).round())
    }
}

/// Records every distinct /api/v1/status (by `time_ms`) while a browser
/// runs, so the DOM can be compared with the very status it rendered.
struct StatusLog {
    seen: Arc<Mutex<BTreeMap<u64, serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusLog {
    fn start(addr: SocketAddr) -> StatusLog {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((200, body)) = http_get(addr, "/api/v1/status") {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                        if let Some(t) = v["time_ms"].as_u64() {
                            seen2.lock().unwrap().insert(t, v);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        StatusLog {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeMap<u64, serde_json::Value> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A GET that keeps the body's bytes (profiles are gzip).
fn get_bytes(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header end"));
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap_or(0);
            if n == 0 || rest.len() < nl + 2 + n {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[(nl + 4 + n).min(rest.len())..];
        }
        body = out;
    }
    (code, body)
}

/// Downloads the profile the page links to and has `go tool pprof` read it.
fn profile_link_opens_in_pprof(hr: &Headroom, dom: &str, status: &serde_json::Value) {
    let href = attr_of(dom, "class=\"profile\"", "href").unwrap_or_else(|| {
        panic!(
            "no profile link in the DOM although the status lists {}",
            status["profiles"]
        )
    });
    let name = href.strip_prefix("profiles/").unwrap_or_else(|| panic!("link {href}"));
    let listed: Vec<String> = status["profiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["path"].as_str())
                .filter_map(|p| Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    assert!(listed.iter().any(|l| l == name), "link {href} is not one of {listed:?}");
    let (code, body) = get_bytes(hr.addr, &format!("/profiles/{name}"));
    assert_eq!(
        code,
        200,
        "GET /profiles/{name} (the endpoint is the daemon's): {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        body.starts_with(&[0x1f, 0x8b]),
        "a gzipped profile, got {} bytes",
        body.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, &body).unwrap();
    let go = require_program("go");
    let out = Command::new(go)
        .args(["tool", "pprof", "-raw"])
        .arg(&file)
        .env("GOCACHE", project_root().join("target/go-cache"))
        .output()
        .expect("go tool pprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Samples:"),
        "go tool pprof -raw {name}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(&format!("go tool pprof -sample_index=inuse_space -top {name}")),
        "the page shows the pprof command for {name}"
    );
}

/// Loads the page, and checks what it shows against the status it rendered.
/// Returns the DOM and that status.
fn check_page(hr: &Headroom, case: &str) -> (String, serde_json::Value) {
    let url = format!("http://{}/", hr.addr);
    let log = StatusLog::start(hr.addr);
    std::thread::sleep(Duration::from_millis(300));
    let dom = dump_dom(&url);
    std::thread::sleep(Duration::from_millis(300));
    let seen = log.finish();
    std::fs::write(artifacts().join(format!("{case}.html")), &dom).unwrap();
    let dom = markup(&dom).to_owned();

    let rendered: u64 = attr_of(&dom, "id=\"verdict\"", "data-time-ms")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the page rendered no status:\n{dom}"));
    let st = seen
        .get(&rendered)
        .unwrap_or_else(|| {
            panic!(
                "the page shows the status of {rendered}, not one of those served meanwhile: {:?}",
                seen.keys().collect::<Vec<_>>()
            )
        })
        .clone();
    let a = &st["analysis"];

    // The verdict: risk and time to OOM as the status says.
    let risk = a["risk"].as_str().expect("analysis.risk");
    assert_eq!(text_of(&dom, "risk"), risk);
    // The tab's title says the risk when it is not ok.
    let raw = std::fs::read_to_string(artifacts().join(format!("{case}.html"))).unwrap();
    let title = raw
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("");
    let want = if risk == "ok" {
        String::new()
    } else {
        format!("{} · ", risk.to_uppercase())
    };
    assert!(
        title.starts_with(&want) && title.ends_with("headroom"),
        "title {title:?} for risk {risk}"
    );
    assert_eq!(attr_of(&dom, "id=\"verdict\"", "data-risk").as_deref(), Some(risk));
    assert_eq!(
        attr_of(&dom, "id=\"verdict\"", "class").as_deref(),
        Some(&*format!("card wide {risk}"))
    );
    assert_eq!(text_of(&dom, "reason"), a["risk_reason"].as_str().unwrap());
    let tto_text = text_of(&dom, "tto");
    match a["time_to_oom_s"].as_f64() {
        Some(t) => assert_eq!(tto_text, words(t), "time to OOM {t} s"),
        None if a["warming_up"] == true => assert_eq!(tto_text, "warming up"),
        None => assert_eq!(tto_text, "not growing"),
    }
    let basis = st["limit_basis"].as_str().unwrap();
    assert!(
        text_of(&dom, "killer").starts_with(&format!("limit basis {basis} — ")),
        "{}",
        text_of(&dom, "killer")
    );

    // The chart: every series the daemon keeps, with points.
    let series = chart_series(&dom);
    let chart: String = dom
        .find("<svg id=\"chart\"")
        .map_or(String::new(), |i| dom[i..].chars().take(500).collect());
    for s in [
        "usage",
        "working_set",
        "unreclaimable",
        "rss",
        "limit",
        "go_heap_live",
        "go_next_gc",
    ] {
        assert!(
            series.get(s).copied().unwrap_or(0) >= 5,
            "chart series {s} missing or nearly empty: {series:?}; the chart: {chart}"
        );
    }

    // The diagnosis: each finding with its evidence and advice.
    let findings = a["findings"].as_array().expect("findings");
    for f in findings {
        let cause = f["cause"].as_str().unwrap();
        let at = dom
            .find(&format!("data-cause=\"{cause}\""))
            .unwrap_or_else(|| panic!("finding {cause} not shown"));
        let li = &dom[at..at + dom[at..].find("</li>").expect("</li>")];
        let li = unescape(li);
        for field in ["evidence", "advice"] {
            let want = f[field].as_str().unwrap();
            assert!(li.contains(want), "{cause}: {field} {want:?} not in {li}");
        }
    }
    // No banner: the daemon answered and its sources are up.
    assert!(
        attr_of(&dom, "id=\"banner\"", "hidden").is_some(),
        "unreachable banner shown"
    );
    assert!(
        attr_of(&dom, "id=\"srcbanner\"", "hidden").is_some(),
        "source-down banner shown"
    );

    let dir = artifacts();
    screenshot(&url, &dir.join(format!("{case}.png")), 1100, 1250, false);
    screenshot(&url, &dir.join(format!("{case}-phone-dark.png")), 412, 2400, true);
    (dom, st)
}

/// Bytes shown beside `label` in the breakdown's key ("400 MiB · 39 %").
fn breakdown_value(dom: &str, label: &str) -> f64 {
    let key = format!("{label}<span class=\"v\">");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {label:?} in the breakdown"))
        + key.len();
    let text = unescape(&dom[at..at + dom[at..].find('<').unwrap_or(0)]);
    let mut it = text.split_whitespace();
    let n: f64 = it
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label}: {text:?}"));
    let unit = match it.next() {
        Some("B") => 1.0,
        Some("KiB") => 1024.0,
        Some("MiB") => 1048576.0,
        Some("GiB") => 1073741824.0,
        other => panic!("{label}: unit {other:?} in {text:?}"),
    };
    n * unit
}

fn causes(st: &serde_json::Value) -> Vec<String> {
    st["analysis"]["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["cause"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Waits until `pred` holds on the status, or panics with the timeline.
fn wait_status(hr: &Headroom, max: Duration, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let mut ok = false;
    let ticks = record(hr, Duration::from_millis(500), max, |st| {
        ok = pred(st);
        ok
    });
    assert!(ok, "timed out waiting for {what}:\n{}", timeline(&ticks));
}

/// headroom watching `hog` every second, smaps_rollup every `smaps`, heap
/// profiles saved under `profiles`.
fn watch(hog: &GoHog, smaps: &str, profiles: &std::path::Path) -> Headroom {
    let pid = hog.pid().to_string();
    let url = hog.url("/debug/vars");
    Headroom::start(&[
        "--pid",
        &pid,
        "--go-url",
        &url,
        "--interval",
        "1s",
        "--go-interval",
        "1s",
        "--smaps-interval",
        smaps,
        "--profile-dir",
        profiles.to_str().unwrap(),
    ])
}

#[test]
fn a_heap_leak_shows_its_risk_time_to_oom_cause_and_profile() {
    chromium();
    let cg = V1Cgroup::create("browser-leak", 1 << 30);
    let mut hog = GoHog::start(&cg, &[], &["-leak", "4", "-garbage", "20"]);
    let profiles = tempfile::tempdir().unwrap();
    let hr = watch(&hog, "5s", profiles.path());
    wait_status(
        &hr,
        Duration::from_secs(120),
        "heap_leak, a time to OOM and a profile",
        |st| {
            causes(st).iter().any(|c| c == "heap_leak")
                && st["analysis"]["time_to_oom_s"].is_number()
                && st["analysis"]["risk"] != "ok"
                && st["profiles"].as_array().is_some_and(|p| !p.is_empty())
        },
    );
    let (dom, st) = check_page(&hr, "leak");
    assert!(causes(&st).iter().any(|c| c == "heap_leak"), "{}", st["analysis"]);
    assert!(
        chart_series(&dom).contains_key("prediction"),
        "a predicted OOM is drawn as a line to the limit"
    );
    profile_link_opens_in_pprof(&hr, &dom, &st);

    // Faster, to the real OOM kill: the chart marks it.
    hog.call("/leak?mib_per_s=40");
    let deadline = Instant::now() + Duration::from_secs(90);
    while hog.child.try_wait().expect("wait for gohog").is_none() {
        assert!(Instant::now() < deadline, "gohog was not OOM-killed within 90 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cg.read("memory.oom_control").contains("oom_kill 1"), "a real OOM kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = hr.get("/api/v1/history");
        let h: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let kinds: Vec<&str> = h["events"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["kind"].as_str()).collect())
            .unwrap_or_default();
        if kinds.contains(&"oom_kill") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no oom_kill event in GET /api/v1/history ({code}): {}",
            h["events"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let url = format!("http://{}/", hr.addr);
    let dom = dump_dom(&url);
    assert!(
        markup(&dom).contains("data-event=\"oom_kill\""),
        "the chart marks the OOM kill"
    );
    screenshot(&url, &artifacts().join("leak-killed.png"), 1100, 1250, false);
}

#[test]
fn memory_freed_lazily_is_diagnosed_not_alarmed() {
    chromium();
    let cg = V1Cgroup::create("browser-lazy", 1 << 30);
    let hog = GoHog::start(&cg, &[("GODEBUG", "madvdontneed=0")], &[]);
    // A heap profile already in --profile-dir: headroom lists it at start.
    let profiles = tempfile::tempdir().unwrap();
    let (code, heap) = get_bytes(hog.addr, "/debug/pprof/heap");
    assert_eq!(code, 200, "gohog /debug/pprof/heap");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(profiles.path().join(format!("heap-{now_ms}-warning.pb.gz")), heap).unwrap();
    hog.call("/hold?mib=400");
    hog.call("/drop");
    hog.call("/freeos");
    let hr = watch(&hog, "1s", profiles.path());
    wait_status(&hr, Duration::from_secs(90), "lazy_free past the warm-up", |st| {
        causes(st).iter().any(|c| c == "lazy_free") && st["analysis"]["warming_up"] == false
    });
    let (dom, st) = check_page(&hr, "lazy_free");
    assert_eq!(st["analysis"]["risk"], "ok", "lazy-free memory is no OOM risk");
    assert!(dom.contains("GODEBUG=madvdontneed=1"), "the advice names the fix");
    // The breakdown shows the lazy-free memory as such: what the file LRU
    // holds of the reclaimable-but-unreleased bytes.
    let m = &st["memory"];
    let file_lru = m["usage"].as_u64().unwrap() - m["unreclaimable"].as_u64().unwrap();
    let lazy = st["breakdown"]["reclaimable_unreleased"]
        .as_u64()
        .unwrap()
        .min(file_lru);
    assert!(lazy > 300 << 20, "lazy-free {lazy}");
    let shown = breakdown_value(&dom, "LazyFree (freed, still charged)");
    assert!(
        (shown - lazy as f64).abs() <= 1024.0 * 1024.0,
        "breakdown shows {shown} for LazyFree, status {lazy}"
    );
    profile_link_opens_in_pprof(&hr, &dom, &st);
}

#[test]
fn a_daemon_that_stopped_answering_is_said_so() {
    chromium();
    // The page as the real binary serves it ...
    let hr = Headroom::start(&[]);
    let (code, page) = hr.get("/");
    assert_eq!(code, 200);
    drop(hr);
    // ... served once from a port that then closes, as when the daemon dies
    // after the page was loaded: its fetches fail.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = [0u8; 4096];
            let n = stream.read(&mut req).unwrap_or(0);
            if req[..n].starts_with(b"GET / ") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                return; // the listener closes here
            }
        }
    });
    let dom = dump_dom(&format!("http://{addr}/"));
    server.join().unwrap();
    let dom = markup(&dom);
    assert!(attr_of(dom, "id=\"banner\"", "hidden").is_none(), "no banner:\n{dom}");
    let banner = text_of(dom, "banner");
    assert!(
        banner.starts_with(&format!("headroom at {addr} is unreachable (connection failed)")),
        "{banner}"
    );
    assert_eq!(text_of(dom, "reason"), "waiting for the first poll");
}

/// The `data-key` of each row of node mode's targets table, in order.
fn table_keys(dom: &str) -> Vec<String> {
    let body = markup(dom);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = body[from..].find("data-key=\"") {
        let at = from + i + "data-key=\"".len();
        let end = at + body[at..].find('"').expect("end of attribute");
        out.push(unescape(&body[at..end]));
        from = end;
    }
    out
}

/// The text of each cell of the table row whose key is `key`.
fn table_row(dom: &str, key: &str) -> Vec<String> {
    let body = markup(dom);
    let at = body
        .find(&format!("data-key=\"{key}\""))
        .unwrap_or_else(|| panic!("no row {key}:\n{body}"));
    let row = &body[at..at + body[at..].find("</tr>").expect("end of row")];
    let mut cells = Vec::new();
    let mut text = String::new();
    let mut in_tag = false;
    let mut tag = String::new();
    for c in row.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (false, c) => text.push(c),
            (true, '>') => {
                in_tag = false;
                if tag.starts_with("/td") || tag.starts_with("/th") {
                    cells.push(unescape(&text));
                }
                if tag.starts_with("td") || tag.starts_with("th") || tag.starts_with("/t") {
                    text.clear();
                }
            }
            (true, c) => tag.push(c),
        }
    }
    cells
}

/// `/api/v1/targets`' rows.
fn served_targets(hr: &Headroom) -> Vec<serde_json::Value> {
    let (code, body) = hr.get("/api/v1/targets");
    assert_eq!(code, 200, "/api/v1/targets: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("targets JSON");
    v["targets"].as_array().expect("targets").clone()
}

/// A served row's key in the path form, `_` for an empty part.
fn path_of(row: &serde_json::Value) -> String {
    ["namespace", "pod", "container"]
        .map(|k| match row[k].as_str().expect("key part") {
            "" => "_".to_owned(),
            v => v.to_owned(),
        })
        .join("/")
}

#[test]
fn node_mode_opens_on_the_targets_table_and_a_row_opens_that_targets_page() {
    use common::kubetree::KubeTree;
    chromium();
    const LEAK_POD: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const CALM_POD: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const LEAK_ID: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    const CALM_ID: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
    let leak_path = format!("_/{LEAK_POD}/{}", &LEAK_ID[..12]);
    let calm_path = format!("_/{CALM_POD}/{}", &CALM_ID[..12]);
    let mut tree = KubeTree::new();
    // The calm one comes first in the tree and by key: only its risk puts
    // the leak above it.
    let calm_cg = tree.container("besteffort", CALM_POD, CALM_ID, Some(128 << 20));
    let leak_cg = tree.container("burstable", LEAK_POD, LEAK_ID, Some(512 << 20));
    let _calm = GoHog::start(&calm_cg, &[], &["-hold", "8"]);
    // 1 MiB/s into 512 MiB: a warning within a minute, the kill minutes
    // after the test is done.
    let _leak = GoHog::start(&leak_cg, &[], &["-leak", "1"]);
    let root = tree.cgroup_root().display().to_string();
    let hr = Headroom::start_node(&["--cgroup-root", &root, "--interval", "500ms"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let served = loop {
        let rows = served_targets(&hr);
        let risk = |path: &str| {
            rows.iter()
                .find(|r| path_of(r) == path)
                .and_then(|r| r["risk"].as_str().map(str::to_owned))
        };
        let leak = risk(&leak_path);
        if matches!(leak.as_deref(), Some("warning" | "critical")) && risk(&calm_path).as_deref() == Some("ok") {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no warning on the leak with the calm one ok within 120 s: {rows:#?}\n{}",
            hr.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let order: Vec<String> = served.iter().map(path_of).collect();
    assert_eq!(order, [leak_path.clone(), calm_path.clone()], "served by risk");
    let base = format!("http://{}/", hr.addr);

    // The table: every target, in the order served (the riskier first),
    // each a link to its page.
    let dom = dump_dom(&base);
    let page = markup(&dom);
    assert!(
        attr_of(page, "id=\"targetsview\"", "hidden").is_none(),
        "no table:\n{page}"
    );
    assert_eq!(table_keys(page), order, "{page}");
    assert!(page.contains("<th scope=\"col\">risk</th>"), "column headers:\n{page}");
    for (path, pod, id) in [(&leak_path, LEAK_POD, LEAK_ID), (&calm_path, CALM_POD, CALM_ID)] {
        assert!(
            page.contains(&format!(
                "<th scope=\"row\"><a href=\"?target={path}\">{pod}/{}</a></th>",
                &id[..12]
            )),
            "no row naming and linking {path}:\n{page}"
        );
    }
    let leak_row = table_row(page, &leak_path);
    assert_eq!(leak_row.len(), 7, "{leak_row:?}");
    assert_eq!(leak_row[0], format!("{LEAK_POD}/{}", &LEAK_ID[..12]));
    assert_eq!(leak_row[1], "watched");
    assert!(matches!(leak_row[2].as_str(), "warning" | "critical"), "{leak_row:?}");
    assert!(leak_row[3].starts_with("≈ "), "time to OOM in words: {leak_row:?}");
    assert!(leak_row[5].ends_with(" MiB / 512 MiB"), "usage / limit: {leak_row:?}");
    assert!(leak_row[6].starts_with("go1."), "the Go version: {leak_row:?}");
    let calm_row = table_row(page, &calm_path);
    assert_eq!(calm_row[1..3], ["watched", "ok"], "{calm_row:?}");
    assert_eq!(calm_row[4], "–", "no causes: {calm_row:?}");
    assert!(calm_row[5].ends_with(" MiB / 128 MiB"), "usage / limit: {calm_row:?}");
    assert!(text_of(page, "who").starts_with("node mode · 2 containers"));
    assert!(dom.contains("<title>headroom · 2 containers</title>"), "title");
    assert!(
        page.contains("<main class=\"table-only\">"),
        "the per-target cards are hidden"
    );

    // A row opens today's page for that target, named in the title, read
    // from that target's own status.
    let dom = dump_dom(&format!("{base}?target={leak_path}"));
    let page = markup(&dom);
    let name = format!("{LEAK_POD}/{}", &LEAK_ID[..12]);
    assert!(dom.contains(&format!("{name} · headroom</title>")), "title:\n{page}");
    assert!(
        attr_of(page, "id=\"targetsview\"", "hidden").is_some(),
        "the table is hidden"
    );
    assert!(text_of(page, "who").starts_with(&name), "{}", text_of(page, "who"));
    assert!(
        attr_of(page, "id=\"back\"", "hidden").is_none(),
        "a way back to the table"
    );
    assert_eq!(attr_of(page, "id=\"back\"", "href").as_deref(), Some("./"));
    let level = text_of(page, "level");
    assert!(level.contains(" of 512 MiB limit"), "its own figures: {level}");
    let risk = attr_of(page, "id=\"verdict\"", "data-risk").unwrap_or_default();
    assert!(matches!(risk.as_str(), "warning" | "critical"), "its own risk: {risk}");
    assert!(
        text_of(page, "tto").starts_with("≈ "),
        "its time to OOM: {}",
        text_of(page, "tto")
    );
    assert!(
        chart_series(page).get("unreclaimable").is_some_and(|&n| n > 10),
        "its history is drawn: {:?}",
        chart_series(page)
    );
    let status_url = served[0]["status_url"].as_str().unwrap();
    assert_eq!(
        attr_of(page, "id=\"statuslink\"", "href")
            .map(|h| format!("/{h}"))
            .as_deref(),
        Some(status_url),
        "the status link is the target's own"
    );
    // The calm one's page shows its own figures, not the leak's.
    let dom = dump_dom(&format!("{base}?target={}", calm_path.replace('/', "%2F")));
    let page = markup(&dom);
    assert!(
        text_of(page, "level").contains(" of 128 MiB limit"),
        "{}",
        text_of(page, "level")
    );
    assert_eq!(attr_of(page, "id=\"verdict\"", "data-risk").as_deref(), Some("ok"));

    // A target that is not watched says so.
    let dom = dump_dom(&format!("{base}?target=_/nope/nope"));
    let page = markup(&dom);
    let banner = text_of(page, "banner");
    assert!(banner.starts_with("No target nope/nope is watched here"), "{banner}");
    assert!(dom.contains("<title>nope/nope · headroom</title>"), "title");
}

#[test]
fn node_mode_with_no_container_says_what_to_check() {
    use common::kubetree::KubeTree;
    chromium();
    let mut tree = KubeTree::new();
    tree.mkdir("kubepods/burstable");
    let root = tree.cgroup_root().display().to_string();
    let hr = Headroom::start_node(&["--cgroup-root", &root, "--interval", "500ms"]);
    assert!(served_targets(&hr).is_empty());
    let dom = dump_dom(&format!("http://{}/", hr.addr));
    let page = markup(&dom);
    assert!(
        attr_of(page, "id=\"targetsview\"", "hidden").is_none(),
        "no table:\n{page}"
    );
    assert!(table_keys(page).is_empty(), "{page}");
    let note = text_of(page, "targetsnote");
    assert!(note.starts_with("No Go container found on this node"), "{note}");
    for hint in ["--cgroup-root", "--all-containers"] {
        assert!(note.contains(hint), "the note names {hint}: {note}");
    }
    assert!(text_of(page, "who").starts_with("node mode · 0 containers"));
}

#[test]
fn a_misconfiguration_is_listed_with_its_fix_under_the_diagnosis() {
    chromium();
    // v2-max: no limit anywhere on the path.
    let hr = start_on_fixture("v2-max", &["--pid", "4242"]);
    hr.wait_metrics(Duration::from_secs(10), "no_memory_limit failing", |m| {
        m.get("headroom_misconfiguration{check=\"no_memory_limit\"}") == Some(&1.0)
    });
    let dom = dump_dom(&format!("http://{}/", hr.addr));
    let dom = markup(&dom);
    assert!(
        attr_of(dom, "id=\"misconf\"", "hidden").is_none(),
        "list hidden:\n{dom}"
    );
    assert!(attr_of(dom, "id=\"misconfhead\"", "hidden").is_none(), "{dom}");
    let at = dom.find("data-check=\"no_memory_limit\"").expect("the check's item");
    let item = unescape(&dom[at..at + dom[at..].find("</li>").unwrap()]);
    assert!(item.contains("no memory limit on the cgroup's path"), "{item}");
    assert!(item.contains("Fix: Set a memory limit on the container"), "{item}");
    // With a limit, nothing is listed and the list stays hidden.
    let hr = start_on_fixture("v2", &["--pid", "4242"]);
    hr.wait_metrics(Duration::from_secs(10), "a first poll", |m| {
        m.contains_key("headroom_misconfiguration{check=\"no_memory_limit\"}")
    });
    let dom = dump_dom(&format!("http://{}/", hr.addr));
    let dom = markup(&dom);
    assert!(attr_of(dom, "id=\"misconf\"", "hidden").is_some(), "{dom}");
    assert!(!dom.contains("data-check="), "{dom}");
}
