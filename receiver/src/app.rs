//! The HTTP surface: `POST {path}` runs the pipeline
//! headers (content type, credentials, signature token) -> body (bounded;
//! bodies not vouched for by a header credential draw on a shared budget)
//! -> body hash -> parse -> dedupe -> route -> act -> answer;
//! `/healthz`, `/readyz` and `/metrics` serve operations.
//! Each stage lives in its own module; this one only wires them in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use fusionhook_fusionauth::EventRequest;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::action::{ActionContext, LogSink};
use crate::answer::{Handled, ReceiverError};
use crate::config::Config;
use crate::dedupe::{Claim, Dedupe};
use crate::metrics::Metrics;
use crate::route::Unmatched;
use crate::route::{self, Route};
use crate::verify::Verifier;

/// The longest any outbound connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a request needs, built once from the config.
pub struct AppState {
    path: String,
    max_body_bytes: usize,
    /// Permits are bytes of bodies read before a header credential matched.
    unauthenticated_bodies: Semaphore,
    body_timeout: Duration,
    read_timeout: Duration,
    unmatched: Unmatched,
    verifier: Verifier,
    dedupe: Dedupe,
    routes: Vec<Route>,
    actions: ActionContext,
    /// Metrics, shared with `/metrics`.
    pub metrics: Metrics,
    ready: AtomicBool,
}

impl AppState {
    /// Builds the state. `log` receives the `log` actions' lines.
    pub fn new(config: Config, log: LogSink) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("fusionhook-receiver/", env!("CARGO_PKG_VERSION")))
            // A redirect is not a success (FACTS.md §c.3 says not to rely on them).
            .redirect(reqwest::redirect::Policy::none())
            // Every call also has its own total timeout (routes: timeoutMs;
            // the JWKS: its fetch timeout); this bounds the connect part.
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            path: config.path,
            max_body_bytes: config.max_body_bytes,
            unauthenticated_bodies: Semaphore::new(config.unauthenticated_body_budget),
            body_timeout: config.body_timeout,
            read_timeout: config.read_timeout,
            unmatched: config.unmatched,
            // A request waiting for FusionAuth's keys must still be answered
            // (500, so FusionAuth retries) before FusionAuth gives up on it.
            verifier: Verifier::new(config.auth, &client, config.read_timeout / 2),
            dedupe: Dedupe::new(config.dedupe),
            routes: config.routes,
            actions: ActionContext { client, log },
            metrics: Metrics::new(),
            ready: AtomicBool::new(true),
        })
    }

    /// The authentication stage (for warm-up at start).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Marks the receiver (not) ready; `/readyz` follows.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(&state.path, post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()).into_response()
}

async fn receive(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let _in_flight = state.metrics.in_flight();
    // The request taken apart, not its headers extracted: that would copy them.
    let (parts, body) = request.into_parts();
    match handle(&state, &parts.headers, body).await {
        Ok(handled) => {
            state.metrics.request(handled.outcome());
            handled.into_response()
        }
        Err(error) => {
            state.metrics.request(error.outcome());
            if let ReceiverError::Unauthorized(reason) = &error {
                state.metrics.auth_failure(reason.label());
                tracing::warn!(reason = reason.label(), "rejected an unauthenticated request");
            }
            error.into_response()
        }
    }
}

/// The pipeline, in DESIGN.md's order.
async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Handled, ReceiverError> {
    check_content_type(headers)?;
    // Credentials first: a sender without them is refused before a byte of
    // its body is read.
    let authenticated = state.verifier.check_headers(headers).await?;
    let (bytes, budget) = read_body(state, headers, body, !authenticated.by_credential()).await?;
    authenticated.check_body(&bytes).map_err(ReceiverError::Unauthorized)?;
    drop(budget);
    let request = EventRequest::parse(bytes)?;
    let event = request.event();
    if event.id.is_none() {
        tracing::warn!(r#type = %event.kind, "event without id: handled, but it cannot be deduplicated");
    }

    let ticket = loop {
        match state.dedupe.claim(event.id.as_deref()) {
            Claim::Run(ticket) => break ticket,
            Claim::Duplicate => {
                state.metrics.duplicate();
                state.metrics.event(&event.kind, "duplicate");
                return Ok(Handled::Duplicate);
            }
            Claim::Running(mut done) => {
                // FusionAuth retried while the first delivery is still running:
                // wait for its outcome rather than run the actions twice.
                if tokio::time::timeout(state.read_timeout, done.changed()).await.is_err() {
                    state.metrics.event(&event.kind, "in_progress");
                    return Err(ReceiverError::InProgress);
                }
            }
        }
    };

    let matched = route::matching(&state.routes, &event.kind);
    if matched.is_empty() {
        let accept = state.unmatched == Unmatched::Accept;
        ticket.finish(accept, &[]);
        state.metrics.event(&event.kind, if accept { "unmatched" } else { "unmatched_rejected" });
        return if accept { Ok(Handled::Unmatched) } else { Err(ReceiverError::Unmatched) };
    }

    let pending: Vec<usize> = matched.into_iter().filter(|&i| !ticket.already_done(i)).collect();
    let results = futures::future::join_all(pending.iter().map(|&i| run_route(state, &state.routes[i], &request))).await;
    let mut succeeded = Vec::with_capacity(pending.len());
    let mut failures = Vec::new();
    for (&i, result) in pending.iter().zip(results) {
        match result {
            Ok(()) => succeeded.push(i),
            Err(e) => failures.push((state.routes[i].name.clone(), e)),
        }
    }
    let all_ok = failures.is_empty();
    ticket.finish(all_ok, &succeeded);
    state.metrics.event(&event.kind, if all_ok { "handled" } else { "failed" });
    if all_ok { Ok(Handled::Done) } else { Err(ReceiverError::ActionsFailed(failures)) }
}

async fn run_route(state: &AppState, route: &Route, request: &EventRequest) -> Result<(), crate::action::ActionError> {
    let started = Instant::now();
    let result = route.action.run(&state.actions, &route.name, request).await;
    state.metrics.action(&route.name, route.action.kind(), result.is_ok(), started.elapsed());
    if let Err(error) = &result {
        let event = request.event();
        tracing::warn!(route = %route.name, r#type = %event.kind, id = event.id.as_deref().unwrap_or(""), error = %error, "action failed");
    }
    result
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ReceiverError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).ok_or(ReceiverError::UnsupportedMediaType)?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(ReceiverError::UnsupportedMediaType) }
}

/// Reads the body within the size limit and the body timeout. A body not
/// vouched for by a header credential is charged to the shared budget for
/// unauthenticated bytes as its bytes arrive (a stalled connection that sent
/// nothing holds nothing), must arrive within FusionAuth's read timeout
/// (FusionAuth itself has given up after it), and answers 503 at once when
/// the budget is spent. The charge is returned to the caller to hold until
/// the body is authenticated.
async fn read_body<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
    body: Body,
    budgeted: bool,
) -> Result<(Bytes, Option<SemaphorePermit<'s>>), ReceiverError> {
    let limit = state.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReceiverError::TooLarge { limit });
    }
    let timeout = if budgeted { state.body_timeout.min(state.read_timeout) } else { state.body_timeout };
    let mut charge: Option<SemaphorePermit<'s>> = None;
    let read = async {
        let mut body = Limited::new(body, limit);
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() { ReceiverError::TooLarge { limit } } else { ReceiverError::BodyRead }
            })?;
            let Ok(data) = frame.into_data() else { continue };
            if budgeted {
                // The limit keeps a chunk below 4 GiB (the config caps it).
                let n = u32::try_from(data.len()).map_err(|_| ReceiverError::TooLarge { limit })?;
                let more = state.unauthenticated_bodies.try_acquire_many(n).map_err(|_| ReceiverError::Overloaded)?;
                match &mut charge {
                    Some(held) => held.merge(more),
                    None => charge = Some(more),
                }
            }
            chunks.push(data);
        }
        Ok(match chunks.len() {
            // FusionAuth's body usually arrives in one piece: no copy.
            1 => chunks.swap_remove(0),
            _ => chunks.concat().into(),
        })
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ReceiverError::BodyTimeout { timeout_ms: timeout.as_millis() }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(bytes)) => Ok((bytes, charge)),
    }
}
