//! The profile sink: the target's heap profile (`/debug/pprof/heap`) saved
//! to `--profile-dir` when the risk rises, bounded in count and size; with
//! a `goroutine_leak` diagnosis its goroutine profile
//! (`/debug/pprof/goroutine`) too, next to it.
//!
//! The directory never holds more than [`MAX_PROFILE_BYTES`] of profiles,
//! the one being written included: before a capture the oldest profiles
//! are removed until the largest body accepted ([`PROFILE_MAX_BODY`]) fits
//! under the cap, and the body is cut off at that size. Captures run one at
//! a time, so two never count on the same room.

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
/// The largest profile body accepted; a larger one is refused, not saved.
pub const PROFILE_MAX_BODY: u64 = 64 << 20;

/// The bounds of a profile directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Profiles kept, at most.
    pub count: usize,
    /// Bytes of profiles in the directory, at most, the one being written
    /// included.
    pub bytes: u64,
    /// The largest body accepted; at most `bytes`.
    pub body: u64,
}

/// The bounds `--profile-dir` is kept within.
pub const CAPS: Caps = Caps {
    count: MAX_PROFILES,
    bytes: MAX_PROFILE_BYTES,
    body: PROFILE_MAX_BODY,
};

/// What a saved profile is of: its file name starts with the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    Heap,
    Goroutine,
}

impl ProfileKind {
    pub const ALL: [ProfileKind; 2] = [ProfileKind::Heap, ProfileKind::Goroutine];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Heap => "heap",
            ProfileKind::Goroutine => "goroutine",
        }
    }

    /// The profile's URL beside the heap profile's: `/debug/pprof/heap`
    /// with its last segment replaced; `None` when the heap URL does not end
    /// in `/heap`.
    pub fn url_from_heap(self, heap_url: &str) -> Option<String> {
        match self {
            ProfileKind::Heap => Some(heap_url.to_owned()),
            ProfileKind::Goroutine => {
                let (path, query) = heap_url.split_once('?').unwrap_or((heap_url, ""));
                let base = path.strip_suffix("/heap")?;
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                Some(format!("{base}/goroutine{query}"))
            }
        }
    }
}

/// A saved profile, as listed in the status JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedProfile {
    pub kind: ProfileKind,
    pub path: PathBuf,
    pub bytes: u64,
    pub time_ms: u64,
    pub risk: Risk,
}

/// The profiles saved so far, shared with the collector for the status.
pub type Profiles = Arc<Mutex<VecDeque<SavedProfile>>>;

/// Removes what an interrupted capture left in `dir` (`.heap-*.tmp`,
/// `.goroutine-*.tmp`).
pub fn remove_leftovers(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = ProfileKind::ALL.iter().any(|k| {
            name.strip_prefix('.')
                .is_some_and(|n| n.starts_with(&format!("{}-", k.as_str())))
        });
        if ours && name.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(path = %e.path().display(), "removed an unfinished profile"),
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
            let (kind, rest) = ProfileKind::ALL.iter().find_map(|k| {
                let rest = name.strip_prefix(k.as_str())?.strip_prefix('-')?;
                Some((*k, rest.strip_suffix(".pb.gz")?))
            })?;
            let (ms, risk) = rest.split_once('-')?;
            Some(SavedProfile {
                kind,
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
    let mut total: u64 = list.iter().map(|p| p.bytes).sum();
    while list.len() > max_count || total > max_bytes {
        match list.pop_front() {
            Some(p) => {
                total -= p.bytes;
                removed.push(p.path);
            }
            None => break,
        }
    }
    removed
}

/// Makes room for one more profile before it is fetched: removes the oldest
/// until one more fits in the count and a body of `caps.body` fits under
/// `caps.bytes`. Returns the paths to delete and the largest body that may
/// be written now (`caps.body`, or less when the caps leave less).
pub fn prune_for_capture(list: &mut VecDeque<SavedProfile>, caps: &Caps) -> (Vec<PathBuf>, u64) {
    let body = caps.body.min(caps.bytes);
    let removed = prune(list, caps.count.saturating_sub(1), caps.bytes - body);
    let kept: u64 = list.iter().map(|p| p.bytes).sum();
    (removed, caps.bytes.saturating_sub(kept).min(body))
}

fn remove_profiles(paths: Vec<PathBuf>) {
    for old in paths {
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing old profile {}: {e}", old.display()),
        }
    }
}

/// Fetches one of the target's profiles (`kind`, from `url`) and saves it
/// as `<kind>-<unix ms>-<risk>.pb.gz`, the directory kept within `caps` all
/// along: the oldest profiles are removed first to make room. The caller
/// runs one capture at a time per directory.
#[allow(clippy::too_many_arguments)]
pub async fn capture_profile(
    client: &HttpClient,
    kind: ProfileKind,
    url: &str,
    dir: &Path,
    risk: Risk,
    now_ms: u64,
    profiles: &Profiles,
    caps: &Caps,
) -> Result<SavedProfile, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("--profile-dir {}: {e}", dir.display()))?;
    let (old, room) = {
        let mut list = profiles.lock().unwrap_or_else(|e| e.into_inner());
        prune_for_capture(&mut list, caps)
    };
    remove_profiles(old);
    let path = dir.join(format!("{}-{now_ms}-{}.pb.gz", kind.as_str(), risk.as_str()));
    let tmp = dir.join(format!(".{}-{now_ms}.tmp", kind.as_str()));
    // Streamed to disk chunk by chunk (tokio's file writes run on its
    // blocking pool): a 64 MiB profile never sits in memory.
    let written = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let bytes = client
            .get_to_writer(url, PROFILE_TIMEOUT, room, &mut file)
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
        kind,
        path,
        bytes,
        time_ms: now_ms,
        risk,
    };
    let old = {
        let mut list = profiles.lock().unwrap_or_else(|e| e.into_inner());
        list.push_back(saved.clone());
        // Already within the caps; this only matters if the list changed
        // meanwhile.
        prune(&mut list, caps.count, caps.bytes)
    };
    remove_profiles(old);
    Ok(saved)
}

/// Captures a profile on every rise of the risk.
pub struct ProfileCapture {
    dir: PathBuf,
    url: String,
    client: HttpClient,
    profiles: Profiles,
    /// Held for a whole capture: one at a time.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl ProfileCapture {
    pub fn new(dir: PathBuf, url: String, client: HttpClient, profiles: Profiles) -> ProfileCapture {
        ProfileCapture {
            dir,
            url,
            client,
            profiles,
            one_at_a_time: tokio::sync::Mutex::new(()),
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
            let _one = self.one_at_a_time.lock().await;
            let goroutines = ev.causes.iter().any(|c| c == "goroutine_leak");
            for kind in ProfileKind::ALL {
                if kind == ProfileKind::Goroutine && !goroutines {
                    continue;
                }
                let Some(url) = kind.url_from_heap(&self.url) else {
                    tracing::warn!(
                        "goroutine profile: --pprof-url {} does not end in /heap, so where the goroutine profile \
                         is served is not known; capture it by hand (/debug/pprof/goroutine)",
                        self.url
                    );
                    continue;
                };
                let captured = capture_profile(
                    &self.client,
                    kind,
                    &url,
                    &self.dir,
                    ev.risk,
                    now_ms,
                    &self.profiles,
                    &CAPS,
                )
                .await;
                match captured {
                    Ok(p) => tracing::info!(
                        path = %p.path.display(),
                        bytes = p.bytes,
                        "saved the target's {} profile",
                        kind.as_str()
                    ),
                    Err(e) => tracing::warn!("{} profile: {e}", kind.as_str()),
                }
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
    fn the_goroutine_profile_is_served_beside_the_heap_profile() {
        let k = ProfileKind::Goroutine;
        assert_eq!(
            k.url_from_heap("http://127.0.0.1:6060/debug/pprof/heap").as_deref(),
            Some("http://127.0.0.1:6060/debug/pprof/goroutine")
        );
        assert_eq!(
            k.url_from_heap("http://app:8080/x/debug/pprof/heap?gc=1").as_deref(),
            Some("http://app:8080/x/debug/pprof/goroutine?gc=1")
        );
        assert_eq!(k.url_from_heap("http://app:8080/heapdump"), None);
        assert_eq!(k.url_from_heap("http://app:8080/"), None);
        assert_eq!(
            ProfileKind::Heap.url_from_heap("http://app:8080/heapdump").as_deref(),
            Some("http://app:8080/heapdump")
        );
    }

    #[test]
    fn goroutine_profiles_are_listed_and_their_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "goroutine-2000-critical.pb.gz",
            "heap-1000-warning.pb.gz",
            ".goroutine-3000.tmp",
            "goroutines-1500-warning.pb.gz",
            "goroutine-x-warning.pb.gz",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_leftovers(dir.path());
        assert!(!dir.path().join(".goroutine-3000.tmp").exists());
        let l = list_profiles(dir.path());
        let got: Vec<(ProfileKind, u64, Risk)> = l.iter().map(|p| (p.kind, p.time_ms, p.risk)).collect();
        assert_eq!(
            got,
            [
                (ProfileKind::Heap, 1000, Risk::Warning),
                (ProfileKind::Goroutine, 2000, Risk::Critical)
            ]
        );
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

    fn listed(sizes: &[u64]) -> VecDeque<SavedProfile> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| SavedProfile {
                kind: ProfileKind::Heap,
                path: PathBuf::from(format!("heap-{i}-warning.pb.gz")),
                bytes,
                time_ms: i as u64,
                risk: Risk::Warning,
            })
            .collect()
    }

    #[test]
    fn room_is_made_for_the_largest_body_before_a_capture() {
        let caps = Caps {
            count: 4,
            bytes: 100,
            body: 30,
        };
        // (sizes, oldest first) → (how many oldest removed, body allowed)
        for (sizes, removed, body) in [
            (vec![], 0, 30),
            (vec![70], 0, 30),
            (vec![71], 1, 30),
            (vec![10, 20, 30], 0, 30),
            (vec![10, 20, 30, 11], 1, 30),
            (vec![40, 40], 1, 30),
            (vec![1, 1, 1], 0, 30),
            (vec![1, 1, 1, 1], 1, 30),
            (vec![1, 1, 1, 1, 1, 1], 3, 30),
            (vec![100, 100, 5], 2, 30),
        ] {
            let mut l = listed(&sizes);
            let (gone, room) = prune_for_capture(&mut l, &caps);
            assert_eq!((gone.len(), room), (removed, body), "{sizes:?}");
            let kept: u64 = l.iter().map(|p| p.bytes).sum();
            assert!(kept + room <= caps.bytes, "{sizes:?}: {kept} kept + {room}");
            assert!(l.len() < caps.count, "{sizes:?}: no place left in the count");
            // The newest are kept.
            assert_eq!(
                l.back().map(|p| p.bytes),
                sizes.get(removed..).and_then(|s| s.last()).copied()
            );
        }
        // A body cap above the directory's cap is the directory's cap.
        let big = Caps {
            count: 2,
            bytes: 50,
            body: 80,
        };
        let mut l = listed(&[10]);
        assert_eq!(
            prune_for_capture(&mut l, &big),
            (vec![PathBuf::from("heap-0-warning.pb.gz")], 50)
        );
    }

    /// Bytes of every file in `dir`.
    fn dir_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    /// A pprof endpoint that answers each request with a gzip-looking body
    /// of the next size in `sizes`, and records the directory's bytes at the
    /// moment each request arrived.
    async fn fake_pprof(dir: PathBuf, sizes: Vec<usize>) -> (String, Arc<Mutex<Vec<u64>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/debug/pprof/heap", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            for size in sizes {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut b).await.unwrap();
                    assert!(n > 0, "the client closed before a whole head");
                    head.extend_from_slice(&b[..n]);
                }
                seen2.lock().unwrap().push(dir_bytes(&dir));
                let mut body = vec![7u8; size];
                body[..2].copy_from_slice(&[0x1f, 0x8b]);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            }
        });
        (url, seen)
    }

    #[test]
    fn the_directory_stays_within_its_cap_while_a_profile_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            count: 3,
            bytes: 100_000,
            body: 40_000,
        };
        // From an earlier run: 90 KB in three profiles.
        for (ms, size) in [(1000u64, 30_000usize), (2000, 30_000), (3000, 30_000)] {
            std::fs::write(dir.path().join(format!("heap-{ms}-warning.pb.gz")), vec![0u8; size]).unwrap();
        }
        let profiles: Profiles = Arc::new(Mutex::new(list_profiles(dir.path())));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (url, seen) = fake_pprof(dir.path().to_path_buf(), vec![40_000, 25_000, 40_001]).await;
            let client = HttpClient::new();
            for (now_ms, want_ok) in [(4000u64, true), (5000, true), (6000, false)] {
                let r = capture_profile(
                    &client,
                    ProfileKind::Heap,
                    &url,
                    dir.path(),
                    Risk::Critical,
                    now_ms,
                    &profiles,
                    &caps,
                )
                .await;
                assert_eq!(r.is_ok(), want_ok, "capture at {now_ms}: {r:?}");
                let on_disk = dir_bytes(dir.path());
                assert!(on_disk <= caps.bytes, "{on_disk} bytes in the directory after {now_ms}");
            }
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 3);
            for (i, at_request) in seen.iter().enumerate() {
                assert!(
                    at_request + caps.body <= caps.bytes,
                    "request {i}: {at_request} bytes already in the directory, no room for a {} byte body",
                    caps.body
                );
            }
        });
        // Each capture removed the oldest it needed room from (the refused
        // one too, as its size is known only once fetched); the refused one
        // left nothing behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["heap-5000-critical.pb.gz"]);
        let listed: Vec<u64> = profiles.lock().unwrap().iter().map(|p| p.time_ms).collect();
        assert_eq!(listed, [5000]);
    }
}
