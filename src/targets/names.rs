//! Node mode's names for containers: the container runtime's (namespace,
//! pod, container, restart attempt, the pod's `headroom.dev/*` annotations),
//! asked of its CRI socket when discovery finds a container ID it has not
//! seen, never per poll. Without a socket, or while the runtime does not
//! answer, containers keep the keys of their cgroup path (pod UID, short
//! container ID); that is said in `/api/v1/targets` and logged once.

use crate::config::CriSocket;
use crate::source::cri::{find_socket, CriClient, Listing, Named, RuntimeExit};
use std::collections::HashSet;
use std::path::Path;

/// IDs remembered as not listed by the runtime, at most (then forgotten,
/// and asked again).
const MAX_UNLISTED: usize = 4096;

pub struct Names {
    client: Option<CriClient>,
    runtime: tokio::runtime::Handle,
    listing: Listing,
    /// IDs the runtime did not list when asked: not asked again until an
    /// ID never seen appears.
    unlisted: HashSet<String>,
    /// The runtime's name and version, once it answered.
    version: Option<String>,
    /// Why there are no names, or the last failure to get them.
    problem: Option<String>,
    /// The last problem logged, so that each is logged once.
    logged: Option<String>,
}

impl Names {
    /// Names from the socket `--cri-socket` gives (`auto`: the first found
    /// of [`crate::source::cri::AUTO_SOCKETS`]).
    pub fn new(cfg: &CriSocket, runtime: tokio::runtime::Handle) -> Names {
        // The client's connection task runs on the daemon's runtime.
        let _in_runtime = runtime.enter();
        let (client, problem) = match cfg {
            CriSocket::None => (None, Some("--cri-socket none".to_owned())),
            CriSocket::Auto => match find_socket(Path::new("/")) {
                Some(p) => (Some(CriClient::new(&p)), None),
                None => (
                    None,
                    Some(format!(
                        "no CRI socket found (looked for {}); pass --cri-socket PATH",
                        crate::source::cri::AUTO_SOCKETS.join(", ")
                    )),
                ),
            },
            CriSocket::Path(p) => (Some(CriClient::new(p)), None),
        };
        let mut n = Names {
            client,
            runtime,
            listing: Listing::default(),
            unlisted: HashSet::new(),
            version: None,
            problem,
            logged: None,
        };
        n.log_problem();
        n
    }

    fn log_problem(&mut self) {
        if let Some(p) = &self.problem {
            if self.logged.as_ref() != Some(p) {
                tracing::warn!(
                    "container names: {p}: containers are keyed by pod UID and the container ID's first 12 hex \
                     digits, and no pod's Go endpoint annotation is read"
                );
                self.logged = Some(p.clone());
            }
        }
    }

    /// Asks the runtime again when one of `ids` (container cgroups just
    /// found) is neither listed nor known to be unlisted.
    pub fn refresh(&mut self, ids: &[&str]) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let unknown = |id: &&str| {
            !self.listing.containers.contains_key(*id)
                && !self.listing.sandboxes.contains(*id)
                && !self.unlisted.contains(*id)
        };
        if !ids.iter().any(unknown) {
            return;
        }
        let mut client = client.clone();
        let answer = self.runtime.block_on(async {
            let version = match self.version {
                Some(_) => None,
                None => Some(client.version().await?),
            };
            Ok::<_, crate::source::cri::CriError>((version, client.list().await?))
        });
        match answer {
            Ok((version, listing)) => {
                if let Some(v) = version {
                    tracing::info!(socket = %client.socket().display(), "container names from {v}");
                    self.version = Some(v);
                }
                self.listing = listing;
                if self.unlisted.len() > MAX_UNLISTED {
                    self.unlisted.clear();
                }
                for id in ids {
                    if !self.listing.containers.contains_key(*id) && !self.listing.sandboxes.contains(*id) {
                        self.unlisted.insert((*id).to_owned());
                    }
                }
                if self.problem.take().is_some() {
                    tracing::info!("container names: the runtime answers again");
                    self.logged = None;
                }
            }
            Err(e) => {
                self.problem = Some(e.to_string());
                self.log_problem();
            }
        }
        self.client = Some(client);
    }

    /// The runtime's names for the container `id`.
    pub fn get(&self, id: &str) -> Option<&Named> {
        self.listing.containers.get(id)
    }

    /// Whether `id` is a pod sandbox (its pause container).
    pub fn is_sandbox(&self, id: &str) -> bool {
        self.listing.sandboxes.contains(id)
    }

    /// How the runtime says the container `id` ended; `None` without a
    /// runtime, while it runs, or when the runtime no longer has it.
    pub fn exit_of(&mut self, id: &str) -> Option<RuntimeExit> {
        let mut client = self.client.clone()?;
        match self.runtime.block_on(client.exit_of(id)) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("container {id}: {e}");
                None
            }
        }
    }

    /// For `/api/v1/targets`: where names come from.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": if self.client.is_some() && self.problem.is_none() { "cri" } else { "cgroup" },
            "socket": self.client.as_ref().map(|c| c.socket().display().to_string()),
            "runtime": self.version,
            "problem": self.problem,
        })
    }
}
