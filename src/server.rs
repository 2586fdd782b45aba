//! The HTTP/1 server with limits: a header read timeout, an idle timeout, a
//! per-request timeout, a cap on header size and on concurrent connections.
//!
//! A monitoring sidecar must never be the process that runs out of memory,
//! so nothing a client does may hold memory or descriptors without bound:
//! each connection costs one task and a read buffer of at most
//! [`ServerLimits::max_header_bytes`]; a connection beyond
//! [`ServerLimits::max_connections`] is accepted, answered a canned 503
//! without reading a byte, and closed at once, so it is never queued.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The smallest read buffer hyper accepts (it panics below this).
const HYPER_MIN_BUF: usize = 8192;

/// What a connection beyond the cap is told before it is closed.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\nConnection: close\r\nRetry-After: 1\r\n\r\ntoo many connections\r\n";

/// How often at most the server logs refused connections and accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);

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
    /// The read buffer of a connection, and so the largest request head;
    /// a larger head is answered 431. At least 8 KiB (raised if lower).
    pub max_header_bytes: usize,
    /// Connections served at once; more are refused with a 503 at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
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
    let mut refused = RateLog::default();
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            refused.note(|n| tracing::warn!("{n} HTTP connections refused: {max} already open (the limit)"));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout));
        let service = service.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let timeout = limits.request_timeout;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let call = hyper::service::Service::call(&service, req);
                async move {
                    match tokio::time::timeout(timeout, call).await {
                        Ok(r) => r,
                        Err(_) => Ok(timed_out(timeout)),
                    }
                }
            });
            let conn = builder.serve_connection(io, svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection closed: {e}");
            }
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
struct IdleIo {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleIo {
    fn new(inner: TcpStream, timeout: Duration) -> IdleIo {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
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
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.waiting(cx),
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
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.waiting(cx),
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

    #[tokio::test]
    async fn connections_beyond_the_cap_are_refused_while_the_first_are_served() {
        let limits = ServerLimits {
            max_connections: 4,
            ..Default::default()
        };
        let srv = start(limits).await;
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            let (status, _) = request_on(&mut s, "/").await;
            assert!(status.contains("200"), "{status}");
            open.push(s);
        }
        for _ in 0..3 {
            let (raw, reset) = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
            let line = status_line(&raw);
            assert!(
                line.contains("503") || (raw.is_empty() && reset),
                "a fifth connection got {line:?} (reset: {reset})"
            );
        }
        for s in &mut open {
            let (status, body) = request_on(s, "/").await;
            assert!(status.contains("200"), "an open connection was not served: {status}");
            assert_eq!(body, "hello\n");
        }
        // A slot freed is a slot served.
        drop(open.pop());
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
