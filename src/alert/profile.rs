//! The profile sink: the target's heap profile (`/debug/pprof/heap`) saved
//! to `--profile-dir` when the risk rises, bounded in count and size.

use super::plan::{AlertEvent, Plan};
use super::sink::{BoxFuture, Sink};
use crate::analysis::risk::Risk;
use crate::httpc::HttpClient;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Saved profiles: at most this many ...
pub const MAX_PROFILES: usize = 10;
/// ... and at most this many bytes in all; the oldest are removed first.
pub const MAX_PROFILE_BYTES: u64 = 256 << 20;
const PROFILE_TIMEOUT: Duration = Duration::from_secs(30);
const PROFILE_MAX_BODY: u64 = 64 << 20;

/// A saved heap profile, as listed in the status JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedProfile {
    pub path: PathBuf,
    pub bytes: u64,
    pub time_ms: u64,
    pub risk: Risk,
}

/// The profiles saved so far, shared with the collector for the status.
pub type Profiles = Arc<Mutex<VecDeque<SavedProfile>>>;

/// Removes what an interrupted capture left in `dir` (`.heap-*.tmp`).
pub fn remove_leftovers(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".heap-") && name.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(path = %e.path().display(), "removed an unfinished heap profile"),
                Err(err) => tracing::warn!("removing {}: {err}", e.path().display()),
            }
        }
    }
}

/// Profiles already in `dir` (from earlier runs), oldest first.
pub fn list_profiles(dir: &Path) -> VecDeque<SavedProfile> {
    let mut found: Vec<SavedProfile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("heap-")?.strip_suffix(".pb.gz")?;
            let (ms, risk) = rest.split_once('-')?;
            Some(SavedProfile {
                path: e.path(),
                bytes: e.metadata().ok()?.len(),
                time_ms: ms.parse().ok()?,
                risk: Risk::parse(risk)?,
            })
        })
        .collect();
    found.sort_by_key(|p| p.time_ms);
    found.into()
}

/// Removes the oldest profiles until at most `max_count` remain and they
/// take at most `max_bytes`.
pub fn prune(list: &mut VecDeque<SavedProfile>, max_count: usize, max_bytes: u64) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    while list.len() > max_count || list.iter().map(|p| p.bytes).sum::<u64>() > max_bytes {
        match list.pop_front() {
            Some(p) => removed.push(p.path),
            None => break,
        }
    }
    removed
}

/// Fetches the target's heap profile and saves it as
/// `heap-<unix ms>-<risk>.pb.gz`, bounded in count and size.
pub async fn capture_profile(
    client: &HttpClient,
    url: &str,
    dir: &Path,
    risk: Risk,
    now_ms: u64,
    profiles: &Profiles,
) -> Result<SavedProfile, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("--profile-dir {}: {e}", dir.display()))?;
    let path = dir.join(format!("heap-{now_ms}-{}.pb.gz", risk.as_str()));
    let tmp = dir.join(format!(".heap-{now_ms}.tmp"));
    // Streamed to disk chunk by chunk (tokio's file writes run on its
    // blocking pool): a 64 MiB profile never sits in memory.
    let written = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let bytes = client
            .get_to_writer(url, PROFILE_TIMEOUT, PROFILE_MAX_BODY, &mut file)
            .await
            .map_err(|e| e.to_string())?;
        drop(file);
        let mut magic = [0u8; 2];
        let head = tokio::fs::File::open(&tmp)
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut head = tokio::io::BufReader::new(head);
        tokio::io::AsyncReadExt::read_exact(&mut head, &mut magic)
            .await
            .map_err(|_| format!("{url}: an empty or truncated profile"))?;
        if magic != [0x1f, 0x8b] {
            return Err(format!(
                "{url}: not a gzip'd pprof profile (is net/http/pprof registered?)"
            ));
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(bytes)
    }
    .await;
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let saved = SavedProfile {
        path,
        bytes,
        time_ms: now_ms,
        risk,
    };
    let mut list = profiles.lock().unwrap_or_else(|e| e.into_inner());
    list.push_back(saved.clone());
    for old in prune(&mut list, MAX_PROFILES, MAX_PROFILE_BYTES) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!("removing old profile {}: {e}", old.display());
        }
    }
    Ok(saved)
}

/// Captures a profile on every rise of the risk.
pub struct ProfileCapture {
    dir: PathBuf,
    url: String,
    client: HttpClient,
    profiles: Profiles,
}

impl ProfileCapture {
    pub fn new(dir: PathBuf, url: String, client: HttpClient, profiles: Profiles) -> ProfileCapture {
        ProfileCapture {
            dir,
            url,
            client,
            profiles,
        }
    }
}

impl Sink for ProfileCapture {
    fn deliver<'a>(&'a self, plan: &'a Plan, ev: &'a AlertEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !plan.capture_profile {
                return;
            }
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            match capture_profile(&self.client, &self.url, &self.dir, ev.risk, now_ms, &self.profiles).await {
                Ok(p) => tracing::info!(path = %p.path.display(), bytes = p.bytes, "saved the target's heap profile"),
                Err(e) => tracing::warn!("heap profile: {e}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_an_interrupted_capture_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".heap-1000.tmp"), "partial").unwrap();
        std::fs::write(dir.path().join("heap-1000-warning.pb.gz"), "kept").unwrap();
        remove_leftovers(dir.path());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["heap-1000-warning.pb.gz"]);
    }

    #[test]
    fn profiles_are_listed_and_pruned_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (ms, size) in [(3000u64, 10usize), (1000, 10), (2000, 10)] {
            std::fs::write(dir.path().join(format!("heap-{ms}-warning.pb.gz")), vec![0u8; size]).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let mut l = list_profiles(dir.path());
        assert_eq!(l.iter().map(|p| p.time_ms).collect::<Vec<_>>(), vec![1000, 2000, 3000]);
        let removed = prune(&mut l, 2, u64::MAX);
        assert_eq!(removed, vec![dir.path().join("heap-1000-warning.pb.gz")]);
        let removed = prune(&mut l, 10, 15);
        assert_eq!(removed, vec![dir.path().join("heap-2000-warning.pb.gz")]);
        assert_eq!(l.len(), 1);
    }
}
