//! The Go side of the collector: scraping the target's Go runtime (apart
//! from the cgroup polls, every `--go-interval`) and what is kept between
//! scrapes (GOGC from the target's environment, the live-heap envelope).

use crate::analysis::go_heap::GoTracker;
use crate::httpc::HttpClient;
use crate::parse::go_runtime::GoSample;
use crate::sample::GoReading;
use crate::source::go::{self, SCRAPE_TIMEOUT};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One Go scrape's result, stamped with the times it finished.
#[derive(Debug, Clone)]
pub struct GoScrape {
    pub result: Result<GoSample, String>,
    /// Unix time, ms.
    pub at_ms: u64,
    pub at: Instant,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Scrapes one Go URL now, within `interval` and [`SCRAPE_TIMEOUT`].
pub async fn scrape(client: &HttpClient, url: &str, interval: Duration) -> GoScrape {
    let timeout = SCRAPE_TIMEOUT.min(interval);
    let result = go::scrape(client, url, timeout).await.map_err(|e| e.to_string());
    GoScrape {
        result,
        at_ms: unix_ms(SystemTime::now()),
        at: Instant::now(),
    }
}

/// GOGC as the Go runtime reads it: unset or empty is 100, `off` is -1.
pub fn parse_gogc(v: Option<&str>) -> Option<i64> {
    match v.map(str::trim) {
        None | Some("") => Some(100),
        Some("off") => Some(-1),
        Some(n) => n.parse().ok(),
    }
}

/// What the collector keeps of the Go runtime between scrapes.
#[derive(Debug, Default)]
pub struct GoState {
    /// The latest successful scrape, `None` after a failed one.
    pub reading: Option<GoReading>,
    pub tracker: GoTracker,
    /// GOGC from the target's environment, read once per PID.
    pub gogc_env: Option<(u32, Option<i64>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gogc_values() {
        assert_eq!(parse_gogc(None), Some(100));
        assert_eq!(parse_gogc(Some("")), Some(100));
        assert_eq!(parse_gogc(Some("off")), Some(-1));
        assert_eq!(parse_gogc(Some("200")), Some(200));
        assert_eq!(parse_gogc(Some("lots")), None);
    }
}
