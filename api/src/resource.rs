//! The `FusionAuthWebhook` resource (group `fusionhook.dev`, version
//! `v1alpha1`, short name `faw`). Doc comments become the CRD's field
//! descriptions, so `kubectl explain faw.spec` is the reference; schema
//! patterns and CEL rules catch mistakes at `kubectl apply` time instead of
//! at reconcile time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Pattern of an event filter: a wire name (`user.delete`), a prefix (`user.*`) or `*`.
pub const EVENT_FILTER_PATTERN: &str = r"^(\*|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*(\.\*)?)$";
/// Pattern of a wire event name (`user.delete`).
pub const EVENT_NAME_PATTERN: &str = r"^[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$";

/// A FusionAuth webhook run the Kubernetes way: the operator deploys a
/// receiver for it, registers the receiver's URL with FusionAuth, keeps that
/// registration true and removes it when the resource is deleted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fusionhook.dev",
    version = "v1alpha1",
    kind = "FusionAuthWebhook",
    plural = "fusionauthwebhooks",
    shortname = "faw",
    namespaced,
    status = "FusionAuthWebhookStatus",
    doc = "A FusionAuth webhook run the Kubernetes way: a receiver deployed for it, its URL registered with FusionAuth and kept so, removed on delete.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Webhook ID","type":"string","jsonPath":".status.webhookId"}"#,
    printcolumn = r#"{"name":"Events","type":"string","jsonPath":".spec.events","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // An embedded store grows, never shrinks below what its volumes have
    // (status.storeSize, which the operator keeps): going back to that size
    // after a growth that could not happen is fine. A transition rule on a
    // changed size only, so the operator's status writes always pass.
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.storeSize) || !isQuantity(oldSelf.status.storeSize) || !has(self.spec.receiver) || !has(self.spec.receiver.store) || self.spec.receiver.store.type != 'embedded' || (has(self.spec.receiver) && has(self.spec.receiver.store) && has(self.spec.receiver.store.size) ? string(self.spec.receiver.store.size) : '1Gi') == (has(oldSelf.spec.receiver) && has(oldSelf.spec.receiver.store) && has(oldSelf.spec.receiver.store.size) ? string(oldSelf.spec.receiver.store.size) : '1Gi') || !isQuantity((has(self.spec.receiver) && has(self.spec.receiver.store) && has(self.spec.receiver.store.size) ? string(self.spec.receiver.store.size) : '1Gi')) || quantity((has(self.spec.receiver) && has(self.spec.receiver.store) && has(self.spec.receiver.store.size) ? string(self.spec.receiver.store.size) : '1Gi')).compareTo(quantity(oldSelf.status.storeSize)) >= 0").message("spec.receiver.store.size: an embedded store can grow, not shrink below the size its volumes have (status.storeSize)")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tenants) && has(self.tenants.global) && self.tenants.global && has(self.tenants.tenantIds) && size(self.tenants.tenantIds) > 0)").message("tenants: set global: true or list tenantIds, not both"))]
#[x_kube(validation = Rule::new("!has(self.tenantEvents) || (has(self.tenants) && has(self.tenants.tenantIds) && size(self.tenants.tenantIds) > 0)").message("tenantEvents needs tenants.tenantIds: the operator only changes the switches of tenants you list"))]
#[x_kube(validation = Rule::new("!has(self.routes) || self.routes.all(r, !has(r.ack) || r.ack != 'durable' || (has(self.receiver) && has(self.receiver.store) && self.receiver.store.type != 'none'))").message("a route with ack: durable needs receiver.store (embedded or postgres)"))]
#[x_kube(validation = Rule::new("!has(self.routes) || self.routes.all(r, !(has(r.retry) || has(r.ordering) || has(r.delayMs) || has(r.concurrency)) || (has(self.receiver) && has(self.receiver.store) && self.receiver.store.type != 'none' && (!has(r.ack) || r.ack == 'durable')))").message("retry, ordering, delayMs and concurrency are for durable routes: set receiver.store and leave ack at durable"))]
pub struct FusionAuthWebhookSpec {
    /// How to reach FusionAuth's API.
    pub fusion_auth: FusionAuthConnection,
    /// The FusionAuth event types this webhook receives, as wire names (e.g.
    /// `user.delete`). They are enabled on the FusionAuth webhook.
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$")))]
    pub events: Vec<String>,
    /// Which tenants' events the webhook receives. Default: all tenants (`global: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<TenantSelection>,
    /// Optionally turn each event on in the listed tenants' event configuration
    /// (the tenant switch) with a transaction level. The operator changes only
    /// the entries it turned on, and turns them off again on delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_events: Option<TenantEvents>,
    /// FusionAuth's connect and read timeouts for deliveries to the receiver.
    #[serde(default)]
    pub delivery: Delivery,
    /// How the receiver authenticates FusionAuth.
    #[serde(default)]
    pub auth: ReceiverAuth,
    /// The receiver workload.
    #[serde(default)]
    pub receiver: ReceiverWorkload,
    /// What to do with events: filters to actions. Without routes every
    /// event is accepted and nothing else happens.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub routes: Vec<Route>,
    /// On delete: remove the FusionAuth webhook (`Delete`, default) or leave it (`Orphan`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Recover events FusionAuth failed to deliver to this receiver (all
    /// replicas down, a bad rollout) from FusionAuth's Webhook Event Log
    /// (1.53.0+, the log switched on): each committed event with only
    /// failed attempts to this webhook is handed to the receiver once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillSpec>,
}

/// Backfill from FusionAuth's Webhook Event Log (the leader operator replica does it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillSpec {
    /// Turn backfill on.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between passes (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86400))]
    pub interval_seconds: Option<u32>,
    /// How far back the first pass looks (default 3600); later passes go on
    /// from where the last one stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2592000))]
    pub lookback_seconds: Option<u32>,
    /// Event Log entries per search call (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 1000))]
    pub page_size: Option<u32>,
    /// Most FusionAuth calls one pass makes (default 20); a pass that reaches
    /// it goes on from there in the next interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1000))]
    pub call_budget: Option<u32>,
}

/// Where backfill stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// Every event FusionAuth logged before this instant was delivered,
    /// handed over, rolled back or not for this webhook (RFC 3339). Written
    /// when a pass hands something over or it moved on by ten minutes; a
    /// new leader goes on from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Events handed over to the receiver so far.
    #[serde(default)]
    pub handed_over: u64,
    /// When a pass last handed something over (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hand_over: Option<String>,
    /// The value of annotation `fusionhook.dev/backfill-requested` last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    /// What that requested pass did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_result: Option<String>,
    /// Whether that requested pass ran through (FusionAuth's log read,
    /// every missed event handed over or given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_succeeded: Option<bool>,
    /// Whether it covered the whole window asked for (false: it stopped at
    /// its call budget; asking again goes on from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_complete: Option<bool>,
}

/// FusionAuth's API endpoint and credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FusionAuthConnection {
    /// Base URL of FusionAuth, e.g. `https://auth.example.com`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Secret key holding a FusionAuth API key. It must be a global key (not
    /// tenant-scoped): the Webhook API refuses tenant-scoped keys with 401.
    pub api_key_secret_ref: SecretKeyRef,
    /// Secret key holding a PEM CA bundle to trust for FusionAuth's TLS, when
    /// FusionAuth uses a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A key in a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Tenant selection of the FusionAuth webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSelection {
    /// Receive events of every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<bool>,
    /// Receive events of these tenants only (FusionAuth tenant ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")))]
    pub tenant_ids: Vec<String>,
}

/// Management of the tenant switches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantEvents {
    /// Transaction level for the enabled events: how many webhooks must
    /// succeed for a transactional event's action to go ahead.
    #[serde(default)]
    pub transaction_type: TransactionLevel,
}

/// FusionAuth transaction levels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum TransactionLevel {
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

/// Delivery timeouts FusionAuth applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// TCP connect timeout in milliseconds (> 0, default 1000).
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 60000))]
    pub connect_timeout_ms: u32,
    /// Read timeout in milliseconds (> 0, default 2000). Route timeouts must be shorter.
    #[serde(default = "default_read_timeout")]
    #[schemars(range(min = 1, max = 60000))]
    pub read_timeout_ms: u32,
}

fn default_connect_timeout() -> u32 {
    1000
}
fn default_read_timeout() -> u32 {
    2000
}

impl Default for Delivery {
    fn default() -> Self {
        Self { connect_timeout_ms: default_connect_timeout(), read_timeout_ms: default_read_timeout() }
    }
}

/// How FusionAuth proves itself to the receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverAuth {
    /// Secret key holding the value FusionAuth must send in `Authorization`.
    /// When absent the operator generates a random value into a Secret it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_secret_ref: Option<SecretKeyRef>,
    /// HTTP Basic credentials FusionAuth sends instead of an `Authorization` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Signature verification of `X-FusionAuth-Signature-JWT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureSpec>,
}

/// HTTP Basic credentials from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// Secret key holding the username.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// Signing of deliveries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.hmacSecretRef) != has(self.signingKeyId)").message("signature: give hmacSecretRef (HMAC) or signingKeyId (a FusionAuth key pair), exactly one"))]
pub struct SignatureSpec {
    /// Algorithm of the signing key: HS256/384/512 with `hmacSecretRef`;
    /// RS256/384/512, ES256/384 or EdDSA with `signingKeyId`.
    #[schemars(regex(pattern = r"^(HS256|HS384|HS512|RS256|RS384|RS512|ES256|ES384|EdDSA)$"))]
    pub algorithm: String,
    /// Secret key holding an HMAC secret. The operator imports it into
    /// FusionAuth's Key Master and gives the receiver the same secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<SecretKeyRef>,
    /// Id of an existing FusionAuth key pair; the receiver verifies with FusionAuth's JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
}

/// The receiver Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverWorkload {
    /// Number of receiver pods (default 2).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Receiver image; default: the one the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory for the receiver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// URL FusionAuth should call when it runs outside the cluster (for
    /// example an Ingress); default: the in-cluster Service URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub external_url: Option<String>,
    /// Where accepted events wait until their durable routes have acted on
    /// them: with a store, the receiver answers FusionAuth 200 once the
    /// event is committed and delivers it afterwards, with retries, dead
    /// letters and replay. Default: none (every route runs before the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSpec>,
}

fn default_replicas() -> i32 {
    2
}

impl Default for ReceiverWorkload {
    fn default() -> Self {
        Self { replicas: default_replicas(), image: None, resources: None, external_url: None, store: None }
    }
}

/// The receiver's store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'postgres' ? has(self.urlSecretRef) : !has(self.urlSecretRef)").message("store: urlSecretRef goes with type: postgres, and postgres needs it"))]
#[x_kube(validation = Rule::new("self.type == 'embedded' || (!has(self.size) && !has(self.storageClassName))").message("store: size and storageClassName are for type: embedded"))]
#[x_kube(validation = Rule::new("self.type != 'embedded' || oldSelf.type != 'embedded' || (has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName))").message("store: the storageClassName of an embedded store cannot change (its volumes stay in their class; see docs/stores.md)"))]
#[x_kube(validation = Rule::new("!has(self.size) || isQuantity(string(self.size))").message("store: size is a quantity like 1Gi or 500Mi"))]
pub struct StoreSpec {
    /// `none`, `embedded` (a database file on a volume per replica:
    /// deduplication is per replica) or `postgres` (one database shared by
    /// every replica: deduplication is cluster-wide).
    #[serde(rename = "type")]
    pub kind: StoreType,
    /// embedded: the size of each replica's volume claim (default 1Gi); it
    /// can grow (the claims are expanded), not shrink below what the volumes
    /// have (`status.storeSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// embedded: the StorageClass of the volume claims (default: the cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// postgres: the Secret key holding the connection string
    /// (`postgres://user:password@host:5432/db`). Mounted into the receiver
    /// as a file, never put in its config or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// Kinds of store.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StoreType {
    /// No store.
    #[default]
    None,
    /// redb on a volume per replica (a StatefulSet).
    Embedded,
    /// PostgreSQL, shared by every replica (a Deployment).
    Postgres,
}

/// When a route acts, relative to the answer to FusionAuth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Ack {
    /// Before the answer: a failure answers 500, which can veto a
    /// transactional event in FusionAuth.
    Sync,
    /// Committed to the store before the answer, delivered after with
    /// retries (the default when a store is set).
    Durable,
}

/// Delivery order of a durable route.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Ordering {
    /// An event about an object (`event.linkedObjectId`, else the user id)
    /// waits while an earlier one about it is pending on this route.
    PerObject,
}

/// When a durable delivery is tried again. Default: waits from 1 s doubling
/// up to 1 h, with jitter, for up to 24 h after the event was accepted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Attempts in all, the first included; then the delivery is dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_attempts: Option<u32>,
    /// No attempt later than this long after the event was accepted (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: Option<u64>,
    /// The first wait of the exponential schedule (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10))]
    pub initial_delay_ms: Option<u64>,
    /// The longest wait of the exponential schedule (default 3600000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10))]
    pub max_delay_ms: Option<u64>,
    /// A fixed schedule instead: the waits after attempt 1, 2, ...; the last repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(range(min = 10)))]
    pub schedule_ms: Vec<u64>,
}

/// Standard Webhooks signing of a route's calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignSpec {
    /// The Secret key holding the signing secret, `whsec_` followed by base64.
    pub secret_ref: SecretKeyRef,
}

/// One route: event filters to one action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.http) != has(self.log)").message("a route has exactly one action: http or log"))]
pub struct Route {
    /// Route name (in logs, metrics and error answers).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Event filters: a wire name (`user.delete`), a prefix (`user.*`) or `*`.
    #[schemars(length(min = 1), inner(regex(pattern = r"^(\*|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*(\.\*)?)$")))]
    pub events: Vec<String>,
    /// Call an HTTP service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAction>,
    /// Write one JSON log line per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogAction>,
    /// `sync` (runs before the answer to FusionAuth) or `durable`
    /// (committed before the answer, delivered after with retries; the
    /// default when `receiver.store` is set, and only possible then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
    /// Durable routes: when a failed delivery is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Durable routes: `perObject` delivers the events about one object in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    /// Durable routes: deliver no earlier than this long after the event's
    /// `createInstant` (FusionAuth sends some `*.complete` events before its
    /// own commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 86_400_000))]
    pub delay_ms: Option<u64>,
    /// Durable routes: deliveries in flight at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: Option<u32>,
}

/// The `http` action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpAction {
    /// HTTP method (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// URL; `{{event.user.id}}`-style placeholders are filled from the event
    /// (percent-encoded; not allowed in the scheme or host).
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Timeout in milliseconds (default 1500); must be below `delivery.readTimeoutMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: Option<u32>,
    /// Extra headers: a literal value (placeholders allowed) or a Secret key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Body: `event` (the event as FusionAuth sent it) or `none`; default by method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyMode>,
    /// Statuses besides 2xx that count as success (e.g. 404 for a DELETE:
    /// already gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(range(min = 200, max = 599)))]
    pub success_statuses: Vec<u16>,
    /// Sign each call the Standard Webhooks way (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature` headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignSpec>,
}

/// A header value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.secretKeyRef)").message("a header has value or secretKeyRef, exactly one"))]
pub struct HeaderValue {
    /// Literal value; `{{event.…}}` placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value from a Secret key (mounted into the receiver, rotation picked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// What an `http` action sends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BodyMode {
    /// The request body exactly as FusionAuth sent it.
    Event,
    /// No body.
    None,
}

/// The `log` action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogAction {
    /// Event fields to add (e.g. `event.user.email`); none by default, so no personal data is logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// What happens to the FusionAuth webhook when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the FusionAuth webhook (and turn off the tenant switches this resource turned on).
    #[default]
    Delete,
    /// Leave the FusionAuth webhook in place.
    Orphan,
}

/// Observed state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FusionAuthWebhookStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The FusionAuth this resource registered with (its base URL): when
    /// `spec.fusionAuth.url` changes, what is left there is removed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion_auth_url: Option<String>,
    /// The FusionAuth webhook id (UUIDv5 of this resource's uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The URL registered with FusionAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Key Master id of the HMAC key imported for this resource, to
    /// delete when the key is rotated or the signature removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
    /// Tenant switches this resource turned on (`tenantId/event`; they were
    /// off before). The record FusionAuth keeps, in the webhook's `data`, is
    /// the one clean-up reads; this copy is for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_tenant_events: Vec<String>,
    /// Backfill from FusionAuth's Webhook Event Log, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillStatus>,
    /// embedded: the size of the store's volumes as its StatefulSet's claim
    /// template has it (`spec.receiver.store.size` cannot go below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_size: Option<String>,
    /// The value of annotation `fusionhook.dev/reconcile-requested-at` the
    /// last reconcile handled (`kubectl fusionhook reconcile --wait` waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_reconcile_request: Option<String>,
    /// `Ready` and one condition per step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
