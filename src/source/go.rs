//! Scraping the target's Go runtime over HTTP: expvar `/debug/vars` or
//! client_golang `/metrics`, told apart by content.

use crate::httpc::{HttpClient, HttpError};
use crate::parse::go_runtime::{parse_go_body, GoParseError, GoSample};
use std::time::Duration;

/// The whole scrape must finish within this (a hung target must not hold
/// the next one up).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bodies above this are refused: client_golang's /metrics is ~20 KB and
/// expvar's memstats ~5 KB; a larger body is not a Go runtime page.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

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
    #[error("{url}: the body is not UTF-8 text")]
    NotText { url: String },
}

pub async fn scrape(client: &HttpClient, url: &str, timeout: Duration) -> Result<GoSample, GoSourceError> {
    let body = client.get(url, timeout, MAX_BODY).await?;
    let text = std::str::from_utf8(&body).map_err(|_| GoSourceError::NotText { url: url.into() })?;
    parse_go_body(text).map_err(|source| GoSourceError::Parse {
        url: url.into(),
        source,
    })
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
