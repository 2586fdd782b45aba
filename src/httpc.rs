//! A small HTTP/1 client (hyper, already brought by axum; rustls for https)
//! with a deadline on the whole exchange and a cap on the body, for scraping
//! the target, saving its heap profiles and delivering alerts.
//!
//! https uses rustls with the ring provider (no OpenSSL) and trusts the
//! Mozilla root set compiled into the binary (webpki-roots): the same in
//! every image (distroless, scratch), nothing read from disk at start, no
//! CA bundle to keep current in the container. Receivers behind a private
//! CA are trusted by adding its certificate ([`HttpClient::with_ca_file`]).
//!
//! Bodies can be read whole ([`HttpClient::get`]), chunk by chunk as they
//! arrive ([`HttpClient::get_streamed`], memory bounded by a chunk) or
//! copied to a writer ([`HttpClient::get_to_writer`], a profile to disk).

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: invalid URL: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no complete answer within {after:?} (slow or hung target)")]
    Timeout { url: String, after: Duration },
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: writing the body: {reason}")]
    Write { url: String, reason: String },
}

/// A failed streamed GET: the exchange failed, or the chunk consumer
/// refused a chunk (then the rest of the body is not read).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError<E> {
    #[error(transparent)]
    Http(HttpError),
    #[error("{0}")]
    Sink(E),
}

/// Setting up the client's trusted roots failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    Roots { path: String, reason: String },
}

/// The value of an `Authorization` header (a bearer token or basic auth),
/// kept out of logs: its `Debug` does not show it, and hyper marks the
/// header sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(HeaderValue);

/// A credential that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the credential is empty")]
    Empty,
    #[error("the credential contains a character not allowed in an HTTP header (a line break or control character inside it?)")]
    Invalid,
}

impl Authorization {
    /// `Bearer TOKEN`. Surrounding whitespace (the newline that ends a file
    /// or a Kubernetes Secret) is removed.
    pub fn bearer(token: &str) -> Result<Authorization, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Empty);
        }
        Authorization::header_value(&format!("Bearer {token}"))
    }

    /// `Basic base64(user:password)` (RFC 7617). The password is taken as
    /// is but for one trailing line break (`\n` or `\r\n`), as files end.
    pub fn basic(user: &str, password: &str) -> Result<Authorization, AuthError> {
        let password = password
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(password);
        if user.is_empty() {
            return Err(AuthError::Empty);
        }
        if user.contains(':') || user.chars().chain(password.chars()).any(char::is_control) {
            return Err(AuthError::Invalid);
        }
        Authorization::header_value(&format!("Basic {}", base64(format!("{user}:{password}").as_bytes())))
    }

    /// A whole header value as given (`Bearer …`, `Basic …`, another scheme).
    pub fn header_value(value: &str) -> Result<Authorization, AuthError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(AuthError::Empty);
        }
        let mut v = HeaderValue::from_str(value).map_err(|_| AuthError::Invalid)?;
        v.set_sensitive(true);
        Ok(Authorization(v))
    }

    /// The scheme (`Bearer`, `Basic`), for logs.
    /// Whether a request's `Authorization` header carries this credential:
    /// the scheme compared without case, the rest byte for byte in
    /// constant time.
    pub fn matches(&self, got: &HeaderValue) -> bool {
        let (want, got) = (self.0.as_bytes(), got.as_bytes());
        let split = |v: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
            let i = v.iter().position(|b| *b == b' ')?;
            let rest: Vec<u8> = v[i..].iter().copied().skip_while(|b| *b == b' ').collect();
            Some((v[..i].to_ascii_lowercase(), rest))
        };
        let (Some((ws, wr)), Some((gs, gr))) = (split(want), split(got)) else {
            return false;
        };
        if ws != gs || wr.len() != gr.len() {
            return false;
        }
        wr.iter().zip(&gr).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The header value sent.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.to_str().ok().and_then(|v| v.split(' ').next()).unwrap_or("")
    }
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authorization({} <redacted>)", self.scheme())
    }
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [group[0], *group.get(1).unwrap_or(&0), *group.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<Dialer>, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> HttpClient {
        HttpClient::new()
    }
}

/// At most this much of an error answer's body is kept for the message.
const ERROR_BODY_BYTES: usize = 200;

impl HttpClient {
    /// http and https, trusting the compiled-in Mozilla roots.
    pub fn new() -> HttpClient {
        HttpClient::with_roots(mozilla_roots(), None)
    }

    /// A client whose connections are made inside the network namespace
    /// `netns` (`/proc/PID/ns/net`): a pod's loopback address, reached from
    /// a node agent. Each connection is dialled by a thread of its own that
    /// enters the namespace (`setns`, which needs CAP_SYS_ADMIN) and ends
    /// after; the namespace is entered only when it is not the caller's own.
    pub fn in_netns(netns: &Path) -> HttpClient {
        HttpClient::with_roots(mozilla_roots(), Some(netns))
    }

    /// Also trusts every certificate of a PEM file (a private CA for alert
    /// receivers). The error names the file.
    pub fn with_ca_file(path: &Path) -> Result<HttpClient, TlsSetupError> {
        let pem = std::fs::read(path).map_err(|e| TlsSetupError::Roots {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        HttpClient::with_extra_roots_pem(&pem, &path.display().to_string())
    }

    /// Also trusts every certificate in `pem`; `source` names where it came
    /// from in errors. A PEM without any certificate is an error.
    pub fn with_extra_roots_pem(pem: &[u8], source: &str) -> Result<HttpClient, TlsSetupError> {
        let err = |reason: String| TlsSetupError::Roots {
            path: source.to_owned(),
            reason,
        };
        let mut roots = mozilla_roots();
        let mut added = 0;
        for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|e| err(format!("certificate {}: not valid PEM: {e}", i + 1)))?;
            roots
                .add(cert)
                .map_err(|e| err(format!("certificate {}: not a usable CA certificate: {e}", i + 1)))?;
            added += 1;
        }
        if added == 0 {
            return Err(err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
        }
        Ok(HttpClient::with_roots(roots, None))
    }

    fn with_roots(roots: rustls::RootCertStore, netns: Option<&Path>) -> HttpClient {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let dialer = Dialer {
            http,
            netns: netns.map(|p| Arc::new(p.to_path_buf())),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dialer);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        HttpClient { inner }
    }

    /// GET `url`; the whole exchange must finish within `timeout` and the body
    /// must fit in `max_body` bytes. Non-2xx is an error.
    pub async fn get(&self, url: &str, timeout: Duration, max_body: usize) -> Result<Bytes, HttpError> {
        self.send(Method::GET, url, None, None, timeout, max_body).await
    }

    /// POST a JSON body.
    pub async fn post_json(&self, url: &str, body: Vec<u8>, timeout: Duration) -> Result<Bytes, HttpError> {
        self.send(Method::POST, url, Some(body), None, timeout, 64 * 1024).await
    }

    /// POST a JSON body with an optional `Authorization` header.
    pub async fn post_json_auth(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
        auth: Option<&Authorization>,
    ) -> Result<Bytes, HttpError> {
        self.send(Method::POST, url, Some(body), auth, timeout, 64 * 1024).await
    }

    /// POST a JSON body to a receiver whose URL may carry a secret: the
    /// error names the URL only as [`redact_url`] shows it.
    pub async fn post_json_secret(
        &self,
        url: &SecretUrl,
        body: Vec<u8>,
        timeout: Duration,
        auth: Option<&Authorization>,
    ) -> Result<Bytes, HttpError> {
        self.post_json_auth(url.expose(), body, timeout, auth)
            .await
            .map_err(HttpError::redacted)
    }

    /// GET `url` and hand each chunk of the body to `on_chunk` as it
    /// arrives, never holding more than one; the whole exchange within
    /// `timeout`, at most `max_bytes` of body. Returns the body's size.
    pub async fn get_streamed<E>(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: u64,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, StreamError<E>> {
        let exchange = async {
            let mut body = self
                .start(Method::GET, url, None, None, max_bytes)
                .await
                .map_err(StreamError::Http)?;
            let mut total = 0u64;
            while let Some(chunk) = next_chunk(&mut body, url).await.map_err(StreamError::Http)? {
                total += chunk.len() as u64;
                if total > max_bytes {
                    return Err(StreamError::Http(too_large(url, max_bytes)));
                }
                on_chunk(&chunk).map_err(StreamError::Sink)?;
            }
            Ok(total)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| StreamError::Http(timed_out(url, timeout)))?
    }

    /// GET `url` into `out` chunk by chunk (a heap profile to a file): the
    /// whole exchange within `timeout`, at most `max_bytes`. Returns the
    /// bytes written; on an error `out` may hold part of the body.
    pub async fn get_to_writer<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: u64,
        out: &mut W,
    ) -> Result<u64, HttpError> {
        let exchange = async {
            let mut body = self.start(Method::GET, url, None, None, max_bytes).await?;
            let mut total = 0u64;
            while let Some(chunk) = next_chunk(&mut body, url).await? {
                total += chunk.len() as u64;
                if total > max_bytes {
                    return Err(too_large(url, max_bytes));
                }
                out.write_all(&chunk).await.map_err(|e| HttpError::Write {
                    url: url.into(),
                    reason: e.to_string(),
                })?;
            }
            out.flush().await.map_err(|e| HttpError::Write {
                url: url.into(),
                reason: e.to_string(),
            })?;
            Ok(total)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| timed_out(url, timeout))?
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        auth: Option<&Authorization>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Bytes, HttpError> {
        let max = max_body as u64;
        let exchange = async {
            let mut resp = self.start(method, url, body, auth, max).await?;
            let mut buf = Vec::new();
            while let Some(chunk) = next_chunk(&mut resp, url).await? {
                if (buf.len() + chunk.len()) as u64 > max {
                    return Err(too_large(url, max));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(buf))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| timed_out(url, timeout))?
    }

    /// Sends the request and checks the answer's head: a 2xx status (else
    /// an error quoting the start of the body), a declared length within
    /// `max_body`. Returns the body, unread.
    async fn start(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        auth: Option<&Authorization>,
        max_body: u64,
    ) -> Result<Incoming, HttpError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url {
            url: url.into(),
            reason: e.to_string(),
        })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(HttpError::Url {
                    url: url.into(),
                    reason: "only http:// and https:// URLs are supported".into(),
                })
            }
        }
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(USER_AGENT, concat!("headroom/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.0.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| HttpError::Url {
                url: url.into(),
                reason: e.to_string(),
            })?;
        let resp = self.inner.request(req).await.map_err(|e| HttpError::Connect {
            url: url.into(),
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let mut text = Vec::new();
            while text.len() < ERROR_BODY_BYTES {
                match next_chunk(&mut body, url).await {
                    Ok(Some(c)) => text.extend_from_slice(&c[..c.len().min(ERROR_BODY_BYTES - text.len())]),
                    _ => break,
                }
            }
            return Err(HttpError::Status {
                url: url.into(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        // A declared Content-Length (hyper has checked it is a number).
        if body.size_hint().exact().is_some_and(|len| len > max_body) {
            return Err(too_large(url, max_body));
        }
        Ok(body)
    }
}

/// Makes the client's TCP connections: as hyper's [`HttpConnector`] does,
/// or from inside a network namespace.
#[derive(Clone)]
pub struct Dialer {
    http: HttpConnector,
    netns: Option<Arc<std::path::PathBuf>>,
}

/// How long a connection made inside a namespace may take.
const NETNS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Dialled = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

impl tower::Service<Uri> for Dialer {
    type Response = Dialled;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Dialled, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let Some(netns) = self.netns.clone() else {
            let f = self.http.call(uri);
            return Box::pin(async move { f.await.map_err(Into::into) });
        };
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new().name("netns dial".into()).spawn(move || {
                let _ = tx.send(dial_in_netns(&netns, &host, port, NETNS_CONNECT_TIMEOUT));
            })?;
            let stream = rx
                .await
                .map_err(|_| "the dialling thread ended without a connection")??;
            stream.set_nonblocking(true)?;
            stream.set_nodelay(true)?;
            Ok(hyper_util::rt::TokioIo::new(tokio::net::TcpStream::from_std(stream)?))
        })
    }
}

/// Connects to `host:port` from inside the network namespace `netns`, on
/// the calling thread, which must end after (it stays in the namespace).
/// The error names the namespace file and what failed.
pub fn dial_in_netns(netns: &Path, host: &str, port: u16, timeout: Duration) -> std::io::Result<std::net::TcpStream> {
    use std::io::{Error, ErrorKind};
    use std::net::ToSocketAddrs;
    use std::os::fd::AsRawFd;
    let named = |what: &str, e: Error| Error::new(e.kind(), format!("{what} {}: {e}", netns.display()));
    let ns = std::fs::File::open(netns).map_err(|e| named("cannot open the network namespace", e))?;
    if !is_own_netns(netns) {
        // SAFETY: setns on a valid open descriptor; it changes this thread's
        // network namespace only, and the thread ends after this call.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let e = Error::last_os_error();
            return Err(Error::new(
                e.kind(),
                format!(
                    "cannot enter the network namespace {} (setns needs CAP_SYS_ADMIN; or pass --enter-netns false \
                     and annotate a URL the node can reach): {e}",
                    netns.display()
                ),
            ));
        }
    }
    let mut last = Error::new(ErrorKind::NotFound, format!("{host}: no address"));
    for addr in (host, port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Error::new(e.kind(), format!("{addr} in {}: {e}", netns.display())),
        }
    }
    Err(last)
}

/// Whether the network namespace file `netns` (`/proc/PID/ns/net`) is the
/// calling thread's own: false when either cannot be read.
pub fn is_own_netns(netns: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(netns), std::fs::metadata("/proc/thread-self/ns/net")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Whether `url`'s host is a loopback address (`127.0.0.0/8`, `::1`,
/// `localhost`): reachable only from inside the target's own network
/// namespace.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The next data chunk of a body (trailers are skipped), `None` at its end.
async fn next_chunk(body: &mut Incoming, url: &str) -> Result<Option<Bytes>, HttpError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(HttpError::Connect {
                    url: url.into(),
                    reason: format!("reading the body: {}", error_chain(&e)),
                })
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn too_large(url: &str, limit: u64) -> HttpError {
    HttpError::TooLarge { url: url.into(), limit }
}

fn timed_out(url: &str, after: Duration) -> HttpError {
    HttpError::Timeout { url: url.into(), after }
}

fn mozilla_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What a log line or an error may show of `url`: `scheme://host:port`,
/// then `/…` where a path, query or fragment was left out. The userinfo,
/// path and query of a receiver URL can be its secret (Slack, Teams and
/// Discord webhooks carry it in the path), so none of them is shown.
/// Anything that does not read as `scheme://authority` is shown as
/// `<invalid URL>`, never as itself.
pub fn redact_url(url: &str) -> String {
    const INVALID: &str = "<invalid URL>";
    let Some((scheme, rest)) = url.split_once("://") else {
        return INVALID.into();
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // An `@` after the authority may belong to a password with a `/` in it.
    if !scheme_ok || tail.contains('@') {
        return INVALID.into();
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) if ipv6_literal(addr) => (&host_port[..addr.len() + 2], after),
            _ => return INVALID.into(),
        },
        None => match host_port.split_once(':') {
            Some((h, _)) => (h, &host_port[h.len()..]),
            None => (host_port, ""),
        },
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)));
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !host_ok || !port_ok {
        return INVALID.into();
    }
    let shown_tail = match tail {
        "" => "",
        "/" => "/",
        _ => "/…",
    };
    format!("{scheme}://{host}{port}{shown_tail}")
}

/// A target's URL for display: as [`redact_url`] (no userinfo), but the
/// path kept, which names the endpoint (`/debug/vars`, `/metrics`); a query
/// is shown as `?…`.
pub fn redact_keep_path(url: &str) -> String {
    let shown = redact_url(url);
    let Some(base) = shown.strip_suffix("/…") else {
        return shown;
    };
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let tail = &rest[rest.find('/').unwrap_or(rest.len())..];
    let (path, query) = match tail.find(['?', '#']) {
        Some(i) => (&tail[..i], !tail[i..].is_empty()),
        None => (tail, false),
    };
    format!("{base}{path}{}", if query { "?…" } else { "" })
}

/// An IPv6 address as written between brackets, with an optional zone
/// (`fe80::1%25eth0`).
fn ipv6_literal(s: &str) -> bool {
    let (addr, zone) = s.split_once('%').unwrap_or((s, ""));
    addr.contains(':')
        && addr.chars().all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        && zone.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `text` with every part of `url` that [`redact_url`] leaves out replaced
/// by `…`: for error texts from below (hyper, rustls, an answer's body)
/// that might quote the URL.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    let (authority, tail) = after_scheme.split_at(end);
    let mut secrets: Vec<&str> = Vec::new();
    if tail.len() > 1 {
        secrets.push(tail);
        // The path and the query also on their own, in case only one is quoted.
        secrets.extend(tail.split(['?', '#']).filter(|p| p.len() > 1));
    }
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        secrets.push(userinfo);
        secrets.extend(userinfo.split(':').filter(|p| !p.is_empty()));
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s, "…");
    }
    out
}

/// A receiver's URL that may carry a secret in its userinfo, path or
/// query: `Display` and `Debug` show only [`redact_url`]'s form.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: String,
    shown: String,
}

impl SecretUrl {
    pub fn new(url: &str) -> SecretUrl {
        SecretUrl {
            url: url.to_owned(),
            shown: redact_url(url),
        }
    }

    /// The whole URL, to send to; never to log.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", self.shown)
    }
}

impl HttpError {
    /// The same error naming `url` only as [`redact_url`] shows it, with
    /// any quote of its secret parts removed from the reason and body.
    pub fn redacted(self) -> HttpError {
        let hide = |url: &str| redact_url(url);
        match self {
            HttpError::Url { url, reason } => HttpError::Url {
                reason: scrub(&reason, &url),
                url: hide(&url),
            },
            HttpError::Connect { url, reason } => HttpError::Connect {
                reason: scrub(&reason, &url),
                url: hide(&url),
            },
            HttpError::Timeout { url, after } => HttpError::Timeout { url: hide(&url), after },
            HttpError::TooLarge { url, limit } => HttpError::TooLarge { url: hide(&url), limit },
            HttpError::Status { url, status, body } => HttpError::Status {
                body: scrub(&body, &url),
                url: hide(&url),
                status,
            },
            HttpError::Write { url, reason } => HttpError::Write {
                reason: scrub(&reason, &url),
                url: hide(&url),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_url_is_shown_with_its_path_and_without_credentials_or_query() {
        assert_eq!(
            redact_keep_path("http://127.0.0.1:6060/debug/vars"),
            "http://127.0.0.1:6060/debug/vars"
        );
        assert_eq!(
            redact_keep_path("http://user:pw@app:6060/debug/pprof/heap?debug=1"),
            "http://app:6060/debug/pprof/heap?…"
        );
        assert_eq!(redact_keep_path("http://app:6060"), "http://app:6060");
        assert_eq!(redact_keep_path("nonsense"), "<invalid URL>");
    }
    use tokio::io::AsyncReadExt;

    /// A raw TCP server answering each connection with `answer`, after `delay`.
    async fn server(answer: Vec<u8>, delay: Duration) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("http://{addr}/debug/vars")
    }

    #[tokio::test]
    async fn ok_timeout_too_large_status() {
        let c = HttpClient::new();
        let url = server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            Duration::ZERO,
        )
        .await;
        assert_eq!(&c.get(&url, Duration::from_secs(2), 100).await.unwrap()[..], b"{}");

        // Slowloris: headers promptly, then the body never completes.
        let url = server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{".to_vec(),
            Duration::ZERO,
        )
        .await;
        let e = c.get(&url, Duration::from_millis(300), 10_000).await.unwrap_err();
        assert!(
            matches!(e, HttpError::Timeout { .. }) || matches!(e, HttpError::Connect { .. }),
            "{e}"
        );
        let url = server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            Duration::from_secs(5),
        )
        .await;
        let e = c.get(&url, Duration::from_millis(200), 100).await.unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");

        // Declared too large, and chunked too large.
        let url = server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n".to_vec(),
            Duration::ZERO,
        )
        .await;
        let e = c.get(&url, Duration::from_secs(2), 1024).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            chunked.extend_from_slice(b"200\r\n");
            chunked.extend_from_slice(&[b'x'; 512]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let url = server(chunked, Duration::ZERO).await;
        let e = c.get(&url, Duration::from_secs(2), 1024).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");

        let url = server(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec(),
            Duration::ZERO,
        )
        .await;
        let e = c.get(&url, Duration::from_secs(2), 100).await.unwrap_err();
        assert!(e.to_string().contains("HTTP 404"), "{e}");

        // Nothing listening.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = c
            .get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Connect { .. }), "{e}");
    }

    /// A raw TCP server that answers one request per connection with
    /// `answer` and sends the request it read (head and body) to the test.
    async fn recording_server(answer: Vec<u8>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (answer, tx) = (answer.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        req.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&req).to_lowercase();
                        let Some(head_end) = text.find("\r\n\r\n") else {
                            if n == 0 {
                                break;
                            }
                            continue;
                        };
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: ")?.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if n == 0 || req.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (format!("http://{addr}/hook"), rx)
    }

    fn chunked_body(chunks: usize, size: usize) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for i in 0..chunks {
            out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn streamed_get_hands_over_every_chunk() {
        let c = HttpClient::new();
        let (url, _rx) = recording_server(chunked_body(20, 1000)).await;
        let mut seen = Vec::new();
        let n = c
            .get_streamed(&url, Duration::from_secs(5), 1 << 20, |chunk| {
                seen.extend_from_slice(chunk);
                Ok::<(), String>(())
            })
            .await
            .unwrap();
        assert_eq!((n, seen.len()), (20_000, 20_000));
        assert!(seen[..1000].iter().all(|&b| b == b'a') && seen[19_000..].iter().all(|&b| b == b't'));

        // The consumer refuses: its error, and the rest is not read.
        let mut calls = 0;
        let e = c
            .get_streamed(&url, Duration::from_secs(5), 1 << 20, |_| {
                calls += 1;
                Err("not Go")
            })
            .await
            .unwrap_err();
        assert!(matches!(e, StreamError::Sink("not Go")), "{e}");
        assert_eq!(calls, 1);

        // Above the cap while streaming (no declared length).
        let e = c
            .get_streamed(&url, Duration::from_secs(5), 5_000, |_| Ok::<(), String>(()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StreamError::Http(HttpError::TooLarge { limit: 5_000, .. })),
            "{e}"
        );
        assert!(e.to_string().contains(&url), "{e}");
    }

    #[tokio::test]
    async fn get_to_writer_copies_chunk_by_chunk() {
        let c = HttpClient::new();
        let (url, _rx) = recording_server(chunked_body(50, 4096)).await;
        let mut out: Vec<u8> = Vec::new();
        let n = c
            .get_to_writer(&url, Duration::from_secs(5), 1 << 20, &mut out)
            .await
            .unwrap();
        assert_eq!((n, out.len()), (50 * 4096, 50 * 4096));
        let mut out: Vec<u8> = Vec::new();
        let e = c
            .get_to_writer(&url, Duration::from_secs(5), 10_000, &mut out)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { limit: 10_000, .. }), "{e}");
        assert!(out.len() <= 10_000, "{}", out.len());

        // A writer that fails.
        struct Full;
        impl AsyncWrite for Full {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Err(std::io::Error::other("disk full")))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let e = c
            .get_to_writer(&url, Duration::from_secs(5), 1 << 20, &mut Full)
            .await
            .unwrap_err();
        assert!(
            matches!(e, HttpError::Write { .. }) && e.to_string().contains("disk full"),
            "{e}"
        );

        // An error status quotes the start of the body, and nothing is written.
        let (url, _rx) = recording_server(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n{}",
                "z".repeat(1000)
            )
            .into_bytes(),
        )
        .await;
        let mut out: Vec<u8> = Vec::new();
        let e = c
            .get_to_writer(&url, Duration::from_secs(5), 1 << 20, &mut out)
            .await
            .unwrap_err();
        match e {
            HttpError::Status { status, body, .. } => assert_eq!((status, body.len()), (503, 200)),
            other => panic!("{other}"),
        }
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn post_sends_json_and_the_authorization_header() {
        let c = HttpClient::new();
        let (url, mut rx) = recording_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let auth = Authorization::bearer("s3cret\n").unwrap();
        c.post_json_auth(&url, b"{\"a\":1}".to_vec(), Duration::from_secs(5), Some(&auth))
            .await
            .unwrap();
        let req = rx.recv().await.unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
        let lower = req.to_lowercase();
        assert!(lower.contains("\r\nauthorization: bearer s3cret\r\n"), "{req}");
        assert!(lower.contains("\r\ncontent-type: application/json\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"a\":1}"), "{req}");

        let basic = Authorization::basic("Aladdin", "open sesame\n").unwrap();
        c.post_json_auth(&url, b"{}".to_vec(), Duration::from_secs(5), Some(&basic))
            .await
            .unwrap();
        let req = rx.recv().await.unwrap();
        assert!(req.contains("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), "{req}");

        c.post_json(&url, b"{}".to_vec(), Duration::from_secs(5)).await.unwrap();
        let req = rx.recv().await.unwrap();
        assert!(!req.to_lowercase().contains("authorization"), "{req}");
    }

    #[test]
    fn authorization_values() {
        assert_eq!(
            format!("{:?}", Authorization::bearer("tok").unwrap()),
            "Authorization(Bearer <redacted>)"
        );
        assert_eq!(Authorization::bearer(" \n").unwrap_err(), AuthError::Empty);
        assert_eq!(Authorization::bearer("a\nb").unwrap_err(), AuthError::Invalid);
        assert_eq!(Authorization::basic("a:b", "c").unwrap_err(), AuthError::Invalid);
        assert_eq!(Authorization::basic("", "c").unwrap_err(), AuthError::Empty);
        assert_eq!(Authorization::basic("u", "p\r\nq").unwrap_err(), AuthError::Invalid);
        assert_eq!(Authorization::header_value("Token abc").unwrap().scheme(), "Token");
        assert!(Authorization::header_value("Bearer x").unwrap().0.is_sensitive());
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[tokio::test]
    async fn only_http_and_https_urls() {
        let c = HttpClient::new();
        for url in ["ftp://127.0.0.1/x", "/relative", "not a url"] {
            let e = c.get(url, Duration::from_secs(1), 10).await.unwrap_err();
            assert!(
                matches!(e, HttpError::Url { .. }) && e.to_string().contains(url),
                "{url}: {e}"
            );
        }
    }

    /// A TLS server on loopback with a certificate made for this test,
    /// answering `body` to every request.
    async fn tls_server(body: &'static str) -> (String, String) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (format!("https://127.0.0.1:{port}/api/v2/alerts"), cert.pem())
    }

    #[tokio::test]
    async fn https_with_an_extra_root() {
        let (url, ca_pem) = tls_server("{\"ok\":true}").await;
        let c = HttpClient::with_extra_roots_pem(ca_pem.as_bytes(), "test CA").unwrap();
        let got = c.get(&url, Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!(&got[..], b"{\"ok\":true}");
        let auth = Authorization::bearer("t").unwrap();
        c.post_json_auth(&url, b"[]".to_vec(), Duration::from_secs(5), Some(&auth))
            .await
            .unwrap();

        // The compiled-in roots do not trust it: a certificate error naming the URL.
        let e = HttpClient::new()
            .get(&url, Duration::from_secs(5), 1024)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&url) && e.contains("certificate"), "{e}");

        // The same root from a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &ca_pem).unwrap();
        let c = HttpClient::with_ca_file(&file).unwrap();
        assert_eq!(
            &c.get(&url, Duration::from_secs(5), 1024).await.unwrap()[..],
            b"{\"ok\":true}"
        );
    }

    #[test]
    fn bad_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = HttpClient::with_ca_file(&missing).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = HttpClient::with_ca_file(&empty).err().unwrap().to_string();
        assert!(e.contains("empty.pem") && e.contains("no PEM certificate"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let e = HttpClient::with_ca_file(&bad).err().unwrap().to_string();
        assert!(e.contains("bad.pem") && e.contains("certificate 1"), "{e}");
    }

    #[test]
    fn redact_url_keeps_scheme_host_and_port_only() {
        let cases = [
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/…",
            ),
            ("http://alertmanager:9093", "http://alertmanager:9093"),
            ("http://alertmanager:9093/", "http://alertmanager:9093/"),
            ("http://am:9093/api/v2/alerts", "http://am:9093/…"),
            ("https://user:pa55@example.com:8443/x", "https://example.com:8443/…"),
            ("https://user:pa55@example.com", "https://example.com"),
            ("https://tok@example.com/", "https://example.com/"),
            ("http://h?token=s3cret", "http://h/…"),
            ("http://h/#frag", "http://h/…"),
            ("http://h#frag", "http://h/…"),
            ("http://[::1]:9093/api?token=x", "http://[::1]:9093/…"),
            ("https://u:p@[fe80::1%25eth0]:443/x", "https://[fe80::1%25eth0]:443/…"),
            ("http://[::1]", "http://[::1]"),
            ("HTTPS://Example.COM:1/a", "HTTPS://Example.COM:1/…"),
            // Not URLs, or URLs that could hide a secret where the host is.
            ("", "<invalid URL>"),
            ("not a url", "<invalid URL>"),
            ("hooks.slack.com/services/T000/B000/XXXX", "<invalid URL>"),
            ("://host/x", "<invalid URL>"),
            ("1http://host/x", "<invalid URL>"),
            ("http://user:pa/ss@host/x", "<invalid URL>"),
            ("http://user:123/abc@host/x", "<invalid URL>"),
            ("http://host:port/x", "<invalid URL>"),
            ("http://ho st/x", "<invalid URL>"),
            ("http:///x", "<invalid URL>"),
            ("http://[::1/x", "<invalid URL>"),
            ("http://[s3cret]:1/x", "<invalid URL>"),
            ("http://[::1]x/y", "<invalid URL>"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url:?}");
        }
        let s = SecretUrl::new("https://u:pw@h:1/services/SECRETXYZ?token=SECRET2");
        assert_eq!(s.to_string(), "https://h:1/…");
        assert_eq!(format!("{s:?}"), "SecretUrl(https://h:1/…)");
        assert_eq!(s.expose(), "https://u:pw@h:1/services/SECRETXYZ?token=SECRET2");
    }

    #[test]
    fn errors_made_redacted_quote_no_secret_part() {
        let url = "https://bot:pw9@h:1/services/T0/SECRETXYZ?token=SECRET2#frag";
        let secrets = ["bot", "pw9", "SECRETXYZ", "SECRET2", "services", "frag"];
        let errors = [
            HttpError::Url {
                url: url.into(),
                reason: "bad".into(),
            },
            HttpError::Connect {
                url: url.into(),
                reason: format!("error sending {url}: path /services/T0/SECRETXYZ, query token=SECRET2, by bot:pw9"),
            },
            HttpError::Timeout {
                url: url.into(),
                after: Duration::from_secs(1),
            },
            HttpError::TooLarge {
                url: url.into(),
                limit: 1,
            },
            HttpError::Status {
                url: url.into(),
                status: 404,
                body: "no route /services/T0/SECRETXYZ".into(),
            },
            HttpError::Write {
                url: url.into(),
                reason: "?token=SECRET2".into(),
            },
        ];
        for e in errors {
            let r = e.redacted();
            let text = format!("{r} {r:?}");
            assert!(text.contains("https://h:1/…"), "{text}");
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }

    #[tokio::test]
    async fn a_failed_post_to_a_secret_url_names_only_its_host() {
        let c = HttpClient::new();
        // Nothing listening.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = SecretUrl::new(&format!(
            "http://127.0.0.1:{port}/services/T000/SECRETXYZ?token=SECRET2"
        ));
        let e = c
            .post_json_secret(&url, b"{}".to_vec(), Duration::from_secs(2), None)
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, HttpError::Connect { .. }), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}/…")), "{text}");
        assert!(!text.contains("SECRET") && !text.contains("T000"), "{text}");
        // An error answer, and a timeout.
        let (hook, _rx) =
            recording_server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let url = SecretUrl::new(&format!("{hook}/SECRETXYZ?token=SECRET2"));
        let e = c
            .post_json_secret(&url, b"{}".to_vec(), Duration::from_secs(2), None)
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains("HTTP 503") && !text.contains("SECRET"), "{text}");
        let slow = server(Vec::new(), Duration::from_secs(5)).await;
        let url = SecretUrl::new(&format!("{slow}/SECRETXYZ?token=SECRET2"));
        let e = c
            .post_json_secret(&url, b"{}".to_vec(), Duration::from_millis(200), None)
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            matches!(e, HttpError::Timeout { .. }) && !text.contains("SECRET"),
            "{text}"
        );
    }
}
