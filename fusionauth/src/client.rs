//! A typed client for the FusionAuth APIs fusionhook uses: Webhook, Tenant
//! (event configuration only), Key, JWKS, Webhook Event Log.
//!
//! - Errors are typed ([`ClientError`]) and say what to do about them; the
//!   API key never appears in one (nor in `Debug` output).
//! - Connection errors, timeouts, 5xx and 429 are retried with exponential
//!   backoff and full jitter; other 4xx never are.
//! - Tenant changes use `application/merge-patch+json` with only the entries
//!   we own: never the legacy `application/json` PATCH (it appends to arrays)
//!   and never a whole-tenant PUT (FACTS.md §a.6).
//! - No `X-FusionAuth-TenantId` header, ever: the Webhook, Key and Webhook
//!   Event Log APIs reject tenant-scoped requests with 401 (FACTS.md §a.2).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::{
    Errors, EventConfiguration, EventConfigurationData, Key, Webhook, WebhookEventLogConfiguration, WebhookEventLogSearchCriteria,
    WebhookEventLogSearchResult, WebhookSearchCriteria, WebhookSearchResult,
};

/// What every outbound call's headers get besides its own (set once by the
/// process: the operator sets the W3C `traceparent` of the current span).
static OUTBOUND: std::sync::OnceLock<fn(&mut reqwest::header::HeaderMap)> = std::sync::OnceLock::new();

/// Sets the hook every outbound call's headers go through (the first call wins).
pub fn decorate_outbound(hook: fn(&mut reqwest::header::HeaderMap)) {
    let _ = OUTBOUND.set(hook);
}

/// An API key. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Backoff before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// No retries (tests, or callers with their own loop).
    pub fn none() -> Self {
        Self { attempts: 1, ..Self::default() }
    }

    /// Full jitter: uniform in `[0, min(max, base * 2^retry)]`.
    fn delay(&self, retry: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(2u32.saturating_pow(retry)).min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 { 0 } else { rand::rng().random_range(0..=nanos) })
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// FusionAuth's base URL, e.g. `https://auth.example.com`.
    pub base_url: Url,
    /// A global API key (not tenant-scoped).
    pub api_key: ApiKey,
    /// Extra CA certificates (PEM) to trust, for a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Whole-call timeout per attempt.
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Told about every attempt (metrics); none by default.
    pub observer: Option<CallObserver>,
}

/// Called once per attempt with the operation (`"retrieve webhook"`) and its
/// outcome: the HTTP status (`"200"`, `"404"`) or `"timeout"`, `"connect"`,
/// `"tls"`. For metrics; never sees a body or the key.
#[derive(Clone)]
pub struct CallObserver(pub std::sync::Arc<ObserveCall>);

/// The function behind a [`CallObserver`]: operation, outcome.
pub type ObserveCall = dyn Fn(&'static str, &str) + Send + Sync;

impl std::fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

impl ClientConfig {
    /// Defaults: 3 s connect, 10 s per call, 4 attempts.
    pub fn new(base_url: Url, api_key: ApiKey) -> Self {
        Self {
            base_url,
            api_key,
            ca_pem: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            observer: None,
        }
    }
}

/// Why a call failed. Messages name the operation and never the API key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 401: the key is wrong, lacks permission, or is tenant-scoped.
    #[error(
        "{operation}: FusionAuth rejected the API key (401); the Webhook, Key and Webhook Event Log APIs need a global API key (not tenant-scoped) with permission for this endpoint, sent without X-FusionAuth-TenantId; a key created in the last minute may not be active yet"
    )]
    Unauthorized {
        /// What was attempted.
        operation: &'static str,
    },
    /// 404 where the caller needed the object.
    #[error("{operation}: not found in FusionAuth (404)")]
    NotFound {
        /// What was attempted.
        operation: &'static str,
    },
    /// 400 with FusionAuth's `Errors` body.
    #[error("{operation}: FusionAuth refused the request (400): {errors}")]
    Invalid {
        /// What was attempted.
        operation: &'static str,
        /// FusionAuth's explanation.
        errors: Errors,
    },
    /// 5xx or 429, after retries.
    #[error("{operation}: FusionAuth answered {status}")]
    Server {
        /// What was attempted.
        operation: &'static str,
        /// The status.
        status: u16,
    },
    /// Another status nobody expects here.
    #[error("{operation}: FusionAuth answered an unexpected {status}")]
    Unexpected {
        /// What was attempted.
        operation: &'static str,
        /// The status.
        status: u16,
    },
    /// No answer in time, after retries.
    #[error("{operation}: FusionAuth did not answer in time")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
    },
    /// Could not connect, after retries.
    #[error("{operation}: cannot reach FusionAuth: {reason}")]
    Connect {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// TLS failed (certificate not trusted, wrong protocol).
    #[error("{operation}: TLS with FusionAuth failed: {reason}")]
    Tls {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// The answer is not what the API documents.
    #[error("{operation}: FusionAuth's answer could not be read: {reason}")]
    Decode {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// The answer is larger than [`MAX_ANSWER_BYTES`] (a search page of
    /// large entries): ask for less.
    #[error("{operation}: FusionAuth's answer is larger than the client's limit of {} MiB", MAX_ANSWER_BYTES / (1024 * 1024))]
    TooLarge {
        /// What was attempted.
        operation: &'static str,
    },
    /// The client could not be built (bad CA bundle, bad base URL).
    #[error("FusionAuth client configuration: {0}")]
    Config(String),
}

/// FusionAuth behind a path prefix (`https://h/fusionauth`) keeps it: API
/// paths are joined relative to the base, and `Url::join` replaces the last
/// segment of a base without a trailing slash.
fn with_trailing_slash(mut base: Url) -> Url {
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base
}

/// The largest answer read from FusionAuth. The biggest is the list of all
/// webhooks (about 1 KiB each), so this leaves room for tens of thousands.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// What one HTTP exchange produced, before interpretation.
enum Answer {
    Status(StatusCode, bytes::Bytes),
    Failed(ClientError),
}

/// The client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct FusionAuthClient {
    http: reqwest::Client,
    base: Url,
    api_key: HeaderValue,
    retry: RetryPolicy,
    observer: Option<CallObserver>,
}

impl std::fmt::Debug for FusionAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusionAuthClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

fn is_tls(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") || text.contains("invalidcontenttype") {
            return true;
        }
        source = e.source();
    }
    false
}

impl FusionAuthClient {
    /// Builds a client.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fusionhook/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("the CA bundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("the CA bundle holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Config(e.to_string()))?;
        let mut api_key =
            HeaderValue::from_str(&config.api_key.0).map_err(|_| ClientError::Config("the API key is not a valid header value".into()))?;
        api_key.set_sensitive(true);
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!("base URL {} is not http(s)", config.base_url)));
        }
        Ok(Self { http, base: with_trailing_slash(config.base_url), api_key, retry: config.retry, observer: config.observer })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Config(format!("cannot build URL for {path}: {e}")))
    }

    async fn exchange(
        &self,
        operation: &'static str,
        method: &Method,
        url: &Url,
        body: Option<(&'static str, &Value)>,
        auth: bool,
    ) -> Answer {
        // A span per attempt (target `otel`: see the receiver's `telemetry`),
        // named by the operation, never the URL's query or the key.
        let span = tracing::info_span!(
            target: "otel", "fusionauth.request", otel.kind = "client", operation, http.request.method = %method,
            http.response.status_code = tracing::field::Empty, otel.status_code = tracing::field::Empty,
        );
        let answer = tracing::Instrument::instrument(self.attempt(method, url, body, auth, operation), span.clone()).await;
        if !span.is_none() {
            match &answer {
                Answer::Status(status, _) => {
                    span.record("http.response.status_code", status.as_u16());
                    if !status.is_success() && *status != StatusCode::NOT_FOUND {
                        span.record("otel.status_code", "error");
                    }
                }
                Answer::Failed(_) => {
                    span.record("otel.status_code", "error");
                }
            }
        }
        answer
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<(&'static str, &Value)>,
        auth: bool,
        operation: &'static str,
    ) -> Answer {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(decorate) = OUTBOUND.get() {
            let mut headers = reqwest::header::HeaderMap::new();
            decorate(&mut headers);
            request = request.headers(headers);
        }
        if auth {
            request = request.header(AUTHORIZATION, self.api_key.clone());
        }
        if let Some((content_type, body)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                match crate::limited::read_body(response, MAX_ANSWER_BYTES).await {
                    Ok(body) if body.truncated => Answer::Failed(ClientError::TooLarge { operation }),
                    Ok(body) => Answer::Status(status, body.bytes),
                    Err(e) if e.is_timeout() => Answer::Failed(ClientError::Timeout { operation }),
                    Err(e) => Answer::Failed(ClientError::Connect { operation, reason: e.without_url().to_string() }),
                }
            }
            Err(e) if e.is_timeout() => Answer::Failed(ClientError::Timeout { operation }),
            Err(e) if is_tls(&e) => Answer::Failed(ClientError::Tls { operation, reason: e.without_url().to_string() }),
            Err(e) => Answer::Failed(ClientError::Connect { operation, reason: e.without_url().to_string() }),
        }
    }

    /// One call with retries. Returns the final status and body for the
    /// caller to interpret (404 means different things to different calls).
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<(&'static str, &Value)>,
        auth: bool,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let url = self.url(path)?;
        let mut retry = 0;
        loop {
            let answer = self.exchange(operation, &method, &url, body, auth).await;
            if let Some(observer) = &self.observer {
                let status;
                let outcome = match &answer {
                    Answer::Status(code, _) => {
                        status = code.as_u16().to_string();
                        status.as_str()
                    }
                    Answer::Failed(ClientError::Timeout { .. }) => "timeout",
                    Answer::Failed(ClientError::Tls { .. }) => "tls",
                    Answer::Failed(_) => "connect",
                };
                (observer.0)(operation, outcome);
            }
            let retryable = match &answer {
                Answer::Status(status, _) => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
                Answer::Failed(e) => matches!(e, ClientError::Timeout { .. } | ClientError::Connect { .. }),
            };
            if retryable && retry + 1 < self.retry.attempts {
                tracing::debug!(operation, retry, "FusionAuth call failed; retrying");
                tokio::time::sleep(self.retry.delay(retry)).await;
                retry += 1;
                continue;
            }
            return match answer {
                Answer::Status(status, bytes) => Ok((status, bytes)),
                Answer::Failed(e) => Err(e),
            };
        }
    }

    /// Interprets a final answer: 2xx decoded as `T`, everything else an error.
    fn decode<T: DeserializeOwned>(operation: &'static str, status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
        match status.as_u16() {
            200..=299 => serde_json::from_slice(bytes).map_err(|e| ClientError::Decode { operation, reason: e.to_string() }),
            _ => Err(Self::failure(operation, status, bytes)),
        }
    }

    fn failure(operation: &'static str, status: StatusCode, bytes: &[u8]) -> ClientError {
        match status.as_u16() {
            400 => ClientError::Invalid { operation, errors: serde_json::from_slice(bytes).unwrap_or_default() },
            401 => ClientError::Unauthorized { operation },
            404 => ClientError::NotFound { operation },
            429 | 500..=599 => ClientError::Server { operation, status: status.as_u16() },
            other => ClientError::Unexpected { operation, status: other },
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<(&'static str, &Value)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.call(operation, method, path, body, true).await?;
        Self::decode(operation, status, &bytes)
    }

    /// `GET`, with 404 as `None`.
    async fn get_optional<T: DeserializeOwned>(&self, operation: &'static str, path: &str) -> Result<Option<T>, ClientError> {
        let (status, bytes) = self.call(operation, Method::GET, path, None, true).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::decode(operation, status, &bytes).map(Some)
    }

    // ---- Webhook API (FACTS.md §a.1) ----

    /// `POST /api/webhook/{id}`: creates with a chosen id.
    pub async fn create_webhook(&self, id: Uuid, webhook: &Webhook) -> Result<Webhook, ClientError> {
        let body = json!({ "webhook": webhook });
        let r: WebhookEnvelope =
            self.json("create webhook", Method::POST, &format!("api/webhook/{id}"), Some(("application/json", &body))).await?;
        Ok(r.webhook)
    }

    /// `GET /api/webhook/{id}`; `None` when it does not exist.
    pub async fn retrieve_webhook(&self, id: Uuid) -> Result<Option<Webhook>, ClientError> {
        Ok(self.get_optional::<WebhookEnvelope>("retrieve webhook", &format!("api/webhook/{id}")).await?.map(|r| r.webhook))
    }

    /// `GET /api/webhook`: every webhook.
    pub async fn retrieve_webhooks(&self) -> Result<Vec<Webhook>, ClientError> {
        let r: WebhooksEnvelope = self.json("retrieve webhooks", Method::GET, "api/webhook", None).await?;
        Ok(r.webhooks)
    }

    /// `POST /api/webhook/search`.
    pub async fn search_webhooks(&self, criteria: &WebhookSearchCriteria) -> Result<WebhookSearchResult, ClientError> {
        let body = json!({ "search": criteria });
        self.json("search webhooks", Method::POST, "api/webhook/search", Some(("application/json", &body))).await
    }

    /// `PUT /api/webhook/{id}`: replaces the whole webhook.
    pub async fn update_webhook(&self, id: Uuid, webhook: &Webhook) -> Result<Webhook, ClientError> {
        let body = json!({ "webhook": webhook });
        let r: WebhookEnvelope =
            self.json("update webhook", Method::PUT, &format!("api/webhook/{id}"), Some(("application/json", &body))).await?;
        Ok(r.webhook)
    }

    /// `DELETE /api/webhook/{id}`. `Ok(false)` when it was already gone:
    /// for a caller who wants it gone, 404 is success.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<bool, ClientError> {
        self.delete("delete webhook", &format!("api/webhook/{id}")).await
    }

    /// `DELETE`, where 404 means "already gone": `Ok(false)`.
    async fn delete(&self, operation: &'static str, path: &str) -> Result<bool, ClientError> {
        let (status, bytes) = self.call(operation, Method::DELETE, path, None, true).await?;
        match status.as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::failure(operation, status, &bytes)),
        }
    }

    // ---- Tenant API, event configuration only (FACTS.md §c.6) ----

    /// A tenant's `eventConfiguration`; `None` when the tenant does not exist.
    pub async fn retrieve_tenant_event_configuration(&self, tenant_id: Uuid) -> Result<Option<EventConfiguration>, ClientError> {
        let tenant: Option<TenantEnvelope> = self.get_optional("retrieve tenant", &format!("api/tenant/{tenant_id}")).await?;
        Ok(tenant.map(|t| t.tenant.event_configuration))
    }

    /// Sets the listed events' switches, leaving every other entry (and the
    /// rest of the tenant) as it is: one merge-patch with just these keys.
    pub async fn patch_tenant_events(
        &self,
        tenant_id: Uuid,
        events: &BTreeMap<String, EventConfigurationData>,
    ) -> Result<EventConfiguration, ClientError> {
        let body = json!({ "tenant": { "eventConfiguration": { "events": events } } });
        let r: TenantEnvelope = self
            .json("patch tenant events", Method::PATCH, &format!("api/tenant/{tenant_id}"), Some(("application/merge-patch+json", &body)))
            .await?;
        Ok(r.tenant.event_configuration)
    }

    // ---- Key API (FACTS.md §d) ----

    /// `GET /api/key/{id}`; `None` when it does not exist.
    pub async fn retrieve_key(&self, id: Uuid) -> Result<Option<Key>, ClientError> {
        Ok(self.get_optional::<KeyEnvelope>("retrieve key", &format!("api/key/{id}")).await?.map(|r| r.key))
    }

    /// `POST /api/key/import/{id}` of an HMAC secret, so FusionAuth signs with
    /// a secret the receiver also knows (HMAC keys are never published).
    pub async fn import_hmac_key(&self, id: Uuid, name: &str, algorithm: &str, secret: &str) -> Result<Key, ClientError> {
        let body = json!({ "key": { "algorithm": algorithm, "name": name, "secret": secret, "type": "HMAC" } });
        let r: KeyEnvelope =
            self.json("import key", Method::POST, &format!("api/key/import/{id}"), Some(("application/json", &body))).await?;
        Ok(r.key)
    }

    /// `DELETE /api/key/{id}`; `Ok(false)` when it was already gone.
    pub async fn delete_key(&self, id: Uuid) -> Result<bool, ClientError> {
        self.delete("delete key", &format!("api/key/{id}")).await
    }

    /// `GET /.well-known/jwks.json` (no API key needed), as raw JSON for
    /// [`crate::jwks::parse_jwks`].
    pub async fn fetch_jwks(&self) -> Result<Value, ClientError> {
        let operation = "fetch JWKS";
        let (status, bytes) = self.call(operation, Method::GET, ".well-known/jwks.json", None, false).await?;
        Self::decode(operation, status, &bytes)
    }

    // ---- Webhook Event Log (FACTS.md §c.7) ----

    /// `POST /api/system/webhook-event-log/search`.
    pub async fn search_webhook_event_logs(
        &self,
        criteria: &WebhookEventLogSearchCriteria,
    ) -> Result<WebhookEventLogSearchResult, ClientError> {
        let body = json!({ "search": criteria });
        self.json("search webhook event log", Method::POST, "api/system/webhook-event-log/search", Some(("application/json", &body))).await
    }

    /// `GET /api/tenant`: every tenant's id, name and event switches.
    pub async fn retrieve_tenants(&self) -> Result<Vec<(Uuid, String, EventConfiguration)>, ClientError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Tenant {
            id: Uuid,
            #[serde(default)]
            name: String,
            #[serde(default)]
            event_configuration: EventConfiguration,
        }
        #[derive(serde::Deserialize)]
        struct Tenants {
            #[serde(default)]
            tenants: Vec<Tenant>,
        }
        let r: Tenants = self.json("retrieve tenants", Method::GET, "api/tenant", None).await?;
        Ok(r.tenants.into_iter().map(|t| (t.id, t.name, t.event_configuration)).collect())
    }

    /// `GET /api/system-configuration`, only its `webhookEventLogConfiguration`
    /// (the rest is not read, and never logged).
    pub async fn retrieve_webhook_event_log_configuration(&self) -> Result<WebhookEventLogConfiguration, ClientError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Configuration {
            #[serde(default)]
            webhook_event_log_configuration: WebhookEventLogConfiguration,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope {
            system_configuration: Configuration,
        }
        let r: Envelope = self.json("retrieve system configuration", Method::GET, "api/system-configuration", None).await?;
        Ok(r.system_configuration.webhook_event_log_configuration)
    }
}

#[derive(serde::Deserialize, Serialize)]
struct WebhookEnvelope {
    webhook: Webhook,
}

#[derive(serde::Deserialize)]
struct WebhooksEnvelope {
    #[serde(default)]
    webhooks: Vec<Webhook>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantBody {
    #[serde(default)]
    event_configuration: EventConfiguration,
}

#[derive(serde::Deserialize)]
struct TenantEnvelope {
    tenant: TenantBody,
}

#[derive(serde::Deserialize)]
struct KeyEnvelope {
    key: Key,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let policy = RetryPolicy { attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for retry in 0..10 {
            let cap = Duration::from_millis(100 * 2u64.pow(retry)).min(Duration::from_secs(1));
            assert!(policy.delay(retry) <= cap);
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| policy.delay(3)).collect();
        assert!(samples.len() > 1, "jittered");
    }

    #[test]
    fn the_api_key_never_shows() {
        let config = ClientConfig::new(Url::parse("http://fa.example").unwrap(), ApiKey::new("super-secret-key"));
        let client = FusionAuthClient::new(config.clone()).unwrap();
        assert!(!format!("{config:?} {client:?}").contains("super-secret-key"));
        let error = ClientError::Unauthorized { operation: "create webhook" };
        assert!(error.to_string().contains("global API key"));
    }

    #[test]
    fn bad_ca_bundles_are_refused() {
        let mut config = ClientConfig::new(Url::parse("http://fa.example").unwrap(), ApiKey::new("k"));
        config.ca_pem = Some(b"not a certificate".to_vec());
        assert!(matches!(FusionAuthClient::new(config), Err(ClientError::Config(_))));
    }

    #[test]
    fn a_base_url_with_a_path_prefix_keeps_it() {
        for base in ["https://h.example/fusionauth", "https://h.example/fusionauth/"] {
            let client = FusionAuthClient::new(ClientConfig::new(Url::parse(base).unwrap(), ApiKey::new("k"))).unwrap();
            assert_eq!(client.url("api/webhook").unwrap().as_str(), "https://h.example/fusionauth/api/webhook", "{base}");
        }
        let root = FusionAuthClient::new(ClientConfig::new(Url::parse("https://h.example").unwrap(), ApiKey::new("k"))).unwrap();
        assert_eq!(root.url("api/webhook").unwrap().as_str(), "https://h.example/api/webhook");
    }
}
