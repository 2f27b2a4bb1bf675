//! The operator's own HTTP endpoints: `/healthz` (the process answers),
//! `/readyz` (it has reached the API server: the leader election or the
//! controller made a successful call) and `/metrics` (Prometheus).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Shared with the endpoints.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
}

impl Health {
    /// Health over `metrics`, not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { ready: AtomicBool::new(false), metrics }
    }

    /// Marks the operator ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// The router.
pub fn app(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the Kubernetes API yet\n")
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], health.metrics.render())
}
