//! The HTTP surface: `POST {path}` runs the pipeline
//! headers (content type, credentials, signature token) -> body (bounded;
//! bodies not vouched for by a header credential draw on a shared budget)
//! -> body hash -> parse -> dedupe -> route -> act -> answer;
//! `/healthz`, `/readyz` and `/metrics` serve operations.
//! From parse on, [`process`] is shared with the admin API's ingest.
//! With a store, the routes split: `ack: sync` ones run before the answer,
//! then the event and its `ack: durable` deliveries are committed; the
//! answer is 200 only after both.
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
use fusionhook_fusionauth::{EnvelopeError, EventRequest};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::action::{ActionContext, ActionError, LogSink};
use crate::answer::{Handled, ReceiverError};
use crate::config::{Config, DeliveryConfig};
use crate::dedupe::{Claim, Dedupe};
use crate::metrics::Metrics;
use crate::route::{self, Route};
use crate::route::{Ack, Unmatched};
use crate::store::{Accepted, NewDelivery, NewEvent, Store, now_ms};
use crate::telemetry::{self, Remembered, TARGET};
use crate::verify::Verifier;
use tracing::Instrument;
use tracing::field::Empty;

/// The longest any outbound connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `event.id` taken, in bytes; a longer one is refused (400).
/// FusionAuth's ids are UUIDs (36 characters), so this never refuses one of
/// its events; it keeps an id within what every store can index
/// (PostgreSQL refuses index rows over about 2700 bytes), so an odd id is
/// refused alone here instead of failing a store commit it shares.
pub const MAX_EVENT_ID_BYTES: usize = 512;

/// Everything a request needs, built once from the config.
pub struct AppState {
    path: String,
    /// Largest accepted body (the admin API's ingest too).
    pub max_body_bytes: usize,
    /// Permits are bytes of bodies read before a header credential matched.
    unauthenticated_bodies: Semaphore,
    body_timeout: Duration,
    read_timeout: Duration,
    unmatched: Unmatched,
    verifier: Verifier,
    dedupe: Dedupe,
    ready: AtomicBool,
    /// When the last event arrived (or the receiver started), ms since the
    /// epoch: the admin API's `quietSeconds`, which tells the operator that
    /// no delivery is still on its way to a store it is about to remove.
    pub last_event_ms: std::sync::atomic::AtomicU64,
    /// What the HTTP path shares with the delivery workers.
    pub shared: Arc<Shared>,
}

/// What the HTTP path and the delivery workers share: the routes, their
/// actions' client, the store and its health, the metrics, the traces to
/// continue and a wake-up per route. The workers get only this
/// ([`crate::delivery::dispatch::Dispatcher::start`]), never the HTTP
/// path's state (its verifier, dedupe, body budget, readiness).
pub struct Shared {
    /// Routes, in config order.
    pub routes: Vec<Route>,
    /// What actions need (HTTP client, log sink).
    pub actions: ActionContext,
    /// Metrics, shared with `/metrics`.
    pub metrics: Metrics,
    /// The traces of recently stored events, for their deliveries' attempts.
    pub traces: Remembered,
    /// The store, when one is configured.
    pub store: Option<Arc<Store>>,
    /// Whether it commits (readiness).
    pub store_health: crate::store::Health,
    /// One per route: woken when deliveries of it were committed.
    pub wake: Vec<Notify>,
    /// Durable delivery settings.
    pub delivery: DeliveryConfig,
}

impl AppState {
    /// Builds the state. `log` receives the `log` actions' lines; `store`
    /// is the opened store (see [`crate::store::open`]).
    pub fn new(config: Config, log: LogSink, store: Option<Arc<Store>>) -> Result<Self, reqwest::Error> {
        Self::with_metrics(config, log, store, Metrics::new())
    }

    /// [`AppState::new`] with metrics made beforehand (the store observes its commits into them).
    pub fn with_metrics(config: Config, log: LogSink, store: Option<Arc<Store>>, metrics: Metrics) -> Result<Self, reqwest::Error> {
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
        metrics.routes_known(config.routes.iter().map(|r| r.name.as_str()));
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
            ready: AtomicBool::new(true),
            last_event_ms: std::sync::atomic::AtomicU64::new(now_ms()),
            shared: Arc::new(Shared {
                wake: config.routes.iter().map(|_| Notify::new()).collect(),
                routes: config.routes,
                actions: ActionContext { client, log },
                metrics,
                traces: Remembered::default(),
                store_health: if store.is_some() { crate::store::Health::pending() } else { crate::store::Health::default() },
                store,
                delivery: config.delivery,
            }),
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
    if !state.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // The reason is in the log and the admin API's /v1/stats, not on this
    // port (which an Ingress may expose).
    match state.shared.store_health.problem() {
        None => "ready".into_response(),
        Some(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "the store cannot commit (the log and the admin API's /v1/stats say why)").into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.shared.metrics.render()).into_response()
}

async fn receive(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let _in_flight = state.shared.metrics.in_flight();
    // The request taken apart, not its headers extracted: that would copy them.
    let (parts, body) = request.into_parts();
    // A trace's root (nothing while traces are off: see `telemetry`).
    let span = tracing::info_span!(
        target: TARGET, "receive", otel.kind = "server", http.request.method = "POST", url.path = %parts.uri.path(),
        event.type = Empty, event.id = Empty, outcome = Empty, http.response.status_code = Empty, otel.status_code = Empty,
    );
    let (outcome, response) = match handle(&state, &parts.headers, body).instrument(span.clone()).await {
        Ok(handled) => {
            state.shared.metrics.request(handled.outcome());
            (handled.outcome(), handled.into_response())
        }
        Err(error) => {
            state.shared.metrics.request(error.outcome());
            if let ReceiverError::Unauthorized(reason) = &error {
                state.shared.metrics.auth_failure(reason.label());
                tracing::warn!(reason = reason.label(), "rejected an unauthenticated request");
            }
            (error.outcome(), error.into_response())
        }
    };
    if !span.is_none() {
        span.record("outcome", outcome).record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    response
}

/// The pipeline, in DESIGN.md's order.
async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Handled, ReceiverError> {
    check_content_type(headers)?;
    // Credentials first: a sender without them is refused before a byte of
    // its body is read.
    let authenticated = state.verifier.check_headers(headers).instrument(tracing::info_span!(target: TARGET, "authenticate")).await?;
    let (bytes, budget) = read_body(state, headers, body, !authenticated.by_credential()).await?;
    tracing::info_span!(target: TARGET, "verify.body")
        .in_scope(|| authenticated.check_body(&bytes))
        .map_err(ReceiverError::Unauthorized)?;
    drop(budget);
    process(state, EventRequest::parse(bytes)?).await
}

/// From a parsed event on: dedupe, route, act (sync routes), commit
/// (durable routes), answer. FusionAuth's deliveries and the admin API's
/// ingest both come here.
pub async fn process(state: &AppState, request: EventRequest) -> Result<Handled, ReceiverError> {
    state.last_event_ms.store(now_ms(), Ordering::Relaxed);
    let event = request.event();
    check_id(event.id.as_deref())?;
    let span = tracing::Span::current();
    if !span.is_none() {
        span.record("event.type", telemetry::bounded(&event.kind)).record("event.id", event.id.as_deref().unwrap_or(""));
    }
    if event.id.is_none() {
        tracing::warn!(r#type = %event.kind, "event without id: handled, but it cannot be deduplicated");
    }
    let ticket = loop {
        match state.dedupe.claim(event.id.as_deref()) {
            Claim::Run(ticket) => break ticket,
            Claim::Duplicate => return Ok(duplicate(state, &event.kind)),
            Claim::Running(done) => wait_for_first(state, done, &event.kind).await?,
        }
    };
    let matched = route::matching(&state.shared.routes, &event.kind);
    if matched.is_empty() {
        let accept = state.unmatched == Unmatched::Accept;
        ticket.finish(accept, &[]);
        state.shared.metrics.event(&event.kind, if accept { "unmatched" } else { "unmatched_rejected" });
        return if accept { Ok(Handled::Unmatched) } else { Err(ReceiverError::Unmatched) };
    }
    let (sync, durable): (Vec<usize>, Vec<usize>) = matched.into_iter().partition(|&i| state.shared.routes[i].ack == Ack::Sync);
    if let Some(store) = &state.shared.store
        && !sync.is_empty()
        && let Some(id) = event.id.as_deref()
    {
        // Stored means every sync route succeeded and the durable ones are
        // committed, here or on another replica: nothing to run again.
        match tokio::time::timeout(state.read_timeout, store.seen(id)).await.unwrap_or_else(|_| Err(store_timeout())) {
            Ok(true) => {
                ticket.finish(true, &[]);
                return Ok(duplicate(state, &event.kind));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "the store cannot be read; answering 500 so FusionAuth retries");
                state.shared.metrics.event(&event.kind, "store_unavailable");
                return Err(ReceiverError::StoreUnavailable);
            }
        }
    }
    let pending: Vec<usize> = sync.into_iter().filter(|&i| !ticket.already_done(i)).collect();
    let (succeeded, failures) = run_sync(state, &pending, &request).await;
    if !failures.is_empty() {
        // A failed sync route vetoes the event: nothing is committed, so no
        // durable route acts on an event FusionAuth may roll back.
        ticket.finish(false, &succeeded);
        state.shared.metrics.event(&event.kind, "failed");
        return Err(ReceiverError::ActionsFailed(failures));
    }
    commit(state, ticket, &request, &durable, &succeeded).await
}

/// FusionAuth retried while the first delivery of the event is still
/// running: wait for its outcome rather than run the actions twice (then
/// the dedupe is asked again); past the read timeout, 500.
async fn wait_for_first(state: &AppState, mut done: tokio::sync::watch::Receiver<()>, kind: &str) -> Result<(), ReceiverError> {
    if tokio::time::timeout(state.read_timeout, done.changed()).await.is_err() {
        state.shared.metrics.event(kind, "in_progress");
        return Err(ReceiverError::InProgress);
    }
    Ok(())
}

/// Runs the sync routes `pending` at once: those that succeeded, and the
/// failures by route name.
async fn run_sync(state: &AppState, pending: &[usize], request: &EventRequest) -> (Vec<usize>, Vec<(String, ActionError)>) {
    let results = futures::future::join_all(pending.iter().map(|&i| run_route(state, &state.shared.routes[i], request))).await;
    let mut succeeded = Vec::with_capacity(pending.len());
    let mut failures = Vec::new();
    for (&i, result) in pending.iter().zip(results) {
        match result {
            Ok(()) => succeeded.push(i),
            Err(e) => failures.push((state.shared.routes[i].name.clone(), e)),
        }
    }
    (succeeded, failures)
}

/// Commits the event with its `durable` deliveries (with no store: done),
/// then answers. FusionAuth gives up after its read timeout: a store that
/// hangs gets a 500 by then (a commit that lands later makes the retry a
/// duplicate).
async fn commit(
    state: &AppState,
    ticket: crate::dedupe::Ticket<'_>,
    request: &EventRequest,
    durable: &[usize],
    succeeded: &[usize],
) -> Result<Handled, ReceiverError> {
    let kind = &request.event().kind;
    let Some(store) = &state.shared.store else {
        ticket.finish(true, succeeded);
        state.shared.metrics.event(kind, "handled");
        return Ok(Handled::Done);
    };
    let new = new_event(state, request, durable);
    // Its deliveries' attempts join this trace (remembered before the
    // commit: a worker may claim them the moment it lands).
    if !durable.is_empty() {
        state.shared.traces.remember(&new.id);
    }
    let commit = tracing::info_span!(target: TARGET, "store.commit", store = store.kind(), deliveries = durable.len());
    let accepted = tokio::time::timeout(state.read_timeout, store.accept(new)).instrument(commit).await;
    let accepted = accepted.unwrap_or_else(|_| Err(store_timeout()));
    state.shared.store_health.record(&accepted);
    match accepted {
        Ok(accepted) => {
            ticket.finish(true, succeeded);
            for &i in durable {
                state.shared.wake[i].notify_one();
            }
            if accepted == Accepted::Duplicate {
                return Ok(duplicate(state, kind));
            }
            state.shared.metrics.event(kind, if durable.is_empty() { "handled" } else { "stored" });
            Ok(if durable.is_empty() { Handled::Done } else { Handled::Stored })
        }
        Err(e) => {
            ticket.finish(false, succeeded);
            tracing::error!(error = %e, r#type = %kind, "the event could not be committed; answering 500 so FusionAuth retries");
            state.shared.metrics.event(kind, "store_unavailable");
            Err(ReceiverError::StoreUnavailable)
        }
    }
}

/// Refuses an id longer than [`MAX_EVENT_ID_BYTES`] (400, like any other
/// unusable field; the id is not echoed).
fn check_id(id: Option<&str>) -> Result<(), ReceiverError> {
    match id {
        Some(id) if id.len() > MAX_EVENT_ID_BYTES => Err(ReceiverError::BadRequest(EnvelopeError::InvalidField(format!(
            "event.id: longer than {MAX_EVENT_ID_BYTES} bytes ({} bytes; FusionAuth's ids are 36-character UUIDs)",
            id.len()
        )))),
        _ => Ok(()),
    }
}

/// An event handled before (here, or with a store, anywhere): 200, nothing runs.
fn duplicate(state: &AppState, kind: &str) -> Handled {
    state.shared.metrics.duplicate();
    state.shared.metrics.event(kind, "duplicate");
    Handled::Duplicate
}

fn store_timeout() -> crate::store::StoreError {
    crate::store::StoreError("the store did not answer within readTimeoutMs".into())
}

/// The event as the store keeps it, with one delivery per durable route.
fn new_event(state: &AppState, request: &EventRequest, durable: &[usize]) -> NewEvent {
    let event = request.event();
    let now = now_ms();
    // An event without an id cannot be deduplicated; it gets one of its own.
    let id = event.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let deliveries = durable
        .iter()
        .map(|&i| {
            let route = &state.shared.routes[i];
            let delay = u64::try_from(route.durable.delay.as_millis()).unwrap_or(u64::MAX);
            let created = event.create_instant.and_then(|c| u64::try_from(c).ok()).unwrap_or(now);
            let due_ms = if delay == 0 { now } else { now.max(created.saturating_add(delay)) };
            let ordered_by = route.durable.ordered.then(|| object_of(request)).flatten();
            NewDelivery { route: route.name.clone(), due_ms, ordered_by }
        })
        .collect();
    NewEvent { id, kind: event.kind.clone(), received_ms: now, body: request.body().clone(), deliveries }
}

/// What an event is about, for `ordering: perObject`: `linkedObjectId`,
/// else the user's id.
fn object_of(request: &EventRequest) -> Option<String> {
    if let Some(linked) = &request.event().linked_object_id {
        return Some(linked.clone());
    }
    request.event_json().pointer("/user/id").and_then(|v| v.as_str()).map(str::to_owned)
}

async fn run_route(state: &AppState, route: &Route, request: &EventRequest) -> Result<(), crate::action::ActionError> {
    let started = Instant::now();
    let event = request.event();
    let key = match event.id.as_deref() {
        Some(id) => crate::delivery::idempotency_key(id, &route.name),
        None => crate::delivery::idempotency_key(&body_digest(request.body()), &route.name),
    };
    let span = tracing::info_span!(target: TARGET, "route", route = %route.name, action = route.action.kind(), outcome = Empty);
    let result = route.action.run(&state.shared.actions, &route.name, request, &key).instrument(span.clone()).await;
    span.record("outcome", if result.is_ok() { "succeeded" } else { "failed" });
    state.shared.metrics.action(&route.name, route.action.kind(), result.is_ok(), started.elapsed());
    if let Err(error) = &result {
        let event = request.event();
        tracing::warn!(route = %route.name, r#type = %event.kind, id = event.id.as_deref().unwrap_or(""), error = %error, "action failed");
    }
    result
}

fn body_digest(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::with_capacity(64);
    crate::delivery::hex(&Sha256::digest(body), &mut out);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_over_the_limit_in_bytes_is_refused_with_400() {
        assert!(check_id(None).is_ok());
        assert!(check_id(Some(&"a".repeat(MAX_EVENT_ID_BYTES))).is_ok());
        let refused = check_id(Some(&"a".repeat(MAX_EVENT_ID_BYTES + 1))).unwrap_err();
        assert_eq!(refused.into_response().status(), StatusCode::BAD_REQUEST);
        // Bytes, not characters: what an index holds.
        assert!(check_id(Some(&"é".repeat(MAX_EVENT_ID_BYTES / 2 + 1))).is_err());
    }
}
