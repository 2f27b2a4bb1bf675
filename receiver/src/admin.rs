//! The admin API, on its own listener (`admin.listen`), never on the port
//! FusionAuth reaches. Every call needs `Authorization: Bearer <token>` or,
//! through the API server's proxy (which drops `Authorization`),
//! `X-Fusionhook-Token: <token>`, compared in constant time. A token has a
//! scope ([`Scope`]): `read` lists, `replay` also replays and discards,
//! `ingest` also ingests; a token of another scope gets 403. JSON in and out.
//!
//! - `GET /v1/stats`: `pending`, `dead`, `delivered`, `oldestPendingSeconds`,
//!   per route; `quietSeconds` since the last event arrived; `storeProblem`.
//! - `GET /v1/deliveries?state=&route=&eventType=&eventId=&since=&after=&limit=`
//! - `GET /v1/events/{id}`: the event as received, with its deliveries and their attempts.
//! - `POST /v1/replay`, `POST /v1/discard` (scope `replay`): `{"ids": [...]}`
//!   and/or a filter (`{"state": "dead", "route": ...}`; every one given
//!   applies), with `"dryRun": true` to only list; `next` (give it as
//!   `after`) when more may follow.
//! - `POST /v1/ingest` (scope `ingest`): an event exactly as FusionAuth
//!   sends it; handled as a delivery of that `event.id` (routes, dedupe,
//!   store) without FusionAuth's credentials, which a replayed event cannot carry.
//! - `POST /v1/prove` (no token): `{"nonce", "scope"}` answered with
//!   `{"pod", "proofs"}`, an HMAC-SHA256 of the pod's name and the nonce
//!   under each token of that scope it accepts ([`proof`]). A client shows
//!   a pod its token only after the pod proved it holds that token already,
//!   so a pod that merely carries the receiver's labels learns nothing.

// Helpers return the error answer itself (`Result<_, Response>`): the size
// of a Response on the error path of an admin call does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use fusionhook_fusionauth::EventRequest;
use http::{StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::app::{AppState, process};
use crate::config::Scope;
use crate::secret::{ROTATION_GRACE, Secret};
use crate::store::{Filter, State as DeliveryState, Stats, Store, StoreError, now_ms};

/// How long `/v1/stats` waits for the store.
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

struct Admin {
    state: Arc<AppState>,
    tokens: Vec<(Scope, Arc<Secret>)>,
    /// This pod's name, bound into every proof (see [`proof`]).
    pod: String,
}

/// The admin router: `tokens` with their scopes; `pod`, this pod's name
/// (empty outside Kubernetes).
pub fn router(state: Arc<AppState>, tokens: Vec<(Scope, Arc<Secret>)>, pod: String) -> Router {
    let limit = state.max_body_bytes;
    let admin = Arc::new(Admin { state, tokens, pod });
    let read = Router::new()
        .route("/v1/stats", get(stats))
        .route("/v1/deliveries", get(deliveries))
        .route("/v1/events/{id}", get(event))
        .route_layer(middleware::from_fn_with_state((admin.clone(), Scope::Read), bearer));
    let replay = Router::new()
        .route("/v1/replay", post(replay))
        .route("/v1/discard", post(discard))
        .route_layer(middleware::from_fn_with_state((admin.clone(), Scope::Replay), bearer));
    let ingest =
        Router::new().route("/v1/ingest", post(ingest)).route_layer(middleware::from_fn_with_state((admin.clone(), Scope::Ingest), bearer));
    Router::new()
        .merge(read)
        .merge(replay)
        .merge(ingest)
        .route("/v1/prove", post(prove))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(admin)
        .layer(middleware::map_response(as_json))
}

/// Every refusal in the JSON shape of the public port (`{"errors": [{"code",
/// "message"}]}`), also those axum and hyper make themselves (a body over
/// the limit: 413, an unknown path: 404, a wrong method: 405): a client
/// such as the operator's backfill tells the receiver's own refusal from a
/// proxy's by that shape.
async fn as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "[tooLarge]",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "[unsupportedMediaType]",
        StatusCode::NOT_FOUND => "[notFound]",
        StatusCode::METHOD_NOT_ALLOWED => "[methodNotAllowed]",
        s if s.is_server_error() => "[internal]",
        _ => "[invalid]",
    };
    // axum's own texts are short and hold nothing of the request's content.
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_owned(),
        text => text.to_owned(),
    };
    error(status, code, &message)
}

/// The header that carries the token through the API server's service and
/// pod proxy, which removes `Authorization` before proxying.
pub const TOKEN_HEADER: &str = "x-fusionhook-token";

async fn bearer(State((admin, needed)): State<(Arc<Admin>, Scope)>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token))
        .or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let Some(token) = presented else {
        return error(StatusCode::UNAUTHORIZED, "[notAuthorized]", "a valid bearer token is required");
    };
    // A rotated token stays valid for a grace period after its file
    // changed: a client that read the Secret just before still gets in.
    let granted: Vec<Scope> =
        admin.tokens.iter().filter(|(_, t)| t.accepts(token.as_bytes(), ROTATION_GRACE)).map(|(scope, _)| *scope).collect();
    if granted.iter().any(|scope| scope.allows(needed)) {
        return next.run(request).await;
    }
    if granted.is_empty() {
        return error(StatusCode::UNAUTHORIZED, "[notAuthorized]", "a valid bearer token is required");
    }
    let message = format!("this token may not {}: that needs a token of scope {}", needed_action(needed), needed.as_str());
    error(StatusCode::FORBIDDEN, "[forbidden]", &message)
}

fn needed_action(scope: Scope) -> &'static str {
    match scope {
        Scope::Replay => "replay or discard",
        Scope::Ingest => "ingest events",
        Scope::Read | Scope::All => "read",
    }
}

/// The body of `/v1/prove`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    nonce: String,
    scope: String,
}

/// The proof that the holder of `token` is pod `pod`, for a client's
/// `nonce`: hex HMAC-SHA256 under the token of a fixed label, the pod's
/// name and the nonce. The pod's name is bound in so a pod that relays a
/// challenge to a real receiver gets a proof for that receiver's name,
/// not its own.
pub fn proof(token: &[u8], pod: &str, nonce: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    mac.update(format!("fusionhook admin proof v1\n{pod}\n{nonce}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn prove(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let challenge: Challenge = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "[invalid]", &format!("the body: {e}")),
    };
    if !(16..=128).contains(&challenge.nonce.len()) {
        return error(StatusCode::BAD_REQUEST, "[invalid]", "nonce: 16 to 128 characters");
    }
    let Some(needed) = [Scope::Read, Scope::Replay, Scope::Ingest].into_iter().find(|s| s.as_str() == challenge.scope) else {
        return error(StatusCode::BAD_REQUEST, "[invalid]", "scope: read, replay or ingest");
    };
    // Every value of a token of that scope still accepted: during a
    // rotation the client may hold either.
    let proofs: Vec<String> = admin
        .tokens
        .iter()
        .filter(|(scope, _)| *scope == needed || *scope == Scope::All)
        .flat_map(|(_, token)| std::iter::once(Arc::clone(&token.get())).chain(token.replaced_within(ROTATION_GRACE)))
        .map(|value| proof(value.expose().as_bytes(), &admin.pod, &challenge.nonce))
        .collect();
    Json(json!({"pod": admin.pod, "proofs": proofs})).into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"errors": [{"code": code, "message": message}]}))).into_response()
}

fn no_store() -> Response {
    error(StatusCode::CONFLICT, "[noStore]", "this receiver has no store (store.type: none): nothing is kept to list or replay")
}

fn store_failed(e: &StoreError) -> Response {
    tracing::error!(error = %e, "admin API: store call failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "[storeUnavailable]", "the store cannot be reached now")
}

fn store(admin: &Admin) -> Result<&Store, Response> {
    admin.state.store.as_deref().ok_or_else(no_store)
}

async fn stats(State(admin): State<Arc<Admin>>) -> Response {
    let Some(store) = admin.state.store.as_deref() else {
        return Json(json!({"store": "none", "pending": 0, "dead": 0, "delivered": 0, "oldestPendingSeconds": 0})).into_response();
    };
    // A store that hangs (PostgreSQL unreachable: the pool waits for a
    // connection) must not hang whoever asks why the receiver is not ready.
    let problem = match tokio::time::timeout(STATS_TIMEOUT, store.stats(now_ms())).await {
        Ok(Ok(stats)) => {
            let mut value = with_store_kind(&stats, store.kind());
            // Why the store cannot commit, while it cannot (null otherwise).
            value["storeProblem"] = json!(admin.state.store_health.problem());
            value["quietSeconds"] = json!(quiet_seconds(&admin.state));
            return Json(value).into_response();
        }
        // Behind the token: the reason is told (a StoreError never holds a secret).
        Ok(Err(e)) => e.to_string(),
        Err(_) => {
            admin.state.store_health.problem().unwrap_or_else(|| format!("the store did not answer within {} s", STATS_TIMEOUT.as_secs()))
        }
    };
    tracing::error!(error = %problem, "admin API: store call failed");
    // 200, not 503: through the API server's proxy a 503 is what clients
    // (kube-rs, client-go) retry as the API server's own overload, and this
    // answer is the one that says why the receiver is not ready.
    let unknown = serde_json::Value::Null;
    Json(json!({
        "store": store.kind(), "pending": unknown, "dead": unknown, "delivered": unknown, "oldestPendingSeconds": unknown,
        "storeProblem": problem,
    }))
    .into_response()
}

/// Seconds since the last event arrived (or since the start).
fn quiet_seconds(state: &AppState) -> u64 {
    let last = state.last_event_ms.load(std::sync::atomic::Ordering::Relaxed);
    now_ms().saturating_sub(last) / 1000
}

fn with_store_kind(stats: &Stats, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(stats).unwrap_or_default();
    value["store"] = json!(kind);
    value
}

/// A `since` of either milliseconds since the epoch or a duration back from now (`15m`, `2h`).
fn since(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let back: Duration = humantime::parse_duration(text).ok()?;
    Some(now_ms().saturating_sub(u64::try_from(back.as_millis()).unwrap_or(u64::MAX)))
}

fn filter_from_query(query: &HashMap<String, String>) -> Result<Filter, Response> {
    let bad = |field: &str, why: &str| error(StatusCode::BAD_REQUEST, "[invalid]", &format!("{field}: {why}"));
    let mut filter = Filter::default();
    for (key, value) in query {
        match key.as_str() {
            "state" => filter.state = Some(DeliveryState::parse(value).ok_or_else(|| bad("state", "pending, dead or delivered"))?),
            "route" => filter.route = Some(value.clone()),
            "eventType" => filter.event_type = Some(value.clone()),
            "eventId" => filter.event_id = Some(value.clone()),
            "since" => {
                filter.since_ms = Some(since(value).ok_or_else(|| bad("since", "milliseconds since the epoch, or a duration like 15m"))?)
            }
            "after" => filter.after = Some(value.parse().map_err(|_| bad("after", "a delivery id"))?),
            "limit" => filter.limit = Some(value.parse().map_err(|_| bad("limit", "a number"))?),
            "id" => filter.ids.push(value.parse().map_err(|_| bad("id", "a delivery id"))?),
            other => return Err(bad(other, "unknown parameter")),
        }
    }
    Ok(filter)
}

async fn deliveries(State(admin): State<Arc<Admin>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let store = match store(&admin) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = match filter_from_query(&query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match store.list(&filter).await {
        Ok(page) => Json(json!({"deliveries": page.items, "next": page.next})).into_response(),
        Err(e) => store_failed(&e),
    }
}

async fn event(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Response {
    let store = match store(&admin) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match store.event(&id).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "[notFound]", "no stored event has this id"),
        Err(e) => store_failed(&e),
    }
}

/// The body of replay and discard.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<u64>,
    #[serde(default)]
    state: Option<DeliveryState>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    dry_run: bool,
}

fn selection(body: &Bytes) -> Result<(Filter, bool), Response> {
    let bad = |why: String| error(StatusCode::BAD_REQUEST, "[invalid]", &why);
    let s: Selection = serde_json::from_slice(body).map_err(|e| bad(format!("the body: {e}")))?;
    if s.ids.is_empty() && s.state.is_none() {
        return Err(bad("give ids, or a state (with optional route, eventType, eventId, since)".into()));
    }
    let since_ms = s
        .since
        .as_deref()
        .map(|t| since(t).ok_or_else(|| bad("since: milliseconds since the epoch, or a duration like 15m".into())))
        .transpose()?;
    let filter = Filter {
        ids: s.ids,
        state: s.state,
        route: s.route,
        event_type: s.event_type,
        event_id: s.event_id,
        since_ms,
        after: s.after,
        limit: s.limit,
    };
    Ok((filter, s.dry_run))
}

async fn replay(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    change(&admin, &body, true).await
}

async fn discard(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    change(&admin, &body, false).await
}

async fn change(admin: &Admin, body: &Bytes, replay: bool) -> Response {
    let store = match store(admin) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (filter, dry_run) = match selection(body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let result = if replay { store.replay(&filter, dry_run).await } else { store.discard(&filter, dry_run).await };
    match result {
        Ok(page) => {
            if replay && !dry_run {
                for wake in &admin.state.wake {
                    wake.notify_one();
                }
            }
            tracing::info!(action = if replay { "replay" } else { "discard" }, count = page.items.len(), dry_run, "admin API");
            Json(json!({"ids": page.items, "dryRun": dry_run, "next": page.next})).into_response()
        }
        Err(e) => store_failed(&e),
    }
}

async fn ingest(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request = match EventRequest::parse(body) {
        Ok(r) => r,
        Err(e) => return crate::answer::ReceiverError::BadRequest(e).into_response(),
    };
    let kind = request.event().kind.clone();
    match process(&admin.state, request).await {
        Ok(handled) => {
            tracing::info!(r#type = %kind, outcome = handled.outcome(), "admin API: event ingested");
            Json(json!({"outcome": handled.outcome()})).into_response()
        }
        Err(e) => e.into_response(),
    }
}
