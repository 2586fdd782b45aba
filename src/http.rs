//! The HTTP server: serves the last published snapshot, never polls.

use crate::metrics::Metrics;
use crate::status::Status;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// What one poll publishes. Its two encodings are built on the first
/// request that needs them and then served as they are until the next poll.
#[derive(Debug, Default)]
pub struct Published {
    pub status: Status,
    metrics_text: OnceLock<Bytes>,
    status_json: OnceLock<Bytes>,
}

impl Published {
    pub fn new(status: Status) -> Published {
        Published {
            status,
            metrics_text: OnceLock::new(),
            status_json: OnceLock::new(),
        }
    }
}

/// The latest snapshot, swapped whole after each poll, and the registry that
/// renders it.
pub struct Shared {
    latest: RwLock<Arc<Published>>,
    metrics: Mutex<Metrics>,
}

impl Shared {
    pub fn new(metrics: Metrics) -> Shared {
        Shared {
            latest: RwLock::new(Arc::new(Published::default())),
            metrics: Mutex::new(metrics),
        }
    }

    pub fn publish(&self, p: Published) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    pub fn latest(&self) -> Arc<Published> {
        self.latest.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Prometheus text of the latest snapshot.
    pub fn metrics_text(&self) -> Bytes {
        let p = self.latest();
        p.metrics_text
            .get_or_init(|| {
                let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
                m.update(&p.status);
                m.encode().into()
            })
            .clone()
    }

    /// The JSON of the latest snapshot.
    pub fn status_json(&self) -> Bytes {
        let p = self.latest();
        p.status_json
            .get_or_init(|| serde_json::to_vec_pretty(&p.status).expect("status serializes").into())
            .clone()
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(dashboard))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        Body::from(s.metrics_text()),
    )
        .into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(s.status_json()),
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.latest().status.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no successful cgroup read yet\n",
        )
            .into_response()
    }
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::dashboard::PAGE,
    )
        .into_response()
}
