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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(health: &Arc<Health>, path: &str) -> (StatusCode, String) {
        let response = app(Arc::clone(health)).oneshot(Request::get(path).body(Body::empty()).unwrap_or_default()).await;
        let response = response.unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn ready_only_once_connected_and_metrics_are_exposed() {
        let health = Arc::new(Health::new(Arc::new(Metrics::new())));
        assert_eq!(get(&health, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&health, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        health.set_ready(true);
        assert_eq!(get(&health, "/readyz").await.0, StatusCode::OK);
        health.metrics.fusionauth_call("create webhook", "200");
        health.metrics.fusionauth_call("retrieve webhook", "404");
        let (status, text) = get(&health, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains(r#"fusionhook_operator_fusionauth_requests_total{operation="create webhook",status="200"} 1"#), "{text}");
        assert!(text.contains("fusionhook_operator_fusionauth_writes_total 1"), "{text}");
    }
}
