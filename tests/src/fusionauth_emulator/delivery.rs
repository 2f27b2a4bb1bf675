//! The delivery engine: raises an event in a tenant and sends it the way
//! FusionAuth does (FACTS.md §c): to every webhook whose three switches let it
//! through, with its headers, Basic auth and signature, under the tenant's
//! transaction level, retrying failures when (and only when) FusionAuth would,
//! and recording everything in the Webhook Event Log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use fusionhook_fusionauth::event_types::{self, EventScope};
use fusionhook_fusionauth::model::TransactionType;
use fusionhook_fusionauth::signature::{self, Algorithm, EncodingKey};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{DEFAULT_TENANT_ID, Emulator, now_ms, uncertain};

/// Why an event could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum RaiseError {
    /// `event` is not an object with a `type`.
    #[error("the event must be an object with a string `type`")]
    MissingType,
    /// FusionAuth never raises this type.
    #[error("FusionAuth does not raise events of type `{0}`")]
    UnknownType(String),
    /// The tenant does not exist.
    #[error("tenant {0} does not exist")]
    UnknownTenant(Uuid),
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// HTTP status, when there was an answer.
    pub status_code: Option<u16>,
    /// Connection error or timeout, when there was none.
    pub exception: Option<String>,
    /// 2xx (FACTS.md §c.3).
    pub success: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// Where it went, when the host was resolved by the emulator (a Service's pod).
    pub address: Option<String>,
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}

/// What one webhook got.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The webhook.
    pub webhook_id: Uuid,
    /// Its URL.
    pub url: String,
    /// First attempt, then retries.
    pub attempts: Vec<Attempt>,
    /// Whether an attempt succeeded.
    pub succeeded: bool,
}

/// The emulator's report of one raised event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    /// The event as sent (inside `{"event": …}`).
    pub event: Value,
    /// Its Webhook Event Log id (`None`: the Event Log is off).
    pub event_log_id: Option<Uuid>,
    /// Whether the event type is transactional.
    pub transactional: bool,
    /// The tenant's transaction level for it (transactional events only).
    pub transaction_type: Option<TransactionType>,
    /// Whether the action that raised it would have been rolled back (504 to
    /// the API caller, FACTS.md §c.4).
    pub vetoed: bool,
    /// Per webhook.
    pub webhooks: Vec<WebhookDelivery>,
}

struct Target {
    id: Uuid,
    url: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    headers: BTreeMap<String, String>,
    basic: Option<(String, String)>,
    signing: Option<(EncodingKey, Algorithm, String)>,
}

fn enabled(map: &Value, pointer: &str) -> bool {
    map.pointer(pointer).and_then(Value::as_bool) == Some(true)
}

/// Routing (FACTS.md §c.5): tenant switch, webhook event, webhook tenant;
/// instance events skip the tenant parts.
fn routes_to(webhook: &Value, kind: &str, tenant: Option<(&Uuid, &Value)>) -> bool {
    let event_key = format!("/eventsEnabled/{}", kind.replace('~', "~0").replace('/', "~1"));
    if !enabled(webhook, &event_key) {
        return false;
    }
    let Some((tenant_id, tenant)) = tenant else { return true };
    let switch = format!("/eventConfiguration/events/{kind}/enabled");
    let in_scope = webhook["global"] == true
        || webhook["tenantIds"].as_array().is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(&tenant_id.to_string())));
    enabled(tenant, &switch) && in_scope
}

pub(super) async fn raise(emulator: &Emulator, tenant: Option<Uuid>, event: Value) -> Result<DeliveryReport, RaiseError> {
    let Value::Object(mut fields) = event else { return Err(RaiseError::MissingType) };
    let kind = fields.get("type").and_then(Value::as_str).ok_or(RaiseError::MissingType)?.to_owned();
    let known = event_types::lookup(&kind).ok_or_else(|| RaiseError::UnknownType(kind.clone()))?;
    let instance = known.scope == EventScope::Instance;
    let tenant_id = if instance { None } else { Some(tenant.unwrap_or_else(|| Uuid::parse_str(DEFAULT_TENANT_ID).unwrap_or_default())) };

    // A fresh id and createInstant for every raised event (FACTS.md §e).
    let event_id = Uuid::new_v4();
    fields.insert("id".into(), json!(event_id));
    fields.insert("createInstant".into(), json!(now_ms()));
    if let Some(t) = tenant_id {
        fields.insert("tenantId".into(), json!(t));
    }
    let event = Value::Object(fields);
    // Compact JSON, keys in alphabetical order (FACTS.md §c.1).
    let envelope = json!({ "event": event });
    let body = serde_json::to_vec(&envelope).unwrap_or_default();

    let (targets, level) = {
        let state = emulator.state();
        let tenant = match tenant_id {
            Some(id) => Some((id, state.tenants.get(&id).cloned().ok_or(RaiseError::UnknownTenant(id))?)),
            None => None,
        };
        let level: TransactionType = tenant
            .as_ref()
            .and_then(|(_, t)| t.pointer(&format!("/eventConfiguration/events/{kind}/transactionType")).cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let targets: Vec<Target> = state
            .webhooks
            .values()
            .filter(|w| routes_to(w, &kind, tenant.as_ref().map(|(id, t)| (id, t))))
            .map(|w| target(w, &state.keys))
            .collect();
        (targets, level)
    };
    let resolve = emulator;
    let event_log_id = open(emulator, &envelope, &kind);

    let mut deliveries: Vec<WebhookDelivery> =
        futures::future::join_all(targets.iter().map(|t| async { first_delivery(t, &body, resolve).await })).await;
    let transactional = known.transactional;
    let succeeded = deliveries.iter().filter(|d| d.succeeded).count();
    let committed = !transactional || uncertain::requirement_met(level, succeeded, deliveries.len());
    let retries = uncertain::retries_for(transactional, level, committed);
    if retries > 0 {
        let delay = emulator.settings.retry_delay;
        futures::future::join_all(targets.iter().zip(deliveries.iter_mut()).filter(|(_, d)| !d.succeeded).map(|(t, d)| async {
            for _ in 0..retries {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let attempt = attempt(t, &body, resolve).await;
                d.succeeded = attempt.success;
                d.attempts.push(attempt);
                if d.succeeded {
                    break;
                }
            }
        }))
        .await;
    }

    if let Some(id) = event_log_id {
        close(emulator, id, transactional, committed, &deliveries);
    }
    Ok(DeliveryReport {
        event,
        event_log_id,
        transactional,
        transaction_type: transactional.then_some(level),
        vetoed: !committed,
        webhooks: deliveries,
    })
}

fn target(webhook: &Value, keys: &BTreeMap<Uuid, super::keys::KeyRecord>) -> Target {
    let text = |f: &str| webhook.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let ms = |f: &str| Duration::from_millis(webhook.get(f).and_then(Value::as_u64).unwrap_or(1000));
    let headers = webhook["headers"]
        .as_object()
        .map(|h| h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let signing = if webhook.pointer("/signatureConfiguration/enabled") == Some(&Value::Bool(true)) {
        webhook
            .pointer("/signatureConfiguration/signingKeyId")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| keys.get(&id))
            .and_then(|k| Some((k.encoding_key()?, k.algorithm, k.kid.clone())))
    } else {
        None
    };
    Target {
        id: webhook["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_default(),
        url: text("url").unwrap_or_default(),
        connect_timeout: ms("connectTimeout"),
        read_timeout: ms("readTimeout"),
        headers,
        // Basic only when both are set (FACTS.md §c.1).
        basic: text("httpAuthenticationUsername").zip(text("httpAuthenticationPassword")),
        signing,
    }
}

async fn first_delivery(target: &Target, body: &[u8], resolve: &Emulator) -> WebhookDelivery {
    let first = attempt(target, body, resolve).await;
    WebhookDelivery { webhook_id: target.id, url: target.url.clone(), succeeded: first.success, attempts: vec![first] }
}

/// One POST, as FusionAuth's HTTP client (restify) sends it (FACTS.md §c.1, §c.2).
/// The address an attempt to `host` connects to, in turn, if overridden.
/// Where a delivery to `host` goes: `None` for a host the emulator does not
/// resolve (the system's resolver then), `Some(None)` for a Service with no
/// ready endpoint (refused at once, as in a cluster), else the next of its
/// addresses in turn.
fn pick(emulator: &Emulator, host: &str) -> Option<Option<SocketAddr>> {
    let mut state = emulator.state();
    let addresses = state.resolve.get(host)?.clone();
    if addresses.is_empty() {
        return Some(None);
    }
    let turn = state.turns.entry(host.to_owned()).or_default();
    *turn = turn.wrapping_add(1);
    Some(Some(addresses[(*turn - 1) % addresses.len()]))
}

/// Whether this answer is to be lost (one fewer to lose).
fn lose(emulator: &Emulator) -> bool {
    let mut state = emulator.state();
    let lose = state.lost_answers > 0;
    state.lost_answers = state.lost_answers.saturating_sub(1);
    lose
}

async fn attempt(target: &Target, body: &[u8], resolve: &Emulator) -> Attempt {
    let started = Instant::now();
    let picked = pick(resolve, &host_of(&target.url));
    let address = picked.flatten();
    let done = |status_code: Option<u16>, exception: Option<String>| Attempt {
        address: address.map(|a| a.to_string()),
        success: status_code.is_some_and(|s| (200..300).contains(&s)),
        status_code,
        exception,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if picked == Some(None) {
        return done(None, Some(format!("Connection refused: {} has no ready endpoint", host_of(&target.url))));
    }
    let Ok(mut url) = reqwest::Url::parse(&target.url) else { return done(None, Some("invalid URL".into())) };
    let original_host = url.host_str().map(str::to_owned).unwrap_or_default();
    let host_header = url.port().map_or(original_host.clone(), |p| format!("{original_host}:{p}"));
    // The emulator's stand-in for cluster DNS: deliver to another address,
    // keeping the Host header of the registered URL.
    if let Some(address) = address {
        let _ = url.set_ip_host(address.ip());
        let _ = url.set_port(Some(address.port()));
    }
    let client = match reqwest::Client::builder()
        .connect_timeout(target.connect_timeout)
        .read_timeout(target.read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return done(None, Some(e.to_string())),
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("user-agent".into(), "Restify (https://github.com/inversoft/restify)".into());
    headers.insert("host".into(), host_header);
    if let Some((user, pass)) = &target.basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        headers.insert("authorization".into(), format!("Basic {encoded}"));
    }
    if let Some((key, alg, kid)) = &target.signing {
        match signature::sign(body, *alg, Some(kid), key) {
            Ok(token) => {
                headers.insert("x-fusionauth-signature-jwt".into(), token);
            }
            Err(e) => return done(None, Some(format!("signing failed: {e}"))),
        }
    }
    // Custom headers are applied last and replace built-in ones of the same
    // name (FACTS.md §c.1, see uncertain::CUSTOM_HEADERS_OVERRIDE_BASIC).
    for (name, value) in &target.headers {
        if name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        headers.insert(name.to_ascii_lowercase(), value.clone());
    }
    let mut request = client.post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // The body is ignored (FACTS.md §c.3), but read so the read timeout applies.
            match response.bytes().await {
                Ok(_) if address.is_some() && lose(resolve) => done(None, Some("Read timed out (the answer was lost)".into())),
                Ok(_) => done(Some(status), None),
                Err(e) => done(None, Some(e.without_url().to_string())),
            }
        }
        Err(e) => done(None, Some(e.without_url().to_string())),
    }
}

/// `webhookCallResponse`, nulls omitted as FusionAuth's JSON mapper does
/// (FACTS.md §c.1, inferred).
fn call_response(attempt: &Attempt, url: &str) -> Value {
    let mut response = json!({ "url": url });
    if let Some(status) = attempt.status_code {
        response["statusCode"] = json!(status);
    }
    if let Some(exception) = &attempt.exception {
        response["exception"] = json!(exception);
    }
    response
}

/// Writes the Webhook Event Log entry as the event is created: `Running`,
/// no attempts (FACTS.md §c.7; see uncertain::EVENT_LOG_WRITTEN_BEFORE_DELIVERY).
/// Nothing when the Event Log is off.
fn open(emulator: &Emulator, envelope: &Value, kind: &str) -> Option<Uuid> {
    let mut state = emulator.state();
    if state.event_log_configuration["enabled"] == false {
        return None;
    }
    let id = Uuid::new_v4();
    let now = now_ms();
    let sequence = state.sequence;
    state.sequence += 1;
    let mut log = Map::new();
    log.insert("attempts".into(), json!([]));
    log.insert("data".into(), json!({}));
    log.insert("event".into(), envelope.clone());
    log.insert("eventResult".into(), json!("Running"));
    log.insert("eventType".into(), json!(kind));
    log.insert("failedAttempts".into(), json!(0));
    log.insert("id".into(), json!(id));
    log.insert("insertInstant".into(), json!(now));
    log.insert("lastUpdateInstant".into(), json!(now));
    if let Some(linked) = envelope.pointer("/event/linkedObjectId").or_else(|| envelope.pointer("/event/user/id")) {
        log.insert("linkedObjectId".into(), linked.clone());
    }
    log.insert("sequence".into(), json!(sequence));
    log.insert("successfulAttempts".into(), json!(0));
    state.event_logs.push(Value::Object(log));
    Some(id)
}

/// Records the attempts and the result: `Succeeded` once a transaction
/// commits, and for a non-transactional event once sent whatever the
/// answers; `Failed` when it was rolled back (FACTS.md §c.7).
fn close(emulator: &Emulator, id: Uuid, transactional: bool, committed: bool, deliveries: &[WebhookDelivery]) {
    let now = now_ms();
    let mut attempts = Vec::new();
    for delivery in deliveries {
        for attempt in &delivery.attempts {
            attempts.push(json!({
                "attemptResult": if attempt.success { "Success" } else { "Failure" },
                "data": {},
                "endInstant": now,
                "id": Uuid::new_v4(),
                "startInstant": now - attempt.duration_ms as i64,
                "webhookCallResponse": call_response(attempt, &delivery.url),
                "webhookEventLogId": id,
                "webhookId": delivery.webhook_id,
            }));
        }
    }
    let successes = attempts.iter().filter(|a| a["attemptResult"] == "Success").count();
    let result = if !transactional || committed { "Succeeded" } else { "Failed" };
    let mut state = emulator.state();
    // Gone meanwhile (retention): nothing to update.
    let Some(log) = state.event_logs.iter_mut().rev().find(|l| l["id"] == json!(id)) else { return };
    log["failedAttempts"] = json!(attempts.len() - successes);
    log["successfulAttempts"] = json!(successes);
    if !attempts.is_empty() {
        log["lastAttemptInstant"] = json!(now);
    }
    log["attempts"] = Value::Array(attempts);
    log["eventResult"] = json!(result);
    log["lastUpdateInstant"] = json!(now);
}
