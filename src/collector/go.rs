//! The Go side of the collector: scraping the target's Go runtime (apart
//! from the cgroup polls, every `--go-interval`) and what is kept between
//! scrapes (GOGC from the target's environment, the live-heap envelope).

use crate::analysis::gc_pace::GcPaceTracker;
use crate::analysis::go_heap::GoTracker;
use crate::httpc::HttpClient;
use crate::parse::go_runtime::{GoFormat, GoSample, GO_NO_MEMORY_LIMIT};
use crate::sample::GoReading;
use crate::source::go::{self, PPROF_MIN_INTERVAL, SCRAPE_TIMEOUT};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The age in seconds, at `since_boot` (seconds of CLOCK_BOOTTIME), of a
/// process that started `start_ticks` clock ticks after boot (field 22 of
/// /proc/PID/stat).
pub fn age_from_ticks(start_ticks: u64, since_boot: Duration) -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let age = since_boot.as_secs_f64() - start_ticks as f64 / hz as f64;
    (age > 0.0).then_some(age)
}

/// Time since boot (CLOCK_BOOTTIME, the clock /proc/PID/stat's start time
/// counts on).
pub fn since_boot() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

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

/// The time from one scrape's start to the next: `interval`, but at least
/// [`PPROF_MIN_INTERVAL`] after a scrape that read the pprof heap page (the
/// target renders a heap profile for each).
pub fn pace(interval: Duration, scrape: &GoScrape) -> Duration {
    match &scrape.result {
        Ok(s) if s.format == Some(GoFormat::Pprof) => interval.max(PPROF_MIN_INTERVAL),
        _ => interval,
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

/// GOMEMLIMIT as the Go runtime reads it: a byte count with an optional
/// unit (`B`, `KiB`, `MiB`, `GiB`, `TiB`); unset, empty or `off` is no limit
/// (math.MaxInt64). `None` for what the runtime would refuse (it then
/// refuses to start, so a running target never has it).
pub fn parse_gomemlimit(v: Option<&str>) -> Option<u64> {
    let v = match v {
        None | Some("") | Some("off") => return Some(GO_NO_MEMORY_LIMIT),
        Some(v) => v,
    };
    let units: [(&str, u64); 5] = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
        ("B", 1),
    ];
    let (digits, unit) = units
        .iter()
        .find_map(|(suffix, n)| v.strip_suffix(suffix).map(|d| (d, *n)))
        .unwrap_or((v, 1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(unit).filter(|b| *b <= GO_NO_MEMORY_LIMIT)
}

/// GOGC and GOMEMLIMIT from the target's environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoEnv {
    pub gogc: Option<i64>,
    pub gomemlimit: Option<u64>,
}

/// What the collector keeps of the Go runtime between scrapes.
#[derive(Debug, Default)]
pub struct GoState {
    /// The latest successful scrape, `None` after a failed one.
    pub reading: Option<GoReading>,
    pub tracker: GoTracker,
    pub pace: GcPaceTracker,
    /// GOGC and GOMEMLIMIT from the target's environment, read once per PID.
    pub env: Option<(u32, GoEnv)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pprof_page_is_scraped_at_its_own_pace() {
        let at = |format| GoScrape {
            result: Ok(GoSample {
                format,
                ..GoSample::default()
            }),
            at_ms: 0,
            at: Instant::now(),
        };
        let five = Duration::from_secs(5);
        assert_eq!(pace(five, &at(Some(GoFormat::Expvar))), five);
        assert_eq!(pace(five, &at(Some(GoFormat::Prometheus))), five);
        assert_eq!(pace(five, &at(Some(GoFormat::Pprof))), PPROF_MIN_INTERVAL);
        let slow = Duration::from_secs(60);
        assert_eq!(
            pace(slow, &at(Some(GoFormat::Pprof))),
            slow,
            "a slower --go-interval stands"
        );
        let failed = GoScrape {
            result: Err("down".into()),
            at_ms: 0,
            at: Instant::now(),
        };
        assert_eq!(pace(five, &failed), five);
    }

    #[test]
    fn the_age_of_this_process_from_its_start_ticks() {
        // Field 22 of /proc/self/stat, the 20th after the command's ')'.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let start: u64 = after.split(' ').nth(19).unwrap().parse().unwrap();
        let age = age_from_ticks(start, since_boot().unwrap()).unwrap();
        assert!(age > 0.0 && age < 600.0, "this test process is {age} s old");
        assert_eq!(
            age_from_ticks(u64::MAX / 2, since_boot().unwrap()),
            None,
            "not started yet"
        );
    }

    #[test]
    fn gogc_values() {
        assert_eq!(parse_gogc(None), Some(100));
        assert_eq!(parse_gogc(Some("")), Some(100));
        assert_eq!(parse_gogc(Some("off")), Some(-1));
        assert_eq!(parse_gogc(Some("200")), Some(200));
        assert_eq!(parse_gogc(Some("lots")), None);
    }

    #[test]
    fn gomemlimit_values() {
        let no_limit = Some(i64::MAX as u64);
        assert_eq!(parse_gomemlimit(None), no_limit);
        assert_eq!(parse_gomemlimit(Some("")), no_limit);
        assert_eq!(parse_gomemlimit(Some("off")), no_limit);
        assert_eq!(parse_gomemlimit(Some("96MiB")), Some(96 << 20));
        assert_eq!(parse_gomemlimit(Some("2GiB")), Some(2 << 30));
        assert_eq!(parse_gomemlimit(Some("1TiB")), Some(1 << 40));
        assert_eq!(parse_gomemlimit(Some("512KiB")), Some(512 << 10));
        assert_eq!(parse_gomemlimit(Some("1000B")), Some(1000));
        assert_eq!(parse_gomemlimit(Some("100000000")), Some(100_000_000));
        for bad in [
            "B",
            "MiB",
            "1.5GiB",
            "-1",
            "1 GiB",
            "1GB",
            "1e9",
            "99999999999TiB",
            "lots",
        ] {
            assert_eq!(parse_gomemlimit(Some(bad)), None, "{bad}");
        }
    }
}
