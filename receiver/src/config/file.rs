//! The config file as written: the serde types of the contract in
//! DESIGN.md. The receiver reads them (unknown keys refused) and checks them
//! in [`super`]; the operator renders the config it mounts from the same
//! types, so the two can never disagree on a key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::action::BodyMode;
use crate::route::Unmatched;

/// The config file's JSON Schema (`fusionhook-receiver --config-schema`):
/// what an editor completes and checks, and what the book's reference page
/// of the config is generated from.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ConfigFile)).unwrap_or_default()
}

/// The receiver's config file (YAML).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Address to listen on (default `0.0.0.0:8080`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Path FusionAuth posts to (default `/events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How FusionAuth authenticates (at least one way, or `allowUnauthenticated`).
    #[serde(default)]
    pub auth: AuthFile,
    /// Routes: which events go to which action; an event runs every route that takes it.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Largest accepted body in bytes (default 1 MiB); a larger one gets 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Bytes of bodies read at once before a header credential matched (default 16 MiB, at least `maxBodyBytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthenticated_body_budget_bytes: Option<usize>,
    /// Connections served at once (default 512); past it the connection idle
    /// the longest is closed to make room, and a new one waits up to 1.5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Time allowed to receive a body, ms (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_timeout_ms: Option<u64>,
    /// Time allowed for a request head, on a new or a kept-alive connection, ms (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout_ms: Option<u64>,
    /// FusionAuth's read timeout for this webhook, ms (default 2000, FusionAuth's): sync routes must fit inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout_ms: Option<u64>,
    /// Deduplication of FusionAuth's retries by `event.id`.
    #[serde(default)]
    pub dedupe: DedupeFile,
    /// Answer for events no route takes: `accept` (200, default) or `reject` (500).
    #[serde(default)]
    pub unmatched: Unmatched,
    /// How often secret files are re-read, ms (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_refresh_ms: Option<u64>,
    /// Timing after SIGTERM.
    #[serde(default)]
    pub shutdown: ShutdownFile,
    /// Where accepted events and their pending deliveries are kept.
    #[serde(default, skip_serializing_if = "StoreFile::is_none")]
    pub store: StoreFile,
    /// The admin API (deliveries, replay, ingest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminFile>,
    /// How durable deliveries are worked off.
    #[serde(default, skip_serializing_if = "DeliveryFile::is_default")]
    pub delivery: DeliveryFile,
}

/// `store`: `{type: none}` (default), `{type: embedded, path}` or
/// `{type: postgres, urlFile}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum StoreFile {
    /// No store: every route is `ack: sync`.
    #[default]
    None,
    /// A database file in this directory (a local volume).
    Embedded {
        /// The directory of the database file (a volume of its own).
        path: PathBuf,
    },
    /// A PostgreSQL database shared by every replica.
    Postgres {
        /// File holding the connection string (`postgres://...`, a mounted Secret).
        url_file: PathBuf,
    },
}

impl StoreFile {
    /// Whether no store is configured.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// `admin`: the admin API's own listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminFile {
    /// Address to listen on (its port must differ from `listen`'s).
    pub listen: String,
    /// File holding a token that may do everything (a receiver run by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// File holding a token that may only read (stats, deliveries, events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token_file: Option<PathBuf>,
    /// File holding a token that may read, replay and discard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_token_file: Option<PathBuf>,
    /// File holding a token that may read and ingest events (it runs any
    /// event through the routes without FusionAuth's credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_token_file: Option<PathBuf>,
}

/// `delivery`: how durable deliveries are worked off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveryFile {
    /// How often the store is looked at for due deliveries when nothing new arrived, ms (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// How long delivered deliveries stay visible, seconds (default: the dedupe window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<u64>,
}

impl DeliveryFile {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `auth`: how FusionAuth authenticates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthFile {
    /// The exact `Authorization` header value FusionAuth sends (the webhook's headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// File holding the `Authorization` value (a mounted Secret), re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_file: Option<PathBuf>,
    /// A second accepted `Authorization` value, during a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_authorization: Option<String>,
    /// File holding the previous `Authorization` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_authorization_file: Option<PathBuf>,
    /// How long an `auth` secret file's replaced value is still accepted, ms
    /// (default 300000; admin tokens: always 5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_grace_ms: Option<u64>,
    /// HTTP Basic credentials FusionAuth sends (the webhook's basic authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicFile>,
    /// The check of FusionAuth's signature (`X-FusionAuth-Signature-JWT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureFile>,
    /// Accept requests without any credential (only where nothing else can reach the receiver).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unauthenticated: bool,
}

/// `auth.basic`: HTTP Basic credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicFile {
    /// The username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// The password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// File holding the password (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// `auth.signature`: the `X-FusionAuth-Signature-JWT` check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignatureFile {
    /// The algorithms of FusionAuth's signing key that are accepted (`HS256`, `RS256`, `ES256`, ...); required.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// The HMAC secret of FusionAuth's signing key (HS256/384/512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// File holding the HMAC secret (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_file: Option<PathBuf>,
    /// A second accepted HMAC secret while FusionAuth is switched to a new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hmac_secret: Option<String>,
    /// File holding the previous HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hmac_secret_file: Option<PathBuf>,
    /// FusionAuth's JWKS URL (`https://AUTH/.well-known/jwks.json`), for RSA and EC keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Accepted `kid`s (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
    /// Minimum time between JWKS fetches for unknown `kid`s, seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_min_refetch_seconds: Option<u64>,
    /// Refuse requests without a signature (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// `dedupe`: event-id deduplication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DedupeFile {
    /// How long a handled id is remembered, seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// Most ids remembered (default 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<usize>,
}

/// `shutdown`: timing after SIGTERM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownFile {
    /// Keep serving this long after SIGTERM, ms (default 0), while the endpoints are updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Then wait this long for in-flight requests, ms (default 20000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_ms: Option<u64>,
}

/// `routes[i]`: events in, one action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteFile {
    /// The route's name (in metrics, logs and the admin API).
    pub name: String,
    /// Event types it takes: names (`user.delete`), prefixes (`user.*`) or `*`.
    pub events: Vec<String>,
    /// Call a URL (one action per route: `http` or `log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpFile>,
    /// Write a log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogFile>,
    /// `sync` (before the answer) or `durable` (committed before the
    /// answer, delivered after); default durable when a store is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<crate::route::Ack>,
    /// Retries of a durable route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryFile>,
    /// `perObject`: events about one object are delivered in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<crate::route::Ordering>,
    /// Deliver no earlier than this long after the event's `createInstant`, ms (durable routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Deliveries of this route in flight at once (durable routes; default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// `routes[i].retry`: when a durable delivery is tried again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryFile {
    /// Attempts in all, the first included, counted again after a replay
    /// (default: no limit but `maxAgeSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// No attempt later than this long after the event was accepted (or last
    /// replayed), seconds (default 86400); then the delivery is dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// The first wait of the exponential schedule, ms (default 1000; each
    /// wait is drawn between half and all of its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    /// The longest wait of the exponential schedule, ms (default 3600000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    /// A fixed schedule instead: the waits after attempt 1, 2, ..., ms; the
    /// last one repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_ms: Vec<u64>,
}

/// `routes[i].http`: call a URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpFile {
    /// The method (default `POST`); placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The URL, with placeholders from the event (`{event.user.id}`).
    pub url: String,
    /// Time allowed for the call, ms (default 1500 on a sync route, within `readTimeoutMs`; 10000 on a durable one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Headers to send: a template, or `{valueFile: PATH}` for a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValueFile>,
    /// What to send as the body: `event` (what FusionAuth sent; default for POST, PUT, PATCH) or `none` (default for GET, HEAD, DELETE, OPTIONS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyMode>,
    /// Statuses besides 2xx that count as success (e.g. 404 for a DELETE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_statuses: Vec<u16>,
    /// Sign calls the Standard Webhooks way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignFile>,
}

/// `routes[i].http.sign`: Standard Webhooks signing of outbound calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignFile {
    /// File holding the secret, `whsec_` followed by base64.
    pub secret_file: PathBuf,
}

/// `routes[i].http.headers.NAME`: a template, or a secret file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderValueFile {
    /// A template.
    Text(String),
    /// `valueFile: PATH`: a secret file, re-read when it changes.
    File {
        /// File holding the header's value (a mounted Secret), re-read when it changes.
        #[serde(rename = "valueFile")]
        value_file: PathBuf,
    },
}

/// `routes[i].log`: log fields of the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogFile {
    /// Event fields to log (`event.type`, `event.user.id`, ...).
    #[serde(default)]
    pub fields: Vec<String>,
}
