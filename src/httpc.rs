//! A small HTTP/1 client (hyper, already brought by axum) with a deadline on
//! the whole exchange and a cap on the body, for scraping the target and
//! delivering alerts.

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: invalid URL: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no complete answer within {after:?} (slow or hung target)")]
    Timeout { url: String, after: Duration },
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16, body: String },
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> HttpClient {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        HttpClient { inner }
    }

    /// GET `url`; the whole exchange must finish within `timeout` and the body
    /// must fit in `max_body` bytes. Non-2xx is an error.
    pub async fn get(&self, url: &str, timeout: Duration, max_body: usize) -> Result<Bytes, HttpError> {
        self.send(Method::GET, url, None, timeout, max_body).await
    }

    /// POST a JSON body.
    pub async fn post_json(&self, url: &str, body: Vec<u8>, timeout: Duration) -> Result<Bytes, HttpError> {
        self.send(Method::POST, url, Some(body), timeout, 64 * 1024).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Bytes, HttpError> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url {
            url: url.into(),
            reason: e.to_string(),
        })?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("user-agent", concat!("headroom/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| HttpError::Url {
                url: url.into(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(|e| HttpError::Connect {
                url: url.into(),
                reason: error_chain(&e),
            })?;
            let status = resp.status();
            if let Some(len) = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            {
                if len > max_body {
                    return Err(HttpError::TooLarge {
                        url: url.into(),
                        limit: max_body,
                    });
                }
            }
            let body = Limited::new(resp.into_body(), max_body).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    HttpError::TooLarge {
                        url: url.into(),
                        limit: max_body,
                    }
                } else {
                    HttpError::Connect {
                        url: url.into(),
                        reason: e.to_string(),
                    }
                }
            })?;
            let bytes = body.to_bytes();
            if status != StatusCode::OK && !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(HttpError::Status {
                    url: url.into(),
                    status: status.as_u16(),
                    body: text,
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.into(),
                after: timeout,
            })?
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}
