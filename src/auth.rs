//! Credentials for headroom's own endpoints (`--auth-file`): the dashboard,
//! `/api/…` and `/profiles/…` (heap profiles hold the target's memory) are
//! answered only to a request that carries them; `/metrics` too with
//! `--auth-metrics`. `/healthz` and `/readyz` stay open for the kubelet's
//! probes. The file is in the forms of the alert receivers' files
//! ([`crate::alert::auth`]): `user:password` (basic auth, which a browser
//! asks for on the dashboard), `Bearer TOKEN`, or a bare token. It is read
//! again when it changes (a rotated Secret), and a file that cannot be read
//! refuses every protected request rather than opening them.

use crate::alert::auth::parse_credential;
use crate::httpc::Authorization;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What guards the endpoints.
#[derive(Debug)]
pub struct EndpointAuth {
    file: PathBuf,
    protect_metrics: bool,
    /// The credential as of the file's (mtime ns, size, inode), or why the
    /// file could not be used.
    cached: Mutex<Option<(Stamp, Result<Authorization, String>)>>,
}

/// A file's modification time (ns), size and inode: any change re-reads it.
type Stamp = (i64, u64, u64);

/// Paths answered without credentials.
fn is_open(path: &str, protect_metrics: bool) -> bool {
    matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && !protect_metrics)
}

impl EndpointAuth {
    pub fn new(file: PathBuf, protect_metrics: bool) -> Arc<EndpointAuth> {
        Arc::new(EndpointAuth {
            file,
            protect_metrics,
            cached: Mutex::new(None),
        })
    }

    /// The credential, read again when the file changed.
    fn credential(&self) -> Result<Authorization, String> {
        let stamp =
            std::fs::metadata(&self.file).map(|m| (m.mtime_nsec() + m.mtime() * 1_000_000_000, m.size(), m.ino()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match (&stamp, cached.as_ref()) {
            (Ok(s), Some((was, c))) if s == was => return c.clone(),
            (Err(e), _) => return Err(format!("{}: {e}", self.file.display())),
            _ => {}
        }
        let read = std::fs::read_to_string(&self.file)
            .map_err(|e| format!("{}: {e}", self.file.display()))
            .and_then(|t| parse_credential(&t).map_err(|e| format!("{}: {e}", self.file.display())));
        if let Err(e) = &read {
            tracing::error!("--auth-file: {e}: protected endpoints refuse every request until it is fixed");
        }
        *cached = Some((stamp.expect("checked"), read.clone()));
        read
    }

    /// Whether the request may be answered.
    pub fn allows(&self, path: &str, got: Option<&HeaderValue>) -> Result<(), Refusal> {
        if is_open(path, self.protect_metrics) {
            return Ok(());
        }
        let want = self.credential().map_err(|_| Refusal::Unusable)?;
        match got {
            Some(v) if want.matches(v) => Ok(()),
            _ => Err(Refusal::Unauthorized(want.scheme().to_owned())),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or another one: 401 with the scheme to use.
    Unauthorized(String),
    /// The credential file cannot be used: 503.
    Unusable,
}

/// The middleware: refuses what [`EndpointAuth::allows`] refuses.
pub async fn guard(State(auth): State<Arc<EndpointAuth>>, req: Request, next: Next) -> Response {
    match auth.allows(req.uri().path(), req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err(Refusal::Unauthorized(scheme)) => {
            let challenge = HeaderValue::from_str(&format!("{scheme} realm=\"headroom\""))
                .unwrap_or(HeaderValue::from_static("Basic realm=\"headroom\""));
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "credentials required (--auth-file)\n",
            )
                .into_response()
        }
        Err(Refusal::Unusable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the credential file (--auth-file) cannot be read: see headroom's log\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn probes_and_metrics_are_open_the_rest_needs_the_credential() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth");
        std::fs::write(&f, "Bearer t0ken\n").unwrap();
        let auth = EndpointAuth::new(f.clone(), false);
        for open in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(auth.allows(open, None), Ok(()), "{open}");
        }
        for closed in [
            "/",
            "/api/v1/status",
            "/api/v1/targets",
            "/profiles/heap-1-warning.pb.gz",
            "/nope",
        ] {
            assert_eq!(
                auth.allows(closed, None),
                Err(Refusal::Unauthorized("Bearer".into())),
                "{closed}"
            );
            assert!(auth.allows(closed, Some(&hv("Bearer t0kex"))).is_err(), "{closed}");
            assert!(auth.allows(closed, Some(&hv("Bearer t0ke"))).is_err(), "{closed}");
            assert_eq!(auth.allows(closed, Some(&hv("bearer t0ken"))), Ok(()), "{closed}");
        }
        let with_metrics = EndpointAuth::new(f, true);
        assert!(with_metrics.allows("/metrics", None).is_err());
        assert_eq!(with_metrics.allows("/healthz", None), Ok(()));
    }

    #[test]
    fn a_rotated_file_is_read_again_and_an_unreadable_one_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth");
        std::fs::write(&f, "alice:pw1\n").unwrap();
        let auth = EndpointAuth::new(f.clone(), false);
        let basic = |u: &str, p: &str| Authorization::basic(u, p).unwrap().header().clone();
        assert_eq!(auth.allows("/", Some(&basic("alice", "pw1"))), Ok(()));
        // Rotated: a new file put in place, as a Secret's update does.
        let tmp = dir.path().join("auth.new");
        std::fs::write(&tmp, "alice:pw2-longer\n").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert!(auth.allows("/", Some(&basic("alice", "pw1"))).is_err());
        assert_eq!(auth.allows("/", Some(&basic("alice", "pw2-longer"))), Ok(()));
        std::fs::remove_file(&f).unwrap();
        assert_eq!(
            auth.allows("/", Some(&basic("alice", "pw2-longer"))),
            Err(Refusal::Unusable)
        );
        assert_eq!(auth.allows("/healthz", None), Ok(()));
    }
}
