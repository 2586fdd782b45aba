//! The HTTP/1 server with limits: a header read timeout, an idle timeout, a
//! per-request timeout, a deadline on each whole response, a cap on header
//! size and on concurrent connections.
//!
//! A monitoring sidecar must never be the process that runs out of memory,
//! so nothing a client does may hold memory or descriptors without bound:
//! each connection costs one task and a read buffer of at most
//! [`ServerLimits::max_header_bytes`], and a response that is not sent whole
//! within [`ServerLimits::response_timeout`] has its connection closed.
//!
//! Nor may slow clients starve the ones that matter: the kubelet's probes
//! and Prometheus arrive on new connections, and must be answered however
//! many slow clients hold the [`ServerLimits::max_connections`] slots. So
//! when every slot is taken, a new connection takes the slot of an open one
//! that is not being served, which is closed:
//!
//! 1. one waiting for a request head (a new connection, a kept-alive one
//!    between requests, or a slow one still sending its head), the one
//!    waiting longest first: it has no request in progress to lose, and an
//!    HTTP client must expect a kept-alive connection to be closed;
//! 2. else one whose client has not taken a byte of its response for
//!    [`STALLED`], the longest stalled first.
//!
//! Only when every connection is being served and reading its response
//! is a new one refused: accepted, answered a canned 503 without reading a
//! byte, and closed at once, so it is never queued. When a crowd of
//! connections has gone, the memory it used is given back to the system. Reserving slots for
//! the probes would not do: a connection's path is known only once its
//! head has arrived, and a slow client may never send one.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// The smallest read buffer hyper accepts (it panics below this).
const HYPER_MIN_BUF: usize = 8192;

/// What a connection beyond the cap is told before it is closed.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\nConnection: close\r\nRetry-After: 1\r\n\r\ntoo many connections\r\n";

/// How often at most the server logs refused connections and accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection whose client has taken no byte of its response for this
/// long may be closed to make room for a new one.
pub const STALLED: Duration = Duration::from_secs(1);

/// When this many connections were open at once ...
const CROWD: usize = 64;
/// ... and at most this many are left, the memory they used is given back
/// to the system.
const CROWD_GONE: usize = 2;

/// How long a new connection waits for the slot of one closed for it.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// The server's limits. The defaults suit a sidecar scraped by a few
/// Prometheus servers and opened by a few browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request head must arrive whole within this, counted from the moment
    /// the server waits for it: also on a kept-alive connection between
    /// requests, so it bounds idle keep-alive connections too.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moved either way for this long is
    /// closed (a client that stops reading its response, a stalled body).
    pub idle_timeout: Duration,
    /// A handler that takes longer is answered 503.
    pub request_timeout: Duration,
    /// A response must be sent whole within this, counted from its request
    /// head; else its connection is closed, the rest unsent (a client
    /// that takes a large body a few bytes at a time).
    pub response_timeout: Duration,
    /// The read buffer of a connection, and so the largest request head;
    /// a larger head is answered 431. At least 8 KiB (raised if lower).
    pub max_header_bytes: usize,
    /// Connections open at once; beyond, a new one takes the slot of one
    /// not being served, or is refused with a 503 at once (module doc).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_connections: 256,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes;
/// then stops accepting, lets in-flight requests finish (kept-alive
/// connections close after their current response) and returns when every
/// connection has closed. The caller bounds that drain with a timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS) as u32;
    let slots = Arc::new(Semaphore::new(max as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let conns = Arc::new(Conns::new());
    let mut refused = RateLog::default();
    let mut evicted = RateLog::default();
    let mut accept_errors = RateLog::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors.note(|n| tracing::warn!("accepting an HTTP connection failed ({n} times): {e}"));
                    // Out of descriptors: give the open connections time to
                    // finish rather than spin on accept.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let freed = match conns.evict_one() {
                    Some(_) => tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok),
                    None => None,
                };
                match freed {
                    Some(p) => {
                        evicted.note(|n| {
                            tracing::info!(
                                "{n} idle or stalled HTTP connections closed to make room for new ones ({max} open, the limit)"
                            )
                        });
                        p
                    }
                    None => {
                        refuse(stream);
                        refused.note(|n| {
                            tracing::warn!(
                                "{n} HTTP connections refused: {max} already open and being served (the limit)"
                            )
                        });
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let state = conns.open();
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, state.clone()));
        let service = service.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let timeout = limits.request_timeout;
        let response_timeout = limits.response_timeout;
        let conns = conns.clone();
        tokio::spawn(async move {
            let on_request = state.clone();
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = Busy::start(&on_request);
                let call = hyper::service::Service::call(&service, req);
                async move {
                    let response = match tokio::time::timeout(timeout, call).await {
                        Ok(r) => r?,
                        Err(_) => timed_out(timeout),
                    };
                    Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
                }
            });
            let conn = builder.serve_connection(io, svc);
            tokio::pin!(conn);
            let result = loop {
                let deadline = state.response_deadline(response_timeout);
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                        conn.as_mut().graceful_shutdown();
                        break conn.await;
                    }
                    _ = state.wake.notified() => {
                        if state.state() == CLOSING {
                            break Ok(());
                        }
                    }
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        if state.response_deadline(response_timeout) <= Instant::now() {
                            tracing::debug!("HTTP connection closed: its response took longer than {response_timeout:?}");
                            break Ok(());
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection closed: {e}");
            }
            conns.close(&state);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot: all slots back means all closed.
    let _ = slots.acquire_many(max).await;
    Ok(())
}

/// Answers a connection beyond the cap without parsing or queueing it: one
/// non-blocking write of a canned 503 into its empty socket buffer, then
/// what the client already sent is discarded (at most a few reads into a
/// stack buffer, so the close is a FIN and the client can read the 503,
/// rather than a reset), then closed.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(REFUSED);
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

fn timed_out(after: Duration) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("request took longer than {after:?}\n")));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// A connection waits for a request head ...
const IDLE: u8 = 0;
/// ... is serving a request (from its head to the last byte of its
/// response handed to the socket) ...
const BUSY: u8 = 1;
/// ... or is being closed to make room for a new one.
const CLOSING: u8 = 2;

/// A connection as its task, its stream and the accept loop see it.
struct Conn {
    id: u64,
    epoch: Instant,
    state: AtomicU8,
    /// When `state` last changed, in µs since `epoch`.
    since: AtomicU64,
    /// Since when its writes have been blocked (the client takes nothing),
    /// in µs since `epoch` plus one; 0 while they are not.
    write_blocked: AtomicU64,
    /// Wakes its task: to close it, or to arm a response's deadline.
    wake: Notify,
}

impl Conn {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// When the response in progress must be sent by; far ahead when none.
    fn response_deadline(&self, timeout: Duration) -> Instant {
        match self.state() {
            BUSY => self.epoch + Duration::from_micros(self.since.load(Ordering::Acquire)) + timeout,
            _ => Instant::now() + Duration::from_secs(24 * 3600),
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let v = if blocked { self.now_us() + 1 } else { 0 };
        if !blocked || self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(v, Ordering::Relaxed);
        }
    }

    /// How long its client has taken no byte of the response, if blocked.
    fn stalled_for(&self, now_us: u64) -> Option<u64> {
        match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_us.saturating_sub(t - 1)),
        }
    }
}

/// The open connections, for choosing one to close when all slots are taken.
struct Conns {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// The most open at once since freed memory was last given back.
    crowd: AtomicUsize,
}

impl Conns {
    fn new() -> Conns {
        Conns {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            crowd: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most connections open at once since memory was last given back.
    fn note_open(&self, n: usize) {
        self.crowd.fetch_max(n, Ordering::Relaxed);
    }

    fn open(&self) -> Arc<Conn> {
        let c = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            state: AtomicU8::new(IDLE),
            since: AtomicU64::new(self.epoch.elapsed().as_micros() as u64),
            write_blocked: AtomicU64::new(0),
            wake: Notify::new(),
        });
        let mut open = self.lock();
        open.insert(c.id, c.clone());
        self.note_open(open.len());
        drop(open);
        c
    }

    fn close(&self, c: &Conn) {
        let mut open = self.lock();
        open.remove(&c.id);
        if open.len() <= CROWD_GONE && self.crowd.load(Ordering::Relaxed) >= CROWD {
            self.crowd.store(open.len(), Ordering::Relaxed);
            drop(open);
            give_back_freed_memory();
        }
    }

    /// Tells one connection not being served to close (module doc: the one
    /// waiting longest for a request head, else the one stalled longest);
    /// `None` when every one is being served.
    fn evict_one(&self) -> Option<u64> {
        let open = self.lock();
        let now = self.epoch.elapsed().as_micros() as u64;
        let stalled = STALLED.as_micros() as u64;
        let idle = open
            .values()
            .filter(|c| c.state() == IDLE)
            .min_by_key(|c| (c.since.load(Ordering::Acquire), c.id));
        let victim = idle.map(|c| (c, IDLE)).or_else(|| {
            open.values()
                .filter(|c| c.state() == BUSY)
                .filter_map(|c| Some((c, c.stalled_for(now)?)))
                .filter(|(_, for_us)| *for_us >= stalled)
                .max_by_key(|(c, for_us)| (*for_us, u64::MAX - c.id))
                .map(|(c, _)| (c, BUSY))
        });
        let (c, from) = victim?;
        c.state
            .compare_exchange(from, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        c.wake.notify_one();
        Some(c.id)
    }
}

/// Marks its connection busy from a request's head until the response
/// body is done with (dropped).
struct Busy(Arc<Conn>);

impl Busy {
    fn start(c: &Arc<Conn>) -> Busy {
        if c.state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            c.since.store(c.now_us(), Ordering::Release);
            // Arms the response deadline.
            c.wake.notify_one();
        }
        Busy(c.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        if c.state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            c.since.store(c.now_us(), Ordering::Release);
        }
    }
}

/// A response body that keeps its connection marked busy until dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Returns the allocator's free pages to the system. glibc keeps what many
/// connections' buffers and tasks freed, scattered in its heap, as resident
/// memory; after a crowd of slow clients that is megabytes a sidecar's
/// memory limit counts.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Counts an event and logs it at most once per [`LOG_EVERY`].
#[derive(Default)]
struct RateLog {
    count: u64,
    last: Option<Instant>,
}

impl RateLog {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// A stream that fails with `TimedOut` once no byte has moved either way
/// for `timeout` while the server waits on it.
/// It also tells its [`Conn`] whether the client takes what is written.
struct IdleIo {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    conn: Arc<Conn>,
}

impl IdleIo {
    fn new(inner: TcpStream, timeout: Duration, conn: Arc<Conn>) -> IdleIo {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            conn,
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte moved for {:?}", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.waiting(cx),
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.conn.write_blocked(false);
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.conn.write_blocked(true);
                this.waiting(cx)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.conn.write_blocked(false);
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.conn.write_blocked(true);
                this.waiting(cx)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// A generous bound for things that should happen at once, so a loaded
    /// machine never fails a test: only "it happened at all" is asserted.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn test_router() -> Router {
        Router::new()
            .route("/", get(|| async { "hello\n" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow done\n"
                }),
            )
            .route(
                "/stuck",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "never\n"
                }),
            )
            .route("/big", get(|| async { vec![b'x'; 32 << 20] }))
            .route("/chunks", get(|| async { Body::new(Chunks { left: 32 << 20 }) }))
    }

    /// A body of `left` bytes made as it is taken, 16 KiB a frame.
    struct Chunks {
        left: usize,
    }

    impl hyper::body::Body for Chunks {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            let n = self.left.min(16 * 1024);
            self.left -= n;
            Poll::Ready((n > 0).then(|| Ok(Frame::data(axum::body::Bytes::from(vec![b'x'; n])))))
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.left as u64)
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        done: tokio::task::JoinHandle<io::Result<()>>,
    }

    async fn start(limits: ServerLimits) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, test_router(), limits, async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            done,
        }
    }

    /// Sends `raw` and reads until the server closes: (bytes read, whether
    /// the close was a reset).
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> (Vec<u8>, bool) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The server may close before it has read everything (a refused
        // head): what it answered is what counts.
        let written = s.write_all(raw).await;
        let (out, reset) = read_to_close(&mut s).await;
        (out, reset || written.is_err())
    }

    async fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let r = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("the server kept the connection open for {PATIENCE:?}"));
        (out, r.is_err())
    }

    /// One request on a kept-alive connection: the status line and body.
    async fn request_on(s: &mut TcpStream, path: &str) -> (String, String) {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
                .await
                .expect("response in time")
                .expect("read");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return (head.lines().next().unwrap_or_default().to_owned(), body.to_owned());
                }
            }
        }
    }

    fn status_line(raw: &[u8]) -> String {
        String::from_utf8_lossy(raw)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn a_normal_request_is_served() {
        let srv = start(ServerLimits::default()).await;
        let (raw, _) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with("hello\n"), "{text}");
    }

    #[tokio::test]
    async fn a_slow_header_is_closed_after_the_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .expect("write");
        let (raw, _) = read_to_close(&mut s).await;
        assert!(
            !status_line(&raw).contains("200"),
            "an unfinished head was answered: {:?}",
            String::from_utf8_lossy(&raw)
        );
        // The server still serves others.
        let (raw, _) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(status_line(&raw).contains("200"), "{:?}", String::from_utf8_lossy(&raw));
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        let (status, body) = request_on(&mut s, "/").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, "hello\n");
        let (rest, _) = read_to_close(&mut s).await;
        assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    #[tokio::test]
    async fn a_header_larger_than_the_cap_is_refused() {
        let srv = start(ServerLimits::default()).await;
        let mut raw = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
        for i in 0..600 {
            raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert!(raw.len() > 2 * ServerLimits::default().max_header_bytes);
        let (resp, reset) = exchange(srv.addr, &raw).await;
        let line = status_line(&resp);
        assert!(
            line.contains("431") || (resp.is_empty() && reset),
            "a {} byte head got {line:?} (reset: {reset})",
            raw.len()
        );
    }

    /// Whether the server closed `s`: end of file or a reset within a while.
    async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Opens a connection that sends half a request head and waits.
    async fn slow_head(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").await.expect("write");
        s
    }

    #[tokio::test]
    async fn a_new_connection_takes_the_slot_of_the_longest_idle_one() {
        let limits = ServerLimits {
            max_connections: 4,
            // Only eviction closes connections here.
            header_read_timeout: Duration::from_secs(3600),
            ..Default::default()
        };
        let srv = start(limits).await;
        // A kept-alive connection between requests, then three slow heads.
        let mut kept = TcpStream::connect(srv.addr).await.expect("connect");
        let (status, _) = request_on(&mut kept, "/").await;
        assert!(status.contains("200"), "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut slow = Vec::new();
        for _ in 0..3 {
            slow.push(slow_head(srv.addr).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every slot is taken, by connections waiting for a request: each
        // new one is served in the slot of the one waiting longest (and
        // then waits itself, kept alive).
        let mut first = TcpStream::connect(srv.addr).await.expect("connect");
        let (status, _) = request_on(&mut first, "/").await;
        assert!(status.contains("200"), "{status}");
        assert!(
            closed_by_server(&mut kept, PATIENCE).await,
            "the longest idle connection was not closed"
        );
        let mut newer = TcpStream::connect(srv.addr).await.expect("connect");
        let (status, body) = request_on(&mut newer, "/").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, "hello\n");
        assert!(
            closed_by_server(&mut slow[0], PATIENCE).await,
            "the oldest slow head was not closed"
        );
        for s in &mut slow[1..] {
            assert!(
                !closed_by_server(s, Duration::from_millis(200)).await,
                "a newer slow head was closed before an older one"
            );
        }
    }

    #[tokio::test]
    async fn connections_being_served_keep_their_slots() {
        let limits = ServerLimits {
            max_connections: 4,
            request_timeout: Duration::from_secs(3600),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut busy = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            s.write_all(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .expect("write");
            busy.push(s);
        }
        // Let every head reach its handler.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..3 {
            let (raw, reset) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
            let line = status_line(&raw);
            assert!(
                line.contains("503") || (raw.is_empty() && reset),
                "a fifth connection got {line:?} (reset: {reset})"
            );
        }
        for s in &mut busy {
            assert!(
                !closed_by_server(s, Duration::from_millis(100)).await,
                "a connection being served was closed"
            );
        }
        // A slot freed is a slot served.
        drop(busy.pop());
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (raw, _) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
            if status_line(&raw).contains("200") {
                break;
            }
            assert!(Instant::now() < deadline, "a freed slot was never reused");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_client_that_stalls_its_response_gives_up_its_slot() {
        let limits = ServerLimits {
            max_connections: 2,
            request_timeout: Duration::from_secs(3600),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut stuck = TcpStream::connect(srv.addr).await.expect("connect");
        stuck
            .write_all(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut stalled = TcpStream::connect(srv.addr).await.expect("connect");
        stalled
            .write_all(b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        // Read nothing: the server's writes block, and stay blocked.
        tokio::time::sleep(STALLED + Duration::from_millis(500)).await;
        let (raw, _) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(status_line(&raw).contains("200"), "{:?}", String::from_utf8_lossy(&raw));
        assert!(
            closed_by_server(&mut stalled, PATIENCE).await,
            "the stalled reader kept its slot"
        );
        assert!(
            !closed_by_server(&mut stuck, Duration::from_millis(100)).await,
            "a connection whose handler is still working was closed"
        );
    }

    #[tokio::test]
    async fn a_response_not_sent_within_its_deadline_is_cut_off() {
        let limits = ServerLimits {
            response_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        // Take the body steadily, at most 64 KiB every 10 ms (it would take
        // 5 s whole): the idle timeout never fires. What the sockets hold
        // still arrives after the cut, then the end.
        let started = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let closed = loop {
            match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => got += n,
                Err(_) => break false,
            }
            assert!(started.elapsed() < PATIENCE, "still sending after {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(closed, "the connection was not closed");
        assert!(got < 32 << 20, "the whole body arrived in {:?}", started.elapsed());
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "cut off before the deadline"
        );
    }

    #[tokio::test]
    async fn a_stuck_handler_is_answered_503() {
        let limits = ServerLimits {
            request_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let srv = start(limits).await;
        let (raw, _) = exchange(srv.addr, b"GET /stuck HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(status_line(&raw).contains("503"), "{:?}", String::from_utf8_lossy(&raw));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed() {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        // Read nothing for well over the idle timeout: the server's writes stall.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (raw, _) = read_to_close(&mut s).await;
        assert!(
            raw.len() < 32 << 20,
            "the whole {} byte body arrived: the stalled connection was not closed",
            raw.len()
        );
    }

    #[tokio::test]
    async fn shutdown_drains_in_flight_requests() {
        let mut srv = start(ServerLimits::default()).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        // Let the request reach its handler, then stop.
        tokio::time::sleep(Duration::from_millis(100)).await;
        srv.stop.take().expect("stop").send(()).expect("server running");
        let (raw, _) = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "in-flight request not finished: {text:?}"
        );
        assert!(text.ends_with("slow done\n"), "{text:?}");
        let r = tokio::time::timeout(PATIENCE, &mut srv.done)
            .await
            .expect("serve returned after the drain")
            .expect("serve task");
        assert!(r.is_ok(), "{r:?}");
        assert!(
            TcpStream::connect(srv.addr).await.is_err(),
            "still accepting after shutdown"
        );
    }
}
