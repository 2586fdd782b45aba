//! The HTTP server: serves the last published snapshot, never polls.

use crate::status::Status;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, RwLock};

/// What one poll publishes: the status and its two encodings, built once.
#[derive(Debug, Default)]
pub struct Published {
    pub status: Status,
    pub metrics_text: axum::body::Bytes,
    pub status_json: axum::body::Bytes,
}

impl Published {
    pub fn new(status: Status, metrics_text: Vec<u8>) -> Published {
        let json = serde_json::to_vec_pretty(&status).expect("status serializes");
        Published {
            status,
            metrics_text: metrics_text.into(),
            status_json: json.into(),
        }
    }
}

/// The latest snapshot, swapped whole after each poll.
#[derive(Debug, Default)]
pub struct Shared {
    latest: RwLock<Arc<Published>>,
}

impl Shared {
    pub fn publish(&self, p: Published) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    pub fn latest(&self) -> Arc<Published> {
        self.latest.read().unwrap_or_else(|e| e.into_inner()).clone()
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
    let p = s.latest();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        Body::from(p.metrics_text.clone()),
    )
        .into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let p = s.latest();
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(p.status_json.clone()),
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
