//! One poll end to end: the collector's [`Sample`], the analyzer's
//! [`Analysis`] of it, and the [`Status`] assembled from both. The daemon's
//! poller and `headroom check` both poll through this.
//!
//! [`Sample`]: crate::sample::Sample
//! [`Analysis`]: crate::analysis::predict::Analysis

use crate::alert::Profiles;
use crate::analysis::predict::Analyzer;
use crate::analysis::window::SharedWindow;
use crate::collector::go::GoScrape;
use crate::collector::Collector;
use crate::config::TargetConfig;
use crate::status::Status;
use std::time::Instant;

pub struct Monitor {
    collector: Collector,
    analyzer: Analyzer,
    profiles: Option<Profiles>,
}

impl Monitor {
    pub fn new(cfg: TargetConfig) -> Monitor {
        Monitor {
            analyzer: Analyzer::new(cfg.analysis_config()),
            collector: Collector::new(cfg),
            profiles: None,
        }
    }

    /// The analyzer's history, for `/api/v1/history`.
    pub fn history(&self) -> SharedWindow {
        self.analyzer.history()
    }

    /// The heap profiles saved by the alert task, listed in the status.
    pub fn set_profiles(&mut self, profiles: Profiles) {
        self.profiles = Some(profiles);
    }

    /// Takes one scrape of the target's Go runtime.
    pub fn ingest_go(&mut self, scrape: GoScrape) {
        self.collector.ingest_go(scrape);
    }

    /// One poll: `now_ms` is the wall-clock time shown, `now` the monotonic
    /// time the analysis measures with.
    pub fn poll(&mut self, now_ms: u64, now: Instant) -> Status {
        let sample = self.collector.poll(now_ms, now);
        let analysis = self.analyzer.update(&sample);
        let profiles = self
            .profiles
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect())
            .unwrap_or_default();
        Status::assemble(sample, analysis, self.collector.health(), profiles)
    }
}
