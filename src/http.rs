//! The HTTP server: serves the last published snapshot, never polls.
//!
//! `/healthz` says whether the poller is alive (its last poll finished
//! recently), `/readyz` whether the memory can be read now.
//!
//! Saved heap profiles (`/profiles/NAME`, up to 64 MiB each) are the only
//! large bodies: at most [`MAX_DOWNLOADS`] are sent at once (more are
//! answered 503 at once, with `Retry-After`), each read from disk
//! [`CHUNK`] bytes at a time only as the client takes them, so a download
//! costs a few tens of KiB however slowly its client reads. The reads run
//! on one thread of their own, started when needed and ended when idle:
//! no thread waits on a client, and bursts of small reads do not grow
//! tokio's blocking pool. The server closes a download not done within its
//! response deadline (60 s), and a stalled one when a new connection
//! needs its slot.

use crate::collector::health::Source;
use crate::key::TargetKey;
use crate::status::Status;
pub use crate::targets::registry::{stale_after, Mode, Shared, STALE_INTERVALS, STALE_MIN};
pub use crate::targets::slot::Published;
use crate::targets::slot::Slot;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// `Err(why)` unless the memory can be read now: from the cgroup, or from
/// /proc where the cgroup is not read (unprivileged).
pub fn readiness(status: &Status) -> Result<(), String> {
    if !status.ready {
        return Err("no successful read of the memory yet".into());
    }
    let source = match status.source(Source::Cgroup).and_then(|s| s.up) {
        Some(_) => Source::Cgroup,
        None => Source::Proc,
    };
    match status.source(source) {
        Some(s) if s.up == Some(true) => Ok(()),
        Some(s) => Err(format!(
            "the {} source is down: {}",
            source.as_str(),
            s.last_error.as_deref().unwrap_or("its last read failed")
        )),
        None => Err(format!("the {} source is not read", source.as_str())),
    }
}

/// The routes; with `auth`, every endpoint but the probes (and
/// `/metrics`, unless protected too) requires its credentials.
pub fn router_with_auth(shared: Arc<Shared>, auth: Option<Arc<crate::auth::EndpointAuth>>) -> Router {
    let r = router(shared);
    match auth {
        Some(a) => r.layer(axum::middleware::from_fn_with_state(a, crate::auth::guard)),
        None => r,
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let downloads = Downloads {
        slots: Arc::new(Semaphore::new(MAX_DOWNLOADS)),
        disk: DiskThread::default(),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/api/v1/targets", get(targets))
        .route(
            "/api/v1/targets/{namespace}/{pod}/{container}/status",
            get(target_status),
        )
        .route(
            "/api/v1/targets/{namespace}/{pod}/{container}/history",
            get(target_history),
        )
        .route(
            "/profiles/{name}",
            get(move |state, name| profile(state, name, downloads.clone())),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(dashboard))
        .with_state(shared)
}

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics text; gzipped when the scraper accepts it.
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    if accepts_gzip(&headers) {
        return (
            [
                (header::CONTENT_TYPE, METRICS_TYPE),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "Accept-Encoding"),
            ],
            Body::from(s.metrics_gzip()),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, METRICS_TYPE), (header::VARY, "Accept-Encoding")],
        Body::from(s.metrics_text()),
    )
        .into_response()
}

/// Whether `Accept-Encoding` lists gzip without refusing it (`gzip;q=0`).
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn json(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response()
}

/// Node mode has no single target: `/api/v1/status` and `/history` say
/// where to look.
fn node_has_no_single_target() -> Response {
    not_found("node mode watches many targets: see /api/v1/targets and /api/v1/targets/NAMESPACE/POD/CONTAINER/status")
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    match s.mode() {
        Mode::Sidecar => json(s.status_json()),
        Mode::Node => node_has_no_single_target(),
    }
}

async fn targets(State(s): State<Arc<Shared>>) -> Response {
    json(s.targets_json(Instant::now()))
}

type KeyPath = Result<Path<(String, String, String)>, PathRejection>;

/// The target a path names, else the 404 that says where to look.
fn with_target(s: &Shared, path: KeyPath, f: impl FnOnce(&Slot) -> Response) -> Response {
    let Ok(Path((ns, pod, container))) = path else {
        return not_found("no such target");
    };
    let key = TargetKey::from_segments(&ns, &pod, &container);
    match s.get(&key) {
        Some(slot) => f(&slot),
        None => not_found(&format!("no target {key}: see /api/v1/targets for the watched ones")),
    }
}

async fn target_status(State(s): State<Arc<Shared>>, path: KeyPath) -> Response {
    with_target(&s, path, |slot| json(slot.status_json()))
}

async fn target_history(State(s): State<Arc<Shared>>, path: KeyPath) -> Response {
    with_target(&s, path, history_of)
}

async fn history(State(s): State<Arc<Shared>>) -> Response {
    match s.mode() {
        Mode::Sidecar => history_of(&s.slot()),
        Mode::Node => node_has_no_single_target(),
    }
}

fn history_of(slot: &Slot) -> Response {
    match slot.history_json() {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], Body::from(json)).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no history yet: no poll has finished\n",
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    match s.liveness(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n")).into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let ready = match s.mode() {
        Mode::Sidecar => readiness(&s.latest().status),
        Mode::Node => match s.last_beat() {
            Some(_) => Ok(()),
            None => Err("no discovery round has finished yet".to_owned()),
        },
    };
    match ready {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::dashboard::PAGE,
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// Bytes read from a profile at a time: with the server's write buffer
/// (16 KiB), about what a download holds in memory.
pub const CHUNK: usize = 16 * 1024;
/// Profile downloads sent at once.
pub const MAX_DOWNLOADS: usize = 4;
/// What a download beyond [`MAX_DOWNLOADS`] is told to wait, in seconds.
const DOWNLOAD_RETRY_AFTER: &str = "5";
/// The disk thread ends after this long without a read.
const DISK_THREAD_IDLE: Duration = Duration::from_secs(2);

/// What profile downloads share: their slots and the thread that reads.
#[derive(Clone)]
struct Downloads {
    slots: Arc<Semaphore>,
    disk: DiskThread,
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread for the profiles' disk work (opens and chunk reads), started
/// by the first job and ended after [`DISK_THREAD_IDLE`] without one.
#[derive(Clone, Default)]
struct DiskThread(Arc<Mutex<Option<mpsc::Sender<Job>>>>);

impl DiskThread {
    /// Runs `f` on the thread; its result arrives on the receiver (which
    /// fails if the thread could not be started).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let mut jobs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let job = match jobs.as_ref() {
            Some(s) => match s.send(job) {
                Ok(()) => return rx,
                // The thread ended: start another.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (send, recv) = mpsc::channel();
        let _ = send.send(job);
        let slot = self.0.clone();
        match std::thread::Builder::new()
            .name("profile-read".into())
            .spawn(move || run_jobs(&recv, &slot))
        {
            Ok(_) => *jobs = Some(send),
            Err(e) => tracing::warn!("cannot start a thread to read profiles: {e}"),
        }
        rx
    }
}

fn run_jobs(jobs: &mpsc::Receiver<Job>, slot: &Mutex<Option<mpsc::Sender<Job>>>) {
    loop {
        match jobs.recv_timeout(DISK_THREAD_IDLE) {
            Ok(job) => job(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Under the lock no job can arrive: end only if none did.
                let mut sender = slot.lock().unwrap_or_else(|e| e.into_inner());
                match jobs.try_recv() {
                    Ok(job) => {
                        drop(sender);
                        job();
                    }
                    Err(_) => {
                        *sender = None;
                        return;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// `GET /profiles/NAME`: a saved heap profile, NAME being exactly the file
/// name of one the status lists (never a path), streamed from disk.
async fn profile(
    State(s): State<Arc<Shared>>,
    name: Result<Path<String>, PathRejection>,
    downloads: Downloads,
) -> Response {
    let Ok(Path(name)) = name else {
        return not_found("no such profile");
    };
    let listed = s.slots().iter().find_map(|slot| {
        slot.latest()
            .status
            .profiles
            .iter()
            .find(|p| p.path.file_name().is_some_and(|f| f == name.as_str()))
            .map(|p| p.path.clone())
    });
    let (Some(path), Ok(disposition)) = (
        listed,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")),
    ) else {
        return not_found("no such profile");
    };
    let Ok(permit) = downloads.slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::RETRY_AFTER, DOWNLOAD_RETRY_AFTER),
                (header::CONNECTION, "close"),
            ],
            format!("{MAX_DOWNLOADS} profile downloads are in progress: retry later\n"),
        )
            .into_response();
    };
    let opened = downloads
        .disk
        .run(move || {
            let f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            Ok::<_, std::io::Error>((f, len))
        })
        .await;
    let (file, len) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!("profile {name}: cannot open it: {e}");
            return not_found("no such profile (it is gone from the profile directory)");
        }
        Err(e) => {
            tracing::warn!("profile {name}: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the profile\n").into_response();
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::new(FileBody {
            file: Arc::new(file),
            offset: 0,
            len,
            disk: downloads.disk,
            reading: None,
            _permit: permit,
        }),
    )
        .into_response()
}

/// A file's first `len` bytes as a response body, read [`CHUNK`] bytes at a
/// time on the disk thread when the server asks for the next (no read
/// ahead: a client that takes nothing costs no read and no thread). It
/// holds a download slot until dropped.
struct FileBody {
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    disk: DiskThread,
    reading: Option<oneshot::Receiver<std::io::Result<Bytes>>>,
    _permit: OwnedSemaphorePermit,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.reading.is_none() {
            if this.offset >= this.len {
                return Poll::Ready(None);
            }
            let (file, offset) = (this.file.clone(), this.offset);
            let n = (this.len - offset).min(CHUNK as u64) as usize;
            this.reading = Some(this.disk.run(move || {
                let mut buf = vec![0u8; n];
                let mut got = 0;
                while got < n {
                    match file.read_at(&mut buf[got..], offset + got as u64) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(got);
                Ok(Bytes::from(buf))
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let read = std::task::ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let chunk = match read {
            Ok(Ok(chunk)) if chunk.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the profile shrank while it was sent",
            )),
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other("the profile's disk thread did not read it")),
        };
        Poll::Ready(Some(chunk.map(|c| {
            this.offset += c.len() as u64;
            Frame::data(c)
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none() && self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::profile::{ProfileKind, SavedProfile};
    use crate::analysis::risk::Risk;
    use crate::analysis::window::SharedWindow;
    use crate::collector::health::SourceStatus;
    use crate::metrics::Metrics;
    use std::io::Read;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `shared` on a loopback port for as long as the test runs.
    async fn serve(shared: &Arc<Shared>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// One raw HTTP/1.1 GET, the target sent exactly as given (no client
    /// normalizes it): status, headers (lower-case names), body.
    async fn get(shared: &Arc<Shared>, target: &str) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        get_with(shared, target, "").await
    }

    /// [`get`] with more header lines (each ending in CRLF).
    async fn get_with(
        shared: &Arc<Shared>,
        target: &str,
        headers: &str,
    ) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let addr = serve(shared).await;
        get_from(addr, target, headers).await
    }

    /// [`get_with`] from a server already running.
    async fn get_from(
        addr: std::net::SocketAddr,
        target: &str,
        headers: &str,
    ) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let code: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body = raw[end + 4..].to_vec();
        assert!(
            header(&headers, "transfer-encoding").is_none(),
            "{target}: a chunked answer where a length was expected"
        );
        (StatusCode::from_u16(code).unwrap(), headers, body)
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A daemon whose status lists the one profile at `path`.
    fn listing_one_profile(path: &std::path::Path, bytes: usize, risk: Risk) -> Arc<Shared> {
        let shared = Arc::new(Shared::new(Metrics::new()));
        shared.publish(Published::new(Status {
            profiles: vec![SavedProfile {
                kind: ProfileKind::Heap,
                path: path.to_path_buf(),
                bytes: bytes as u64,
                time_ms: 1764500000000,
                risk,
            }],
            ..Status::default()
        }));
        shared
    }

    #[test]
    fn profiles_are_served_by_listed_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let name = "heap-1764500000000-critical.pb.gz";
        // Larger than a chunk and not a multiple of it: the stream must
        // deliver every byte in order.
        let bytes: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        std::fs::write(dir.path().join("heap-1764500000001-warning.pb.gz"), b"unlisted").unwrap();
        std::fs::write(dir.path().join("secret"), b"secret").unwrap();
        let shared = listing_one_profile(&dir.path().join(name), bytes.len(), Risk::Critical);
        rt().block_on(async {
            let (code, headers, body) = get(&shared, &format!("/profiles/{name}")).await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(body.len(), bytes.len());
            assert!(body == bytes, "the bytes served differ from the file");
            assert_eq!(header(&headers, "content-type"), Some("application/octet-stream"));
            assert_eq!(
                header(&headers, "content-disposition"),
                Some(format!("attachment; filename=\"{name}\"").as_str())
            );
            assert_eq!(
                header(&headers, "content-length"),
                Some(bytes.len().to_string().as_str())
            );
            for bad in [
                "/profiles/heap-1764500000001-warning.pb.gz",
                "/profiles/secret",
                "/profiles/../etc/passwd",
                "/profiles/..%2fsecret",
                "/profiles/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                "/profiles/%2e%2e",
                "/profiles/..",
                "/profiles/",
                "/profiles/%ff",
                &format!("/profiles/{}", dir.path().join(name).display()),
                &format!(
                    "/profiles/{}",
                    dir.path().join(name).display().to_string().replace('/', "%2f")
                ),
            ] {
                let (code, _, body) = get(&shared, bad).await;
                assert_eq!(code, StatusCode::NOT_FOUND, "{bad}: {}", String::from_utf8_lossy(&body));
                assert!(!body.starts_with(b"secret") && !body.starts_with(b"unlisted"), "{bad}");
            }
            // Listed, then removed from the directory: gone, not an error.
            std::fs::remove_file(dir.path().join(name)).unwrap();
            let (code, _, _) = get(&shared, &format!("/profiles/{name}")).await;
            assert_eq!(code, StatusCode::NOT_FOUND);
        });
    }

    #[test]
    fn profile_downloads_beyond_the_limit_are_refused_until_one_ends() {
        let dir = tempfile::tempdir().unwrap();
        let name = "heap-1764500000000-warning.pb.gz";
        // Larger than what the sockets hold, so a reader that takes nothing
        // keeps its download open.
        let bytes = vec![7u8; 32 << 20];
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let shared = listing_one_profile(&dir.path().join(name), bytes.len(), Risk::Warning);
        let target = format!("/profiles/{name}");
        rt().block_on(async {
            let addr = serve(&shared).await;
            let mut stalled = Vec::new();
            for _ in 0..MAX_DOWNLOADS {
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                c.write_all(req.as_bytes()).await.unwrap();
                // The head and a first chunk: the download has begun.
                let mut first = [0u8; 1024];
                let n = c.read(&mut first).await.unwrap();
                assert!(
                    first[..n].starts_with(b"HTTP/1.1 200"),
                    "{:?}",
                    String::from_utf8_lossy(&first[..n])
                );
                stalled.push(c);
            }
            let (code, headers, body) = get_from(addr, &target, "").await;
            assert_eq!(
                code,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(header(&headers, "retry-after"), Some(DOWNLOAD_RETRY_AFTER));
            assert_eq!(header(&headers, "connection"), Some("close"));
            // The others are served meanwhile.
            assert_eq!(get_from(addr, "/healthz", "").await.0, StatusCode::OK);
            // A reader that leaves gives its slot back.
            drop(stalled.pop());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (code, _, body) = get_from(addr, &target, "").await;
                if code == StatusCode::OK {
                    assert!(body == bytes, "the bytes served differ from the file");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the slot of a reader that left never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    #[test]
    fn metrics_are_gzipped_for_a_scraper_that_accepts_it() {
        let mut h = axum::http::HeaderMap::new();
        for (value, want) in [
            ("gzip", true),
            ("deflate, gzip;q=1.0, *;q=0.5", true),
            ("GZIP", true),
            ("*", true),
            ("gzip;q=0", false),
            ("identity", false),
            ("", false),
        ] {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            assert_eq!(accepts_gzip(&h), want, "{value:?}");
        }
        let shared = Arc::new(Shared::new(Metrics::new()));
        let mut st = Status::default();
        st.memory.usage = Some(12345);
        shared.publish(Published::new(st));
        rt().block_on(async {
            let (code, plain_headers, plain) = get(&shared, "/metrics").await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(header(&plain_headers, "content-encoding"), None);
            let (code, headers, gz) = get_with(&shared, "/metrics", "Accept-Encoding: gzip\r\n").await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut text)
                .expect("a gzip stream");
            assert_eq!(text, plain);
            assert!(String::from_utf8(text)
                .unwrap()
                .contains("headroom_memory_usage_bytes 12345"));
            assert!(gz.len() < plain.len(), "{} vs {}", gz.len(), plain.len());
        });
    }

    #[test]
    fn healthz_fails_when_polls_stop() {
        assert_eq!(stale_after(Duration::from_millis(100)), Duration::from_secs(3));
        assert_eq!(stale_after(Duration::from_secs(5)), Duration::from_secs(15));
        let shared = Shared::new(Metrics::new()).with_interval(Duration::from_secs(2));
        let t0 = shared.started;
        // Before the first poll: measured from the start.
        assert!(shared.liveness(t0 + Duration::from_secs(6)).is_ok());
        let why = shared.liveness(t0 + Duration::from_secs(7)).unwrap_err();
        assert!(why.contains("no poll has finished") && why.contains("7.0 s"), "{why}");
        shared.publish(Published::default());
        let at = shared.slot().last_poll().unwrap();
        assert!(shared.liveness(at + Duration::from_secs(6)).is_ok());
        let why = shared.liveness(at + Duration::from_millis(8500)).unwrap_err();
        assert!(
            why.contains("last poll finished 8.5 s ago") && why.contains("6.0 s"),
            "{why}"
        );
        // And over HTTP, now: the poll just published is fresh.
        let shared = Arc::new(shared);
        rt().block_on(async {
            let (code, _, body) = get(&shared, "/healthz").await;
            assert_eq!((code, body.as_slice()), (StatusCode::OK, b"ok\n".as_slice()));
        });
    }

    #[test]
    fn readyz_follows_the_memory_source_now() {
        let up = |up: bool| SourceStatus {
            up: Some(up),
            errors_total: u64::from(!up),
            last_error: (!up).then(|| "/sys/fs/cgroup/x/memory.current: No such file or directory".to_owned()),
        };
        let mut st = Status::default();
        assert_eq!(readiness(&st).unwrap_err(), "no successful read of the memory yet");
        st.ready = true;
        st.sources.insert(Source::Cgroup, up(true));
        assert!(readiness(&st).is_ok());
        st.sources.insert(Source::Cgroup, up(false));
        let why = readiness(&st).unwrap_err();
        assert!(
            why.contains("cgroup source is down") && why.contains("memory.current"),
            "{why}"
        );
        // Unprivileged: the cgroup is not read, /proc is.
        st.sources.insert(Source::Cgroup, SourceStatus::default());
        st.sources.insert(Source::Proc, up(true));
        assert!(readiness(&st).is_ok());
        st.sources.insert(Source::Proc, up(false));
        assert!(readiness(&st).unwrap_err().contains("proc source is down"));

        let shared = Arc::new(Shared::new(Metrics::new()));
        st.sources.insert(Source::Cgroup, up(false));
        shared.publish(Published::new(st));
        rt().block_on(async {
            let (code, _, body) = get(&shared, "/readyz").await;
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
            assert!(String::from_utf8_lossy(&body).starts_with("not ready: the cgroup source is down"));
        });
    }

    #[test]
    fn history_is_built_once_per_poll_and_only_on_request() {
        use crate::analysis::window::Window;
        let window = SharedWindow::new(Window::new(600_000));
        let shared = Arc::new(Shared::new(Metrics::new()).with_history(window.clone()));
        rt().block_on(async {
            let (code, _, body) = get(&shared, "/api/v1/history").await;
            assert_eq!(
                code,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                String::from_utf8_lossy(&body)
            );
        });
        {
            let mut w = window.lock();
            w.set_now(1000, 1_764_500_000_000);
            w.usage.push(1000, 104857600.0);
        }
        shared.publish(Published::default());
        let a = shared.history_json().unwrap();
        // A sample added before the next poll is published is not shown
        // yet: the JSON is this poll's, served as built.
        window.lock().usage.push(2000, 2.0);
        let b = shared.history_json().unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "built once per poll");
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(
            v["series"]["usage"],
            serde_json::json!([[1_764_500_000_000u64, 104857600u64]])
        );
        shared.publish(Published::default());
        let v: serde_json::Value = serde_json::from_slice(&shared.history_json().unwrap()).unwrap();
        assert_eq!(v["series"]["usage"].as_array().unwrap().len(), 2);
        rt().block_on(async {
            let (code, headers, body) = get(&shared, "/api/v1/history").await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["time_ms"], 1_764_500_000_000u64);
        });
    }
}
