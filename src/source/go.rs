//! Scraping the target's Go runtime over HTTP: expvar `/debug/vars`,
//! client_golang `/metrics` or net/http/pprof's text heap profile
//! `/debug/pprof/heap?debug=1`, told apart by content, decoded as the body
//! arrives (memory bounded by a chunk, whatever the body's size).

use crate::httpc::{HttpClient, HttpError, StreamError};
use crate::parse::go_body::GoBodyDecoder;
use crate::parse::go_runtime::{GoParseError, GoSample};
use std::time::Duration;

/// The whole scrape must finish within this (a hung target must not hold
/// the next one up).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bodies above this are refused. expvar's memstats is ~5 KB and
/// client_golang's /metrics ~20 KB, but a service may publish a large
/// expvar map next to memstats, and the pprof heap page grows with the
/// heap profile's records (~600 bytes each); the body is decoded as it
/// streams, so this bounds the time spent, not memory.
pub const MAX_BODY: u64 = 256 * 1024 * 1024;

/// The least time between two scrapes of the pprof heap page
/// (`/debug/pprof/heap?debug=1`). Besides reading MemStats, as expvar does
/// (a stop-the-world), the target copies its heap profile and symbolises
/// every record's stack. Measured (BENCHMARKS.md, "One Go scrape, as the
/// target pays for it", `scripts/bench-pprof-scrape.sh`): 1.7 ms of the
/// target's CPU per scrape at 3 records, 4.05 ms and 82 KB at 119, about
/// 20–25 µs per record, against 1.0–1.15 ms for `/debug/vars`. At 15 s a
/// ~120-record profile costs the target ≈ 0.03 % of a core, what expvar
/// costs at the default 5 s; a service with thousands of records (~45 ms a
/// scrape at 2,000) is better scraped every 60 s.
pub const PPROF_MIN_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, thiserror::Error)]
pub enum GoSourceError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: GoParseError,
    },
}

pub async fn scrape(client: &HttpClient, url: &str, timeout: Duration) -> Result<GoSample, GoSourceError> {
    scrape_capped(client, url, timeout, MAX_BODY).await
}

/// [`scrape`] with another cap on the body.
pub async fn scrape_capped(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
    max_body: u64,
) -> Result<GoSample, GoSourceError> {
    let parse_err = |source| GoSourceError::Parse {
        url: url.into(),
        source,
    };
    let mut decoder = GoBodyDecoder::new();
    match client
        .get_streamed(url, timeout, max_body, |chunk| decoder.feed(chunk))
        .await
    {
        Ok(_) => decoder.finish().map_err(parse_err),
        Err(StreamError::Http(e)) => Err(e.into()),
        Err(StreamError::Sink(e)) => Err(parse_err(e)),
    }
}

/// `/debug/pprof/heap` on the same host as `go_url`.
pub fn pprof_url_from(go_url: &str) -> Option<String> {
    let uri: axum::http::Uri = go_url.parse().ok()?;
    let authority = uri.authority()?;
    Some(format!(
        "{}://{}/debug/pprof/heap",
        uri.scheme_str().unwrap_or("http"),
        authority
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MEMSTATS: &str = "\"memstats\":{\"HeapAlloc\":100,\"HeapInuse\":200,\"HeapIdle\":300,\"PauseNs\":[1,2,3]}";

    /// What a test server sends after the request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Chunked expvar JSON with about this many bytes of other keys before memstats.
        Expvar(usize),
        /// Declares a long body, sends a little, closes.
        ClosesMidBody,
        /// Chunked, never ends.
        Endless,
        /// An HTML error page, then a long chunked tail.
        Html,
    }

    async fn serve(answer: Answer) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let chunk = |text: &[u8]| {
                        let mut c = format!("{:x}\r\n", text.len()).into_bytes();
                        c.extend_from_slice(text);
                        c.extend_from_slice(b"\r\n");
                        c
                    };
                    let chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    match answer {
                        Answer::Expvar(filler) => {
                            let _ = s.write_all(chunked_head).await;
                            let _ = s.write_all(&chunk(b"{\"cmdline\":[\"/app\"],\"big\":{")).await;
                            let entry = format!("\"k\":\"{}\",", "x".repeat(4000));
                            let mut piece = String::new();
                            let mut sent = 0;
                            while sent < filler {
                                piece.clear();
                                while piece.len() < 60_000 {
                                    piece.push_str(&entry);
                                }
                                sent += piece.len();
                                if s.write_all(&chunk(piece.as_bytes())).await.is_err() {
                                    return;
                                }
                            }
                            let tail = format!("\"end\":0}},{MEMSTATS}}}");
                            let _ = s.write_all(&chunk(tail.as_bytes())).await;
                            let _ = s.write_all(b"0\r\n\r\n").await;
                        }
                        Answer::ClosesMidBody => {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{\"cmdline\":[\"/app\"")
                                .await;
                        }
                        Answer::Endless => {
                            let _ = s.write_all(chunked_head).await;
                            let _ = s.write_all(&chunk(b"{\"k\":[")).await;
                            let piece = chunk(&b"1,".repeat(8192));
                            while s.write_all(&piece).await.is_ok() {}
                            return;
                        }
                        Answer::Html => {
                            let _ = s.write_all(chunked_head).await;
                            let _ = s.write_all(&chunk(b"\n<!DOCTYPE html><html>")).await;
                            let piece = chunk(&[b'x'; 65536]);
                            for _ in 0..1000 {
                                if s.write_all(&piece).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("http://{addr}/debug/vars")
    }

    #[tokio::test]
    async fn streams_a_large_expvar_map() {
        let c = HttpClient::new();
        let url = serve(Answer::Expvar(4 << 20)).await;
        let s = scrape(&c, &url, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            (s.heap_alloc, s.heap_inuse, s.heap_idle),
            (Some(100), Some(200), Some(300))
        );
        let url = serve(Answer::Expvar(0)).await;
        assert_eq!(scrape(&c, &url, SCRAPE_TIMEOUT).await.unwrap().heap_alloc, Some(100));
    }

    #[tokio::test]
    async fn failures_name_the_url() {
        let c = HttpClient::new();
        // Over the cap while streaming.
        let url = serve(Answer::Expvar(1 << 20)).await;
        let e = scrape_capped(&c, &url, Duration::from_secs(30), 512 * 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, GoSourceError::Http(HttpError::TooLarge { .. })), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        // The connection closes before the declared end.
        let url = serve(Answer::ClosesMidBody).await;
        let e = scrape(&c, &url, SCRAPE_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, GoSourceError::Http(HttpError::Connect { .. })), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        // A body that never ends runs into the deadline.
        let url = serve(Answer::Endless).await;
        let e = scrape(&c, &url, Duration::from_millis(500)).await.unwrap_err();
        assert!(matches!(e, GoSourceError::Http(HttpError::Timeout { .. })), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        // An HTML page is refused from its first chunk, not read to the end.
        let url = serve(Answer::Html).await;
        let e = scrape(&c, &url, Duration::from_secs(30)).await.unwrap_err();
        assert!(
            matches!(
                e,
                GoSourceError::Parse {
                    source: GoParseError::Html,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(&url), "{e}");
    }

    #[test]
    fn pprof_url() {
        assert_eq!(
            pprof_url_from("http://127.0.0.1:6060/debug/vars").as_deref(),
            Some("http://127.0.0.1:6060/debug/pprof/heap")
        );
        assert_eq!(
            pprof_url_from("http://app:8080/metrics?x=1").as_deref(),
            Some("http://app:8080/debug/pprof/heap")
        );
        assert_eq!(pprof_url_from("not a url"), None);
    }
}
