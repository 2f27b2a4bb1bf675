//! The admin API, on its own listener (`admin.listen`), never on the port
//! FusionAuth reaches. Every call needs `Authorization: Bearer <token>` or,
//! through the API server's proxy (which drops `Authorization`),
//! `X-Fusionhook-Token: <token>`, compared in constant time. A token has a
//! scope ([`Scope`]): `read` lists, `replay` also replays and discards,
//! `ingest` also ingests; a token of another scope gets 403. JSON in and out.
//!
//! The endpoints, what each takes and answers, are the contract's
//! ([`fusionhook_api::admin::ENDPOINTS`], in the book's admin API page).
//! `POST /v1/prove` takes no token: a client shows a pod its token only
//! after the pod proved it holds that token already ([`proof`]), so a pod
//! that merely carries the receiver's labels learns nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, on};
use axum::{Json, Router};
use bytes::Bytes;
use fusionhook_api::admin::{Challenge, DELIVERIES, DISCARD, ENDPOINTS, EVENT, Endpoint, INGEST, Method, PROVE, Proofs, REPLAY, STATS};
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
/// (empty outside Kubernetes). It serves the contract's
/// [`ENDPOINTS`], each behind the token scope the contract gives it.
pub fn router(state: Arc<AppState>, tokens: Vec<(Scope, Arc<Secret>)>, pod: String) -> Router {
    let limit = state.max_body_bytes;
    let admin = Arc::new(Admin { state, tokens, pod });
    let mut router = Router::new();
    for endpoint in ENDPOINTS {
        let served = Router::new().route(endpoint.path, handler(endpoint));
        router = router.merge(match endpoint.scope {
            Some(scope) => served.route_layer(middleware::from_fn_with_state((admin.clone(), Scope::from(scope)), bearer)),
            None => served,
        });
    }
    router.layer(DefaultBodyLimit::max(limit)).with_state(admin).layer(middleware::map_response(as_json))
}

/// The handler of each endpoint of the contract, on its method.
fn handler(endpoint: Endpoint) -> MethodRouter<Arc<Admin>> {
    let method = match endpoint.method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
    };
    match endpoint {
        STATS => on(method, stats),
        DELIVERIES => on(method, deliveries),
        EVENT => on(method, event),
        REPLAY => on(method, replay),
        DISCARD => on(method, discard),
        INGEST => on(method, ingest),
        PROVE => on(method, prove),
        // The contract names an endpoint this receiver does not know (the
        // tests make sure none does).
        _ => any(|| async { AdminError::NotServed.into_response() }),
    }
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

pub use fusionhook_api::admin::{TOKEN_HEADER, proof};

async fn bearer(State((admin, needed)): State<(Arc<Admin>, Scope)>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token))
        .or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let Some(token) = presented else { return AdminError::Unauthorized.into_response() };
    // A rotated token stays valid for a grace period after its file
    // changed: a client that read the Secret just before still gets in.
    let granted: Vec<Scope> =
        admin.tokens.iter().filter(|(_, t)| t.accepts(token.as_bytes(), ROTATION_GRACE)).map(|(scope, _)| *scope).collect();
    if granted.iter().any(|scope| scope.allows(needed)) {
        return next.run(request).await;
    }
    let refusal = if granted.is_empty() { AdminError::Unauthorized } else { AdminError::Forbidden(needed) };
    refusal.into_response()
}

fn needed_action(scope: Scope) -> &'static str {
    match scope {
        Scope::Replay => "replay or discard",
        Scope::Ingest => "ingest events",
        Scope::Read | Scope::All => "read",
    }
}

async fn prove(State(admin): State<Arc<Admin>>, body: Bytes) -> Result<Response, AdminError> {
    let challenge: Challenge = serde_json::from_slice(&body).map_err(|e| AdminError::Invalid(format!("the body: {e}")))?;
    if !(16..=128).contains(&challenge.nonce.len()) {
        return Err(AdminError::Invalid("nonce: 16 to 128 characters".into()));
    }
    let needed = [Scope::Read, Scope::Replay, Scope::Ingest]
        .into_iter()
        .find(|s| s.as_str() == challenge.scope)
        .ok_or_else(|| AdminError::Invalid("scope: read, replay or ingest".into()))?;
    // Every value of a token of that scope still accepted: during a
    // rotation the client may hold either.
    let proofs: Vec<String> = admin
        .tokens
        .iter()
        .filter(|(scope, _)| *scope == needed || *scope == Scope::All)
        .flat_map(|(_, token)| std::iter::once(Arc::clone(&token.get())).chain(token.replaced_within(ROTATION_GRACE)))
        .map(|value| proof(value.expose().as_bytes(), &admin.pod, &challenge.nonce))
        .collect();
    Ok(Json(Proofs { pod: admin.pod.clone(), proofs }).into_response())
}

/// Every refusal of the admin API, mapped to HTTP in one place
/// ([`IntoResponse`]); an ingested event's own refusals are the public
/// port's ([`crate::answer::ReceiverError`]), in the same JSON shape.
#[derive(Debug)]
enum AdminError {
    /// 401: no token, or none it knows.
    Unauthorized,
    /// 403: a token of another scope.
    Forbidden(Scope),
    /// 400: the request names something wrong.
    Invalid(String),
    /// 409: `store.type: none`.
    NoStore,
    /// 404: no stored event has this id.
    NoSuchEvent,
    /// 503: the store failed (its reason goes to the log).
    Store(StoreError),
    /// 501: an endpoint of the contract this receiver does not serve.
    NotServed,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => error(StatusCode::UNAUTHORIZED, "[notAuthorized]", "a valid bearer token is required"),
            Self::Forbidden(needed) => {
                let message = format!("this token may not {}: that needs a token of scope {}", needed_action(needed), needed.as_str());
                error(StatusCode::FORBIDDEN, "[forbidden]", &message)
            }
            Self::Invalid(why) => error(StatusCode::BAD_REQUEST, "[invalid]", &why),
            Self::NoStore => {
                error(StatusCode::CONFLICT, "[noStore]", "this receiver has no store (store.type: none): nothing is kept to list or replay")
            }
            Self::NoSuchEvent => error(StatusCode::NOT_FOUND, "[notFound]", "no stored event has this id"),
            Self::NotServed => error(StatusCode::NOT_IMPLEMENTED, "[notServed]", "this receiver does not serve this endpoint"),
            Self::Store(e) => {
                tracing::error!(error = %e, "admin API: store call failed");
                error(StatusCode::SERVICE_UNAVAILABLE, "[storeUnavailable]", "the store cannot be reached now")
            }
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The one JSON shape of every refusal (the public port's too).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"errors": [{"code": code, "message": message}]}))).into_response()
}

fn store(admin: &Admin) -> Result<&Store, AdminError> {
    admin.state.shared.store.as_deref().ok_or(AdminError::NoStore)
}

async fn stats(State(admin): State<Arc<Admin>>) -> Response {
    let Some(store) = admin.state.shared.store.as_deref() else {
        return Json(json!({"store": "none", "pending": 0, "dead": 0, "delivered": 0, "oldestPendingSeconds": 0})).into_response();
    };
    // A store that hangs (PostgreSQL unreachable: the pool waits for a
    // connection) must not hang whoever asks why the receiver is not ready.
    let problem = match tokio::time::timeout(STATS_TIMEOUT, store.stats(now_ms())).await {
        Ok(Ok(stats)) => {
            let mut value = with_store_kind(&stats, store.kind());
            // Why the store cannot commit, while it cannot (null otherwise).
            value["storeProblem"] = json!(admin.state.shared.store_health.problem());
            value["quietSeconds"] = json!(quiet_seconds(&admin.state));
            return Json(value).into_response();
        }
        // Behind the token: the reason is told (a StoreError never holds a secret).
        Ok(Err(e)) => e.to_string(),
        Err(_) => admin
            .state
            .shared
            .store_health
            .problem()
            .unwrap_or_else(|| format!("the store did not answer within {} s", STATS_TIMEOUT.as_secs())),
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

/// The listing's filter from its query (pairs: `id` may repeat).
fn filter_from_query(query: &[(String, String)]) -> Result<Filter, AdminError> {
    let bad = |field: &str, why: &str| AdminError::Invalid(format!("{field}: {why}"));
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

async fn deliveries(State(admin): State<Arc<Admin>>, Query(query): Query<Vec<(String, String)>>) -> Result<Response, AdminError> {
    let store = store(&admin)?;
    let filter = filter_from_query(&query)?;
    let page = store.list(&filter).await?;
    Ok(Json(json!({"deliveries": page.items, "next": page.next})).into_response())
}

async fn event(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    let view = store(&admin)?.event(&id).await?.ok_or(AdminError::NoSuchEvent)?;
    Ok(Json(view).into_response())
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

fn selection(body: &Bytes) -> Result<(Filter, bool), AdminError> {
    let bad = AdminError::Invalid;
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

async fn replay(State(admin): State<Arc<Admin>>, body: Bytes) -> Result<Response, AdminError> {
    change(&admin, &body, true).await
}

async fn discard(State(admin): State<Arc<Admin>>, body: Bytes) -> Result<Response, AdminError> {
    change(&admin, &body, false).await
}

async fn change(admin: &Admin, body: &Bytes, replay: bool) -> Result<Response, AdminError> {
    let store = store(admin)?;
    let (filter, dry_run) = selection(body)?;
    let page = if replay { store.replay(&filter, dry_run).await? } else { store.discard(&filter, dry_run).await? };
    if replay && !dry_run {
        for wake in &admin.state.shared.wake {
            wake.notify_one();
        }
    }
    tracing::info!(action = if replay { "replay" } else { "discard" }, count = page.items.len(), dry_run, "admin API");
    Ok(Json(json!({"ids": page.items, "dryRun": dry_run, "next": page.next})).into_response())
}

async fn ingest(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request = match EventRequest::parse(body) {
        Ok(r) => r,
        Err(e) => return crate::answer::ReceiverError::BadRequest(e).into_response(),
    };
    let kind = request.event().kind.clone();
    // A trace's root, as FusionAuth's requests are (see `telemetry`).
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET, "ingest", otel.kind = "server", event.type = tracing::field::Empty,
        event.id = tracing::field::Empty,
    );
    match tracing::Instrument::instrument(process(&admin.state, request), span).await {
        Ok(handled) => {
            tracing::info!(r#type = %kind, outcome = handled.outcome(), "admin API: event ingested");
            Json(json!({"outcome": handled.outcome()})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use fusionhook_api::names::AdminScope;
    use tower::ServiceExt;

    /// The admin router over a receiver with an embedded store in `dir`,
    /// one token per scope (`<scope>-token-0123456789`).
    fn router_in(dir: &std::path::Path, with_store: bool) -> Router {
        for scope in ["read", "replay", "ingest"] {
            std::fs::write(dir.join(scope), format!("{scope}-token-0123456789")).unwrap();
        }
        let path = |f: &str| dir.join(f).display().to_string();
        let store_line =
            if with_store { format!("store: {{type: embedded, path: \"{}\"}}", path("store")) } else { "store: {type: none}".to_owned() };
        let yaml = format!(
            "auth: {{authorization: k}}\n{store_line}\nadmin: {{listen: '127.0.0.1:0', readTokenFile: '{}', replayTokenFile: '{}', ingestTokenFile: '{}'}}\nroutes: [{{name: l, events: ['*'], log: {{}}}}]\n",
            path("read"),
            path("replay"),
            path("ingest")
        );
        let config = Config::from_yaml(&yaml).unwrap();
        let store = with_store.then(|| {
            let retention = crate::store::Retention { dedupe_window: Duration::from_secs(60), delivered: Duration::from_secs(60) };
            let embedded = crate::store::embedded::Embedded::open(&dir.join("store"), retention, Default::default()).unwrap();
            Arc::new(Store::Embedded(embedded))
        });
        let tokens = config.admin.clone().unwrap().tokens;
        let state = Arc::new(AppState::new(config, Arc::new(|_: &str| {}), store).unwrap());
        router(state, tokens, "pod-0".into())
    }

    async fn call(router: &Router, method: &str, path: &str, token: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let mut request = http::Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let response = router.clone().oneshot(request.body(axum::body::Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn every_refusal_is_one_json_shape_with_the_right_status() {
        let dir = tempfile::tempdir().unwrap();
        let router = router_in(dir.path(), true);
        let read = Some("read-token-0123456789");
        let cases = [
            ("GET", "/v1/stats", None, "", StatusCode::UNAUTHORIZED, "[notAuthorized]"),
            ("GET", "/v1/stats", Some("wrong-token-0123456789"), "", StatusCode::UNAUTHORIZED, "[notAuthorized]"),
            ("POST", "/v1/replay", read, r#"{"state":"dead"}"#, StatusCode::FORBIDDEN, "[forbidden]"),
            ("GET", "/v1/deliveries?state=sideways", read, "", StatusCode::BAD_REQUEST, "[invalid]"),
            ("GET", "/v1/deliveries?color=red", read, "", StatusCode::BAD_REQUEST, "[invalid]"),
            ("GET", "/v1/deliveries?id=1&id=x", read, "", StatusCode::BAD_REQUEST, "[invalid]"),
            ("GET", "/v1/events/nope", read, "", StatusCode::NOT_FOUND, "[notFound]"),
            ("POST", "/v1/replay", Some("replay-token-0123456789"), "{}", StatusCode::BAD_REQUEST, "[invalid]"),
            ("POST", "/v1/replay", Some("replay-token-0123456789"), "not json", StatusCode::BAD_REQUEST, "[invalid]"),
            ("POST", "/v1/ingest", Some("ingest-token-0123456789"), "{}", StatusCode::BAD_REQUEST, "[missing]event"),
            ("POST", "/v1/prove", None, r#"{"nonce":"short","scope":"read"}"#, StatusCode::BAD_REQUEST, "[invalid]"),
            ("GET", "/v1/nothing-here", read, "", StatusCode::NOT_FOUND, "[notFound]"),
            ("DELETE", "/v1/prove", None, "", StatusCode::METHOD_NOT_ALLOWED, "[methodNotAllowed]"),
        ];
        for (method, path, token, body, status, code) in cases {
            let (got, answer) = call(&router, method, path, token, body).await;
            assert_eq!(got, status, "{method} {path}: {answer}");
            assert_eq!(answer["errors"][0]["code"], code, "{method} {path}: {answer}");
            assert!(answer["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {answer}");
            let text = answer.to_string();
            assert!(!text.contains("token-0123456789"), "no token in an answer: {text}");
        }
    }

    #[tokio::test]
    async fn it_serves_every_endpoint_of_the_contract_behind_its_scope() {
        let dir = tempfile::tempdir().unwrap();
        let router = router_in(dir.path(), true);
        let token = |scope: AdminScope| format!("{}-token-0123456789", scope.as_str());
        for endpoint in ENDPOINTS {
            let path = endpoint.path.replace("{id}", "no-such-event");
            let body = if endpoint == PROVE { r#"{"nonce":"0123456789abcdef","scope":"read"}"# } else { r#"{"ids":[1]}"# };
            let what = format!("{} {}", endpoint.method.as_str(), endpoint.path);
            let Some(scope) = endpoint.scope else {
                let (status, answer) = call(&router, endpoint.method.as_str(), &path, None, body).await;
                assert_eq!(status, StatusCode::OK, "{what} needs no token: {answer}");
                continue;
            };
            let (status, _) = call(&router, endpoint.method.as_str(), &path, None, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a token");
            for other in AdminScope::ALL.into_iter().filter(|s| *s != scope && scope != AdminScope::Read) {
                let (status, _) = call(&router, endpoint.method.as_str(), &path, Some(&token(other)), body).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a token of scope {}", other.as_str());
            }
            let (status, answer) = call(&router, endpoint.method.as_str(), &path, Some(&token(scope)), body).await;
            let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_IMPLEMENTED];
            assert!(!refused.contains(&status), "{what} with its own scope's token: {status} {answer}");
            assert_ne!(answer["errors"][0]["message"], "Not Found", "{what} is routed");
        }
    }

    #[test]
    fn a_listing_takes_every_id_it_is_given() {
        let pairs = |q: &[(&str, &str)]| -> Vec<(String, String)> { q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() };
        let filter = filter_from_query(&pairs(&[("id", "3"), ("state", "dead"), ("id", "7")])).unwrap();
        assert_eq!(filter.ids, vec![3, 7]);
        assert!(filter_from_query(&pairs(&[("id", "x")])).is_err());
    }

    #[tokio::test]
    async fn without_a_store_listing_answers_409_and_stats_say_none() {
        let dir = tempfile::tempdir().unwrap();
        let router = router_in(dir.path(), false);
        let read = Some("read-token-0123456789");
        let (status, answer) = call(&router, "GET", "/v1/deliveries", read, "").await;
        assert_eq!((status, answer["errors"][0]["code"].as_str()), (StatusCode::CONFLICT, Some("[noStore]")), "{answer}");
        let (status, answer) = call(&router, "GET", "/v1/stats", read, "").await;
        assert_eq!((status, answer["store"].as_str()), (StatusCode::OK, Some("none")), "{answer}");
        // Ingest runs the routes at once.
        let event = r#"{"event":{"id":"0b9a3a5e-0001-4000-8000-000000000001","type":"user.delete","user":{"id":"u"}}}"#;
        let (status, answer) = call(&router, "POST", "/v1/ingest", Some("ingest-token-0123456789"), event).await;
        assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("handled")), "{answer}");
    }
}
