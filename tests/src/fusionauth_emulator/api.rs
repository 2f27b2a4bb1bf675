//! FusionAuth's API surface, answered as FusionAuth answers (FACTS.md §a):
//! 200 with JSON on success, 400 with an `Errors` body, 401 and 404 with an
//! empty body, DELETE 200 with no body.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fusionhook_fusionauth::model::Errors;
use serde_json::{Value, json};
use uuid::Uuid;

use super::patch::{self, PatchKind};
use super::{Emulator, keys, now_ms, validate};

/// A FusionAuth answer.
enum Answer {
    Json(Value),
    Empty(StatusCode),
    Invalid(Errors),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            // 401/404/500 carry no body (FACTS.md §a.5).
            Self::Empty(status) => status.into_response(),
            Self::Invalid(errors) => (StatusCode::BAD_REQUEST, axum::Json(errors)).into_response(),
        }
    }
}

fn parse_body(bytes: &Bytes) -> Result<Value, Answer> {
    serde_json::from_slice(bytes)
        .map_err(|e| Answer::Invalid(Errors::field("", "[invalidJSON]", format!("Invalid JSON in the request body. {e}"))))
}

pub fn router(emulator: Emulator) -> Router {
    let api = Router::new()
        .route("/api/webhook", get(list_webhooks).post(create_webhook_generated))
        .route("/api/webhook/search", get(search_webhooks_get).post(search_webhooks_post))
        .route("/api/webhook/{id}", get(get_webhook).post(create_webhook).put(update_webhook).patch(patch_webhook).delete(delete_webhook))
        .route("/api/tenant", get(list_tenants))
        .route("/api/tenant/{id}", get(get_tenant).patch(patch_tenant))
        .route("/api/key/{id}", get(get_key).delete(delete_key))
        .route("/api/key/import", post(import_key_generated))
        .route("/api/key/import/{id}", post(import_key))
        .route("/api/system-configuration", get(get_system_configuration).patch(patch_system_configuration))
        .route("/api/system/webhook-event-log/search", get(search_event_logs_get).post(search_event_logs_post))
        .route("/api/system/webhook-event-log/{id}", get(get_event_log))
        .route("/api/system/webhook-attempt-log/{id}", get(get_attempt_log))
        .layer(middleware::from_fn_with_state(emulator.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/.well-known/jwks.json", get(jwks))
        .route("/emulator/events", post(raise))
        .route("/emulator/tenants", post(add_tenant))
        .route("/emulator/api-keys", post(add_api_key))
        .route("/emulator/faults", post(add_faults))
        .route("/emulator/resolve", post(add_resolve))
        .with_state(emulator)
}

/// API key check (FACTS.md §a.2): the key verbatim in `Authorization`; the
/// Webhook, Key and Webhook Event Log APIs refuse any tenant-scoped request
/// (tenant key or `X-FusionAuth-TenantId`) with 401 and an empty body.
async fn authenticate(State(emulator): State<Emulator>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let pattern = path_pattern(&path);
    {
        let mut state = emulator.state();
        *state.calls.entry(format!("{} {pattern}", request.method())).or_default() += 1;
        if let Some(status) = state.faults.pop_front() {
            return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
        }
        let key = request.headers().get("authorization").and_then(|v| v.to_str().ok());
        let scope = match key.and_then(|k| state.api_keys.get(k)) {
            None => return StatusCode::UNAUTHORIZED.into_response(),
            Some(scope) => *scope,
        };
        let tenant_header = request.headers().contains_key("x-fusionauth-tenantid");
        let global_only = !path.starts_with("/api/tenant");
        if global_only && (scope.is_some() || tenant_header) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if let Some(tenant) = scope
            && !path.starts_with(&format!("/api/tenant/{tenant}"))
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if let Some(allowed) = key.and_then(|k| state.key_endpoints.get(k))
            && !allowed.contains(&pattern)
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    next.run(request).await
}

/// `/api/webhook/3f…` -> `/api/webhook/{id}`, for call counting.
fn path_pattern(path: &str) -> String {
    path.split('/').map(|seg| if Uuid::parse_str(seg).is_ok() { "{id}" } else { seg }).collect::<Vec<_>>().join("/")
}

/// A path id; anything that is not a UUID names nothing (404).
fn path_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

// ---- webhooks (FACTS.md §a.1–a.5) ----

async fn list_webhooks(State(emulator): State<Emulator>) -> Answer {
    let mut webhooks: Vec<Value> = emulator.state().webhooks.values().cloned().collect();
    // Sorted by url (FACTS.md §a.1, decomp).
    webhooks.sort_by(|a, b| a["url"].as_str().cmp(&b["url"].as_str()));
    Answer::Json(json!({ "webhooks": webhooks }))
}

async fn get_webhook(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    match emulator.state().webhooks.get(&id) {
        Some(w) => Answer::Json(json!({ "webhook": w })),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

fn create(emulator: &Emulator, id: Uuid, bytes: &Bytes) -> Answer {
    let body = match parse_body(bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    if state.webhooks.contains_key(&id) {
        let (field, code) = super::uncertain::DUPLICATE_WEBHOOK_ID;
        return Answer::Invalid(Errors::field(field, code, format!("A webhook with id [{id}] already exists.")));
    }
    match validate::webhook(&body, id, None, &*state, now_ms()) {
        Ok(webhook) => {
            state.webhooks.insert(id, webhook.clone());
            Answer::Json(json!({ "webhook": webhook }))
        }
        Err(errors) => Answer::Invalid(errors),
    }
}

async fn create_webhook_generated(State(emulator): State<Emulator>, bytes: Bytes) -> Answer {
    create(&emulator, Uuid::new_v4(), &bytes)
}

async fn create_webhook(State(emulator): State<Emulator>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    match Uuid::parse_str(&id) {
        Ok(id) => create(&emulator, id, &bytes),
        Err(_) => Answer::Invalid(Errors::field("webhookId", "[invalid]webhookId", "The webhook id must be a UUID.")),
    }
}

async fn update_webhook(State(emulator): State<Emulator>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let body = match parse_body(&bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    let Some(previous) = state.webhooks.get(&id).cloned() else { return Answer::Empty(StatusCode::NOT_FOUND) };
    // PUT replaces the whole object: omitted fields are cleared (FACTS.md §a.6).
    match validate::webhook(&body, id, Some(&previous), &*state, now_ms()) {
        Ok(webhook) => {
            state.webhooks.insert(id, webhook.clone());
            Answer::Json(json!({ "webhook": webhook }))
        }
        Err(errors) => Answer::Invalid(errors),
    }
}

async fn patch_webhook(State(emulator): State<Emulator>, Path(id): Path<String>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let Some(kind) = headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(PatchKind::from_content_type) else {
        return Answer::Empty(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    };
    let patch_body = match parse_body(&bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    let Some(previous) = state.webhooks.get(&id).cloned() else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let mut document = json!({ "webhook": previous.clone() });
    if let Err(message) = patch::apply(kind, &mut document, &patch_body) {
        return Answer::Invalid(Errors::field("", "[invalidJSON]", message));
    }
    match validate::webhook(&document, id, Some(&previous), &*state, now_ms()) {
        Ok(webhook) => {
            state.webhooks.insert(id, webhook.clone());
            Answer::Json(json!({ "webhook": webhook }))
        }
        Err(errors) => Answer::Invalid(errors),
    }
}

async fn delete_webhook(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let mut state = emulator.state();
    if state.webhooks.remove(&id).is_none() {
        return Answer::Empty(StatusCode::NOT_FOUND);
    }
    // Detach it from tenants too (tenant.webhookIds, FACTS.md §c.6).
    for tenant in state.tenants.values_mut() {
        if let Some(ids) = tenant.get_mut("webhookIds").and_then(Value::as_array_mut) {
            ids.retain(|v| v.as_str() != Some(&id.to_string()));
        }
    }
    // 200 with no body (FACTS.md §a.5).
    Answer::Empty(StatusCode::OK)
}

/// `description`/`url` matching: case-insensitive, `*` wildcards, plain text
/// means `*text*` (FACTS.md §a.4).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let text = text.to_lowercase();
    let pattern = if pattern.contains('*') { pattern } else { format!("*{pattern}*") };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

fn search_webhooks(emulator: &Emulator, criteria: &Value) -> Answer {
    let text = |f: &str| criteria.get(f).and_then(Value::as_str).map(str::to_owned);
    let number =
        |f: &str, d: u64| criteria.get(f).and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(d);
    let tenant = text("tenantId");
    let mut matches: Vec<Value> = emulator
        .state()
        .webhooks
        .values()
        .filter(|w| text("description").is_none_or(|p| wildcard_match(&p, w["description"].as_str().unwrap_or(""))))
        .filter(|w| text("url").is_none_or(|p| wildcard_match(&p, w["url"].as_str().unwrap_or(""))))
        .filter(|w| {
            // A tenant's webhooks plus every global one (FACTS.md §a.4).
            tenant.as_ref().is_none_or(|t| {
                w["global"] == true || w["tenantIds"].as_array().is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(t)))
            })
        })
        .cloned()
        .collect();
    // Default order insertInstant DESC, id DESC (Java criteria, FACTS.md §a.4).
    let order = text("orderBy").unwrap_or_else(|| "insertInstant DESC".into());
    let mut words = order.split_whitespace();
    let field = words.next().unwrap_or("insertInstant").to_owned();
    let descending = words.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    matches.sort_by(|a, b| {
        let ord = match field.as_str() {
            "insertInstant" => a[&field].as_i64().cmp(&b[&field].as_i64()),
            _ => a[&field].as_str().cmp(&b[&field].as_str()),
        }
        .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()));
        if descending { ord.reverse() } else { ord }
    });
    let total = matches.len();
    let start = number("startRow", 0) as usize;
    let count = number("numberOfResults", 25) as usize;
    let page: Vec<Value> = matches.into_iter().skip(start).take(count).collect();
    Answer::Json(json!({ "total": total, "webhooks": page }))
}

async fn search_webhooks_get(State(emulator): State<Emulator>, Query(query): Query<std::collections::BTreeMap<String, String>>) -> Answer {
    search_webhooks(&emulator, &serde_json::to_value(query).unwrap_or_default())
}

async fn search_webhooks_post(State(emulator): State<Emulator>, bytes: Bytes) -> Answer {
    match parse_body(&bytes) {
        Ok(body) => search_webhooks(&emulator, body.get("search").unwrap_or(&Value::Null)),
        Err(a) => a,
    }
}

// ---- tenants (FACTS.md §c.6, §a.6) ----

async fn list_tenants(State(emulator): State<Emulator>) -> Answer {
    let tenants: Vec<Value> = emulator.state().tenants.values().cloned().collect();
    Answer::Json(json!({ "tenants": tenants }))
}

async fn get_tenant(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    match emulator.state().tenants.get(&id) {
        Some(t) => Answer::Json(json!({ "tenant": t })),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

async fn patch_tenant(State(emulator): State<Emulator>, Path(id): Path<String>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let Some(kind) = headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(PatchKind::from_content_type) else {
        return Answer::Empty(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    };
    let patch_body = match parse_body(&bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    let Some(previous) = state.tenants.get(&id).cloned() else { return Answer::Empty(StatusCode::NOT_FOUND) };
    let mut document = json!({ "tenant": previous });
    if let Err(message) = patch::apply(kind, &mut document, &patch_body) {
        return Answer::Invalid(Errors::field("", "[invalidJSON]", message));
    }
    let mut tenant = document["tenant"].take();
    if let Err(errors) = validate::tenant_events(&tenant) {
        return Answer::Invalid(errors);
    }
    tenant["id"] = json!(id);
    tenant["lastUpdateInstant"] = json!(now_ms());
    state.tenants.insert(id, tenant.clone());
    Answer::Json(json!({ "tenant": tenant }))
}

// ---- keys and JWKS (FACTS.md §d) ----

async fn get_key(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    match emulator.state().keys.get(&id) {
        Some(k) => Answer::Json(json!({ "key": k.to_response() })),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

async fn delete_key(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let Some(id) = path_id(&id) else { return Answer::Empty(StatusCode::NOT_FOUND) };
    match emulator.state().keys.remove(&id) {
        Some(_) => Answer::Empty(StatusCode::OK),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

fn import(emulator: &Emulator, id: Uuid, bytes: &Bytes) -> Answer {
    let body = match parse_body(bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    if state.keys.contains_key(&id) {
        let (field, code) = super::uncertain::DUPLICATE_KEY_ID;
        return Answer::Invalid(Errors::field(field, code, format!("A key with id [{id}] already exists.")));
    }
    match keys::import(&body, id, now_ms()) {
        Ok(record) => {
            let response = record.to_response();
            state.keys.insert(id, record);
            Answer::Json(json!({ "key": response }))
        }
        Err(errors) => Answer::Invalid(errors),
    }
}

async fn import_key_generated(State(emulator): State<Emulator>, bytes: Bytes) -> Answer {
    import(&emulator, Uuid::new_v4(), &bytes)
}

async fn import_key(State(emulator): State<Emulator>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    match Uuid::parse_str(&id) {
        Ok(id) => import(&emulator, id, &bytes),
        Err(_) => Answer::Invalid(Errors::field("keyId", "[invalid]keyId", "The key id must be a UUID.")),
    }
}

/// No authentication, always 200; HMAC keys never appear (FACTS.md §d).
async fn jwks(State(emulator): State<Emulator>) -> Answer {
    let keys: Vec<Value> = emulator.state().keys.values().filter_map(keys::KeyRecord::to_jwk).collect();
    Answer::Json(json!({ "keys": keys }))
}

// ---- Webhook Event Log (FACTS.md §c.7) ----

/// `GET /api/system-configuration`: only `webhookEventLogConfiguration` is modelled.
async fn get_system_configuration(State(emulator): State<Emulator>) -> Answer {
    let configuration = emulator.state().event_log_configuration.clone();
    Answer::Json(json!({ "systemConfiguration": { "webhookEventLogConfiguration": configuration } }))
}

/// `PATCH /api/system-configuration`: merges `webhookEventLogConfiguration`.
async fn patch_system_configuration(State(emulator): State<Emulator>, bytes: Bytes) -> Answer {
    let body = match parse_body(&bytes) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    if let Some(change) = body.pointer("/systemConfiguration/webhookEventLogConfiguration") {
        json_patch::merge(&mut state.event_log_configuration, change);
    }
    let configuration = state.event_log_configuration.clone();
    Answer::Json(json!({ "systemConfiguration": { "webhookEventLogConfiguration": configuration } }))
}

/// Deletes entries older than the retention, as FusionAuth's nightly job
/// does (FACTS.md §c.7; here at each read, so a test sees it at once).
fn apply_retention(state: &mut super::State) {
    let configuration = &state.event_log_configuration;
    if configuration.pointer("/delete/enabled") != Some(&Value::Bool(true)) {
        return;
    }
    let days = configuration.pointer("/delete/numberOfDaysToRetain").and_then(Value::as_i64).unwrap_or(30).max(1);
    let oldest = now_ms() - days * 86_400_000;
    state.event_logs.retain(|l| l["insertInstant"].as_i64().is_some_and(|t| t >= oldest));
}

async fn get_event_log(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    apply_retention(&mut emulator.state());
    let found = emulator.state().event_logs.iter().find(|l| l["id"].as_str() == Some(&id)).cloned();
    match found {
        Some(log) => Answer::Json(json!({ "webhookEventLog": log })),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

async fn get_attempt_log(State(emulator): State<Emulator>, Path(id): Path<String>) -> Answer {
    let found = emulator
        .state()
        .event_logs
        .iter()
        .flat_map(|l| l["attempts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["id"].as_str() == Some(&id));
    match found {
        Some(attempt) => Answer::Json(json!({ "webhookAttemptLog": attempt })),
        None => Answer::Empty(StatusCode::NOT_FOUND),
    }
}

fn search_event_logs(emulator: &Emulator, criteria: &Value) -> Answer {
    let now = now_ms();
    let number = |f: &str| criteria.get(f).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    let text = |f: &str| criteria.get(f).and_then(Value::as_str).map(str::to_owned);
    // Defaults since 1.57.0: the last hour, floored/rounded to minutes.
    // Explicit values are rounded the same way (see
    // uncertain::EXPLICIT_EVENT_LOG_TIMES_ROUNDED): a client must not rely
    // on a window finer than a minute.
    let start = number("start").unwrap_or(now - 3_600_000).div_euclid(60_000) * 60_000;
    let end = (number("end").unwrap_or(now).div_euclid(60_000) + 1) * 60_000;
    let order = match sort_order(text("orderBy").as_deref()) {
        Ok(order) => order,
        Err(a) => return a,
    };
    let mut state = emulator.state();
    apply_retention(&mut state);
    let mut logs: Vec<Value> = state
        .event_logs
        .iter()
        .filter(|l| l["insertInstant"].as_i64().is_some_and(|t| t >= start && t <= end))
        .filter(|l| text("eventType").is_none_or(|t| l["eventType"].as_str() == Some(&t)))
        .filter(|l| text("eventResult").is_none_or(|r| l["eventResult"].as_str() == Some(&r)))
        .filter(|l| text("event").is_none_or(|needle| wildcard_match(&needle, &l["event"].to_string())))
        .cloned()
        .collect();
    drop(state);
    let (field, descending) = order;
    logs.sort_by(|a, b| {
        let key = |l: &Value| (l[field].as_i64(), l[field].as_str().map(str::to_owned), l["sequence"].as_i64());
        let ordering = key(a).cmp(&key(b));
        if descending { ordering.reverse() } else { ordering }
    });
    let total = logs.len();
    let start_row = number("startRow").unwrap_or(0).max(0) as usize;
    let count = number("numberOfResults").unwrap_or(25).max(0) as usize;
    let page: Vec<Value> = logs.into_iter().skip(start_row).take(count).collect();
    Answer::Json(json!({ "total": total, "webhookEventLogs": page }))
}

/// `orderBy` (FACTS.md §c.7): a field and `ASC`/`DESC`; default
/// `insertInstant DESC` (1.57.0+). Ties go by `sequence` in the same
/// direction (see uncertain::EVENT_LOG_TIES_BY_SEQUENCE).
fn sort_order(order_by: Option<&str>) -> Result<(&'static str, bool), Answer> {
    let text = order_by.unwrap_or("insertInstant DESC");
    let mut words = text.split_whitespace();
    let fields = ["eventResult", "eventType", "id", "insertInstant", "lastAttemptInstant", "linkedObjectId", "sequence"];
    let field = words.next().and_then(|f| fields.iter().find(|k| k.eq_ignore_ascii_case(f)).copied());
    let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(_) => return Err(invalid_order(text)),
    };
    match (field, words.next()) {
        (Some(field), None) => Ok((field, descending)),
        _ => Err(invalid_order(text)),
    }
}

fn invalid_order(text: &str) -> Answer {
    Answer::Invalid(Errors::field("search.orderBy", "[invalid]search.orderBy", format!("The orderBy value [{text}] is not valid.")))
}

async fn search_event_logs_get(
    State(emulator): State<Emulator>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Answer {
    search_event_logs(&emulator, &serde_json::to_value(query).unwrap_or_default())
}

async fn search_event_logs_post(State(emulator): State<Emulator>, bytes: Bytes) -> Answer {
    match parse_body(&bytes) {
        Ok(body) => search_event_logs(&emulator, body.get("search").unwrap_or(&Value::Null)),
        Err(a) => a,
    }
}

// ---- the emulator's own endpoints ----

async fn raise(State(emulator): State<Emulator>, bytes: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e.to_string()}))).into_response(),
    };
    let tenant = body.get("tenantId").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    match emulator.raise(tenant, body.get("event").cloned().unwrap_or(Value::Null)).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn add_tenant(State(emulator): State<Emulator>, axum::Json(body): axum::Json<Value>) -> Response {
    let id = body.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_else(Uuid::new_v4);
    let name = body.get("name").and_then(Value::as_str).unwrap_or("Tenant");
    axum::Json(json!({ "tenant": emulator.add_tenant(id, name) })).into_response()
}

async fn add_api_key(State(emulator): State<Emulator>, axum::Json(body): axum::Json<Value>) -> Response {
    let Some(key) = body.get("key").and_then(Value::as_str) else { return StatusCode::BAD_REQUEST.into_response() };
    let tenant = body.get("tenantId").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    emulator.add_api_key(key, tenant);
    StatusCode::OK.into_response()
}

async fn add_faults(State(emulator): State<Emulator>, axum::Json(body): axum::Json<Value>) -> Response {
    let status = body.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1) as usize;
    emulator.inject_faults(status, count);
    StatusCode::OK.into_response()
}

async fn add_resolve(State(emulator): State<Emulator>, axum::Json(body): axum::Json<Value>) -> Response {
    let host = body.get("host").and_then(Value::as_str);
    let address = body.get("address").and_then(Value::as_str).and_then(|a| a.parse().ok());
    match (host, address) {
        (Some(host), Some(address)) => {
            emulator.resolve(host, address);
            StatusCode::OK.into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}
