//! FusionAuth API objects fusionhook reads and writes (FACTS.md §a.3, §a.5,
//! §c.6, §c.7, §d). Hand-written rather than generated: the OpenAPI spec
//! types `fieldErrors` as an array (it is a map) and `data` values as objects
//! (they are any JSON). Unknown fields are kept in `other` so a read-modify-
//! write never drops what a newer FusionAuth added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A webhook (`{"webhook": {...}}`), FACTS.md §a.3.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Id; set by the path on create/update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Where FusionAuth POSTs events (absolute http(s) URL).
    pub url: String,
    /// TCP connect timeout, ms, > 0.
    pub connect_timeout: u32,
    /// Read timeout, ms, > 0.
    pub read_timeout: u32,
    /// Events this webhook receives, by wire name.
    #[serde(default)]
    pub events_enabled: BTreeMap<String, bool>,
    /// All tenants (true) or only `tenant_ids`.
    #[serde(default)]
    pub global: bool,
    /// Tenants whose events it receives when not global.
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    /// Extra headers sent with each delivery (may hold credentials).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP Basic username (sent only when the password is set too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_authentication_username: Option<String>,
    /// HTTP Basic password; FusionAuth returns it in plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_authentication_password: Option<String>,
    /// Key Master certificate trusted for the delivery's TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_certificate_key_id: Option<Uuid>,
    /// Signing of deliveries (1.48.0+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_configuration: Option<SignatureConfiguration>,
    /// Display text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Arbitrary metadata; fusionhook marks ownership here.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// Creation time, epoch ms (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_instant: Option<i64>,
    /// Last update, epoch ms (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_instant: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl std::fmt::Debug for Webhook {
    // Header values and the Basic password are credentials: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("events_enabled", &self.events_enabled)
            .field("global", &self.global)
            .field("tenant_ids", &self.tenant_ids)
            .field("header_names", &headers)
            .field("http_authentication_username", &self.http_authentication_username)
            .field("http_authentication_password", &self.http_authentication_password.as_ref().map(|_| "[redacted]"))
            .field("signature_configuration", &self.signature_configuration)
            .field("description", &self.description)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// `webhook.signatureConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureConfiguration {
    /// Sign deliveries.
    #[serde(default)]
    pub enabled: bool,
    /// The Key Master key that signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<Uuid>,
}

/// Tenant transaction level for transactional events (FACTS.md §c.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionType {
    /// No webhook needs to succeed.
    #[default]
    None,
    /// At least one.
    Any,
    /// At least half.
    SimpleMajority,
    /// At least two thirds.
    SuperMajority,
    /// All of them.
    AbsoluteMajority,
}

/// One event's tenant switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventConfigurationData {
    /// The tenant switch.
    #[serde(default)]
    pub enabled: bool,
    /// Transaction level for this event.
    #[serde(default)]
    pub transaction_type: TransactionType,
}

/// `tenant.eventConfiguration` (FACTS.md §c.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventConfiguration {
    /// Switches by wire event name.
    #[serde(default)]
    pub events: BTreeMap<String, EventConfigurationData>,
}

/// A Key Master key (FACTS.md §d). Secrets are never part of responses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// e.g. `HS256`, `RS256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Key id in JWT headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `HMAC`, `RSA`, `EC`, `OKP`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Public key PEM (key pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Whether FusionAuth holds the private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_private_key: Option<bool>,
    /// Creation time, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_instant: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of FusionAuth's error lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// e.g. `[missing]webhook.url`.
    pub code: String,
    /// Human text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// FusionAuth's `Errors` body (FACTS.md §a.5): `fieldErrors` is a map from
/// field path to errors (the OpenAPI spec wrongly says array).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    /// Errors not tied to a field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub general_errors: Vec<ErrorEntry>,
    /// Errors by field path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_errors: BTreeMap<String, Vec<ErrorEntry>>,
}

impl Errors {
    /// One field error.
    pub fn field(path: &str, code: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add_field(path, code, message);
        errors
    }

    /// Adds a field error.
    pub fn add_field(&mut self, path: &str, code: &str, message: impl Into<String>) {
        self.field_errors.entry(path.to_owned()).or_default().push(ErrorEntry {
            code: code.to_owned(),
            message: Some(message.into()),
            data: None,
        });
    }

    /// Whether any error is present.
    pub fn is_empty(&self) -> bool {
        self.general_errors.is_empty() && self.field_errors.is_empty()
    }

    /// Every code, general ones first.
    pub fn codes(&self) -> Vec<&str> {
        self.general_errors.iter().chain(self.field_errors.values().flatten()).map(|e| e.code.as_str()).collect()
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for e in self.general_errors.iter().chain(self.field_errors.values().flatten()) {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            match &e.message {
                Some(m) => write!(f, "{} {m}", e.code)?,
                None => f.write_str(&e.code)?,
            }
        }
        Ok(())
    }
}

/// Search criteria for `POST /api/webhook/search` (FACTS.md §a.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSearchCriteria {
    /// Case-insensitive, `*` wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Case-insensitive, `*` wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Webhooks of this tenant plus all global ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    /// Page size (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_results: Option<u32>,
    /// Offset (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_row: Option<u32>,
    /// e.g. `url ASC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
}

/// A page of webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookSearchResult {
    /// Matches in all pages.
    #[serde(default)]
    pub total: u64,
    /// This page.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// Search criteria for the Webhook Event Log (FACTS.md §c.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventLogSearchCriteria {
    /// From, epoch ms (default: now − 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// To, epoch ms (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Substring of the event JSON (`*` wildcards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `Running`, `Succeeded`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_result: Option<String>,
    /// Wire event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Page size (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_results: Option<u32>,
    /// Offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_row: Option<u32>,
    /// Sort, e.g. `sequence ASC` (default `insertInstant DESC` since 1.57.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
}

/// `systemConfiguration.webhookEventLogConfiguration` (FACTS.md §c.7): whether
/// FusionAuth records events at all, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventLogConfiguration {
    /// Whether events are recorded; absent before the switch existed (always on then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteConfiguration>,
}

/// A retention setting: delete after `number_of_days_to_retain` days when enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteConfiguration {
    /// Whether old entries are deleted.
    #[serde(default)]
    pub enabled: bool,
    /// Days kept (FusionAuth's default 30, minimum 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_days_to_retain: Option<u32>,
}

/// One delivery attempt in the Webhook Event Log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttemptLog {
    /// Id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// `Success`, `Failure`, `Unknown`.
    #[serde(default)]
    pub attempt_result: Option<String>,
    /// The webhook (null for Kafka).
    #[serde(default)]
    pub webhook_id: Option<Uuid>,
    /// Start, epoch ms.
    #[serde(default)]
    pub start_instant: Option<i64>,
    /// End, epoch ms.
    #[serde(default)]
    pub end_instant: Option<i64>,
    /// What the receiver answered.
    #[serde(default)]
    pub webhook_call_response: Option<Value>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One event in the Webhook Event Log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventLog {
    /// Id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The request payload (`{"event": {...}}`).
    #[serde(default)]
    pub event: Option<Value>,
    /// `Running`, `Succeeded`, `Failed`.
    #[serde(default)]
    pub event_result: Option<String>,
    /// Wire event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Attempts.
    #[serde(default)]
    pub attempts: Vec<WebhookAttemptLog>,
    /// Count of failed attempts.
    #[serde(default)]
    pub failed_attempts: u32,
    /// Count of successful attempts.
    #[serde(default)]
    pub successful_attempts: u32,
    /// Ordering key.
    #[serde(default)]
    pub sequence: Option<i64>,
    /// Creation time, epoch ms.
    #[serde(default)]
    pub insert_instant: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A page of the Webhook Event Log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventLogSearchResult {
    /// Matches in all pages.
    #[serde(default)]
    pub total: u64,
    /// This page.
    #[serde(default)]
    pub webhook_event_logs: Vec<WebhookEventLog>,
}
